"""The daemon's engine and the ids that tie it to the database.

The Rust engine works on integer ids; the database on names and position ids. :class:`EngineState`
holds the engine with both maps (symbol id ↔ name, (variant, symbol) → position id), the trail
state last written to the database per position, and is the guard mirror's target: the mirror
writes the database's guard straight into the engine's own guard table, so the daemon keeps one
guard table in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sigil import _core
from sigil._core import SkipReason
from sigil.store import Position
from sigil.times import to_ms


@dataclass(frozen=True, slots=True)
class TrailMark:
    """A position's trail state as the database has it."""

    active: bool
    highest: float
    stop: float | None


class EngineState:
    """The engine for ``params`` (one dict per variant, named ``names``) over symbols of one timeframe."""

    def __init__(self, params: list[dict[str, Any]], names: list[str], tf_ms: int) -> None:
        self._params = params
        self.names = names
        self.vid = {n: i for i, n in enumerate(names)}
        self.tf_ms = tf_ms
        self.engine = _core.Engine(params)
        self._sym_names: dict[int, str] = {}
        #: The database id of each open position the engine holds.
        self.position_ids: dict[tuple[int, str], int] = {}
        self._trail: dict[int, TrailMark] = {}
        #: (variant, symbol) pairs whose guard the engine keeps itself while a rebuild re-applies what
        #: the database holds from after the resume point (the database is ahead of the engine there).
        self.replaying: set[tuple[str, str]] = set()

    def reset(self) -> None:
        """A fresh engine: no symbols, positions, guard state; balances at their start."""
        self.engine = _core.Engine(self._params)
        self._sym_names.clear()
        self.position_ids.clear()
        self._trail.clear()

    # -- ids ------------------------------------------------------------------------------------

    def sid(self, symbol: str) -> int:
        """The engine's id of ``symbol`` (added on first use)."""
        sid = self.engine.symbol_id(symbol)
        if sid is None:
            sid = self.engine.add_symbol(symbol, self.tf_ms)
            self._sym_names[sid] = symbol
        return sid

    def symbol_name(self, sid: int) -> str:
        """The name of symbol id ``sid``."""
        return self._sym_names[sid]

    def open_symbols(self, v: int) -> list[str]:
        """Symbols variant ``v`` holds a position in."""
        return [self._sym_names[s] for s in self.engine.open_symbols(v)]

    def held(self) -> dict[str, int]:
        """Every symbol some variant holds, with its id."""
        return {self._sym_names[s]: s for v in range(len(self.names)) for s in self.engine.open_symbols(v)}

    def open_count(self) -> int:
        """Open positions over all variants."""
        return sum(len(self.engine.open_symbols(v)) for v in range(len(self.names)))

    # -- positions ------------------------------------------------------------------------------

    def opened(self, v: int, symbol: str, position_id: int, entry_price: float) -> None:
        """Ties the engine's new position of (v, symbol) to its database row."""
        self.position_ids[(v, symbol)] = position_id
        self._trail[position_id] = TrailMark(False, entry_price, None)

    def forget(self, v: int, symbol: str) -> int | None:
        """Unties a closed position; returns its database id."""
        pid = self.position_ids.pop((v, symbol), None)
        if pid is not None:
            self._trail.pop(pid, None)
        return pid

    def restore(self, v: int, p: Position, bars_held: int) -> None:
        """Puts back a position the database holds, with its trail state and the guard's cooldown."""
        sid = self.sid(p.symbol)
        _, until = self.get(p.variant, p.symbol)
        highest = p.trail_highest if p.trail_highest is not None else p.entry_price
        self.engine.restore_position(
            v,
            sid,
            to_ms(p.opened_at),
            p.entry_price,
            p.qty,
            p.stake,
            p.entry_fee,
            p.stop_pct,
            p.atr_at_entry if p.atr_at_entry is not None else math.nan,
            highest,
            p.trail_active,
            p.trail_stop,
            bars_held,
            until,
        )
        self.position_ids[(v, p.symbol)] = p.id
        self._trail[p.id] = TrailMark(p.trail_active, highest, p.trail_stop)

    def trail_changes(self) -> list[tuple[int, TrailMark]]:
        """Positions whose trail moved since it was last written, with the new state."""
        out = []
        for (v, sym), pid in self.position_ids.items():
            sid = self.engine.symbol_id(sym)
            pos = None if sid is None else self.engine.position(v, sid)
            if pos is None:
                continue
            mark = TrailMark(pos.trail_active, pos.highest, pos.trail_stop)
            if self._trail.get(pid) != mark:
                out.append((pid, mark))
        return out

    def trail_written(self, position_id: int, mark: TrailMark) -> None:
        """Records that ``mark`` is in the database."""
        self._trail[position_id] = mark

    # -- the guard mirror's target (sigil.store.GuardTarget) ------------------------------------

    def knows(self, variant: str) -> bool:
        """True for a variant this engine trades."""
        return variant in self.vid

    def get(self, variant: str, symbol: str) -> tuple[bool, int | None]:
        """``(open, protected_until_ms or None)`` in the engine's guard."""
        return self.engine.guard_state(self.vid[variant], self.sid(symbol))

    def set(self, variant: str, symbol: str, is_open: bool, protected_until_ms: int | None) -> None:
        """The database's guard state of (variant, symbol) into the engine's guard. A position the
        engine holds stays open in it until the engine closes it; a pair being replayed keeps the
        engine's own state (see :attr:`replaying`)."""
        if (variant, symbol) in self.replaying:
            return
        v, sid = self.vid[variant], self.sid(symbol)
        if self.engine.position(v, sid) is not None:
            is_open = True
        self.engine.set_guard(v, sid, is_open, protected_until_ms)

    def blocked(self, variant: str, symbol: str, now_ms: int) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now_ms``, or None."""
        return self.engine.blocked(self.vid[variant], self.sid(symbol), now_ms)
