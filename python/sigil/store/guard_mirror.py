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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sigil._core import GuardTable
from sigil.errors import DatabaseUnavailable, UnknownVariant
from sigil.store import _checks
from sigil.store.db import Connection, Database
from sigil.store.events import SkipReason
from sigil.store.notify import GUARD_CHANNEL, GuardChange, until_ms
from sigil.store.protections import SymbolProtectionStore

log = logging.getLogger(__name__)

#: Seconds between liveness checks of the listening connection (a dead peer may send no FIN).
PING_INTERVAL_S = 15.0
#: Longest wait between two reconnection attempts.
MAX_RECONNECT_DELAY_S = 30.0

_REASONS = {"open": SkipReason.OPEN, "cooldown": SkipReason.COOLDOWN}


class GuardMirror:
    """The in-memory pre-signal guard for ``variants``, following the database.

    ``on_change(change)`` is called for every change applied (after a rebuild, once per pair whose state
    may have changed), e.g. to forward it to the engine's own guard.
    """

    def __init__(
        self,
        db: Database,
        variants: Sequence[str],
        *,
        on_change: Callable[[GuardChange], None] | None = None,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self._db = db
        self._variants = list(variants)
        self._table = GuardTable(self._variants)
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
        try:
            v = self._table.variant_id(variant)
        except ValueError:
            raise UnknownVariant(f"unknown variant {variant!r}") from None
        why = self._table.blocked(v, self._table.symbol_id(symbol), now_ms)
        return None if why is None else _REASONS[why]

    def blocked(self, variant: str, symbol: str, now: datetime) -> SkipReason | None:
        """Why (variant, symbol) may not signal at ``now`` (market time), or None."""
        return self.blocked_ms(variant, symbol, _checks.to_ms(_checks.utc("now", now)))

    def can_signal(self, variant: str, symbol: str, now: datetime) -> bool:
        """The pre-signal guard: True when (variant, symbol) is neither open nor cooling down at ``now``."""
        return self.blocked(variant, symbol, now) is None

    def state(self, variant: str, symbol: str) -> tuple[bool, int | None]:
        """``(open, protected_until_ms or None)`` as the mirror has it."""
        return self._table.get(self._table.variant_id(variant), self._table.symbol_id(symbol))

    @property
    def table(self) -> GuardTable:
        """The current table (replaced by each rebuild: do not keep it, nor its symbol ids)."""
        return self._table

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
        try:
            v = self._table.variant_id(change.variant)
            s = self._table.symbol_id(change.symbol)
        except ValueError:
            return False  # a variant this process does not trade, or a malformed name
        key = (change.variant, change.symbol)
        if change.seq <= self._seq.get(key, 0):
            return False
        self._seq[key] = change.seq
        self._touched.add(key)
        is_open = change.open if change.open is not None else self._table.get(v, s)[0]
        self._table.set(v, s, is_open, change.protected_until_ms)
        if self._on_change is not None:
            self._on_change(
                GuardChange(change.variant, change.symbol, is_open, change.protected_until_ms, change.seq)
            )
        return True

    async def rebuild(self) -> int:
        """Replaces the table by the database's state; returns the number of pairs loaded.

        Changes heard while the snapshot is read are applied to the old table and replayed, in order, on
        the new one.
        """
        async with self._rebuild_lock:
            self.generation += 1
            self._buffer = []
            try:
                states = await self._protections.guard_states()
            except BaseException:
                self._buffer = None
                raise
            table = GuardTable(self._variants)
            loaded = 0
            for st in states:
                try:
                    v = table.variant_id(st.variant)
                except ValueError:
                    continue  # positions of a variant that is not configured here
                table.set(v, table.symbol_id(st.symbol), st.open, until_ms(st.protected_until))
                loaded += 1
            before, buffered = self._touched, self._buffer
            self._table, self._seq, self._buffer = table, {}, None
            self._touched = {(st.variant, st.symbol) for st in states if st.variant in self._variant_set}
            for change in buffered:
                self._apply(change)
            self.rebuilds += 1
            if self._on_change is not None:
                # Every pair whose state may differ from before: the ones known then and now.
                for variant, symbol in sorted(before | self._touched):
                    is_open, until = self.state(variant, symbol)
                    seq = self._seq.get((variant, symbol), 0)
                    self._on_change(GuardChange(variant, symbol, is_open, until, seq))
            return loaded

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
