"""``sigil doctor`` against the test database and the simulator on 127.0.0.1: every check passes
(a simulator's clock is only a warning), and a closed exchange port, missing live keys and a taken
health port each fail their line and exit 1, printing no key."""

from __future__ import annotations

import asyncio
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigil.cli import main
from sigil.config import default_config_dir
from sigil.exchange.sim import SimExchange
from sigil.store import Database, HeartbeatStore, PassStats
from tests.support.daemon_stack import cut

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_with_port(dest: Path, port: int) -> Path:
    shutil.copytree(default_config_dir(), dest)
    main = dest / "sigil.yaml"
    text = main.read_text()
    assert "health_port: 8787" in text
    main.write_text(text.replace("health_port: 8787", f"health_port: {port}"))
    return dest


async def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """``sigil doctor ARGS`` in this process (in a thread: it runs its own event loop, the simulator
    runs on this one): its exit status and its lines."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["doctor", *args])
    return code, capsys.readouterr().out.splitlines()


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGIL_API_KEY", "SIGIL_API_SECRET", "SIGIL_API_TOKEN", "SIGIL_EXCHANGE_URL", "SIGIL_HOME"):
        monkeypatch.delenv(name, raising=False)


def verdicts(lines: list[str]) -> dict[str, str]:
    """check name → verdict (the name is the second column, possibly two words)."""
    out = {}
    for line in lines:
        verdict, rest = line[:5].strip(), line[6:]
        out[rest[:16].strip()] = verdict
    return out


async def test_every_check_passes_against_the_test_database_and_a_simulator(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    series = cut(tmp_path / "data", {"DOGE": (0, 200)})
    sim = SimExchange(series, speed=0, start_ms=int(series[0].time[100]))
    await sim.start(0)
    cfg = config_with_port(tmp_path / "cfg", free_port())
    db = await Database.open(db_url, min_size=1, max_size=2)
    now = datetime.now(UTC)
    await HeartbeatStore(db, "main").record(PassStats(now - timedelta(seconds=1), now, 1))
    await db.close()
    try:
        code, lines = await doctor(
            capsys, "--config", str(cfg), "--database-url", db_url, "--exchange-url", str(sim.url)
        )
    finally:
        await sim.stop()
    got = verdicts(lines)
    assert code == 0, "\n".join(lines)
    assert got == {
        "config": "ok",
        "database": "ok",
        "heartbeat main": "ok",
        "exchange": "ok",
        "clock": "warn",  # the simulator's clock is two years behind: worth a word, nothing more
        "keys": "ok",
        "health port": "ok",
    }, "\n".join(lines)
    assert any("schema at version" in line and "(current)" in line for line in lines)
    assert any("last pass" in line and "not running" in line for line in lines)


async def test_a_closed_exchange_port_missing_keys_and_a_taken_port_fail_and_exit_1(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGIL_API_KEY", "key-value-never-shown-42")
    closed = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = config_with_port(tmp_path / "cfg", int(taken.getsockname()[1]))
        code, lines = await doctor(
            capsys,
            "--config",
            str(cfg),
            "--database-url",
            db_url,
            "--exchange-url",
            f"http://127.0.0.1:{closed}",
            "--live",
        )
    got = verdicts(lines)
    assert code == 1, "\n".join(lines)
    assert (got["exchange"], got["keys"], got["health port"]) == ("FAIL", "FAIL", "FAIL"), lines
    assert got["database"] == "ok" and got["config"] == "ok"
    text = "\n".join(lines)
    assert f"127.0.0.1:{closed}" in text
    assert "SIGIL_API_SECRET" in text and "key-value-never-shown-42" not in text
    assert "--health-port or daemon.health_port" in text
    assert len(lines) == len(got), "one line per check"


async def test_a_bad_config_is_a_failed_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_with_port(tmp_path / "cfg", 0)
    (cfg / "sigil.yaml").write_text(
        (cfg / "sigil.yaml").read_text() + "\nnotify:\n  events: [open, opened]\n"
    )
    code, lines = await doctor(capsys, "--config", str(cfg))
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("FAIL  config"), lines
    assert "notify.events" in lines[0] and "'opened'" in lines[0]


def test_the_embedded_servers_data_directory_is_checked_for_room(tmp_path: Path) -> None:
    from sigil.ops.doctor import _data_dir_check

    new = _data_dir_check(tmp_path / "home" / "pgdata")
    assert new.verdict == "ok" and "will be created" in new.detail and "GiB free" in new.detail
    (tmp_path / "pgdata").mkdir()
    assert "(exists)" in _data_dir_check(tmp_path / "pgdata").detail
