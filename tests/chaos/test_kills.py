"""kill -9 of the daemon at seeded moments, restarted each time, and SIGTERM in the middle of passes:
after every fault the SQL invariants hold, and once the last run reaches the end of the data the book
is replay's to the bit. The ``quick`` SIGTERM case runs in ``make test`` (kill -9 then restart equals
replay is there already: tests/daemon/test_recovery.py), the rest in ``make chaos``."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.record import Record
from tests.chaos.scene import scene
from tests.support import daemon_stack as stack

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

SPEC = {"DOGE": (0, 1500), "PEPE": (0, 1500), "SUI": (0, 1500)}
#: The kills' candles: 20 restarts on this machine take up to 2000 hours of market time at :data:`SPEED`.
KILL_SPEC = {"DOGE": (0, 3000), "PEPE": (0, 3000), "SUI": (0, 3000)}
HOUR_MS = 3_600_000
#: The quick case's candles: a month, enough for trades, short to finish.
QUICK_SPEC = {"DOGE": (0, 700), "PEPE": (0, 700)}
#: About 8 one-hour candles a second: every restart has a backlog to catch up on.
SPEED = 30_000.0


@pytest.mark.chaos
async def test_kill_9_at_20_seeded_moments_then_restart_equals_replay(
    tmp_path: Path, pg: Any, record: Record
) -> None:
    kills = 20
    record.scenario = f"kill -9 of the daemon at {kills} seeded moments, restarted each time"
    rng = random.Random(20261202)
    restarts: list[float] = []
    async with scene(tmp_path, pg, KILL_SPEC, SPEED) as sc:
        assert sc.sim is not None
        d = await sc.begin()
        record.runs = 1
        for i in range(kills):
            if i:
                d, took = await sc.restart(f"d{i}")
                record.runs += 1
                restarts.append(took)
            # Seeded moments from 0 to 2 s after a completed pass: inside start-up, a catch-up pass or a wait.
            await asyncio.sleep(rng.uniform(0.0, 2.0))
            d.kill9()
            record.fault(f"kill -9 #{i + 1}")
            sc.check(record)
        # Candles that close while no daemon runs are decided by the next one — if it starts before the
        # data ends (past it the simulator lists no symbol): the comparison with replay needs that.
        assert sc.sim.clock.now_ms() < sc.end - 48 * HOUR_MS, "the data ran out during the kills"
        last, took = await sc.restart("last", "--until", str(sc.end))
        record.runs += 1
        restarts.append(took)
        record.spread("restart to first pass", restarts)
        await sc.finish(record, last)
        sc.check(record, final=True)
    record.notes.append(f"{len(restarts)} restarts, each catching up on the candles closed while it was down")


@pytest.mark.parametrize(
    "signals", [pytest.param(1, id="quick"), pytest.param(6, id="full", marks=pytest.mark.chaos)]
)
async def test_sigterm_in_the_middle_of_passes_exits_0_and_equals_replay(
    tmp_path: Path, pg: Any, record: Record, signals: int
) -> None:
    record.scenario = f"SIGTERM in the middle of a pass, {signals} times, restarted each time"
    stops: list[float] = []
    in_pass = 0
    async with scene(tmp_path, pg, QUICK_SPEC if signals == 1 else SPEC, SPEED) as sc:
        assert sc.sim is not None
        d = await sc.begin()
        record.runs = 1
        for i in range(signals):
            if i:
                d = sc.spawn(f"d{i}")
                record.runs += 1
                await sc.first_pass(d)
            calls = sc.sim.stats.requests["time"]
            # Each pass asks the exchange's time first: a new request is a pass just begun.
            await stack.wait_until(lambda c=calls: sc.sim.stats.requests["time"] > c, timeout=30)
            t0 = time.monotonic()
            d.terminate()
            record.fault(f"SIGTERM #{i + 1}")
            code = await d.wait(30)
            stops.append(time.monotonic() - t0)
            assert code == 0, d.text()[-3000:]
            in_pass += "waiting up to" in d.text()
            sc.check(record, final=False)
        record.spread("SIGTERM to exit", stops)
        assert in_pass >= 1, "no signal arrived during a pass"
        await sc.finish(record)
        sc.check(record, final=True)
    record.notes.append(f"{in_pass} of {signals} signals arrived inside a pass (it was let finish)")
