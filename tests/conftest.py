"""Shared fixtures of the test suite. Keep each group small and in its own section."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sigil.config_digest import ENV_CACHE_DIR
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
# Sigil's cache directory (the probe's config digests)
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def sigil_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``SIGIL_CACHE_DIR`` for the session and the commands it runs: digests stay out of the user's cache."""
    path = tmp_path_factory.mktemp("sigil-cache")
    before = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV_CACHE_DIR, None)
        else:
            os.environ[ENV_CACHE_DIR] = before


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
