"""The portable wheel (``make wheel``: manylinux2014, linked by zig) installed in a fresh venv outside
the repository: ``sigil replay``, the Python API, the shipped benchmarks (timing off) and the AVX2/FMA
ATR kernel, chosen at run time, all run from it.

The wheel comes from ``tools/build_wheel.py``, which keeps one per state of the sources under
``target/wheel``: after ``make wheel`` (or an earlier run of this file) on the same tree this takes
no build at all; after a change to the sources the first run rebuilds (cargo's own cache in
``target/wheel`` keeps that to the changed crates, a few minutes for the engine). The venv gets only
the wheel (``pip install --no-deps``); its dependencies (numpy, pyarrow, ccxt..., and pytest with the
references for the benchmarks) are this environment's, reached through a ``.pth`` path entry, so no
package index is needed and ``sigil`` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sigil.data.candles import read_candles

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "tools" / "build_wheel.py"
PLATFORM_TAG = "manylinux_2_17_x86_64"
PERIOD = 14

# Run in the venv: sigil.atr(period argv[2]) of the series in argv[1] (hex floats), printed as hex floats.
ATR_SCRIPT = """
import json, sys
import numpy as np
import sigil
h, l, c = (np.array([float.fromhex(x) for x in col]) for col in json.load(open(sys.argv[1])))
out = sigil.atr(h, l, c, int(sys.argv[2]))
print(json.dumps({"sigil": sigil.__file__, "atr": [float(x).hex() for x in out]}))
"""

API_SCRIPT = """
import json, sys
import sigil
r = sigil.replay(sys.argv[1])
print(json.dumps({"sigil": sigil.__file__, "trades": len(r.trades), "variants": list(r.metrics)}))
"""


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The wheel of the current sources (built now if ``make wheel`` has not built it)."""
    r = subprocess.run([sys.executable, str(BUILD)], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the repository) with the wheel installed; its root."""
    root = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index"]
    r = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path entry: the development install's own .pth in that folder is not processed.
    (Path(purelib) / "sigil_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command from the venv's ``bin`` with a clean environment, in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(venv / "bin" / args[0]), *args[1:]]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_is_manylinux2014_and_ships_what_sigil_reads(wheel: Path) -> None:
    assert PLATFORM_TAG in wheel.name and "manylinux2014_x86_64" in wheel.name
    auditwheel = Path(sys.executable).parent / "auditwheel"
    report = subprocess.run([str(auditwheel), "show", str(wheel)], capture_output=True, text=True, check=True)
    assert f'consistent with the following platform tag:\n"{PLATFORM_TAG}"' in report.stdout
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "sigil/_core.abi3.so",
        "sigil/defaults/config/sigil.yaml",
        "sigil/defaults/config/variants/baseline.yaml",
        "sigil/defaults/config/legacy/fixed3.yaml",
        "sigil/defaults/migrations/0001_micro_positions.sql",
        "sigil/defaults/migrations/0003_micro_positions_variant_id.sql",
        "sigil/defaults/migrations/0005_live_fills.sql",
        "sigil/_core.pyi",
        "sigil/py.typed",
        "sigil/bench/__main__.py",
        "sigil/bench/atr.py",
        "sigil/bench/plugin.py",
    ):
        assert shipped in names, shipped


def test_sigil_replay_and_the_python_api_run_from_the_venv(venv: Path, tmp_path: Path) -> None:
    cli = run_in(venv, "sigil", "replay", "--data", str(REPO / "data"), "--json", "out.json", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "baseline" in cli.stdout and "unhinged" in cli.stdout
    written = json.loads((tmp_path / "out.json").read_text())
    api = run_in(venv, "python", "-c", API_SCRIPT, str(REPO / "data"), cwd=tmp_path)
    assert api.returncode == 0, api.stderr
    got = json.loads(api.stdout.strip().splitlines()[-1])
    assert got["sigil"].startswith(str(venv))  # the wheel's sigil, not the checkout's
    assert got["variants"] == list(written["variants"]) == ["baseline", "moderate", "aggressive", "unhinged"]
    assert got["trades"] == len(written["trades"]) > 0


def test_the_shipped_benchmarks_run_from_the_venv(venv: Path, tmp_path: Path) -> None:
    r = run_in(venv, "python", "-m", "sigil.bench", "--no-timing", "--data", str(REPO / "data"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    first = r.stdout.splitlines()[0]
    assert f"from {venv}" in first, first
    assert " passed" in r.stdout and "failed" not in r.stdout and "error" not in r.stdout.lower()


# --------------------------------------------------------------------------------------------------
# The AVX2/FMA kernel: told apart from the portable one by its roundings
# --------------------------------------------------------------------------------------------------


def _fused(a: float, b: float, c: float) -> float:
    """``a·b + c`` rounded once, as an FMA instruction does (exact rationals, one rounding)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _separate(a: float, b: float, c: float) -> float:
    return a * b + c


def _true_range(h: float, low: float, pc: float) -> float:
    return (h if h > pc else pc) - (low if low < pc else pc)


MulAdd = Callable[[float, float, float], float]


def kernel_atr(
    h: list[float], low: list[float], c: list[float], period: int, mul_add: MulAdd, lanes: int = 4
) -> list[float]:
    """The batch ATR exactly as ``rust/src/atr`` computes one short series: the seed, then blocks of
    ``lanes`` bars (4: the portable and AVX2 kernels; 8: AVX-512), each block's partial sums by
    shift steps of 1, 2 (and 4) bars, ``k^j·a + p_j`` per bar, and the tail bar by bar, with
    ``mul_add`` fused or not."""
    n = len(c)
    out = [float("nan")] * n
    total = 0.0
    for i in range(1, period + 1):
        total += _true_range(h[i], low[i], c[i - 1])
    a = total / period
    out[period] = a
    k1, k2 = (period - 1.0) / period, 1.0 / period
    k1_2 = k1 * k1
    k1_4 = k1_2 * k1_2
    k1_3 = k1_2 * k1
    pw = [k1, k1_2, k1_3, k1_4, k1_4 * k1, k1_4 * k1_2, k1_4 * k1_3, k1_4 * k1_4][:lanes]
    shifts = [(1, k1), (2, k1_2), (4, k1_4)][: lanes.bit_length() - 1]
    i = period + 1
    while i + lanes <= n:
        q = [_true_range(h[i + j], low[i + j], c[i + j - 1]) * k2 for j in range(lanes)]
        for by, factor in shifts:
            # Lanes below the shift keep their value (a zero factor in the kernels: exact).
            q = [q[j] if j < by else mul_add(factor, q[j - by], q[j]) for j in range(lanes)]
        for j in range(lanes):
            out[i + j] = mul_add(pw[j], a, q[j])
        a = mul_add(pw[-1], a, q[-1])
        i += lanes
    while i < n:
        a = mul_add(k1, a, _true_range(h[i], low[i], c[i - 1]) * k2)
        out[i] = a
        i += 1
    return out


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_the_wheel_runs_the_avx2_fma_kernel(venv: Path, tmp_path: Path) -> None:
    """The wheel is built for generic x86-64, so its portable kernel rounds twice per multiply-add;
    only the vector kernels, picked at run time, round once, in blocks of four bars (AVX2/FMA) or
    eight (AVX-512). The output bit for bit therefore says which one ran: the fastest this CPU has
    (on a CPU without AVX2 and FMA, the portable one)."""
    s = read_candles(REPO / "data" / "BTC_USDT-1h.feather")
    cols = [np.asarray(x[:2_001], dtype=np.float64).tolist() for x in (s.high, s.low, s.close)]
    fused = kernel_atr(*cols, PERIOD, _fused)
    fused8 = kernel_atr(*cols, PERIOD, _fused, lanes=8)
    separate = kernel_atr(*cols, PERIOD, _separate)
    # The roundings and the blocks do differ here.
    assert len({tuple(x.hex() for x in k) for k in (fused, fused8, separate)}) == 3
    series = tmp_path / "series.json"
    series.write_text(json.dumps([[x.hex() for x in col] for col in cols]))
    r = run_in(venv, "python", "-c", ATR_SCRIPT, str(series), str(PERIOD), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["sigil"].startswith(str(venv))
    flags = _cpu_flags()
    want = fused8 if {"avx512f", "fma"} <= flags else fused if {"avx2", "fma"} <= flags else separate
    assert got["atr"] == [x.hex() for x in want]
