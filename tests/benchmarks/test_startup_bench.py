"""What a user waits for at the prompt: each command from start to exit, as a fresh process.

Reports, never asserts: the wall time of ``sigil --help``, ``sigil probe`` (the timer's minute check,
against a running database with a fresh heartbeat; as the timer runs it, from the config's digest, and
with no digest to read, as after a change of the config), ``sigil status``, and ``sigil replay`` of the
bundled data and of universe-1h (that one also both ways), each beside the bare interpreter's start-up
(``python -c pass``) timed in the same rounds, taken in turn so that a busy moment of the machine falls
on both. The ratio (command over interpreter) is what the gate compares; the milliseconds are the
README's figures.

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
from sigil.config_digest import ENV_CACHE_DIR
from sigil.store import Database, HeartbeatStore, PassStats
from tests.support.data import BUNDLED, SHARED_UNIVERSE

RecordRatio = Callable[..., None]

#: Rounds per command when timed (each also runs the interpreter once), after one unmeasured round.
ROUNDS = 9
REFERENCE = "python -c pass"

#: The replay of universe-1h: timed from the config's digest, and validating the config every run.
UNIVERSE_REPLAY = ["replay", "--data", str(SHARED_UNIVERSE), "--quiet"]

#: Command name → its arguments (``{db}`` is the database URL).
COMMANDS: dict[str, list[str]] = {
    "sigil --help": ["--help"],
    "sigil probe": ["probe", "--database-url", "{db}"],
    "sigil probe (config validated, no digest)": ["probe", "--database-url", "{db}"],
    "sigil status": ["status", "--database-url", "{db}"],
    "sigil replay (bundled data)": ["replay", "--data", str(BUNDLED), "--quiet"],
    "sigil replay (universe-1h)": UNIVERSE_REPLAY,
    "sigil replay (universe-1h, config validated, no digest)": UNIVERSE_REPLAY,
}

#: Environment of a case beyond the test's: a cache directory that cannot be made (a path under a
#: file) leaves the probe or the replay no digest, so every run validates the config.
ENV: dict[str, dict[str, str]] = {
    name: {ENV_CACHE_DIR: "/dev/null/none"}
    for name in (
        "sigil probe (config validated, no digest)",
        "sigil replay (universe-1h, config validated, no digest)",
    )
}

#: What a case cannot go below, timed beside it: the probe talks to PostgreSQL through asyncpg, whose
#: import (with asyncio's) is most of its start-up once the config comes from its digest.
FLOOR = dict.fromkeys(("sigil probe", "sigil probe (config validated, no digest)"), "import asyncio, asyncpg")


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


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the timed commands' bytecode is written and read (``PYTHONPYCACHEPREFIX``)."""
    return tmp_path_factory.mktemp("pycache")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_start_up(
    benchmark: Any,
    name: str,
    db_url: str,
    timing_off: bool,
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
    pycache: Path,
) -> None:
    if "universe-1h" in name and (timing_off or not SHARED_UNIVERSE.is_dir()):
        name = "sigil replay (bundled data)"  # the case still runs its command once; nothing recorded
        timed = False
    else:
        timed = not timing_off
    asyncio.run(fresh_heartbeat(db_url))
    # The outer environment must not choose the database or the config behind the benchmark's back.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SIGIL_DATABASE_URL", "SIGIL_HOME", "PYTHONDONTWRITEBYTECODE")
    }
    # Timed as installed: an installed package has its bytecode compiled, a checkout may not (and a
    # shell may forbid writing it). The unmeasured first round writes it here, for both commands.
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(ENV.get(name, {}))
    argv = sigil_command() + [a.replace("{db}", db_url) for a in COMMANDS[name]]
    reference = [sys.executable, "-c", "pass"]
    floor = [sys.executable, "-c", FLOOR[name]] if name in FLOOR else None
    own: list[float] = []
    bare: list[float] = []
    least: list[float] = []

    def one_round() -> None:
        own.append(wall_s(argv, env))
        bare.append(wall_s(reference, env))
        if floor is not None:
            least.append(wall_s(floor, env))

    rounds = ROUNDS if timed else 1
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1 if timed else 0)
    if not timed:
        return
    own, bare = own[-rounds:], bare[-rounds:]
    case = f"start-up {name}"
    record_timing(case, "sigil", statistics.median(own), min(own))
    record_timing(case, REFERENCE, statistics.median(bare), min(bare))
    record_ratio(f"{case} wall (ms)", statistics.median(own) * 1e3, "median", better="report")
    also = ""
    if floor is not None:
        least = least[-rounds:]
        record_timing(case, f"python -c '{FLOOR[name]}'", statistics.median(least), min(least))
        also = f", importing its database driver alone {statistics.median(least) * 1e3:.0f} ms"
    with capsys.disabled():
        print(
            f"\n{name}: {statistics.median(own) * 1e3:.0f} ms median, {min(own) * 1e3:.0f} ms fastest "
            f"(interpreter alone {statistics.median(bare) * 1e3:.0f} ms{also})"
        )
