"""Fixtures for the exchange tests: real candle files, the simulator in-process or as a subprocess.
Everything talks over loopback with the real ccxt client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest

from sigil.data.candles import CandleSeries, load_universe
from sigil.exchange.sim import SimExchange
from tests.support.data import BUNDLED, sample_files
from tests.support.sim_process import SimProcess


@pytest.fixture(scope="session")
def sample_series() -> list[CandleSeries]:
    """The sample files, read once."""
    return load_universe(sample_files())


@pytest.fixture(scope="session")
def bundled_series() -> list[CandleSeries]:
    """The 7 bundled files, read once."""
    return load_universe([BUNDLED])


SimFactory = Callable[..., Awaitable[SimExchange]]


@pytest.fixture
async def start_sim() -> AsyncIterator[SimFactory]:
    """``await start_sim(series, speed=…, start_ms=…, faults=…)`` → a started in-process simulator
    (its URL in ``.url``); all are stopped at the end of the test."""
    sims: list[SimExchange] = []

    async def start(series: Sequence[CandleSeries], **kwargs: Any) -> SimExchange:
        kwargs.setdefault("speed", 0.0)
        sim = SimExchange(series, **kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        await sim.stop()


@pytest.fixture
def sim_process() -> Iterator[Callable[..., SimProcess]]:
    """``sim_process(args...)`` → a started ``sigil exchange-sim`` subprocess, stopped at the end."""
    started: list[SimProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> SimProcess:
        p = SimProcess(args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
