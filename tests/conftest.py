"""Shared fixtures: the email corpus, stores on SQLite and PostgreSQL, carrier API."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from carriers.fake_carrier import FakeCarrierServer
from mailhandler.store import open_store

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BCCTRACK_CORPUS", REPO.parent / "shared" / "corpus"))
POSTGRES_ADMIN_URL = os.environ.get(
    "BCCTRACK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(reason: str) -> None:
    # A user's clone may lack the corpus or a PostgreSQL server; CI has both
    # and must not pass by skipping.
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The labelled email corpus (BCCTRACK_CORPUS, or ../shared/corpus)."""
    if not (CORPUS / "labels.tsv").is_file():
        _require(f"email corpus not found at {CORPUS} (set BCCTRACK_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_labels(corpus_dir: Path) -> list[dict[str, str]]:
    """The rows of the corpus's labels.tsv."""
    with (corpus_dir / "labels.tsv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def _postgres_admin() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    admin = _postgres_admin()
    name = f"bcctrack_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        _require(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bcctrack.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An open, migrated store on each database."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def pg_engines(postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one PostgreSQL database, as two processes would have."""
    first = open_store(postgres_url)
    second = open_store(postgres_url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


# Variables that configure the tests themselves rather than bcctrack.
_TEST_VARIABLES = {"BCCTRACK_CORPUS", "BCCTRACK_TEST_POSTGRES_URL"}


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own BCCTRACK_* settings must not leak into the tests.
    for key in list(os.environ):
        if key.startswith("BCCTRACK_") and key not in _TEST_VARIABLES:
            monkeypatch.delenv(key)


@pytest.fixture
def carrier_server() -> Iterator[FakeCarrierServer]:
    """A fake carrier API on 127.0.0.1, closed after the test."""
    server = FakeCarrierServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
