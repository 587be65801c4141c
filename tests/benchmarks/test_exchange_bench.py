"""One scanner pass through the real ccxt client: one new closed candle for each symbol of the
universe (109 pairs of ../shared/data/universe-1h; the 7 bundled pairs when that is absent or timing is
off, as in ``make test``), served by
``sigil exchange-sim`` in its own process with 50 ms added latency, at Binance's published rate limit
(ccxt's built-in ``binance`` rateLimit and endpoint costs; Sigil's limiter is never loosened here).

Reports, never asserts timings:
- wall time of the pass (pytest-benchmark's rounds), requests it made, and its ratio to the floor the
  rate limiter alone imposes (Σ rateLimit × cost of each request; binance: 50 ms × 0.4 per klines);
- CPU per symbol: the process CPU time of unprofiled passes (``time.process_time``: this process runs
  only the client; the simulator is another process) divided by the symbol count, and the share of it
  spent in Sigil's own code, from one extra pass under cProfile with a CPU-time timer (``tottime`` of
  the functions defined under ``python/sigil``, i.e. their own time without callees, over the
  pass's total). The profiled
  pass is slower than the others (cProfile costs per call); the share is what carries over, and
  Sigil's own CPU per symbol is reported as that share times the unprofiled CPU per symbol.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sigil
from sigil.config import ExchangeConfig
from sigil.data.candles import load_universe
from sigil.exchange.ccxt_client import ExchangeClient, PassResult
from tests.support.sim_process import SimProcess, sim_clock

RecordRatio = Callable[..., None]

LATENCY_MS = 50
HOUR = 3_600_000
ROUNDS = 3
SIGIL_DIR = str(Path(sigil.__file__).resolve().parent)


@pytest.fixture(scope="module")
def simulator(system_data: Path) -> Iterator[tuple[str, list[str]]]:
    """``sigil exchange-sim`` on a frozen clock a day before the data's end: (url, symbols)."""
    series = load_universe([system_data])
    start = min(int(s.time[-1]) for s in series) - 24 * HOUR
    symbols = sorted(s.symbol for s in series if int(s.time[0]) < start - 10 * HOUR)
    sim = SimProcess.frozen(system_data, start, latency_ms=LATENCY_MS)
    try:
        yield sim.url, symbols
    finally:
        sim.stop()


def _split(profile: cProfile.Profile) -> dict[str, float]:
    """Own CPU time (tottime) by where the code lives."""
    out = {"sigil": 0.0, "ccxt": 0.0, "aiohttp/yarl/multidict": 0.0, "other (asyncio, json, …)": 0.0}
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if filename.startswith(SIGIL_DIR):
            out["sigil"] += tottime
        elif "/ccxt/" in filename:
            out["ccxt"] += tottime
        elif any(f"/{p}/" in filename for p in ("aiohttp", "yarl", "multidict")):
            out["aiohttp/yarl/multidict"] += tottime
        else:
            out["other (asyncio, json, …)"] += tottime
    return out


def test_one_new_candle_for_every_symbol(
    benchmark: Any,
    simulator: tuple[str, list[str]],
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, symbols = simulator
    loop = asyncio.new_event_loop()
    config = ExchangeConfig(history_candles=5)  # ccxt's own rate limit: rate_limit_ms stays None

    async def make() -> ExchangeClient:
        client = ExchangeClient.from_config(config, url=url, environ={})
        await client.load_markets()
        await client.fetch_new_candles(symbols)  # warm the cache: later passes fetch one candle each
        return client

    client = loop.run_until_complete(make())
    cpu: list[float] = []
    passes: list[PassResult] = []

    def advance() -> None:
        sim_clock(url, advance_ms=HOUR)

    def one_pass() -> PassResult:
        c0 = time.process_time()
        r = loop.run_until_complete(client.fetch_new_candles(symbols))
        cpu.append(time.process_time() - c0)
        passes.append(r)
        return r

    try:
        benchmark.pedantic(one_pass, setup=advance, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        if benchmark.stats is not None:
            wall = float(benchmark.stats.stats.median)
        else:  # --benchmark-disable: one timed pass
            advance()
            t = time.perf_counter()
            one_pass()
            wall = time.perf_counter() - t
        advance()
        profile = cProfile.Profile(time.process_time)  # CPU, not wall: waiting on sockets is not work
        profile.enable()
        loop.run_until_complete(client.fetch_new_candles(symbols))
        profile.disable()
        rate_limit_ms = float(client.exchange.rateLimit)
        costs = client.exchange.api["public"]["get"]
        klines_cost, time_cost = float(costs["klines"]["cost"]), float(costs["time"]["cost"])
    finally:
        loop.run_until_complete(client.close())
        loop.close()

    # correctness of what was timed (not a timing assertion): one new closed candle per symbol
    for r in passes:
        assert not r.failed and all(len(r.candles[s]) == 1 for s in symbols)
    n = len(symbols)
    requests = passes[-1].requests
    # ccxt's leaky bucket lets one request go per rateLimit × cost (binance: klines 0.4, time 0.2)
    floor_s = (n * klines_cost + time_cost) * rate_limit_ms / 1000.0
    split = _split(profile)
    total = sum(split.values())
    cpu_per_symbol_ms = 1000.0 * sorted(cpu)[len(cpu) // 2] / n
    sigil_share = split["sigil"] / total
    benchmark.extra_info.update(
        {
            "symbols": n,
            "latency_ms": LATENCY_MS,
            "rate_limit_ms": rate_limit_ms,
            "klines_cost": klines_cost,
            "requests_per_pass": requests,
            "rate_limit_floor_s": floor_s,
            "wall_s": wall,
            "cpu_ms_per_symbol": cpu_per_symbol_ms,
            "sigil_cpu_share": sigil_share,
            "sigil_cpu_ms_per_symbol": sigil_share * cpu_per_symbol_ms,
            "cpu_split_profiled_s": split,
        }
    )
    with capsys.disabled():
        print(
            f"\nexchange pass: {n} symbols, {requests} requests, wall {wall:.2f} s "
            f"(rate-limit floor {floor_s:.2f} s: {rate_limit_ms:g} ms × cost {klines_cost:g} per klines "
            f"request; {LATENCY_MS} ms latency); "
            f"CPU {cpu_per_symbol_ms:.2f} ms/symbol, of which Sigil's own {100 * sigil_share:.1f}% "
            f"= {sigil_share * cpu_per_symbol_ms:.3f} ms/symbol"
        )
        print(
            "  profiled own-time split: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in split.items())
        )
    record_ratio(
        "exchange_pass_wall_vs_rate_limit_floor",
        wall / floor_s,
        f"{n} symbols, {requests} requests",
        better="lower",
    )
