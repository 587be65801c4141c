"""Exit codes, one meaning each on every command: 0 success, 1 cannot reach a database or the
exchange, 2 bad input, 3 scheduler stalled (tests/daemon), 4 instance held elsewhere; the probe keeps
0 fresh / 1 stale / 2 cannot tell. Every failure is one line on stderr, without a traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import sigil.cli.status
from sigil.cli import COMMANDS, main
from sigil.data.candles import load_universe
from sigil.errors import (
    EXIT_BAD_INPUT,
    EXIT_INSTANCE_HELD,
    EXIT_UNAVAILABLE,
    DatabaseUnavailable,
    ExchangeRejected,
    ExchangeUnavailable,
    InstanceHeld,
    MigrationError,
    exit_status,
)
from sigil.exchange.sim import SimExchange
from tests.support.data import BUNDLED, REPO
from tests.support.pg import run_cli


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def unreachable_db() -> str:
    return f"postgresql://u:secret@127.0.0.1:{closed_port()}/x"


def one_line_error(r: subprocess.CompletedProcess[str], command: str, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith(f"sigil {command}: error: ")]
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    return errors[0]


@pytest.fixture
async def sim() -> AsyncIterator[SimExchange]:
    """The simulator on 127.0.0.1, so that a daemon reaches an exchange without the internet."""
    exchange = SimExchange(load_universe([BUNDLED]), speed=0)
    await exchange.start(0)
    try:
        yield exchange
    finally:
        await exchange.stop()


def test_errors_map_to_their_exit_status() -> None:
    assert exit_status(DatabaseUnavailable("x")) == exit_status(ExchangeUnavailable("x")) == EXIT_UNAVAILABLE
    assert exit_status(ConnectionRefusedError()) == exit_status(TimeoutError()) == EXIT_UNAVAILABLE
    assert exit_status(InstanceHeld("held by host pid 1", holder="host pid 1")) == EXIT_INSTANCE_HELD
    for bad in (ValueError("x"), MigrationError("x"), ExchangeRejected("x"), FileNotFoundError("x")):
        assert exit_status(bad) == EXIT_BAD_INPUT


def test_an_instance_held_elsewhere_exits_4(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    def held(args: Any) -> int:
        raise InstanceHeld("instance main is held by host1 pid 42 since 2025-01-01T00:00:00Z")

    monkeypatch.setattr(sigil.cli.status, "run", held)
    assert main(["status"]) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        "sigil status: error: instance main is held by host1 pid 42 since 2025-01-01T00:00:00Z"
    ]


@pytest.mark.parametrize("command", ["migrate", "status", "report"])
def test_an_unreachable_database_exits_1(command: str) -> None:
    line = one_line_error(run_cli(command, "--database-url", unreachable_db()), command, 1)
    assert "cannot connect to postgresql://u:***@127.0.0.1:" in line and "secret" not in line


async def test_the_daemon_exits_1_when_the_database_is_unreachable(sim: SimExchange) -> None:
    r = await asyncio.to_thread(
        run_cli, "daemon", "--database-url", unreachable_db(), "--exchange-url", str(sim.url)
    )
    assert "cannot connect to postgresql://u:***@127.0.0.1:" in one_line_error(r, "daemon", 1)


def test_the_probe_cannot_tell_when_the_database_is_unreachable() -> None:
    r = run_cli("probe", "--database-url", unreachable_db())
    assert r.returncode == 2 and r.stdout.startswith("sigil probe: UNKNOWN: cannot connect"), r


@pytest.mark.parametrize(
    ("command", "args", "problem"),
    [
        ("migrate", ["--database-url", "mysql://u@localhost/x"], "expected a PostgreSQL URL"),
        ("status", ["--config", "/no/such/dir"], "/no/such/dir"),
        ("report", ["--plot", "/no/such/dir/equity.png"], "the folder does not exist"),
        ("daemon", ["--set", "daemon.no_such_key=1"], "no_such_key"),
        ("replay", ["--data", "/no/such/file.csv"], "file not found"),
        ("exchange-sim", ["--port", "0", "--data", "/no/such/dir"], "file not found"),
    ],
)
def test_bad_input_exits_2(command: str, args: list[str], problem: str) -> None:
    assert problem in one_line_error(run_cli(command, *args), command, 2)


def test_the_probe_cannot_tell_on_bad_input() -> None:
    r = run_cli("probe", "--config", "/no/such/dir")
    assert r.returncode == 2 and r.stdout.startswith("sigil probe: UNKNOWN"), r


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database, in a stable order."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for t in tables:
            rows = conn.execute(f'SELECT * FROM "{t}"').fetchall()
            out[t] = sorted(rows, key=repr)
        return out


@pytest.mark.postgres
def test_the_daemon_exits_1_when_the_exchange_is_unreachable_and_writes_nothing(empty_db_url: str) -> None:
    migrated = run_cli("migrate", "--database-url", empty_db_url)
    assert migrated.returncode == 0, migrated.stderr
    # Without accounts for its variants, a daemon that started would create them: a write to see.
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("DELETE FROM variant_accounts")
    before = snapshot(empty_db_url)
    assert "apscheduler_jobs" in before and not before["scanner_heartbeats"]
    r = run_cli(
        "daemon",
        "--database-url",
        empty_db_url,
        "--exchange-url",
        f"http://127.0.0.1:{closed_port()}",
        "--set",
        "exchange.retries=1",
        "--set",
        "exchange.backoff_base_s=0.1",
    )
    line = one_line_error(r, "daemon", 1)
    assert "cannot reach the exchange at start-up" in line, line
    assert snapshot(empty_db_url) == before


def test_the_unit_restarts_what_the_readme_calls_retryable() -> None:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "docs" / "sigil.service").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["Restart"] == ["always"]
    # Only bad input is final: 1 (unreachable), 3 (stalled) and 4 (held) are restarted.
    assert settings["RestartPreventExitStatus"] == ["2"]
    # A failed ExecStartPre is restarted whatever its status: migrate runs in the main process instead.
    assert "ExecStartPre" not in settings
    (start,) = settings["ExecStart"]
    assert " migrate " in start and "&& exec " in start and start.index(" migrate ") < start.index(" daemon ")
    assert settings["StartLimitIntervalSec"] == ["0"], "a long database outage must not end the retries"

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Exit codes") :]
    for code in range(5):
        assert f"\n| {code} | " in table
    for command in COMMANDS:
        assert f"`sigil {command}`" in table, command
