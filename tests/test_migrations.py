"""Migrations: the newest one matches the models on both stores."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from mailhandler.store.engine import MIGRATIONS_DIR


def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def _migrate_to(engine: Engine, revision: str, downgrade: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if downgrade:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def test_parcel_groups_migration_round_trip(engine: Engine) -> None:
    assert "group_id" in _columns(engine, "notification")
    assert "carrier_name" in _columns(engine, "shipment")

    _migrate_to(engine, "0005", downgrade=True)
    assert "group_id" not in _columns(engine, "notification")
    assert "carrier_name" not in _columns(engine, "shipment")
    indexes = {index["name"] for index in inspect(engine).get_indexes("notification")}
    assert "ix_notification_group" not in indexes

    _migrate_to(engine, "head")
    assert "group_id" in _columns(engine, "notification")
    assert "carrier_name" in _columns(engine, "shipment")
    test_migrations_match_models(engine)
