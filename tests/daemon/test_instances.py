"""Daemon instances on one database: each runs only its own jobs of the shared job table, nothing runs
a stopped instance's jobs, and no row is left but the fixed jobs'. Real APScheduler, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from sigil.config import DaemonConfig
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.passes import BREAKOUT, EXIT
from sigil.daemon.scheduler import JOB_FUNC, InstanceJobStore, job_id, make_jobstore

from .conftest import FakePasses, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

#: A daemon process with a stand-in pass: runs ``instance`` every ``interval`` s for ``duration`` s,
#: then prints how many breakout passes it completed.
WORKER = """
import asyncio, json, sys
from sigil.config import DaemonConfig
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.passes import BREAKOUT, PassReport
from sigil.daemon.scheduler import JobSpec

url, instance, interval, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

class Passes:
    def jobs(self):
        return [JobSpec(BREAKOUT, interval)]
    async def run(self, name):
        return PassReport(job=name)
    async def heartbeat(self, report):
        pass
    def variants(self):
        return {}
    def exhausted(self):
        return False

async def main():
    settings = DaemonConfig(instance=instance, job_timeout_s=5.0, stop_timeout_s=2.0, loop_stall_s=60.0)
    d = Daemon(settings, Passes(), database_url=url, handle_signals=False, health_port=None,
               limits=RunLimits(duration_s=duration))
    code = await d.run()
    print(json.dumps({"code": code, "passes": d.completed[BREAKOUT]}), flush=True)

asyncio.run(main())
"""


def settings(**kw: Any) -> DaemonConfig:
    base: dict[str, Any] = {"job_timeout_s": 5.0, "stop_timeout_s": 2.0, "loop_stall_s": 30.0}
    return DaemonConfig(**{**base, **kw})


def stored(url: str) -> dict[str, tuple[float | None, bytes]]:
    with psycopg.connect(url) as conn:
        return {
            r[0]: (r[1], bytes(r[2]))
            for r in conn.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs")
        }


async def run_until(d: Daemon, pred: Any) -> int:
    """Runs ``d`` until ``pred()``, then stops it; its exit status."""
    task = asyncio.create_task(d.run())
    await wait_until(lambda: pred() or task.done(), timeout=15)
    d.request_stop("test")
    return await task


def own_rate(interval: float, duration: float) -> float:
    """Passes one daemon completes on its own: one at start, then one per interval."""
    return 1 + duration / interval


async def test_two_daemon_processes_each_run_only_their_own_jobs(database_url: str) -> None:
    interval, duration = 0.25, 5.0
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            database_url,
            name,
            str(interval),
            str(duration),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    results = [await asyncio.wait_for(p.communicate(), timeout=60) for p in procs]
    done = {}
    for (out, err), proc, name in zip(results, procs, ("a", "b"), strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        doc = json.loads(out.decode().strip().splitlines()[-1])
        assert doc["code"] == 0
        done[name] = doc["passes"]
    want = own_rate(interval, duration)
    # Before each store saw only its own rows, each daemon also ran the other's job: about 2 × want.
    for name, n in done.items():
        assert 0.5 * want <= n <= 1.25 * want, f"{name}: {n} passes in {duration}s, own rate {want:.0f}"
    assert set(stored(database_url)) == {job_id("a", BREAKOUT), job_id("b", BREAKOUT)}


async def test_a_stopped_instances_jobs_are_run_by_nobody(database_url: str) -> None:
    a = FakePasses(breakout_s=0.2, exit_s=0.2)
    da = Daemon(settings(instance="a"), a, database_url=database_url, handle_signals=False, health_port=None)
    await asyncio.wait_for(run_until(da, lambda: a.runs[BREAKOUT] >= 2), 20)
    left = stored(database_url)
    assert set(left) == {job_id("a", BREAKOUT), job_id("a", EXIT)}, "a stopped instance's rows stay"

    duration = 2.0
    b = FakePasses(breakout_s=0.2)
    db = Daemon(
        settings(instance="b"),
        b,
        database_url=database_url,
        handle_signals=False,
        health_port=None,
        limits=RunLimits(duration_s=duration),
    )
    assert await asyncio.wait_for(db.run(), 20) == 0
    # a's rows were due all along: b neither ran them nor rewrote them.
    assert b.runs[EXIT] == 0
    assert b.runs[BREAKOUT] <= 1.25 * own_rate(0.2, duration), b.runs
    now = stored(database_url)
    assert {k: v for k, v in now.items() if k.startswith("sigil:a:")} == left


async def test_one_off_jobs_leave_no_rows(database_url: str) -> None:
    passes = FakePasses(breakout_s=0.2)
    d = Daemon(
        settings(instance="a_1"), passes, database_url=database_url, handle_signals=False, health_port=None
    )
    task = asyncio.create_task(d.run())
    await wait_until(lambda: d.scheduler.running or task.done())
    sched = d.scheduler.scheduler
    # A one-off run now: APScheduler removes its row once it has run.
    sched.add_job(JOB_FUNC, args=[BREAKOUT], id=job_id("a_1", "now"))
    runs = passes.runs[BREAKOUT]
    await wait_until(
        lambda: job_id("a_1", "now") not in stored(database_url) and passes.runs[BREAKOUT] > runs
    )
    # One that has not run when the daemon stops is removed at the stop, not left for the next start.
    sched.add_job(JOB_FUNC, "date", run_date="2999-01-01", args=[BREAKOUT], id=job_id("a_1", "later"))
    assert job_id("a_1", "later") in stored(database_url)
    # The watchdog's "run now" re-arm rewrites the fixed rows, it adds none.
    d.scheduler.rearm()
    d.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    assert set(stored(database_url)) == {job_id("a_1", BREAKOUT)}


async def test_stray_rows_of_an_instance_are_removed_at_start_not_run(database_url: str) -> None:
    """A pass switched off since the last run (the exit pass here), or a one-off row that a killed
    daemon left, would otherwise be run at the next start."""
    first = FakePasses(breakout_s=0.2, exit_s=0.2)
    d1 = Daemon(settings(), first, database_url=database_url, handle_signals=False, health_port=None)
    await asyncio.wait_for(run_until(d1, lambda: first.runs[EXIT] >= 1), 20)
    assert set(stored(database_url)) == {job_id("main", BREAKOUT), job_id("main", EXIT)}

    second = FakePasses(breakout_s=0.2)  # no exit pass now
    d2 = Daemon(settings(), second, database_url=database_url, handle_signals=False, health_port=None)
    await asyncio.wait_for(run_until(d2, lambda: second.runs[BREAKOUT] >= 3), 20)
    assert second.runs[EXIT] == 0
    assert set(stored(database_url)) == {job_id("main", BREAKOUT)}


def test_the_job_store_sees_only_its_instances_rows(database_url: str) -> None:
    """``_`` in an instance name is no LIKE wildcard, and one name is never another's prefix."""
    names = ("a_b", "aXb", "a")
    stores = {name: make_jobstore(database_url, name) for name in names}
    try:
        for s in stores.values():
            s.jobs_t.create(s.engine, checkfirst=True)
        with psycopg.connect(database_url) as conn:
            for i, name in enumerate(names):
                # Not a pickled job: a store that reads the row removes it as unreadable.
                conn.execute(
                    "INSERT INTO apscheduler_jobs VALUES (%s, %s, %s)", (job_id(name, "x"), 1.0 + i, b"junk")
                )
        for i, name in enumerate(names):
            s = stores[name]
            assert isinstance(s, InstanceJobStore)
            assert s.get_next_run_time().timestamp() == 1.0 + i
            assert s.lookup_job(job_id(names[(i + 1) % 3], "x")) is None
        assert stores["a_b"].get_all_jobs() == []
        assert set(stored(database_url)) == {job_id("aXb", "x"), job_id("a", "x")}
        stores["a"].remove_all_jobs()
        assert set(stored(database_url)) == {job_id("aXb", "x")}
        assert stores["a"].get_next_run_time() is None
        with pytest.raises(ValueError, match="not of instance"):
            stores["a"].add_job(type("Job", (), {"id": job_id("aXb", "y")})())
    finally:
        for s in stores.values():
            s.engine.dispose()
