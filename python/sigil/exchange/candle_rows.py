"""Candle rows as the exchange sends them: which are valid candles, and which of them are new.

:func:`candle_problem` reads a klines row (its shape and types) and asks the engine's candle rule
(:func:`sigil._core.check_candle`) about its values; :class:`CandleRows` applies it to each response of
one client and remembers, per symbol, the newest candle accepted and a malformed candle that keeps
coming back (asked for again up to :data:`MAX_BAD_REPEATS` passes, then left as a gap). The candles
themselves are kept by their one consumer, the daemon's candle feed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from sigil import _core
from sigil.times import iso_z

log = logging.getLogger("sigil.exchange")

#: A candle that stays malformed on this many consecutive passes is given up on (left as a gap);
#: before that the pass stops at it, so a transient fault costs one pass of delay, not a hole.
MAX_BAD_REPEATS = 3


class Candle(NamedTuple):
    """One closed candle; ``time`` is its OPEN time in ms UTC."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def candle_problem(row: Sequence[Any]) -> str | None:
    """Why ``row`` ([time, open, high, low, close, volume]) is not a valid candle; None when it is."""
    if len(row) < 6 or any(x is None for x in row[:6]):
        return "missing"
    t, o, h, lo, c, v = row[:6]
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        return "bad_time"
    try:
        o, h, lo, c, v = float(o), float(h), float(lo), float(c), float(v)
    except (TypeError, ValueError):
        return "missing"
    problem = _core.check_candle(o, h, lo, c, v)
    return None if problem is None else problem.code


class RowCounters(Protocol):
    """Where :class:`CandleRows` counts what it leaves out (the client's stats)."""

    #: Candles dropped, by reason (a :func:`candle_problem`, ``duplicate`` or ``out_of_order``).
    dropped: Counter[str]
    #: Candles still in progress, left out.
    incomplete: int


class CandleRows:
    """The candles one client has accepted, per symbol, and the rule that accepts more.

    ``exchange_id`` names the exchange in log lines; drops are counted in ``counters``.
    """

    def __init__(self, exchange_id: str, timeframe_ms: int, counters: RowCounters) -> None:
        self.exchange_id = exchange_id
        self.timeframe_ms = timeframe_ms
        self.counters = counters
        #: symbol → open time of the newest candle accepted.
        self.last: dict[str, int] = {}
        #: symbol → (open time of a malformed candle, passes it was malformed in, last such pass)
        self._bad: dict[str, tuple[int, int, int]] = {}

    def forget(self, symbol: str) -> None:
        """Drops everything kept for ``symbol``."""
        self.last.pop(symbol, None)
        self._bad.pop(symbol, None)

    def accept(self, symbol: str, rows: Sequence[Sequence[Any]], now: int) -> tuple[list[Candle], bool]:
        """The closed, valid, new candles of one response, and whether it stopped at a malformed
        candle (to be asked for again). Updates what is kept and the counters."""
        tf = self.timeframe_ms
        last = self.last.get(symbol)
        out: list[Candle] = []
        stopped = False
        for row in rows:
            t = row[0] if len(row) else None
            if isinstance(t, int) and t + tf > now:
                self.counters.incomplete += 1
                continue
            problem = candle_problem(row)
            if problem is None and last is not None and isinstance(t, int) and t <= last:
                problem = "duplicate" if t == last else "out_of_order"
            if problem is None:
                candle = Candle(int(row[0]), *(float(x) for x in row[1:6]))
                out.append(candle)
                last = candle.time
                continue
            self.counters.dropped[problem] += 1
            log.warning("%s: %s: dropped candle %s: %s", self.exchange_id, symbol, _iso(t), problem)
            if problem in ("duplicate", "out_of_order"):
                continue  # the candle for that time is already in
            if self._bad_again(symbol, t if isinstance(t, int) else -1, now):
                stopped = True
                break  # ask again from here: a transient fault then leaves no hole
        if out:
            self.last[symbol] = out[-1].time
            bad = self._bad.get(symbol)
            if bad is not None and bad[0] < out[-1].time:
                del self._bad[symbol]
        return out, stopped

    def _bad_again(self, symbol: str, t: int, now: int) -> bool:
        """Records a malformed candle at ``t`` seen in the pass at ``now``. True = stop the response
        here and ask again; False = it was malformed in MAX_BAD_REPEATS passes in a row: the
        exchange's data is bad, skip it and leave a gap rather than stall the symbol for good."""
        seen_t, passes, last_pass = self._bad.get(symbol, (None, 0, None))
        if seen_t != t:
            passes, last_pass = 0, None
        if last_pass != now:
            passes += 1
        if passes < MAX_BAD_REPEATS:
            self._bad[symbol] = (t, passes, now)
            return True
        self._bad.pop(symbol, None)
        log.warning(
            "%s: %s: candle %s malformed in %d passes, left as a gap",
            self.exchange_id,
            symbol,
            _iso(t),
            passes,
        )
        return False


def _iso(t: object) -> str:
    """A row's time for a log line: ISO 8601 when it is a millisecond of the calendar, else as given."""
    if not isinstance(t, int):
        return repr(t)
    try:
        return iso_z(t)
    except (OverflowError, ValueError):  # before year 1 or after 9999: the row is dropped anyway
        return repr(t)
