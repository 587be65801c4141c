"""Performance figures of one variant from its closed trades and its equity curve: the ratios traders
read (CAGR, Sharpe, Sortino, Calmar), drawdown, trade statistics, exposure, and the per-symbol and
per-month breakdowns. One implementation for ``sigil replay`` and ``sigil report``.

Conventions (also in the README's metrics section):

- Times are epoch milliseconds (UTC) and are candle closes, so a time exactly at midnight belongs to
  the day (and month) that ends there.
- Daily returns: the equity at the end of each calendar day (UTC) from the first sample's day to the
  last's (a day without a sample keeps the day before's equity), each over the day before's; the
  first day is measured from the starting balance. Sharpe, Sortino and CAGR come from these returns,
  annualised with :data:`DAYS_PER_YEAR`, by empyrical's definitions (empyrical-reloaded's
  ``annual_return``, ``sharpe_ratio``, ``sortino_ratio``; the tests check equality with it). They are
  written out here because importing empyrical (pandas, scipy) took 1.7 s of a replay that otherwise
  ends in well under one.
- Calmar is ``cagr / max_drawdown`` with the drawdown of the full equity curve (the one shown beside
  it), not empyrical's drawdown of the daily series.
- R of a trade: ``pnl / (stake × stop_pct)``; SQN is Van Tharp's ``√n × mean(R) / stdev(R)`` (sample
  standard deviation, no cap on n).
- A figure that is undefined is ``None`` (JSON ``null``), never NaN or infinity: ratios without a
  daily return or without dispersion, the profit factor without a losing trade, trade statistics
  without a closed trade.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sigil.report.metrics import sequential_sum

#: Crypto trades every day of the year: daily returns are annualised over 365 days, not 252.
DAYS_PER_YEAR = 365
DAY_MS = 86_400_000

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClosedTrades:
    """One variant's closed trades as columns, in the order they closed. ``symbol`` holds indices into
    ``symbols``; times in ms."""

    symbols: tuple[str, ...]
    symbol: I64
    entry_time: I64
    exit_time: I64
    pnl: F64
    fees: F64
    stake: F64
    stop_pct: F64

    @classmethod
    def from_columns(cls, symbols: Sequence[str], columns: Mapping[str, npt.ArrayLike]) -> ClosedTrades:
        """From columns named as the fields (``symbol``, ``entry_time``, ``exit_time``, ``pnl``, ``fees``,
        ``stake``, ``stop_pct``); other columns are ignored."""
        ints = [np.asarray(columns[k], dtype=np.int64) for k in ("symbol", "entry_time", "exit_time")]
        floats = [np.asarray(columns[k], dtype=np.float64) for k in ("pnl", "fees", "stake", "stop_pct")]
        code = ints[0]
        if any(a.shape != (code.size,) for a in (*ints, *floats)):
            raise ValueError("closed trades: the columns must be 1-d and of one length")
        if code.size and (code.min() < 0 or code.max() >= len(symbols)):
            raise ValueError("closed trades: a symbol index is out of range")
        return cls(tuple(symbols), ints[0], ints[1], ints[2], floats[0], floats[1], floats[2], floats[3])

    def where(self, mask: npt.NDArray[np.bool_]) -> ClosedTrades:
        """The trades where ``mask`` holds, in the same order."""
        return ClosedTrades(
            self.symbols,
            self.symbol[mask],
            self.entry_time[mask],
            self.exit_time[mask],
            self.pnl[mask],
            self.fees[mask],
            self.stake[mask],
            self.stop_pct[mask],
        )

    def __len__(self) -> int:
        return int(self.pnl.size)


@dataclass(frozen=True)
class TradeFigures:
    """Figures of a set of closed trades (a variant's, one symbol's, one month's)."""

    closed_trades: int
    wins: int
    net_pnl: float
    fees: float
    profit_factor: float | None
    expectancy: float | None
    expectancy_r: float | None
    best_trade: float | None
    worst_trade: float | None

    def to_json(self) -> dict[str, Any]:
        """As in ``by_symbol`` entries (with ``win_rate``)."""
        return {
            "closed_trades": self.closed_trades,
            "wins": self.wins,
            "win_rate": self.wins / self.closed_trades if self.closed_trades else None,
            "net_pnl": self.net_pnl,
            "fees": self.fees,
            "profit_factor": self.profit_factor,
            "expectancy": self.expectancy,
            "expectancy_r": self.expectancy_r,
            "best_trade": self.best_trade,
            "worst_trade": self.worst_trade,
        }


@dataclass(frozen=True)
class MonthFigures:
    """One calendar month (UTC): the equity's return over it and the trades that closed in it."""

    equity_return: float | None
    end_equity: float
    closed_trades: int
    wins: int
    net_pnl: float
    fees: float

    def to_json(self) -> dict[str, Any]:
        """As in ``by_month`` entries."""
        return {
            "return": self.equity_return,
            "end_equity": self.end_equity,
            "closed_trades": self.closed_trades,
            "wins": self.wins,
            "net_pnl": self.net_pnl,
            "fees": self.fees,
        }


@dataclass(frozen=True)
class Performance:
    """Every figure of one variant (DESIGN's key names; ``fees`` is the trade tally's)."""

    cagr: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: float
    max_drawdown_duration_s: int
    trades: TradeFigures
    sqn: float | None
    exposure: float | None
    avg_hold_s: float | None
    median_hold_s: float | None
    max_losing_streak: int
    by_symbol: dict[str, TradeFigures]
    by_month: dict[str, MonthFigures]

    def to_json(self) -> dict[str, Any]:
        """The figures of a ``variants`` entry in ``--json`` (strict JSON: ``null`` where undefined)."""
        t = self.trades
        return {
            "cagr": self.cagr,
            "sharpe": self.sharpe,
            "sortino": self.sortino,
            "calmar": self.calmar,
            "max_drawdown": self.max_drawdown,
            "max_drawdown_duration_s": self.max_drawdown_duration_s,
            "profit_factor": t.profit_factor,
            "expectancy": t.expectancy,
            "expectancy_r": t.expectancy_r,
            "sqn": self.sqn,
            "exposure": self.exposure,
            "avg_hold_s": self.avg_hold_s,
            "median_hold_s": self.median_hold_s,
            "best_trade": t.best_trade,
            "worst_trade": t.worst_trade,
            "max_losing_streak": self.max_losing_streak,
            "by_symbol": {s: f.to_json() for s, f in self.by_symbol.items()},
            "by_month": {m: f.to_json() for m, f in self.by_month.items()},
        }


def performance(
    starting_balance: float,
    equity_time: npt.ArrayLike,
    equity: npt.ArrayLike,
    trades: ClosedTrades,
    open_entry_time: npt.ArrayLike = (),
) -> Performance:
    """The figures of one variant: ``equity`` sampled at ``equity_time`` (ms, non-decreasing),
    ``trades`` closed in order, and the entry times of positions still open at the curve's end.

    Exposure is the share of the curve's span (first to last sample) during which at least one
    position was open (a position still open counts to the end).
    """
    time = np.asarray(equity_time, dtype=np.int64)
    curve = np.asarray(equity, dtype=np.float64)
    if time.shape != curve.shape or time.ndim != 1:
        raise ValueError("performance: equity_time and equity must be columns of one length")
    if time.size > 1 and np.any(np.diff(time) < 0):
        raise ValueError("performance: equity_time must not decrease")
    opened = np.asarray(open_entry_time, dtype=np.int64)
    dd = max_drawdown(curve)
    ratios = _daily_ratios(starting_balance, time, curve)
    calmar = _finite(ratios[0] / dd) if ratios[0] is not None and dd > 0 else None
    hold = (trades.exit_time - trades.entry_time) / 1000.0
    return Performance(
        cagr=ratios[0],
        sharpe=ratios[1],
        sortino=ratios[2],
        calmar=calmar,
        max_drawdown=dd,
        max_drawdown_duration_s=max_drawdown_duration_ms(time, curve) // 1000,
        trades=trade_figures(trades),
        sqn=_sqn(trades),
        exposure=exposure(time, trades.entry_time, trades.exit_time, opened),
        avg_hold_s=float(hold.mean()) if hold.size else None,
        median_hold_s=_median(hold) if hold.size else None,
        max_losing_streak=max_losing_streak(trades.pnl),
        by_symbol={
            trades.symbols[k]: trade_figures(trades.where(trades.symbol == k))
            for k in sorted(set(trades.symbol.tolist()), key=lambda k: trades.symbols[k])
        },
        by_month=_by_month(starting_balance, time, curve, trades),
    )


def _median(x: F64) -> float:
    """``np.median`` of a NaN-free column, without the ``numpy.ma`` import (about 10 ms) it makes."""
    s = np.sort(x)
    m = s.size // 2
    return float(s[m]) if s.size % 2 else float((s[m - 1] + s[m]) / 2)


def max_drawdown(curve: F64) -> float:
    """The largest fall from a running peak, as a fraction of that peak (0 for an empty curve, or
    when a peak is not positive)."""
    if curve.size == 0:
        return 0.0
    peak = np.maximum.accumulate(curve)
    return float(np.max((peak - curve) / peak)) if np.all(peak > 0) else 0.0


def max_drawdown_duration_ms(time: I64, curve: F64) -> int:
    """The longest time under a running peak: from the last sample at the peak to the first sample
    back at or above it, or to the last sample when the curve never gets back."""
    longest, under = 0, False
    peak, since = -math.inf, 0
    for t, v in zip(time.tolist(), curve.tolist(), strict=True):
        if v >= peak:
            if under:
                longest = max(longest, t - since)
            peak, since, under = v, t, False
        else:
            under = True
    if under:
        longest = max(longest, int(time[-1]) - since)
    return longest


def trade_figures(trades: ClosedTrades) -> TradeFigures:
    """Count, wins, sums (in closing order, as a loop adds them), profit factor, expectancy in quote
    and in R, best and worst trade."""
    p, n = trades.pnl, len(trades)
    net = sequential_sum(p)
    loss = -sequential_sum(p[p < 0])
    r = _r_multiples(trades)
    return TradeFigures(
        closed_trades=n,
        wins=int((p > 0).sum()),
        net_pnl=net,
        fees=sequential_sum(trades.fees),
        profit_factor=sequential_sum(p[p > 0]) / loss if loss > 0 else None,
        expectancy=net / n if n else None,
        expectancy_r=float(r.mean()) if r is not None and n else None,
        best_trade=float(p.max()) if n else None,
        worst_trade=float(p.min()) if n else None,
    )


def exposure(time: I64, entry: I64, exit_: I64, open_entry: I64) -> float | None:
    """The share of ``[time[0], time[-1]]`` covered by at least one of the intervals ``[entry, exit]``
    and ``[open_entry, time[-1]]``; None for a span of zero length."""
    if time.size == 0 or time[-1] <= time[0]:
        return None
    start, end = int(time[0]), int(time[-1])
    spans = sorted(
        zip(
            np.concatenate([entry, open_entry]).tolist(),
            np.concatenate([exit_, np.full(open_entry.size, end, dtype=np.int64)]).tolist(),
            strict=True,
        )
    )
    covered, reach = 0, start
    for a, b in spans:
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += b - a
            reach = b
    return covered / (end - start)


def max_losing_streak(pnl: F64) -> int:
    """The most losing trades (P&L below zero) in a row; a trade at zero or above ends a streak."""
    longest = run = 0
    for x in pnl.tolist():
        run = run + 1 if x < 0 else 0
        longest = max(longest, run)
    return longest


def daily_equity(starting_balance: float, time: I64, curve: F64) -> F64:
    """The starting balance, then the equity at the end of each UTC day from the first sample's day
    to the last's (a time at midnight ends the day before; a day without a sample keeps the last)."""
    if time.size == 0:
        return np.asarray([starting_balance], dtype=np.float64)
    day = (time - 1) // DAY_MS
    ends = np.searchsorted(day, np.arange(day[0], day[-1] + 1), side="right") - 1
    return np.concatenate([[starting_balance], curve[ends]])


def daily_returns(starting_balance: float, time: I64, curve: F64) -> F64 | None:
    """Day-over-day returns of :func:`daily_equity`; None when an end-of-day equity is not positive."""
    values = daily_equity(starting_balance, time, curve)
    if np.any(values[:-1] <= 0):
        return None
    return values[1:] / values[:-1] - 1.0


def _daily_ratios(
    starting_balance: float, time: I64, curve: F64
) -> tuple[float | None, float | None, float | None]:
    """(CAGR, Sharpe, Sortino) of the daily returns."""
    returns = daily_returns(starting_balance, time, curve)
    if returns is None or returns.size == 0:
        return None, None, None
    return annual_return(returns), sharpe_ratio(returns), sortino_ratio(returns)


def annual_return(returns: F64, periods_per_year: float = DAYS_PER_YEAR) -> float | None:
    """Compound annual growth of per-period ``returns``: ``prod(1 + r) ** (periods_per_year / n) - 1``."""
    if returns.size == 0:
        return None
    growth = float(np.prod(1.0 + returns))
    years = returns.size / periods_per_year
    return _finite(growth ** (1.0 / years) - 1.0)


def sharpe_ratio(returns: F64, periods_per_year: float = DAYS_PER_YEAR) -> float | None:
    """Annualised Sharpe ratio, risk-free 0: ``mean / stdev (ddof 1) × √periods_per_year``."""
    if returns.size < 2:
        return None
    # Equal returns have no dispersion, whatever residue the floating-point mean leaves in the stdev.
    if float(np.max(returns)) == float(np.min(returns)):
        return None
    std = float(np.std(returns, ddof=1))
    return _finite(float(np.mean(returns)) / std * math.sqrt(periods_per_year))


def sortino_ratio(returns: F64, periods_per_year: float = DAYS_PER_YEAR) -> float | None:
    """Annualised Sortino ratio, target 0: the annualised mean over the annualised downside deviation
    ``√mean(min(r, 0)²) × √periods_per_year`` (every period counts in the mean, as empyrical's)."""
    if returns.size < 2:
        return None
    downside = math.sqrt(float(np.mean(np.square(np.minimum(returns, 0.0))))) * math.sqrt(periods_per_year)
    if downside == 0.0:
        return None
    return _finite(float(np.mean(returns)) * periods_per_year / downside)


def _by_month(
    starting_balance: float, time: I64, curve: F64, trades: ClosedTrades
) -> dict[str, MonthFigures]:
    """Every calendar month from the first sample's to the last's, with the trades that closed in it."""
    if time.size == 0:
        return {}
    month = _month(time)
    months = np.arange(month[0], month[-1] + 1)
    ends = curve[np.searchsorted(month, months, side="right") - 1]
    before = np.concatenate([[starting_balance], ends[:-1]])
    exit_month = _month(trades.exit_time)
    out: dict[str, MonthFigures] = {}
    for m, start, end in zip(months.tolist(), before.tolist(), ends.tolist(), strict=True):
        mine = trades.pnl[exit_month == m]
        out[f"{m // 12:04d}-{m % 12 + 1:02d}"] = MonthFigures(
            equity_return=end / start - 1.0 if start > 0 else None,
            end_equity=end,
            closed_trades=int(mine.size),
            wins=int((mine > 0).sum()),
            net_pnl=sequential_sum(mine),
            fees=sequential_sum(trades.fees[exit_month == m]),
        )
    return out


def _month(time_ms: I64) -> I64:
    """Months since year 0 (year × 12 + month − 1) of candle-close times (midnight ends the month before)."""
    months = (time_ms - 1).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    return months + 1970 * 12


def _r_multiples(trades: ClosedTrades) -> F64 | None:
    """pnl / (stake × stop_pct) per trade; None when a trade's risk is not positive."""
    risk = trades.stake * trades.stop_pct
    if np.any(~(risk > 0)):
        return None
    return trades.pnl / risk


def _sqn(trades: ClosedTrades) -> float | None:
    r = _r_multiples(trades)
    if r is None or r.size < 2:
        return None
    sd = float(np.std(r, ddof=1))
    return _finite(math.sqrt(r.size) * float(r.mean()) / sd) if sd > 0 else None


def _finite(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None
