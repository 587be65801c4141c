"""Replay of the whole universe-1h data set (109 pairs, 605,090 candles) through the four shipped variants.

Reports, never asserts: the Rust replay's throughput in candle·variants per second, the process's peak
resident memory (measured in a fresh subprocess: tracemalloc does not see Rust allocations), and the
speed ratio against the pure-Python reference in ``tests/reference`` on the same input.

With timing off (``make test``) both run once on two bundled files: the reference takes about a
minute over the whole universe.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sigil.config import Config, load_config
from sigil.data import CandleSeries, load_universe
from sigil.research.replay import replay_series
from tests.reference import ENGINE_STOP_PCT_RULE, differences
from tests.reference import replay as reference_replay
from tests.support.data import BUNDLED

RecordRatio = Callable[..., None]

#: What is replayed with timing off: two bundled files (about 12,000 candles).
QUICK_FILES = 2

# Runs in a fresh interpreter: the high-water mark of its resident set is the replay's, not pytest's.
PEAK_RSS_SCRIPT = """
import json, resource, sys, time

def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20

from sigil.config import load_config
from sigil.data import load_universe
from sigil.research.replay import replay_series

config = load_config()
imports = peak_rss_mb()
series = load_universe(sys.argv[1:])
loaded = peak_rss_mb()
t = time.perf_counter()
result = replay_series(series, config)
seconds = time.perf_counter() - t
peak = peak_rss_mb()
print(json.dumps({"imports_mb": imports, "after_load_mb": loaded, "peak_mb": peak, "replay_s": seconds,
                  "trades": len(result.trades)}))
"""


@pytest.fixture(scope="module")
def replay_paths(request: pytest.FixtureRequest, timing_off: bool) -> list[Path]:
    """universe-1h (skipped where ../shared/data is absent); two bundled files with timing off."""
    if timing_off:
        return sorted(BUNDLED.glob("*.feather"))[:QUICK_FILES]
    shared: Path = request.getfixturevalue("shared_data")
    return [shared / "universe-1h"]


@pytest.fixture(scope="module")
def universe(replay_paths: list[Path], timing_off: bool) -> list[CandleSeries]:
    """All of universe-1h, loaded once."""
    series = load_universe(replay_paths)
    assert timing_off or sum(len(s) for s in series) == 605_090
    return series


@pytest.fixture(scope="module")
def config() -> Config:
    """The shipped config: baseline, moderate, aggressive, unhinged."""
    return load_config()


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def _median_seconds(benchmark: Any, fallback: Callable[[], object]) -> float:
    """The benchmark's median, or one timed call when benchmarking is disabled."""
    if benchmark.stats is not None:
        return float(benchmark.stats.stats.median)
    t = time.perf_counter()
    fallback()
    return time.perf_counter() - t


def test_replay_universe_rust_vs_reference(
    benchmark: Any,
    universe: list[CandleSeries],
    config: Config,
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Rust replay of universe-1h × 4 variants; once through the reference for the speed ratio."""
    result = benchmark.pedantic(
        replay_series, args=(universe, config), rounds=5, iterations=1, warmup_rounds=1
    )
    rust_s = _median_seconds(benchmark, lambda: replay_series(universe, config))
    work = sum(len(s) for s in universe) * len(config.variants)
    benchmark.extra_info["candle_variants_per_s"] = work / rust_s

    # The reference is slow (seconds): one run, which is also a full oracle check of the benchmarked result.
    t = time.perf_counter()
    ref = reference_replay(
        universe, [v.engine_params() for v in config.variants], stop_pct_rule=ENGINE_STOP_PCT_RULE
    )
    ref_s = time.perf_counter() - t
    assert not differences(result, ref)
    benchmark.extra_info["reference_s"] = ref_s

    _say(
        capsys,
        f"replay universe-1h: {work:,} candle·variants in {rust_s * 1e3:.1f} ms (median) = "
        f"{work / rust_s / 1e6:.1f} M candle·variants/s; Python reference {ref_s:.2f} s",
    )
    record_ratio(
        "replay universe-1h x4 variants: Rust vs Python reference",
        ref_s / rust_s,
        f"Rust {rust_s * 1e3:.0f} ms median, reference {ref_s:.1f} s, one run",
        better="higher",
    )


def test_replay_universe_peak_rss(
    benchmark: Any, replay_paths: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Peak resident memory of a fresh process that loads universe-1h and replays it (4 variants)."""

    def run() -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_SCRIPT, *map(str, replay_paths)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    m = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(m)
    _say(
        capsys,
        f"replay universe-1h peak RSS: {m['peak_mb']:.0f} MB (imports {m['imports_mb']:.0f} MB, candles "
        f"loaded {m['after_load_mb']:.0f} MB, the replay added {m['peak_mb'] - m['after_load_mb']:.0f} MB; "
        f"replay {m['replay_s'] * 1e3:.0f} ms, {m['trades']} trades)",
    )
