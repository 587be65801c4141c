"""The stateful ``Engine`` (what the daemon drives) decides exactly as replay does on the same candles."""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np
import pytest

from sigil import _core
from sigil.config import load_config
from sigil.data import load_universe
from sigil.research.replay import replay_series

REPO = Path(__file__).resolve().parents[1]


def drive(engine: _core.Engine, series: list, params: list[dict]) -> list[tuple]:
    """Candle by candle through the Python-facing API, carrying out every intent with paper fills."""
    ids = {
        s.symbol: engine.add_symbol(s.symbol, s.timeframe_ms) for s in sorted(series, key=lambda s: s.symbol)
    }
    heap = [(int(s.time[0]) + s.timeframe_ms, s.symbol, 0, s) for s in series if len(s)]
    heapq.heapify(heap)
    trades = []
    while heap:
        _, name, i, s = heapq.heappop(heap)
        if i + 1 < len(s):
            heapq.heappush(heap, (int(s.time[i + 1]) + s.timeframe_ms, name, i + 1, s))
        sid = ids[name]
        row = (int(s.time[i]), s.open[i], s.high[i], s.low[i], s.close[i], s.volume[i])
        for c in engine.exits(sid, *row):
            p = params[c.variant]
            pos = engine.position(c.variant, c.symbol)
            assert pos is not None
            fill, gross, fee, _ = _core.sell_fill(c.price, pos.qty, p["fee_rate"], p["slippage"])
            tr = engine.apply_close(c.variant, c.symbol, c.time, fill, gross, fee, c.reason)
            trades.append(
                (
                    c.variant,
                    name,
                    tr.position.entry_time,
                    tr.exit_time,
                    tr.exit_price,
                    tr.exit_reason.value,
                    tr.pnl,
                )
            )
        for intent in engine.signals(sid):
            if isinstance(intent, _core.OpenIntent):
                p = params[intent.variant]
                fill, qty, fee, _ = _core.buy_fill(intent.price, p["stake"], p["fee_rate"], p["slippage"])
                engine.apply_open(
                    intent.variant,
                    intent.symbol,
                    intent.time,
                    fill,
                    qty,
                    fee,
                    p["stake"],
                    intent.stop_pct,
                    intent.atr,
                )
    return trades


def test_engine_driven_from_python_equals_replay() -> None:
    cfg = load_config()
    series = load_universe([REPO / "data"])
    params = [v.engine_params() for v in cfg.variants]
    engine = _core.Engine(params)
    got = drive(engine, series, params)
    result = replay_series(series, cfg)
    names = list(result.variants)
    want = [
        (names.index(t.variant), t.symbol, t.entry_time, t.exit_time, t.exit_price, t.exit_reason, t.pnl)
        for t in result.trades
    ]
    assert len(got) > 100
    assert got == want
    for k, name in enumerate(names):
        assert engine.balance(k) == result.metrics[name].balance


def test_restore_and_live_price_exit() -> None:
    cfg = load_config()
    params = [v.engine_params() for v in cfg.variants]
    e = _core.Engine(params)
    s = e.add_symbol("TST/USDT", 3_600_000)
    assert e.add_symbol("TST/USDT", 3_600_000) == s
    e.restore_position(0, s, 0, 100.0, 1.0, 100.0, 0.1, 0.05, 2.0, 100.0, False, None, 0, 12 * 3_600_000)
    assert e.blocked(0, s, 1) is _core.SkipReason.OPEN
    pos = e.position(0, s)
    assert pos is not None and pos.stop_price == pytest.approx(95.0)
    assert e.on_price(s, 10, 96.0) == []
    (close,) = e.on_price(s, 20, 94.0)
    assert (close.variant, close.symbol, close.time, close.price, close.reason) == (
        0,
        s,
        20,
        94.0,
        _core.ExitReason.HARD_STOP,
    )
    e.apply_close(0, s, 20, 94.0, 94.0, 0.094, _core.ExitReason.HARD_STOP)
    assert e.position(0, s) is None
    assert e.blocked(0, s, 21) is _core.SkipReason.COOLDOWN, "the cooldown from the open outlives the close"
    assert e.blocked(0, s, 12 * 3_600_000) is None


def test_bad_input_is_value_error() -> None:
    params = [v.engine_params() for v in load_config().variants]
    e = _core.Engine(params)
    s = e.add_symbol("X/USDT", 60_000)
    with pytest.raises(ValueError, match="high < low"):
        e.exits(s, 0, 1.0, 0.5, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="not finite"):
        e.exits(s, 0, math.nan, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no new candle"):
        e.signals(s)
    with pytest.raises(ValueError, match="unknown symbol"):
        e.on_price(99, 0, 1.0)
    with pytest.raises(ValueError, match="unknown exit reason"):
        _core.ExitReason.parse("whatever")
    with pytest.raises(ValueError, match="no open position"):
        e.apply_close(0, s, 0, 1.0, 1.0, 0.0, _core.ExitReason.HARD_STOP)
    bad = dict(params[0], stop_floor=0.07)
    with pytest.raises(ValueError, match="floor"):
        _core.Engine([bad])
    with pytest.raises(KeyError, match="lookback"):
        _core.Engine([{k: v for k, v in params[0].items() if k != "lookback"}])


def test_engine_errors_are_value_errors_naming_field_and_index() -> None:
    params = [v.engine_params() for v in load_config().variants]
    e = _core.Engine(params)
    s = e.add_symbol("X/USDT", 60_000)
    with pytest.raises(_core.EngineError) as bad_price:
        e.exits(s, 0, math.nan, 1.0, 1.0, 1.0, 1.0)
    assert isinstance(bad_price.value, ValueError)
    assert (bad_price.value.field, bad_price.value.index) == ("open", 0)
    with pytest.raises(_core.EngineError) as unknown:
        e.on_price(99, 0, 1.0)
    assert (unknown.value.field, unknown.value.index) == ("symbol", 99)
    with pytest.raises(_core.EngineError) as bad_param:
        _core.Engine([dict(params[0], stop_floor=0.07)])
    assert bad_param.value.field == "stop_floor" and bad_param.value.index is None
    assert 'variant "baseline"' in str(bad_param.value)
    with pytest.raises(_core.EngineError) as atr_error:
        _core.atr(np.array([1.0, 2.0]), np.array([1.0, 3.0]), np.array([1.0, 2.0]))
    assert atr_error.value.index == 1


def test_reason_vocabulary_is_the_engines() -> None:
    assert [r.value for r in _core.ExitReason.all()] == ["hard_stop", "atr_trail", "time_stop", "manual"]
    assert [r.code for r in _core.ExitReason.all()] == [0, 1, 2, 3]
    assert [r.value for r in _core.SkipReason.all()] == ["open", "cooldown", "max_open", "balance"]
    assert _core.SkipReason.parse("max_open") is _core.SkipReason.MAX_OPEN
    assert str(_core.ExitReason.ATR_TRAIL) == "atr_trail"
    with pytest.raises(ValueError, match="unknown skip reason"):
        _core.SkipReason.parse("later")
