"""The wheel is self-contained: installed outside the repository, `sigil replay` runs on its config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROGRAM = "import sys, sigil.cli; print(sigil.cli.__file__); sys.exit(sigil.cli.main(sys.argv[1:]))"


def test_wheel_runs_replay_outside_the_repository(tmp_path: Path) -> None:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or "maturin"
    subprocess.run(
        [maturin, "build", "--release", "-q", "--out", str(tmp_path / "dist")],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=900,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "sigil/defaults/config/sigil.yaml",
        "sigil/defaults/config/variants/baseline.yaml",
        "sigil/defaults/config/legacy/fixed3.yaml",
        "sigil/defaults/migrations/0001_micro_positions.sql",
        "sigil/defaults/migrations/0003_micro_positions_variant_id.sql",
        "sigil/defaults/migrations/0005_live_fills.sql",
        "sigil/_core.pyi",
        "sigil/py.typed",
    ):
        assert shipped in names, shipped
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(REPO / "data" / "NFP_USDT-1h.feather", work)
    # Dependencies come from this environment; Sigil itself only from the installed wheel.
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run(
        [sys.executable, "-c", PROGRAM, "replay", "--data", "NFP_USDT-1h.feather"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(target))
    assert "baseline" in r.stdout and "unhinged" in r.stdout
