"""What a search optimises: one figure of :mod:`sigil.report.performance` (or two, for a Pareto front),
and the minimum number of closed trades below which a trial has no score.

``--objective`` takes one name, or two separated by a comma (``return,drawdown``). The figures are the
ones ``sigil replay --metrics full`` prints, never computed again here; ``return`` is the final
equity over the starting balance, less one, and ``drawdown`` the maximum drawdown (minimised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sigil.report.performance import Performance
from sigil.research.replay import VariantMetrics

Figure = Callable[[Performance, VariantMetrics], float | None]
Direction = Literal["maximize", "minimize"]


def _total_return(_p: Performance, m: VariantMetrics) -> float | None:
    return m.equity / m.starting_balance - 1.0 if m.starting_balance > 0 else None


#: name → (Optuna direction, the figure). Higher is better but for the drawdown.
OBJECTIVES: dict[str, tuple[Direction, Figure]] = {
    "calmar": ("maximize", lambda p, _m: p.calmar),
    "sharpe": ("maximize", lambda p, _m: p.sharpe),
    "sortino": ("maximize", lambda p, _m: p.sortino),
    "net_pnl": ("maximize", lambda p, _m: p.trades.net_pnl),
    "profit_factor": ("maximize", lambda p, _m: p.trades.profit_factor),
    "expectancy": ("maximize", lambda p, _m: p.trades.expectancy),
    "return": ("maximize", _total_return),
    "drawdown": ("minimize", lambda p, _m: p.max_drawdown),
}

DEFAULT_OBJECTIVE = "calmar"
DEFAULT_MIN_TRADES = 30


@dataclass(frozen=True)
class Objective:
    """The figures a search optimises (one, or two for a Pareto front) and the trade minimum."""

    names: tuple[str, ...]
    min_trades: int = DEFAULT_MIN_TRADES

    @property
    def directions(self) -> list[Direction]:
        """Optuna's direction of each figure."""
        return [OBJECTIVES[n][0] for n in self.names]

    @property
    def label(self) -> str:
        """As written on the command line: ``calmar``, ``return,drawdown``."""
        return ",".join(self.names)

    @property
    def multi(self) -> bool:
        """True for a two-figure (Pareto) search."""
        return len(self.names) > 1

    def score(self, perf: Performance, metrics: VariantMetrics) -> tuple[list[float] | None, str | None]:
        """(the values, None) for a trial that scores, or (None, why not): fewer closed trades than
        the minimum, or a figure that is undefined for this trial (no losing trade, no dispersion)."""
        closed = perf.trades.closed_trades
        if closed < self.min_trades:
            return None, f"{closed} closed trades, fewer than the minimum {self.min_trades}"
        values: list[float] = []
        for name in self.names:
            v = OBJECTIVES[name][1](perf, metrics)
            if v is None:
                return None, f"{name} is undefined for this trial"
            values.append(v)
        return values, None

    def values_of(self, perf: Performance, metrics: VariantMetrics) -> list[float | None]:
        """Every figure of the objective (None where undefined), whatever the trade count."""
        return [OBJECTIVES[n][1](perf, metrics) for n in self.names]


def parse_objective(raw: str, min_trades: int = DEFAULT_MIN_TRADES) -> Objective:
    """``"calmar"`` or ``"return,drawdown"`` → an :class:`Objective`; ValueError naming a bad word."""
    names = tuple(w.strip() for w in raw.split(","))
    for n in names:
        if n not in OBJECTIVES:
            raise ValueError(f"--objective: unknown figure {n!r} (one of {', '.join(OBJECTIVES)})")
    if len(names) > 2:
        raise ValueError(f"--objective: at most two figures, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--objective: {raw!r} names a figure twice")
    if min_trades < 0:
        raise ValueError(f"--min-trades must be at least 0, got {min_trades}")
    return Objective(names, min_trades)
