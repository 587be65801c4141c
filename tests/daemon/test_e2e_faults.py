"""The daemon under trouble: every kind of simulator fault during a run, a stalled scheduler (a job
store failing during wake-up), a pass that blocks the event loop — and the dead-man probe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from sigil.daemon import handle
from sigil.daemon.app import Daemon
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.scanner import Scanner
from sigil.daemon.scheduler import make_jobstore
from sigil.daemon.serve import serve
from sigil.daemon.watchdog import EXIT_STALLED
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import MALFORMED_KINDS, Faults, SimExchange
from sigil.store import Database
from tests.support.daemon_stack import (
    FAST,
    DaemonProcess,
    book_problems,
    cancel,
    config,
    cut,
    heartbeats,
    sigil_env,
    span,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

SPEC = {"DOGE": (0, 3000), "PEPE": (0, 3000), "SUI": (0, 3000), "WIF": (0, 3000)}


def probe(url: str, max_age: float, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sigil", "probe", "--database-url", url, "--max-age", str(max_age), *extra],
        capture_output=True,
        text=True,
        env=sigil_env(),
        timeout=60,
        check=False,
    )


async def test_simulator_faults_of_every_kind_are_survived_and_counted(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    faults = Faults(
        seed=11,
        latency_ms=1.0,
        latency_jitter_ms=4.0,
        rate_429=0.04,
        rate_418=0.02,
        retry_after_s=0.05,
        rate_5xx=0.06,
        rate_timeout=0.03,
        hang_s=2.0,
        rate_malformed=0.15,
        vanish=("SUI/USDT",),
        vanish_after=3,
    )
    sim = SimExchange(series, speed=30_000, start_ms=first, faults=faults)
    await sim.start(0)
    cfg = config("exchange.timeout_s=0.4", "exchange.retries=3", "exchange.universe_refresh_s=1800")
    task = asyncio.create_task(
        serve(cfg, database_url=url, exchange_url=sim.url, health_port=None, handle_signals=False)
    )
    try:
        await wait_until(lambda: len(heartbeats(url)) >= 40 or task.done(), timeout=90)
        assert not task.done(), "the daemon must keep running through exchange faults"
        daemon = cast(Daemon, handle.current())
        daemon.request_stop("test over")
        assert await asyncio.wait_for(task, 30) == 0
    finally:
        await cancel(task)
        await sim.stop()
    kinds = set(sim.stats.faults)
    assert {"http_429", "http_418", "timeout"} <= kinds
    assert any(k.startswith("http_5") for k in kinds)
    assert any(k.startswith("malformed_") for k in kinds)
    counted = {k for k, v in daemon.metrics.exchange_errors._values.items() if v > 0}
    names = {k[0] for k in counted}
    assert {"RateLimitExceeded", "RequestTimeout"} <= names or len(names) >= 3, names
    text = daemon.metrics.render()
    assert 'sigil_exchange_errors_total{type="' in text
    assert book_problems(url, cfg) == []
    assert len(MALFORMED_KINDS) == 4
    await asyncio.to_thread(pg.drop_database, url)


class FailingWakeups(SQLAlchemyJobStore):  # type: ignore[misc]
    """Fails ``get_next_run_time`` (called during wake-up, errors not caught) once armed."""

    armed = False

    def get_next_run_time(self) -> Any:
        if self.armed:
            raise ConnectionError("injected job-store failure during wake-up")
        return super().get_next_run_time()


async def test_stalled_scheduler_exits_nonzero_and_probe_turns_stale(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", {"DOGE": (0, 500), "PEPE": (0, 500)})
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=3_600, start_ms=first)
    await sim.start(0)
    cfg = config("daemon.scan_interval_s=0.3")
    db = await Database.open(url, cfg.settings.database, min_size=1, max_size=4)
    client = ExchangeClient.from_config(cfg.settings.exchange, url=sim.url)
    store = FailingWakeups(engine=make_jobstore(url).engine)
    scanner = Scanner(cfg, db, client, metrics=DaemonMetrics())
    try:
        await scanner.start()
        daemon = Daemon(
            cfg.settings.daemon,
            scanner,
            jobstore=store,
            metrics=scanner.metrics,
            health_port=None,
            handle_signals=False,
        )
        task = asyncio.create_task(daemon.run())
        await wait_until(lambda: len(heartbeats(url)) >= 3, timeout=30)
        fresh = await asyncio.to_thread(probe, url, 30)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert fresh.stdout.startswith("sigil probe: OK")
        # Another daemon instance on the same database has no heartbeat: it is not covered by this one's.
        other = await asyncio.to_thread(probe, url, 30, "--instance", "other")
        assert other.returncode == 1, other.stdout + other.stderr
        store.armed = True
        code = await asyncio.wait_for(task, 20)
        assert code == EXIT_STALLED
        assert daemon.watchdog.rearms == 1 and daemon.metrics.loop_errors.total() >= 1
        last = heartbeats(url)[-1]["finished_at"].timestamp()
        await asyncio.sleep(max(0.0, last + 1.2 - time.time()))
        stale = await asyncio.to_thread(probe, url, 1)
        assert stale.returncode == 1, stale.stdout + stale.stderr
        assert stale.stdout.startswith("sigil probe: STALE")
    finally:
        await scanner.close()
        await client.close()
        await db.close()
        await sim.stop()
    # The database gone: the probe cannot tell.
    await asyncio.to_thread(pg.drop_database, url)
    gone = await asyncio.to_thread(probe, url, 1)
    assert gone.returncode == 2 and gone.stdout.startswith("sigil probe: UNKNOWN"), gone.stdout


HANG_AFTER_PASSES = textwrap.dedent(
    """
    import sys, time
    from sigil.daemon import scanner

    original = scanner.Scanner._breakout

    async def breakout(self):
        if self.passes >= 3:
            time.sleep(3600)  # a blocking call: the event loop stops turning
        return await original(self)

    scanner.Scanner._breakout = breakout
    from sigil.cli import main
    sys.exit(main())
    """
)


async def test_pass_that_blocks_the_loop_ends_the_process(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", {"DOGE": (0, 500)})
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=3_600, start_ms=first)
    await sim.start(0)
    script = tmp_path / "hang.py"
    script.write_text(HANG_AFTER_PASSES, encoding="utf-8")
    try:
        fast = [a for s in (*FAST, "daemon.loop_stall_s=1.5") for a in ("--set", s)]
        cmd = [sys.executable, str(script), "daemon", "--database-url", url, "--exchange-url", str(sim.url)]
        with (tmp_path / "hang.log").open("ab") as fh:
            proc = subprocess.Popen(
                [*cmd, "--health-port", "0", *fast], stdout=fh, stderr=fh, env=sigil_env()
            )
        hung = DaemonProcess(proc, tmp_path / "hang.log", time.monotonic())
        code = await hung.wait(40)
        assert code == EXIT_STALLED, hung.text()[-2000:]
        assert "event loop has not turned" in hung.text()
        assert len(heartbeats(url)) == 3
        assert book_problems(url, config()) == []
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)
