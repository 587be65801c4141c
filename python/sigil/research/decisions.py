"""A replay's decisions, one row per open and per close, and the first place two lists of them part.

The look-ahead and warm-up checks both compare what a replay decided with what the same engine
decides when it is given less history; this module is the shape they compare and the comparison.
A decision is keyed by (time, symbol, action, variant) and compared bit for bit on its figures:
the fill price, and for an open the hard stop (``stop_pct``) and the ATR it was sized on, for a
close the exit reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from sigil.research.replay import ReplayResult
from sigil.times import iso_z

CLOSE = "close"
OPEN = "open"


class Decision(NamedTuple):
    """One open or close a replay carried out. Sorting orders decisions as the engine takes them:
    by close time of the candle, symbol name, closes before opens (exits run first), variant."""

    time: int
    symbol: str
    action: str
    variant: int
    #: The fill price (the engine's reference price with slippage).
    price: float
    #: The exit reason of a close; "" for an open.
    reason: str = ""
    #: The hard stop of an open, as a fraction of the entry; 0.0 for a close.
    stop_pct: float = 0.0
    #: The ATR an open was sized on; 0.0 for a close.
    atr: float = 0.0

    @property
    def key(self) -> tuple[int, str, str, int]:
        """What identifies the decision: (time, symbol, action, variant)."""
        return (self.time, self.symbol, self.action, self.variant)

    def figures(self) -> str:
        """The compared figures, in full precision (a one-ulp change shows)."""
        if self.action == OPEN:
            return f"open at {self.price!r} (stop_pct {self.stop_pct!r}, atr {self.atr!r})"
        return f"close at {self.price!r} ({self.reason})"


def decisions_of(result: ReplayResult) -> list[Decision]:
    """Every open and close of ``result``, sorted: the opens of closed trades and of positions still
    open when the data ended, and the closes of closed trades."""
    syms = result.symbols
    t = {k: np.asarray(v).tolist() for k, v in result.trade_columns.items()}
    o = {k: np.asarray(v).tolist() for k, v in result.open_columns.items()}
    reasons = result.exit_reasons
    out: list[Decision] = []
    for v, s, et, xt, ep, xp, sp, a, r in zip(
        t["variant"], t["symbol"], t["entry_time"], t["exit_time"], t["entry_price"], t["exit_price"],
        t["stop_pct"], t["atr_at_entry"], t["exit_reason"],
        strict=True,
    ):  # fmt: skip
        out.append(Decision(et, syms[s], OPEN, v, ep, "", sp, a))
        out.append(Decision(xt, syms[s], CLOSE, v, xp, reasons[r]))
    for v, s, et, ep, sp, a in zip(
        o["variant"], o["symbol"], o["entry_time"], o["entry_price"], o["stop_pct"], o["atr_at_entry"],
        strict=True,
    ):  # fmt: skip
        out.append(Decision(et, syms[s], OPEN, v, ep, "", sp, a))
    out.sort()
    return out


class Difference(NamedTuple):
    """The first decision two runs disagree on: ``want`` (the full run's) and ``got`` (the run with
    less data); either is None when that run made no such decision."""

    want: Decision | None
    got: Decision | None

    @property
    def decision(self) -> Decision:
        """Whichever side exists (the full run's when both do)."""
        d = self.want if self.want is not None else self.got
        assert d is not None, "a difference has at least one side"
        return d

    def describe(self, variants: Sequence[str], got_label: str) -> str:
        """One line: variant, symbol, time, and what changed; ``got_label`` names the other run."""
        d = self.decision
        head = f"{variants[d.variant]} {d.symbol} at {iso_z(d.time)}"
        want = self.want.figures() if self.want else f"no {d.action}"
        got = self.got.figures() if self.got else f"no {d.action}"
        return f"{head}: the full run has {want}; {got_label}: {got}"


def first_difference(want: Iterable[Decision], got: Iterable[Decision]) -> Difference | None:
    """The first decision, in engine order, that is in one sorted list and not the other, or in both
    with different figures; None when the lists are equal."""
    want, got = list(want), list(got)
    if want == got:  # the common case, compared in C
        return None
    a, b = iter(want), iter(got)
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if x is not None and y is not None and x.key == y.key:
            if x != y:
                return Difference(x, y)
            x, y = next(a, None), next(b, None)
        elif y is None or (x is not None and x.key < y.key):
            return Difference(x, None)
        else:
            return Difference(None, y)
    return None


def counts_by_variant(decisions: Iterable[Decision], n_variants: int) -> list[tuple[int, int]]:
    """(entries, exits) per variant index."""
    return running_counts(list(decisions), n_variants)[-1]


def running_counts(decisions: Sequence[Decision], n_variants: int) -> list[list[tuple[int, int]]]:
    """``out[n]``: (entries, exits) per variant index among the first ``n`` decisions."""
    codes = np.fromiter((2 * d.variant + (d.action == CLOSE) for d in decisions), np.int64, len(decisions))
    onehot = np.zeros((len(decisions) + 1, 2 * n_variants), np.int64)
    onehot[np.arange(1, len(decisions) + 1), codes] = 1
    cum = np.cumsum(onehot, axis=0).tolist()
    return [[(row[2 * v], row[2 * v + 1]) for v in range(n_variants)] for row in cum]
