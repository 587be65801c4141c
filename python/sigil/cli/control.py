"""``sigil pause | resume [--instance NAME] [--variant NAME]`` and ``sigil exit POSITION_ID``: the
operator's controls, written to the database (:mod:`sigil.store.control`), so they reach a daemon on
any host that shares it; each daemon carries them out at its next pass.

A pause stops new opens (exits go on) until a resume, across restarts; without ``--instance`` or
``--variant`` it covers every instance or every variant. ``sigil exit`` asks for one open position to
be sold at the market (exit reason ``manual``). Each action is an audit event naming the OS user who
asked. Exit 0; 1 when the database cannot be reached; 2 on bad input (an unknown variant, a position
that is not open, a schema not migrated), with nothing written.
"""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Callable
from typing import Any

from sigil.cli.args import positive_int
from sigil.cli.database import add_database_args, with_database
from sigil.config import Config
from sigil.errors import UnknownVariant
from sigil.store import Database, require_current
from sigil.store.control import ALL, ControlStore

#: One-line help of each command (the COMMANDS table in :mod:`sigil.cli` repeats it).
HELP = {
    "pause": "stop new opens (exits go on) until `sigil resume`, on every daemon of the database",
    "resume": "lift the pauses of `sigil pause`",
    "exit": "sell one open position at the market at the next pass (exit reason manual)",
}


#: What ``--help`` says about each command.
DESCRIPTION = {
    "pause": "Stop new opens (exits go on) on every daemon that shares the database, from its next pass "
    "until `sigil resume`, across restarts. --instance and --variant narrow it to one daemon instance or "
    "one variant. Recorded in the audit log with the OS user who asked.",
    "resume": "Lift the pauses inside the scope (default: every pause). Recorded in the audit log.",
    "exit": "Ask for one open position to be sold at the market (exit reason manual); the daemon holding "
    "it sells it at its next pass. Recorded in the audit log. Exit 2 when the position is not open.",
}


def requester() -> str:
    """Who asked, for the audit log: the OS user and the host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def parser(command: str) -> Callable[[Any], None]:
    """The ``add_parser`` of ``command`` (pause, resume or exit)."""

    def add_parser(sub: Any) -> None:
        p: argparse.ArgumentParser = sub.add_parser(
            command, help=HELP[command], description=DESCRIPTION[command]
        )
        add_database_args(p)
        if command == "exit":
            p.add_argument("position_id", type=positive_int, metavar="POSITION_ID", help="the position's id")
        else:
            p.add_argument(
                "--instance", default=ALL, metavar="NAME", help="one daemon instance (default: every one)"
            )
            p.add_argument("--variant", default=ALL, metavar="NAME", help="one variant (default: every one)")
        p.set_defaults(run=_RUN[command])

    return add_parser


def _scope_words(instance: str, variant: str) -> str:
    who = "every variant" if variant == ALL else f"variant {variant}"
    where = "every instance" if instance == ALL else f"instance {instance}"
    return f"{who} on {where}"


def _check_variant(config: Config, variant: str) -> None:
    known = [v.name for v in config.variants]
    if variant != ALL and variant not in known:
        raise UnknownVariant(f"unknown variant {variant!r} (configured: {', '.join(known)})")


async def _pauses_line(store: ControlStore) -> str:
    pauses = await store.pauses()
    if not pauses:
        return "in force: none (trading)"
    return "in force: " + "; ".join(
        f"{_scope_words(p.instance, p.variant)} since {p.since:%Y-%m-%d %H:%M:%S}Z by {p.by}" for p in pauses
    )


def _pause_or_resume(args: argparse.Namespace) -> int:
    async def body(config: Config, db: Database) -> int:
        _check_variant(config, args.variant)
        await require_current(db)
        store = ControlStore(db)
        scope = _scope_words(args.instance, args.variant)
        if args.command == "pause":
            added = await store.pause(by=requester(), instance=args.instance, variant=args.variant)
            print(f"{'paused' if added else 'already paused'}: {scope} (no new opens; exits go on)")
        else:
            lifted = await store.resume(by=requester(), instance=args.instance, variant=args.variant)
            print(f"resumed {scope}: {lifted} pause(s) lifted")
        print(await _pauses_line(store))
        return 0

    return with_database(args, body)


def _exit(args: argparse.Namespace) -> int:
    async def body(config: Config, db: Database) -> int:
        await require_current(db)
        request = await ControlStore(db).request_exit(args.position_id, by=requester())
        print(
            f"exit of position #{args.position_id} requested (request {request}): the daemon holding it"
            " sells it at the market at its next pass"
        )
        return 0

    return with_database(args, body)


_RUN: dict[str, Callable[[argparse.Namespace], int]] = {
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "exit": _exit,
}
