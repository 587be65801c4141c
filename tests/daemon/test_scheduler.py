"""The scheduler on a real APScheduler with its job store in a real PostgreSQL: persistent jobs with
fixed ids, timeouts, the listeners, and the watchdog against the ways APScheduler 3 stalls."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import aiohttp
import psycopg
import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from sigil.config import DaemonConfig
from sigil.daemon import handle
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.passes import BREAKOUT, EXIT
from sigil.daemon.scheduler import (
    JOB_FUNC,
    InstanceJobStore,
    job_id,
    make_jobstore,
    run_pass,
    sqlalchemy_url,
)
from sigil.daemon.watchdog import EXIT_STALLED
from sigil.errors import DaemonNotRunning

from .conftest import FakePasses, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def settings(**kw: Any) -> DaemonConfig:
    base: dict[str, Any] = {
        "job_timeout_s": 5.0,
        "heartbeat_max_age_s": 30.0,
        "stop_timeout_s": 2.0,
        "loop_stall_s": 30.0,
        "health_port": 0,
    }
    return DaemonConfig(**{**base, **kw})


def stored_jobs(url: str) -> list[tuple[str, float | None]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1]) for r in conn.execute("SELECT id, next_run_time FROM apscheduler_jobs ORDER BY id")
        ]


async def start(daemon: Daemon) -> asyncio.Task[int]:
    task = asyncio.create_task(daemon.run())
    await wait_until(lambda: daemon.scheduler.running or task.done())
    return task


def test_sqlalchemy_url() -> None:
    assert sqlalchemy_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert sqlalchemy_url("postgres://u@/db?host=/tmp/x") == "postgresql+psycopg://u@/db?host=/tmp/x"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sqlalchemy_url("mysql://x/y")


async def test_job_without_daemon_fails_loudly() -> None:
    with pytest.raises(DaemonNotRunning):
        await run_pass(BREAKOUT)


async def test_passes_run_and_jobs_persist_with_fixed_ids(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2, exit_s=0.1)
    d = Daemon(settings(), passes, database_url=database_url, handle_signals=False)
    task = await start(d)
    await wait_until(lambda: len(passes.heartbeats) >= 3 and passes.runs[EXIT] >= 3)
    d.request_stop("test")
    assert await task == 0
    rows = stored_jobs(database_url)
    assert [r[0] for r in rows] == [job_id("main", BREAKOUT), job_id("main", EXIT)]
    # Heartbeats come from breakout passes only, each after its pass completed.
    assert all(r.job == BREAKOUT for _, r in passes.heartbeats)
    assert d.metrics.passes.value(BREAKOUT, "ok") == d.completed[BREAKOUT] >= 3

    # A restart rewrites the same rows (no copies) and runs again right away.
    passes2 = FakePasses(breakout_s=0.2, exit_s=0.1)
    d2 = Daemon(settings(), passes2, database_url=database_url, handle_signals=False)
    task2 = await start(d2)
    await wait_until(lambda: len(passes2.heartbeats) >= 1, timeout=0.2 * 1.5 + 2)
    d2.request_stop("test")
    assert await task2 == 0
    assert [r[0] for r in stored_jobs(database_url)] == [job_id("main", BREAKOUT), job_id("main", EXIT)]

    # The job row stores the function by reference and a plain argument, never an object.
    store = SQLAlchemyJobStore(url=sqlalchemy_url(database_url))
    job = store.lookup_job(job_id("main", BREAKOUT))
    assert job.func_ref == JOB_FUNC and list(job.args) == [BREAKOUT]
    assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 1
    store.engine.dispose()


async def test_instances_have_their_own_jobs(database_url: str) -> None:
    a, b = FakePasses(breakout_s=0.2), FakePasses(breakout_s=0.2)
    da = Daemon(settings(instance="a"), a, database_url=database_url, handle_signals=False, health_port=None)
    ta = await start(da)
    await wait_until(lambda: len(a.heartbeats) >= 2)
    da.request_stop("test")
    await ta
    db = Daemon(settings(instance="b"), b, database_url=database_url, handle_signals=False, health_port=None)
    tb = await start(db)
    await wait_until(lambda: len(b.heartbeats) >= 2)
    db.request_stop("test")
    await tb
    assert [r[0] for r in stored_jobs(database_url)] == [job_id("a", BREAKOUT), job_id("b", BREAKOUT)]


async def test_hung_pass_times_out_and_later_passes_run(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    passes.hang = True
    d = Daemon(
        settings(job_timeout_s=0.3), passes, database_url=database_url, handle_signals=False, health_port=None
    )
    task = await start(d)
    await wait_until(lambda: d.metrics.job_events.value(BREAKOUT, "timeout") >= 1)
    assert not passes.heartbeats, "a pass that did not complete writes no heartbeat"
    passes.hang = False
    await wait_until(lambda: len(passes.heartbeats) >= 2)
    d.request_stop("test")
    assert await task == 0
    assert d.metrics.passes.value(BREAKOUT, "cancelled") >= 1


async def test_slow_pass_is_not_overlapped(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.1, work_s=0.45)
    d = Daemon(settings(), passes, database_url=database_url, handle_signals=False, health_port=None)
    task = await start(d)
    await wait_until(lambda: d.metrics.job_events.value(BREAKOUT, "max_instances") >= 2)
    d.request_stop("test")
    assert await task == 0
    assert (
        passes.runs[BREAKOUT] == passes.completed_bodies
        or passes.runs[BREAKOUT] == passes.completed_bodies + 1
    )


async def test_failing_pass_is_counted_and_writes_no_heartbeat(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.1)
    passes.fail = True
    d = Daemon(settings(), passes, database_url=database_url, handle_signals=False, health_port=None)
    task = await start(d)
    await wait_until(lambda: d.metrics.job_events.value(BREAKOUT, "error") >= 2)
    assert not passes.heartbeats
    passes.fail = False
    await wait_until(lambda: len(passes.heartbeats) >= 1)
    d.request_stop("test")
    assert await task == 0
    assert d.metrics.passes.value(BREAKOUT, "error") >= 2


class FlakyJobStore(InstanceJobStore):  # type: ignore[misc]
    """Fails ``get_next_run_time`` — the call APScheduler 3 makes during wake-up without catching
    errors — while ``failures`` is positive (or forever when it is negative)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.failures = 0
        self.armed = False

    def get_next_run_time(self) -> Any:
        if self.armed and self.failures != 0:
            self.failures -= 1
            raise ConnectionError("injected job-store failure during wake-up")
        return super().get_next_run_time()


def flaky(url: str) -> FlakyJobStore:
    base = make_jobstore(url, "main")
    return FlakyJobStore("main", engine=base.engine)


async def test_jobstore_failure_during_wakeup_is_rearmed(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    store = flaky(database_url)
    d = Daemon(settings(), passes, jobstore=store, handle_signals=False, health_port=None)
    task = await start(d)
    await wait_until(lambda: len(passes.heartbeats) >= 2)
    # Count the passes seen when the watchdog re-arms: measuring the stall with a sleep races the
    # watchdog itself (it re-arms after two idle intervals), so the count is taken inside the re-arm.
    at_rearm: list[int] = []
    rearm = d.watchdog._rearm

    def counting_rearm() -> None:
        at_rearm.append(len(passes.heartbeats))
        rearm()

    d.watchdog._rearm = counting_rearm
    store.failures, store.armed = 1, True
    # The failed wake-up schedules nothing: APScheduler would now sleep forever.
    await wait_until(lambda: d.metrics.loop_errors.total() >= 1)
    stalled_at = len(passes.heartbeats)
    await wait_until(lambda: d.watchdog.rearms >= 1, timeout=3)
    assert at_rearm and at_rearm[0] <= stalled_at + 1, "the scheduler should have stalled"
    await wait_until(lambda: len(passes.heartbeats) >= stalled_at + 3, timeout=3)
    d.request_stop("test")
    assert await task == 0
    assert d.metrics.rearms.total() >= 1


async def test_persistent_jobstore_failure_exits_nonzero(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    store = flaky(database_url)
    d = Daemon(settings(), passes, jobstore=store, handle_signals=False, health_port=None)
    task = await start(d)
    await wait_until(lambda: len(passes.heartbeats) >= 1)
    store.failures, store.armed = -1, True
    code = await asyncio.wait_for(task, timeout=5)
    assert code == EXIT_STALLED
    assert d.watchdog.rearms == 1
    assert d.stop_reason is not None and "stalled" in d.stop_reason


async def test_job_that_ignores_cancellation_exits_nonzero(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    d = Daemon(
        settings(job_timeout_s=0.2, stop_timeout_s=0.3),
        passes,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
    )
    task = await start(d)
    await wait_until(lambda: len(passes.heartbeats) >= 1)
    passes.hang = passes.ignore_cancel = True
    code = await asyncio.wait_for(task, timeout=5)
    assert code == EXIT_STALLED
    assert d.metrics.job_events.value(BREAKOUT, "max_instances") >= 1
    passes.ignore_cancel = False  # let the stuck coroutine go when the test loop closes


async def test_health_and_metrics_change_as_passes_complete(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.15)
    d = Daemon(settings(heartbeat_max_age_s=1.0), passes, database_url=database_url, handle_signals=False)
    task = await start(d)
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: len(passes.heartbeats) >= 1)
        url = f"http://127.0.0.1:{d.health_port}"
        async with http.get(url + "/health") as r:
            first = await r.json()
            assert r.status == 200
        async with http.get(url + "/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            m1 = await r.text()
        n1 = first["passes"][BREAKOUT]
        await wait_until(lambda: d.completed[BREAKOUT] >= n1 + 2)
        async with http.get(url + "/health") as r:
            second = await r.json()
        async with http.get(url + "/metrics") as r:
            m2 = await r.text()
        assert first["status"] == second["status"] == "ok"
        assert second["passes"][BREAKOUT] > n1
        assert second["last_heartbeat_at"] != first["last_heartbeat_at"]
        assert second["scheduler"]["state"] == "running"
        assert set(second["scheduler"]["jobs"]) == {BREAKOUT}
        assert second["open_positions"] == {"baseline": 1, "unhinged": 0}

        def sample(text: str, line: str) -> float:
            for row in text.splitlines():
                if row.startswith(line + " "):
                    return float(row.rsplit(" ", 1)[1])
            raise AssertionError(f"{line} not in metrics")

        key = 'sigil_passes_total{job="breakout",outcome="ok"}'
        assert sample(m2, key) > sample(m1, key)
        assert sample(m2, 'sigil_balance_usdt{variant="baseline"}') == 1000
        assert sample(m2, 'sigil_equity_usdt{variant="baseline"}') == 1001.5
        assert sample(m2, "sigil_scheduler_running") == 1
        assert sample(m2, "sigil_heartbeat_age_seconds") >= 0
        assert 'sigil_pass_duration_seconds_bucket{job="breakout",le="+Inf"}' in m2

        # Passes stop completing: once the heartbeat is older than max-age, /health is 503.
        passes.hang = True
        await asyncio.sleep(1.3)
        async with http.get(url + "/health") as r:
            stale = await r.json()
            assert r.status == 503
        assert stale["status"] in ("stale", "stalled")
        assert stale["heartbeat_age_s"] > 1.0
    passes.hang = False
    d.request_stop("test")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 5)


async def test_stop_waits_for_the_pass_in_flight(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2, work_s=0.6)
    d = Daemon(
        settings(stop_timeout_s=3.0),
        passes,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
    )
    task = await start(d)
    await passes.started.wait()
    await asyncio.sleep(0.1)
    d.request_stop("test")
    assert await task == 0
    assert passes.completed_bodies == passes.runs[BREAKOUT] >= 1, "the pass in flight was allowed to finish"
    assert len(passes.heartbeats) == passes.completed_bodies


async def test_stop_cancels_a_pass_that_overruns_the_bound(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    passes.hang = True
    d = Daemon(
        settings(stop_timeout_s=0.3),
        passes,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
    )
    task = await start(d)
    await passes.started.wait()
    d.request_stop("test")
    assert await asyncio.wait_for(task, 3) == 0
    assert not passes.heartbeats
    assert d.metrics.passes.value(BREAKOUT, "cancelled") == 1


async def test_run_limits(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.1)
    d = Daemon(
        settings(),
        passes,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
        limits=RunLimits(max_passes=3),
    )
    assert await asyncio.wait_for(d.run(), 10) == 0
    assert d.completed[BREAKOUT] == 3 and d.stop_reason == "3 passes completed"

    passes = FakePasses(breakout_s=0.1)
    passes.is_exhausted = True
    d = Daemon(
        settings(),
        passes,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
        limits=RunLimits(until_exhausted=True),
    )
    assert await asyncio.wait_for(d.run(), 10) == 0
    assert d.completed[BREAKOUT] == 1

    d = Daemon(
        settings(),
        FakePasses(breakout_s=0.1),
        database_url=database_url,
        handle_signals=False,
        health_port=None,
        limits=RunLimits(duration_s=0.5),
    )
    assert await asyncio.wait_for(d.run(), 10) == 0
    assert handle._current is None


async def test_two_schedulers_starting_together_create_the_table_once(database_url: str) -> None:
    """APScheduler's own check-then-create is not atomic; the daemon serialises it."""
    daemons = [
        Daemon(
            settings(instance=f"d{i}"),
            FakePasses(),
            database_url=database_url,
            handle_signals=False,
            health_port=None,
        )
        for i in range(3)
    ]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def create(d: Daemon) -> None:
        barrier.wait()
        try:
            d.scheduler._ensure_table()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(d,)) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stored_jobs(database_url) == []
    for d in daemons:
        d.scheduler.jobstore.engine.dispose()


def test_migrations_create_the_job_table_in_the_job_stores_own_shape(migrated_url: str) -> None:
    """``sigil migrate`` owns every table, the scheduler's included; its columns, types and index are
    the ones APScheduler's job store would have created."""
    from sqlalchemy import inspect

    store = make_jobstore(migrated_url)
    try:
        db = inspect(store.engine)
        have = {c["name"]: (str(c["type"]), c["nullable"]) for c in db.get_columns("apscheduler_jobs")}
        dialect = store.engine.dialect
        want = {c.name: (str(c.type.compile(dialect=dialect)), c.nullable) for c in store.jobs_t.columns}
        # FLOAT(25) is PostgreSQL's double precision.
        assert {k: (t.replace("FLOAT(25)", "DOUBLE PRECISION"), n) for k, (t, n) in want.items()} == have
        assert db.get_pk_constraint("apscheduler_jobs")["constrained_columns"] == ["id"]
        indexed = {tuple(i["column_names"]) for i in db.get_indexes("apscheduler_jobs")}
        assert {tuple(c.name for c in i.columns) for i in store.jobs_t.indexes} <= indexed
    finally:
        store.engine.dispose()
