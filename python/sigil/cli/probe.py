"""``sigil probe [--config DIR] [--database-url URL] [--max-age SECONDS] [--max-lag SECONDS]``: the
dead-man check.

Exit 0 when the newest scanner heartbeat is younger than max-age, 1 when it is older or there is
none, 2 when it cannot tell (database unreachable, schema not migrated, bad config). Prints one line.
These are the probe's own codes (a monitor reads 1 as "the daemon makes no progress"), not the 0-4 of
the other commands: an unreachable database is 2 here, 1 everywhere else.
"""

from __future__ import annotations

import argparse
from typing import Any

from sigil.cli.args import database_url, instance, seconds
from sigil.config_digest import probe_settings
from sigil.daemon.heartbeat import PROBE_UNKNOWN, probe_now


def add_parser(sub: Any) -> None:
    """Registers ``probe``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "probe",
        help="exit 0 when the scanner heartbeat is fresh, 1 when stale, 2 when it cannot tell",
        description=(
            "Dead-man probe for cron, systemd or a monitor: reads the newest heartbeat of one daemon. "
            "Exit 0 fresh, 1 stale or missing, 2 cannot tell (database unreachable)."
        ),
    )
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument(
        "--database-url",
        type=database_url,
        metavar="URL",
        help="postgresql://… (default: as sigil daemon resolves it)",
    )
    p.add_argument(
        "--max-age",
        type=seconds,
        metavar="SECONDS",
        help="stale when the last completed pass is older (default: daemon.heartbeat_max_age_s)",
    )
    p.add_argument(
        "--max-lag",
        type=seconds,
        metavar="SECONDS",
        help="also stale when the newest decided candle closed more than this before the exchange's"
        " clock at the last pass (a daemon that passes but falls behind)",
    )
    p.add_argument(
        "--instance", type=instance, metavar="NAME", help="the daemon to probe (default: daemon.instance)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Prints the verdict; a bad config is "cannot tell" (2) like every other failure to judge. The
    config's settings come from its digest when it is unchanged (:mod:`sigil.config_digest`)."""
    try:
        settings = probe_settings(args.config)
    except (ValueError, OSError) as e:
        print(f"sigil probe: UNKNOWN: {e}", flush=True)
        return PROBE_UNKNOWN
    max_age = args.max_age if args.max_age is not None else settings.heartbeat_max_age_s
    result = probe_now(settings, args.database_url, max_age, instance=args.instance, max_lag_s=args.max_lag)
    print(f"sigil probe: {result.line}", flush=True)
    return result.code
