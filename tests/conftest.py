"""Shared fixtures of the test suite. Keep each group small and in its own section."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pg import PgServer

# ---------------------------------------------------------------------------------------------------
# Candle data paths (replay, oracle and benchmark tests)
# ---------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
#: Small real candle files that ship with the repository: always there.
BUNDLED_DATA = REPO / "data"
#: The larger shared data set next to the repository (``<repo>/../shared/data``), when the machine has it.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def bundled_data() -> Path:
    """The repository's ``data/`` folder (seven real 1h candle files)."""
    return BUNDLED_DATA


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
    url = pg.create_database(migrated=True)
    try:
        yield url
    finally:
        pg.drop_database(url)


@pytest.fixture
def empty_db_url(pg: PgServer) -> Iterator[str]:
    """A fresh, empty database (no schema)."""
    url = pg.create_database(migrated=False)
    try:
        yield url
    finally:
        pg.drop_database(url)
