"""Two instances, one active and one ``--standby``: the active one killed with -9, again and again,
each time the standby takes over (the failover time is measured: kill to the standby's first completed
pass) and a new standby is started; the invariants hold after each, and the book at the end of the data
is replay's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.record import Record
from tests.chaos.scene import scene
from tests.support import daemon_stack as stack

pytestmark = [pytest.mark.postgres, pytest.mark.chaos, pytest.mark.timeout(900)]

SPEC = {"DOGE": (0, 1500), "PEPE": (0, 1500), "SUI": (0, 1500)}
SPEED = 30_000.0
FAILOVERS = 4
WAITING = "waiting for its lease"


async def test_a_standby_takes_over_from_a_killed_active_instance(
    tmp_path: Path, pg: Any, record: Record
) -> None:
    record.scenario = f"active + standby instance, the active one killed (-9) {FAILOVERS} times"
    failovers: list[float] = []
    leases: list[float] = []
    async with scene(tmp_path, pg, SPEC, SPEED) as sc:
        until = ("--until", str(sc.end))
        active = await sc.begin(*until)
        record.runs = 1
        for i in range(FAILOVERS):
            standby = sc.spawn(f"s{i}", *until, "--standby")
            record.runs += 1
            await stack.wait_until(lambda s=standby: WAITING in s.text(), timeout=60)
            n = len(sc.passes_of(active))
            await stack.wait_until(lambda a=active, n=n: len(sc.passes_of(a)) >= n + 2, timeout=60)
            assert not sc.passes_of(standby), "a standby must not pass while the lease is held"
            active.kill9()
            killed = time.time()
            record.fault(f"kill -9 of the active instance #{i + 1}")
            first = await sc.first_pass(standby, timeout=60)
            failovers.append(first - killed)
            leased = stack.logged_at(standby.text(), "lease taken")
            assert leased is not None, standby.text()[-2000:]
            leases.append(leased - killed)
            assert all(h["finished_at"].timestamp() <= killed for h in sc.passes_of(active))
            sc.check(record)
            active = standby
        record.spread("failover: kill to the standby's first pass", failovers)
        record.spread("kill to lease taken", leases)
        await sc.finish(record, active)
        sc.check(record, final=True)
    record.notes.append("scan_interval_s=0.2; the standby polls for the lease, then resumes the book")
