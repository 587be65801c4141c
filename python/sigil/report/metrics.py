"""Per-variant trade tallies: the numbers behind the variant table, for replay and for the daemon's book."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Exit reasons in table order.
EXIT_REASONS = ("atr_trail", "hard_stop", "time_stop")
#: Reasons a breakout was not taken, in report order.
SKIP_REASONS = ("open", "cooldown", "max_open", "balance")


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


def tally(trades: Iterable[tuple[str, str, float, float]], variants: Sequence[str]) -> dict[str, TradeTally]:
    """One pass over ``(variant, exit_reason, pnl, fees)`` rows, summed in the order given.

    Every variant of ``variants`` gets a tally (zero when it has no trade); a reason outside
    :data:`EXIT_REASONS` gets its own entry.
    """
    count = dict.fromkeys(variants, 0)
    wins = dict.fromkeys(variants, 0)
    pnl = dict.fromkeys(variants, 0.0)
    fees = dict.fromkeys(variants, 0.0)
    reasons: dict[str, dict[str, list[float]]] = {v: {r: [0, 0.0] for r in EXIT_REASONS} for v in variants}
    for variant, reason, p, f in trades:
        count[variant] += 1
        wins[variant] += p > 0
        pnl[variant] += p
        fees[variant] += f
        cell = reasons[variant].setdefault(reason, [0, 0.0])
        cell[0] += 1
        cell[1] += p
    return {
        v: TradeTally(
            closed_trades=count[v],
            wins=wins[v],
            net_pnl=pnl[v],
            fees=fees[v],
            by_reason={r: (int(c[0]), float(c[1])) for r, c in reasons[v].items()},
        )
        for v in variants
    }
