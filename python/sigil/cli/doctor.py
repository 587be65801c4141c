"""``sigil doctor [--config DIR] [--database-url URL] [--exchange-url URL] [--live]``: one line per
check with its verdict (``ok``, ``warn``, ``FAIL``) and why; exit 0 when every check passes, 1 when
one fails (a ``warn`` does not). The checks are in :mod:`sigil.ops.doctor`. A bad config or URL is a
``FAIL`` line like any other finding: finding it is the doctor's work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sigil.cli.database import add_database_args
from sigil.errors import EXIT_OK, EXIT_UNAVAILABLE


def add_parser(sub: Any) -> None:
    """Registers ``doctor``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check config, database, exchange, keys, ports and heartbeats; exit 1 if one fails",
        description=(
            "Checks what a daemon needs, one line each: the config, the database (reachable, migrated), "
            "the embedded server's data directory (writable, free space), the exchange (reachable, its "
            "clock against this machine's), the API keys when --live would need them (never shown), the "
            "health port, and each instance's heartbeat. Exit 0 when all pass, 1 when one fails."
        ),
    )
    add_database_args(p)
    p.add_argument(
        "--exchange-url",
        metavar="URL",
        help="the exchange's base URL, e.g. the simulator (default: SIGIL_EXCHANGE_URL, the config, else "
        "the real exchange)",
    )
    p.add_argument(
        "--live", action="store_true", help="check what live trading needs too (the API key pair, the clock)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Prints one line per check as it completes; 1 when one failed."""
    from sigil.ops.doctor import run_checks

    async def main() -> int:
        failed = False
        async for check in run_checks(args.config, args.database_url, args.exchange_url, args.live):
            print(check.line(), flush=True)
            failed = failed or check.verdict == "FAIL"
        return EXIT_UNAVAILABLE if failed else EXIT_OK

    code = asyncio.run(main())
    sys.stdout.flush()
    return code
