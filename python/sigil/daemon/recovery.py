"""Recovery: a fresh engine rebuilt from the candle history and the database, equal to one that never stopped.

The database is the authority. At start-up, and after a pass that failed half-way, the engine is
rebuilt from the resume point ``R``: the marks the last completed pass wrote for every variant in one
transaction (``equity_at`` = ``R``, ``balance_mark`` = the balance then, to the bit). Candles up to
``R`` only warm up ATR and breakout windows (the exchange client fetches every candle since ``R`` and
``history_candles`` before it); positions open at ``R`` come back once the candles pass it — those
closed after ``R`` too; balances are the marks; the guard of a pair the database is ahead on stands
as it did at ``R``. Candles after ``R`` are decided again, and what the database already holds from
after ``R`` is re-applied to the engine as the same decisions come up (:mod:`sigil.daemon.redo`),
never carried out twice. A database without marks (from before them) resumes as it has it: open
positions back, balances as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sigil.daemon.engine_state import EngineState
from sigil.daemon.execution import Execution
from sigil.daemon.feed import CandleFeed, DueCandle
from sigil.daemon.redo import Redo
from sigil.store import AccountStore, GuardMirror, Position, PositionStore
from sigil.times import from_ms, iso, to_ms

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
        self.redo = Redo(state)
        #: Each variant's cooldown after an open, in ms.
        self.cooldown_ms = [v.cooldown_candles * state.tf_ms for v in execution.variants.values()]

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
            # A fresh database: what closed before this first pass is history. The mark is written
            # now, so that a first pass cut short resumes from here too.
            resume = cutoff
            accounts = {a.variant: a for a in await self.accounts.all()}
            await self.accounts.mark_pass(
                {n: accounts[n].balance for n in self.state.names if n in accounts}, from_ms(resume)
            )
        execution = self.execution
        self.state.reset()
        self.pending.clear()
        self.redo.clear()
        self.feed.restart(resume)
        await execution.settle()
        accounts = {a.variant: a for a in await self.accounts.all()}
        marks = {n: accounts[n].balance_mark for n in self.state.names if n in accounts}
        # Exact recovery needs the balances of the resume point, marked with it by the last pass.
        exact = bool(marks) and all(m is not None for m in marks.values())
        rows = await self.positions.since(from_ms(resume)) if exact else await self.positions.open_positions()
        if any(p.closed_at is not None and p.exit_gross is None for p in rows):
            exact = False  # a close recorded before its sell's numbers were: resume as the database has it
            rows = [p for p in rows if p.is_open]
        balances = {n: m for n, m in marks.items() if m is not None}
        facts: list[Position] = []
        for p in rows:
            v = self.state.vid.get(p.variant)
            if v is None:
                continue
            self.state.sid(p.symbol)
            opened = to_ms(p.opened_at)
            if not exact:
                self.pending[(v, p.symbol)] = Pending(p, v, max(opened, resume))
                continue
            closed = None if p.closed_at is None else to_ms(p.closed_at)
            between_candles = closed is not None and closed % self.state.tf_ms != 0
            if opened > resume:
                self.redo.expect_open(v, p)  # decided after the resume point: decided again
            elif between_candles:
                facts.append(p)  # the exit pass closed it after the resume point, from a ticker
            else:
                self.pending[(v, p.symbol)] = Pending(p, v, resume)
                if closed is not None:
                    self.redo.expect_close(v, p)
        # The exit pass's closes are facts: credited in the order the database credited them.
        for p in sorted(facts, key=lambda p: (p.closed_at, p.id)):
            assert p.exit_gross is not None and p.exit_fee is not None
            balances[p.variant] = balances[p.variant] + (p.exit_gross - p.exit_fee)
        # The guard of the pairs replayed stands as at the resume point (the database is ahead there):
        # open if a position of the resume point comes back, cooldown from the pair's last open then.
        last_opens = await self.positions.last_opens(from_ms(resume)) if self.state.replaying else {}
        # The mirror writes every other pair the database holds into the new engine's guard.
        await self.mirror.rebuild()
        for variant, symbol in self.state.replaying:
            v = self.state.vid[variant]
            last = last_opens.get((variant, symbol))
            until = None if last is None else to_ms(last) + self.cooldown_ms[v]
            self.state.engine.set_guard(v, self.state.sid(symbol), False, until)
        if self.redo.opens or self.redo.closes:
            log.info(
                "the database holds %d open(s) and %d close(s) from after the resume point: re-applied as"
                " the candles are decided again",
                len(self.redo.opens),
                len(self.redo.closes),
            )
        execution.restored([p for p in rows if p.is_open])
        await self.resync(engine_balances=not exact)
        for name, b in balances.items():
            self.state.engine.set_balance(self.state.vid[name], b)
        for due in self.feed.due(cutoff):
            await decide(due, self.feed.is_news(due, resume))
        self.redo.overdue(cutoff + 1)
        for key in list(self.pending):
            # Still pending: the candles did not reach it. Restore now unless the symbol has no candles
            # yet (a failed fetch): then its first candles restore it, in order.
            if self.feed.has_history(key[1]):
                self._restore(key)
        log.info(
            "engine rebuilt: %d open position(s), %d decision(s) still to re-apply, resuming after %s",
            self.state.open_count(),
            len(self.redo.opens) + len(self.redo.closes),
            iso(resume),
        )

    def before_candle(self, due: DueCandle) -> None:
        """Before ``due`` is decided: the positions of the resume point come back once the candles
        pass it (every symbol with candles at once, so every later decision counts them), and what
        the database holds from before ``due`` that the engine did not decide again is applied."""
        for key in [
            k
            for k, p in self.pending.items()
            if due.close > p.restore_after and (k[1] == due.symbol or self.feed.has_history(k[1]))
        ]:
            self._restore(key)
        self.redo.overdue(due.close)

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
        """Symbols with a position still to restore or a decision still to re-apply."""
        return {sym for (_, sym) in self.pending} | self.redo.symbols()

    def _restore(self, key: tuple[int, str]) -> None:
        p = self.pending.pop(key)
        self.state.restore(p.variant, p.position, p.bars_held)

    async def resync(self, *, engine_balances: bool = True) -> None:
        """The broker's books and (with ``engine_balances``) the engine's balances from the database;
        a variant whose decisions are still being re-applied keeps the engine's balance."""
        accounts = {a.variant: a for a in await self.accounts.all()}
        holdings: dict[tuple[str, str], float] = {}
        for p in await self.positions.open_positions():
            if p.variant in self.state.vid:
                holdings[(p.variant, p.symbol)] = holdings.get((p.variant, p.symbol), 0.0) + p.qty
        balances = {n: accounts[n].balance for n in self.state.names if n in accounts}
        self.execution.reset_books(balances, holdings)
        if not engine_balances:
            return
        replaying = {variant for variant, _ in self.state.replaying}
        for n, b in balances.items():
            if n not in replaying:
                self.state.engine.set_balance(self.state.vid[n], b)
