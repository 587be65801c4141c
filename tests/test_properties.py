"""Property-based tests (hypothesis) of the stop formula, fills, ATR, the guard table and the replay.

The strongest check is ``test_replay_matches_reference_on_generated_candles``: small random candle
series (prices on a tick grid, so that ties like ``low == level`` and ``close == hh`` happen; gaps in time;
several symbols and timeframes) through random variants, the Rust replay against the pure-Python
reference of docs/HLD.md, compared bit for bit. The other replay properties read only the engine's
output and the candles, so they hold whatever the reference says.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import sigil
from sigil import _core
from sigil.config import Config, load_config
from sigil.data import CandleSeries
from sigil.research.replay import ReplayResult, Trade, replay_series
from tests.reference import ENGINE_STOP_PCT_RULE, differences
from tests.reference import replay as reference_replay
from tests.reference.engine import WilderAtr, buy, hard_stop_pct, sell

SHIPPED = load_config()
VariantModel = type(SHIPPED.variants[0])
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
TIMEFRAMES = (60_000, 300_000, 3_600_000)
#: Examples per replay property: 100 in `make test`; `make long` asks for more (SIGIL_PROPERTY_EXAMPLES).
EXAMPLES = int(os.environ.get("SIGIL_PROPERTY_EXAMPLES", "100"))
REPLAY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

#: One candle as moves on a tick grid: (close - open, open - previous close, upper wick, lower wick,
#: volume, missing candles before it). Gaps down of 15 ticks (≈ 15 % at 100 ticks) jump over stops.
STEP = st.tuples(
    st.integers(-5, 6),
    st.sampled_from((0, 0, 0, 0, 1, -1, -4, -15)),
    st.integers(0, 4),
    st.integers(0, 4),
    st.sampled_from((0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 20.0)),
    st.sampled_from((0, 0, 0, 0, 0, 0, 0, 1, 3)),
)


@st.composite
def candle_series(draw: st.DrawFn, symbol: str, max_candles: int = 60, min_candles: int = 1) -> CandleSeries:
    """A valid series of ``symbol``: positive prices, low <= open/close <= high, strictly rising times."""
    tick = draw(st.sampled_from((1.0, 0.01, 1e-7, 250.0)))
    tf = draw(st.sampled_from(TIMEFRAMES))
    price = draw(st.integers(40, 160))
    t = T0 + draw(st.integers(0, 30)) * 3_600_000
    rows: list[tuple[int, float, float, float, float, float]] = []
    steps = draw(st.lists(STEP, min_size=min(min_candles, max_candles), max_size=max_candles))
    for move, gap, up, down, volume, missing in steps:
        t += missing * tf
        o = max(1, price + gap)
        c = max(1, o + move)
        h = max(o, c) + up
        lo = max(1, min(o, c) - down)
        rows.append((t, o * tick, h * tick, lo * tick, c * tick, volume))
        price = c
        t += tf
    cols = list(zip(*rows, strict=True))
    s = CandleSeries(
        symbol,
        tf,
        np.array(cols[0], dtype=np.int64),
        *(np.array(col, dtype=np.float64) for col in cols[1:]),
        source=f"<generated {symbol}>",
    )
    s.validate()
    return s


@st.composite
def universes(draw: st.DrawFn, max_symbols: int = 3, max_candles: int = 80) -> list[CandleSeries]:
    """One to ``max_symbols`` symbols, each with its own timeframe, start and length."""
    names = draw(
        st.lists(
            st.sampled_from(("AAA/USDT", "BBB/USDT", "CCC/USDT")),
            min_size=1,
            max_size=max_symbols,
            unique=True,
        )
    )
    # Long enough to trade, mostly; the first symbol may be as short as one candle.
    return [draw(candle_series(name, max_candles, 1 if k == 0 else 20)) for k, name in enumerate(names)]


@st.composite
def variant_params(draw: st.DrawFn, name: str, floors: tuple[float, ...] = (0.01, 0.03, 0.05)) -> Any:
    """A valid variant with short windows, so that a few dozen candles are enough to trade."""
    floor = draw(st.sampled_from(floors))
    return VariantModel.model_validate(
        {
            **SHIPPED.variants[0].model_dump(),
            "name": name,
            "lookback": draw(st.integers(1, 6)),
            "atr_period": draw(st.integers(1, 6)),
            "volume_mult": draw(st.sampled_from((0.0, 0.0, 0.5, 1.0, 1.5, 3.0))),
            "breakout_buffer": draw(st.sampled_from((0.0, 0.0, 0.005, 0.02))),
            "atr_min_pct": draw(st.sampled_from((0.0, 0.005, 0.02))),
            "atr_max_pct": draw(st.sampled_from((0.05, 0.2, 1.0, 10.0))),
            "stop_k": draw(st.sampled_from((0.0, 1.0, 1.5, 2.5))),
            "stop_floor": floor,
            "stop_cap": floor + draw(st.sampled_from((0.0, 0.03, 0.1))),
            "trail_activation": draw(st.sampled_from((0.0, 0.5, 1.0, 2.0))),
            "trail_mult": draw(st.sampled_from((0.5, 1.0, 2.0))),
            "time_stop_candles": draw(st.sampled_from((0, 0, 1, 2, 5))),
            "max_open": draw(st.sampled_from((1, 2, 5))),
            "cooldown_candles": draw(st.sampled_from((0, 1, 3, 8))),
            "starting_balance": draw(st.sampled_from((1000.0, 1000.0, 1000.0, 250.0, 150.0, 0.0))),
            "stake": draw(st.sampled_from((100.0, 60.0))),
            "fee_rate": draw(st.sampled_from((0.0, 0.001))),
            "slippage": draw(st.sampled_from((0.0, 0.0005))),
        }
    )


@st.composite
def configs(draw: st.DrawFn, max_variants: int = 3, floors: tuple[float, ...] = (0.01, 0.03, 0.05)) -> Config:
    """The shipped config with 1 to ``max_variants`` generated variants (hard-stop floors from ``floors``)."""
    n = draw(st.integers(1, max_variants))
    variants = tuple(draw(variant_params(f"v{k}", floors)) for k in range(n))
    return SHIPPED.model_copy(update={"variants": variants})


# --------------------------------------------------------------------------------------------------
# Stop formula, fills, ATR
# --------------------------------------------------------------------------------------------------

FRACTION = st.floats(0.0, 1.0, allow_nan=False)


@given(
    atr_pct=st.floats(0.0, 10.0, allow_nan=False),
    k=st.floats(0.0, 10.0, allow_nan=False),
    bounds=st.tuples(FRACTION, FRACTION).map(sorted),
)
def test_hard_stop_pct_is_clamped_k_times_atr_pct(atr_pct: float, k: float, bounds: list[float]) -> None:
    """``hard_stop_pct = min(cap, max(floor, k * atr_pct))``, always inside [floor, cap]."""
    floor, cap = bounds
    got = sigil.hard_stop_pct(atr_pct, k, floor, cap)
    assert floor <= got <= cap
    assert got == min(cap, max(floor, k * atr_pct)) == hard_stop_pct(atr_pct, k, floor, cap)


@given(atr_pct=st.floats(0.0, 1.0), k=st.floats(0.0, 10.0))
def test_hard_stop_pct_defaults_are_three_and_six_percent(atr_pct: float, k: float) -> None:
    """The defaults are the design's floor 3 % and cap 6 %."""
    assert sigil.hard_stop_pct(atr_pct, k) == min(0.06, max(0.03, k * atr_pct))


@pytest.mark.parametrize(
    "args", [(math.nan, 1.5), (-0.01, 1.5), (math.inf, 1.5), (0.02, -1.0), (0.02, 1.5, 0.06, 0.03)]
)
def test_hard_stop_pct_rejects_invalid_input(args: tuple[float, ...]) -> None:
    """NaN, negative or infinite inputs and a cap below the floor are ValueErrors, not a silent stop."""
    with pytest.raises(ValueError):
        sigil.hard_stop_pct(*args)


PRICE = st.floats(1e-9, 1e6, allow_nan=False, allow_infinity=False)
COST = st.sampled_from((0.0, 0.0005, 0.001, 0.01))


@given(price=PRICE, stake=st.floats(1.0, 1e4), fee_rate=COST, slippage=COST)
def test_buy_fill_is_the_spec_arithmetic(
    price: float, stake: float, fee_rate: float, slippage: float
) -> None:
    """``entry_price = p(1+slip)``, ``qty = stake/entry_price``, fee ``stake*fee_rate``, cost stake + fee."""
    f = buy(price, stake, fee_rate, slippage)
    assert _core.buy_fill(price, stake, fee_rate, slippage) == (f.entry_price, f.qty, f.entry_fee, f.cost)


@given(price=PRICE, qty=st.floats(1e-6, 1e9), fee_rate=COST, slippage=COST)
def test_sell_fill_is_the_spec_arithmetic(price: float, qty: float, fee_rate: float, slippage: float) -> None:
    """``exit_price = p(1-slip)``, ``gross = qty*exit_price``, fee ``gross*fee_rate``, proceeds gross-fee."""
    f = sell(price, qty, fee_rate, slippage)
    assert _core.sell_fill(price, qty, fee_rate, slippage) == (f.exit_price, f.gross, f.exit_fee, f.proceeds)


@given(series=candle_series("ATR/USDT", max_candles=80), period=st.integers(1, 20))
@settings(deadline=None)
def test_streaming_atr_is_the_reference_bit_for_bit(series: CandleSeries, period: int) -> None:
    """``sigil.Atr`` (what a live check uses) equals the spec's ATR exactly, NaN until index ``period``."""
    engine, ref = sigil.Atr(period), WilderAtr(period)
    for i, (h, lo, c) in enumerate(
        zip(series.high.tolist(), series.low.tolist(), series.close.tolist(), strict=True)
    ):
        got, want = engine.update(h, lo, c), ref.update(h, lo, c)
        assert (i < period) == math.isnan(got)
        assert got.hex() == want.hex(), f"candle {i}: engine {got!r}, reference {want!r}"


# --------------------------------------------------------------------------------------------------
# Guard table: model-based
# --------------------------------------------------------------------------------------------------

GUARD_VARIANTS = ("baseline", "moderate", "aggressive")
GUARD_SYMBOLS = ("AAA/USDT", "BBB/USDT", "CCC/USDT")
NOW = st.integers(0, 10_000)


class GuardMachine(RuleBasedStateMachine):
    """``sigil.GuardTable`` against a dict model: claims, releases, sets and checks in any order and time.

    Besides matching the model, every accepted claim is checked against the history of claims directly:
    never a second open on a (variant, symbol) that has not been released since, never an open before
    ``open_time + cooldown`` of the previous claim (unless ``set`` rewrote the state in between).
    """

    def __init__(self) -> None:
        super().__init__()
        self.table = sigil.GuardTable(list(GUARD_VARIANTS))
        self.model: dict[tuple[str, str], tuple[bool, int | None]] = {}
        # (variant, symbol) -> (time, cooldown) of the last accepted claim; and released since, or not.
        self.last_claim: dict[tuple[str, str], tuple[int, int]] = {}
        self.released: dict[tuple[str, str], bool] = {}

    def ids(self, v: str, s: str) -> tuple[int, int]:
        """Interned ids (a symbol is interned on first use)."""
        return self.table.variant_id(v), self.table.symbol_id(s)

    def expected_block(self, v: str, s: str, now: int) -> str | None:
        """What the model says ``blocked`` must answer: open first, then the cooldown."""
        is_open, until = self.model.get((v, s), (False, None))
        if is_open:
            return "open"
        if until is not None and now < until:
            return "cooldown"
        return None

    @rule(
        v=st.sampled_from(GUARD_VARIANTS),
        s=st.sampled_from(GUARD_SYMBOLS),
        now=NOW,
        cooldown=st.integers(0, 3000),
    )
    def claim(self, v: str, s: str, now: int, cooldown: int) -> None:
        accepted = self.table.claim(*self.ids(v, s), now, cooldown)
        assert accepted == (self.expected_block(v, s, now) is None)
        if accepted:
            if (v, s) in self.last_claim:
                t, cd = self.last_claim[(v, s)]
                assert self.released[(v, s)], "two opens on one (variant, symbol)"
                assert now >= t + cd, "an open before the cooldown of the previous open passed"
            self.model[(v, s)] = (True, now + cooldown)
            self.last_claim[(v, s)] = (now, cooldown)
            self.released[(v, s)] = False

    @rule(v=st.sampled_from(GUARD_VARIANTS), s=st.sampled_from(GUARD_SYMBOLS))
    def release(self, v: str, s: str) -> None:
        self.table.release(*self.ids(v, s))
        _, until = self.model.get((v, s), (False, None))
        self.model[(v, s)] = (False, until)  # the cooldown stays
        self.released[(v, s)] = True

    @rule(
        v=st.sampled_from(GUARD_VARIANTS),
        s=st.sampled_from(GUARD_SYMBOLS),
        is_open=st.booleans(),
        until=st.none() | NOW,
    )
    def set_state(self, v: str, s: str, is_open: bool, until: int | None) -> None:
        self.table.set(*self.ids(v, s), is_open, until)
        self.model[(v, s)] = (is_open, until)
        # The database said so: the claim history no longer constrains the next claim.
        self.last_claim.pop((v, s), None)

    @rule(v=st.sampled_from(GUARD_VARIANTS), s=st.sampled_from(GUARD_SYMBOLS), now=NOW)
    def check(self, v: str, s: str, now: int) -> None:
        vid, sid = self.ids(v, s)
        want = self.expected_block(v, s, now)
        assert self.table.blocked(vid, sid, now) == want
        assert self.table.can_signal(vid, sid, now) == (want is None)

    @precondition(lambda self: self.model)
    @invariant()
    def state_matches_model(self) -> None:
        for (v, s), state in self.model.items():
            assert self.table.get(*self.ids(v, s)) == state


GuardMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestGuardTable = GuardMachine.TestCase


def test_guard_rejects_unknown_ids() -> None:
    """Unknown variant names and ids are ValueErrors."""
    table = sigil.GuardTable(list(GUARD_VARIANTS))
    with pytest.raises(ValueError):
        table.variant_id("nope")
    with pytest.raises(ValueError):
        table.can_signal(len(GUARD_VARIANTS), table.symbol_id("AAA/USDT"), 0)


# --------------------------------------------------------------------------------------------------
# Replay: the engine against the reference, and invariants of the engine's output
# --------------------------------------------------------------------------------------------------


def engine_and_reference(series: list[CandleSeries], config: Config) -> tuple[ReplayResult, Any]:
    """The engine's and the reference's replay of the same input."""
    engine = replay_series(series, config)
    ref = reference_replay(
        series, [v.engine_params() for v in config.variants], stop_pct_rule=ENGINE_STOP_PCT_RULE
    )
    return engine, ref


@given(series=universes(), config=configs())
@REPLAY_SETTINGS
def test_replay_matches_reference_on_generated_candles(series: list[CandleSeries], config: Config) -> None:
    """Random candles through random variants: the engine and the reference agree bit for bit."""
    engine, ref = engine_and_reference(series, config)
    # Steer generation towards inputs that trade a lot (more decisions compared per example).
    target(float(len(engine.trades) + sum(sum(m.skips.values()) for m in engine.metrics.values())))
    diffs = differences(engine, ref)
    assert not diffs, "\n".join(diffs)


#: Outcomes the generators must be able to reach, so that agreement above covers them.
REACHABLE: dict[str, Callable[[ReplayResult], bool]] = {
    **{
        f"exit {r}": (lambda e, r=r: any(t.exit_reason == r for t in e.trades))
        for r in ("hard_stop", "atr_trail", "time_stop")
    },
    **{
        f"skip {r}": (lambda e, r=r: any(m.skips[r] for m in e.metrics.values()))
        for r in ("open", "cooldown", "max_open", "balance")
    },
    "gap fill below a stop": lambda e: any(
        t.exit_reason != "time_stop" and t.exit_price < t.entry_price * 0.85 for t in e.trades
    ),
    "reentry on the exit candle": lambda e: any(
        a.exit_time == b.entry_time and (a.variant, a.symbol) == (b.variant, b.symbol)
        for a in e.trades
        for b in e.trades
    ),
}


@pytest.mark.parametrize("outcome", list(REACHABLE))
def test_generators_reach(outcome: str) -> None:
    """Each exit reason, skip reason and edge case shows up in some generated input (found by search)."""
    reached = REACHABLE[outcome]
    series, config = find(
        st.tuples(universes(), configs()),
        lambda x: reached(replay_series(*x)),
        # Generation only: the first hit is enough, shrinking it would only cost time.
        settings=settings(max_examples=2000, database=None, phases=[Phase.generate]),
    )
    engine, ref = engine_and_reference(series, config)
    assert not differences(engine, ref)


def candle_at_close(series: list[CandleSeries], symbol: str, close_time: int) -> tuple[CandleSeries, int]:
    """The series of ``symbol`` and the index of its candle closing at ``close_time``."""
    s = next(x for x in series if x.symbol == symbol)
    (idx,) = np.flatnonzero(s.time + s.timeframe_ms == close_time)
    return s, int(idx)


@given(series=universes(), config=configs())
@REPLAY_SETTINGS
def test_replay_invariants(series: list[CandleSeries], config: Config) -> None:
    """What any replay must satisfy, read off the engine's trades and the candles alone.

    Per (variant, symbol): positions never overlap and entries are at least ``cooldown_candles * tf``
    apart. Per trade: the entry fills at the signal candle's close plus slippage; the stop is within
    [floor, cap]; a hard stop sells at or below ``entry_price * (1 - stop_pct)``; a stop sells at the
    candle's open (gap) or inside the candle below its open; a time stop sells at the close after
    exactly ``time_stop_candles`` candles.
    """
    engine = replay_series(series, config)
    by_pair: dict[tuple[str, str], list[tuple[int, int | None]]] = defaultdict(list)
    for t in engine.trades:
        by_pair[(t.variant, t.symbol)].append((t.entry_time, t.exit_time))
    for p in engine.open_positions:
        by_pair[(p.variant, p.symbol)].append((p.entry_time, None))
    tfs = {s.symbol: s.timeframe_ms for s in series}
    for (variant, symbol), spans in by_pair.items():
        spans.sort()
        cooldown_ms = config.variant(variant).cooldown_candles * tfs[symbol]
        for (entry_a, exit_a), (entry_b, _) in itertools.pairwise(spans):
            assert exit_a is not None, f"{variant} {symbol}: a position opened while one was open"
            assert entry_b >= exit_a, f"{variant} {symbol}: overlapping positions"
            assert entry_b >= entry_a + cooldown_ms, f"{variant} {symbol}: entry inside the cooldown"

    for t in engine.trades:
        v = config.variant(t.variant)
        check_trade(t, v, series)


def check_trade(t: Trade, v: Any, series: list[CandleSeries]) -> None:
    """The per-trade invariants of :func:`test_replay_invariants`."""
    s, entry_idx = candle_at_close(series, t.symbol, t.entry_time)
    _, exit_idx = candle_at_close(series, t.symbol, t.exit_time)
    assert exit_idx > entry_idx
    assert t.entry_price == float(s.close[entry_idx]) * (1 + v.slippage)
    assert v.stop_floor <= t.stop_pct <= v.stop_cap
    o, lo, c = float(s.open[exit_idx]), float(s.low[exit_idx]), float(s.close[exit_idx])

    def sell_at(reference_price: float) -> float:
        return reference_price * (1 - v.slippage)

    if v.time_stop_candles:
        # Nothing is held longer than the time stop.
        assert exit_idx - entry_idx <= v.time_stop_candles
    if t.exit_reason == "time_stop":
        assert t.exit_price == sell_at(c)
        assert exit_idx - entry_idx == v.time_stop_candles
        return
    if t.exit_reason == "hard_stop":
        assert t.exit_price <= sell_at(t.entry_price * (1 - t.stop_pct))
    # A stop sells at the open (gap through the level) or at the level, between the low and the open.
    assert t.exit_price == sell_at(o) or sell_at(lo) <= t.exit_price < sell_at(o)
    if t.exit_reason == "atr_trail" and t.exit_price != sell_at(o):
        # Filled at the trail level, which is above the hard stop.
        assert t.exit_price >= sell_at(t.entry_price * (1 - t.stop_pct))


# Wide hard stops (the ATR of these series is a few percent) so that positions live long enough to trail.
@given(
    series=candle_series("TRL/USDT", max_candles=50, min_candles=10),
    config=configs(max_variants=2, floors=(0.03, 0.1, 0.2)),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_stop_level_never_moves_down_and_bounds_every_stop_exit(series: CandleSeries, config: Config) -> None:
    """Replays of every prefix of one series show each open position's stop level (``stop_price``).

    While a position stays open its level never moves down; the position then exits on the next candle
    exactly at that level, or at that candle's open when it opens at or below the level (a gap).
    """
    params = [v.engine_params() for v in config.variants]
    levels: dict[tuple[str, int], float] = {}  # (variant, entry_time) -> level after the last prefix
    trailing = 0  # open positions seen with an active trail, over all prefixes
    for n in range(1, len(series) + 1):
        prefix = dataclasses.replace(
            series, **{f: getattr(series, f)[:n] for f in ("time", "open", "high", "low", "close", "volume")}
        )
        raw = _core.replay([prefix.engine_tuple()], params)
        names = raw["variants"]
        opened = raw["open_positions"]
        now: dict[tuple[str, int], float] = {}
        for k in range(len(opened["qty"])):
            key = (names[int(opened["variant"][k])], int(opened["entry_time"][k]))
            now[key] = float(opened["stop_price"][k])
            trailing += bool(opened["trail_active"][k])
            if key in levels:
                assert now[key] >= levels[key], f"{key}: stop level moved down at candle {n - 1}"
        trades = raw["trades"]
        reasons = [raw["exit_reasons"][int(code)] for code in trades["exit_reason"]]
        o = float(series.open[n - 1])
        close_time = int(series.time[n - 1]) + series.timeframe_ms
        for k in range(len(trades["qty"])):
            key = (names[int(trades["variant"][k])], int(trades["entry_time"][k]))
            if int(trades["exit_time"][k]) != close_time or reasons[k] == "time_stop":
                continue
            slip = config.variant(key[0]).slippage
            p = float(trades["exit_price"][k])
            assert key in levels, f"{key}: exited without having been open after the previous candle"
            if o <= levels[key]:
                assert p == o * (1 - slip), f"{key}: gap through {levels[key]!r} did not fill at the open"
            else:
                assert p == levels[key] * (1 - slip), f"{key}: did not fill at the level {levels[key]!r}"
        levels = now
    # Steer generation towards positions that trail for a while.
    target(float(trailing))
