"""The simulator seen through ccxt: fidelity to the files, the simulated clock, the partial candle."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import numpy as np
import pytest

from sigil.data.candles import CandleSeries
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import SimClock, SimExchange, SimMarket
from tests.support.data import rows_of
from tests.support.exchange import fast_config, plain_binance

HOUR = 3_600_000


async def test_plain_ccxt_reads_every_candle_of_the_files(start_sim, sample_series) -> None:
    """Every closed candle a plain ccxt binance fetches equals the file's; markets and tickers parse."""
    end = max(int(s.time[-1]) + s.timeframe_ms for s in sample_series)
    sim = await start_sim(sample_series, start_ms=end)
    ex = plain_binance(sim.url)
    try:
        markets = await ex.load_markets()
        assert set(markets) == {s.symbol for s in sample_series}
        for s in sample_series:
            m = markets[s.symbol]
            assert m["spot"] and m["type"] == "spot" and m["quote"] == "USDT"
            assert m["active"] is False  # the data has ended: the market is halted (status BREAK)
            assert m["precision"]["price"] > 0 and m["limits"]["cost"]["min"] == 5.0
            since = int(s.time[0])
            got: list[list[float]] = []
            while True:
                page = await ex.fetch_ohlcv(s.symbol, "1h", since=since, limit=1000)
                got.extend(page)
                if len(page) < 1000:
                    break
                since = int(page[-1][0]) + HOUR
            assert got == rows_of(s), s.symbol
        tickers = await ex.fetch_tickers()
        assert set(tickers) == {s.symbol for s in sample_series}
        for s in sample_series:
            t = tickers[s.symbol]
            assert t["last"] == float(s.close[-1])
            assert t["bid"] <= t["last"] <= t["ask"]
            assert t["quoteVolume"] is None or t["quoteVolume"] >= 0
        assert await ex.fetch_time() == end
    finally:
        await ex.close()
    # ccxt asked for nothing the simulator does not serve
    assert not sim.stats.unknown
    assert set(sim.stats.requests) <= {"exchangeInfo", "klines", "ticker", "time"}


async def test_client_first_pass_is_the_files_last_closed_candles(start_sim, sample_series) -> None:
    """Sigil's client, first pass: ``history_candles`` closed candles, exactly the file's."""
    s = max(sample_series, key=len)
    i = len(s) - 300
    now = int(s.time[i]) + HOUR // 2  # candle i is in progress
    sim = await start_sim([s], start_ms=now)
    async with ExchangeClient.from_config(
        fast_config(history_candles=200), url=sim.url, environ={}
    ) as client:
        result = await client.fetch_new_candles([s.symbol])
        assert result.server_time == now and not result.failed
        assert [list(c) for c in result.candles[s.symbol]] == rows_of(s, i - 200, i)
        assert client.stats.incomplete == 1  # candle i was served partial, and left out
        assert client.last_candle_time(s.symbol) == int(s.time[i - 1])


async def test_a_candle_is_served_only_after_its_close_on_the_simulated_clock(
    start_sim, bundled_series
) -> None:
    """Frozen clock, moved by hand: the candle opening at T is absent at T+1h-1ms, present at T+1h."""
    s = bundled_series[0]
    k = 100
    t_open = int(s.time[k])
    sim = await start_sim([s], start_ms=t_open + HOUR - 1, speed=0.0)
    async with ExchangeClient.from_config(fast_config(history_candles=5), url=sim.url, environ={}) as client:
        first = await client.fetch_new_candles([s.symbol])
        assert first.candles[s.symbol][-1].time == int(s.time[k - 1])
        sim.clock.set(t_open + HOUR)
        second = await client.fetch_new_candles([s.symbol])
        assert [list(c) for c in second.candles[s.symbol]] == rows_of(s, k, k + 1)
        again = await client.fetch_new_candles([s.symbol])
        assert again.up_to_date == (s.symbol,) and again.requests == 1  # server time only


async def test_at_speed_x_candles_arrive_as_the_simulated_hours_pass(start_sim, bundled_series) -> None:
    """At 36000× an hour lasts 0.1 s: every pass returns exactly the candles whose close the
    exchange's clock has passed, and candles keep arriving in order, each equal to the file's."""
    s = bundled_series[0]
    k = 200
    sim = await start_sim([s], start_ms=int(s.time[k]) + HOUR // 2, speed=36_000.0)
    seen: list[list[float]] = []
    async with ExchangeClient.from_config(fast_config(history_candles=3), url=sim.url, environ={}) as client:
        for _ in range(40):
            r = await client.fetch_new_candles([s.symbol])
            for c in r.candles[s.symbol]:
                assert c.time + HOUR <= r.server_time  # closed by the exchange's clock
            seen.extend(list(c) for c in r.candles[s.symbol])
            if len(seen) >= 8:
                break
            await asyncio.sleep(0.03)
    first = int(np.searchsorted(s.time, seen[0][0]))
    assert seen == rows_of(s, first, first + len(seen))
    assert len(seen) >= 8


async def test_partial_candle_and_ticker_come_from_the_same_clock(start_sim, bundled_series) -> None:
    s = bundled_series[0]
    k = 321
    o, h, lo, _c, v = (float(x[k]) for x in (s.open, s.high, s.low, s.close, s.volume))
    sim = await start_sim([s], start_ms=int(s.time[k]) + HOUR // 2)
    ex = plain_binance(sim.url)
    try:
        last = (await ex.fetch_ohlcv(s.symbol, "1h", limit=2))[-1]
        ticker = await ex.fetch_ticker(s.symbol)
    finally:
        await ex.close()
    assert last[0] == int(s.time[k])
    assert last[1] == o and lo <= last[3] <= last[2] <= h and lo <= last[4] <= h
    assert 0 < last[5] < v
    assert ticker["last"] == last[4]
    assert sim.markets[s.symbol.replace("/", "")].last_price(sim.clock.now_ms()) == last[4]


def test_partial_candle_walks_from_open_to_the_full_candle(bundled_series) -> None:
    m = SimMarket(bundled_series[0])
    s = bundled_series[0]
    k = 50
    t = int(s.time[k])
    full = tuple(float(x[k]) for x in (s.open, s.high, s.low, s.close, s.volume))
    o = full[0]
    assert m.candle(k, t)[:4] == (o, o, o, o) and m.candle(k, t)[4] == 0
    assert m.candle(k, t + HOUR) == full
    prev_h, prev_l = o, o
    for step in range(1, 60):
        co, ch, cl, cc, _cv = m.candle(k, t + step * HOUR // 60)
        assert co == o and full[2] <= cl <= cc <= ch <= full[1]
        assert ch >= prev_h and cl <= prev_l  # the range only widens
        prev_h, prev_l = ch, cl


def test_clock_speed_and_controls() -> None:
    now = [100.0]
    clock = SimClock(1_000, speed=10.0, timer=lambda: now[0])
    now[0] += 1.5
    assert clock.now_ms() == 1_000 + 15_000
    clock.advance(5)
    clock.set_speed(0.0)
    now[0] += 100
    assert clock.now_ms() == 16_005
    clock.set(7)
    assert clock.now_ms() == 7
    with pytest.raises(ValueError):
        SimClock(0, speed=-1)
    with pytest.raises(ValueError):
        SimClock(0, speed=math.inf)


async def test_unknown_paths_are_logged_404s_and_klines_errors_are_binance_shaped(
    start_sim, bundled_series, caplog
) -> None:
    sim = await start_sim(bundled_series, start_ms=int(bundled_series[0].time[-1]))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/api/v3/depth?symbol=BTCUSDT") as r:
            assert r.status == 404
        async with http.get(f"{sim.url}/api/v3/klines?symbol=NOPEUSDT&interval=1h") as r:
            assert r.status == 400 and (await r.json())["code"] == -1121
        async with http.get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=5m") as r:
            assert r.status == 400 and (await r.json())["code"] == -1120
        async with http.get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=5000") as r:
            assert r.status == 400
        async with http.get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1h&startTime=x") as r:
            assert r.status == 400 and (await r.json())["code"] == -1100
        async with http.get(f"{sim.url}/sim/stats") as r:
            stats = await r.json()
    assert stats["unknown"] == {"GET /api/v3/depth": 1}
    assert "unknown path GET /api/v3/depth" in caplog.text


async def test_symbols_list_only_from_their_first_candle(start_sim, bundled_series) -> None:
    """A pair that lists mid-period is absent from markets and tickers before its first candle."""
    late = max(bundled_series, key=lambda s: int(s.time[0]))
    early = min(int(s.time[0]) for s in bundled_series)
    assert int(late.time[0]) > early
    sim = await start_sim(bundled_series)
    assert sim.clock.now_ms() == early
    ex = plain_binance(sim.url)
    try:
        assert late.symbol not in await ex.load_markets()
        sim.clock.set(int(late.time[0]))
        assert late.symbol in await ex.load_markets(reload=True)
    finally:
        await ex.close()


def test_bad_series_are_refused(bundled_series) -> None:
    s = bundled_series[0]
    odd = CandleSeries("ODD", s.timeframe_ms, s.time, s.open, s.high, s.low, s.close, s.volume, "odd.feather")
    with pytest.raises(ValueError, match="BASE_QUOTE"):
        SimExchange([odd])
    with pytest.raises(ValueError, match="no candle series"):
        SimExchange([])
