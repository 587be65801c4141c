"""The daemon as a real process against a real database and the simulator: kill -9 at random
moments, two daemons on one database, and SIGTERM during a pass."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.daemon.scheduler import job_id
from sigil.exchange.sim import Faults, SimExchange
from tests.support.daemon_stack import (
    DaemonProcess,
    book_problems,
    config,
    cut,
    health_port,
    heartbeats,
    logged_at,
    rows,
    span,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

SPEC = {"DOGE": (0, 4000), "PEPE": (0, 4000), "SUI": (0, 4000)}
#: Simulated ms per real ms: 25 candles a second, so a restart has a backlog to catch up on.
SPEED = 90_000.0
SCAN_INTERVAL_S = 0.2
KILLS = 10
EXIT_REASONS = {"hard_stop", "atr_trail", "time_stop"}


def scheduler_started_at(text: str) -> float | None:
    """Wall time of the daemon's "scheduler started" log line."""
    return logged_at(text, "scheduler started")


# make long; make chaos kills at 20 seeded moments (docs/RELIABILITY.md).
@pytest.mark.long
async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, _ = span(series)
    cfg = config()
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=SPEED, start_ms=first)
    await sim.start(0)
    rng = random.Random(20240501)
    seen_ids: set[int] = set()
    open_before: dict[int, dict[str, Any]] = {}
    restart_delays: list[float] = []
    try:
        for i in range(KILLS):
            log = tmp_path / f"daemon-{i}.log"
            before = len(heartbeats(url))
            d = DaemonProcess.spawn(log, url, str(sim.url))
            # Seeded random moments: odd runs from the spawn (often during start-up, whose length
            # depends on the machine's load), even runs after the restart's first pass (in passes).
            if i % 2 == 0:
                await wait_until(lambda n=before: len(heartbeats(url)) > n, timeout=90)
                await asyncio.sleep(rng.uniform(0.2, 2.0))
            else:
                await asyncio.sleep(rng.uniform(1.5, 6.0))
            d.kill9()
            problems = book_problems(url, cfg)
            assert problems == [], f"after kill {i}: {problems}"
            positions = {r["id"]: r for r in rows(url, "SELECT * FROM micro_positions")}
            assert seen_ids <= positions.keys(), "a position row disappeared"
            for pid in open_before:
                now = positions[pid]
                assert now["status"] == "open" or now["exit_reason"] in EXIT_REASONS, f"#{pid} lost: {now}"
            seen_ids = set(positions)
            open_before = {pid: p for pid, p in positions.items() if p["status"] == "open"}
            text = d.text()
            started = scheduler_started_at(text)
            fresh = heartbeats(url)[before:]
            if started is not None and fresh:
                restart_delays.append(fresh[0]["started_at"].timestamp() - started)
        jobs = [r["id"] for r in rows(url, "SELECT id FROM apscheduler_jobs ORDER BY id")]
        assert jobs == [job_id("main", "breakout")], "fixed job ids: restarts never pile up copies"
        assert len(restart_delays) >= KILLS // 2, "most restarts should have got as far as a pass"
        assert max(restart_delays) <= SCAN_INTERVAL_S, f"scheduler back within one interval: {restart_delays}"
        assert len(seen_ids) > 20, "the runs should have traded"

        # One last restart, left running: every open position is back in the engine.
        d = DaemonProcess.spawn(tmp_path / "daemon-final.log", url, str(sim.url))
        await wait_until(lambda: len(heartbeats(url)) > 0 and health_port(d.text()) is not None, timeout=30)
        sim.clock.set_speed(0)
        n = len(heartbeats(url))
        await wait_until(lambda: len(heartbeats(url)) >= n + 2, timeout=30)
        port = health_port(d.text())
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
            doc = await r.json()
        db_open: dict[str, int] = {}
        for p in rows(url, "SELECT variant_id FROM micro_positions WHERE status = 'open'"):
            db_open[p["variant_id"]] = db_open.get(p["variant_id"], 0) + 1
        assert {k: v for k, v in doc["open_positions"].items() if v} == db_open
        # SIGUSR1: every thread's stack, then every asyncio task's, into the log, and the daemon
        # goes on passing.
        d.proc.send_signal(signal.SIGUSR1)
        await wait_until(lambda: "most recent call first" in d.text(), timeout=10)
        await wait_until(lambda: "Stack for <Task" in d.text() and "sigil-watchdog" in d.text(), timeout=10)
        n = len(heartbeats(url))
        await wait_until(lambda: len(heartbeats(url)) > n, timeout=30)
        d.terminate()
        assert await d.wait(30) == 0
        assert book_problems(url, cfg) == []
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)


async def test_two_daemons_on_one_database_never_double_open(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=SPEED, start_ms=first)
    await sim.start(0)
    try:
        # Disjoint shares (shard 0/2: DOGE, SUI; 1/2: PEPE): one with the other's would be refused (exit 4).
        a, b = (
            DaemonProcess.spawn(
                tmp_path / f"{name}.log", url, str(sim.url), *("--set", f"daemon.instance={name}"),
                *("--set", f"daemon.shard={i}/2"),
            )
            for i, name in enumerate("ab")
        )  # fmt: skip
        # Until both completed passes and they traded (start-up takes longer on a loaded machine).
        await wait_until(
            lambda: (
                len({h["pid"] for h in heartbeats(url)}) == 2
                and rows(url, "SELECT count(*) AS n FROM micro_positions")[0]["n"] > 20
            ),
            timeout=90,
        )
        for d in (a, b):
            d.terminate()
        assert await a.wait(30) == 0, a.text()[-2000:]
        assert await b.wait(30) == 0, b.text()[-2000:]
        # Each instance on its own schedule (neither runs the other's jobs), on its own symbols: never two
        # open at once, cooldowns, ledgers, events.
        assert book_problems(url, config()) == []
        n = rows(url, "SELECT count(*) AS n FROM micro_positions")[0]["n"]
        assert n > 20
        pids = {h["pid"] for h in heartbeats(url)}
        assert len(pids) == 2, "both daemons completed passes"
        jobs = [r["id"] for r in rows(url, "SELECT id FROM apscheduler_jobs ORDER BY id")]
        assert jobs == [job_id("a", "breakout"), job_id("b", "breakout")]
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)


@pytest.mark.parametrize("stop_timeout", [5.0, 0.05], ids=["pass-finishes", "pass-cancelled"])
async def test_sigterm_during_a_pass_exits_0_with_nothing_half_written(
    tmp_path: Path, pg: Any, stop_timeout: float
) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    # Latency on every call makes a pass last a while, so a signal lands inside one.
    sim = SimExchange(series, speed=SPEED / 3, start_ms=first, faults=Faults(latency_ms=120.0))
    await sim.start(0)
    # systemd's side of sd_notify: a datagram socket named by NOTIFY_SOCKET.
    # (not under tmp_path: a unix socket path must stay under 108 bytes)
    notify_dir = Path(tempfile.mkdtemp(prefix="sigil-notify-"))
    notify_path = str(notify_dir / "s")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.setblocking(False)
    try:
        d = DaemonProcess.spawn(
            tmp_path / "d.log",
            url,
            str(sim.url),
            "--set",
            f"daemon.stop_timeout_s={stop_timeout}",
            env={"NOTIFY_SOCKET": notify_path},
        )
        await wait_until(lambda: len(heartbeats(url)) >= 3, timeout=40)
        calls = sim.stats.requests["time"]
        await wait_until(lambda: sim.stats.requests["time"] > calls, timeout=10)  # a pass has just begun
        t0 = time.monotonic()
        d.terminate()
        code = await d.wait(30)
        elapsed = time.monotonic() - t0
        text = d.text()
        assert code == 0, text[-2000:]
        assert "waiting up to" in text, "the signal should have arrived during a pass"
        assert elapsed < stop_timeout + 5.0
        if stop_timeout < 1:
            assert "cancelling the pass in flight" in text
        assert book_problems(url, config()) == []
        last = heartbeats(url)[-1]["finished_at"]
        assert last <= datetime.now(last.tzinfo)
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(notify.recv(4096).decode())
        assert messages[0].startswith("READY=1"), messages[:3]
        assert sum(m.startswith("WATCHDOG=1") for m in messages) >= 3
        assert messages[-1] == "STOPPING=1"
    finally:
        notify.close()
        shutil.rmtree(notify_dir, ignore_errors=True)
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)
