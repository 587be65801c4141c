"""Failures in the middle: a process killed during an open, the server restarted under a busy pool."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sigil.errors import DatabaseUnavailable
from sigil.store import Database, GuardMirror, PositionStore, SymbolProtectionStore
from tests.support import store_workers as workers
from tests.support.pg import PgServer
from tests.support.store_books import assert_books_consistent

pytestmark = pytest.mark.postgres

SCRIPT = str(Path(workers.__file__))


async def _wait_for(db: Database, sql: str, *args: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with db.connection("poll") as conn:
            if await conn.fetchval(sql, *args):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {sql}")


async def _backend_gone(db: Database, pid: int) -> None:
    """Waits until the server has noticed the dead client and ended (rolled back) its session."""
    await _wait_for(db, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid)


async def _blocked_backend(db: Database) -> int:
    """The pid of the session waiting for the protection row."""
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sigil'"
        " AND wait_event_type = 'Lock' AND query LIKE '%symbol_protections%'"
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with db.connection("poll") as conn:
            pid = await conn.fetchval(sql)
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError("the open never reached the protection row")


async def test_sigkill_while_the_open_waits_mid_transaction(db: Database) -> None:
    """The open has inserted its position and waits to write the protection: SIGKILL. Nothing stays."""
    symbol = "KILL/USDT"
    past = workers.RACE_TIME - timedelta(days=1)
    await SymbolProtectionStore(db).protect("baseline", symbol, past, "old cooldown, long over")
    async with db.connection("me") as me:
        tx = me.transaction()
        await tx.start()
        # Hold the protection row: the open will block on it right after inserting its position.
        await me.execute(
            "SELECT 1 FROM symbol_protections WHERE variant_id = 'baseline' AND symbol = $1 FOR UPDATE",
            symbol,
        )
        child = subprocess.Popen([sys.executable, SCRIPT, "open", db.url, "baseline", symbol])
        try:
            child_backend = await _blocked_backend(db)
            async with db.connection("peek") as peek:
                # The child's insert is there, uncommitted (invisible to others).
                assert await peek.fetchval("SELECT count(*) FROM micro_positions") == 0
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
            await tx.rollback()
    await _backend_gone(db, child_backend)
    async with db.connection("check") as conn:
        assert await conn.fetchval("SELECT count(*) FROM micro_positions") == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
        assert (
            await conn.fetchval("SELECT protected_until FROM symbol_protections WHERE symbol = $1", symbol)
            == past
        )
        assert (
            await conn.fetchval("SELECT balance FROM variant_accounts WHERE variant_id = 'baseline'")
            == 1000.0
        )
    # And the pair opens normally afterwards.
    assert (
        await PositionStore(db).open_position(**workers.order_args("baseline", symbol, workers.RACE_TIME))
    ).opened


async def test_sigkill_at_random_moments_leaves_whole_opens_or_nothing(db: Database) -> None:
    rng = random.Random(7)
    total = 0
    # A variant per round: each account has room for about a hundred opens.
    for variant in ("baseline", "moderate", "aggressive"):
        child = subprocess.Popen(
            [sys.executable, SCRIPT, "open-loop", db.url, variant], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            ready, backend = child.stdout.readline().split()
            assert ready == "ready"
            await asyncio.sleep(rng.uniform(0.15, 0.45))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
        await _backend_gone(db, int(backend))
        n = await assert_books_consistent(db, workers.COOLDOWN)
        assert n > total, "the child got some opens done before it was killed"
        total = n


async def test_server_restart_under_a_busy_pool(pg: PgServer, db_url: str) -> None:
    """In-flight operations fail with DatabaseUnavailable; later ones succeed; nothing is half-written."""
    db = await Database.open(db_url, min_size=2, max_size=4)
    mirror = GuardMirror(db, ["baseline", "moderate", "aggressive", "unhinged"], reconnect_delay_s=0.1)
    await mirror.start()
    store = PositionStore(db, mirror=mirror)
    outage = asyncio.Event()
    back = asyncio.Event()
    stop = asyncio.Event()
    ok_before, ok_after, unavailable = [0], [0], []
    unexpected: list[BaseException] = []

    async def trader(k: int) -> None:
        i = 0
        while not stop.is_set():
            at = workers.RACE_TIME + timedelta(minutes=i)
            try:
                r = await store.open_position(**workers.order_args("moderate", f"T{k}_{i}/USDT", at))
                if r.position is not None and i % 2:
                    await store.close_position(r.position.id, **workers.close_args(at))
                (ok_after if back.is_set() else ok_before)[0] += 1
            except DatabaseUnavailable as e:
                unavailable.append(e)
                await asyncio.sleep(0.05)
            except Exception as e:
                unexpected.append(e)
                return
            i += 1

    tasks = [asyncio.create_task(trader(k)) for k in range(4)]
    try:
        await asyncio.sleep(0.5)
        cm = pg.outage(db_url)
        await asyncio.to_thread(cm.__enter__)
        outage.set()
        await asyncio.sleep(0.7)
        failed_during = len(unavailable)
        await asyncio.to_thread(cm.__exit__, None, None, None)
        back.set()
        deadline = time.monotonic() + 15
        while ok_after[0] < 20 and time.monotonic() < deadline and not unexpected:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await t
    assert unexpected == [], [f"{type(e).__name__}: {e}" for e in unexpected]
    assert ok_before[0] > 0 and failed_during > 0 and ok_after[0] >= 20
    assert all("database unavailable" in str(e) for e in unavailable)
    assert {str(e).split(":")[0].split()[0] for e in unavailable} <= {"open", "close"}

    # The mirror reconnected, rebuilt, and agrees with the database.
    deadline = time.monotonic() + 10
    while not (mirror.listening and mirror.rebuilds >= 2) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert mirror.listening and mirror.rebuilds >= 2
    await assert_books_consistent(db, workers.COOLDOWN)
    for p in await store.open_positions():
        assert mirror.state(p.variant, p.symbol)[0] is True
    await mirror.stop()
    await db.close()
