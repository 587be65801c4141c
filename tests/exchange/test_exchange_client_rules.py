"""The client's rules without a network: candle validation, the gap policy, Retry-After, backoff,
request planning."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sigil.exchange.candle_rows import MAX_BAD_REPEATS, Candle, candle_problem
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.ccxt_hooks import retry_after
from tests.support.exchange import fast_config

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ([T0, 1.0, 2.0, 0.5, 1.5, 10.0], None),
        ([T0, 1.0, 1.0, 1.0, 1.0, 0.0], None),
        ([T0, math.nan, 2.0, 0.5, 1.5, 10.0], "not_finite"),
        ([T0, 1.0, 2.0, 0.5, 1.5, math.inf], "not_finite"),
        ([T0, 1.0, 0.5, 2.0, 1.5, 10.0], "high_below_low"),
        ([T0, 3.0, 2.0, 0.5, 1.5, 10.0], "outside_range"),
        ([T0, 1.0, 2.0, 0.5, 0.4, 10.0], "outside_range"),
        ([T0, 0.0, 2.0, 0.0, 1.5, 10.0], "not_positive"),
        ([T0, 1.0, 2.0, 0.5, 1.5, -1.0], "negative_volume"),
        ([T0, None, 2.0, 0.5, 1.5, 10.0], "missing"),
        ([T0, 1.0, 2.0], "missing"),
        ([None, 1.0, 2.0, 0.5, 1.5, 10.0], "missing"),
        ([1.5, 1.0, 2.0, 0.5, 1.5, 10.0], "bad_time"),
    ],
)
def test_candle_problems(row: list[object], problem: str | None) -> None:
    assert candle_problem(row) == problem


def row(i: int, close: float = 1.5) -> list[float]:
    return [T0 + i * HOUR, 1.0, 2.0, 0.5, close, 10.0]


async def test_a_candle_bad_in_consecutive_passes_becomes_a_gap() -> None:
    """A pass stops at a malformed candle (asked for again later); after MAX_BAD_REPEATS passes of
    the same bad candle the exchange's data is taken as bad and the candle left as a gap."""
    async with ExchangeClient.from_config(fast_config(history_candles=10), url="http://127.0.0.1:1") as c:
        now = T0 + 5 * HOUR + 1
        got, stopped = c._accept("X/USDT", [row(0), row(1), row(2, math.nan), row(3)], now)
        assert [x.time for x in got] == [T0, T0 + HOUR] and stopped
        assert got[0] == Candle(T0, 1.0, 2.0, 0.5, 1.5, 10.0)
        # the same pass asking again does not count as another pass
        assert c._accept("X/USDT", [row(2, math.nan), row(3)], now) == ([], True)
        for p in range(2, MAX_BAD_REPEATS):
            assert c._accept("X/USDT", [row(2, math.nan), row(3)], now + p) == ([], True)
        got, stopped = c._accept("X/USDT", [row(2, math.nan), row(3), row(4), row(5)], now + 99)
        assert [x.time for x in got] == [T0 + 3 * HOUR, T0 + 4 * HOUR] and not stopped  # 5 is in progress
        assert c.stats.dropped["not_finite"] == MAX_BAD_REPEATS + 1 and c.stats.incomplete == 1
        assert c.last_candle_time("X/USDT") == T0 + 4 * HOUR
        # repeats and stale rows are dropped without stopping
        got, _ = c._accept("X/USDT", [row(4), row(3), row(5)], now + HOUR)
        assert [x.time for x in got] == [T0 + 5 * HOUR] and c.stats.dropped["duplicate"] == 1
        assert c.stats.dropped["out_of_order"] == 1


async def test_request_planning() -> None:
    async with ExchangeClient.from_config(fast_config(history_candles=10), url="http://127.0.0.1:1") as c:
        now = T0 + 100 * HOUR + 123
        assert c._plan("X/USDT", now) == (T0 + 90 * HOUR, 11)  # 10 closed + the one in progress
        c._last["X/USDT"] = T0 + 98 * HOUR
        assert c._plan("X/USDT", now) == (T0 + 99 * HOUR, 2)
        c._last["X/USDT"] = T0 + 99 * HOUR
        assert c._plan("X/USDT", now) is None  # the next candle closes at T0 + 101h
        c._last["X/USDT"] = T0  # long outage: every candle since the last one, none skipped
        assert c._plan("X/USDT", now) == (T0 + HOUR, 100)
        c._last.clear()
        c.start_at(T0 + 50 * HOUR)  # resuming from further back than history_candles
        assert c._plan("X/USDT", now) == (T0 + 50 * HOUR, 51)


def test_retry_after_forms() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "0.25"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after({"Retry-After": later}) or 0) <= 31
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Content-Type": "x"}) is None and retry_after(None) is None


async def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    cfg = fast_config(backoff_base_s=1.0, backoff_max_s=8.0)
    async with ExchangeClient.from_config(cfg, url="http://127.0.0.1:1", rng=random.Random(1)) as c:
        for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
            waits = [c._backoff(attempt) for _ in range(200)]
            assert min(waits) >= full / 2 and max(waits) <= full and max(waits) - min(waits) > full / 4


async def test_unknown_exchange_and_timeframe_are_config_errors() -> None:
    from sigil.errors import ConfigError

    with pytest.raises(ConfigError, match="not an exchange ccxt knows"):
        ExchangeClient.from_config(fast_config(id="nosuchexchange"), environ={})
    with pytest.raises(ConfigError, match="has no '7h' candles"):
        ExchangeClient.from_config(fast_config(timeframe="7h"), environ={})
