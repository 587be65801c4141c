"""Per-variant trade tallies: the numbers behind the variant table, for replay and for the daemon's book."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sigil._core import ExitReason, SkipReason

#: Exit reasons in table order (the engine's vocabulary, in its report order).
EXIT_REASONS = tuple(r.value for r in ExitReason.report_order())
#: Reasons a breakout was not taken, in report order.
SKIP_REASONS = tuple(r.value for r in SkipReason.all())


@dataclass(frozen=True)
class TradeTally:
    """Closed trades of one variant: count, wins, net P&L, fees, and (count, P&L) by exit reason."""

    closed_trades: int
    wins: int
    net_pnl: float
    fees: float
    by_reason: dict[str, tuple[int, float]]

    def share(self, reason: str) -> float:
        """Fraction of closed trades that exited for ``reason``."""
        n = self.by_reason.get(reason, (0, 0.0))[0]
        return n / self.closed_trades if self.closed_trades else 0.0

    def tally_json(self) -> dict[str, Any]:
        """The tally part of a ``variants`` entry in ``--json`` output."""
        return {
            "closed_trades": self.closed_trades,
            "wins": self.wins,
            "win_rate": self.wins / self.closed_trades if self.closed_trades else 0.0,
            "net_pnl": self.net_pnl,
            "fees": self.fees,
            "exits": {
                r: {"count": n, "share": self.share(r), "pnl": p} for r, (n, p) in self.by_reason.items()
            },
        }


def tally(
    names: Sequence[str],
    variant: npt.ArrayLike,
    reason: npt.ArrayLike,
    reasons: Sequence[str],
    pnl: npt.ArrayLike,
    fees: npt.ArrayLike,
) -> dict[str, TradeTally]:
    """Tallies closed trades given as columns: per trade, ``variant`` (an index into ``names``),
    ``reason`` (an index into ``reasons``), ``pnl`` and ``fees``.

    Sums run in the order given, left to right, as a loop over the trades would add them (so they
    are reproducible to the bit). Every variant of ``names`` gets a tally (zero when it has no
    trade); a reason outside :data:`EXIT_REASONS` gets an entry when some trade has it.
    """
    v = np.asarray(variant, dtype=np.int64)
    r = np.asarray(reason, dtype=np.int64)
    p = np.asarray(pnl, dtype=np.float64)
    f = np.asarray(fees, dtype=np.float64)
    if not (v.shape == r.shape == p.shape == f.shape) or v.ndim != 1:
        raise ValueError("tally: variant, reason, pnl and fees must be columns of one length")
    if v.size and (v.min() < 0 or v.max() >= len(names) or r.min() < 0 or r.max() >= len(reasons)):
        raise ValueError("tally: a variant or reason index is out of range")
    order = [*EXIT_REASONS, *(x for x in reasons if x not in EXIT_REASONS)]
    code = {x: k for k, x in enumerate(reasons)}
    out: dict[str, TradeTally] = {}
    for k, name in enumerate(names):
        mine = v == k
        pk, rk = p[mine], r[mine]
        by_reason: dict[str, tuple[int, float]] = {}
        for x in order:
            hit = rk == code[x] if x in code else np.zeros(rk.shape, dtype=bool)
            n = int(hit.sum())
            if n or x in EXIT_REASONS:
                by_reason[x] = (n, sequential_sum(pk[hit]))
        out[name] = TradeTally(
            closed_trades=int(pk.size),
            wins=int((pk > 0).sum()),
            net_pnl=sequential_sum(pk),
            fees=sequential_sum(f[mine]),
            by_reason=by_reason,
        )
    return out


def sequential_sum(a: npt.NDArray[np.float64]) -> float:
    """((a0 + a1) + a2) + …: numpy's ``sum`` adds pairwise, which differs in the last bits."""
    return float(np.cumsum(a)[-1]) if a.size else 0.0
