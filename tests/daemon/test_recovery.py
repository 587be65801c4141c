"""Recovery equals replay: a daemon killed with -9 in the middle of its passes and restarted each
time, or whose passes fail half-way, ends with the book of ``sigil replay`` on the same candles —
the same trades, the same P&L to the bit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.errors import DatabaseUnavailable
from sigil.exchange.sim import SimExchange
from sigil.research.replay import replay_series
from sigil.store import PositionStore
from sigil.times import iso_z
from tests.daemon.test_e2e_replay import run_daemon
from tests.support import daemon_stack as stack
from tests.support.invariants import daemon_book, differences, replay_book

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(420)]

#: Five pairs of real candles over the same months (WIF listed two months in), so passes decide many
#: candles at once.
SPEC = {"BTC": (0, 2500), "DOGE": (0, 2500), "PEPE": (0, 2500), "SUI": (0, 2500), "WIF": (0, 1000)}
#: Simulated ms per real ms: about 70 one-hour candles a second.
SPEED = 250_000.0
#: Real seconds of simulated time before the first candle closes, so the first pass trades every candle.
LEAD_S = 8.0
NO_EXIT_PASS = ("--set", "daemon.exit_pass=false", "--set", "daemon.scan_interval_s=0.3")


# make long, and make chaos's scenario of the same fault at a larger scale (docs/RELIABILITY.md).
@pytest.mark.long
async def test_kill_9_mid_pass_then_restart_equals_replay(tmp_path: Path, pg: Any) -> None:
    series = stack.cut(tmp_path / "data", SPEC)
    first, end = stack.span(series)
    cfg = stack.config("daemon.exit_pass=false")
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=SPEED, start_ms=first - int(LEAD_S * 1000 * SPEED))
    await sim.start(0)
    rng = random.Random(20261201)
    kills = 0
    try:
        for i in range(6):
            d = stack.DaemonProcess.spawn(tmp_path / f"d{i}.log", str(url), str(sim.url), *NO_EXIT_PASS)
            if i == 0:
                # The first run completes a pass before any candle closes: every candle is traded.
                await stack.wait_until(lambda: len(stack.heartbeats(url)) > 0, timeout=LEAD_S)
            else:
                # A restart first catches up the backlog of candles in one long pass: kill it in there.
                await stack.wait_until(lambda d=d: "resuming after" in d.text(), timeout=30)
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            if d.proc.poll() is None:
                d.kill9()
                kills += 1
            assert stack.book_problems(url, cfg) == [], f"after kill {i}"
        d = stack.DaemonProcess.spawn(
            tmp_path / "last.log", str(url), str(sim.url), *NO_EXIT_PASS, "--until", str(end)
        )
        code = await d.wait(300)
        assert code == 0, d.text()[-3000:]
        # Passes per run depend on the machine's load (the simulator runs on real time): the first and
        # the last run each complete at least one; the book's equality below is the claim.
        assert kills >= 5 and len(stack.heartbeats(url)) >= 2
        logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
        assert "from after the resume point: re-applied" in logs, "no kill landed after a commit mid-pass"
        want = replay_book(series, cfg)
        got = daemon_book(url)
        assert len(want) > 100
        diff = differences(got, want)
        assert diff == [], f"{len(diff)} differences of {len(want)} trades:\n" + "\n".join(diff[:25])
        result = replay_series(series, cfg)
        balances = {r["variant_id"]: r["balance"] for r in stack.rows(url, "SELECT * FROM variant_accounts")}
        assert balances == {n: m.balance for n, m in result.metrics.items()}
        open_now = {
            (r["variant_id"], r["symbol"], iso_z(int(r["opened_at"].timestamp()) * 1000))
            for r in stack.rows(url, "SELECT * FROM micro_positions WHERE status = 'open'")
        }
        assert open_now == {(p.variant, p.symbol, iso_z(p.entry_time)) for p in result.open_positions}
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)


async def test_passes_failed_half_way_are_decided_again_as_replay(
    tmp_path: Path, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that fail in the middle of passes — before their commit, and after it (the database
    then holds what the engine never learnt) — end in replay's book all the same."""
    series = stack.cut(tmp_path / "data", {"DOGE": (0, 1300), "PEPE": (150, 1300), "WIF": (0, 1000)})
    first, end = stack.span(series)
    cfg = stack.config()
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=0, start_ms=first)
    await sim.start(0)
    calls = {"open": 0, "close": 0}
    failed: list[str] = []
    original_open, original_close = PositionStore.open_position, PositionStore.close_position

    async def open_position(self: PositionStore, **kw: Any) -> Any:
        calls["open"] += 1
        if calls["open"] % 17 == 5:
            failed.append("open before its commit")
            raise DatabaseUnavailable("injected: the connection broke before the commit")
        result = await original_open(self, **kw)
        if calls["open"] % 17 == 11:
            failed.append("open after its commit")
            raise DatabaseUnavailable("injected: the answer to the commit was lost")
        return result

    async def close_position(self: PositionStore, position_id: int, **kw: Any) -> Any:
        calls["close"] += 1
        result = await original_close(self, position_id, **kw)
        if calls["close"] % 13 == 7:
            failed.append("close after its commit")
            raise DatabaseUnavailable("injected: the answer to the commit was lost")
        return result

    monkeypatch.setattr(PositionStore, "open_position", open_position)
    monkeypatch.setattr(PositionStore, "close_position", close_position)
    try:
        await run_daemon(sim, url, cfg, end)
    finally:
        await sim.stop()
    try:
        assert {"open before its commit", "open after its commit", "close after its commit"} <= set(failed)
        want = replay_book(series, cfg)
        diff = differences(daemon_book(url), want)
        assert len(want) > 30
        assert diff == [], f"{len(diff)} differences of {len(want)} trades:\n" + "\n".join(diff[:25])
        result = replay_series(series, cfg)
        balances = {r["variant_id"]: r["balance"] for r in stack.rows(url, "SELECT * FROM variant_accounts")}
        assert balances == {n: m.balance for n, m in result.metrics.items()}
        assert stack.book_problems(url, cfg) == []
    finally:
        await asyncio.to_thread(pg.drop_database, url)


# make long, and make chaos's scenario of the same fault at a larger scale (docs/RELIABILITY.md).
@pytest.mark.long
async def test_a_database_outage_is_outlived_and_the_book_equals_replay(tmp_path: Path, pg: Any) -> None:
    """The database stopped for a while under a running daemon: the process lives on, /health says
    503 while it cannot reach the database, passes complete again soon after it is back, and the book
    at the end of the data is replay's."""
    series = stack.cut(tmp_path / "data", {s: (0, 1500) for s in ("BTC", "DOGE", "PEPE", "SUI")})
    first, end = stack.span(series)
    cfg = stack.config("daemon.exit_pass=false")
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    speed = 120_000.0
    sim = SimExchange(series, speed=speed, start_ms=first - int(LEAD_S * 1000 * speed))
    await sim.start(0)
    try:
        d = stack.DaemonProcess.spawn(
            tmp_path / "d.log", str(url), str(sim.url), *NO_EXIT_PASS, "--until", str(end)
        )
        await stack.wait_until(
            lambda: len(stack.heartbeats(url)) >= 3 and stack.health_port(d.text()) is not None, timeout=30
        )
        port = stack.health_port(d.text())
        statuses: list[tuple[int, str]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            with pg.outage(url):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        statuses.append((r.status, (await r.json())["status"]))
                    await asyncio.sleep(0.5)
                assert d.proc.poll() is None, "the daemon must outlive its database"
            back = time.monotonic()
            n = len(stack.heartbeats(url))
            await stack.wait_until(lambda: len(stack.heartbeats(url)) > n, timeout=30)
            recovered_s = time.monotonic() - back
        assert (503, "database_unavailable") in statuses, statuses
        code = await d.wait(300)
        assert code == 0, d.text()[-3000:]
        assert "the database answers again" in d.text()
        diff = differences(daemon_book(url), replay_book(series, cfg))
        assert diff == [], "\n".join(diff[:25])
        assert stack.book_problems(url, cfg) == []
        print(f"passes complete again {recovered_s:.2f}s after the database is back")
        assert recovered_s < 10
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)


# make long, and make chaos's scenario of the same fault at a larger scale (docs/RELIABILITY.md).
@pytest.mark.long
async def test_a_hung_database_neither_freezes_the_daemon_nor_ends_it(tmp_path: Path, pg: Any) -> None:
    """PostgreSQL frozen with SIGSTOP (it accepts nothing and answers nothing, honours no timeout of
    its own): /health keeps answering, the process lives, and passes complete again once it thaws."""
    if not pg.embedded:
        pytest.skip("freezing the server needs the embedded one")  # an external server is not ours to stop
    series = stack.cut(tmp_path / "data", {s: (0, 1500) for s in ("BTC", "DOGE", "PEPE", "SUI")})
    first, _ = stack.span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    speed = 120_000.0
    sim = SimExchange(series, speed=speed, start_ms=first - int(LEAD_S * 1000 * speed))
    await sim.start(0)
    pids: list[int] = []
    try:
        d = stack.DaemonProcess.spawn(tmp_path / "d.log", str(url), str(sim.url), *NO_EXIT_PASS)
        await stack.wait_until(
            lambda: len(stack.heartbeats(url)) >= 3 and stack.health_port(d.text()) is not None, timeout=30
        )
        port = stack.health_port(d.text())
        answers: list[tuple[int, float]] = []
        pids = pg.processes()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        await r.json()
                        answers.append((r.status, time.monotonic() - t0))
                    await asyncio.sleep(0.5)
                assert d.proc.poll() is None, "a hung database must not end the daemon"
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            thawed = time.monotonic()
            n = len(stack.heartbeats(url))
            await stack.wait_until(lambda: len(stack.heartbeats(url)) > n, timeout=60)
            recovered_s = time.monotonic() - thawed
        assert len(answers) >= 3, answers
        print(f"/health during the hang: {answers}; passes again {recovered_s:.2f}s after the thaw")
        d.terminate()
        assert await d.wait(60) == 0, d.text()[-3000:]
        assert stack.book_problems(url, stack.config()) == []
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)
