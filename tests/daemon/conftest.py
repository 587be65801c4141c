"""Fixtures for the daemon tests: a real PostgreSQL (embedded, or ``SIGIL_TEST_DATABASE_URL``), one
fresh database per test, and a stand-in for the scanner's passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from sigil.daemon.passes import BREAKOUT, EXIT, PassReport, VariantState
from sigil.daemon.scheduler import JobSpec
from tests.support.daemon_stack import wait_until

# wait_until lives in tests.support.daemon_stack; named here too for the tests that take it with FakePasses.
__all__ = ["FakePasses", "wait_until"]


@pytest.fixture
def database_url(empty_db_url: str) -> str:
    """A fresh, empty database for one test (the scheduler creates its own table)."""
    return empty_db_url


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """A fresh database with the current schema and the shipped variants' accounts."""
    return db_url


class FakePasses:
    """Stands in for the scanner: counts runs, sleeps or fails on request, keeps heartbeats in memory."""

    def __init__(
        self,
        breakout_s: float = 0.2,
        exit_s: float | None = None,
        work_s: float = 0.0,
    ) -> None:
        self.breakout_s = breakout_s
        self.exit_s = exit_s
        self.work_s = work_s
        self.runs: dict[str, int] = {BREAKOUT: 0, EXIT: 0}
        self.heartbeats: list[tuple[float, PassReport]] = []
        self.started = asyncio.Event()
        #: While set, a pass hangs; ``ignore_cancel`` makes it swallow cancellation too.
        self.hang = False
        self.ignore_cancel = False
        self.fail = False
        self.completed_bodies = 0
        self.is_exhausted = False

    def jobs(self) -> Sequence[JobSpec]:
        out = [JobSpec(BREAKOUT, self.breakout_s)]
        if self.exit_s is not None:
            out.append(JobSpec(EXIT, self.exit_s, run_at_start=False))
        return out

    async def run(self, name: str) -> PassReport:
        self.runs[name] += 1
        self.started.set()
        if self.fail:
            raise RuntimeError("injected pass failure")
        if self.hang:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if not self.ignore_cancel:
                        raise
        if self.work_s:
            await asyncio.sleep(self.work_s)
        self.completed_bodies += 1
        return PassReport(job=name, symbols=3, candles=5, market_time_ms=1_700_000_000_000)

    async def heartbeat(self, report: PassReport) -> None:
        self.heartbeats.append((time.time(), report))

    def variants(self) -> dict[str, VariantState]:
        return {"baseline": VariantState(1000.0, 1001.5, 1), "unhinged": VariantState(990.0, 990.0, 0)}

    def exhausted(self) -> bool:
        return self.is_exhausted
