"""``sigil probe`` over the synchronous client: the verdict and its words are asyncpg's path's, the
driver stays unimported while the client can read, and a silent server is "cannot tell" in time."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from sigil.config import load_config
from sigil.config_digest import ProbeSettings
from sigil.daemon.heartbeat import PROBE_FRESH, PROBE_STALE, PROBE_UNKNOWN, ProbeResult, probe, probe_now
from sigil.store import Database, HeartbeatStore, PassStats
from sigil.store.target import with_database

pytestmark = pytest.mark.postgres

SETTINGS = ProbeSettings.of(load_config())


def both(url: str, max_age: float = 60, **kw: object) -> tuple[ProbeResult, ProbeResult]:
    """The verdict of ``probe_now`` and of asyncpg's ``probe``, taken one after the other."""
    fast = probe_now(SETTINGS, url, max_age, **kw)  # type: ignore[arg-type]
    slow = asyncio.run(probe(SETTINGS, url, max_age, **kw))  # type: ignore[arg-type]
    return fast, slow


def without_age(line: str) -> str:
    return re.sub(r"completed [0-9.]+s ago", "completed <age> ago", line)


async def beat(url: str, instance: str = "main", ago_s: float = 1.0) -> None:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        done = datetime.now(UTC) - timedelta(seconds=ago_s)
        await HeartbeatStore(db, instance).record(PassStats(done - timedelta(seconds=1), done, 4))
    finally:
        await db.close()


def test_the_same_verdicts_both_ways(db_url: str) -> None:
    fast, slow = both(db_url)
    assert fast == slow and fast.code == PROBE_STALE  # no pass yet: the same line, no age
    asyncio.run(beat(db_url, "main"))
    asyncio.run(beat(db_url, "other", ago_s=120))
    for kw, code in (
        ({}, PROBE_FRESH),
        ({"instance": "other"}, PROBE_STALE),
        ({"max_lag_s": 60.0}, PROBE_STALE),
    ):
        fast, slow = both(db_url, **kw)
        assert (fast.code, without_age(fast.line)) == (
            slow.code,
            without_age(slow.line),
        ) and fast.code == code


def test_a_schema_not_migrated_is_cannot_tell_in_the_same_words(empty_db_url: str) -> None:
    fast, slow = both(empty_db_url)
    assert fast == slow and fast.code == PROBE_UNKNOWN and "sigil migrate" in fast.line


def test_a_refusal_is_worded_by_asyncpg_as_before(db_url: str) -> None:
    fast, slow = both(with_database(db_url, "no_such_database"))
    assert fast == slow and fast.code == PROBE_UNKNOWN and "no_such_database" in fast.line


def test_a_silent_server_is_cannot_tell_within_the_connect_timeout() -> None:
    quick = dataclasses.replace(
        SETTINGS,
        database=dataclasses.replace(SETTINGS.database, connect_timeout_s=0.5, command_timeout_s=0.5),
    )
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody ever answers
        t0 = time.monotonic()
        got = probe_now(quick, f"postgresql://u:p@127.0.0.1:{silent.getsockname()[1]}/d", 60)
        took = time.monotonic() - t0
    assert got.code == PROBE_UNKNOWN and got.line.startswith("UNKNOWN: cannot connect"), got
    assert 0.4 < took < 0.95, took  # one wait, not the client's and then asyncpg's


FOOTPRINT = """
import sys
from sigil.cli import main
code = main(["probe", "--database-url", sys.argv[1]])
print("asyncpg" in sys.modules, "asyncio" in sys.modules)
sys.exit(code)
"""


def test_the_probe_imports_no_driver_while_the_client_can_read(db_url: str, tmp_path: object) -> None:
    asyncio.run(beat(db_url))
    env = {"PATH": "/usr/bin:/bin", "SIGIL_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    ok = subprocess.run(
        [sys.executable, "-c", FOOTPRINT, db_url], capture_output=True, text=True, env=env, timeout=60
    )
    assert ok.returncode == PROBE_FRESH and ok.stdout.splitlines()[-1] == "False False", ok
    # A refusal takes asyncpg's path (which then words it): the fallback is really there.
    refused = subprocess.run(
        [sys.executable, "-c", FOOTPRINT, with_database(db_url, "no_such_database")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == PROBE_UNKNOWN and refused.stdout.splitlines()[-1] == "True True", refused
