"""The daily summary per variant: trades closed on each market day (UTC) and their P&L.

Days are market days (the exchange's clock, like every trading time): a day is summarised by the
first completed pass whose market time is past its end, so a replayed or simulated run summarises
exactly the days it traded, and a live one once a day just after midnight UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sigil.notify.events import DailySummary
from sigil.times import from_ms

DAY_MS = 86_400_000
#: After a long gap (a restart days later, a simulator's jump), only this many latest days are summarised.
MAX_DAYS = 7


@dataclass(frozen=True)
class Book:
    """A variant's book at the moment of the summary."""

    balance: float
    equity: float
    open_positions: int


class DailySummaries:
    """Counts closes per (day, variant) and hands out each finished day's summaries once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: day (ms of its midnight) → variant → (closes, pnl)
        self._days: dict[int, dict[str, tuple[int, float]]] = {}
        #: Midnight of the first day not yet summarised; None before the first pass.
        self._next_day: int | None = None

    def closed(self, variant: str, at_ms: int, pnl: float) -> None:
        """A position of ``variant`` closed at market time ``at_ms`` with ``pnl``."""
        day = at_ms - at_ms % DAY_MS
        with self._lock:
            per = self._days.setdefault(day, {})
            n, total = per.get(variant, (0, 0.0))
            per[variant] = (n + 1, total + pnl)

    def passed(
        self, market_ms: int | None, variants: Sequence[str], books: Mapping[str, Book]
    ) -> list[DailySummary]:
        """A pass completed with market time ``market_ms``: the summaries of every day that has ended
        since the last call, one per variant (in ``variants`` order), oldest day first."""
        if market_ms is None:
            return []
        today = market_ms - market_ms % DAY_MS
        out: list[DailySummary] = []
        with self._lock:
            if self._next_day is None:
                # The first pass: the day it is in is the first to summarise (the daemon saw no earlier).
                self._next_day = today
                return []
            if today - self._next_day > MAX_DAYS * DAY_MS:
                for day in [d for d in self._days if d < today - MAX_DAYS * DAY_MS]:
                    del self._days[day]
                self._next_day = today - MAX_DAYS * DAY_MS
            while self._next_day < today:
                day, self._next_day = self._next_day, self._next_day + DAY_MS
                per = self._days.pop(day, {})
                label = from_ms(day).date().isoformat()
                for name in variants:
                    n, pnl = per.get(name, (0, 0.0))
                    b = books.get(name, Book(0.0, 0.0, 0))
                    out.append(DailySummary(name, label, n, pnl, b.balance, b.equity, b.open_positions))
        return out
