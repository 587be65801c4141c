"""Recovery: a fresh engine rebuilt from the candle history and the database.

The database is the authority. At start-up, and after a pass that failed half-way, the engine is
rebuilt: candles up to the resume point ``R`` (the market time of the last completed pass, stored as
the accounts' ``equity_at``) only warm up ATR and breakout windows; positions the database holds are
restored with their trail state once the candles reach their open, cooldowns come from the guard
mirror (which writes into the engine's own guard) and balances from the accounts; candles after
``R`` are decided again. A decision that was already carried out before a crash is found in the
database (the position is open, the pair is protected, the balance is debited), so it is never
carried out twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sigil.daemon.engine_state import EngineState
from sigil.daemon.execution import Execution
from sigil.daemon.feed import CandleFeed, DueCandle
from sigil.store import AccountStore, GuardMirror, Position, PositionStore
from sigil.times import iso, to_ms

log = logging.getLogger(__name__)

#: Decides one candle: (the candle, whether it is traded on or only warms the engine up).
Decide = Callable[[DueCandle, bool], Awaitable[None]]


@dataclass
class Pending:
    """A position the database holds that the engine gets back once the candles reach it."""

    position: Position
    variant: int
    restore_after: int
    bars_held: int = 0


class Recovery:
    """Rebuilds ``state``'s engine from ``feed``'s candles and the database; keeps balances in step."""

    def __init__(
        self,
        state: EngineState,
        feed: CandleFeed,
        execution: Execution,
        accounts: AccountStore,
        positions: PositionStore,
        mirror: GuardMirror,
    ) -> None:
        self.state = state
        self.feed = feed
        self.execution = execution
        self.accounts = accounts
        self.positions = positions
        self.mirror = mirror
        self.pending: dict[tuple[int, str], Pending] = {}

    async def resume_point(self) -> int | None:
        """The market time of the last completed pass (the earliest variant's mark), or None."""
        accounts = {a.variant: a for a in await self.accounts.all()}
        marks = [accounts[n].equity_at for n in self.state.names if n in accounts]
        if not marks or any(m is None for m in marks):
            return None
        return min(to_ms(m) for m in marks if m is not None)

    async def rebuild(self, cutoff: int, resume: int | None, decide: Decide) -> None:
        """A fresh engine from the candle history and the database, deciding again what closed after
        ``resume`` (None: a fresh database, where what closed before ``cutoff`` is history)."""
        if resume is None:
            resume = cutoff
        execution = self.execution
        self.state.reset()
        self.pending.clear()
        self.feed.restart(resume)
        await execution.settle()
        # The mirror writes every pair the database holds into the new engine's guard.
        await self.mirror.rebuild()
        open_positions = await self.positions.open_positions()
        execution.restored(open_positions)
        for p in open_positions:
            v = self.state.vid.get(p.variant)
            if v is None:
                continue
            self.state.sid(p.symbol)
            self.pending[(v, p.symbol)] = Pending(p, v, max(to_ms(p.opened_at), resume))
        await self.resync()
        for due in self.feed.due(cutoff):
            await decide(due, self.feed.is_news(due, resume))
        for key in list(self.pending):
            # Still pending: the candles did not reach it. Restore now unless the symbol has no candles
            # yet (a failed fetch): then its first candles restore it, in order.
            if self.feed.has_history(key[1]):
                self._restore(key)
        log.info(
            "engine rebuilt: %d open position(s) restored, resuming after %s",
            self.state.open_count(),
            iso(resume),
        )

    def before_candle(self, due: DueCandle) -> None:
        """Restores the pending positions of ``due``'s symbol whose time has come."""
        for key in [k for k, p in self.pending.items() if k[1] == due.symbol and due.close > p.restore_after]:
            self._restore(key)

    def held_through(self, due: DueCandle) -> None:
        """Counts ``due`` as a candle each still-pending position of its symbol was held through."""
        for key, p in self.pending.items():
            if key[1] == due.symbol and due.close > to_ms(p.position.opened_at):
                p.bars_held += 1

    def carried_out(self, v: int, symbol: str, close: int) -> bool:
        """True when the open of (v, symbol) at ``close`` was carried out before a restart (the
        position comes back from the database)."""
        pending = self.pending.get((v, symbol))
        return pending is not None and to_ms(pending.position.opened_at) == close

    def pending_symbols(self) -> set[str]:
        """Symbols with a position still to restore."""
        return {sym for (_, sym) in self.pending}

    def _restore(self, key: tuple[int, str]) -> None:
        p = self.pending.pop(key)
        self.state.restore(p.variant, p.position, p.bars_held)

    async def resync(self) -> None:
        """Balances into the engine and the broker's books rebuilt, both from the database."""
        accounts = {a.variant: a for a in await self.accounts.all()}
        holdings: dict[tuple[str, str], float] = {}
        for p in await self.positions.open_positions():
            if p.variant in self.state.vid:
                holdings[(p.variant, p.symbol)] = holdings.get((p.variant, p.symbol), 0.0) + p.qty
        balances = {n: accounts[n].balance for n in self.state.names if n in accounts}
        self.execution.reset_books(balances, holdings)
        for n, b in balances.items():
            self.state.engine.set_balance(self.state.vid[n], b)
