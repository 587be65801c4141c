"""The daemon's scheduler: APScheduler 3.11 on the running event loop, jobs persisted in Postgres.

Rules that keep it from failing silently (root cause 4):

* ``AsyncIOScheduler`` started inside the running loop; jobs are coroutines run on that loop.
* ``SQLAlchemyJobStore`` on the daemon's own Postgres (``postgresql+psycopg://``): the schedule
  survives restarts, and fixed job ids with ``replace_existing=True`` mean a restart rewrites the
  rows instead of piling up copies.
* ``coalesce=True`` (a backlog of missed runs is one run), ``max_instances=1`` (a slow pass is never
  overlapped by the next), a misfire grace of one interval.
* Every job body runs under ``asyncio.wait_for``: a hung pass ends as a counted error, not a stall.
* Listeners log and count job errors, missed runs and max-instances refusals.
* Each daemon instance sees only its own rows of the shared job table (:class:`InstanceJobStore`), and
  keeps no row but its fixed jobs': a row left by a one-off run, or by a pass switched off since,
  is removed at start and at stop, never run.

Jobs are stored pickled, so each is the module-level :func:`run_pass` referenced by its path with the
job name as its only argument; it reaches the daemon through :mod:`sigil.daemon.handle`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import utc_timestamp_to_datetime
from sqlalchemy import ColumnElement, null, select
from sqlalchemy.exc import DBAPIError, OperationalError

from sigil.config import DaemonConfig
from sigil.daemon import handle
from sigil.daemon.metrics import DaemonMetrics
from sigil.errors import DatabaseUnavailable
from sigil.store.jobs import JOB_TABLE, create_job_table

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``daemon.instance`` when the config does not name one.
DEFAULT_INSTANCE: str = DaemonConfig.model_fields["instance"].default
#: The job function, by reference: what the job store pickles instead of an object.
JOB_FUNC = "sigil.daemon.scheduler:run_pass"
#: A synchronous job-store statement may block the loop at most this long.
JOBSTORE_STATEMENT_TIMEOUT_MS = 5000
#: ... and a connection attempt at most this long.
JOBSTORE_CONNECT_TIMEOUT_S = 5
#: A job-store call waits at most this long on the client side: a server frozen (SIGSTOP, a hung
#: host) honours no statement timeout, and the call runs on the event loop.
JOBSTORE_CALL_TIMEOUT_S = 3.0

_STATES = {STATE_RUNNING: "running", STATE_PAUSED: "paused", STATE_STOPPED: "stopped"}


async def run_pass(name: str) -> None:
    """The scheduled job: runs pass ``name`` of this process's daemon under its timeout.

    Only ``name`` (a plain string) is stored with the job.
    """
    target = handle.current()
    await asyncio.wait_for(target.run_job(name), timeout=target.job_timeout(name))


@dataclass(frozen=True)
class JobSpec:
    """One periodic job: its name (the pass it runs) and interval."""

    name: str
    interval_s: float
    #: Run once right after start-up rather than one interval later.
    run_at_start: bool = True

    @property
    def misfire_grace_s(self) -> int:
        """One interval, as APScheduler wants it (a positive whole number of seconds)."""
        return max(1, math.ceil(self.interval_s))


def job_id(instance: str, name: str) -> str:
    """The fixed id of a job: the same after every restart, distinct per daemon instance."""
    return f"sigil:{instance}:{name}"


def sqlalchemy_url(url: str) -> str:
    """A libpq-style URL (``postgresql://…``) for SQLAlchemy with the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://')[0]}://…")


class InstanceJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store on the shared table, limited to one daemon instance: it
    reads, runs and removes only the rows whose id starts with ``sigil:<instance>:``.

    APScheduler 3's ``get_due_jobs()`` returns every due row of its table, so schedulers of several
    instances on one table each ran every instance's jobs (two daemons at 5 s completed twice their
    passes each), and went on running a stopped instance's rows. A filter on the id, rather than a
    table per instance, keeps the one table of migration 0006, which ``sigil migrate`` creates: a
    daemon needs no CREATE privilege and an instance name leaves no table behind. Instance names
    cannot contain ``:`` (see :class:`~sigil.config.DaemonConfig`), so no prefix is another's.

    Overrides every read of the base class (``lookup_job``, ``_get_jobs`` behind ``get_due_jobs``
    and ``get_all_jobs``, ``get_next_run_time``) and ``remove_all_jobs``; a job outside the prefix
    cannot be added, since this store would never run it.
    """

    def __init__(self, instance: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance = instance
        self.prefix = job_id(instance, "")
        # autoescape: "_" (allowed in an instance name) is a LIKE wildcard.
        self._mine: ColumnElement[bool] = self.jobs_t.c.id.startswith(self.prefix, autoescape=True)

    def lookup_job(self, job_id: str) -> Any:
        """The job of this instance called ``job_id`` (None for another instance's)."""
        if not job_id.startswith(self.prefix):
            return None
        return _bounded("lookup_job", SQLAlchemyJobStore.lookup_job, self, job_id)

    def get_next_run_time(self) -> datetime | None:
        """The earliest next run time among this instance's jobs."""
        t = self.jobs_t.c.next_run_time
        query = select(t).where(t != null(), self._mine).order_by(t).limit(1)

        def read() -> datetime | None:
            with self.engine.begin() as connection:
                result: datetime | None = utc_timestamp_to_datetime(connection.execute(query).scalar())
                return result

        return _bounded("get_next_run_time", read)

    def add_job(self, job: Any) -> None:
        """Stores ``job``; its id must carry this instance's prefix."""
        if not str(job.id).startswith(self.prefix):
            raise ValueError(f"job {job.id!r} is not of instance {self.instance!r} ({self.prefix}…)")
        _bounded("add_job", SQLAlchemyJobStore.add_job, self, job)

    def update_job(self, job: Any) -> None:
        """Rewrites ``job``'s row."""
        _bounded("update_job", SQLAlchemyJobStore.update_job, self, job)

    def remove_job(self, job_id: str) -> None:
        """Removes ``job_id``'s row."""
        _bounded("remove_job", SQLAlchemyJobStore.remove_job, self, job_id)

    def remove_all_jobs(self) -> None:
        """Removes this instance's rows (the other instances' stay)."""

        def delete() -> None:
            with self.engine.begin() as connection:
                connection.execute(self.jobs_t.delete().where(self._mine))

        _bounded("remove_all_jobs", delete)

    def _get_jobs(self, *conditions: Any) -> list[Any]:
        jobs: list[Any] = _bounded("read jobs", SQLAlchemyJobStore._get_jobs, self, self._mine, *conditions)
        return jobs


def _bounded(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of its own, waited for at most :data:`JOBSTORE_CALL_TIMEOUT_S`; past that
    an ``OperationalError`` (a database error, which the watchdog waits out). A call stuck on a frozen
    server is left behind in its daemon thread and finishes, or dies with the process."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as e:
            box.append((False, e))

    worker = threading.Thread(target=run, name=f"sigil-jobstore-{what}", daemon=True)
    worker.start()
    worker.join(JOBSTORE_CALL_TIMEOUT_S)
    if not box:
        raise OperationalError(
            f"job store: {what}: no answer within {JOBSTORE_CALL_TIMEOUT_S:g}s", None, TimeoutError()
        )
    ok, value = box[0]
    if ok:
        return cast(T, value)
    raise value


def make_jobstore(
    database_url: str, instance: str = DEFAULT_INSTANCE, tablename: str = JOB_TABLE
) -> InstanceJobStore:
    """The persistent job store of daemon ``instance`` (default: ``daemon.instance``'s default) on
    ``database_url``, with bounded connect and statement times.

    Job-store calls run synchronously on the event loop, so a database that hangs must raise,
    not freeze the loop.
    """
    return InstanceJobStore(
        instance,
        url=sqlalchemy_url(database_url),
        tablename=tablename,
        engine_options={
            "pool_pre_ping": True,
            "pool_size": 1,
            "max_overflow": 2,
            "connect_args": {
                "connect_timeout": JOBSTORE_CONNECT_TIMEOUT_S,
                "options": f"-c statement_timeout={JOBSTORE_STATEMENT_TIMEOUT_MS}",
                "application_name": "sigil-scheduler",
            },
        },
    )


class DaemonScheduler:
    """The daemon's ``AsyncIOScheduler`` and its jobs.

    ``jobstore`` defaults to :func:`make_jobstore` on ``database_url``; tests pass a wrapped one to
    inject failures.
    """

    def __init__(
        self,
        instance: str,
        jobs: Sequence[JobSpec],
        metrics: DaemonMetrics,
        database_url: str | None = None,
        jobstore: Any = None,
    ) -> None:
        if jobstore is None:
            if database_url is None:
                raise ValueError("a database URL or a job store is needed")
            jobstore = make_jobstore(database_url, instance)
        self.instance = instance
        self.jobs = tuple(jobs)
        self.metrics = metrics
        self.jobstore = jobstore
        self._names = {job_id(instance, j.name): j.name for j in self.jobs}
        #: Jobs whose runs are being refused because the previous one is still going (one warning per streak).
        self._refusing: set[str] = set()
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": jobstore},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED
        )

    def start(self) -> None:
        """Starts on the running loop and (re)writes every job.

        Raises :class:`~sigil.errors.DatabaseUnavailable` when the job store cannot be reached.
        """
        asyncio.get_running_loop()  # RuntimeError outside a running loop, by design
        try:
            self._ensure_table()
            # Paused until the jobs are written, so a stale row from the last run cannot fire first.
            self.scheduler.start(paused=True)
            self.add_jobs()
            self.remove_strays()
        except OperationalError as e:
            raise DatabaseUnavailable(f"job store: database unavailable ({e.orig})") from e
        self.scheduler.resume()
        log.info("scheduler started: %s", ", ".join(f"{j.name} every {j.interval_s:g}s" for j in self.jobs))

    def _ensure_table(self) -> None:
        """Creates the job table, if missing, before APScheduler's own non-atomic check-then-create
        can race another daemon's (a migrated database has it already: migration 0006)."""
        table = getattr(self.jobstore, "jobs_t", None)
        engine = getattr(self.jobstore, "engine", None)
        if table is None or engine is None:
            return
        create_job_table(engine, table)

    def add_jobs(self, run_now: Sequence[str] = ()) -> None:
        """Writes every job with its fixed id (replacing what is stored).

        Jobs flagged ``run_at_start`` and those named in ``run_now`` are due immediately.
        """
        now = datetime.now(UTC)
        for j in self.jobs:
            extra: dict[str, Any] = {}
            if j.run_at_start or j.name in run_now:
                extra["next_run_time"] = now
            self.scheduler.add_job(
                JOB_FUNC,
                trigger=IntervalTrigger(seconds=j.interval_s, timezone=UTC),
                args=[j.name],
                id=job_id(self.instance, j.name),
                name=f"sigil {j.name} pass ({self.instance})",
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=j.misfire_grace_s,
                **extra,
            )

    def remove_strays(self) -> list[str]:
        """Removes this instance's rows that are not its fixed jobs (a one-off run that never ran,
        a pass switched off since the last start); their ids."""
        strays = [job.id for job in self.scheduler.get_jobs() if job.id not in self._names]
        for stray in strays:
            self.scheduler.remove_job(stray)
            log.info("job store: removed %s (not a job of this daemon)", stray)
        return strays

    def rearm(self) -> None:
        """Brings a stalled scheduler back: resume it, rewrite the jobs as due now, wake it up.

        Raises :class:`~sigil.errors.DatabaseUnavailable` when the job store cannot reach the database
        (the watchdog then waits for it), anything else when the job store still fails (the watchdog
        gives the stall one more interval).
        """
        try:
            if self.scheduler.state == STATE_STOPPED:
                self.scheduler.start(paused=True)
            self.add_jobs(run_now=[j.name for j in self.jobs])
        except (DBAPIError, OSError) as e:
            raise DatabaseUnavailable(f"scheduler job store: {type(e).__name__}: {e}".splitlines()[0]) from e
        if self.scheduler.state == STATE_PAUSED:
            self.scheduler.resume()
        self.scheduler.wakeup()

    def pause(self) -> None:
        """No new runs start (runs in flight go on)."""
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()

    async def shutdown(self) -> None:
        """Stops the scheduler and releases its engine. The fixed jobs' rows stay in the job store
        for the next start; any other row of this instance (a one-off run) is removed."""
        if self.scheduler.state != STATE_STOPPED:
            try:
                self.remove_strays()
            except Exception as e:  # the next start removes them
                log.warning("job store: could not remove one-off jobs: %s", e)
            self.scheduler.shutdown(wait=False)
            # AsyncIOScheduler.shutdown is queued with call_soon: let it run.
            await asyncio.sleep(0)
        engine = getattr(self.jobstore, "engine", None)
        if engine is not None:
            engine.dispose()

    @property
    def running(self) -> bool:
        """True when started and not paused."""
        return bool(self.scheduler.state == STATE_RUNNING)

    @property
    def state(self) -> str:
        """``running``, ``paused`` or ``stopped``."""
        return _STATES.get(self.scheduler.state, "unknown")

    def describe(self) -> dict[str, Any]:
        """State and each job's next run time (ISO UTC); reads the job store, so it may raise."""
        jobs = {}
        for job in self.scheduler.get_jobs():
            name = self._names.get(job.id, job.id)
            nrt = job.next_run_time
            jobs[name] = {"id": job.id, "next_run_time": nrt.astimezone(UTC).isoformat() if nrt else None}
        return {"state": self.state, "jobs": jobs}

    def _on_event(self, event: JobEvent) -> None:
        name = self._names.get(event.job_id, event.job_id)
        if event.code in (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR):
            self._refusing.discard(name)
        if event.code == EVENT_JOB_EXECUTED:
            return
        if event.code == EVENT_JOB_ERROR:
            exc = event.exception if isinstance(event, JobExecutionEvent) else None
            kind = "timeout" if isinstance(exc, TimeoutError) else "error"
            self.metrics.job_events.inc(name, kind)
            log.error("job %s failed: %s: %s", name, type(exc).__name__, exc)
        elif event.code == EVENT_JOB_MISSED:
            self.metrics.job_events.inc(name, "missed")
            log.warning("job %s missed its run time (beyond the misfire grace)", name)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.metrics.job_events.inc(name, "max_instances")
            if name not in self._refusing:
                self._refusing.add(name)
                log.warning("job %s: runs skipped while the previous one is still going (counted)", name)
