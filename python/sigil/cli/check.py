"""``sigil check lookahead|warmup --data PATH... [--config DIR] [--variant FILE]``: verify a replay.

``lookahead`` (:mod:`sigil.research.lookahead`) exits 0 when every decision is the one the engine
makes without the candles after it, 1 naming the first that is not. ``warmup``
(:mod:`sigil.research.warmup`) reports how many candles of history make each variant's decisions the
full-history ones; it exits 0 (a report), 1 only when even the full history differs (a bug).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sigil.cli.args import add_replay_inputs
from sigil.config import Config, load_config
from sigil.data.candles import CandleSeries, load_universe
from sigil.research.lookahead import DEFAULT_CUTS, LookaheadReport, check_lookahead
from sigil.research.warmup import DEFAULT_LADDER, LEVELS, WarmupReport, check_warmup


def ladder(raw: str) -> tuple[int, ...]:
    """``"14,50,200"`` → (14, 50, 200): whole numbers >= 1."""
    words = [w.strip() for w in raw.split(",") if w.strip()]
    if not words or not all(w.isdigit() and int(w) >= 1 for w in words):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 separated by commas, got {raw!r}")
    return tuple(int(w) for w in words)


def count(raw: str) -> int:
    """A whole number >= 0."""
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {raw!r}")
    return int(raw)


def add_parser(sub: Any) -> None:
    """Registers ``check`` and its two subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="verify a replay: no look-ahead (lookahead), enough warm-up (warmup)",
        description="Verify a replay: no decision uses later candles; how much history decisions need.",
    )
    checks = p.add_subparsers(dest="check", required=True, metavar="CHECK")
    look = checks.add_parser(
        "lookahead",
        help="each decision is the same with the data cut just after it (exit 1 names the first that is not)",
        description="Re-decide every open and close with the universe cut just after it: a streaming engine "
        "fed only past candles (every decision), and replays of the cut data (a sample of decision times).",
    )
    warm = checks.add_parser(
        "warmup",
        help="how many candles of history make the decisions the full-history ones, per variant",
        description="Recompute ATR, signals and exits of every decision with W candles of history before "
        "its entry, for each W of the ladder, and report from which W they equal the full-history ones.",
    )
    for q in (look, warm):
        add_replay_inputs(q, "extra variant overlay to check too")
    look.add_argument(
        "--cuts",
        type=count,
        default=DEFAULT_CUTS,
        metavar="N",
        help=f"cut replays: every decision time when there are at most N, else N drawn at random "
        f"(default {DEFAULT_CUTS})",
    )
    look.add_argument("--seed", type=count, default=0, metavar="N", help="seed of the cut sample (default 0)")
    look.set_defaults(run=run_lookahead)
    warm.add_argument(
        "--ladder",
        type=ladder,
        default=DEFAULT_LADDER,
        metavar="W,W,...",
        help=f"candles of history to try (default {','.join(map(str, DEFAULT_LADDER))}; "
        "the full history is always added)",
    )
    warm.set_defaults(run=run_warmup)


def _load(args: argparse.Namespace) -> tuple[list[CandleSeries], Config]:
    config = load_config(args.config, tuple(args.variant))
    return load_universe(args.data), config


def run_lookahead(args: argparse.Namespace) -> int:
    """Loads everything (bad input exits 2 first), checks, prints the counts; 1 when a decision changed."""
    series, config = _load(args)
    started = time.monotonic()
    report = check_lookahead(series, config, args.cuts, args.seed)
    return print_lookahead(report, time.monotonic() - started)


def print_lookahead(report: LookaheadReport, seconds: float) -> int:
    """Prints the report (the first difference on stderr) and returns the exit status."""
    print(
        f"Look-ahead check: {report.candles:,} candles of {report.symbols} symbols, "
        f"{len(report.variants)} variants, {seconds:.1f} s"
    )
    print(
        "streaming: every decision of the full replay against an engine fed only the candles closed by then"
    )
    print(
        f"cut replays: {len(report.cut_times):,} of {report.decision_times:,} decision times, the replay "
        "of the universe cut at each (decisions at the cut, and every one before it)"
    )
    print()
    width = max([7, *map(len, report.variants)])
    print(
        f"{'variant':<{width}}  {'entries':>8}  {'exits':>8}"
        f"  {'at cuts (entries/exits)':>23}  {'up to cuts':>17}"
    )
    for k, name in enumerate(report.variants):
        (e, x), (ae, ax), (ue, ux) = report.streamed[k], report.at_cuts[k], report.up_to_cuts[k]
        print(f"{name:<{width}}  {e:>8,}  {x:>8,}  {f'{ae:,} / {ax:,}':>23}  {f'{ue:,} / {ux:,}':>17}")
    print()
    first = report.first()
    if first is None:
        total = sum(e + x for e, x in report.streamed)
        print(f"no look-ahead: {total:,} decisions streamed and {len(report.cut_times):,} cut replays agree")
        return 0
    where = "the streaming engine" if first.cut is None else "the replay of the data cut there"
    line = first.difference.describe(report.variants, where)
    print(f"LOOK-AHEAD: {line}")
    print(f"sigil check lookahead: a decision changed: {line}", file=sys.stderr)
    return 1


def run_warmup(args: argparse.Namespace) -> int:
    """Loads everything (bad input exits 2 first), recomputes, prints the table; 1 only on a bug."""
    series, config = _load(args)
    started = time.monotonic()
    report = check_warmup(series, config, args.ladder)
    return print_warmup(report, time.monotonic() - started)


def print_warmup(report: WarmupReport, seconds: float) -> int:
    """Prints the per-variant tables (a full-history difference on stderr) and returns the exit status."""
    total = sum(v.entries + v.exits for v in report.variants)
    print(
        f"Warm-up check: {total:,} decisions of {len(report.variants)} variants recomputed with W candles "
        f"before each entry, {seconds:.1f} s"
    )
    print(
        f"levels: decision = same candle and action (and exit reason); {LEVELS[1]} = also ATR, stop_pct and "
        f"fill prices to {LEVELS[1]} relative; exact = bit for bit"
    )
    print()
    width = max([7, *(len(v.name) for v in report.variants)])
    heads = "".join(f"  {f'W for {lv}':>15}" for lv in LEVELS)
    print(f"{'variant':<{width}}  {'entries':>8}  {'exits':>8}{heads}")
    for v in report.variants:
        cells = "".join(f"  {'never' if w is None else str(w):>15}" for w in v.smallest)
        print(f"{v.name:<{width}}  {v.entries:>8,}  {v.exits:>8,}{cells}")
    print()
    rungs = [*map(str, report.ladder), "full"]
    print("decisions that agree, per W:")
    print(f"{'variant':<{width}}  {'level':<8}" + "".join(f"  {r:>7}" for r in rungs))
    for v in report.variants:
        for lv, level in enumerate(LEVELS):
            name = v.name if lv == 0 else ""
            print(f"{name:<{width}}  {level:<8}" + "".join(f"  {row[lv]:>7,}" for row in v.agree))
        print(f"{'':<{width}}  {'< W':<8}" + "".join(f"  {n:>7,}" for n in v.whole_file))
    print(
        "< W: decisions whose entry has fewer than W candles before it in its file (the window is the file)"
    )
    bad = [v.full_mismatch for v in report.variants if v.full_mismatch is not None]
    for line in bad:
        print(f"sigil check warmup: the full history does not reproduce a decision: {line}", file=sys.stderr)
    return 1 if bad else 0
