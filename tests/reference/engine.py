"""Pure-Python reference of the decision rules in docs/HLD.md ("Decision rules").

Written from that text alone, one function or small class per rule, with plain Python ints, floats and
lists: no numpy in the decision path, so the arithmetic is the IEEE-754 double arithmetic the spec
prescribes, one operation at a time, in the order the spec writes it (Python never fuses a multiply
and an add). Speed is not a goal: this code exists to be read next to the spec and to be compared
trade for trade with the Rust replay.

Where the spec leaves a choice open, the choice made here is marked "Reading:" in a comment; the tests
pin each one down against the Rust engine.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

EXIT_REASONS = ("atr_trail", "hard_stop", "time_stop")
SKIP_REASONS = ("open", "cooldown", "max_open", "balance")


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One variant's parameters (the dict ``Variant.engine_params()`` gives)."""

    name: str
    stop_k: float
    stop_floor: float
    stop_cap: float
    lookback: int
    volume_mult: float
    breakout_buffer: float
    atr_min_pct: float
    atr_max_pct: float
    max_open: int
    cooldown_candles: int
    stake: float
    starting_balance: float
    fee_rate: float
    slippage: float
    atr_period: int
    trail_activation: float
    trail_mult: float
    time_stop_candles: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Variant:
        """Builds a variant from an engine parameter dict; unknown keys are ignored, missing ones fail."""
        kwargs: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            value = params[name]
            kwargs[name] = str(value) if kind == "str" else int(value) if kind == "int" else float(value)
        return cls(**kwargs)


class SeriesLike(Protocol):
    """What :func:`replay` reads from a candle series (``sigil.data.CandleSeries`` fits)."""

    symbol: str
    timeframe_ms: int
    time: Any
    open: Any
    high: Any
    low: Any
    close: Any
    volume: Any


def _plain(values: Any, kind: type) -> list[Any]:
    """A column as a list of Python ints or floats (exact conversions from float64 / int64)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [kind(x) for x in values]


@dataclass(frozen=True)
class RefSeries:
    """One symbol's candles as plain lists. ``tf`` is the timeframe in ms; times are open times."""

    symbol: str
    tf: int
    time: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]

    @classmethod
    def of(cls, s: SeriesLike) -> RefSeries:
        """Copies a series (numpy columns or sequences) into plain Python values."""
        return cls(
            symbol=str(s.symbol),
            tf=int(s.timeframe_ms),
            time=_plain(s.time, int),
            open=_plain(s.open, float),
            high=_plain(s.high, float),
            low=_plain(s.low, float),
            close=_plain(s.close, float),
            volume=_plain(s.volume, float),
        )

    def __len__(self) -> int:
        return len(self.time)

    def close_time(self, i: int) -> int:
        """``close_time = open_time + tf``."""
        return self.time[i] + self.tf


# --------------------------------------------------------------------------------------------------
# ATR (Wilder, TA-Lib compatible)
# --------------------------------------------------------------------------------------------------


class WilderAtr:
    """Streaming ATR: the mean of the first ``n`` true ranges, then ``ATR*k1 + TR*k2``; NaN until ready."""

    def __init__(self, period: int) -> None:
        self.n = period
        # Each one f64 division, computed once.
        self.k1 = (period - 1) / period
        self.k2 = 1 / period
        self.prev_close: float | None = None
        self.true_ranges = 0
        self.tr_sum = 0.0
        self.value = math.nan

    def update(self, high: float, low: float, close: float) -> float:
        """Feeds candle i; returns ATR_i (NaN before index n). Candle 0 has no true range."""
        if self.prev_close is not None:
            pc = self.prev_close
            tr = max(high, pc) - min(low, pc)
            self.true_ranges += 1
            if self.true_ranges <= self.n:
                # TR_1 + ... + TR_n summed left to right; ATR_n is their mean.
                self.tr_sum = self.tr_sum + tr
                if self.true_ranges == self.n:
                    self.value = self.tr_sum / self.n
            else:
                self.value = self.value * self.k1 + tr * self.k2
        self.prev_close = close
        return self.value

    @property
    def ready(self) -> bool:
        """True from index n on."""
        return not math.isnan(self.value)


# --------------------------------------------------------------------------------------------------
# Entry signal (breakout)
# --------------------------------------------------------------------------------------------------


class BreakoutWindow:
    """The previous ``L`` candles of one symbol for one variant: their highs and a running volume sum.

    The highest high is taken with ``max`` over the window on every decision (a plain rescan: slower
    than the engine's monotonic deque, and for that reason an independent check of it).
    """

    def __init__(self, lookback: int) -> None:
        self.lookback = lookback
        self.highs: deque[float] = deque()
        self.volumes: deque[float] = deque()
        self.vsum = 0.0

    @property
    def full(self) -> bool:
        """The previous ``L`` candles are available."""
        return len(self.highs) == self.lookback

    def highest_high(self) -> float:
        """``hh = max(high_{i-L} .. high_{i-1})``."""
        return max(self.highs)

    def push(self, high: float, volume: float) -> None:
        """Candle i enters the window (after the decision on it); the oldest leaves once there are L+1.

        Reading: the spec names the entering candle's addition before the oldest's subtraction, and
        this order is used (it matters in floating point).
        """
        self.highs.append(high)
        self.volumes.append(volume)
        self.vsum = self.vsum + volume
        if len(self.highs) > self.lookback:
            self.highs.popleft()
            self.vsum = self.vsum - self.volumes.popleft()


def is_breakout(v: Variant, window: BreakoutWindow, close: float, volume: float, atr: float) -> bool:
    """The breakout rule on candle i, against the window of the previous ``L`` candles."""
    if not window.full:
        return False
    if not close > window.highest_high() * (1 + v.breakout_buffer):
        return False
    if not volume >= v.volume_mult * (window.vsum / v.lookback):
        return False
    if math.isnan(atr):
        return False
    atr_pct = atr / close
    return v.atr_min_pct <= atr_pct <= v.atr_max_pct


# --------------------------------------------------------------------------------------------------
# Hard stop (G) and fills
# --------------------------------------------------------------------------------------------------


#: The two ways of evaluating the stop formula. ``"spec"``: ``k * ATR_i / close_i`` left to right, as
#: docs/HLD.md writes it, i.e. ``(k * ATR) / close``. ``"atr_pct"``: ``k * (ATR / close)``, the form of the
#: public ``hard_stop_pct(atr_pct, k, floor, cap)``. They differ in the last bit for some inputs.
#: The stop formula as docs/HLD.md writes it: ``atr_pct = ATR_i / close_i`` first, then the clamp.
STOP_PCT_RULES = ("spec",)


def hard_stop_pct(atr_pct: float, k: float, floor: float = 0.03, cap: float = 0.06) -> float:
    """The design's ``hard_stop_pct(atr_pct, k, floor, cap) = min(cap, max(floor, k * atr_pct))``."""
    return min(cap, max(floor, k * atr_pct))


def stop_pct_at_entry(rule: str, k: float, atr: float, close: float, floor: float, cap: float) -> float:
    """``stop_pct = min(cap, max(floor, k * (ATR_i / close_i)))`` from the signal candle."""
    if rule == "spec":
        return hard_stop_pct(atr / close, k, floor, cap)
    raise ValueError(f"unknown stop_pct rule {rule!r} (known: {', '.join(STOP_PCT_RULES)})")


@dataclass(frozen=True)
class BuyFill:
    """Result of buying ``stake`` quote at a reference price."""

    entry_price: float
    qty: float
    entry_fee: float
    cost: float


@dataclass(frozen=True)
class SellFill:
    """Result of selling ``qty`` at a reference price."""

    exit_price: float
    gross: float
    exit_fee: float
    proceeds: float


def buy(price: float, stake: float, fee_rate: float, slippage: float) -> BuyFill:
    """Paper buy: slippage against us, taker fee on the stake."""
    entry_price = price * (1 + slippage)
    qty = stake / entry_price
    entry_fee = stake * fee_rate
    return BuyFill(entry_price, qty, entry_fee, stake + entry_fee)


def sell(price: float, qty: float, fee_rate: float, slippage: float) -> SellFill:
    """Paper sell: slippage against us, taker fee on the gross."""
    exit_price = price * (1 - slippage)
    gross = qty * exit_price
    exit_fee = gross * fee_rate
    return SellFill(exit_price, gross, exit_fee, gross - exit_fee)


# --------------------------------------------------------------------------------------------------
# Positions and exits
# --------------------------------------------------------------------------------------------------


@dataclass
class Position:
    """An open position and its stop state."""

    symbol: str
    entry_time: int
    entry_price: float
    qty: float
    stake: float
    entry_fee: float
    stop_pct: float
    atr_at_entry: float
    stop_price: float
    # Reading: "the highest price since entry" starts at the entry fill price (see the report).
    highest: float
    trail_active: bool = False
    # Only read while the trail is active, and only when above the hard stop.
    trail_stop: float = -math.inf
    held: int = 0


def stop_level(pos: Position) -> tuple[float, str]:
    """The level tested against a candle, from the stop state before that candle, and its reason."""
    if pos.trail_active and pos.trail_stop > pos.stop_price:
        return pos.trail_stop, "atr_trail"
    return pos.stop_price, "hard_stop"


def move_trail(pos: Position, v: Variant, high: float, atr_prev: float) -> None:
    """A candle that did not stop the position raises the highest price and, once active, the trail."""
    pos.highest = max(pos.highest, high)
    if not pos.trail_active and pos.highest >= pos.entry_price + v.trail_activation * atr_prev:
        pos.trail_active = True
    if pos.trail_active:
        # The trail never moves down.
        pos.trail_stop = max(pos.trail_stop, pos.highest - v.trail_mult * atr_prev)


def exit_on_candle(
    pos: Position, v: Variant, o: float, h: float, lo: float, c: float, atr_prev: float
) -> tuple[str, float] | None:
    """Step 2 for one position entered on an earlier candle: ``(reason, reference price)`` or None."""
    level, reason = stop_level(pos)
    if o <= level:
        return reason, o  # the gap fill
    if lo <= level:
        return reason, level
    move_trail(pos, v, h, atr_prev)
    # Reading: "held that many candles" counts the candles of the symbol checked since the entry.
    pos.held += 1
    if v.time_stop_candles > 0 and pos.held >= v.time_stop_candles:
        return "time_stop", c
    return None


# --------------------------------------------------------------------------------------------------
# Guard and cooldown
# --------------------------------------------------------------------------------------------------


class Guard:
    """Per symbol, for one variant: open or not, and protected until a close time (ms)."""

    def __init__(self) -> None:
        self.open: dict[str, bool] = {}
        self.protected_until: dict[str, int] = {}

    def blocked(self, symbol: str, now_ms: int) -> str | None:
        """``"open"``, ``"cooldown"`` (``now < protected_until``) or None. Open is reported first."""
        if self.open.get(symbol, False):
            return "open"
        until = self.protected_until.get(symbol)
        if until is not None and now_ms < until:
            return "cooldown"
        return None

    def claim(self, symbol: str, open_time_ms: int, cooldown_ms: int) -> None:
        """Open, and the cooldown starts at the open."""
        self.open[symbol] = True
        self.protected_until[symbol] = open_time_ms + cooldown_ms

    def release(self, symbol: str) -> None:
        """A close: no longer open; the cooldown is unchanged."""
        self.open[symbol] = False


# --------------------------------------------------------------------------------------------------
# One variant's book
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefTrade:
    """A closed trade, with the fields of ``sigil.research.replay.Trade``."""

    variant: str
    symbol: str
    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    qty: float
    stake: float
    stop_pct: float
    atr_at_entry: float
    exit_reason: str
    pnl: float
    fees: float


@dataclass(frozen=True)
class RefOpenPosition:
    """A position still open at the end, with its stop state.

    ``stop_price`` is the level the next candle would be tested against (the trail when it is active
    and above the hard stop, else the hard stop), as ``sigil.research.replay.OpenPosition`` reports it;
    ``hard_stop_price`` is ``entry_price * (1 - stop_pct)``.
    """

    variant: str
    symbol: str
    entry_time: int
    entry_price: float
    qty: float
    stake: float
    entry_fee: float
    stop_pct: float
    atr_at_entry: float
    stop_price: float
    hard_stop_price: float
    highest: float
    trail_active: bool
    trail_stop: float


@dataclass
class RefVariantState:
    """Balance, positions, guard and counters of one variant."""

    v: Variant
    balance: float
    stop_pct_rule: str = "spec"
    positions: dict[str, Position] = field(default_factory=dict)
    guard: Guard = field(default_factory=Guard)
    opens: int = 0
    skips: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    trades: list[RefTrade] = field(default_factory=list)

    def close(self, pos: Position, reason: str, price: float, exit_time: int) -> RefTrade:
        """Sells the whole position at reference ``price``."""
        fill = sell(price, pos.qty, self.v.fee_rate, self.v.slippage)
        self.balance = self.balance + fill.proceeds
        del self.positions[pos.symbol]
        self.guard.release(pos.symbol)
        trade = RefTrade(
            variant=self.v.name,
            symbol=pos.symbol,
            entry_time=pos.entry_time,
            exit_time=exit_time,
            entry_price=pos.entry_price,
            exit_price=fill.exit_price,
            qty=pos.qty,
            stake=pos.stake,
            stop_pct=pos.stop_pct,
            atr_at_entry=pos.atr_at_entry,
            exit_reason=reason,
            pnl=(fill.gross - fill.exit_fee) - (pos.stake + pos.entry_fee),
            fees=pos.entry_fee + fill.exit_fee,
        )
        self.trades.append(trade)
        return trade

    def skip_reason(self, symbol: str, now_ms: int) -> str | None:
        """Step 3 after a breakout: the guard first, then the variant's limits."""
        blocked = self.guard.blocked(symbol, now_ms)
        if blocked is not None:
            return blocked
        if len(self.positions) >= self.v.max_open:
            return "max_open"
        if self.balance < self.v.stake + self.v.stake * self.v.fee_rate:
            return "balance"
        return None

    def open(self, symbol: str, close: float, atr: float, close_time: int, tf: int) -> Position:
        """Step 4: buy at reference ``close``, stop frozen from the signal candle, guard claimed."""
        v = self.v
        fill = buy(close, v.stake, v.fee_rate, v.slippage)
        stop_pct = stop_pct_at_entry(self.stop_pct_rule, v.stop_k, atr, close, v.stop_floor, v.stop_cap)
        pos = Position(
            symbol=symbol,
            entry_time=close_time,
            entry_price=fill.entry_price,
            qty=fill.qty,
            stake=v.stake,
            entry_fee=fill.entry_fee,
            stop_pct=stop_pct,
            atr_at_entry=atr,
            stop_price=fill.entry_price * (1 - stop_pct),
            highest=fill.entry_price,
        )
        self.balance = self.balance - fill.cost
        self.positions[symbol] = pos
        self.guard.claim(symbol, close_time, v.cooldown_candles * tf)
        self.opens += 1
        return pos

    def equity(self, last_close: Mapping[str, float]) -> float:
        """``balance + Σ qty × last close`` over open positions.

        Reading: the spec does not say how the sum is grouped; it is accumulated onto the balance,
        one position at a time in the order they were opened (``((balance + a) + b) + ...``).
        """
        equity = self.balance
        for pos in self.positions.values():
            equity = equity + pos.qty * last_close[pos.symbol]
        return equity


# --------------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------------


@dataclass
class ReferenceResult:
    """What the reference replay decided, shaped like ``sigil.research.replay.ReplayResult``."""

    variants: tuple[str, ...]
    symbols: tuple[str, ...]
    trades: list[RefTrade]
    open_positions: list[RefOpenPosition]
    states: dict[str, RefVariantState]
    equity_time: list[int]
    equity: dict[str, list[float]]
    candles: int

    def balance(self, name: str) -> float:
        """Final balance of a variant."""
        return self.states[name].balance

    def final_equity(self, name: str) -> float:
        """Equity of a variant after the last candle."""
        curve = self.equity[name]
        return curve[-1] if curve else self.states[name].balance


def merged_order(series: Sequence[RefSeries]) -> list[tuple[int, str, int, int]]:
    """Every candle as ``(close_time, symbol, series index, candle index)``, in replay order."""
    events = [(s.close_time(i), s.symbol, k, i) for k, s in enumerate(series) for i in range(len(s))]
    events.sort()
    return events


def replay(
    series: Iterable[SeriesLike | RefSeries],
    variants: Iterable[Mapping[str, Any] | Variant],
    *,
    stop_pct_rule: str = "spec",
) -> ReferenceResult:
    """Replays candle series through variants by the rules of docs/HLD.md.

    ``series``: CandleSeries-like objects (numpy or list columns); ``variants``: engine parameter dicts
    or :class:`Variant`; ``stop_pct_rule``: one of :data:`STOP_PCT_RULES`.
    Raises ValueError when a symbol appears twice or the rule is unknown.
    """
    if stop_pct_rule not in STOP_PCT_RULES:
        raise ValueError(f"unknown stop_pct rule {stop_pct_rule!r} (known: {', '.join(STOP_PCT_RULES)})")
    data = [s if isinstance(s, RefSeries) else RefSeries.of(s) for s in series]
    names = [s.symbol for s in data]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate symbol in {names}")
    vs = [v if isinstance(v, Variant) else Variant.from_params(v) for v in variants]
    states = [RefVariantState(v, balance=v.starting_balance, stop_pct_rule=stop_pct_rule) for v in vs]

    # One ATR per symbol and period: variants sharing a period share the (identical) values.
    periods = sorted({v.atr_period for v in vs})
    atrs = [{p: WilderAtr(p) for p in periods} for _ in data]
    windows = [[BreakoutWindow(v.lookback) for _ in data] for v in vs]
    last_close: dict[str, float] = {}
    equity_time: list[int] = []
    equity: dict[str, list[float]] = {v.name: [] for v in vs}

    trades: list[RefTrade] = []  # in the order they close
    events = merged_order(data)
    for n, (close_time, symbol, k, i) in enumerate(events):
        s = data[k]
        o, h, lo, c, vol = s.open[i], s.high[i], s.low[i], s.close[i], s.volume[i]

        # 1. ATR, keeping the value known before this candle closed.
        atr_prev = {p: a.value for p, a in atrs[k].items()}
        atr_now = {p: a.update(h, lo, c) for p, a in atrs[k].items()}

        for j, st in enumerate(states):
            v = st.v
            # 2. Exit of a position entered on an earlier candle (one opened below comes later).
            pos = st.positions.get(symbol)
            if pos is not None:
                hit = exit_on_candle(pos, v, o, h, lo, c, atr_prev[v.atr_period])
                if hit is not None:
                    reason, price = hit
                    # Reading: every exit is stamped with the close time of the candle that triggered it.
                    trades.append(st.close(pos, reason, price, close_time))

            # 3. Signal: the window advances whatever the outcome.
            window = windows[j][k]
            atr = atr_now[v.atr_period]
            signal = is_breakout(v, window, c, vol, atr)
            window.push(h, vol)
            if signal:
                skip = st.skip_reason(symbol, close_time)
                if skip is not None:
                    st.skips[skip] += 1
                else:
                    # 4. Open.
                    st.open(symbol, c, atr, close_time, s.tf)

        last_close[symbol] = c
        # Reading: equity is sampled once per distinct close time, after every candle closing then.
        if n + 1 == len(events) or events[n + 1][0] != close_time:
            equity_time.append(close_time)
            for st in states:
                equity[st.v.name].append(st.equity(last_close))

    open_positions = [
        RefOpenPosition(
            variant=st.v.name,
            symbol=p.symbol,
            entry_time=p.entry_time,
            entry_price=p.entry_price,
            qty=p.qty,
            stake=p.stake,
            entry_fee=p.entry_fee,
            stop_pct=p.stop_pct,
            atr_at_entry=p.atr_at_entry,
            stop_price=stop_level(p)[0],
            hard_stop_price=p.stop_price,
            highest=p.highest,
            trail_active=p.trail_active,
            trail_stop=p.trail_stop,
        )
        for st in states
        for p in st.positions.values()
    ]
    return ReferenceResult(
        variants=tuple(v.name for v in vs),
        symbols=tuple(names),
        trades=trades,
        open_positions=open_positions,
        states={st.v.name: st for st in states},
        equity_time=equity_time,
        equity=equity,
        candles=len(events),
    )


# --------------------------------------------------------------------------------------------------
# Comparing a reference result with the engine's ReplayResult
# --------------------------------------------------------------------------------------------------

#: The stop formula the engine must follow: the spec's (``k * (ATR / close)``, the public
#: ``hard_stop_pct(atr_pct, k)``). Everything is compared bit for bit under it.
ENGINE_STOP_PCT_RULE = "spec"

TRADE_KEY = ("variant", "symbol", "entry_time", "exit_time", "exit_reason")
TRADE_VALUES = ("entry_price", "exit_price", "qty", "stake", "stop_pct", "atr_at_entry", "pnl", "fees")
OPEN_FIELDS = (
    "variant",
    "symbol",
    "entry_time",
    "entry_price",
    "qty",
    "stake",
    "stop_pct",
    "atr_at_entry",
    "stop_price",
    "trail_active",
)


def _same(a: Any, b: Any) -> bool:
    """Exact equality; two floats must be the same bits (``-0.0`` is not ``0.0``)."""
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    return bool(a == b)


def differences(engine: Any, ref: ReferenceResult, limit: int = 12) -> list[str]:
    """Every way ``engine`` (a ``sigil.research.replay.ReplayResult``) differs from ``ref``; [] when none.

    Compared exactly: the trade sequence (who, when, why) and every value of every trade; the positions
    still open (in variant order, then by entry time and symbol: the spec gives them no order); per
    variant the final balance, final equity, opens, skip counts and closed trades; the equity curve
    (sample times and values).
    """
    out: list[str] = []
    if tuple(engine.variants) != ref.variants:
        out.append(f"variants: engine {engine.variants} vs reference {ref.variants}")
        return out
    if engine.candles != ref.candles:
        out.append(f"candles: engine {engine.candles} vs reference {ref.candles}")

    et, rt = engine.trades, ref.trades
    if len(et) != len(rt):
        out.append(f"trade count: engine {len(et)} vs reference {len(rt)}")
    for i, (a, b) in enumerate(zip(et, rt, strict=False)):
        ka = tuple(getattr(a, f) for f in TRADE_KEY)
        kb = tuple(getattr(b, f) for f in TRADE_KEY)
        if ka != kb:
            out.append(f"trade {i}: engine {ka} vs reference {kb}")
        else:
            for f in TRADE_VALUES:
                if not _same(getattr(a, f), getattr(b, f)):
                    out.append(f"trade {i} {ka}: {f} engine {getattr(a, f)!r} vs reference {getattr(b, f)!r}")
        if len(out) >= limit:
            return out

    order = {name: k for k, name in enumerate(ref.variants)}

    def open_rows(positions: Iterable[Any]) -> list[tuple[Any, ...]]:
        rows = [tuple(getattr(p, f) for f in OPEN_FIELDS) for p in positions]
        return sorted(rows, key=lambda r: (order[r[0]], r[2], r[1]))

    eo, ro = open_rows(engine.open_positions), open_rows(ref.open_positions)
    if len(eo) != len(ro):
        out.append(f"open positions: engine {len(eo)} vs reference {len(ro)}")
    for a, b in zip(eo, ro, strict=False):
        for f, x, y in zip(OPEN_FIELDS, a, b, strict=True):
            if not _same(x, y):
                out.append(f"open position {b[:3]}: {f} engine {x!r} vs reference {y!r}")

    for name in ref.variants:
        m, st = engine.metrics[name], ref.states[name]
        pairs = {
            "balance": (m.balance, st.balance),
            "equity": (m.equity, ref.final_equity(name)),
            "opens": (m.opens, st.opens),
            "skips": (dict(m.skips), st.skips),
            "closed_trades": (m.closed_trades, sum(1 for t in rt if t.variant == name)),
        }
        for what, (x, y) in pairs.items():
            if not _same(x, y):
                out.append(f"{name}: {what} engine {x!r} vs reference {y!r}")
        curve = [float(x) for x in engine.equity[name].tolist()]
        if curve != ref.equity[name]:
            bad = next(
                (k for k, (x, y) in enumerate(zip(curve, ref.equity[name], strict=False)) if x != y),
                min(len(curve), len(ref.equity[name])),
            )
            sizes = f"{len(curve)} vs {len(ref.equity[name])} samples"
            out.append(f"{name}: equity curve differs first at sample {bad} ({sizes})")
    if [int(x) for x in engine.equity_time.tolist()] != ref.equity_time:
        out.append("equity sample times differ")
    return out[:limit]
