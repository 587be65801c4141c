"""``sigil exchange-sim --data PATH... [--port N] [--speed X] [--start T] [--seed S] [fault flags]``.

Serves candle files as a Binance-compatible spot exchange on 127.0.0.1 until SIGINT or SIGTERM. Once
it is listening it prints ``exchange-sim listening on http://127.0.0.1:PORT`` (port 0 picks a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from sigil.cli.args import port, time_ms
from sigil.data.candles import load_universe
from sigil.times import iso_z

#: The port the daemon's docs and demo use.
DEFAULT_PORT = 8900


def _probability(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {raw}")
    return v


def _non_negative(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {raw}")
    return v


def _speed(raw: str) -> float:
    from sigil.exchange.sim.clock import check_speed

    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    try:
        return check_speed(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _balance(raw: str) -> tuple[str, float]:
    asset, sep, amount = raw.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = float("nan")
    if not sep or not asset.isalnum() or not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected ASSET=AMOUNT (e.g. USDT=10000), got {raw!r}")
    return asset.upper(), value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def add_parser(sub: Any) -> None:
    """Registers ``exchange-sim``."""
    from sigil.exchange.sim import FAULT_ENDPOINTS, MALFORMED_KINDS

    p: argparse.ArgumentParser = sub.add_parser(
        "exchange-sim",
        help="serve candle files as a Binance-compatible exchange on 127.0.0.1",
        description=(
            "Serve candle files (one file = one symbol, a folder = a universe) over Binance's spot REST API "
            "on 127.0.0.1, on a simulated clock, with optional fault injection. Point Sigil (or any ccxt "
            "binance client) at it with --exchange-url / SIGIL_EXCHANGE_URL."
        ),
    )
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="candle files or folders")
    p.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)"
    )
    p.add_argument("--speed", type=_speed, default=1.0, help="simulated time per real time (0 = frozen)")
    p.add_argument(
        "--start", type=time_ms, metavar="TIME", help="simulated start (default: the first candle)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every fault draw (default 0)")
    f = p.add_argument_group("faults (rates are probabilities per request)")
    f.add_argument("--latency-ms", type=_non_negative, default=0.0, metavar="MS", help="added latency")
    f.add_argument(
        "--latency-jitter-ms", type=_non_negative, default=0.0, metavar="MS", help="plus up to this"
    )
    f.add_argument("--fail-429", type=_probability, default=0.0, metavar="P", help="429 with Retry-After")
    f.add_argument(
        "--fail-418", type=_probability, default=0.0, metavar="P", help="418 (IP ban) with Retry-After"
    )
    f.add_argument("--retry-after", type=_non_negative, default=1.0, metavar="S", help="Retry-After seconds")
    f.add_argument("--fail-5xx", type=_probability, default=0.0, metavar="P", help="500/502/503/504")
    f.add_argument(
        "--fail-timeout", type=_probability, default=0.0, metavar="P", help="hang instead of answering"
    )
    f.add_argument(
        "--fail-lost-answer",
        type=_probability,
        default=0.0,
        metavar="P",
        help="carry the request out, then hang instead of answering (an order executed unheard)",
    )
    f.add_argument("--hang-s", type=_non_negative, default=30.0, metavar="S", help="how long a hang lasts")
    f.add_argument("--malformed", type=_probability, default=0.0, metavar="P", help="a bad candle in klines")
    f.add_argument(
        "--malformed-kinds",
        type=_list,
        default=MALFORMED_KINDS,
        metavar="LIST",
        help=f"comma-separated, among {','.join(MALFORMED_KINDS)}",
    )
    f.add_argument(
        "--vanish", action="append", default=[], metavar="SYMBOL", help="a symbol that gets delisted"
    )
    f.add_argument("--vanish-after", type=int, default=1, metavar="N", help="…after N exchangeInfo responses")
    f.add_argument(
        "--fault-endpoints",
        type=_list,
        default=("exchangeInfo", "klines", "ticker", "time"),
        metavar="LIST",
        help=f"endpoints that get faults, among {','.join(FAULT_ENDPOINTS)}",
    )
    a = p.add_argument_group("signed endpoints (a paper account for live-mode tests)")
    a.add_argument("--balance", type=_balance, action="append", default=[], metavar="ASSET=AMOUNT")
    a.add_argument(
        "--fee-rate", type=_probability, default=0.001, metavar="F", help="commission (default 0.001)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Loads the data (bad input exits 2 before anything listens), then serves until stopped."""
    from sigil.exchange.sim import INTERVALS, Faults, SimExchange

    series = load_universe(args.data)
    faults = Faults(
        seed=args.seed,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        rate_429=args.fail_429,
        rate_418=args.fail_418,
        retry_after_s=args.retry_after,
        rate_5xx=args.fail_5xx,
        rate_timeout=args.fail_timeout,
        rate_lost_answer=args.fail_lost_answer,
        hang_s=args.hang_s,
        rate_malformed=args.malformed,
        malformed_kinds=args.malformed_kinds,
        vanish=tuple(args.vanish),
        vanish_after=args.vanish_after,
        endpoints=frozenset(args.fault_endpoints),
    )
    sim = SimExchange(
        series,
        speed=args.speed,
        start_ms=args.start,
        faults=faults,
        balances=dict(args.balance) if args.balance else None,
        fee_rate=args.fee_rate,
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    names = sorted(sim.markets.values(), key=lambda m: m.symbol)
    tfs = sorted({INTERVALS[m.tf] for m in names})
    shown = ", ".join(m.symbol for m in names[:3]) + (f" … {names[-1].symbol}" if len(names) > 3 else "")
    start = iso_z(sim.clock.now_ms())
    where = f"{len(names)} symbols ({shown}), {'/'.join(tfs)}"
    print(f"exchange-sim: {where}, clock from {start} at ×{args.speed:g}")
    return asyncio.run(_serve(sim, args.port))


async def _serve(sim: Any, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await sim.start(port)
    print(f"exchange-sim listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    print(f"exchange-sim: stopped after {sim.stats.total()} requests", file=sys.stderr, flush=True)
    return 0
