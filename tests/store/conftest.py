"""Fixtures of the store tests: a PostgreSQL server per session, a fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
