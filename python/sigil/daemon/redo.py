"""Redo: what the database holds from after the resume point, re-applied as the engine decides it again.

A pass that did not complete (a crash, a failed write, an outage) may have committed some of its
opens and closes. A rebuild starts the engine from the resume point ``R`` — the marks of the last
completed pass: balances to the bit, positions open at ``R`` (those closed after ``R`` included),
the guard as it stood at ``R`` — and decides the candles after ``R`` again. Each decision the
database already holds (an open of the same (variant, symbol) at the same candle, a close at the
same candle) is applied to the engine with the database's own numbers and written nowhere; the first
decision it does not hold is new and goes through execution as usual. So the book after a recovery is
the book of an uninterrupted run, trade for trade and to the bit.

A close the exit pass made between candles (its time is not a candle close) is a fact from before the
rebuild: it is not undone. Should the engine decide differently from what the database holds (a live
fill that differed from its estimate, a changed config), the database wins once the candles pass the
time of its record: the position is applied (or closed) from its row then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sigil._core import CloseIntent, ExitReason, OpenIntent
from sigil.daemon.engine_state import EngineState
from sigil.store import Position
from sigil.times import to_ms

log = logging.getLogger(__name__)


@dataclass
class Redo:
    """The database's opens and closes after the resume point, not yet re-applied to the engine."""

    state: EngineState
    #: (variant, symbol, open time) → a position opened after the resume point.
    opens: dict[tuple[int, str, int], Position] = field(default_factory=dict)
    #: (variant, symbol) → a position the engine holds (or will) whose close after the resume point
    #: the database holds.
    closes: dict[tuple[int, str], Position] = field(default_factory=dict)

    def clear(self) -> None:
        """Forgets everything (a new rebuild)."""
        self.opens.clear()
        self.closes.clear()
        self.state.replaying.clear()

    def expect_open(self, v: int, p: Position) -> None:
        """``p`` was opened after the resume point: its open is decided again."""
        self.opens[(v, p.symbol, to_ms(p.opened_at))] = p
        self.state.replaying.add((p.variant, p.symbol))

    def expect_close(self, v: int, p: Position) -> None:
        """``p``'s close after the resume point is decided again."""
        self.closes[(v, p.symbol)] = p
        self.state.replaying.add((p.variant, p.symbol))

    def symbols(self) -> set[str]:
        """Symbols with something still to re-apply."""
        return {s for (_, s, _) in self.opens} | {s for (_, s) in self.closes}

    def open(self, intent: OpenIntent, symbol: str) -> bool:
        """Applies ``intent`` from the database when it holds that very open; True when it did."""
        p = self.opens.pop((intent.variant, symbol, intent.time), None)
        if p is None:
            return False
        self._apply_open(intent.variant, p)
        return True

    def close(self, intent: CloseIntent, symbol: str) -> bool:
        """Applies ``intent`` from the database when it holds that very close; True when it did."""
        p = self.closes.get((intent.variant, symbol))
        if p is None or p.closed_at is None or to_ms(p.closed_at) != intent.time:
            return False
        return self._apply_close(intent.variant, p)

    def overdue(self, before: int) -> None:
        """Applies from their rows the database's effects older than ``before`` that the engine did
        not decide again (it decided differently): the database is the authority."""
        while True:
            # In the database's order: the oldest effect first, a close before an open at one time.
            due: list[tuple[int, int, str, int]] = [
                (to_ms(p.closed_at), 0, sym, v)
                for (v, sym), p in self.closes.items()
                if p.closed_at is not None and to_ms(p.closed_at) < before
            ] + [(t, 1, sym, v) for (v, sym, t) in self.opens if t < before]
            if not due:
                return
            t, kind, sym, v = min(due)
            if kind == 0:
                self._apply_close(v, self.closes[(v, sym)])
            else:
                self._apply_open(v, self.opens.pop((v, sym, t)))

    def _apply_open(self, v: int, p: Position) -> None:
        sid = self.state.sid(p.symbol)
        if self.state.engine.position(v, sid) is not None:
            # The engine kept an older position of the pair open that the database closed: the
            # database is the authority, close that one from its row first.
            log.warning("redo: %s %s is still open in the engine at #%d's open", p.variant, p.symbol, p.id)
            return
        self.state.engine.apply_open(
            v, sid, to_ms(p.opened_at), p.entry_price, p.qty, p.entry_fee, p.stake, p.stop_pct, _atr(p)
        )
        self.state.opened(v, p.symbol, p.id, p.entry_price)
        if p.closed_at is not None:
            self.closes[(v, p.symbol)] = p
        else:
            self._done(v, p)

    def _apply_close(self, v: int, p: Position) -> bool:
        """Closes ``p`` in the engine from its row; False when the engine does not hold it or the row
        lacks the sell's numbers (then the close goes through execution, which finds it closed)."""
        del self.closes[(v, p.symbol)]
        self._done(v, p)
        sid = self.state.sid(p.symbol)
        if self.state.engine.position(v, sid) is None:
            return False
        if p.closed_at is None or p.exit_price is None or p.exit_gross is None or p.exit_fee is None:
            return False
        reason = ExitReason.parse(p.exit_reason or "")
        self.state.engine.apply_close(
            v, sid, to_ms(p.closed_at), p.exit_price, p.exit_gross, p.exit_fee, reason
        )
        self.state.forget(v, p.symbol)
        return True

    def _done(self, v: int, p: Position) -> None:
        if not any(k[0] == v and k[1] == p.symbol for k in self.opens) and (v, p.symbol) not in self.closes:
            self.state.replaying.discard((p.variant, p.symbol))


def _atr(p: Position) -> float:
    return p.atr_at_entry if p.atr_at_entry is not None else float("nan")
