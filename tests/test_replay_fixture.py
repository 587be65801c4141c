"""``sigil replay --json`` against the output of release 0.1.0, kept as fixtures: the trades, open
positions and every metric 0.1.0 wrote must come out bit for bit the same (later releases may add
keys; none may change)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def _replay_json(data: Path, out: Path) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "sigil", "replay", "--data", str(data), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def _restricted(new: Any, old: Any) -> Any:
    """``new`` cut down to the keys ``old`` has (dicts, recursively); lists and values as they are."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: _restricted(new[k], v) for k, v in old.items() if k in new}
    return new


def _check(data: Path, fixture: str, tmp_path: Path) -> None:
    want = json.loads(gzip.decompress((FIXTURES / fixture).read_bytes()))
    got = _replay_json(data, tmp_path / "out.json")
    # Python's float repr round-trips exactly, so equal documents mean bit-identical numbers.
    assert got["trades"] == want["trades"]
    assert got["open_positions"] == want["open_positions"]
    assert _restricted(got, want) == want


def test_bundled_replay_equals_release_0_1_0(bundled_data: Path, tmp_path: Path) -> None:
    _check(bundled_data, "replay-bundled-0.1.0.json.gz", tmp_path)


@pytest.mark.slow
def test_universe_replay_equals_release_0_1_0(shared_data: Path, tmp_path: Path) -> None:
    _check(shared_data / "universe-1h", "replay-universe-1h-0.1.0.json.gz", tmp_path)
