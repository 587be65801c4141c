"""The guard mirror: the Rust ``GuardTable`` kept in step with the database.

The pre-signal guard must be cheap (it runs for every breakout of every variant), so it is answered
from memory. The database stays the authority: ``PositionStore.open_position`` re-checks there under
the pair's lock, so a mirror that is behind may skip a signal, or let one through that the open then
refuses, but can never cause a second open.

How it keeps in step:

- at start-up it LISTENs first, then rebuilds from the database (so no change falls between the two);
- this process's opens and closes are applied right after their commit (never before);
- other processes' changes arrive by NOTIFY after their commit; for one pair they carry increasing
  ``seq`` numbers, so an older change never overwrites a newer one;
- when the listening connection is lost it reconnects and rebuilds.

Where it keeps the state: in a :class:`GuardTarget`. By default that is a table of its own
(:class:`TableGuard`); the daemon hands it the engine's own guard instead, so the process holds
one guard table, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from sigil._core import GuardTable, SkipReason
from sigil.errors import DatabaseUnavailable, UnknownVariant
from sigil.store import _checks
from sigil.store.db import Connection, Database
from sigil.store.notify import GUARD_CHANNEL, GuardChange, until_ms
from sigil.store.protections import SymbolProtectionStore

log = logging.getLogger(__name__)

#: Seconds between liveness checks of the listening connection (a dead peer may send no FIN).
PING_INTERVAL_S = 15.0
#: Longest wait between two reconnection attempts.
MAX_RECONNECT_DELAY_S = 30.0

_REASONS = {"open": SkipReason.OPEN, "cooldown": SkipReason.COOLDOWN}


class GuardTarget(Protocol):
    """Where the mirror keeps each (variant, symbol)'s guard state."""

    def knows(self, variant: str) -> bool:
        """True for a variant this table holds."""
        ...

    def get(self, variant: str, symbol: str) -> tuple[bool, int | None]:
        """``(open, protected_until_ms or None)``."""
        ...

    def set(self, variant: str, symbol: str, is_open: bool, protected_until_ms: int | None) -> None:
        """Sets the state of (variant, symbol) as the database has it."""
        ...

    def blocked(self, variant: str, symbol: str, now_ms: int) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now_ms``, or None."""
        ...


class TableGuard:
    """A :class:`GuardTarget` of its own: the engine's ``GuardTable`` by itself (a process that
    follows the guard without trading, and the mirror's default)."""

    def __init__(self, variants: Sequence[str]) -> None:
        self._table = GuardTable(list(variants))
        self._known = frozenset(variants)

    def knows(self, variant: str) -> bool:
        """True for a configured variant."""
        return variant in self._known

    def get(self, variant: str, symbol: str) -> tuple[bool, int | None]:
        """``(open, protected_until_ms or None)``."""
        return self._table.get(self._table.variant_id(variant), self._table.symbol_id(symbol))

    def set(self, variant: str, symbol: str, is_open: bool, protected_until_ms: int | None) -> None:
        """Sets the state of (variant, symbol)."""
        self._table.set(
            self._table.variant_id(variant), self._table.symbol_id(symbol), is_open, protected_until_ms
        )

    def blocked(self, variant: str, symbol: str, now_ms: int) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now_ms``, or None."""
        why = self._table.blocked(self._table.variant_id(variant), self._table.symbol_id(symbol), now_ms)
        return None if why is None else _REASONS[why]


class GuardMirror:
    """The in-memory pre-signal guard for ``variants``, following the database.

    ``target`` is where the state is kept (default: a :class:`TableGuard` of its own).
    ``on_change(change)`` is called for every change applied (after a rebuild, once per pair whose
    state may have changed).
    """

    def __init__(
        self,
        db: Database,
        variants: Sequence[str],
        *,
        target: GuardTarget | None = None,
        on_change: Callable[[GuardChange], None] | None = None,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self._db = db
        self._variants = list(variants)
        self._target: GuardTarget = target if target is not None else TableGuard(self._variants)
        self._protections = SymbolProtectionStore(db)
        self._on_change = on_change
        self._reconnect_delay_s = reconnect_delay_s
        self._variant_set = frozenset(self._variants)
        self._seq: dict[tuple[str, str], int] = {}
        #: Pairs that may be open or protected (loaded by the last rebuild or changed since).
        self._touched: set[tuple[str, str]] = set()
        self._buffer: list[GuardChange] | None = None
        self._rebuild_lock = asyncio.Lock()
        self._conn: Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Bumped when a rebuild starts; a post-commit change from before it is already covered.
        self.generation = 0
        #: Number of completed rebuilds.
        self.rebuilds = 0

    # -- answering -----------------------------------------------------------------------------

    def blocked_ms(self, variant: str, symbol: str, now_ms: int) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now_ms`` (epoch ms): ``open``, ``cooldown``, or None."""
        if variant not in self._variant_set:
            raise UnknownVariant(f"unknown variant {variant!r}")
        return self._target.blocked(variant, symbol, now_ms)

    def blocked(self, variant: str, symbol: str, now: datetime) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now`` (market time), or None."""
        return self.blocked_ms(variant, symbol, _checks.to_ms(_checks.utc("now", now)))

    def can_signal(self, variant: str, symbol: str, now: datetime) -> bool:
        """The pre-signal guard: True when (variant, symbol) is neither open nor cooling down at ``now``."""
        return self.blocked(variant, symbol, now) is None

    def state(self, variant: str, symbol: str) -> tuple[bool, int | None]:
        """``(open, protected_until_ms or None)`` as the mirror has it."""
        return self._target.get(variant, symbol)

    @property
    def target(self) -> GuardTarget:
        """Where the state is kept."""
        return self._target

    def retarget(self, target: GuardTarget) -> None:
        """Keeps the state in ``target`` from now on (a fresh table: follow with :meth:`rebuild`)."""
        self._target = target
        self._touched = set()

    @property
    def listening(self) -> bool:
        """True while the mirror hears other processes' changes."""
        return self._conn is not None and not self._conn.is_closed() and not self._lost.is_set()

    # -- changing ------------------------------------------------------------------------------

    def apply(self, change: GuardChange, *, generation: int | None = None) -> None:
        """Applies a committed change. ``generation`` (read before the change's transaction began) drops a
        post-commit change when a rebuild started since: the rebuild's snapshot or a notification
        covers it, and applying it late could overwrite a newer state."""
        if generation is not None and generation != self.generation:
            return
        if self._buffer is not None:
            self._buffer.append(change)
        self._apply(change)

    def _apply(self, change: GuardChange) -> bool:
        if change.variant not in self._variant_set or not self._target.knows(change.variant):
            return False  # a variant this process does not trade
        key = (change.variant, change.symbol)
        if change.seq <= self._seq.get(key, 0):
            return False
        try:
            is_open = change.open if change.open is not None else self._target.get(*key)[0]
            self._target.set(change.variant, change.symbol, is_open, change.protected_until_ms)
        except ValueError:
            return False  # a malformed symbol name
        self._seq[key] = change.seq
        self._touched.add(key)
        if self._on_change is not None:
            self._on_change(
                GuardChange(change.variant, change.symbol, is_open, change.protected_until_ms, change.seq)
            )
        return True

    async def rebuild(self) -> int:
        """Sets the target to the database's state; returns the number of pairs loaded.

        Every pair known before or loaded now is set (a pair the database no longer holds becomes free).
        Changes heard while the snapshot is read are replayed on top of it, in order.
        """
        async with self._rebuild_lock:
            self.generation += 1
            self._buffer = []
            try:
                states = await self._protections.guard_states()
            except BaseException:
                self._buffer = None
                raise
            loaded: dict[tuple[str, str], tuple[bool, int | None]] = {
                (st.variant, st.symbol): (st.open, until_ms(st.protected_until))
                for st in states
                if st.variant in self._variant_set and self._target.knows(st.variant)
            }
            before, buffered = self._touched, self._buffer
            for key in sorted(before | loaded.keys()):
                is_open, until = loaded.get(key, (False, None))
                self._target.set(key[0], key[1], is_open, until)
            self._seq, self._buffer, self._touched = {}, None, set(loaded)
            for change in buffered:
                self._apply(change)
            self.rebuilds += 1
            if self._on_change is not None:
                # Every pair whose state may differ from before: the ones known then and now.
                for variant, symbol in sorted(before | self._touched):
                    is_open, until = self.state(variant, symbol)
                    seq = self._seq.get((variant, symbol), 0)
                    self._on_change(GuardChange(variant, symbol, is_open, until, seq))
            return len(loaded)

    # -- listening -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listens for changes, rebuilds from the database, and keeps listening in the background.

        Raises :class:`DatabaseUnavailable` when the first connection fails.
        """
        self._closing = False
        await self._listen_and_rebuild()
        self._task = asyncio.create_task(self._watch(), name="guard-mirror")

    async def stop(self) -> None:
        """Stops listening."""
        self._closing = True
        self._lost.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _listen_and_rebuild(self) -> None:
        conn = await self._db.connect_direct("guard mirror: listen")
        try:
            await conn.add_listener(GUARD_CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException as e:
            conn.terminate()
            raise DatabaseUnavailable(f"guard mirror: cannot listen ({e})") from e
        self._conn = conn
        self._lost.clear()
        try:
            await self.rebuild()
        except BaseException:
            await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2.0)
            except Exception:
                conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = GuardChange.decode(payload)
        except ValueError as e:
            log.warning("guard mirror: ignoring a notification: %s", e)
            return
        self.apply(change)

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost.set()

    async def _watch(self) -> None:
        """Pings the listening connection; after a loss, reconnects (with backoff) and rebuilds."""
        while not self._closing:
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=PING_INTERVAL_S)
            except TimeoutError:
                if await self._ping():
                    continue
            if self._closing:
                return
            log.warning("guard mirror: lost the database connection; reconnecting")
            await self._drop_connection()
            delay = self._reconnect_delay_s
            while not self._closing:
                try:
                    await self._listen_and_rebuild()
                    log.info("guard mirror: listening again, rebuilt from the database")
                    break
                except DatabaseUnavailable as e:
                    log.debug("guard mirror: %s; retrying in %.1f s", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY_S)

    async def _ping(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=PING_INTERVAL_S)
        except Exception:
            return False
        return True
