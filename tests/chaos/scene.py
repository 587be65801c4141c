"""The stage of a chaos scenario: real candles cut into files, a fresh database, the exchange simulator
(in this process, or as its own process when the scenario kills it), daemons as real processes, and
the last run to the end of the data after which the book must be replay's."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigil.config import Config
from sigil.data.candles import CandleSeries
from sigil.exchange.sim import Faults, SimExchange
from tests.chaos.record import Record
from tests.support import daemon_stack as stack
from tests.support.invariants import check, failures
from tests.support.sim_process import SimProcess, sim_clock

#: Market time runs this fast once the faults are over, so the last run reaches the end of the data soon.
FINISH_SPEED = 500_000.0


@dataclass
class Scene:
    """One scenario's database, simulator and daemons."""

    tmp: Path
    url: str
    series: list[CandleSeries]
    cfg: Config
    first: int
    end: int
    speed: float
    sim: SimExchange | None = None
    process: SimProcess | None = None
    sim_port: int = 0
    spawned: list[stack.DaemonProcess] = field(default_factory=list)

    @property
    def exchange_url(self) -> str:
        """The simulator's base URL (the same across a restart of its process)."""
        if self.sim is not None:
            return str(self.sim.url)
        return f"http://127.0.0.1:{self.sim_port}"

    def set_speed(self, speed: float) -> None:
        """Market time from now on runs ``speed`` ms per real ms."""
        if self.sim is not None:
            self.sim.clock.set_speed(speed)
        else:
            sim_clock(self.exchange_url, speed=speed)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> stack.DaemonProcess:
        """A daemon (the fast test settings, ``args``) logging to ``NAME.log``."""
        d = stack.DaemonProcess.spawn(self.tmp / f"{name}.log", self.url, self.exchange_url, *args, env=env)
        self.spawned.append(d)
        return d

    def passes_of(self, d: stack.DaemonProcess) -> list[dict[str, Any]]:
        """The heartbeats (completed passes) of process ``d``."""
        return [h for h in stack.heartbeats(self.url) if h["pid"] == d.proc.pid]

    async def first_pass(self, d: stack.DaemonProcess, timeout: float = 60) -> float:
        """Waits for ``d``'s first completed pass; the wall time it finished at."""
        await stack.wait_until(lambda: d.proc.poll() is not None or bool(self.passes_of(d)), timeout=timeout)
        assert self.passes_of(d), f"{d.log.name} exited before a pass:\n{d.text()[-3000:]}"
        return float(self.passes_of(d)[0]["finished_at"].timestamp())

    async def restart(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> tuple[stack.DaemonProcess, float]:
        """A new daemon and the seconds from its spawn to the end of its first pass."""
        spawned = time.time()
        d = self.spawn(name, *args, env=env)
        return d, await self.first_pass(d) - spawned

    async def passes_again(self, d: stack.DaemonProcess, timeout: float = 120) -> float:
        """Waits until ``d`` completes another pass (it must still be running); the seconds it took."""
        t0 = time.monotonic()
        n = len(self.passes_of(d))
        await stack.wait_until(
            lambda: d.proc.poll() is not None or len(self.passes_of(d)) > n, timeout=timeout
        )
        assert d.proc.poll() is None, f"{d.log.name} ended:\n{d.text()[-3000:]}"
        return round(time.monotonic() - t0, 2)

    async def begin(self, *args: str, env: dict[str, str] | None = None) -> stack.DaemonProcess:
        """The first daemon: its first pass before any candle closes (the clock frozen until then), so
        every candle is traded; then market time runs at the scenario's speed."""
        d = self.spawn("d0", *args, env=env)
        await self.first_pass(d)
        self.set_speed(self.speed)
        return d

    def check(
        self,
        record: Record,
        *,
        final: bool = False,
        replay: bool = True,
        executed: Collection[str] | None = None,
    ) -> None:
        """The invariants now (when ``final``: no reservation left, and replay's book unless not
        ``replay``; the live orders when ``executed`` is given): recorded, and the test fails naming
        every problem."""
        series = self.series if final and replay else None
        checked = check(self.url, self.cfg, series=series, executed=executed, settled=final)
        record.checked(checked)
        problems = failures(checked)
        assert not problems, problems

    async def finish(
        self,
        record: Record,
        d: stack.DaemonProcess | None = None,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        timeout: float = 300,
    ) -> stack.DaemonProcess:
        """Runs to the end of the data — ``d`` (started with ``--until``), else a new daemon — fast;
        it must exit 0."""
        self.set_speed(FINISH_SPEED)
        if d is None:
            d = self.spawn("last", *args, "--until", str(self.end), env=env)
            record.runs += 1
        code = await d.wait(timeout)
        assert code == 0, f"{d.log.name}: exit {code}\n{d.text()[-3000:]}"
        return d

    def stop_all(self) -> None:
        """SIGKILLs whatever daemon is still running (a failed test leaves none behind)."""
        for d in self.spawned:
            d.kill9()


def free_port() -> int:
    """A port nothing listens on just now (for a simulator that must come back on the same one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim_process(data: Path, port: int, start_ms: int, speed: float) -> SimProcess:
    """``sigil exchange-sim`` as its own process on ``port``, its clock at ``start_ms``."""
    return SimProcess(
        ["--data", str(data), "--port", str(port), "--speed", str(speed), "--start", str(start_ms)]
    )


@contextlib.asynccontextmanager
async def scene(
    tmp_path: Path,
    pg: Any,
    spec: dict[str, tuple[int, int]],
    speed: float,
    *,
    faults: Faults | None = None,
    balances: dict[str, float] | None = None,
    sim_process: bool = False,
    overrides: tuple[str, ...] = (),
) -> AsyncIterator[Scene]:
    """A scene over ``spec``'s candles (see :func:`tests.support.daemon_stack.cut`), its simulator's
    clock frozen at the first candle's open until :meth:`Scene.begin`."""
    series = stack.cut(tmp_path / "data", spec)
    first, end = stack.span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sc = Scene(tmp_path, url, series, stack.config(*overrides), first, end, speed)
    try:
        if sim_process:
            sc.sim_port = free_port()
            sc.process = await asyncio.to_thread(start_sim_process, tmp_path / "data", sc.sim_port, first, 0)
        else:
            sc.sim = SimExchange(series, speed=0, start_ms=first, faults=faults, balances=balances)
            await sc.sim.start(0)
        yield sc
    finally:
        sc.stop_all()
        if sc.sim is not None:
            await sc.sim.stop()
        if sc.process is not None:
            sc.process.stop()
        await asyncio.to_thread(pg.drop_database, url)


def since(t0: float) -> float:
    """Seconds of wall time since ``t0`` (a ``time.time()``), rounded for the record."""
    return round(time.time() - t0, 3)
