"""``sigil replay --data PATH... [--config DIR] [--variant FILE] [--json OUT] [--plot OUT.png]
[--html OUT.html] [--metrics full]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sigil.cli.args import HTML_SUFFIXES, PLOT_SUFFIXES, add_replay_inputs, check_outputs
from sigil.config_digest import replay_settings
from sigil.data.candles import load_detail, load_universe
from sigil.report.performance_table import add_metrics_argument, figures_text
from sigil.report.table import variant_table
from sigil.research.replay import detail_summary, replay_series
from sigil.times import iso_z

#: Runs shorter than this many candles finish too fast for a progress bar to help.
PROGRESS_MIN_CANDLES = 100_000


def add_parser(sub: Any) -> None:
    """Registers ``replay``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="replay candle files through the variants",
        description="Replay real candles through every variant and print the variant table.",
    )
    add_replay_inputs(
        p, "extra variant overlay to run beside the configured ones (e.g. config/legacy/fixed3.yaml)"
    )
    p.add_argument("--json", metavar="OUT", help="write metrics, every trade and open positions as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="draw equity curves and exit reasons (.png, .svg, .pdf)")
    p.add_argument("--html", metavar="OUT.html", help="write the tearsheet: one self-contained HTML page")
    add_metrics_argument(p)
    p.add_argument(
        "--detail",
        metavar="TF",
        help="move prices between closes with the lower-timeframe candles beside each file "
        "(<PAIR>-TF.*), as the daemon's exit pass does",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Loads everything first (bad input exits 2 before any output is written), then replays. The
    config's variants come from its digest when it is unchanged (:mod:`sigil.config_digest`)."""
    check_outputs(
        {
            "--json": (args.json, ()),
            "--plot": (args.plot, PLOT_SUFFIXES),
            "--html": (args.html, HTML_SUFFIXES),
        }
    )
    config = replay_settings(args.config, args.variant)
    series = load_universe(args.data, args.detail)
    detail, without = load_detail(series, args.detail) if args.detail else ([], [])
    total = sum(len(s) for s in series)
    bar = None
    if not args.quiet and total >= PROGRESS_MIN_CANDLES:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="candle", unit_scale=True, file=sys.stderr, desc="replay")

    def progress(done: int, _total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    result = replay_series(series, config, progress if bar else None, detail)
    if bar is not None:
        bar.close()
    first = min((int(s.time[0]) for s in series if len(s)), default=0)
    last = max((int(s.time[-1]) for s in series if len(s)), default=0)

    headline = (
        f"Replayed {result.candles:,} candles of {len(series)} symbols, "
        f"{iso_z(first)[:10]} → {iso_z(last)[:10]}, {len(result.variants)} variants"
    )
    print(headline)
    if args.detail:
        print(detail_summary(args.detail, result, without))
    print(variant_table(result.metrics))
    print()
    print(figures_text(result.performance, result.metrics, args.metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
        print(f"wrote {args.json}: {len(result.trades)} trades, {len(result.open_positions)} open positions")
    if args.plot:
        from sigil.report.plot import plot_equity

        plot_equity(args.plot, result.equity_time, result.equity, result.metrics)
        print(f"wrote {args.plot}")
    if args.html:
        from sigil.report.tearsheet import TradingRun, write_tearsheet

        size = write_tearsheet(args.html, TradingRun.from_replay(result, headline))
        print(f"wrote {args.html}: {size / 1e6:.1f} MB, {len(result.trades)} trades")
    return 0
