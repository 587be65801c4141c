"""The HTML tearsheet of a replay or of the daemon's book: one self-contained file, readable offline
(inline SVG charts and CSS, no script, no font or image fetched), with equity and drawdown curves,
every figure per variant, monthly returns, exit reasons, symbols, the trade list, and each variant
beside the pre-fix posture when it ran with them.

:class:`TradingRun` is the one shape both sources are turned into (:meth:`TradingRun.from_replay`,
:meth:`TradingRun.from_book`); the figures are :mod:`sigil.report.performance`'s, formatted as the
text tables format them (:mod:`sigil.report.performance_table`), never computed again here."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
from markupsafe import Markup

from sigil.report.charts import PALETTE, bar_chart_svg, line_chart_svg
from sigil.report.metrics import TradeTally
from sigil.report.performance import Performance
from sigil.report.performance_table import _FULL_ROWS, pct, ratio
from sigil.report.table import Row as TableRow
from sigil.report.table import money
from sigil.research.replay import Trade
from sigil.times import iso_z, to_ms

if TYPE_CHECKING:
    from sigil.report.book import Book
    from sigil.research.replay import ReplayResult

#: The pre-fix posture (``config/legacy/fixed3.yaml``): every variant is compared with it when it ran.
PRE_FIX_VARIANT = "legacy_fixed3"

#: The pre-fix posture's curve colour (drawn dashed).
REFERENCE_COLOR = "#333333"
#: The curves' width: the page's.
_WIDTH = 1150

#: Monthly returns and symbol P&L are tinted in proportion up to these magnitudes (then saturated).
MONTH_TINT_AT = 0.25

_NONE = "—"


class VariantSummary(TableRow, Protocol):
    """What the tearsheet reads of a variant: the table's row and the tally's wins and fees, and the
    starting balance. Replay's :class:`~sigil.research.replay.VariantMetrics` and the book's
    :class:`~sigil.report.book.VariantBook` both provide it."""

    @property
    def wins(self) -> int:
        """Closed trades with P&L above zero."""
        ...

    @property
    def fees(self) -> float:
        """Fees of the closed trades."""
        ...

    @property
    def starting_balance(self) -> float:
        """Balance at the start."""
        ...


@dataclass(frozen=True)
class TradingRun:
    """What a replay or the daemon traded, as the tearsheet reads it. Variants in display order."""

    title: str
    headline: str
    metrics: Mapping[str, VariantSummary]
    performance: Mapping[str, Performance]
    equity_time: npt.NDArray[np.int64]
    equity: Mapping[str, npt.NDArray[np.float64]]
    #: Every closed trade, in closing order.
    trades: Sequence[Trade]

    @classmethod
    def from_replay(cls, result: ReplayResult, headline: str) -> TradingRun:
        """A replay's result (``headline`` is the line ``sigil replay`` prints above its table)."""
        return cls(
            "Sigil replay",
            headline,
            result.metrics,
            result.performance,
            result.equity_time,
            result.equity,
            result.trades,
        )

    @classmethod
    def from_book(cls, book: Book) -> TradingRun:
        """The daemon's book, as ``sigil report`` reads it."""
        times, curves = book.equity_curves()
        trades = [
            Trade(
                p.variant,
                p.symbol,
                to_ms(p.opened_at),
                to_ms(p.closed_at or p.opened_at),
                p.entry_price,
                math.nan if p.exit_price is None else p.exit_price,
                p.qty,
                p.stake,
                p.stop_pct,
                math.nan if p.atr_at_entry is None else p.atr_at_entry,
                p.exit_reason or "unknown",
                p.pnl or 0.0,
                p.fees or 0.0,
            )
            for p in book.trades
        ]
        trades.sort(key=lambda t: t.exit_time)
        return cls(
            "Sigil daemon report", book.headline(), book.metrics, book.performance, times, curves, trades
        )


class Cell(NamedTuple):
    """A table cell: its text, the exact value behind it (``data-value``), an inline style, a tooltip."""

    text: str
    value: str | None = None
    style: str = ""
    title: str = ""


class Row(NamedTuple):
    """A table row: the label in its first column, its cells, and a key naming the figure (``data-key``)."""

    label: str
    cells: Sequence[Cell]
    key: str = ""


class Table(NamedTuple):
    """A table of the page: an id (``<table id>``), the header, the rows."""

    id: str
    head: Sequence[str]
    rows: Sequence[Row]


def _num(x: float | int | None) -> str | None:
    return None if x is None else repr(x)


def _tint(x: float | None, at: float) -> str:
    """A background from white to green (gains) or red (losses), saturated at ``|x| >= at``."""
    if x is None or not math.isfinite(x) or at <= 0 or x == 0:
        return ""
    k = min(1.0, abs(x) / at)
    base = (46, 160, 67) if x > 0 else (214, 48, 49)
    rgb = [round(255 + (c - 255) * k * 0.7) for c in base]
    return "background:#{:02x}{:02x}{:02x}".format(*rgb)


def _summary(run: TradingRun) -> Table:
    """Figure rows, variant columns: balances and the tally, then every figure of the full text table."""
    names = list(run.metrics)
    ms = [run.metrics[n] for n in names]
    rows = [
        Row("starting balance", [Cell(_dollars(m.starting_balance), _num(m.starting_balance)) for m in ms],
            "starting_balance"),
        Row("equity", [Cell(_dollars(m.equity), _num(m.equity)) for m in ms], "equity"),
        Row("net P&L", [Cell(money(m.net_pnl), _num(m.net_pnl), _tint(_of_start(m, m.net_pnl), 1.0))
                        for m in ms], "net_pnl"),
        Row("open positions", [Cell(str(m.open_positions), _num(m.open_positions)) for m in ms],
            "open_positions"),
    ]  # fmt: skip
    for label, cell in _FULL_ROWS:
        key = _FULL_KEYS.get(label, "")
        rows.append(
            Row(
                label,
                [Cell(cell(run.performance[n], _tally(m))) for n, m in zip(names, ms, strict=True)],
                key,
            )
        )
    return Table("metrics", ["figure", *names], rows)


#: ``data-key`` of the full table's rows that the test and other readers match against ``--json``.
_FULL_KEYS = {"closed trades": "closed_trades", "fees": "fees"}


def _of_start(m: VariantSummary, pnl: float) -> float:
    """P&L as a fraction of the starting balance (what a tint is scaled by)."""
    return pnl / m.starting_balance if m.starting_balance > 0 else 0.0


def _tally(m: VariantSummary) -> TradeTally:
    return TradeTally(m.closed_trades, m.wins, m.net_pnl, m.fees, m.by_reason)


def _dollars(x: float | None) -> str:
    return _NONE if x is None else f"${x:,.2f}"


def _share(x: float | None) -> str:
    return _NONE if x is None else f"{x * 100:.1f}%"


def _signed(x: float | None, digits: int) -> str:
    return _NONE if x is None else f"{x:+.{digits}f}".replace("-", "−")


def _points(x: float | None) -> str:
    """A difference of two fractions, in percentage points."""
    return _NONE if x is None else _signed(x * 100, 1) + " pp"


class _Compared(NamedTuple):
    """A row of the comparison: the figure of a variant, its text, the text of a difference, and
    whether a larger value is better (None: neither)."""

    label: str
    get: Callable[[VariantSummary, Performance], float | None]
    text: Callable[[float | None], str]
    delta: Callable[[float | None], str]
    higher_is_better: bool | None


def _money_or_none(x: float | None) -> str:
    return _NONE if x is None else money(x)


_COMPARED = (
    _Compared("net P&L", lambda m, p: m.net_pnl, _money_or_none, _money_or_none, True),
    _Compared("equity", lambda m, p: m.equity, _dollars, _money_or_none, True),
    _Compared("CAGR", lambda m, p: p.cagr, pct, _points, True),
    _Compared("Sharpe", lambda m, p: p.sharpe, ratio, lambda x: _signed(x, 2), True),
    _Compared("Sortino", lambda m, p: p.sortino, ratio, lambda x: _signed(x, 2), True),
    _Compared("max drawdown", lambda m, p: p.max_drawdown, _share, _points, False),
    _Compared("profit factor", lambda m, p: p.trades.profit_factor, ratio, lambda x: _signed(x, 2), True),
    _Compared("expectancy (R)", lambda m, p: p.trades.expectancy_r, lambda x: _signed(x, 3),
              lambda x: _signed(x, 3), True),
    _Compared("closed trades", lambda m, p: m.closed_trades, lambda x: _signed(x, 0).lstrip("+"),
              lambda x: _signed(x, 0), None),
    _Compared("hard_stop share", lambda m, p: m.share("hard_stop"), _share, _points, False),
)  # fmt: skip


def _comparison(run: TradingRun, reference: str) -> Table | None:
    """Each other variant's figures beside the reference's, and the difference (tinted better/worse)."""
    if reference not in run.metrics or len(run.metrics) < 2:
        return None
    ref_m, ref_p = run.metrics[reference], run.performance[reference]
    names = [n for n in run.metrics if n != reference]
    head = ["figure", reference, *(h for n in names for h in (n, f"Δ {n}"))]
    rows = []
    for c in _COMPARED:
        base = c.get(ref_m, ref_p)
        cells = [Cell(c.text(base), _num(base))]
        for n in names:
            x = c.get(run.metrics[n], run.performance[n])
            delta = None if x is None or base is None else x - base
            higher = c.higher_is_better
            better = None if delta is None or higher is None or delta == 0 else (delta > 0) == higher
            style = "" if better is None else _tint(1.0 if better else -1.0, 4.0)
            cells += [Cell(c.text(x), _num(x)), Cell(c.delta(delta), _num(delta), style)]
        rows.append(Row(c.label, cells))
    return Table("comparison", head, rows)


def _breakdown(
    table_id: str,
    key: str,
    keys: Sequence[str],
    names: Sequence[str],
    cell: Callable[[str, str], Cell | None],
) -> Table:
    """One row per key (month, symbol), one column per variant; an empty cell where a variant has none."""
    rows = [Row(k, [cell(n, k) or Cell("") for n in names]) for k in keys]
    return Table(table_id, [key, *names], rows)


def _months(run: TradingRun) -> Table:
    """Month rows, variant columns: the equity's return over the month (tinted), trades in the tooltip."""

    def cell(name: str, month: str) -> Cell | None:
        f = run.performance[name].by_month.get(month)
        if f is None:
            return None
        tip = f"{f.closed_trades} trades closed, net {money(f.net_pnl)}, equity ${f.end_equity:,.2f}"
        return Cell(pct(f.equity_return), _num(f.equity_return), _tint(f.equity_return, MONTH_TINT_AT), tip)

    months = sorted({m for p in run.performance.values() for m in p.by_month})
    return _breakdown("months", "month", months, list(run.performance), cell)


def _reasons(run: TradingRun) -> Table:
    """Variant rows; per exit reason, the count, share and P&L of the trades that exited so."""
    reasons: list[str] = []
    for m in run.metrics.values():
        reasons += [r for r in m.by_reason if r not in reasons]
    head = ["variant", *(f"{r} {what}" for r in reasons for what in ("trades", "P&L"))]
    rows = []
    for name, m in run.metrics.items():
        cells = []
        for r in reasons:
            n, pnl = m.by_reason.get(r, (0, 0.0))
            cells += [
                Cell(f"{n} ({m.share(r) * 100:.0f}%)", _num(n)),
                Cell(money(pnl), _num(pnl), _tint(_of_start(m, pnl), 0.5)),
            ]
        rows.append(Row(name, cells))
    return Table("exit-reasons", head, rows)


def _symbols(run: TradingRun) -> Table:
    """Symbol rows, variant columns: net P&L of the closed trades (trades; win rate in the tooltip)."""
    scale = max((abs(f.net_pnl) for p in run.performance.values() for f in p.by_symbol.values()), default=0)

    def cell(name: str, symbol: str) -> Cell | None:
        f = run.performance[name].by_symbol.get(symbol)
        if f is None:
            return None
        rate = f.wins / f.closed_trades if f.closed_trades else 0.0
        tip = f"{f.closed_trades} trades, {rate * 100:.0f}% won, profit factor {ratio(f.profit_factor)}"
        return Cell(f"{money(f.net_pnl)} ({f.closed_trades})", _num(f.net_pnl), _tint(f.net_pnl, scale), tip)

    symbols = sorted({s for p in run.performance.values() for s in p.by_symbol})
    return _breakdown("symbols", "symbol", symbols, list(run.performance), cell)


def _price(x: float) -> str:
    return _NONE if not math.isfinite(x) else f"{x:.6g}"


def _trade_rows(trades: Sequence[Trade]) -> list[tuple[str, ...]]:
    """The trade list as text (plain rows: thousands of them, so no per-cell attributes)."""
    return [
        (
            t.variant,
            t.symbol,
            iso_z(t.entry_time)[:16].replace("T", " "),
            iso_z(t.exit_time)[:16].replace("T", " "),
            _price(t.entry_price),
            _price(t.exit_price),
            f"{t.stake:,.2f}",
            f"{t.stop_pct * 100:.2f}%",
            t.exit_reason,
            money(t.pnl),
            f"{t.fees:.2f}",
        )
        for t in trades
    ]


_TRADE_HEAD = ("variant", "symbol", "entry (UTC)", "exit (UTC)", "entry price", "exit price", "stake",
               "stop", "exit reason", "P&L", "fees")  # fmt: skip


def _charts(run: TradingRun, reference: str) -> dict[str, str | list[str]]:
    """Equity and drawdown curves of all variants (the reference dashed, in black), and each variant's
    P&L by exit reason."""
    others = [n for n in run.metrics if n != reference]
    colors = {n: PALETTE[k % len(PALETTE)] for k, n in enumerate(others)} | {reference: REFERENCE_COLOR}
    t = run.equity_time
    equity = {n: (t, run.equity[n]) for n in run.metrics if n in run.equity}
    drawdown = {}
    for n, (_, curve) in equity.items():
        peak = np.maximum.accumulate(curve) if curve.size else curve
        # Below a running peak, as a fraction of it (the curve behind the max drawdown figure).
        drawdown[n] = (t, np.where(peak > 0, curve / np.where(peak > 0, peak, 1.0) - 1.0, 0.0))
    by_reason = [
        bar_chart_svg(
            list(m.by_reason),
            [pnl for _, pnl in m.by_reason.values()],
            title=f"{name}: P&L by exit reason (USDT)",
            y_format="{:,.0f}",
            width=370,
            height=200,
        )
        for name, m in run.metrics.items()
    ]
    return {
        "equity": line_chart_svg(
            equity,
            title="Equity per variant (USDT)",
            colors=colors,
            dashed={reference},
            width=_WIDTH,
            height=300,
        ),
        "drawdown": line_chart_svg(
            drawdown,
            title="Drawdown from the running peak",
            y_format="{:.0%}",
            colors=colors,
            dashed={reference},
            width=_WIDTH,
            height=220,
        ),
        "by_reason": by_reason,
    }


def tearsheet_html(run: TradingRun, *, reference: str = PRE_FIX_VARIANT) -> str:
    """The page as HTML text (deterministic: the same run gives the same bytes)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sigil.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    charts = _charts(run, reference)
    return env.get_template("tearsheet.html.j2").render(
        title=run.title,
        headline=run.headline,
        reference=reference,
        variants=list(run.metrics),
        summary=_summary(run),
        comparison=_comparison(run, reference),
        months=_months(run),
        reasons=_reasons(run),
        symbols=_symbols(run),
        trade_head=_TRADE_HEAD,
        trades=_trade_rows(run.trades),
        equity_svg=Markup(charts["equity"]),
        drawdown_svg=Markup(charts["drawdown"]),
        reason_svgs=[Markup(s) for s in charts["by_reason"]],
    )


def write_tearsheet(path: str | Path, run: TradingRun, *, reference: str = PRE_FIX_VARIANT) -> int:
    """Writes the page to ``path`` through a temporary file in its folder and a rename (a reader never
    sees half a page); returns its size in bytes."""
    text = tearsheet_html(run, reference=reference).encode("utf-8")
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(text)
