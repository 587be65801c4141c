"""The daemon's book, read back from the database for ``sigil report``: per-variant metrics in the
shape of replay's (so :func:`sigil.report.table.variant_table` renders both), trades, open positions,
equity curves, and the figures of :mod:`sigil.report.performance` (the same code as replay's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from sigil.config import Config
from sigil.report.metrics import EXIT_REASONS, SKIP_REASONS, TradeTally, tally
from sigil.report.performance import ClosedTrades, Performance, performance
from sigil.store import AccountStore, Database, EventStore, Position, PositionStore
from sigil.times import to_ms

#: Read at most this many closed positions (newest first); a report of more is cut, and says so.
MAX_TRADES = 1_000_000


@dataclass(frozen=True)
class VariantBook(TradeTally):
    """One variant's row of the table (satisfies :class:`sigil.report.table.Row`)."""

    open_positions: int
    starting_balance: float
    balance: float
    equity: float

    def to_json(self) -> dict[str, Any]:
        """JSON shape, as replay's ``variants`` entries."""
        return {
            **self.tally_json(),
            "open_positions": self.open_positions,
            "starting_balance": self.starting_balance,
            "balance": self.balance,
            "equity": self.equity,
        }


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def trade_json(p: Position) -> dict[str, Any]:
    """A position as ``--json`` lists it in ``trades`` and ``open_positions`` (replay's keys)."""
    return {
        "id": p.id,
        "variant": p.variant,
        "symbol": p.symbol,
        "entry_time": _iso(p.opened_at),
        "exit_time": _iso(p.closed_at),
        "entry_price": p.entry_price,
        "exit_price": p.exit_price,
        "qty": p.qty,
        "stake": p.stake,
        "stop_pct": p.stop_pct,
        "atr_at_entry": p.atr_at_entry,
        "exit_reason": p.exit_reason,
        "pnl": p.pnl,
        "fees": p.fees,
    }


@dataclass
class Book:
    """Everything ``sigil report`` shows."""

    metrics: dict[str, VariantBook]
    trades: list[Position]
    open_positions: list[Position]
    skips: dict[str, int]
    database: str
    #: Market time of the last completed pass (the accounts' ``equity_at``): where the book ends.
    marked_at: datetime | None = None

    def headline(self) -> str:
        """One line: where from, how many trades, over which market period."""
        times = [p.opened_at for p in self.trades + self.open_positions] + [
            p.closed_at for p in self.trades if p.closed_at is not None
        ]
        span = f", {min(times):%Y-%m-%d} → {max(times):%Y-%m-%d}" if times else ""
        return (
            f"Daemon book from {self.database}: {len(self.trades)} closed trades, "
            f"{len(self.open_positions)} open positions, {len(self.metrics)} variants{span}"
        )

    def to_json(self) -> dict[str, Any]:
        """The same top-level shape as ``sigil replay --json``."""
        return {
            "variants": {
                n: {**m.to_json(), **self.performance[n].to_json()} for n, m in self.metrics.items()
            },
            "trades": [trade_json(p) for p in self.trades],
            "open_positions": [trade_json(p) for p in self.open_positions],
            "skips": self.skips,
        }

    def equity_curves(self) -> tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[np.float64]]]:
        """Per variant: starting balance plus realised P&L at each open and close (open positions at
        cost), ending at the equity last marked to market, at the last pass (or the last open or
        close, when later). Times in ms, one axis for all variants."""
        events: list[tuple[int, str, float]] = []
        for p in self.trades:
            if p.closed_at is not None and p.pnl is not None:
                events.append((to_ms(p.closed_at), p.variant, p.pnl))
        for p in self.trades + self.open_positions:
            events.append((to_ms(p.opened_at), p.variant, 0.0))
        events.sort(key=lambda e: e[0])
        times = sorted({t for t, _, _ in events})
        if not times:
            return np.zeros(0, dtype=np.int64), {n: np.zeros(0) for n in self.metrics}
        index = {t: i for i, t in enumerate(times)}
        last = max(times[-1], to_ms(self.marked_at)) if self.marked_at is not None else times[-1]
        axis = np.asarray([*times, last], dtype=np.int64)
        curves: dict[str, npt.NDArray[np.float64]] = {}
        for name, m in self.metrics.items():
            step = np.zeros(len(times))
            for t, v, pnl in events:
                if v == name:
                    step[index[t]] += pnl
            curve = m.starting_balance + np.cumsum(step)
            curves[name] = np.append(curve, m.equity)
        return axis, curves

    @cached_property
    def performance(self) -> dict[str, Performance]:
        """Per variant, the figures of :mod:`sigil.report.performance` over :meth:`equity_curves`
        (so over the span from the first open to the last pass); trades in closing order."""
        axis, curves = self.equity_curves()
        symbols = sorted({p.symbol for p in self.trades})
        sid = {s: k for k, s in enumerate(symbols)}
        out: dict[str, Performance] = {}
        for name, m in self.metrics.items():
            mine = sorted(
                (p for p in self.trades if p.variant == name and p.closed_at is not None),
                key=lambda p: (p.closed_at, p.id),
            )
            trades = ClosedTrades.from_columns(
                symbols,
                {
                    "symbol": [sid[p.symbol] for p in mine],
                    "entry_time": [to_ms(p.opened_at) for p in mine],
                    "exit_time": [to_ms(p.closed_at) for p in mine if p.closed_at is not None],
                    "pnl": [p.pnl or 0.0 for p in mine],
                    "fees": [p.fees or 0.0 for p in mine],
                    "stake": [p.stake for p in mine],
                    "stop_pct": [p.stop_pct for p in mine],
                },
            )
            still_open = [to_ms(p.opened_at) for p in self.open_positions if p.variant == name]
            out[name] = performance(m.starting_balance, axis, curves[name], trades, still_open)
        return out


async def load_book(db: Database, config: Config) -> Book:
    """Reads positions, accounts and skip counts; variants in config order, then any others found."""
    positions = PositionStore(db)
    closed = await positions.closed_positions(limit=MAX_TRADES)
    closed.reverse()  # oldest first
    open_now = await positions.open_positions()
    accounts = {a.variant: a for a in await AccountStore(db).all()}
    names = [v.name for v in config.variants]
    names += sorted(
        {a for a in accounts if a not in names} | {p.variant for p in closed + open_now} - set(names)
    )
    # Rows closed by a migration (duplicate opens) carry no P&L and are not trades.
    trades = [p for p in closed if p.pnl is not None]
    vid = {n: k for k, n in enumerate(names)}
    reasons = list(EXIT_REASONS)
    for p in trades:
        if (p.exit_reason or "unknown") not in reasons:
            reasons.append(p.exit_reason or "unknown")
    rid = {r: k for k, r in enumerate(reasons)}
    tallies = tally(
        names,
        [vid[p.variant] for p in trades],
        [rid[p.exit_reason or "unknown"] for p in trades],
        reasons,
        [p.pnl or 0.0 for p in trades],
        [p.fees or 0.0 for p in trades],
    )
    metrics: dict[str, VariantBook] = {}
    for name in names:
        acct = accounts.get(name)
        metrics[name] = VariantBook(
            **tallies[name].__dict__,
            open_positions=sum(1 for p in open_now if p.variant == name),
            starting_balance=acct.starting_balance if acct else 0.0,
            balance=acct.balance if acct else 0.0,
            equity=acct.equity if acct else 0.0,
        )
    counts = await EventStore(db).counts()
    skips = {r: counts.get(("skip", r), 0) for r in SKIP_REASONS if counts.get(("skip", r), 0)}
    marks = [a.equity_at for a in accounts.values() if a.equity_at is not None]
    return Book(metrics, trades, open_now, skips, db.describe(), max(marks, default=None))
