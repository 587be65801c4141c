"""Live mode against the simulator's signed endpoints with lost answers (orders executed whose answer
never arrives), orders that time out unexecuted, and kill -9 of the daemon at seeded moments between
them: every executed order is booked exactly once, no reservation is left once the exchange recovers,
and the SQL invariants hold throughout."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from sigil.exchange.sim import Faults
from tests.chaos.record import Record
from tests.chaos.scene import scene
from tests.support.invariants import LIVE_ORDERS

pytestmark = [pytest.mark.postgres, pytest.mark.chaos, pytest.mark.timeout(900)]

SPEC = {"DOGE": (0, 900), "PEPE": (0, 900), "SUI": (0, 900)}
SPEED = 30_000.0
KILLS = 3
KEYS = {
    "SIGIL_API_KEY": "ChAoSkEy4c1d9e2f7a3bZZNOTAREALKEYxx",
    "SIGIL_API_SECRET": "ChAoSsEcReT6e0f1ZZNOTAREAL",
}
LIVE = ("--live", "--set", "exchange.timeout_s=0.4", "--set", "exchange.retries=0")
FAULTS = Faults(
    seed=14,
    endpoints=frozenset({"order", "queryOrder"}),
    rate_lost_answer=0.2,
    rate_timeout=0.1,
    hang_s=5.0,
)


async def test_live_with_lost_answers_and_kills_books_every_executed_order_once(
    tmp_path: Path, pg: Any, record: Record
) -> None:
    record.scenario = f"live mode: lost answers, unexecuted timeouts, {KILLS} kill -9 between them"
    rng = random.Random(1402)
    restarts: list[float] = []
    async with scene(tmp_path, pg, SPEC, SPEED, faults=FAULTS, balances={"USDT": 2000.0}) as sc:
        assert sc.sim is not None
        d = await sc.begin(*LIVE, env=KEYS)
        record.runs = 1
        record.fault("20 % of orders and order look-ups executed with their answer lost")
        record.fault("10 % of them hang unexecuted past the client's timeout")
        for i in range(KILLS):
            if i:
                d, took = await sc.restart(f"d{i}", *LIVE, env=KEYS)
                record.runs += 1
                restarts.append(took)
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            d.kill9()
            record.fault(f"kill -9 #{i + 1}")
            sc.check(record)
        record.spread("restart to first pass (reservations settled)", restarts)
        await sc.finish(record, env=KEYS, args=LIVE)
        # The exchange recovers; one more pass settles whatever the last one left unknown.
        sc.sim.faults = Faults()
        settle = sc.spawn("settle", *LIVE, "--max-passes", "1", env=KEYS)
        record.runs += 1
        assert await settle.wait(120) == 0, settle.text()[-3000:]
        executed = {str(o["orderId"]) for o in sc.sim._orders.values()}
        stats = dict(sc.sim.stats.faults)
        # Live fills are the exchange's, not replay's: the book is checked against the exchange instead.
        sc.check(record, final=True, replay=False, executed=executed)
        assert LIVE_ORDERS in record.invariants
    assert stats.get("lost_answer", 0) > 0 and stats.get("timeout", 0) > 0, stats
    record.notes.append(
        f"{len(executed)} orders executed; {stats.get('lost_answer', 0)} answers lost,"
        f" {stats.get('timeout', 0)} timeouts"
    )
