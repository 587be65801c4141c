"""The daemon's HTTP address is checked before anything starts: a health port another process holds,
or a non-loopback ``daemon.health_host`` without an API token, is one line naming the setting and
exit 2 — before the exchange is asked (its port here is closed, which would be exit 1) and before
the database is written to."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from sigil.daemon.http_address import check_http_address, is_loopback
from sigil.errors import ConfigError
from tests.support.daemon_stack import rows, sigil_env

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sigil", "daemon", "--database-url", url]
    cmd += ["--exchange-url", f"http://127.0.0.1:{closed_port()}", "--set", "exchange.retries=0", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**sigil_env(), **(env or {})}, timeout=60, check=False
    )


def written(url: str) -> list[int]:
    return [
        rows(url, f"SELECT count(*) AS n FROM {t}")[0]["n"]
        for t in ("events", "scanner_heartbeats", "daemon_instances", "micro_positions")
    ]


def test_a_taken_health_port_is_named_and_exit_2_before_anything_starts(db_url: str) -> None:
    before = written(db_url)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = int(other.getsockname()[1])
        r = daemon(db_url, "--health-port", str(port))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"health port {port} on 127.0.0.1 is in use" in lines[0]
    assert "--health-port or daemon.health_port" in lines[0]
    assert written(db_url) == before


def test_a_public_health_host_needs_an_api_token(db_url: str) -> None:
    before = written(db_url)
    r = daemon(db_url, "--health-port", "0", "--set", "daemon.health_host=0.0.0.0", "--log-format", "json")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()  # with JSON logs, the one line is a JSON record too
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["message"].startswith("sigil daemon: error: ")
    assert "daemon.health_host" in record["message"] and "SIGIL_API_TOKEN" in record["message"]
    assert written(db_url) == before


def test_a_token_opens_a_public_address_and_port_0_is_never_taken() -> None:
    check_http_address("0.0.0.0", 0, "t0ken")
    check_http_address("127.0.0.1", 0, None)
    check_http_address("127.0.0.1", None, None)  # the server off: nothing to check
    with pytest.raises(ConfigError, match=r"daemon\.health_host"):
        check_http_address("::", 0, None)


def test_loopback_names() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "", "::", "10.0.0.1", "example.org"]))
