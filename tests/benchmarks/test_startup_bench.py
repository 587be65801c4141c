"""What a user waits for at the prompt: each command from start to exit, as a fresh process.

Reports, never asserts: the wall time of ``sigil --help``, ``sigil probe`` (the timer's minute check,
against a running database with a fresh heartbeat), ``sigil status``, and ``sigil replay`` of the
bundled data and of universe-1h, each beside the bare interpreter's start-up (``python -c pass``)
timed in the same rounds, taken in turn so that a busy moment of the machine falls on both. The
ratio (command over interpreter) is what the gate compares; the milliseconds are the README's figures.

With timing off (``make test``) each command runs once, and universe-1h is left to the timed runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigil.bench.plugin import record_timing
from sigil.store import Database, HeartbeatStore, PassStats
from tests.support.data import BUNDLED, SHARED_UNIVERSE

RecordRatio = Callable[..., None]

#: Rounds per command when timed (each also runs the interpreter once), after one unmeasured round.
ROUNDS = 9
REFERENCE = "python -c pass"

#: Command name → its arguments (``{db}`` is the database URL).
COMMANDS: dict[str, list[str]] = {
    "sigil --help": ["--help"],
    "sigil probe": ["probe", "--database-url", "{db}"],
    "sigil status": ["status", "--database-url", "{db}"],
    "sigil replay (bundled data)": ["replay", "--data", str(BUNDLED), "--quiet"],
    "sigil replay (universe-1h)": ["replay", "--data", str(SHARED_UNIVERSE), "--quiet"],
}


def sigil_command() -> list[str]:
    """The ``sigil`` console script beside this interpreter (what a user runs), else ``-m sigil``."""
    script = Path(sys.executable).with_name("sigil")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sigil"]


def wall_s(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    elapsed = time.perf_counter() - t
    assert done.returncode == 0, done
    return elapsed


async def fresh_heartbeat(url: str) -> None:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        now = datetime.now(UTC)
        await HeartbeatStore(db, "main").record(PassStats(now - timedelta(seconds=1), now, 1))
    finally:
        await db.close()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_start_up(
    benchmark: Any,
    name: str,
    db_url: str,
    timing_off: bool,
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "universe-1h" in name and (timing_off or not SHARED_UNIVERSE.is_dir()):
        name = "sigil replay (bundled data)"  # the case still runs its command once; nothing recorded
        timed = False
    else:
        timed = not timing_off
    asyncio.run(fresh_heartbeat(db_url))
    # The outer environment must not choose the database or the config behind the benchmark's back.
    env = {k: v for k, v in os.environ.items() if k not in ("SIGIL_DATABASE_URL", "SIGIL_HOME")}
    argv = sigil_command() + [a.replace("{db}", db_url) for a in COMMANDS[name]]
    reference = [sys.executable, "-c", "pass"]
    own: list[float] = []
    bare: list[float] = []

    def one_round() -> None:
        own.append(wall_s(argv, env))
        bare.append(wall_s(reference, env))

    rounds = ROUNDS if timed else 1
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1 if timed else 0)
    if not timed:
        return
    own, bare = own[-rounds:], bare[-rounds:]
    case = f"start-up {name}"
    record_timing(case, "sigil", statistics.median(own), min(own))
    record_timing(case, REFERENCE, statistics.median(bare), min(bare))
    record_ratio(f"{case} wall (ms)", statistics.median(own) * 1e3, "median", better="report")
    with capsys.disabled():
        print(
            f"\n{name}: {statistics.median(own) * 1e3:.0f} ms median, {min(own) * 1e3:.0f} ms fastest "
            f"(interpreter alone {statistics.median(bare) * 1e3:.0f} ms)"
        )
