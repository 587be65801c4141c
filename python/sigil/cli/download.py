"""``sigil download --data DIR (--pairs PAIR... | --universe) --timeframe TF... (--days N | --since DATE)
[--until DATE] [--prepend] [--exchange-url URL] [--config DIR]``.

History from the exchange into freqtrade-format files (``TST_USDT-1h.feather``), incremental: see
:mod:`sigil.data.download`. Exit 0 when something was fetched (or everything was up to date), 1 when
the exchange cannot be reached, 2 on bad input (checked before any request or write) or when no pair
at all could be fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from sigil.cli.args import positive_int, time_ms
from sigil.errors import DataError


def _timeframe(raw: str) -> str:
    from sigil.data.candles import timeframe_ms

    try:
        timeframe_ms(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return raw


def add_parser(sub: Any) -> None:
    """Registers ``download``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "download",
        help="download candle history from the exchange into freqtrade-format files",
        description=(
            "Download closed candles from the exchange into DIR, one freqtrade-format feather file per "
            "pair and timeframe (TST_USDT-1h.feather). A second run fetches only the candles after the "
            "last stored one (--prepend: before the first)."
        ),
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder of the candle files (created)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--pairs", nargs="+", metavar="PAIR", help="pairs, e.g. TST/USDT BTC/USDT")
    who.add_argument("--universe", action="store_true", help="the scanner's universe (exchange config)")
    p.add_argument("--timeframe", nargs="+", required=True, type=_timeframe, metavar="TF", help="e.g. 1h 5m")
    span = p.add_mutually_exclusive_group(required=True)
    span.add_argument("--days", type=positive_int, metavar="N", help="the last N days (before --until)")
    span.add_argument("--since", type=time_ms, metavar="DATE", help="from this time (UTC), e.g. 2025-01-01")
    p.add_argument("--until", type=time_ms, metavar="DATE", help="up to this time, excluded (default: now)")
    p.add_argument("--prepend", action="store_true", help="extend stored files backwards instead")
    p.add_argument(
        "--exchange-url",
        metavar="URL",
        help="point the exchange client at this base URL, e.g. the simulator (default: SIGIL_EXCHANGE_URL, "
        "the config, else the real exchange)",
    )
    p.add_argument("--config", metavar="DIR", help="config directory (default: the shipped config)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Checks the input (exit 2 before any request), then downloads."""
    from sigil.config import load_config
    from sigil.data.download import normalize_pair

    folder = Path(args.data)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise ValueError("--until must be after --since")
    pairs = [normalize_pair(p) for p in args.pairs] if args.pairs else None
    config = load_config(args.config)
    return asyncio.run(_download(args, config.settings.exchange, folder, pairs))


async def _download(args: argparse.Namespace, exchange: Any, folder: Path, pairs: list[str] | None) -> int:
    from sigil.data.download import GAPS_SHOWN, Downloader
    from sigil.exchange.ccxt_client import ExchangeClient
    from sigil.exchange.universe import Universe
    from sigil.times import iso_z

    async with ExchangeClient.from_config(exchange, url=args.exchange_url) as client:
        bar: Any = None

        done = 0

        def progress(pair: str, tf: str, n: int, file_done: bool) -> None:
            nonlocal done
            if bar is None:
                return
            if file_done:
                done += 1
                bar.set_postfix_str(f"files {done}/{files}", refresh=False)
            bar.update(n)

        downloader = Downloader(
            client,
            folder,
            args.timeframe,
            since_ms=args.since,
            days=args.days,
            until_ms=args.until,
            prepend=args.prepend,
            progress=progress,
        )
        if pairs is None:
            pairs = list((await Universe(client).refresh()).symbols)
            if not pairs:
                raise ValueError(f"{client.id}: the universe is empty (see the exchange config)")
        now = await client.server_time()
        files = len(pairs) * len(downloader.timeframes)
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(
                total=downloader.planned(pairs, now),
                unit="candle",
                unit_scale=True,
                file=sys.stderr,
                desc=f"download {len(pairs)} pairs × {len(downloader.timeframes)} tf",
            )
        try:
            result = await downloader.run(pairs, server_time=now)
        finally:
            if bar is not None:
                bar.total = bar.n  # the plan counted candles from before a pair was listed
                bar.close()

    said: set[str] = set()
    for f in result.files:
        label = f"{f.pair} {f.timeframe}"
        if f.error is not None:
            if f.error not in said:  # an unknown pair: one line, not one per timeframe
                said.add(f.error)
                print(f"sigil download: {f.pair}: {f.error}", file=sys.stderr)
            continue
        span = f"{iso_z(f.first)[:16]} → {iso_z(f.last)[:16]}" if f.first is not None and f.last else "empty"
        status = "up to date" if f.up_to_date else f"+{f.new:,} candles"
        print(f"{label}: {status}, {f.stored:,} stored ({span}), {len(f.gaps)} gap(s) → {f.path}")
        for g in f.gaps[:GAPS_SHOWN]:
            print(f"  gap {iso_z(g.start)[:16]} → {iso_z(g.end)[:16]} ({g.missing:,} candles missing)")
        if len(f.gaps) > GAPS_SHOWN:
            print(f"  … and {len(f.gaps) - GAPS_SHOWN} more gap(s)")
        for t, reason in f.bad:
            when = iso_z(t) if t >= 0 else "(no time)"
            print(f"  bad candle {when}: {reason}, not stored")
    fetched = result.fetched
    print(
        f"Downloaded {len({f.pair for f in fetched})} of {len({f.pair for f in result.files})} pairs: "
        f"{result.candles:,} new candles, {result.gaps} gap(s), "
        f"{sum(len(f.bad) for f in result.files)} bad candle(s), {result.requests} requests"
    )
    if not fetched:
        raise ValueError("nothing could be fetched")
    return 0
