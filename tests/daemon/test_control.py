"""The operator's controls: pause, resume and manual exits, through the HTTP API (bearer token) and the
command line, both writing the database the daemon reads at each pass."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.cli import main
from sigil.config import load_config
from sigil.daemon.api import ControlApi
from sigil.daemon.health import HealthServer
from sigil.store import Database
from tests.support.daemon_stack import rows
from tests.support.stepped_daemon import SteppedDaemon

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

TOKEN = "s3cret-token-for-tests"
#: Two symbols that break out often in their first 700 hours.
SPEC = {"DOGE": (0, 700), "PEPE": (0, 700)}
#: Market time the frozen simulator clock moves per step.
STEP_MS = 12 * 3_600_000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def control_rows(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(pauses, exit requests, control events)."""
    return (
        rows(url, "SELECT * FROM control_pauses"),
        rows(url, "SELECT * FROM control_exits"),
        rows(url, "SELECT * FROM events WHERE kind = 'control' ORDER BY id"),
    )


def positions(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT * FROM micro_positions ORDER BY id")


# -- the API's gate, without a daemon -------------------------------------------------------------------


async def _server(db: Database, token: str | None) -> HealthServer:
    api = ControlApi(db, token, ["baseline", "moderate"])
    server = HealthServer("127.0.0.1", 0, lambda: (True, {}), lambda: "", [api.install])
    await server.start()
    return server


async def test_the_api_refuses_without_the_token_and_is_off_without_one(db: Database, db_url: str) -> None:
    server = await _server(db, TOKEN)
    off = await _server(db, None)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/api/pause", "/api/resume", "/api/positions/1/exit"):
                for headers in ({}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": TOKEN}):
                    async with http.post(server.url + path, headers=headers) as r:
                        assert r.status == 401, (path, headers)
                        assert r.headers["WWW-Authenticate"] == "Bearer"
                async with http.post(off.url + path, headers=bearer(TOKEN)) as r:
                    assert r.status == 404 and "SIGIL_API_TOKEN" in (await r.json())["error"]
            assert control_rows(db_url) == ([], [], []), "a refused request writes nothing"

            ok = bearer(TOKEN)
            async with http.post(server.url + "/api/pause", headers=ok, json={"variant": "x"}) as r:
                assert r.status == 400 and "unknown variant 'x'" in (await r.json())["error"]
            async with http.post(server.url + "/api/pause?variant=moderate", headers=bearer(TOKEN)) as r:
                assert r.status == 202
                pauses = (await r.json())["pauses"]
                assert [(p["instance"], p["variant"]) for p in pauses] == [("*", "moderate")]
            async with http.post(server.url + "/api/pause", headers=bearer(TOKEN)) as r:
                assert r.status == 202 and len((await r.json())["pauses"]) == 2
            async with http.post(server.url + "/api/pause", headers=bearer(TOKEN), data="[1]") as r:
                assert r.status == 400
            async with http.post(server.url + "/api/positions/12345/exit", headers=bearer(TOKEN)) as r:
                assert r.status == 404 and "not open" in (await r.json())["error"]
            async with http.post(server.url + "/api/positions/abc/exit", headers=bearer(TOKEN)) as r:
                assert r.status == 400
            async with http.post(server.url + "/api/resume", headers=bearer(TOKEN)) as r:
                assert r.status == 200 and (await r.json()) == {"pauses": [], "lifted": 2}
    finally:
        await server.stop()
        await off.stop()
    pauses, exits, events = control_rows(db_url)
    assert pauses == [] and exits == []
    assert [(e["reason"], e["detail"]["by"]) for e in events] == [
        ("pause", "api 127.0.0.1"),
        ("pause", "api 127.0.0.1"),
        ("resume", "api 127.0.0.1"),
    ]


def test_the_command_line_writes_the_same_table(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pause", "--database-url", db_url, "--variant", "baseline"]) == 0
    assert "paused: variant baseline on every instance" in capsys.readouterr().out
    assert main(["pause", "--database-url", db_url, "--variant", "nope"]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
    assert main(["exit", "--database-url", db_url, "77"]) == 2
    assert "position #77 is not open (no such position)" in capsys.readouterr().err
    pauses, exits, events = control_rows(db_url)
    assert [(p["instance"], p["variant_id"]) for p in pauses] == [("*", "baseline")] and exits == []
    assert [e["reason"] for e in events] == ["pause"]
    assert events[0]["detail"]["by"].startswith(getpass.getuser() + "@")
    assert main(["resume", "--database-url", db_url]) == 0
    assert "1 pause(s) lifted" in capsys.readouterr().out
    assert rows(db_url, "SELECT * FROM control_pauses") == []


# -- a daemon against the simulator ---------------------------------------------------------------------


async def test_pause_stops_opens_not_exits_and_exit_sells_at_the_next_pass(
    tmp_path: Path, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGIL_API_TOKEN", TOKEN)
    stack = await SteppedDaemon.over(tmp_path / "data", SPEC, pg, STEP_MS)
    url = stack.url
    try:
        await stack.start()
        # Trading: wait for an open, then `sigil exit` it; the next pass sells it, reason manual.
        await stack.step_until(lambda: any(p["status"] == "open" for p in positions(url)))
        target = next(p for p in positions(url) if p["status"] == "open")
        code = await asyncio.to_thread(main, ["exit", "--database-url", url, str(target["id"])])
        assert code == 0
        # A minute on: no candle closes, so the pass's one decision is the operator's.
        await stack.step(60_000)
        sold = next(p for p in positions(url) if p["id"] == target["id"])
        assert (sold["status"], sold["exit_reason"]) == ("closed", "manual")
        [request] = rows(url, "SELECT * FROM control_exits")
        assert (request["position_id"], request["outcome"]) == (target["id"], "closed")
        close = rows(url, "SELECT * FROM events WHERE kind = 'close' AND position_id = %s", target["id"])
        assert [e["reason"] for e in close] == ["manual"]
        assert sold["closed_at"] > target["opened_at"] and sold["exit_price"] > 0

        async with aiohttp.ClientSession() as http:
            # Without the token: refused, nothing written, and the daemon goes on opening.
            async with http.post(stack.base + "/api/pause") as r:
                assert r.status == 401
            assert rows(url, "SELECT * FROM control_pauses") == []
            async with http.post(stack.base + "/api/pause", headers=bearer(TOKEN)) as r:
                assert r.status == 202
            # Paused: every later breakout is a 'paused' skip, and the stops still close positions.
            before = positions(url)
            opened_before = {p["id"] for p in before}
            open_before = {p["id"] for p in before if p["status"] == "open"}

            def stops_and_skips() -> bool:
                now = {p["id"]: p for p in positions(url)}
                closed = [i for i in open_before if now[i]["status"] == "closed"]
                skipped = rows(url, "SELECT 1 FROM events WHERE kind = 'skip' AND reason = 'paused'")
                return bool(closed) and bool(skipped)

            await stack.step_until(stops_and_skips)
            assert {p["id"] for p in positions(url)} == opened_before, "no open while paused"
            closed = [p for p in positions(url) if p["id"] in open_before and p["status"] == "closed"]
            assert {p["exit_reason"] for p in closed} <= {"hard_stop", "atr_trail"}
            async with http.get(stack.base + "/api/state") as r:
                state = await r.json()
            assert state["paused"] == [v.name for v in load_config().variants]

            async with http.post(stack.base + "/api/resume", headers=bearer(TOKEN)) as r:
                assert r.status == 200
            await stack.step_until(lambda: len(positions(url)) > len(opened_before))

        # A pause survives a restart: the new process reads it before its first decision.
        assert await asyncio.to_thread(main, ["pause", "--database-url", url]) == 0
        await stack.stop()
        count = len(positions(url))
        skips = len(rows(url, "SELECT 1 FROM events WHERE kind = 'skip' AND reason = 'paused'"))
        await stack.start()
        await stack.step_until(
            lambda: len(rows(url, "SELECT 1 FROM events WHERE kind = 'skip' AND reason = 'paused'")) > skips
        )
        assert len(positions(url)) == count, "no open after a restart while paused"
        await stack.stop()
    finally:
        await stack.close()
    by = [(e["reason"], e["detail"]["by"]) for e in control_rows(url)[2]]
    user = getpass.getuser() + "@"
    assert [r for r, _ in by] == ["exit", "pause", "resume", "pause"]
    assert by[0][1].startswith(user) and by[3][1].startswith(user)
    assert by[1][1] == by[2][1] == "api 127.0.0.1"
    pg.drop_database(url)
