"""``sigil migrate`` and ``sigil status`` as a user runs them: subprocesses, output, exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigil.cli import main
from sigil.store import Database, HeartbeatStore, PassStats, PositionStore
from sigil.store.migrate import load_migrations
from tests.support.pg import run_cli
from tests.support.store_workers import order_args

pytestmark = pytest.mark.postgres


def one_line_error(result: object, command: str) -> str:
    out, err, code = result.stdout, result.stderr, result.returncode  # type: ignore[attr-defined]
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sigil {command}: error: "), err
    assert "Traceback" not in err
    return str(lines[0])


def test_migrate_and_status_on_the_embedded_default(sigil_home: Path) -> None:
    env = {"SIGIL_HOME": str(sigil_home / "home")}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    pgdata = sigil_home / "home" / "pgdata"
    assert f"database: embedded PostgreSQL in {pgdata}" in first.stdout
    assert "applied 0001_micro_positions.sql" in first.stdout
    assert "accounts created: baseline, moderate, aggressive, unhinged" in first.stdout
    assert not (pgdata / "postmaster.pid").exists(), "the embedded server is stopped at exit"

    again = run_cli("migrate", env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout and "applied" not in again.stdout

    status = run_cli("status", env=env)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "heartbeat  none yet" in out and "open positions (0)" in out and "cooldowns (0 active)" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["baseline"], ["unhinged"])]
    assert rows == [
        ["baseline", "1000.00", "1000.00", "0", "0", "0.00"],
        ["unhinged", "1000.00", "1000.00", "0", "0", "0.00"],
    ]
    assert not (pgdata / "postmaster.pid").exists()


async def test_migrate_and_status_on_a_given_url(empty_db_url: str) -> None:
    migrated = run_cli("migrate", "--database-url", empty_db_url)
    assert migrated.returncode == 0, migrated.stderr
    n = len(load_migrations())
    assert f"schema at version {n} ({n} migration(s) applied now)" in migrated.stdout
    assert "embedded" not in migrated.stdout and "host=" in migrated.stdout

    db = await Database.open(empty_db_url, min_size=1, max_size=1)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        store = PositionStore(db)
        await store.open_position(
            **order_args("moderate", "PEPE/USDT", now, timedelta(hours=8), stop_pct=0.04, stop_price=1.92)
        )
        await HeartbeatStore(db).record(
            PassStats(now - timedelta(seconds=90), now - timedelta(seconds=88), 150, 3, 1)
        )
    finally:
        await db.close()

    status = run_cli("status", "--database-url", empty_db_url)
    assert status.returncode == 0, status.stderr
    assert (
        "open positions (1)" in status.stdout and "moderate" in status.stdout and "PEPE/USDT" in status.stdout
    )
    assert "cooldowns (1 active)" in status.stdout and "(in 7h 59m)" in status.stdout
    assert "150 symbols, 3 signals, 1 opens" in status.stdout

    as_json = run_cli("status", "--json", env={"SIGIL_DATABASE_URL": empty_db_url})
    assert as_json.returncode == 0, as_json.stderr
    state = json.loads(as_json.stdout)
    assert state["variants"]["moderate"]["open"] == 1
    assert state["variants"]["moderate"]["balance"] == pytest.approx(1000.0 - 10.01)
    assert 88 <= state["heartbeat"]["age_s"] < 120
    assert [p["symbol"] for p in state["open_positions"]] == ["PEPE/USDT"]
    assert state["cooldowns"][0]["until"].endswith("Z")


def test_status_on_an_unmigrated_database_says_what_to_do(empty_db_url: str) -> None:
    line = one_line_error(run_cli("status", "--database-url", empty_db_url), "status")
    assert "run `sigil migrate`" in line


@pytest.mark.parametrize(
    ("command", "url", "message"),
    [
        ("migrate", "mysql://u@localhost/x", "expected a PostgreSQL URL"),
        ("status", "not a url", "expected a PostgreSQL URL"),
        ("status", "postgresql://u:secret@localhost:notaport/x", "port"),
    ],
)
def test_bad_database_url_exits_2_with_one_line(command: str, url: str, message: str) -> None:
    line = one_line_error(run_cli(command, "--database-url", url), command)
    assert message in line and "secret" not in line


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        ("--plot", "x.txt", "the file name must end in .png, .svg or .pdf"),
        ("--html", "x.pdf", "the file name must end in .html or .htm"),
        ("--json", "/proc/x.json", "--json /proc/x.json: cannot write there"),
    ],
)
def test_report_checks_its_outputs_before_reading_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, problem: str
) -> None:
    path = value if value.startswith("/") else str(tmp_path / value)
    ok = tmp_path / "ok.json"
    # A closed port: reaching for the database would exit 1, not 2. In this process (main() is the
    # console script's), which is much quicker than a subprocess per case.
    code = main(["report", "--database-url", "postgresql://u@127.0.0.1:9/x", "--json", str(ok), flag, path])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("sigil report: error: ") and problem in err
    assert out == "", "no table: nothing was read"
    assert list(tmp_path.iterdir()) == [], "nothing is written"
