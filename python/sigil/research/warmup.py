"""Warm-up check: how many candles of history before a decision make it the full-history decision.

Wilder's ATR is recursive (each value carries every earlier candle with a weight that shrinks by
``(period - 1) / period`` per candle) and the breakout's volume mean is a running sum, so a replay
that starts its file later decides with slightly different numbers. For every decision of the full
replay (:func:`sigil.research.replay.replay_series`), this module recomputes it from a series that
starts ``W`` candles before the decision's entry candle, for each ``W`` of a ladder, with the
engine's own code: a fresh single-symbol :class:`sigil._core.Engine` for that variant is fed the
candles from ``i - W`` on (its balance set high, so only the candles decide), and at the entry
candle ``i`` its signal is read; the open it gives is carried out with paper fills and the
candles after it are fed until the full run's exit candle.

Per decision, three levels of agreement with the full run:

- **decision**: the breakout fires at the same candle (an entry), and the position closes at the
  same candle for the same reason (an exit);
- **to 1e-9**: that, and the entry's ATR and ``stop_pct`` and the exit's fill price each agree to a
  relative tolerance (:data:`TOLERANCE`);
- **exact**: the same figures bit for bit.

The report gives, per variant and level, the smallest ``W`` of the ladder from which every rung up
to the full history agrees on every decision. The full-history rung is one pass per symbol through
the same single-symbol engine, carrying out the full run's opens; it must agree exactly, else the
recomputation itself is wrong (exit 1). An exit is judged with the history of its entry: its window
starts ``W`` candles before the entry and runs through the exit. Decisions the full run did not make
(a breakout a shorter history would see) are not looked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigil import _core
from sigil.config import Config
from sigil.data.candles import CandleSeries
from sigil.research.decisions import CLOSE, OPEN, Decision, Difference, decisions_of
from sigil.research.replay import ReplayResult, replay_series

#: Candles of history before the entry, tried in this order (the full history comes last).
DEFAULT_LADDER = (14, 20, 30, 50, 100, 200, 500, 1000)
#: Relative tolerance of the middle level.
TOLERANCE = 1e-9
#: Levels of agreement, weakest first (the middle one is :data:`TOLERANCE`).
LEVELS = ("decision", "1e-9", "exact")
#: A balance no stake reaches: the recomputation decides on candles alone.
_UNLIMITED = 1e300

Replay = Callable[[Sequence[CandleSeries], Config], ReplayResult]
Row = tuple[int, float, float, float, float, float]


@dataclass(frozen=True)
class Trade:
    """One full-run position: its open at candle ``entry`` and its close (None while still open)."""

    variant: int
    entry: int
    open: Decision
    exit: int | None
    close: Decision | None


@dataclass(frozen=True)
class VariantWarmup:
    """One variant's decisions and, per rung, how many agree at each level."""

    name: str
    entries: int
    exits: int
    #: ``agree[rung][level]``: decisions (entries + exits) that agree; rungs as the ladder, then full.
    agree: list[list[int]]
    #: Smallest rung from which every rung agrees on every decision, per level (None: not even full).
    smallest: list[int | str | None]
    #: ``whole_file[rung]``: decisions whose entry has fewer than W candles before it in its file, so
    #: that their window is the whole history (they agree by construction).
    whole_file: list[int]
    #: The first decision the full-history recomputation disagrees on (a bug), as one line.
    full_mismatch: str | None


@dataclass(frozen=True)
class WarmupReport:
    """The warm-up check's result per variant."""

    ladder: tuple[int, ...]
    variants: tuple[VariantWarmup, ...]

    @property
    def clean(self) -> bool:
        """True when the full history reproduces every decision exactly."""
        return all(v.full_mismatch is None for v in self.variants)


def _close_to(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * abs(b)


def agreement(want: Decision | None, got: Decision | None) -> int:
    """How many of :data:`LEVELS` ``got`` reaches against ``want`` (0: not the same decision)."""
    if want is None or got is None:
        return 3 if want is None and got is None else 0
    if want.key != got.key or want.reason != got.reason:
        return 0
    if want == got:
        return 3
    pairs = ((want.price, got.price), (want.stop_pct, got.stop_pct), (want.atr, got.atr))
    return 2 if all(_close_to(g, w) for w, g in pairs) else 1


class _Symbol:
    """One symbol's candles as rows, and the recomputation of its decisions."""

    def __init__(self, s: CandleSeries, params: list[dict[str, Any]]) -> None:
        self.name, self.tf = s.symbol, s.timeframe_ms
        self.close_time = s.time + s.timeframe_ms
        self.rows: list[Row] = list(zip(s.time.tolist(), s.open.tolist(), s.high.tolist(), s.low.tolist(),
                                        s.close.tolist(), s.volume.tolist(), strict=True))  # fmt: skip
        self.params = params

    def index(self, time: int) -> int:
        """The candle closing at ``time``."""
        return int(np.searchsorted(self.close_time, time))

    def _engine(self, variants: list[int]) -> tuple[_core.Engine, int]:
        engine = _core.Engine([self.params[v] for v in variants])
        sid = engine.add_symbol(self.name, self.tf)
        for k in range(len(variants)):
            engine.set_balance(k, _UNLIMITED)
        return engine, sid

    def _open(self, engine: _core.Engine, sid: int, k: int, v: int, o: _core.OpenIntent) -> Decision:
        p = self.params[v]
        stake = p["stake"]
        fill, qty, fee, _ = _core.buy_fill(o.price, stake, p["fee_rate"], p["slippage"])
        pos = engine.apply_open(k, sid, o.time, fill, qty, fee, stake, o.stop_pct, o.atr)
        return Decision(o.time, self.name, OPEN, v, pos.entry_price, "", pos.stop_pct, pos.atr_at_entry)

    def _close(self, engine: _core.Engine, sid: int, v: int, c: _core.CloseIntent) -> Decision:
        p = self.params[v]
        pos = engine.position(c.variant, sid)
        assert pos is not None, "the engine closes only what it holds"
        fill, gross, fee, _ = _core.sell_fill(c.price, pos.qty, p["fee_rate"], p["slippage"])
        t = engine.apply_close(c.variant, sid, c.time, fill, gross, fee, c.reason)
        return Decision(c.time, self.name, CLOSE, v, t.exit_price, t.exit_reason.value)

    def window(self, trade: Trade, start: int) -> tuple[Decision | None, Decision | None]:
        """The trade's open and close as an engine fed from candle ``start`` decides them."""
        engine, sid = self._engine([trade.variant])
        exits, signals, rows = engine.exits, engine.signals, self.rows
        for k in range(start, trade.entry):
            exits(sid, *rows[k])
            signals(sid)
        exits(sid, *rows[trade.entry])
        intent = next((o for o in signals(sid) if isinstance(o, _core.OpenIntent)), None)
        if intent is None:
            return None, None
        opened = self._open(engine, sid, 0, trade.variant, intent)
        last = trade.exit if trade.exit is not None else trade.entry
        for k in range(trade.entry + 1, last + 1):
            closes = exits(sid, *rows[k])
            if closes:
                return opened, self._close(engine, sid, trade.variant, closes[0])
        return opened, None

    def full(self, trades: Sequence[Trade]) -> dict[int, tuple[Decision | None, Decision | None]]:
        """Every trade of this symbol recomputed in one pass over the whole history (all variants in
        one engine), carrying out the full run's opens: trade index → (open, close)."""
        variants = sorted({t.variant for t in trades})
        local = {v: k for k, v in enumerate(variants)}
        engine, sid = self._engine(variants)
        opens = {(t.variant, t.entry): n for n, t in enumerate(trades)}
        holding: dict[int, int] = {}
        out: dict[int, tuple[Decision | None, Decision | None]] = {
            n: (None, None) for n in range(len(trades))
        }
        for i, row in enumerate(self.rows):
            for c in engine.exits(sid, *row):
                v = variants[c.variant]
                n = holding.pop(v)
                out[n] = (out[n][0], self._close(engine, sid, v, c))
            for o in engine.signals(sid):
                v = variants[o.variant]
                n_open = opens.get((v, i))
                if n_open is not None and isinstance(o, _core.OpenIntent):
                    out[n_open] = (self._open(engine, sid, local[v], v, o), None)
                    holding[v] = n_open
        return out


def _trades(full: Sequence[Decision], symbols: dict[str, _Symbol]) -> dict[str, list[Trade]]:
    """The full run's decisions paired into trades, per symbol, in entry order."""
    out: dict[str, list[Trade]] = {name: [] for name in symbols}
    pending: dict[tuple[int, str], Decision] = {}
    closes: dict[tuple[int, str, int], Decision] = {}
    for d in full:
        if d.action == OPEN:
            pending[(d.variant, d.symbol)] = d
            out[d.symbol].append(Trade(d.variant, symbols[d.symbol].index(d.time), d, None, None))
        else:
            o = pending.pop((d.variant, d.symbol))
            closes[(d.variant, d.symbol, o.time)] = d
    for name, trades in out.items():
        sym = symbols[name]
        for n, t in enumerate(trades):
            c = closes.get((t.variant, name, t.open.time))
            if c is not None:
                trades[n] = Trade(t.variant, t.entry, t.open, sym.index(c.time), c)
    return out


def check_warmup(
    series: Sequence[CandleSeries],
    config: Config,
    ladder: Sequence[int] = DEFAULT_LADDER,
    replay: Replay = replay_series,
) -> WarmupReport:
    """Recomputes every decision of ``replay(series, config)`` with ``W`` candles of history for each
    ``W`` in ``ladder``, and with the full history. ``replay`` is the full run; a caller passes
    another only to show that the check catches a run whose decisions are not the data's."""
    rungs = tuple(sorted(set(ladder)))
    if not rungs or rungs[0] < 1:
        raise ValueError(f"--ladder: every warm-up must be a whole number >= 1 (got {list(ladder)})")
    params = [v.engine_params() for v in config.variants]
    names = [v.name for v in config.variants]
    symbols = {s.symbol: _Symbol(s, params) for s in series}
    by_symbol = _trades(decisions_of(replay(series, config)), symbols)
    nv, nr = len(names), len(rungs) + 1
    agree = [[[0] * len(LEVELS) for _ in range(nr)] for _ in range(nv)]
    counts = [[0, 0] for _ in range(nv)]
    whole = [[0] * len(rungs) for _ in range(nv)]
    mismatch: list[str | None] = [None] * nv
    for name, trades in by_symbol.items():
        if not trades:
            continue
        sym = symbols[name]
        full = sym.full(trades)
        for n, t in enumerate(trades):
            counts[t.variant][0] += 1
            counts[t.variant][1] += t.close is not None
            results = [sym.window(t, max(0, t.entry - w)) for w in rungs] + [full[n]]
            for r, w in enumerate(rungs):
                whole[t.variant][r] += (t.entry < w) * (1 + (t.close is not None))
            for r, (o, c) in enumerate(results):
                levels = (agreement(t.open, o), agreement(t.close, c) if t.close is not None else 3)
                for lv in range(len(LEVELS)):
                    agree[t.variant][r][lv] += (levels[0] > lv) + (t.close is not None and levels[1] > lv)
            o, c = full[n]
            if mismatch[t.variant] is None and (o != t.open or c != t.close):
                want, got = (t.open, o) if o != t.open else (t.close, c)
                mismatch[t.variant] = Difference(want, got).describe(
                    names, "recomputed from the full history"
                )
    out = []
    for v in range(nv):
        total = counts[v][0] + counts[v][1]
        smallest: list[int | str | None] = []
        for lv in range(len(LEVELS)):
            ok = [agree[v][r][lv] == total for r in range(nr)]
            if not ok[-1]:
                smallest.append(None)
                continue
            r = nr - 1
            while r > 0 and ok[r - 1]:
                r -= 1
            smallest.append(rungs[r] if r < len(rungs) else "full")
        out.append(
            VariantWarmup(names[v], counts[v][0], counts[v][1], agree[v], smallest, whole[v], mismatch[v])
        )
    return WarmupReport(rungs, tuple(out))
