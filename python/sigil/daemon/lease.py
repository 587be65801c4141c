"""One instance, one process: the daemon's hold on its instance lease, and the passes it guards.

``daemon.instance`` names an instance; its lease is a session-level advisory lock on a connection of
its own (why a lock, and not a lease row with a TTL: :mod:`sigil.store.instances`).

**At start-up**, after the exchange answered and before anything is written (no account, job row,
event or heartbeat), :meth:`InstanceLease.take` takes the lease and records the holder and its share:

* held by another process: :class:`~sigil.errors.InstanceHeld` naming the holder (host, pid, since),
  exit 4; with ``standby`` it waits instead, polling every :func:`poll_interval` (logged once), and
  takes over the moment the lease is free: the holder's session ends when its process does, also
  under kill -9;
* the share (``daemon.variants`` × ``daemon.shard``) overlaps a live instance's: InstanceHeld naming
  that instance and its holder (exit 4), nothing written. A dead instance's claim blocks nobody.

**While it runs**, a watcher checks the lease every :func:`poll_interval`, and the lease session's end
is seen at once (asyncpg's termination callback). A holder that loses its lease — its session ended
(the server restarted, the session was terminated, the network dropped it), its row names another
process, or it could not verify the lease for :data:`UNVERIFIED_LOSS_S` (longer than the server's
keepalives take to drop a silent peer) — **stops acting at once**: the pass in flight is cancelled
(each open and close is one transaction, so nothing is half-written) and every pass fails at once
until the lease is back (:class:`LeasedPasses`). Then it tries to take the lease back, on a new
session, every poll:

* the database cannot be reached: it keeps trying (a database outage is survived, like every other
  pass failure, see the watchdog);
* the lease is free and its row still names this process (nobody held it in between): it is taken
  back and the passes go on, the engine rebuilt from the database if a pass was cut short;
* another process holds it, or held it in between: ``on_lost`` is called — the daemon stops with
  exit 1 so a supervisor restarts it (a restarted ``--standby`` waits; a plain one exits 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sigil.config import Config
from sigil.daemon.passes import Passes, PassReport, VariantState
from sigil.daemon.scheduler import JobSpec
from sigil.daemon.share import Share
from sigil.errors import DatabaseUnavailable, InstanceHeld
from sigil.store import Database, instances, require_current
from sigil.store.db import Connection, is_closed, unavailable_as_error
from sigil.store.instances import Holder

log = logging.getLogger(__name__)

#: A lease not verified for this long (a hung server, a network gone silent) counts as lost: by then
#: the server's keepalives (sigil.store.instances.KEEPALIVES, about 25 s) may have dropped the session.
UNVERIFIED_LOSS_S = 30.0
#: One check of the lease (a single small query) may take at most this long ...
CHECK_TIMEOUT_S = 5.0
#: ... and is made this often (or every poll, when that is longer).
CHECK_EVERY_S = 1.0

#: Lease states, as /health shows them.
WAITING = "waiting"
HELD = "held"
LOST = "lost"
GONE = "gone"
RELEASED = "released"


def poll_interval(scan_interval_s: float) -> float:
    """How often a standby asks for the lease and a holder checks it: a quarter of the scan interval,
    between 50 ms and 1 s (a standby's share of the failover time)."""
    return min(1.0, max(0.05, scan_interval_s / 4))


class InstanceLease:
    """This process's hold on one instance's lease; see the module docstring.

    ``lease = InstanceLease.of(db, config)``, ``await lease.take()``, and ``await lease.release()``
    in a ``finally`` (a no-op for a lease never taken).
    """

    def __init__(self, db: Database, instance: str, share: Share, poll_s: float) -> None:
        self.db = db
        self.instance = instance
        self.share = share
        self.poll_s = poll_s
        self.state = WAITING
        self.me: Holder | None = None
        #: Why the lease was last lost (None while it never was).
        self.lost_reason: str | None = None
        #: How many times it was lost and taken back.
        self.regained = 0
        self._conn: Connection | None = None
        self._on_suspend: list[Callable[[str], None]] = []
        self._on_lost: Callable[[str], None] | None = None
        self._gone: str | None = None
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._verified = time.monotonic()

    # -- taking it -------------------------------------------------------------------------------------

    @classmethod
    def of(cls, db: Database, config: Config) -> InstanceLease:
        """The (not yet taken) lease of ``config``'s instance on ``db``, with its share."""
        settings = config.settings.daemon
        return cls(db, settings.instance, Share.of_config(config), poll_interval(settings.scan_interval_s))

    async def take(self, *, standby: bool = False) -> None:
        """Takes the lease and claims the share; see the module docstring.

        Raises :class:`~sigil.errors.InstanceHeld` (exit 4) when another process holds it (unless
        ``standby``: then it waits) or when the share overlaps a live instance's;
        :class:`~sigil.errors.SchemaNotReady` before migration 0009; DatabaseUnavailable.
        """
        await require_current(self.db)
        try:
            await self._acquire(standby)
        except BaseException:
            await self._close()
            raise
        self._watcher = asyncio.create_task(self._watch(), name="sigil-lease")

    async def _acquire(self, standby: bool) -> None:
        waiting_logged = unreachable_logged = False
        while True:
            holder = ""
            try:
                conn = self._conn or await self._connect()
                with unavailable_as_error(self._what, conn):
                    if await instances.try_lock(conn, self.instance):
                        break
                    if not waiting_logged:
                        holder = await instances.holder(conn, self.instance)
            except DatabaseUnavailable as e:
                if not standby:
                    raise
                await self._close()
                if not unreachable_logged:
                    log.warning("standby for instance %r: %s; still waiting", self.instance, e)
                    unreachable_logged = True
                await asyncio.sleep(self.poll_s)
                continue
            if not standby:
                raise InstanceHeld(
                    f"instance {self.instance!r} is held by {holder} (`sigil daemon --standby` waits for it)",
                    holder=holder,
                )
            if not waiting_logged:
                log.warning(
                    "standby: instance %r is held by %s; waiting for its lease (asking every %gs)",
                    self.instance,
                    holder,
                    self.poll_s,
                )
                waiting_logged = True
            await asyncio.sleep(self.poll_s)
        conn = self._conn
        assert conn is not None
        try:
            with unavailable_as_error(self._what, conn):
                self.me = await instances.claim(conn, self.instance, self.share)
        except BaseException:
            with contextlib.suppress(Exception):
                await instances.unlock(conn, self.instance)
            raise
        self.state = HELD
        self._verified = time.monotonic()
        conn.add_termination_listener(self._terminated)
        log.info(
            "instance %r: lease taken (%s; database session %d); share: %s",
            self.instance,
            self.me.describe(),
            self.me.backend_pid,
            self.share.describe(),
        )

    @property
    def _what(self) -> str:
        return f"instance {self.instance!r} lease"

    async def _connect(self) -> Connection:
        conn = await self.db.connect_direct(self._what)
        try:
            with unavailable_as_error(self._what, conn):
                await instances.configure_session(conn, self.instance)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    # -- what the daemon wires -------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """True while this process holds the lease (the passes may act)."""
        return self.state == HELD

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """``callback(reason)`` once the lease is held by another process (at once if it already is)."""
        self._on_lost = callback
        if self._gone is not None:
            callback(self._gone)

    def guard(self, passes: Passes) -> LeasedPasses:
        """``passes`` acting only while the lease is held."""
        guarded = LeasedPasses(passes, self)
        self._on_suspend.append(guarded.cut)
        return guarded

    def describe(self) -> dict[str, Any]:
        """The lease as ``/health`` shows it."""
        me = self.me
        return {
            "instance": self.instance,
            "state": self.state,
            "holder": None
            if me is None
            else {
                "host": me.host,
                "pid": me.pid,
                "since": me.since.isoformat(),
                "database_session": me.backend_pid,
            },
            "share": {"variants": list(self.share.variants), "shard": self.share.shard},
            "lost_reason": self.lost_reason,
            "regained": self.regained,
        }

    async def release(self) -> None:
        """Gives the lease back (a clean stop) and stops watching it."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self.state == HELD and self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(instances.unlock(self._conn, self.instance), CHECK_TIMEOUT_S)
        if self.state != GONE:
            self.state = RELEASED
        await self._close()

    # -- losing it -------------------------------------------------------------------------------------

    def _terminated(self, conn: Connection) -> None:
        if conn is self._conn and self.state == HELD:
            self._suspend("its database session ended")

    def _suspend(self, reason: str) -> None:
        """Stops acting at once: the pass in flight is cut short, no pass runs until the lease is back."""
        if self.state != HELD:
            return
        self.state = LOST
        self.lost_reason = reason
        log.error(
            "instance %r: lease lost (%s): not acting until it is taken back or the daemon stops",
            self.instance,
            reason,
        )
        for cut in self._on_suspend:
            cut(reason)
        conn, self._conn = self._conn, None
        if conn is not None and not is_closed(conn):
            conn.terminate()  # our end of a session we can no longer trust
        self._wake.set()

    def _give_up(self, reason: str) -> None:
        self.state = GONE
        self._gone = reason
        log.critical(
            "instance %r: %s; stopping (exit 1, so that a supervisor restarts it)", self.instance, reason
        )
        if self._on_lost is not None:
            self._on_lost(reason)

    async def _watch(self) -> None:
        while self.state in (HELD, LOST):
            # Asked again every poll while lost; checked every CHECK_EVERY_S while held (the end of
            # its session is seen at once anyway, by the termination callback).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), self.poll_s if self.state == LOST else max(self.poll_s, CHECK_EVERY_S)
                )
            self._wake.clear()
            if self.state == HELD:
                await self._check()
            if self.state == LOST:
                await self._retake()

    async def _check(self) -> None:
        conn, me = self._conn, self.me
        assert me is not None
        if conn is None or is_closed(conn):
            self._suspend("its database session ended")
            return
        ok: bool | None
        try:
            ok = await asyncio.wait_for(instances.still_held(conn, me), CHECK_TIMEOUT_S)
        except Exception as e:  # a timeout, a socket error, asyncpg's errors of a closed connection
            if is_closed(conn):
                self._suspend("its database session ended")
                return
            ok = None
            log.debug("lease check: %s", e)
        if ok:
            self._verified = time.monotonic()
        elif ok is False:
            row = await self._row_quietly(conn)
            if row is not None and (row.host, row.pid) != (me.host, me.pid):
                self._suspend(f"its row names {row.describe()}")
                self._give_up(f"instance lease taken by {row.describe()}")
            else:
                self._suspend("its database session no longer holds it")
        elif time.monotonic() - self._verified > UNVERIFIED_LOSS_S:
            self._suspend(f"not verified for {UNVERIFIED_LOSS_S:g}s")

    async def _row_quietly(self, conn: Connection) -> Holder | None:
        try:
            return await asyncio.wait_for(instances.recorded(conn, self.instance), CHECK_TIMEOUT_S)
        except Exception:
            return None

    async def _retake(self) -> None:
        me = self.me
        assert me is not None
        try:
            conn = await asyncio.wait_for(self._connect(), self.db.config.connect_timeout_s + CHECK_TIMEOUT_S)
            if not await instances.try_lock(conn, self.instance):
                holder = await instances.holder(conn, self.instance)
                await self._close()
                self._give_up(f"instance lease lost to {holder}")
                return
            row = await instances.recorded(conn, self.instance)
            if row is None or (row.host, row.pid, row.since) != (me.host, me.pid, me.since):
                await self._close()
                held_by = "nobody" if row is None else row.describe()
                self._give_up(f"instance lease was held by {held_by} in the meantime")
                return
            self.me = await instances.claim(conn, self.instance, self.share, since=me.since)
        except InstanceHeld as e:
            await self._close()
            self._give_up(str(e))
            return
        except (TimeoutError, DatabaseUnavailable, OSError, ConnectionError) as e:
            await self._close()
            log.debug("lease not taken back yet: %s", e)
            return
        except Exception as e:  # a session that died half-way: try again at the next poll
            await self._close()
            log.debug("lease not taken back yet: %s", e)
            return
        conn.add_termination_listener(self._terminated)
        self.state = HELD
        self._verified = time.monotonic()
        self.regained += 1
        log.warning(
            "instance %r: lease taken back (database session %d); acting again",
            self.instance,
            self.me.backend_pid,
        )

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or is_closed(conn):
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._terminated)
        try:
            await asyncio.wait_for(conn.close(), CHECK_TIMEOUT_S)
        except Exception:
            conn.terminate()


class LeasedPasses:
    """The daemon's passes, acting only while the instance lease is held (see the module docstring).

    A pass run while the lease is lost fails at once with DatabaseUnavailable (counted and logged
    like any failed pass, so the watchdog still sees the scheduler run); a pass in flight when it is
    lost is cancelled, and ends as that same error.
    """

    def __init__(self, passes: Passes, lease: InstanceLease) -> None:
        self.passes = passes
        self.lease = lease
        self._running: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()

    def _refuse(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"instance {self.lease.instance!r}: lease lost ({self.lease.lost_reason}): not acting until"
            " it is taken back"
        )

    def cut(self, reason: str) -> None:
        """Cancels the passes in flight (the lease was lost: ``reason``)."""
        for task in self._running:
            self._cut.add(task)
            task.cancel(f"instance lease lost: {reason}")

    def jobs(self) -> Sequence[JobSpec]:
        """The guarded passes' jobs."""
        return self.passes.jobs()

    async def run(self, name: str) -> PassReport:
        """Runs pass ``name`` if the lease is held; see the class docstring."""
        if not self.lease.held:
            raise self._refuse()
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            return await self.passes.run(name)
        except asyncio.CancelledError:
            if task in self._cut and task.uncancel() == 0:
                raise self._refuse() from None
            raise
        finally:
            self._running.discard(task)
            self._cut.discard(task)

    async def heartbeat(self, report: PassReport) -> None:
        """The heartbeat of a completed pass, if the lease is still held."""
        if not self.lease.held:
            raise self._refuse()
        await self.passes.heartbeat(report)

    def variants(self) -> dict[str, VariantState]:
        """The guarded passes' books."""
        return self.passes.variants()

    def exhausted(self) -> bool:
        """Whether the guarded passes' market data has ended."""
        return self.passes.exhausted()
