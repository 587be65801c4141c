"""Benchmark plumbing of ``tests/benchmarks``: the plugin that ships with Sigil
(:mod:`sigil.bench.plugin`: timings, ratios, the session table, ``.benchmarks/ratios.json``), the
repository's candles for the ATR benchmarks, and the quick sizes of a run with timing off.

With timing off (``--benchmark-disable``, as ``make test`` runs them) every benchmark runs once, as a
test that its set-up, its calls and its checks still work; the ones whose full size takes minutes
then run on the 7 bundled pairs instead of the 109 of universe-1h, and for fewer simulated days.

The plugin's hooks and fixtures are imported here rather than named in ``pytest_plugins``, which
pytest accepts only in the rootdir's conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil.bench.candles import BenchCandles
from sigil.bench.plugin import (
    pytest_addoption,
    pytest_terminal_summary,
    record_ratio,
    record_ratio_fixture,
    record_timing,
    timing,
)
from tests.support.data import BUNDLED, SHARED_DATA, universe_dir

__all__ = [
    "bench_candles",
    "pytest_addoption",
    "pytest_terminal_summary",
    "record_ratio",
    "record_ratio_fixture",
    "record_timing",
    "system_data",
    "timing",
    "timing_off",
]


@pytest.fixture(scope="session")
def timing_off(pytestconfig: pytest.Config) -> bool:
    """Whether this run has timing off (``--benchmark-disable``): each benchmark once, quick sizes."""
    return bool(pytestconfig.getoption("benchmark_disable"))


@pytest.fixture(scope="session")
def system_data(timing_off: bool) -> Path:
    """The universe the daemon and exchange benchmarks serve: universe-1h (109 pairs) when timed and
    ``../shared/data`` is there, else the 7 bundled pairs."""
    return BUNDLED if timing_off else universe_dir()


@pytest.fixture(scope="session")
def bench_candles() -> BenchCandles:
    """Real candles: BTC/USDT 1m (130,708 bars) continued to 1M bars for the one-series cases and
    windows of universe-1h for ``atr_many`` when ``../shared/data`` is there, else the bundled 1h
    files for both; the bundled BTC/USDT 1h file streams."""
    bundled = sorted(BUNDLED.glob("*.feather"))
    minute = SHARED_DATA / "candles" / "BTC_USDT-1m.feather"
    universe = SHARED_DATA / "universe-1h"
    return BenchCandles.from_files(
        "repository data",
        long=[minute] if minute.exists() else bundled,
        many=sorted(universe.glob("*.feather")) if universe.is_dir() else bundled,
        stream=BUNDLED / "BTC_USDT-1h.feather",
    )
