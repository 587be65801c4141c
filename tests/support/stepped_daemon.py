"""A daemon run in the test's own event loop against a frozen in-process simulator, its clock moved
one step at a time by the test: each step waits for a pass that started after the move, so whatever
the test wrote before the step (a pause, an exit request) has been read by then."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sigil.config import Config
from sigil.daemon import handle
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.passes import PassReport
from sigil.daemon.scanner import Scanner
from sigil.daemon.serve import serve
from sigil.exchange.sim import SimExchange
from tests.support.daemon_stack import cancel, config, cut, span, wait_until


class SteppedDaemon:
    """``serve()`` on ``url`` against ``sim`` (frozen clock) until ``end_ms``, moved by :meth:`step`."""

    def __init__(self, sim: SimExchange, url: str, cfg: Config, end_ms: int, step_ms: int) -> None:
        self.sim, self.url, self.cfg, self.end_ms, self.step_ms = sim, url, cfg, end_ms, step_ms
        self.seen: list[int] = []
        self.task: asyncio.Task[int] | None = None

    @classmethod
    async def over(
        cls, data: Path, spec: dict[str, tuple[int, int]], pg: Any, step_ms: int, cfg: Config | None = None
    ) -> SteppedDaemon:
        """A daemon (not started) on a fresh migrated database of ``pg``, against a frozen simulator of
        the bundled candles cut by ``spec`` into ``data`` (see :func:`~tests.support.daemon_stack.cut`)."""
        series = cut(data, spec)
        first, end = span(series)
        url = await asyncio.to_thread(pg.create_database, migrated=True)
        sim = SimExchange(series, speed=0, start_ms=first)
        await sim.start(0)
        return cls(sim, url, cfg or config(), end, step_ms)

    def _on_pass(self, _scanner: Scanner, report: PassReport) -> None:
        if report.market_time_ms is not None:
            self.seen.append(report.market_time_ms)

    async def start(self) -> None:
        """Starts the daemon and waits for its first pass."""
        self.seen.clear()
        self.task = asyncio.create_task(
            serve(
                self.cfg,
                database_url=self.url,
                exchange_url=self.sim.url,
                limits=RunLimits(until_exhausted=True),
                until_ms=self.end_ms,
                on_pass=self._on_pass,
                health_port=0,
                handle_signals=False,
            )
        )
        await self.caught_up()

    async def caught_up(self) -> None:
        """Waits for a pass that started after the clock's last move."""
        task, target = self.task, self.sim.clock.now_ms()
        assert task is not None
        await wait_until(lambda: task.done() or (bool(self.seen) and self.seen[-1] >= target), timeout=30)
        assert not task.done(), "the daemon stopped early"

    async def step(self, ms: int | None = None) -> None:
        """Moves the clock ``ms`` (default one step) and waits for the pass after it."""
        self.sim.clock.advance(self.step_ms if ms is None else ms)
        await self.caught_up()

    async def step_until(self, pred: Callable[[], bool], limit: int = 30) -> int:
        """Steps until ``pred()``; returns the steps taken (fails after ``limit``)."""
        for n in range(limit):
            if pred():
                return n
            await self.step()
        raise AssertionError(f"condition not met within {limit} steps")

    @property
    def daemon(self) -> Daemon:
        """The running daemon."""
        return cast(Daemon, handle.current())

    @property
    def base(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://127.0.0.1:{self.daemon.health_port}"

    async def stop(self) -> None:
        """A clean stop (exit 0)."""
        assert self.task is not None
        self.daemon.request_stop("the test stops it")
        assert await asyncio.wait_for(self.task, 30) == 0

    async def close(self) -> None:
        """Cancels a daemon still running (after a failed test) and stops the simulator."""
        if self.task is not None:
            await cancel(self.task)
        await self.sim.stop()
