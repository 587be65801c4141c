"""The in-daemon watchdog: a scheduler that stops running passes is re-armed, then given up on.

APScheduler 3.x can stop without a word: a job-store error while it computes the next wake-up leaves
no wake-up at all, and a job that never returns holds its only instance slot so every later run is
refused. Neither kills the process, so a supervisor would never notice. The watchdog does:

* no run of a job ended for ``2 × interval`` → **re-arm** (wake the scheduler, re-add the jobs);
  a run still in flight within its timeout is not a stall (``asyncio.wait_for`` will end it);
* still nothing one interval after re-arming → **fatal**: the daemon stops and exits non-zero, so the
  supervisor (systemd ``Restart=always``) starts a fresh process, which resumes from the database;
* a re-arm that fails because the database is unreachable (the job store lives there) is not a
  stall of the scheduler: the daemon waits for the database, re-arming every check, and says so
  (:attr:`Watchdog.database_down`, ``/health`` 503); the first completed pass ends the outage.

Two layers. :class:`Watchdog` runs on the event loop and does the re-arming. :class:`LoopGuard` is a
thread: when the loop itself is blocked (a hung synchronous call), no coroutine can run, not even the
clean stop, so after a longer bound it ends the process with ``os._exit``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The status this module exits with when it gives up; defined with every other exit status.
from sigil.errors import EXIT_STALLED as EXIT_STALLED
from sigil.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

#: A job counts as stalled after this many of its intervals without a completed pass.
STALL_INTERVALS = 2.0
#: Passes that must complete after a re-arm before the scheduler counts as recovered.
RECOVERED_AFTER = 2


class Verdict(enum.Enum):
    """What the watchdog decided on one check."""

    OK = "ok"
    REARM = "rearm"
    FATAL = "fatal"


@dataclass
class _Job:
    interval_s: float
    last_progress: float
    rearmed_at: float | None = None
    #: Passes completed since the re-arm; the scheduler has recovered once its own timer ran one.
    since_rearm: int = 0
    #: When the run in flight started (None: none in flight).
    running_since: float | None = None


class Watchdog:
    """Decides, from the last completion time of each job, whether the scheduler is stalled.

    Times are local monotonic seconds (liveness time, never market time). ``check`` is pure
    bookkeeping so the policy is tested without sleeping; :meth:`run` drives it on the loop.
    """

    def __init__(
        self,
        intervals: Mapping[str, float],
        rearm: Callable[[], None],
        on_fatal: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        stall_intervals: float = STALL_INTERVALS,
        timeout_s: float | None = None,
    ) -> None:
        now = clock()
        self._timeout = timeout_s
        self._jobs = {name: _Job(interval, now) for name, interval in intervals.items()}
        self._rearm = rearm
        self._on_fatal = on_fatal
        self._clock = clock
        self._stall = stall_intervals
        self.rearms = 0
        #: True while re-arming fails because the database cannot be reached (the scheduler waits).
        self.database_down = False
        #: Re-arms that failed for that reason.
        self.database_waits = 0
        self.fatal: str | None = None
        self._reported = False

    def started(self, job: str) -> None:
        """A run of ``job`` started: while it is within its timeout, the job is not stalled."""
        state = self._jobs.get(job)
        if state is not None:
            state.running_since = self._clock()

    def completed(self, job: str) -> None:
        """A pass of ``job`` completed.

        After a re-arm, the first pass may be the re-arm's own kick; only the second proves the
        scheduler wakes up by itself again, so the re-arm is forgotten then.
        """
        state = self._jobs.get(job)
        if state is None:
            return
        state.last_progress = self._clock()
        state.running_since = None
        if state.rearmed_at is not None:
            state.since_rearm += 1
            if state.since_rearm >= RECOVERED_AFTER:
                state.rearmed_at = None
                state.since_rearm = 0

    def database_reached(self) -> None:
        """A pass completed: the database answers (again)."""
        if self.database_down:
            log.warning("watchdog: the database answers again; passes go on")
        self.database_down = False

    def reset(self) -> None:
        """Restarts every clock (after the scheduler has been (re)started)."""
        now = self._clock()
        for state in self._jobs.values():
            state.last_progress = now
            state.rearmed_at = None
            state.since_rearm = 0
            state.running_since = None

    def overdue(self) -> dict[str, float]:
        """Seconds since the last progress, for every job past its stall bound."""
        now = self._clock()
        return {
            name: now - s.last_progress
            for name, s in self._jobs.items()
            if now - s.last_progress > self._stall * s.interval_s
        }

    def check(self) -> Verdict:
        """One look: OK, re-arm now, or fatal (stalled again within an interval of a re-arm, before the
        scheduler proved it recovered)."""
        if self.fatal is not None:
            return Verdict.FATAL
        now = self._clock()
        verdict = Verdict.OK
        for name, s in self._jobs.items():
            idle = now - s.last_progress
            if idle <= self._stall * s.interval_s:
                continue
            # A slow run is not a stall until it outlives its timeout (plus one interval of slack).
            running = s.running_since
            if (
                running is not None
                and self._timeout is not None
                and now - running <= self._timeout + s.interval_s
            ):
                continue
            if s.rearmed_at is None:
                s.rearmed_at = now
                verdict = Verdict.REARM
                log.warning(
                    "watchdog: no %s pass for %.1fs (interval %.1fs): re-arming", name, idle, s.interval_s
                )
            elif now - s.rearmed_at > s.interval_s:
                self.fatal = (
                    f"no {name} pass for {idle:.1f}s (interval {s.interval_s:g}s), "
                    "and re-arming the scheduler did not bring it back"
                )
                return Verdict.FATAL
        return verdict

    def step(self) -> Verdict:
        """``check`` and carry out its verdict (re-arm, or report the fatal stall once)."""
        verdict = self.check()
        if verdict is Verdict.REARM:
            self.rearms += 1
            try:
                self._rearm()
            except DatabaseUnavailable as e:
                # Not the scheduler's fault: wait for the database, re-arming on the next checks.
                if not self.database_down:
                    log.error("watchdog: the database is unreachable, passes wait for it: %s", e)
                self.database_down = True
                self.database_waits += 1
                for state in self._jobs.values():
                    state.rearmed_at = None
            except Exception as e:
                # A re-arm that raises is a failed re-arm: the next check past one interval is fatal.
                log.error("watchdog: re-arming the scheduler failed: %s", e)
        elif verdict is Verdict.FATAL and self.fatal is not None and not self._reported:
            self._reported = True
            self._on_fatal(self.fatal)
        return verdict

    def period(self) -> float:
        """How often to check: a quarter of the shortest interval, at most once a second."""
        shortest = min((s.interval_s for s in self._jobs.values()), default=1.0)
        return max(0.01, min(1.0, shortest / 4))

    async def run(self, tick: Callable[[], None] | None = None) -> None:
        """Checks forever (until cancelled); ``tick`` is called on each round to prove the loop turns."""
        while True:
            if tick is not None:
                tick()
            if self.step() is Verdict.FATAL:
                return
            await asyncio.sleep(self.period())


class LoopGuard:
    """A thread that ends the process when the event loop stops turning for ``limit_s``.

    The loop proves it turns by calling :meth:`tick` (the watchdog task does, every period).
    A blocked loop cannot run a clean stop, so this exits hard with ``exit_code``: the database
    is transactional and the next process rebuilds from it.
    """

    def __init__(
        self,
        limit_s: float,
        exit_code: int = EXIT_STALLED,
        clock: Callable[[], float] = time.monotonic,
        exit_fn: Callable[[int], None] = os._exit,
    ) -> None:
        self.limit_s = limit_s
        self._exit_code = exit_code
        self._clock = clock
        self._exit = exit_fn
        self._last = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sigil-loop-guard", daemon=True)

    def tick(self) -> None:
        """The loop is turning."""
        self._last = self._clock()

    def start(self) -> None:
        """Starts watching."""
        self._last = self._clock()
        self._thread.start()

    def stop(self) -> None:
        """Stops watching (before a clean stop, so a slow stop is not mistaken for a stall)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        period = max(0.05, min(1.0, self.limit_s / 10))
        while not self._stop.wait(period):
            idle = self._clock() - self._last
            if idle > self.limit_s:
                log.critical("watchdog: the event loop has not turned for %.1fs; exiting", idle)
                logging.shutdown()
                self._exit(self._exit_code)
                return
