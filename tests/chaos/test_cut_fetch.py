"""A pass cut in the middle of its candle fetch (the lease lost with the database, a job timeout) must
lose no candle: the next fetch hands over every candle the cut one did not. Found by the PostgreSQL
outage scenario (tests/chaos/test_database.py), whose book after outages sometimes differs from
replay's in exit prices: ``ExchangeClient.fetch_new_candles`` advances each symbol's cursor
(``CandleRows.last``) as that symbol's answer is accepted, so when the gather is cancelled the candles
already accepted are dropped with it and the next fetch starts after them — the feed and the engine
never see them (a gap in the ATR's history: other trail stops, other exits). Real ccxt client, real
simulator; the cut lands after one symbol's answer of four."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import Faults, SimExchange
from tests.chaos.record import Record
from tests.support import daemon_stack as stack

# In make test too: the regression test of the lost candles it found.
pytestmark = [pytest.mark.timeout(120)]

SPEC = {"DOGE": (0, 400), "PEPE": (0, 400), "SUI": (0, 400), "WIF": (0, 400)}
HOUR_MS = 3_600_000


async def test_a_fetch_cancelled_half_way_loses_no_candle(tmp_path: Path, record: Record) -> None:
    record.scenario = "a candle fetch cancelled half-way (as a lost lease or a job timeout cuts a pass)"
    record.runs = 1
    record.checked(["every candle reaches the feed"])
    series = stack.cut(tmp_path / "data", SPEC)
    first, _ = stack.span(series)
    # Latency drawn per request: some symbols' answers are in when the fetch is cut, others are not.
    faults = Faults(seed=3, latency_ms=50.0, latency_jitter_ms=400.0)
    sim = SimExchange(series, speed=0, start_ms=first + 300 * HOUR_MS, faults=faults)
    await sim.start(0)
    cfg = stack.config().settings.exchange
    try:
        async with ExchangeClient.from_config(cfg, url=sim.url) as client:
            task = asyncio.create_task(client.fetch_new_candles([s.symbol for s in series]))
            # Cut as soon as one symbol's answer is accepted, while others are still on their way.
            await stack.wait_until(
                lambda: any(client.last_candle_time(s.symbol) for s in series), timeout=30, step=0.005
            )
            accepted = sum(client.last_candle_time(s.symbol) is not None for s in series)
            task.cancel()
            record.fault(f"fetch cancelled after {accepted} of {len(series)} symbols' answers")
            with pytest.raises(asyncio.CancelledError):
                await task
            sim.faults = Faults()
            got = await client.fetch_new_candles([s.symbol for s in series])
        async with ExchangeClient.from_config(cfg, url=sim.url) as fresh:
            want = await fresh.fetch_new_candles([s.symbol for s in series])
    finally:
        await sim.stop()
    lost = {
        s: len(want.candles[s]) - len(got.candles.get(s, []))
        for s in want.candles
        if [c.time for c in got.candles.get(s, [])] != [c.time for c in want.candles[s]]
    }
    assert sum(len(v) for v in want.candles.values()) > 500
    assert 0 < accepted < len(series), "the cut should land between two symbols' answers"
    assert lost == {}, f"candles lost by the cut fetch ({accepted} symbols accepted), by symbol: {lost}"
