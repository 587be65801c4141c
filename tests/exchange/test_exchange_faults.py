"""Every fault kind of the simulator against Sigil's client: retried or skipped as specified, counted
by type, nothing crashes, and no malformed candle ever reaches the caller."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from sigil.config import ExchangeConfig
from sigil.data.candles import CandleSeries
from sigil.errors import ExchangeRejected, ExchangeUnavailable
from sigil.exchange.ccxt_client import Candle, ExchangeClient, PassResult
from sigil.exchange.settings import ExchangeSettings, resolve_exchange
from sigil.exchange.sim import Faults, SimExchange
from tests.support.exchange import fast_config

HOUR = 3_600_000


def file_candle(s: CandleSeries, t: int) -> Candle:
    """The file's candle opening at ``t``."""
    i = int(s.time.searchsorted(t))
    assert int(s.time[i]) == t, "a candle the file does not have"
    return Candle(
        t, float(s.open[i]), float(s.high[i]), float(s.low[i]), float(s.close[i]), float(s.volume[i])
    )


def assert_all_true(result: PassResult, series: Sequence[CandleSeries]) -> int:
    """Every returned candle is exactly the file's (so valid, and closed); returns how many."""
    by_symbol = {s.symbol: s for s in series}
    n = 0
    for symbol, candles in result.candles.items():
        times = [c.time for c in candles]
        assert times == sorted(set(times)), f"{symbol}: not strictly increasing"
        for c in candles:
            assert c == file_candle(by_symbol[symbol], c.time)
            assert c.time + HOUR <= result.server_time
            n += 1
    return n


async def run_passes(
    sim: SimExchange, client: ExchangeClient, series: Sequence[CandleSeries], passes: int
) -> list[PassResult]:
    """``passes`` passes, the simulated clock moving one hour between them."""
    out = []
    for _ in range(passes):
        r = await client.fetch_new_candles([s.symbol for s in series])
        assert_all_true(r, series)
        out.append(r)
        sim.clock.advance(HOUR)
    return out


def start_of(series: Sequence[CandleSeries]) -> int:
    """A time when every series has at least 100 candles behind it, mid-candle."""
    return max(int(s.time[100]) for s in series) + HOUR // 2


def client_for(sim: SimExchange, **overrides: object) -> ExchangeClient:
    return ExchangeClient.from_config(fast_config(**overrides), url=sim.url, environ={})


@pytest.fixture
def four(bundled_series: list[CandleSeries]) -> list[CandleSeries]:
    """Four bundled pairs that trade over the same months (2024)."""
    first = min(int(s.time[0]) for s in bundled_series)
    same = [s for s in bundled_series if int(s.time[0]) == first]
    assert len(same) >= 4
    return same[:4]


async def test_latency_is_added_and_changes_nothing(start_sim, four) -> None:
    sim = await start_sim(four, start_ms=start_of(four), faults=Faults(latency_ms=120))
    async with client_for(sim) as client:
        t0 = time.monotonic()
        await client.server_time()
        assert time.monotonic() - t0 >= 0.12
        await run_passes(sim, client, four, 2)
        assert not client.stats.errors


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limit_answers_are_retried_after_retry_after(start_sim, four, status) -> None:
    """429/418 are retried, never sooner than Retry-After, counted as ccxt's DDoSProtection."""
    rate = {"rate_429": 0.5} if status == 429 else {"rate_418": 0.5}
    faults = Faults(seed=3, retry_after_s=0.25, endpoints=frozenset({"klines"}), **rate)
    sim = await start_sim(four[:1], start_ms=start_of(four), faults=faults)
    async with client_for(sim, retries=6) as client:
        t0 = time.monotonic()
        results = await run_passes(sim, client, four[:1], 3)
        elapsed = time.monotonic() - t0
    hits = sim.stats.faults[f"http_{status}"]
    assert hits >= 1
    assert client.stats.errors["DDoSProtection"] == hits
    assert client.stats.retries == hits and not any(r.failed for r in results)
    # one symbol, so the waits are sequential: each at least the Retry-After (backoff alone is ≤ 0.05 s)
    assert elapsed >= 0.25 * hits


async def test_retry_after_holds_every_request_of_the_client(start_sim, four) -> None:
    """A 429 on one symbol makes the others wait too (the limit is per IP, not per symbol)."""
    faults = Faults(seed=11, rate_429=0.3, retry_after_s=0.3, endpoints=frozenset({"klines"}))
    sim = await start_sim(four, start_ms=start_of(four), faults=faults)
    async with client_for(sim, retries=8) as client:
        t0 = time.monotonic()
        r = (await run_passes(sim, client, four, 1))[0]
        elapsed = time.monotonic() - t0
    assert sim.stats.faults["http_429"] >= 1 and not r.failed
    assert elapsed >= 0.3


async def test_retry_after_longer_than_the_limit_fails_at_once(start_sim, four) -> None:
    faults = Faults(rate_418=1.0, retry_after_s=600, endpoints=frozenset({"time"}))
    sim = await start_sim(four, start_ms=start_of(four), faults=faults)
    async with client_for(sim, retry_after_max_s=5) as client:
        await client.load_markets()
        with pytest.raises(ExchangeUnavailable, match="asks to wait 600 s") as e:
            await client.fetch_new_candles([four[0].symbol])
        assert e.value.retry_after_s == 600
        assert client.stats.requests == 2 and client.stats.gave_up["DDoSProtection"] == 1  # markets, time


async def test_5xx_are_retried_and_counted(start_sim, four) -> None:
    sim = await start_sim(four, start_ms=start_of(four), faults=Faults(seed=5, rate_5xx=0.4))
    async with client_for(sim, retries=8) as client:
        results = await run_passes(sim, client, four, 3)
    injected = sum(v for k, v in sim.stats.faults.items() if k.startswith("http_5"))
    assert injected >= 2
    # 500/502/503 are ExchangeNotAvailable and 504 is RequestTimeout in ccxt; all NetworkErrors
    counted = client.stats.errors["ExchangeNotAvailable"] + client.stats.errors["RequestTimeout"]
    assert counted == injected == client.stats.retries
    assert not any(r.failed for r in results)


async def test_hanging_requests_time_out_and_are_retried(start_sim, four) -> None:
    faults = Faults(seed=2, rate_timeout=0.3, hang_s=30.0)
    sim = await start_sim(four, start_ms=start_of(four), faults=faults)
    async with client_for(sim, timeout_s=0.3, retries=8) as client:
        t0 = time.monotonic()
        results = await run_passes(sim, client, four, 2)
        assert time.monotonic() - t0 < 20.0  # nobody waited for a hang to end
    assert sim.stats.faults["timeout"] >= 1
    assert client.stats.errors["RequestTimeout"] == sim.stats.faults["timeout"]
    assert not any(r.failed for r in results)


async def test_a_symbol_that_keeps_failing_is_skipped_and_comes_back(start_sim, four) -> None:
    """Retries exhausted → the symbol is reported failed for this pass, the others are served, and
    the next pass (the exchange healthy again) catches up with no hole."""
    faults = Faults(rate_5xx=1.0, endpoints=frozenset({"klines"}))
    sim = await start_sim(four, start_ms=start_of(four), faults=faults)
    async with client_for(sim, retries=2) as client:
        await client.load_markets()
        r = await client.fetch_new_candles([s.symbol for s in four])
        assert set(r.failed) == {s.symbol for s in four}
        assert set(r.failed.values()) <= {"ExchangeNotAvailable", "RequestTimeout"}
        assert r.requests == 1 + 3 * len(four)  # server time, then 1 + 2 retries per symbol
        assert sum(client.stats.gave_up.values()) == len(four) and r.new_candles == 0
        sim.faults = Faults()
        sim.clock.advance(HOUR)
        r2 = await client.fetch_new_candles([s.symbol for s in four])
        assert not r2.failed and assert_all_true(r2, four) == 48 * len(four)


async def test_exchange_errors_are_not_retried(start_sim, four) -> None:
    """An unknown symbol (400, code -1121 → ccxt BadSymbol) costs one request and is not retried."""
    gone = four[1]
    sim = await start_sim(four, start_ms=start_of(four))
    async with client_for(sim) as client:
        await client.load_markets()
        sim.vanish_now(gone.symbol)
        before = client.stats.requests
        r = await client.fetch_new_candles([s.symbol for s in four])
        assert r.failed == {gone.symbol: "BadSymbol"}
        assert client.stats.requests - before == 1 + len(four)  # no retry
        assert client.stats.retries == 0 and client.stats.gave_up == {"BadSymbol": 1}
        assert all(len(r.candles[s.symbol]) == 48 for s in four if s is not gone)
        with pytest.raises(ExchangeRejected, match="BadSymbol"):
            await client.last_price(gone.symbol)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("nan", "not_finite"),
        ("high_low", "high_below_low"),
        ("duplicate", "duplicate"),
        ("out_of_order", None),
    ],
)
async def test_malformed_candles_never_reach_the_caller(start_sim, four, kind, reason) -> None:
    """Half the klines responses carry a malformed candle: each is dropped and counted, the passes
    still deliver every candle of the file exactly, and nothing is missing in the end (a pass stops
    at a bad candle and the next one asks again from there)."""
    faults = Faults(seed=7, rate_malformed=0.5, malformed_kinds=(kind,))
    sim = await start_sim(four, start_ms=start_of(four), faults=faults)
    got: dict[str, list[Candle]] = {s.symbol: [] for s in four}
    async with client_for(sim, history_candles=24) as client:
        for r in await run_passes(sim, client, four, 12):
            for sym, cs in r.candles.items():
                got[sym].extend(cs)
        # catch up without moving the clock (a pass stopped at a bad candle asks again from there)
        for _ in range(10):
            r = await client.fetch_new_candles([s.symbol for s in four])
            assert_all_true(r, four)
            for sym, cs in r.candles.items():
                got[sym].extend(cs)
        stats = client.stats
    assert sim.stats.faults[f"malformed_{kind}"] >= 8
    if reason is None:
        # ccxt sorts klines rows by time before Sigil sees them: reordered rows are simply right
        assert not stats.dropped
    else:
        assert stats.dropped[reason] >= 1 and set(stats.dropped) == {reason}
    now = sim.clock.now_ms()
    for s in four:
        times = [c.time for c in got[s.symbol]]
        closed = s.time[(s.time + HOUR <= now)]
        assert times == [int(t) for t in closed[-len(times) :]], f"{s.symbol}: a hole or a repeat"
        assert times[-1] == int(closed[-1])


async def test_everything_at_once(start_sim, sample_series) -> None:
    """Every fault kind together over several passes: no crash, every candle true, all counted."""
    faults = Faults(
        seed=42,
        latency_ms=2,
        latency_jitter_ms=5,
        rate_429=0.05,
        rate_418=0.02,
        retry_after_s=0.05,
        rate_5xx=0.1,
        rate_timeout=0.03,
        hang_s=5.0,
        rate_malformed=0.3,
    )
    sim = await start_sim(sample_series, start_ms=start_of(sample_series), faults=faults)
    cfg: ExchangeConfig = fast_config(timeout_s=0.25, retries=10, rate_limit_ms=10)
    async with ExchangeClient(_settings(cfg, sim.url)) as client:
        await run_passes(sim, client, sample_series, 6)
        assert client.stats.errors and client.stats.retries == sum(client.stats.errors.values())
    assert sum(sim.stats.faults.values()) >= 5


def _settings(cfg: ExchangeConfig, url: str) -> ExchangeSettings:
    return resolve_exchange(cfg, url=url, environ={})


async def test_concurrency_is_bounded(start_sim, four) -> None:
    """max_concurrency 1 with 150 ms latency: four symbols cannot take less than four latencies."""
    sim = await start_sim(
        four, start_ms=start_of(four), faults=Faults(latency_ms=150, endpoints=frozenset({"klines"}))
    )
    async with client_for(sim, max_concurrency=1) as client:
        await client.load_markets()
        t0 = time.monotonic()
        r = await client.fetch_new_candles([s.symbol for s in four])
        assert time.monotonic() - t0 >= 4 * 0.15 and not r.failed
