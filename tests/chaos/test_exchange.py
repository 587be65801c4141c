"""The exchange in trouble: the simulator's process killed and restarted after a while (market time
ran on meanwhile), and a 418 ban whose Retry-After the daemon honours. The daemon outlives both, the
invariants hold, and the book at the end of the data is replay's. The ``quick`` ban runs in
``make test``, the rest in ``make chaos``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from sigil.exchange.sim import Faults
from tests.chaos.record import Record
from tests.chaos.scene import scene, start_sim_process
from tests.support import daemon_stack as stack
from tests.support.sim_process import sim_clock

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

SPEC = {"DOGE": (0, 1500), "PEPE": (0, 1500), "SUI": (0, 1500)}
QUICK_SPEC = {"DOGE": (0, 700), "PEPE": (0, 700)}
SPEED = 30_000.0
#: "A minute" of exchange outage, scaled: 20 s of real time, a week of market time at :data:`SPEED`.
SIM_DOWN_S = 20.0


@pytest.mark.chaos
async def test_the_exchange_simulator_killed_and_restarted(tmp_path: Path, pg: Any, record: Record) -> None:
    record.scenario = f"exchange simulator killed (-9) for {SIM_DOWN_S:g} s and restarted"
    async with scene(tmp_path, pg, SPEC, SPEED, sim_process=True) as sc:
        assert sc.process is not None
        d = await sc.begin("--until", str(sc.end))
        record.runs = 1
        await stack.wait_until(lambda: len(sc.passes_of(d)) >= 5, timeout=60)
        now_ms = int(sim_clock(sc.exchange_url)["now_ms"])
        sc.process.proc.kill()
        sc.process.proc.wait(10)
        down = time.monotonic()
        record.fault(
            f"exchange-sim kill -9, down {SIM_DOWN_S:g} s real ({SIM_DOWN_S * SPEED / 3600:.0f} h market)"
        )
        passes = len(sc.passes_of(d))
        await asyncio.sleep(SIM_DOWN_S)
        assert d.proc.poll() is None, f"the daemon must outlive the exchange:\n{d.text()[-3000:]}"
        assert len(sc.passes_of(d)) <= passes + 1, "passes cannot complete without the exchange"
        # Market time went on while the exchange was away, as it does on a real one.
        resume_ms = now_ms + int((time.monotonic() - down) * 1000 * SPEED)
        sc.process = await asyncio.to_thread(
            start_sim_process, tmp_path / "data", sc.sim_port, resume_ms, SPEED
        )
        record.times["exchange back to a completed pass"] = await sc.passes_again(d)
        sc.check(record)
        await sc.finish(record, d)
        sc.check(record, final=True)
    record.notes.append("the restarted simulator's clock resumes where market time would be")


@pytest.mark.parametrize(
    ("ban_s", "retry_after_s"),
    [pytest.param(4.0, 1.5, id="quick"), pytest.param(12.0, 3.0, id="full", marks=pytest.mark.chaos)],
)
async def test_a_418_ban_with_retry_after(
    tmp_path: Path, pg: Any, record: Record, ban_s: float, retry_after_s: float
) -> None:
    record.scenario = f"418 ban for {ban_s:g} s, Retry-After {retry_after_s:g} s"
    spec = QUICK_SPEC if ban_s < 10 else SPEC
    async with scene(tmp_path, pg, spec, SPEED) as sc:
        assert sc.sim is not None
        d = await sc.begin("--until", str(sc.end))
        record.runs = 1
        await stack.wait_until(lambda: len(sc.passes_of(d)) >= 3, timeout=60)
        before = sum(sc.sim.stats.requests.values())
        sc.sim.faults = Faults(rate_418=1.0, retry_after_s=retry_after_s)
        await asyncio.sleep(ban_s)
        sc.sim.faults = Faults()
        during = sum(sc.sim.stats.requests.values()) - before
        banned = sc.sim.stats.faults["http_418"]
        record.fault(f"every market request answered 418 for {ban_s:g} s ({banned} answers)")
        assert d.proc.poll() is None, d.text()[-3000:]
        record.times["ban lifted to a completed pass"] = await sc.passes_again(d)
        sc.check(record)
        await sc.finish(record, d)
        sc.check(record, final=True)
    # Retry-After holds every request of the client: a request or two per wait, never a hammering.
    waits = ban_s / retry_after_s + 1
    record.notes.append(
        f"{during} requests during the ban, {banned} answered 418 (at most ~{waits:.0f} waits)"
    )
    assert banned >= 1
    assert during <= 2 * waits, f"{during} requests in a {ban_s:g} s ban: Retry-After not honoured"
