"""Shared fixtures of the test suite. Keep each group small and in its own section."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sigil.store import Database
from tests.support.data import BUNDLED, SHARED_DATA
from tests.support.pg import PgServer

# ---------------------------------------------------------------------------------------------------
# Candle data paths (replay, oracle and benchmark tests); the paths themselves: tests/support/data.py
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundled_data() -> Path:
    """The repository's ``data/`` folder (seven real 1h candle files)."""
    return BUNDLED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data`` (``candles/``, ``universe-1h/``); the test is skipped where it is absent."""
    if not (SHARED_DATA / "universe-1h").is_dir():
        pytest.skip(f"{SHARED_DATA} is not on this machine")
    return SHARED_DATA


# ---------------------------------------------------------------------------------------------------
# PostgreSQL (store, daemon and benchmark tests)
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """One server for the whole session: embedded (fsync off), or ``SIGIL_TEST_DATABASE_URL``.
    Every test makes its own database on it."""
    server = PgServer.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def db_url(pg: PgServer) -> Iterator[str]:
    """A fresh database with the current schema and the shipped variants' accounts (1,000 USDT each)."""
    with pg.database(migrated=True) as url:
        yield url


@pytest.fixture
def empty_db_url(pg: PgServer) -> Iterator[str]:
    """A fresh, empty database (no schema)."""
    with pg.database(migrated=False) as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open pool on ``db_url``."""
    database = await Database.open(db_url, min_size=1, max_size=4)
    try:
        yield database
    finally:
        await database.close()
