"""Opening the store: engine, connection settings and schema migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger("bcctrack.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any fixed number works; every bcctrack process takes the same one so that
# only one of them migrates a shared PostgreSQL database at a time.
_MIGRATION_LOCK_ID = 0x6263_6374


class StoreError(Exception):
    """The store cannot be opened or migrated."""


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer. synchronous=FULL makes each
    # commit durable before it returns, and intake replies 250 only after the
    # commit returns.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # A write transaction that starts as a read and upgrades later fails at
    # once with "database is locked" under contention. Taking the write lock
    # at BEGIN makes it wait for busy_timeout instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    """Create an engine for ``url``, creating the SQLite folder if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            # isolation_level None hands transaction control to the "begin"
            # listener below instead of pysqlite's deferred BEGIN.
            connect_args={
                "check_same_thread": False,
                "timeout": 30,
                "isolation_level": None,
            },
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def is_postgresql(engine: Engine) -> bool:
    """Tell whether ``engine`` talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = not is_postgresql(engine)
        if sqlite:
            # Migrations rebuild SQLite tables (drop the old, rename the new),
            # which enforced foreign keys forbid. The pragma only takes
            # effect outside a transaction, so it goes to the driver
            # connection before SQLAlchemy begins one.
            _driver(connection).execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"),
                        {"id": _MIGRATION_LOCK_ID},
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _driver(connection).execute("PRAGMA foreign_keys=ON")


def _driver(connection: Connection) -> Any:
    return connection.connection.driver_connection


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise StoreError(f"migration left broken foreign keys: {broken[:5]}")


def open_store(url: str) -> Engine:
    """Open the store at ``url`` and migrate it; raise StoreError on failure."""
    try:
        engine = create_store_engine(url)
        migrate(engine)
    except Exception as error:
        raise StoreError(
            f"cannot open the store at {_safe_url(url)}: {error}"
        ) from error
    log.debug("store open at %s", _safe_url(url))
    return engine


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """Run a block in one transaction: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
