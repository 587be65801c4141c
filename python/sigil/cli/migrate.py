"""``sigil migrate [--config DIR] [--database-url URL]``: bring the schema up to date (idempotent).

Applies the pending migrations in order, then creates the account of every configured variant that
has none (existing balances are never touched). Without a URL it works on the embedded PostgreSQL.
Exit 0; 1 when the database cannot be reached (retryable: a supervisor may try again), 2 on bad input
(a malformed URL, a changed or unknown migration).
"""

from __future__ import annotations

import argparse
from typing import Any

from sigil.cli.database import add_database_args, with_database
from sigil.config import Config
from sigil.store import AccountStore, Database, migrate, schema_status


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
