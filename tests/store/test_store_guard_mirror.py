"""The guard mirror: rebuilt at start-up, changed only after commits, kept in step by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from sigil.errors import UnknownVariant
from sigil.store import (
    AccountStore,
    Database,
    GuardChange,
    GuardMirror,
    PositionStore,
    SkipReason,
    SymbolProtectionStore,
)
from sigil.store._checks import to_ms
from tests.support import store_workers as workers
from tests.support.pg import PgServer

pytestmark = pytest.mark.postgres

VARIANTS = ["baseline", "moderate", "aggressive", "unhinged"]
T = workers.RACE_TIME
SCRIPT = str(Path(workers.__file__))


def worker(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_rebuild_at_start_up(db: Database) -> None:
    store = PositionStore(db)
    await store.open_position(**workers.order_args("baseline", "OPEN/USDT", T))
    p = (await store.open_position(**workers.order_args("moderate", "COOL/USDT", T))).position
    assert p is not None
    await store.close_position(p.id, **workers.close_args(T))
    await SymbolProtectionStore(db).protect("aggressive", "LOCK/USDT", T + timedelta(days=2), "manual")

    class Other:
        name = "retired"
        starting_balance = 1000.0

    await AccountStore(db).ensure([Other()])
    await store.open_position(**workers.order_args("retired", "OPEN/USDT", T))

    seen: list[GuardChange] = []
    async with GuardMirror(db, VARIANTS, on_change=seen.append) as mirror:
        assert mirror.rebuilds == 1 and mirror.listening
        assert mirror.blocked("baseline", "OPEN/USDT", T + timedelta(days=30)) is SkipReason.OPEN
        assert mirror.blocked("moderate", "COOL/USDT", T) is SkipReason.COOLDOWN
        assert mirror.blocked("moderate", "COOL/USDT", T + workers.COOLDOWN) is None
        assert mirror.blocked("aggressive", "LOCK/USDT", T + timedelta(days=1)) is SkipReason.COOLDOWN
        assert mirror.can_signal("unhinged", "OPEN/USDT", T)
        assert mirror.state("moderate", "COOL/USDT") == (False, to_ms(T + workers.COOLDOWN))
        with pytest.raises(UnknownVariant):
            mirror.blocked("retired", "OPEN/USDT", T)  # not configured here: its rows are skipped
        assert {(c.variant, c.symbol, c.open) for c in seen} == {
            ("baseline", "OPEN/USDT", True),
            ("moderate", "COOL/USDT", False),
            ("aggressive", "LOCK/USDT", False),
        }
    assert not mirror.listening


async def test_mirror_changes_only_after_the_commit(db: Database) -> None:
    async with GuardMirror(db, VARIANTS) as mirror:
        store = PositionStore(db, mirror=mirror)
        await SymbolProtectionStore(db).protect("baseline", "SLOW/USDT", T - timedelta(days=1), "old")
        async with db.connection("blocker") as me:
            tx = me.transaction()
            await tx.start()
            await me.execute("SELECT 1 FROM symbol_protections WHERE symbol = 'SLOW/USDT' FOR UPDATE")
            task = asyncio.create_task(store.open_position(**workers.order_args("baseline", "SLOW/USDT", T)))
            await asyncio.sleep(0.3)  # the open has inserted its row and waits for the protection row
            assert not task.done()
            assert mirror.blocked("baseline", "SLOW/USDT", T) is None, "nothing is committed yet"
            await tx.rollback()
        result = await task
        assert result.opened
        # Right after the call returns (its own change, before or without the notification).
        assert mirror.blocked("baseline", "SLOW/USDT", T) is SkipReason.OPEN

        # A refused or failed open leaves the mirror alone.
        before = mirror.state("moderate", "SLOW/USDT")
        await store.open_position(**workers.order_args("moderate", "SLOW/USDT", T), max_open=None)
        assert mirror.state("moderate", "SLOW/USDT") != before  # opened
        before = mirror.state("aggressive", "X/USDT")
        r = await store.open_position(**{**workers.order_args("aggressive", "X/USDT", T), "stake": 5000.0})
        assert r.refused is SkipReason.BALANCE
        assert mirror.state("aggressive", "X/USDT") == before == (False, None)


async def test_notify_propagates_between_processes(db: Database) -> None:
    async with GuardMirror(db, VARIANTS) as mirror:
        assert mirror.can_signal("unhinged", "FAR/USDT", T)
        opened = worker("open", db.url, "unhinged", "FAR/USDT")
        await eventually(lambda: mirror.blocked("unhinged", "FAR/USDT", T) is SkipReason.OPEN)
        worker("close", db.url, str(opened["id"]))
        await eventually(lambda: mirror.blocked("unhinged", "FAR/USDT", T) is SkipReason.COOLDOWN)
        assert mirror.state("unhinged", "FAR/USDT") == (False, to_ms(T + workers.COOLDOWN))
        # A protection set on its own is heard too, and keeps the open flag.
        await SymbolProtectionStore(db).protect("unhinged", "FAR/USDT", T + timedelta(days=9), "manual")
        await eventually(
            lambda: mirror.state("unhinged", "FAR/USDT") == (False, to_ms(T + timedelta(days=9)))
        )


async def test_stale_mirror_cannot_double_open(db: Database) -> None:
    """With the mirror deaf, another process opens the pair; our open is still refused by the database."""
    mirror = GuardMirror(db, VARIANTS)
    await mirror.start()
    await mirror.stop()  # deaf from here on
    store = PositionStore(db, mirror=mirror)
    worker("open", db.url, "baseline", "STALE/USDT")
    assert mirror.can_signal("baseline", "STALE/USDT", T), "the mirror is stale"
    r = await store.open_position(**workers.order_args("baseline", "STALE/USDT", T))
    assert r.refused is SkipReason.OPEN
    async with db.connection("count") as conn:
        assert await conn.fetchval("SELECT count(*) FROM micro_positions WHERE symbol = 'STALE/USDT'") == 1


async def test_reconnects_and_rebuilds_after_losing_the_listener(pg: PgServer, db: Database) -> None:
    async with GuardMirror(db, VARIANTS, reconnect_delay_s=0.05) as mirror:
        assert mirror.rebuilds == 1
        assert pg.terminate_sessions(db.url, "sigil") >= 1  # the listener among them
        await eventually(lambda: mirror.rebuilds >= 2 and mirror.listening)
        # The new connection listens: another process's open is heard.
        worker("open", db.url, "baseline", "GAP/USDT")
        await eventually(lambda: mirror.blocked("baseline", "GAP/USDT", T) is SkipReason.OPEN)
    # Changes made while nobody listened are picked up by the rebuild of the next start.
    worker("open", db.url, "moderate", "GAP/USDT")
    assert mirror.can_signal("moderate", "GAP/USDT", T)
    await mirror.start()
    try:
        assert mirror.blocked("moderate", "GAP/USDT", T) is SkipReason.OPEN
    finally:
        await mirror.stop()


async def test_older_changes_never_overwrite_newer(db: Database) -> None:
    mirror = GuardMirror(db, VARIANTS)
    newer = GuardChange("baseline", "SEQ/USDT", False, 5_000, seq=10)
    older = GuardChange("baseline", "SEQ/USDT", True, 4_000, seq=9)
    mirror.apply(newer)
    mirror.apply(older)
    assert mirror.state("baseline", "SEQ/USDT") == (False, 5_000)
    # A post-commit change from before a rebuild started is dropped (the rebuild covers it).
    stale_generation = mirror.generation
    await mirror.rebuild()
    mirror.apply(GuardChange("baseline", "GEN/USDT", True, 1, seq=11), generation=stale_generation)
    assert mirror.state("baseline", "GEN/USDT") == (False, None)
    mirror.apply(GuardChange("baseline", "GEN/USDT", True, 1, seq=11), generation=mirror.generation)
    assert mirror.state("baseline", "GEN/USDT") == (True, 1)
    # Payloads that are not ours are ignored.
    mirror._on_notify(None, 0, "sigil_guard", "not json")
    with pytest.raises(ValueError):
        GuardChange.decode('{"v": "a"}')
    assert GuardChange.decode(newer.encode()) == newer
