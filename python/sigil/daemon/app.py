"""The daemon's lifecycle: start the scheduler, keep it alive, report on it, stop cleanly.

:class:`Daemon` owns everything that is about *running* passes rather than *doing* them: the
APScheduler with its persistent job store, the watchdog, the health server, systemd notifications,
signals and the stop sequence. What a pass does is the :class:`~sigil.daemon.passes.Passes` given to
it (the scanner, see :mod:`sigil.daemon.scanner`).

Stop sequence (SIGTERM, SIGINT, a run limit, or the watchdog giving up): no new runs start; the pass
in flight gets ``daemon.stop_timeout_s`` to finish, then is cancelled (each open and close is one
database transaction, so a cancelled pass leaves nothing half-written); the scheduler stops, its rows
stay in the job store; the health server closes. The caller then closes the exchange client and the
pool. A restart resumes from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sigil.config import DaemonConfig
from sigil.daemon import handle
from sigil.daemon.health import HealthServer, Routes
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.passes import BREAKOUT, Passes, PassReport
from sigil.daemon.scheduler import DaemonScheduler
from sigil.daemon.systemd import SystemdNotifier
from sigil.daemon.watchdog import EXIT_STALLED, LoopGuard, Watchdog
from sigil.errors import DatabaseUnavailable
from sigil.notify.events import HeartbeatStale, Notice, PassFailed, Rearmed, Started, Stopped
from sigil.notify.summary import Book
from sigil.times import iso

if TYPE_CHECKING:
    from sigil.notify.sender import NotificationSender

log = logging.getLogger(__name__)

#: Exit status of a clean stop.
EXIT_OK = 0


@dataclass(frozen=True)
class RunLimits:
    """When a run ends by itself (the demo and tests); all None/False = run until stopped."""

    #: Stop after this many completed breakout passes.
    max_passes: int | None = None
    #: Stop after this many seconds of wall-clock time.
    duration_s: float | None = None
    #: Stop once the market data has ended (the simulator ran out of candles) and a pass saw it.
    until_exhausted: bool = False


def _iso(wall: float | None) -> str | None:
    return None if wall is None else datetime.fromtimestamp(wall, tz=UTC).isoformat()


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


class Daemon:
    """Runs ``passes`` on a persistent schedule until stopped; see the module docstring.

    ``database_url`` (or ``jobstore``) is where the scheduler keeps its jobs. ``health_port`` None
    keeps the health server off; 0 picks a free port (see :attr:`health_port`).
    """

    def __init__(
        self,
        settings: DaemonConfig,
        passes: Passes,
        *,
        database_url: str | None = None,
        jobstore: Any = None,
        metrics: DaemonMetrics | None = None,
        notifier: SystemdNotifier | None = None,
        limits: RunLimits = RunLimits(),
        health_port: int | None = -1,
        handle_signals: bool = True,
        on_pass: Callable[[PassReport], None] | None = None,
        extra_health: Callable[[], dict[str, Any]] | None = None,
        routes: Sequence[Routes] = (),
        notifications: NotificationSender | None = None,
        mode: str = "paper",
    ) -> None:
        self.settings = settings
        self.passes = passes
        self.instance = settings.instance
        self.metrics = metrics or DaemonMetrics()
        self.notifier = notifier or SystemdNotifier(None)
        self.limits = limits
        self.health_port: int | None = settings.health_port if health_port == -1 else health_port
        self._handle_signals = handle_signals
        self._on_pass = on_pass
        self._extra_health = extra_health
        self._routes = tuple(routes)
        self.notifications = notifications
        self._mode = mode
        #: Jobs whose last run failed (a run of failures is notified once, at its start).
        self._failing: set[str] = set()
        self._stale_told = False
        jobs = passes.jobs()
        self.scheduler = DaemonScheduler(
            self.instance, jobs, self.metrics, database_url=database_url, jobstore=jobstore
        )
        self._intervals = {j.name: j.interval_s for j in jobs}
        self.watchdog = Watchdog(
            self._intervals, rearm=self._rearm, on_fatal=self._fatal, timeout_s=settings.job_timeout_s
        )
        self.guard = LoopGuard(settings.loop_stall_s)
        self.health_server: HealthServer | None = None
        self.exit_code = EXIT_OK
        self.stop_reason: str | None = None
        self.started_wall = time.time()
        self.last_heartbeat_wall: float | None = None
        #: Breakout passes in a row that failed because the database could not be reached.
        self.database_failures = 0
        self._scheduler_doc: dict[str, Any] | None = None
        self.last_report: PassReport | None = None
        self.last_completed_wall: float | None = None
        self.completed: dict[str, int] = {j.name: 0 for j in jobs}
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._ready = False
        self.metrics.bind(self.heartbeat_age, self._variant_gauges, lambda: self.scheduler.running)

    # -- what scheduled jobs call (sigil.daemon.handle.JobTarget) ------------------------------------

    def job_timeout(self, name: str) -> float:
        """Every pass runs under ``daemon.job_timeout_s``."""
        return self.settings.job_timeout_s

    async def run_job(self, name: str) -> None:
        """Runs one pass. A completed breakout pass writes the heartbeat (progress); every run that
        ends, completed or failed, tells the watchdog and systemd that the scheduler is alive."""
        if self._stopping:
            return
        task = asyncio.current_task()
        assert task is not None
        self._inflight[name] = task
        self.watchdog.started(name)
        t0 = time.perf_counter()
        try:
            report = await self.passes.run(name)
            report.duration_s = time.perf_counter() - t0
            if name == BREAKOUT:
                # Written only now: a heartbeat proves a pass completed, not that the process lives.
                await self.passes.heartbeat(report)
        except asyncio.CancelledError:
            self.metrics.passes.inc(name, "cancelled")
            raise
        except DatabaseUnavailable as e:
            # The daemon outlives its database: the pass is counted as failed, /health says why,
            # and the next pass after the database is back rebuilds from it.
            self.metrics.passes.inc(name, "error")
            self.database_failures += 1
            self._failed(name, e)
            raise
        except Exception as e:
            self.metrics.passes.inc(name, "error")
            self._failed(name, e)
            raise
        finally:
            self._inflight.pop(name, None)
            if not self._stopping:
                # A run that failed (exchange down) or timed out still proves the scheduler runs;
                # lack of progress shows as a stale heartbeat, which is the probe's to report.
                self._ran(name)
        self._completed(name, report)

    def _notify(self, notice: Notice) -> None:
        if self.notifications is not None:
            self.notifications.send(notice)

    def _failed(self, name: str, e: BaseException) -> None:
        if name not in self._failing:
            self._failing.add(name)
            self._notify(PassFailed(name, f"{type(e).__name__}: {e}"))

    def _ran(self, name: str) -> None:
        self.watchdog.completed(name)
        done = self.completed.get(BREAKOUT, 0)
        status = f"{done} breakout passes completed"
        if not self._ready:
            self._ready = True
            self.notifier.ready(status)
        self.notifier.watchdog(status)

    def _completed(self, name: str, report: PassReport) -> None:
        now = time.time()
        self.metrics.passes.inc(name, "ok")
        self.metrics.pass_duration.observe(report.duration_s, name)
        self.metrics.last_pass.set(now, name)
        self.completed[name] = self.completed.get(name, 0) + 1
        if self.database_failures:
            log.warning("the database answers again after %d failed pass(es)", self.database_failures)
        self.database_failures = 0
        self.watchdog.database_reached()
        try:
            self._scheduler_doc = self.scheduler.describe()
        except Exception as e:
            self._scheduler_doc = {"jobs": {}, "error": f"{type(e).__name__}: {e}"}
        self.last_report = report
        self.last_completed_wall = now
        self._failing.discard(name)
        if name == BREAKOUT:
            self.last_heartbeat_wall = now
            self._stale_told = False
            if self.notifications is not None:
                books = {
                    n: Book(v.balance, v.equity, v.open_positions) for n, v in self.passes.variants().items()
                }
                self.notifications.pass_completed(report.market_time_ms, list(books), books)
        if self._on_pass is not None:
            self._on_pass(report)
        self._check_limits(name)

    def _check_limits(self, name: str) -> None:
        lim = self.limits
        if name != BREAKOUT:
            return
        if lim.max_passes is not None and self.completed[BREAKOUT] >= lim.max_passes:
            self.request_stop(f"{lim.max_passes} passes completed")
        elif lim.until_exhausted and self.passes.exhausted():
            self.request_stop("the market data has ended")

    # -- lifecycle -----------------------------------------------------------------------------------

    def request_stop(self, reason: str, code: int = EXIT_OK) -> None:
        """Asks the daemon to stop (idempotent; the first non-zero code wins)."""
        if self.exit_code == EXIT_OK:
            self.exit_code = code
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("stopping: %s", reason)
        if self._stop is not None:
            self._stop.set()

    def _rearm(self) -> None:
        self.metrics.rearms.inc()
        overdue = ", ".join(f"{job} for {idle:.0f}s" for job, idle in self.watchdog.overdue().items())
        self._notify(Rearmed(self.instance, overdue or "-"))
        self.scheduler.rearm()

    def _tick(self) -> None:
        """Each watchdog round: the loop turns, and a heartbeat gone stale is told once."""
        self.guard.tick()
        max_age = self.settings.heartbeat_max_age_s
        age = self.heartbeat_age()
        since = age if age is not None else time.time() - self.started_wall
        if since > max_age and not self._stale_told and not self._stopping:
            self._stale_told = True
            self._notify(HeartbeatStale(self.instance, since, max_age))

    def _fatal(self, reason: str) -> None:
        log.critical(
            "watchdog: %s; exiting with status %d so the supervisor restarts the daemon", reason, EXIT_STALLED
        )
        self.request_stop(f"scheduler stalled: {reason}", EXIT_STALLED)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # A failed scheduler wake-up lands here and nowhere else: count it so it is visible.
        self.metrics.loop_errors.inc()
        loop.default_exception_handler(context)

    async def run(self) -> int:
        """Runs until stopped; returns the exit status (0 clean, 3 stalled)."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.stop_reason is not None:
            self._stop.set()
        handle.install(self)
        old_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        signals = self._install_signals(loop)
        watch: asyncio.Task[None] | None = None
        try:
            if self.health_port is not None:
                self.health_server = HealthServer(
                    self.settings.health_host,
                    self.health_port,
                    self.health,
                    self.metrics.render,
                    self._routes,
                )
                self.health_port = await self.health_server.start()
            self.scheduler.start()
            self.watchdog.reset()
            self.guard.start()
            address = None if self.health_server is None else self.health_server.url
            variants = ", ".join(self.passes.variants())
            self._notify(Started(self.instance, self._mode, variants, address))
            watch = asyncio.create_task(self.watchdog.run(self._tick), name="sigil-watchdog")
            waiter = asyncio.create_task(self._stop.wait())
            await asyncio.wait({waiter, watch}, timeout=self.limits.duration_s, return_when="FIRST_COMPLETED")
            waiter.cancel()
            if not self._stop.is_set():
                self.request_stop(f"ran for {self.limits.duration_s:g}s")
        finally:
            await self._shutdown(watch)
            for sig in signals:
                loop.remove_signal_handler(sig)
            loop.set_exception_handler(old_handler)
            handle.uninstall(self)
            self.guard.stop()
        return self.exit_code

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
            installed.append(sig)
        return installed

    def _on_signal(self, sig: int) -> None:
        if self._stopping:
            # A second signal: stop waiting for the pass in flight.
            for task in list(self._inflight.values()):
                task.cancel()
            return
        self.request_stop(f"received {signal.Signals(sig).name}")

    async def _shutdown(self, watch: asyncio.Task[None] | None) -> None:
        self._stopping = True
        self.notifier.stopping()
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        with contextlib.suppress(Exception):
            self.scheduler.pause()
        inflight = list(self._inflight.values())
        if inflight:
            log.info("waiting up to %gs for the pass in flight", self.settings.stop_timeout_s)
            _, pending = await asyncio.wait(inflight, timeout=self.settings.stop_timeout_s)
            for task in pending:
                log.warning(
                    "cancelling the pass in flight (it did not finish in %gs)", self.settings.stop_timeout_s
                )
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self.settings.stop_timeout_s)
        try:
            await self.scheduler.shutdown()
        except Exception as e:
            log.warning("scheduler shutdown: %s", e)
        if self.health_server is not None:
            await self.health_server.stop()
        self._notify(Stopped(self.instance, self.stop_reason or "stopped", self.exit_code))

    # -- observability -------------------------------------------------------------------------------

    def heartbeat_age(self) -> float | None:
        """Seconds since this daemon's last heartbeat (local wall clock); None before the first."""
        if self.last_heartbeat_wall is None:
            return None
        return max(0.0, time.time() - self.last_heartbeat_wall)

    def _variant_gauges(self) -> dict[str, tuple[float, float, int]]:
        return {n: (v.balance, v.equity, v.open_positions) for n, v in self.passes.variants().items()}

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the /health document). Unhealthy = no heartbeat within ``heartbeat_max_age_s``
        (counting from start-up before the first), or the watchdog gave up."""
        max_age = self.settings.heartbeat_max_age_s
        age = self.heartbeat_age()
        since = age if age is not None else time.time() - self.started_wall
        if self.watchdog.fatal is not None:
            status = "stalled"
        elif self.watchdog.database_down or self.database_failures:
            status = "database_unavailable"
        elif since > max_age:
            status = "stale"
        elif self._stopping:
            status = "stopping"
        elif age is None:
            status = "starting"
        else:
            status = "ok"
        # The job store's view as of the last completed pass: /health never waits on the database.
        sched: dict[str, Any] = {**(self._scheduler_doc or {"jobs": {}}), "state": self.scheduler.state}
        sched["rearms"] = self.watchdog.rearms
        sched["database_waits"] = self.watchdog.database_waits
        r = self.last_report
        last = None
        if r is not None:
            last = {
                "job": r.job,
                "completed_at": _iso(self.last_completed_wall),
                "duration_s": round(r.duration_s, 6),
                "market_time": _iso_ms(r.market_time_ms),
                "symbols": r.symbols,
                "candles": r.candles,
                "signals": r.signals,
                "opens": r.opens,
                "closes": r.closes,
                "skips": r.skips,
                "errors": r.errors,
            }
        variants = self.passes.variants()
        doc = {
            "status": status,
            "instance": self.instance,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_wall, 3),
            "last_pass": last,
            "last_heartbeat_at": _iso(self.last_heartbeat_wall),
            "heartbeat_age_s": None if age is None else round(age, 3),
            "heartbeat_max_age_s": max_age,
            "passes": dict(self.completed),
            "database_failed_passes": self.database_failures,
            "scheduler": sched,
            "open_positions": {n: v.open_positions for n, v in variants.items()},
        }
        if self.notifications is not None:
            doc["notify"] = self.notifications.health()
        if self._extra_health is not None:
            try:
                doc.update(self._extra_health())
            except Exception as e:
                doc["extra_error"] = f"{type(e).__name__}: {e}"
        return status in ("ok", "starting", "stopping"), doc
