"""The figures of :mod:`sigil.report.performance` as text, under the variant table: a compact table by
default, and with ``--metrics full`` every figure (one row per figure, one column per variant), the
month-by-month returns and the per-symbol P&L. ``—`` marks a figure that is undefined (JSON ``null``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from sigil.report.metrics import TradeTally
from sigil.report.performance import Performance
from sigil.report.table import aligned, money

#: What ``--metrics`` accepts: the compact table (default) or all figures and breakdowns.
METRICS_CHOICES = ("compact", "full")

_NONE = "—"


def _minus(text: str) -> str:
    return text.replace("-", "−")


def pct(x: float | None) -> str:
    """``+2.2%`` / ``−95.1%`` (of a fraction), ``—`` when undefined."""
    return _NONE if x is None else _minus(f"{x * 100:+.1f}%")


def ratio(x: float | None) -> str:
    """A ratio to two decimals, ``—`` when undefined."""
    return _NONE if x is None else _minus(f"{x:.2f}")


def _share(x: float | None) -> str:
    """An unsigned fraction as a percentage (exposure, drawdown, win rate)."""
    return _NONE if x is None else f"{x * 100:.1f}%"


def _money(x: float | None) -> str:
    return _NONE if x is None else money(x)


def _r(x: float | None) -> str:
    return _NONE if x is None else _minus(f"{x:+.3f} R")


def _hours(seconds: float | None) -> str:
    return _NONE if seconds is None else f"{seconds / 3600:.1f} h"


def _days(seconds: float) -> str:
    return f"{seconds / 86_400:.1f} d"


def compact_table(perf: Mapping[str, Performance]) -> str:
    """One row per variant: CAGR, Sharpe, Sortino, max drawdown, profit factor, expectancy, exposure."""
    head = ("variant", "CAGR", "Sharpe", "Sortino", "max DD", "profit factor", "expectancy", "exposure")
    rows = [
        (
            name,
            pct(p.cagr),
            ratio(p.sharpe),
            ratio(p.sortino),
            _share(p.max_drawdown),
            ratio(p.trades.profit_factor),
            f"{_money(p.trades.expectancy)} ({_r(p.trades.expectancy_r)})",
            _share(p.exposure),
        )
        for name, p in perf.items()
    ]
    return aligned(head, rows)


#: The rows of the full table: label, and the figure of a variant as text.
_FULL_ROWS: tuple[tuple[str, Callable[[Performance, TradeTally], str]], ...] = (
    ("CAGR", lambda p, t: pct(p.cagr)),
    ("Sharpe (daily, ×√365)", lambda p, t: ratio(p.sharpe)),
    ("Sortino (daily, ×√365)", lambda p, t: ratio(p.sortino)),
    ("Calmar", lambda p, t: ratio(p.calmar)),
    ("max drawdown", lambda p, t: _share(p.max_drawdown)),
    ("max drawdown duration", lambda p, t: _days(p.max_drawdown_duration_s)),
    ("closed trades", lambda p, t: str(t.closed_trades)),
    ("win rate", lambda p, t: _share(t.wins / t.closed_trades if t.closed_trades else None)),
    ("profit factor", lambda p, t: ratio(p.trades.profit_factor)),
    ("expectancy", lambda p, t: _money(p.trades.expectancy)),
    ("expectancy (R)", lambda p, t: _r(p.trades.expectancy_r)),
    ("SQN", lambda p, t: ratio(p.sqn)),
    ("exposure", lambda p, t: _share(p.exposure)),
    ("average hold", lambda p, t: _hours(p.avg_hold_s)),
    ("median hold", lambda p, t: _hours(p.median_hold_s)),
    ("best trade", lambda p, t: _money(p.trades.best_trade)),
    ("worst trade", lambda p, t: _money(p.trades.worst_trade)),
    ("longest losing streak", lambda p, t: str(p.max_losing_streak)),
    ("fees", lambda p, t: f"${t.fees:,.2f}"),
)


def full_tables(perf: Mapping[str, Performance], tallies: Mapping[str, TradeTally]) -> str:
    """Every figure per variant, then the return of each month, then each symbol's net P&L."""
    names = list(perf)
    figures = aligned(
        ("figure", *names),
        ((label, *(cell(perf[n], tallies[n]) for n in names)) for label, cell in _FULL_ROWS),
    )
    months = sorted({m for p in perf.values() for m in p.by_month})
    by_month = _breakdown(
        "month",
        names,
        months,
        lambda n, m: f"{pct(f.equity_return)} ({f.closed_trades})" if (f := perf[n].by_month.get(m)) else "",
    )
    symbols = sorted({s for p in perf.values() for s in p.by_symbol})
    by_symbol = _breakdown(
        "symbol",
        names,
        symbols,
        lambda n, s: f"{money(f.net_pnl)} ({f.closed_trades})" if (f := perf[n].by_symbol.get(s)) else "",
    )
    return "\n\n".join(
        [
            figures,
            "by month: return of the equity (closed trades)\n" + by_month,
            "by symbol: net P&L of the closed trades (closed trades)\n" + by_symbol,
        ]
    )


def _breakdown(key: str, names: list[str], keys: list[str], cell: Callable[[str, str], str]) -> str:
    """One row per key (month, symbol), one column per variant; an empty cell where a variant has none."""
    return aligned((key, *names), ((k, *(cell(n, k) for n in names)) for k in keys))


def add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    """``--metrics {compact,full}``, for ``sigil replay`` and ``sigil report``."""
    parser.add_argument(
        "--metrics",
        choices=METRICS_CHOICES,
        default="compact",
        help="the figures under the table: compact (default), or full (every figure, by month, by symbol)",
    )


def figures_text(perf: Mapping[str, Performance], tallies: Mapping[str, TradeTally], detail: str) -> str:
    """The compact table, or with ``detail == "full"`` :func:`full_tables`."""
    if detail not in METRICS_CHOICES:
        raise ValueError(f"--metrics: expected one of {', '.join(METRICS_CHOICES)}, got {detail!r}")
    return full_tables(perf, tallies) if detail == "full" else compact_table(perf)
