"""The Rust replay against the pure-Python reference of docs/HLD.md ("Decision rules"), trade for trade.

Every comparison is exact: the same trades in the same order (variant, symbol, entry and exit time,
exit reason), the same prices, quantities, stop percentages, ATRs, P&L and fees to the last bit, the
same positions left open, the same balances, equity curves and skip counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sigil
from sigil import _core
from sigil.config import Config, load_config
from sigil.data import CandleSeries, load_universe
from sigil.research.replay import ReplayResult, replay_series
from tests.reference import ENGINE_STOP_PCT_RULE, ReferenceResult, differences
from tests.reference import replay as reference_replay

REPO = Path(__file__).resolve().parents[1]
LEGACY_FIXED3 = REPO / "config" / "legacy" / "fixed3.yaml"
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def with_overrides(config: Config, **overrides: Any) -> Config:
    """``config`` with the same overrides applied to every variant (validated by the Variant model)."""
    variants = tuple(type(v).model_validate({**v.model_dump(), **overrides}) for v in config.variants)
    return config.model_copy(update={"variants": variants})


def run_both(
    series: Sequence[CandleSeries], config: Config, stop_pct_rule: str = ENGINE_STOP_PCT_RULE
) -> tuple[ReplayResult, ReferenceResult]:
    """The engine's and the reference's replay of the same series and variants."""
    engine = replay_series(series, config)
    ref = reference_replay(series, [v.engine_params() for v in config.variants], stop_pct_rule=stop_pct_rule)
    return engine, ref


def assert_same(engine: ReplayResult, ref: ReferenceResult) -> None:
    """Fails with the first differences, named, when the engine and the reference disagree at all."""
    diffs = differences(engine, ref)
    assert not diffs, "engine and reference disagree:\n" + "\n".join(diffs)


def series_of(
    symbol: str, rows: Sequence[tuple[float, float, float, float, float]], **kw: Any
) -> CandleSeries:
    """A 1h series from ``(open, high, low, close, volume)`` rows; ``times`` (open times) optional."""
    times = kw.get("times") or [T0 + i * HOUR for i in range(len(rows))]
    cols = [np.array([r[k] for r in rows], dtype=np.float64) for k in range(5)]
    s = CandleSeries(symbol, HOUR, np.array(times, dtype=np.int64), *cols, source=f"<{symbol}>")
    s.validate()
    return s


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled(bundled_data: Path) -> list[CandleSeries]:
    """The seven bundled 1h files."""
    series = load_universe([bundled_data])
    assert len(series) == 7
    return series


def test_bundled_data_shipped_config(bundled: list[CandleSeries]) -> None:
    """The demo input through the four shipped variants: identical trades, positions, balances, skips."""
    engine, ref = run_both(bundled, load_config())
    assert_same(engine, ref)
    # Enough happened for the agreement to mean something.
    reasons = {t.exit_reason for t in engine.trades}
    assert len(engine.trades) > 1000 and {"atr_trail", "hard_stop"} <= reasons
    assert all(engine.metrics[v].skips["open"] > 0 for v in engine.variants)


def _more_than_one_reentry_on_exit_candle(engine: ReplayResult) -> bool:
    """With no cooldown, a position may reopen on the candle that closed the previous one."""
    last_exit: dict[tuple[str, str], int] = {}
    hits = 0
    for t in sorted(engine.trades, key=lambda t: t.entry_time):
        hits += last_exit.get((t.variant, t.symbol)) == t.entry_time
        last_exit[(t.variant, t.symbol)] = t.exit_time
    return hits > 1


#: Overrides (applied to every shipped variant) that drive the rarer paths, and a check that the path
#: was taken, so that agreement is not agreement on nothing.
RARE_PATHS: dict[str, tuple[dict[str, Any], Callable[[ReplayResult], bool]]] = {
    "time_stop": (
        {"time_stop_candles": 6},
        lambda e: sum(t.exit_reason == "time_stop" for t in e.trades) > 100,
    ),
    "time_stop_one_candle": (
        {"time_stop_candles": 1},
        lambda e: sum(t.exit_reason == "time_stop" for t in e.trades) > 100,
    ),
    "breakout_buffer": (
        {"breakout_buffer": 0.01},
        lambda e: 0 < len(e.trades) < 1400,  # the shipped config makes 1,656 trades on this data
    ),
    "tiny_balance": (
        {"starting_balance": 250.0},
        lambda e: all(m.skips["balance"] > 0 for m in e.metrics.values()),
    ),
    "max_open_1": (
        {"max_open": 1},
        lambda e: all(m.skips["max_open"] > 0 for m in e.metrics.values()),
    ),
    "cooldown_0": (
        {"cooldown_candles": 0},
        lambda e: (
            all(m.skips["cooldown"] == 0 for m in e.metrics.values())
            and _more_than_one_reentry_on_exit_candle(e)
        ),
    ),
    "long_cooldown": (
        {"cooldown_candles": 48},
        lambda e: all(m.skips["cooldown"] > 20 for m in e.metrics.values()),
    ),
    "trail_from_entry": (
        {"trail_activation": 0.0, "trail_mult": 1.0},
        lambda e: sum(t.exit_reason == "atr_trail" for t in e.trades) > 1000,
    ),
    "no_costs": (
        # Fills exactly at the stop level: ties between a low and the level become likelier.
        {"fee_rate": 0.0, "slippage": 0.0},
        lambda e: (
            all(t.fees == 0.0 for t in e.trades)
            and any(t.exit_price == t.entry_price * (1 - t.stop_pct) for t in e.trades)
        ),
    ),
    "short_windows_narrow_atr_band": (
        {"atr_period": 3, "lookback": 2, "volume_mult": 1.0, "atr_min_pct": 0.01, "atr_max_pct": 0.03},
        lambda e: (
            len(e.trades) > 500
            and all(
                0.01 - 1e-12 <= t.atr_at_entry / (t.entry_price / 1.0005) <= 0.03 + 1e-12 for t in e.trades
            )
        ),
    ),
    "wide_stops": (
        {"stop_k": 2.0, "stop_floor": 0.02, "stop_cap": 0.1},
        lambda e: (
            {0.02, 0.1} <= {t.stop_pct for t in e.trades} and any(0.06 < t.stop_pct < 0.1 for t in e.trades)
        ),
    ),
}


@pytest.mark.parametrize("case", list(RARE_PATHS))
def test_bundled_data_rare_paths(bundled: list[CandleSeries], case: str) -> None:
    """Variant overrides that exercise the time stop, the buffer, the balance and max_open skips, etc."""
    overrides, exercised = RARE_PATHS[case]
    engine, ref = run_both(bundled, with_overrides(load_config(), **overrides))
    assert_same(engine, ref)
    assert exercised(engine), f"{case}: the path this case is for was not taken"


def test_bundled_data_with_legacy_fixed3(bundled: list[CandleSeries]) -> None:
    """The pre-fix posture (fixed 3 % stop) beside the four variants."""
    config = load_config(extra_variants=(LEGACY_FIXED3,))
    assert [v.name for v in config.variants][-1] == "legacy_fixed3"
    engine, ref = run_both(bundled, config)
    assert_same(engine, ref)
    legacy = [t for t in engine.trades if t.variant == "legacy_fixed3"]
    assert legacy and all(t.stop_pct == 0.03 for t in legacy)


@pytest.mark.long
def test_universe_1h(shared_data: Path) -> None:
    """All 109 pairs of universe-1h (605,090 candles), shipped variants plus the legacy posture.

    The reference takes a few seconds on it (measured ≈ 6 s here), so the whole universe runs.
    """
    series = load_universe([shared_data / "universe-1h"])
    assert sum(len(s) for s in series) == 605_090
    engine, ref = run_both(series, load_config(extra_variants=(LEGACY_FIXED3,)))
    assert_same(engine, ref)
    assert len(engine.trades) > 5000
    # Pairs list mid-period: symbols start at different times.
    assert len({int(s.time[0]) for s in series}) > 1


def test_messy_file(shared_data: Path) -> None:
    """UNITTEST_BTC-1m: 717 missing minutes and 14 % zero-range candles, with shipped and short windows."""
    series = load_universe([shared_data / "candles" / "UNITTEST_BTC-1m.json"])
    assert np.any(np.diff(series[0].time) > 60_000) and np.any(series[0].high == series[0].low)
    for config in (load_config(), with_overrides(load_config(), atr_period=3, lookback=2, volume_mult=0.5)):
        engine, ref = run_both(series, config)
        assert_same(engine, ref)
        assert len(engine.trades) > 50


def test_intraday_files_mixed_timeframes(shared_data: Path) -> None:
    """1m, 5m, 15m and 1h files in one replay: the merge by (close time, symbol) across timeframes."""
    names = [
        "UNITTEST_BTC-1m.json",
        "DOGE_USDT-1m.json",
        "TST_USDT-5m.feather",
        "DOGS_USDT-5m.feather",
        "PEPE_USDT-5m.feather",
        "PSG_USDT-15m.feather",
        "NFP_USDT-1h.feather",
    ]
    series = load_universe([shared_data / "candles" / n for n in names])
    assert {s.timeframe_ms for s in series} == {60_000, 300_000, 900_000, HOUR}
    engine, ref = run_both(series, load_config())
    assert_same(engine, ref)
    assert {t.symbol for t in engine.trades} == {s.symbol for s in series}


# --------------------------------------------------------------------------------------------------
# The known divergence: the operation order of the stop formula
# --------------------------------------------------------------------------------------------------


def test_stop_pct_is_the_public_formula_of_the_signal_candle(bundled: list[CandleSeries]) -> None:
    """HLD: ``stop_pct = min(cap, max(floor, k * (ATR_i / close_i)))``, the public ``hard_stop_pct``.

    Checked bit for bit on every trade against the public function, with ATR_i and close_i looked up
    from the signal candle (the one whose close time is the entry time).
    """
    config = load_config()
    result = replay_series(bundled, config)
    by_symbol = {s.symbol: s for s in bundled}
    atr_of = {s.symbol: sigil.atr(s.high, s.low, s.close) for s in bundled}
    assert result.trades
    for t in result.trades:
        s = by_symbol[t.symbol]
        (i,) = (s.time == t.entry_time - s.timeframe_ms).nonzero()[0]
        v = config.variant(t.variant)
        assert t.atr_at_entry == pytest.approx(float(atr_of[t.symbol][i]), rel=1e-12)
        want = sigil.hard_stop_pct(t.atr_at_entry / float(s.close[i]), v.stop_k, v.stop_floor, v.stop_cap)
        assert t.stop_pct == want, (t.variant, t.symbol, t.entry_time)


# --------------------------------------------------------------------------------------------------
# Hand-made candles: each pins down one reading of the spec, against both implementations
# --------------------------------------------------------------------------------------------------


def small_config(**overrides: Any) -> Config:
    """One variant with tiny windows, a fixed 5 % stop, no costs and an open ATR band: easy numbers."""
    base = {
        "lookback": 2,
        "atr_period": 2,
        "volume_mult": 0.0,
        "atr_min_pct": 0.0,
        "atr_max_pct": 10.0,
        "stop_k": 0.0,
        "stop_floor": 0.05,
        "stop_cap": 0.05,
        "fee_rate": 0.0,
        "slippage": 0.0,
        "trail_activation": 1.0,
        "trail_mult": 1.0,
        "cooldown_candles": 0,
        "max_open": 5,
        "time_stop_candles": 0,
    }
    config = load_config()
    variant = type(config.variants[0]).model_validate(
        {**config.variants[0].model_dump(), **base, **overrides}
    )
    return config.model_copy(update={"variants": (variant,)})


FLAT = (100.0, 101.0, 99.0, 100.0, 1.0)
#: Three flat candles (ATR(2) ready at index 2, = 2.0), then a breakout closing at 103 (ATR_3 = 2.5):
#: an entry at 103 with a 5 % hard stop at 97.85, entry_time = close of candle 3 = T0 + 4h.
ENTRY = [FLAT, FLAT, FLAT, (100.0, 103.0, 100.0, 103.0, 1.0)]


def test_gap_below_the_stop_fills_at_the_open_stamped_with_the_close_time() -> None:
    """Gap fill: ``open_i <= level`` sells at ``open_i``; the trade is stamped with that candle's close."""
    engine, ref = run_both([series_of("GAP/USDT", [*ENTRY, (95.0, 96.0, 94.0, 95.0, 1.0)])], small_config())
    assert_same(engine, ref)
    (t,) = engine.trades
    assert (t.entry_time, t.exit_time, t.exit_reason) == (T0 + 4 * HOUR, T0 + 5 * HOUR, "hard_stop")
    assert (t.entry_price, t.exit_price, t.stop_pct) == (103.0, 95.0, 0.05)


def test_stop_is_tested_against_the_low_before_the_high_raises_the_trail() -> None:
    """Candle 4 activates the trail at 110 - ATR_3 = 107.5; candle 5 dips to 107 then rises to 115.

    The conservative order sells at 107.5 (the level before candle 5), not at a trail the high of 115
    would have raised.
    """
    rows = [*ENTRY, (103.0, 110.0, 102.0, 109.0, 1.0), (108.0, 115.0, 107.0, 114.0, 1.0)]
    engine, ref = run_both([series_of("TRL/USDT", rows)], small_config())
    assert_same(engine, ref)
    (t,) = engine.trades
    assert (t.exit_reason, t.exit_price, t.exit_time) == ("atr_trail", 107.5, T0 + 6 * HOUR)


def test_trail_highest_starts_at_the_entry_price() -> None:
    """Reading: "the highest price since entry" starts at ``entry_price``.

    With activation 0, candle 4 (high 102.9 < entry 103) activates the trail at 103 - 2.5 = 100.5; candle
    5 dips to 100 and exits there. Had ``highest`` started below the entry, nothing would exit.
    """
    rows = [*ENTRY, (102.5, 102.9, 102.0, 102.5, 1.0), (101.0, 101.5, 100.0, 101.0, 1.0)]
    engine, ref = run_both([series_of("HIG/USDT", rows)], small_config(trail_activation=0.0))
    assert_same(engine, ref)
    (t,) = engine.trades
    assert (t.exit_reason, t.exit_price) == ("atr_trail", 100.5)
    # The engine's own state after the entry candle: highest == entry_price (with slippage, not the close).
    config = small_config(slippage=0.0005)
    raw = _core.replay([series_of("HIG/USDT", ENTRY).engine_tuple()], [config.variants[0].engine_params()])
    (entry_price,) = raw["open_positions"]["entry_price"]
    assert entry_price == 103.0 * 1.0005
    assert list(raw["open_positions"]["highest"]) == [entry_price]


def test_time_stop_counts_candles_of_the_symbol_not_hours() -> None:
    """``time_stop_candles = 2`` exits at the close of the 2nd candle after the entry, across a 6 h gap."""
    hold = (103.0, 104.0, 102.0, 103.5, 1.0)
    times = [T0 + i * HOUR for i in range(4)] + [T0 + 10 * HOUR, T0 + 11 * HOUR]
    engine, ref = run_both(
        [series_of("TIM/USDT", [*ENTRY, hold, hold], times=times)], small_config(time_stop_candles=2)
    )
    assert_same(engine, ref)
    (t,) = engine.trades
    assert (t.exit_reason, t.exit_time, t.exit_price) == ("time_stop", T0 + 12 * HOUR, 103.5)


def test_open_is_the_skip_reason_while_open_even_when_also_cooling_down() -> None:
    """A second breakout while the first position is open (and protected) is skipped as ``open``."""
    rows = [*ENTRY, (103.0, 106.0, 103.0, 105.0, 1.0)]
    engine, ref = run_both([series_of("SKP/USDT", rows)], small_config(cooldown_candles=10))
    assert_same(engine, ref)
    assert engine.metrics[engine.variants[0]].skips == {"open": 1, "cooldown": 0, "max_open": 0, "balance": 0}
    assert len(engine.open_positions) == 1


def test_cooldown_runs_from_the_open_and_survives_the_close() -> None:
    """Cooldown 3 candles from the entry at T0+4h: a breakout at T0+6h after a stop-out is a cooldown skip,
    one at T0+7h (= entry + 3 candles, not before ``protected_until``) opens again.
    """
    rows = [
        *ENTRY,
        (95.0, 96.0, 94.0, 95.0, 1.0),  # candle 4: gap exit
        (95.0, 104.0, 95.0, 104.0, 1.0),  # candle 5 closes T0+6h: breakout, cooling down until T0+7h
        (104.0, 106.0, 104.0, 106.0, 1.0),  # candle 6 closes T0+7h: breakout, opens
    ]
    engine, ref = run_both([series_of("CDN/USDT", rows)], small_config(cooldown_candles=3))
    assert_same(engine, ref)
    assert engine.metrics[engine.variants[0]].skips["cooldown"] == 1
    assert [p.entry_time for p in engine.open_positions] == [T0 + 7 * HOUR]


def test_volume_sum_adds_the_entering_candle_before_the_oldest_leaves() -> None:
    """Reading of the running volume sum with ``L = 1``: ``vsum = (vsum + v_in) - v_out``.

    Volumes 1e16 then 1: ``(1e16 + 1) - 1e16`` is 0.0 in doubles (``(1e16 - 1e16) + 1`` would be 1), so
    candle 2 with volume 0.5 passes ``0.5 >= 1 * (vsum / 1)`` and opens.
    """
    rows = [
        (100.0, 101.0, 99.0, 100.0, 1e16),
        (100.0, 101.0, 99.0, 100.0, 1.0),
        (100.0, 103.0, 100.0, 103.0, 0.5),
    ]
    engine, ref = run_both(
        [series_of("VOL/USDT", rows)], small_config(lookback=1, atr_period=1, volume_mult=1.0)
    )
    assert_same(engine, ref)
    assert [p.entry_time for p in engine.open_positions] == [T0 + 3 * HOUR]


def test_symbols_closing_together_are_taken_in_name_order() -> None:
    """Two symbols break out on the same close with ``max_open = 1``: the first by name opens."""
    rows = [*ENTRY]
    given = [series_of("ZZZ/USDT", rows), series_of("AAA/USDT", rows)]  # not in name order
    engine, ref = run_both(given, small_config(max_open=1))
    assert_same(engine, ref)
    assert [p.symbol for p in engine.open_positions] == ["AAA/USDT"]
    assert engine.metrics[engine.variants[0]].skips["max_open"] == 1
