"""Where ``sigil optimize`` keeps its Optuna studies: Optuna's own tables, in schema ``optuna`` of the
database Sigil uses, apart from Sigil's tables (Optuna names its tables ``studies``, ``trials``…).

Optuna's RDB storage talks to PostgreSQL through SQLAlchemy with the psycopg 3 driver; this module
gives it the URL and the connection options (the schema on the search path), and creates the schema.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from sigil.daemon.scheduler import sqlalchemy_url
from sigil.errors import DatabaseUnavailable
from sigil.store.target import redact

#: The schema of Optuna's tables.
STUDY_SCHEMA = "optuna"
#: Seconds to wait for a connection before calling the database unreachable.
CONNECT_TIMEOUT_S = 10


def ensure_study_schema(url: str) -> None:
    """Creates schema ``optuna`` when missing (idempotent, safe from several processes at once).
    :class:`~sigil.errors.DatabaseUnavailable` when the server cannot be reached."""
    try:
        # Two workers starting at once may both create it; the loser's duplicate is harmless.
        with (
            psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn,
            contextlib.suppress(pgerrors.UniqueViolation, pgerrors.DuplicateSchema),
        ):
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{STUDY_SCHEMA}"')
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {first}") from None


def storage_url(url: str) -> str:
    """The SQLAlchemy URL of Optuna's storage for the database at ``url``."""
    return sqlalchemy_url(url)


def engine_kwargs() -> dict[str, Any]:
    """SQLAlchemy engine options: Optuna's tables in :data:`STUDY_SCHEMA`, a bounded connect wait,
    and connections checked before use (a worker outlives server restarts).

    Commits do not wait for the server's disk (``synchronous_commit=off``): Optuna commits every
    parameter and attribute on its own, and waiting for a flush each time made the database, not the
    engine, most of a trial's time. A worker that dies loses nothing by it (its commits reached the
    server); a server that crashes may lose its last fraction of a second of trials, which are then
    simply not in the study.
    """
    options = f"-c search_path={STUDY_SCHEMA} -c synchronous_commit=off"
    return {
        "connect_args": {"options": options, "connect_timeout": CONNECT_TIMEOUT_S},
        "pool_pre_ping": True,
    }
