"""``sigil report [--config DIR] [--database-url URL] [--plot OUT.png] [--json OUT] [--html OUT.html]
[--metrics full]``: what the daemon did.

The variant table in the same shape as ``sigil replay``'s, built from the database (closed and open
positions, accounts), the same figures under it (compact, or all with ``--metrics full``), and
optionally the equity curves and the HTML tearsheet. Exit 0; 1 when the database cannot be reached,
2 when it is not migrated (or bad input).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sigil.cli.args import HTML_SUFFIXES, PLOT_SUFFIXES, check_outputs
from sigil.cli.database import add_database_args, with_database
from sigil.config import Config
from sigil.report.book import Book, load_book
from sigil.report.performance_table import add_metrics_argument, figures_text
from sigil.report.table import variant_table
from sigil.store import Database, require_current


def add_parser(sub: Any) -> None:
    """Registers ``report``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="the variant table (and equity curves) of what the daemon traded",
        description="Print the variant table from the database: trades, exit reasons, P&L, balance, equity.",
    )
    add_database_args(p)
    p.add_argument(
        "--plot", metavar="OUT.png", help="draw equity curves and P&L by exit reason (.png, .svg, .pdf)"
    )
    p.add_argument("--json", metavar="OUT", help="write metrics, every trade and open positions as JSON")
    p.add_argument("--html", metavar="OUT.html", help="write the tearsheet: one self-contained HTML page")
    add_metrics_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Reads the database, prints the table, writes the plot, JSON and tearsheet when asked."""
    check_outputs(
        {
            "--plot": (args.plot, PLOT_SUFFIXES),
            "--json": (args.json, ()),
            "--html": (args.html, HTML_SUFFIXES),
        }
    )

    async def body(config: Config, db: Database) -> Book:
        await require_current(db)
        return await load_book(db, config)

    book = with_database(args, body)
    print(book.headline())
    print(variant_table(book.metrics))
    print()
    print(figures_text(book.performance, book.metrics, args.metrics))
    if book.skips:
        print("skipped signals: " + ", ".join(f"{r} {n}" for r, n in sorted(book.skips.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(book.to_json(), indent=1), encoding="utf-8")
        print(f"wrote {args.json}: {len(book.trades)} trades, {len(book.open_positions)} open positions")
    if args.plot:
        from sigil.report.plot import plot_equity

        times, curves = book.equity_curves()
        plot_equity(args.plot, times, curves, book.metrics, title="Sigil daemon")
        print(f"wrote {args.plot}")
    if args.html:
        from sigil.report.tearsheet import TradingRun, write_tearsheet

        size = write_tearsheet(args.html, TradingRun.from_book(book))
        print(f"wrote {args.html}: {size / 1e6:.1f} MB, {len(book.trades)} trades")
    return 0
