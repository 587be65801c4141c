"""``sigil ack-drift [--instance NAME]``: an operator accepts a live daemon's balance drift.

A live daemon whose exchange account and database disagree stops opening (exits go on); this lifts
that pause through the database, and the differences of the drift become the accepted offsets that the
daemon's later checks measure from (:mod:`sigil.daemon.reconcile`). Recorded as an event (kind
``reconcile``, reason ``ack``) naming the OS user who asked. Exit 0 (also when no drift is in force:
nothing is written then); 1 when the database cannot be reached; 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from sigil.cli.args import instance
from sigil.cli.control import requester
from sigil.cli.database import add_database_args, with_database
from sigil.config import Config
from sigil.store import Database, require_current
from sigil.store.reconcile import ReconcileStore


def add_parser(sub: Any) -> None:
    """Registers ``ack-drift``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "ack-drift",
        help="acknowledge a live balance drift so opens resume",
        description="Accept the difference a live daemon found between the exchange account and the "
        "database: its drift pause is lifted, opens resume, and later checks measure from the accepted "
        "difference. Recorded in the audit log with the OS user who asked.",
    )
    add_database_args(p)
    p.add_argument(
        "--instance", type=instance, metavar="NAME", help="the daemon instance (default: daemon.instance)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Lifts the drift pause of one instance and prints what was accepted."""

    async def body(config: Config, db: Database) -> int:
        await require_current(db)
        name = args.instance or config.settings.daemon.instance
        accepted = await ReconcileStore(db).acknowledge(name, by=requester())
        if accepted is None:
            print(f"instance {name}: no balance drift in force, nothing to acknowledge")
            return 0
        shown = ", ".join(f"{a} {v:+g}" for a, v in sorted(accepted.items()) if v) or "none"
        print(f"instance {name}: drift acknowledged, opens resume; accepted differences: {shown}")
        return 0

    return with_database(args, body)
