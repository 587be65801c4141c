"""Fixtures of the store tests: a PostgreSQL server per session, a fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sigil.store import Database


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open pool on ``db_url``."""
    database = await Database.open(db_url, min_size=1, max_size=4)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def sigil_home() -> Iterator[Path]:
    """A fresh ``SIGIL_HOME`` for an embedded server.

    Not under pytest's ``tmp_path``: the server runs as another user when the tests run as root, and
    every pytest session resets its temporary root to mode 0700, which would lock that user out.
    """
    home = Path(tempfile.mkdtemp(prefix="sigil-home-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
