"""The candle feed: the daemon's one candle cache, and which candles a pass decides.

Per symbol it keeps the candles fetched (enough to warm a rebuilt engine up), a cursor (the open
time of the last candle fed to the engine) and the time after which a candle is news rather than
history. A pass asks it for new candles (:meth:`CandleFeed.fetch`), for the market time it may
decide up to (:meth:`CandleFeed.decide_to`: held back while a symbol's candles are late, so they are
still decided in replay's order when they arrive), and for the due candles in that order
(:meth:`CandleFeed.due`: by close time, then symbol — the order ``sigil replay`` uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sigil.exchange.candle_history import CandleHistory
from sigil.exchange.ccxt_client import MAX_CANDLES_PER_REQUEST, Candle, ExchangeClient

#: A fetch that returned this many candles for one symbol may have been cut at the request limit.
TRUNCATED_AT = MAX_CANDLES_PER_REQUEST - 1
#: At most this many extra fetch rounds per pass to catch up a symbol cut at the request limit.
MAX_CATCHUP_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class DueCandle:
    """A candle to decide: its close time (ms UTC), symbol, and the candle."""

    close: int
    symbol: str
    candle: Candle


def replay_order(due: DueCandle) -> tuple[int, str]:
    """The order candles are decided in, by the daemon as by replay: close time, then symbol."""
    return (due.close, due.symbol)


class CandleFeed:
    """Candles of every symbol the daemon scans, fetched through ``client``.

    ``keep``: candles kept per symbol once decided; ``hold_back_passes``: passes a late symbol may
    hold the market time back before the pass goes on without it.
    """

    def __init__(self, client: ExchangeClient, *, keep: int, hold_back_passes: int) -> None:
        self.client = client
        self.tf_ms = client.timeframe_ms
        self._keep = max(keep, 1)
        self._hold_back_passes = hold_back_passes
        self._history: dict[str, CandleHistory] = {}
        #: Open time of the last candle fed to the engine, per symbol.
        self._cursor: dict[str, int] = {}
        #: Candles of a symbol closing at or before this time only warm the engine up.
        self._trade_after: dict[str, int] = {}
        #: Consecutive passes in which a symbol's fetch failed or stopped short.
        self._fail_streak: dict[str, int] = {}
        #: Symbols whose fetch stopped at a malformed candle this pass (the rest comes next pass).
        self._behind: set[str] = set()
        #: Symbols that left the universe: fetched once more so their last candles are decided in order.
        self.draining: set[str] = set()

    # -- what it holds --------------------------------------------------------------------------

    def has_history(self, symbol: str) -> bool:
        """True once candles of ``symbol`` were fetched."""
        return symbol in self._history

    def universe_changed(self, before: set[str], after: set[str]) -> None:
        """Symbols that just left the universe are fetched until their last candles are decided."""
        self.draining = (self.draining | (before - after)) - after

    def drained(self, failed: Iterable[str]) -> None:
        """The draining symbols whose fetch did not fail this pass are done."""
        still = set(failed)
        self.draining = {s for s in self.draining if s in still}

    # -- a pass ---------------------------------------------------------------------------------

    async def fetch(self, symbols: Sequence[str], cutoff: int) -> tuple[int, dict[str, str]]:
        """New candles of ``symbols`` into the history; a symbol cut at the request limit is fetched
        again until it reaches ``cutoff``. Returns (candles fetched, failures by symbol)."""
        total = 0
        failed: dict[str, str] = {}
        self._behind = set()
        todo: Sequence[str] = symbols
        for _ in range(MAX_CATCHUP_ROUNDS):
            if not todo:
                break
            result = await self.client.fetch_new_candles(todo)
            failed.update(result.failed)
            self._behind.update(result.behind)
            again = []
            for sym, rows in result.candles.items():
                total += len(rows)
                self._append(sym, rows)
                last = self.client.last_candle_time(sym)
                if len(rows) >= TRUNCATED_AT and last is not None and last + self.tf_ms < cutoff:
                    again.append(sym)
            todo = again
        # Still cut at the request limit after every round: its later candles come next pass, so the
        # market time is held back for it like for a late symbol.
        self._behind.update(todo)
        return total, failed

    def decide_to(self, now: int, symbols: Sequence[str], failed: dict[str, str], decided: int | None) -> int:
        """The market time this pass decides up to: ``now``, or earlier while a symbol's fetch fails or
        stops short (for up to ``hold_back_passes`` passes), so candles are still decided in
        (close time, symbol) order when its late candles arrive. Never before ``decided``."""
        lagging = set(failed) | self._behind
        for sym in symbols:
            self._fail_streak[sym] = self._fail_streak.get(sym, 0) + 1 if sym in lagging else 0
        bound = now
        for sym in lagging:
            # Its late candles would otherwise be decided after later candles of other symbols (not
            # replay's order); past the limit the pass goes on without it: one dead symbol cannot stop
            # trading.
            if self._fail_streak.get(sym, 0) > self._hold_back_passes:
                continue
            hist = self._history.get(sym)
            last = hist[-1].time + self.tf_ms if hist else decided
            if last is not None:
                bound = min(bound, last)
        return bound if decided is None else max(bound, decided)

    def due(self, cutoff: int) -> list[DueCandle]:
        """Every candle not yet fed and closed by ``cutoff``, in replay's order (close time, symbol)."""
        out: list[DueCandle] = []
        for sym, hist in self._history.items():
            cursor = self._cursor.get(sym)
            for c in reversed(hist):
                if cursor is not None and c.time <= cursor:
                    break
                close = c.time + self.tf_ms
                if close <= cutoff:
                    out.append(DueCandle(close, sym, c))
        out.sort(key=replay_order)
        return out

    def fed(self, due: DueCandle) -> None:
        """Records that ``due`` went to the engine."""
        self._cursor[due.symbol] = due.candle.time

    def is_news(self, due: DueCandle, first_seen: int) -> bool:
        """True when ``due`` is traded on, False when it only warms the engine up. A symbol seen for
        the first time counts what closed at or before ``first_seen`` as history."""
        after = self._trade_after.setdefault(due.symbol, first_seen)
        return due.close > after

    def restart(self, resume: int) -> None:
        """For a fresh engine: every candle is fed again, and only those closing after ``resume`` are news."""
        self._cursor.clear()
        self._trade_after = dict.fromkeys(self._history, resume)

    def trim(self) -> None:
        """Drops decided candles beyond what a rebuild needs (memory stays flat however long it runs)."""
        for sym, hist in self._history.items():
            cursor = self._cursor.get(sym)
            while len(hist) > self._keep and cursor is not None and hist[0].time <= cursor:
                hist.popleft()

    def _append(self, symbol: str, rows: Iterable[Candle]) -> None:
        hist = self._history.get(symbol)
        if hist is None:
            hist = self._history[symbol] = CandleHistory()
        for c in rows:
            # The client's cache restarts from scratch for a symbol that left and came back.
            if hist and c.time <= hist[-1].time:
                continue
            hist.append(c)
