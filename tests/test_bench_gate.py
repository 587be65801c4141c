"""The benchmark gate fails when it should: a baseline written by a real (tiny) benchmark run through
the shipped plugin, compared with itself (passes), with a tampered copy (one ratio made 2× better:
fails and names the case), with a run that lost a case (fails, names it), and under tolerances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sigil.bench import gate
from sigil.bench.plugin import FASTEST
from sigil.bench.ratios import RatiosFile

BENCHMARKS = """
def _loop():
    return [x * x for x in range(200)]


def test_squares_sigil(benchmark, timing):
    benchmark(sum, range(200))
    timing("squares", "sigil", units=200, unit="item")


def test_squares_loop(benchmark, timing):
    benchmark(_loop)
    timing("squares", "loop", units=200, unit="item")


def test_speedup(record_ratio):
    record_ratio("replay speed-up", 100.0, "made up", better="higher")


def test_rss(record_ratio):
    record_ratio("peak RSS (MiB)", 150.0, better="report")
"""
MEDIANS = "squares: sigil/loop"
RATIO = MEDIANS + FASTEST


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``make bench-save`` leaves: pytest-benchmark's saved run and Sigil's ratios file."""
    root = tmp_path_factory.mktemp("bench")
    (root / "test_tiny.py").write_text(BENCHMARKS, encoding="utf-8")
    store = root / ".benchmarks"
    # Only the two plugins a benchmark run needs: the others' start-up would be most of the time.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "pytest_benchmark.plugin", "-p", "sigil.bench.plugin"]
    cmd += ["-p", "no:cacheprovider"]
    cmd += ["--rootdir", str(root), str(root / "test_tiny.py"), "--benchmark-warmup=off"]
    cmd += ["--benchmark-min-rounds=3", "--benchmark-max-time=0.001", "--benchmark-save=baseline"]
    cmd += [f"--benchmark-storage=file://{store}", f"--sigil-ratios={store / 'baseline.json'}"]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(store.glob("*/0001_baseline.json")), "pytest-benchmark's own run was not saved"
    return store / "baseline.json"


def _edit(src: Path, dst: Path, changes: dict[str, Callable[[float], float] | None]) -> Path:
    """A copy of a ratios file with some figures changed (``None``: the case removed)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    for case, change in changes.items():
        if change is None:
            del data["ratios"][case]
        else:
            data["ratios"][case] = change(data["ratios"][case])
    dst.write_text(json.dumps(data), encoding="utf-8")
    return dst


def test_the_run_writes_ratios_with_the_commit_and_the_machine(saved: Path) -> None:
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert set(data["ratios"]) == {RATIO, MEDIANS, "replay speed-up", "peak RSS (MiB)"}
    assert data["better"] == {
        RATIO: "lower",  # the fastest rounds' ratio is gated, the medians' reported
        MEDIANS: "report",
        "replay speed-up": "higher",
        "peak RSS (MiB)": "report",
    }
    timings = {t["impl"]: t for t in data["timings"]}
    assert data["ratios"][RATIO] == timings["sigil"]["min_s"] / timings["loop"]["min_s"]
    assert data["ratios"][MEDIANS] == timings["sigil"]["median_s"] / timings["loop"]["median_s"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert data["commit"] == head.stdout.strip()  # the checkout the measured sigil comes from
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert f": {data['machine']['cpu']}" in cpuinfo
    flags = set(next(ln for ln in cpuinfo.splitlines() if ln.startswith("flags")).split())
    want = "AVX-512" if {"avx512f", "fma"} <= flags else "AVX2/FMA" if {"avx2", "fma"} <= flags else None
    assert data["machine"]["vector"] == (want or "no AVX2/FMA")


def test_an_unchanged_baseline_passes(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate.main([str(saved), str(saved)]) == 0
    out = capsys.readouterr().out
    assert "all 2 gated case(s) within tolerance" in out
    assert RATIO in out and "report" in out


def test_a_baseline_made_2x_better_fails_and_names_the_case(saved: Path, tmp_path: Path) -> None:
    tampered = _edit(saved, tmp_path / "tampered.json", {RATIO: lambda v: v / 2})
    r = subprocess.run(
        [sys.executable, "-m", "sigil.bench.gate", str(tampered), str(saved)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stdout
    (row,) = [line for line in r.stdout.splitlines() if line.startswith(RATIO)]
    assert row.split()[-1] == "WORSE" and "+100.0%" in row
    assert f"1 case(s) failed: {RATIO} (WORSE)" in r.stdout


def test_a_higher_is_better_figure_fails_when_it_falls(saved: Path, tmp_path: Path) -> None:
    tampered = _edit(saved, tmp_path / "tampered.json", {"replay speed-up": lambda v: v * 2})
    rows = gate.compare(RatiosFile.read(tampered), RatiosFile.read(saved), gate.Tolerances())
    assert {r.case: r.verdict for r in rows}["replay speed-up"] == gate.WORSE


def test_a_missing_case_is_reported_and_fails(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current = _edit(saved, tmp_path / "current.json", {RATIO: None})
    assert gate.main([str(saved), str(current)]) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith(RATIO)]
    assert row.split()[-1] == "MISSING"
    # ... and a case only the new run has is listed, not failed
    assert gate.main([str(current), str(saved)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(RATIO)]
    assert row.split()[-1] == "new"


def test_per_case_tolerances(saved: Path, tmp_path: Path) -> None:
    worse = _edit(saved, tmp_path / "worse.json", {RATIO: lambda v: v * 1.2})
    assert gate.main([str(saved), str(worse)]) == 1  # 20 % worse, default 15 %
    loose = tmp_path / "tolerances.toml"
    loose.write_text('default = 0.15\n[cases]\n"squares: *" = 0.3\n', encoding="utf-8")
    assert gate.main([str(saved), str(worse), "--tolerances", str(loose)]) == 0
    exact = tmp_path / "exact.toml"
    exact.write_text(f'[cases]\n"squares: *" = 0.3\n"{RATIO}" = 0.1\n', encoding="utf-8")
    assert gate.Tolerances.read(exact).of(RATIO) == 0.1  # an exact name wins over a pattern
    assert gate.main([str(saved), str(worse), "--tolerances", str(exact)]) == 1


def test_report_only_figures_never_fail(saved: Path, tmp_path: Path) -> None:
    bigger = _edit(saved, tmp_path / "bigger.json", {"peak RSS (MiB)": lambda v: v * 10})
    assert gate.main([str(saved), str(bigger)]) == 0


def test_the_shipped_tolerances_file_reads() -> None:
    shipped = gate.Tolerances.read(Path(__file__).parent / "benchmarks" / "tolerances.toml")
    assert shipped.default == gate.DEFAULT_TOLERANCE
    assert shipped.of("atr 10k bars: sigil/talib") == shipped.default
    assert shipped.of("atr 1M bars: sigil/talib") > shipped.default


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("{", "not a ratios file"),
        ('{"format": 1, "ratios": {"a": "fast"}}', "case 'a': bad value 'fast'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, saved: Path, capsys: pytest.CaptureFixture[str], content: str | None, problem: str
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    assert gate.main([str(bad), str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err and str(bad) in err
