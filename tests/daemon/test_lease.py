"""The instance lease and the share claims against a real PostgreSQL, in one process: a held instance
is refused naming its holder, a standby waits and takes over, a lease whose session ends stops the
passes at once and is taken back (or given up when someone else has it), overlapping shares are
refused while their instance lives and not after. The same as real processes: test_e2e_lease.py."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import psycopg
import pytest

from sigil.config import Config, apply_overrides, load_config
from sigil.daemon.lease import GONE, HELD, LOST, InstanceLease
from sigil.daemon.passes import BREAKOUT
from sigil.errors import DatabaseUnavailable, InstanceHeld
from sigil.store import Database
from sigil.store.instances import all_instances, lease_key

from .conftest import FakePasses, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def cfg(*sets: str) -> Config:
    return apply_overrides(load_config(), ["daemon.scan_interval_s=0.2", *sets])


def lease_sessions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'sigil lease %'"
        ).fetchall()
    return [r[0] for r in rows]


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def held_elsewhere(db: Database, config: Config) -> str:
    lease = InstanceLease.of(db, config)
    try:
        with pytest.raises(InstanceHeld) as e:
            await lease.take()
    finally:
        await lease.release()
    return str(e.value)


async def test_a_held_instance_is_refused_naming_its_holder_and_a_standby_takes_over(
    db: Database, db_url: str
) -> None:
    a = InstanceLease.of(db, cfg())
    await a.take()
    try:
        assert a.held and a.describe()["state"] == HELD
        msg = await held_elsewhere(db, cfg())
        host, pid = socket.gethostname(), os.getpid()
        assert msg.startswith(f"instance 'main' is held by pid {pid} on host {host} since 20"), msg
        assert "--standby" in msg
        b = InstanceLease.of(db, cfg())
        waiting = asyncio.create_task(b.take(standby=True))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "a standby waits while the lease is held"
    finally:
        await a.release()
    t0 = time.monotonic()
    await asyncio.wait_for(waiting, 5)
    took = time.monotonic() - t0
    try:
        assert b.held and took < 1.0, took
        rows = await all_instances(db)
        assert [(h.instance, live, h.backend_pid) for h, live in rows] == [("main", True, b.me.backend_pid)]  # type: ignore[union-attr]
    finally:
        await b.release()
    assert [live for _, live in await all_instances(db)] == [False], "a released lease is not live"


async def test_overlapping_shares_are_refused_while_the_other_instance_lives(db: Database) -> None:
    a = InstanceLease.of(
        db, cfg("daemon.instance=a", "daemon.variants=[baseline, moderate]", "daemon.shard=0/2")
    )
    await a.take()
    try:
        for sets in (
            ("daemon.variants=[moderate]",),  # a common variant, every symbol
            ("daemon.shard=0/2",),  # every variant, the same shard
            ("daemon.variants=[baseline]", "daemon.shard=0/4"),  # 0 mod 4 is 0 mod 2
        ):
            msg = await held_elsewhere(db, cfg("daemon.instance=b", *sets))
            assert "overlaps the share of live instance 'a'" in msg and f"pid {os.getpid()}" in msg, msg
            assert "variants baseline, moderate; shard 0/2" in msg
        assert [h.instance for h, _ in await all_instances(db)] == ["a"], "a refused claim writes nothing"
        disjoint = [
            ("daemon.variants=[aggressive, unhinged]",),
            ("daemon.shard=1/2",),
            ("daemon.variants=[baseline]", "daemon.shard=3/4"),
        ]
        for i, sets in enumerate(disjoint):
            other = InstanceLease.of(db, cfg(f"daemon.instance=d{i}", *sets))
            await other.take()
            await other.release()
    finally:
        await a.release()
    # a is dead now (its lease free): its claim blocks nobody.
    b = InstanceLease.of(db, cfg("daemon.instance=b"))
    await b.take()
    await b.release()


async def test_a_lost_lease_stops_the_passes_at_once_and_is_taken_back(db: Database, db_url: str) -> None:
    lease = InstanceLease.of(db, cfg())
    await lease.take()
    passes = FakePasses(work_s=30.0)
    guarded = lease.guard(passes)
    try:
        in_flight = asyncio.create_task(guarded.run(BREAKOUT))
        await passes.started.wait()
        [session] = lease_sessions(db_url)
        terminate(db_url, session)
        with pytest.raises(DatabaseUnavailable, match="lease lost"):
            await asyncio.wait_for(in_flight, 2)  # cut short, not left to finish
        # Nobody else wanted it: taken back on a new session, and the passes act again.
        await wait_until(lambda: lease.held, timeout=5)
        assert lease.regained == 1 and lease.describe()["lost_reason"] == "its database session ended"
        assert lease_sessions(db_url) != [session]
        passes.work_s = 0.0
        assert (await guarded.run(BREAKOUT)).job == BREAKOUT
    finally:
        await lease.release()


async def test_a_lease_lost_to_another_process_is_given_up(db: Database, db_url: str) -> None:
    lease = InstanceLease.of(db, cfg())
    await lease.take()
    lost: list[str] = []
    lease.on_lost(lost.append)
    guarded = lease.guard(FakePasses())
    # The standby gets there first: the holder finds it held when it asks again.
    gate = asyncio.Event()
    retake = lease._retake

    async def late_retake() -> None:
        await gate.wait()
        await retake()

    lease._retake = late_retake  # type: ignore[method-assign]
    standby = InstanceLease.of(db, cfg())
    try:
        waiting = asyncio.create_task(standby.take(standby=True))
        [session] = lease_sessions(db_url)
        terminate(db_url, session)
        await wait_until(lambda: lease.state == LOST, timeout=5)
        with pytest.raises(DatabaseUnavailable):
            await guarded.run(BREAKOUT)
        await asyncio.wait_for(waiting, 5)
        gate.set()
        await wait_until(lambda: bool(lost), timeout=5)
        assert lease.state == GONE and not lease.held
        assert lost[0].startswith(f"instance lease lost to pid {os.getpid()} on host "), lost
        with pytest.raises(DatabaseUnavailable):
            await guarded.run(BREAKOUT)
        assert standby.held
    finally:
        await lease.release()
        await standby.release()


async def test_the_lease_key_and_the_lock_agree(db: Database) -> None:
    lease = InstanceLease.of(db, cfg("daemon.instance=k_1"))
    await lease.take()
    try:
        async with db.connection("test") as conn:
            got: Any = await conn.fetchval(
                "SELECT (classid::int8 << 32) | objid::int8 FROM pg_locks WHERE locktype = 'advisory'"
                " AND objsubid = 1 AND pid = $1",
                lease.me.backend_pid,  # type: ignore[union-attr]
            )
        assert got == lease_key("k_1") & 0xFFFF_FFFF_FFFF_FFFF
    finally:
        await lease.release()
