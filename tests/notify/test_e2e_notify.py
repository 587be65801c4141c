"""Notifications end to end: a daemon process against the simulator, with JSON logs, notifying a
webhook receiver on 127.0.0.1 and one that never answers. Every open and close arrives once with its
fields; the silent receiver costs no pass; the URLs' tokens appear nowhere."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import statistics
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.exchange.sim import SimExchange
from tests.support.daemon_stack import (
    TF_MS,
    DaemonProcess,
    cut,
    health_port,
    heartbeats,
    rows,
    span,
    wait_until,
)
from tests.support.receivers import JsonReceiver, SilentReceiver, body_fields

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

SPEC = {"DOGE": (0, 3000), "PEPE": (0, 3000), "SUI": (0, 3000)}
#: 25 candles a second: trades within seconds, and passes that keep up with the market.
SPEED = 90_000.0
GOOD_TOKEN = "tok-GOOD-9f8e7d6c5b4a"
HUNG_TOKEN = "tok-HUNG-1a2b3c4d5e6f"
#: The silent receiver holds every attempt this long (apprise's connect and read timeouts).
HUNG_TIMEOUT_S = 5


def metric(text: str, outcome: str) -> float:
    """The sum of ``sigil_notifications_total`` over the events, for one outcome."""
    series = rf'^sigil_notifications_total\{{event="[a-z_]+",outcome="{outcome}"\}} (\S+)$'
    return sum(float(m[1]) for m in re.finditer(series, text, re.M))


async def test_every_open_and_close_arrives_once_and_a_silent_receiver_costs_no_pass(
    tmp_path: Path, pg: Any
) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, _ = span(series)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=SPEED, start_ms=first + 300 * TF_MS)
    await sim.start(0)
    good, silent = JsonReceiver(), SilentReceiver()
    await good.start()
    await silent.start()
    urls = (
        f"json://127.0.0.1:{good.port}/hook/{GOOD_TOKEN}, "
        f"json://127.0.0.1:{silent.port}/hook/{HUNG_TOKEN}?rto={HUNG_TIMEOUT_S}&cto={HUNG_TIMEOUT_S}"
    )
    log = tmp_path / "daemon.log"
    sets = ["notify.retries=0", "notify.flush_s=1", "notify.queue_size=16"]
    d = DaemonProcess.spawn(
        log,
        url,
        str(sim.url),
        "--log-format",
        "json",
        *(a for s in sets for a in ("--set", s)),
        env={"SIGIL_NOTIFY_URLS": urls},
    )
    try:
        await wait_until(lambda: health_port(d.text()) is not None or d.proc.poll() is not None, timeout=30)
        port = health_port(d.text())
        assert port is not None, d.text()[-3000:]
        base = f"http://127.0.0.1:{port}"
        scrape = ""

        async def moved() -> bool:
            nonlocal scrape
            async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
                scrape = await r.text()
            closed = rows(url, "SELECT count(*) AS n FROM micro_positions WHERE status = 'closed'")[0]["n"]
            moved = metric(scrape, "failed") >= 1 and metric(scrape, "dropped") >= 1
            return moved and closed >= 5 and len(heartbeats(url)) >= 15

        deadline = asyncio.get_running_loop().time() + 40
        while not await moved():
            assert d.proc.poll() is None, d.text()[-3000:]
            assert asyncio.get_running_loop().time() < deadline, f"counters did not move:\n{scrape[-2000:]}"
            await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as http, http.get(base + "/health") as r:
            health = await r.text()
        d.terminate()
        assert await d.wait(30) == 0, d.text()[-3000:]
    finally:
        d.kill9()
        await sim.stop()
        await silent.stop()
        await good.stop()
    text = d.text()

    # Every open and close of the database arrived once, with its fields.
    positions = {p["id"]: p for p in rows(url, "SELECT * FROM micro_positions")}
    opens = [body_fields(b) for b in good.titled("open")]
    closes = [body_fields(b) for b in good.titled("close")]
    assert sorted(int(f["position"]) for f in opens) == sorted(positions)
    closed = {pid for pid, p in positions.items() if p["status"] == "closed"}
    assert sorted(int(f["position"]) for f in closes) == sorted(closed)
    for f in opens:
        p = positions[int(f["position"])]
        assert (f["variant"], f["symbol"]) == (p["variant_id"], p["symbol"])
        assert float(f["price"]) == pytest.approx(p["entry_price"], rel=1e-9)
    for f in closes:
        p = positions[int(f["position"])]
        assert (f["variant"], f["symbol"], f["reason"]) == (p["variant_id"], p["symbol"], p["exit_reason"])
        assert float(f["price"]) == pytest.approx(p["exit_price"], rel=1e-9)
        assert float(f["pnl"]) == pytest.approx(p["pnl"], abs=1e-4)
    for b in good.titled("close"):
        f = body_fields(b)
        assert b["title"] == f"close {f['variant']} {f['symbol']}"
    titles = [str(b["title"]) for _, b in good.posts]
    assert titles.count("started") == 1 and titles.count("stopped") == 1
    assert titles[0] == "started" and titles[-1] == "stopped"
    assert any(t.startswith("summary ") for t in titles)
    assert all(path == f"/hook/{GOOD_TOKEN}" for path, _ in good.posts)

    # The silent receiver was tried, and cost no pass: a pass that waited on one of its sends would
    # last HUNG_TIMEOUT_S per open or close; they kept to their interval (0.2 s; slower on a loaded
    # machine, never by a send).
    assert silent.connections >= 1
    hbs = heartbeats(url)
    trading = [float(h["duration_s"]) for h in hbs[1:] if h["opens"] + h["closes"] > 0]
    assert len(trading) >= 3
    assert max(trading) < HUNG_TIMEOUT_S, f"a pass waited on a notification: {max(trading):.2f}s"
    beats = [h["finished_at"].timestamp() for h in hbs]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < HUNG_TIMEOUT_S and statistics.median(gaps) < 1.0, gaps

    # JSON logs: every line is an object with the four keys; trades carry their context fields.
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    trade_lines = [r for r in records if re.match(r"(open|close) ", r["message"])]
    assert len(trade_lines) == len(opens) + len(closes)
    for r in trade_lines:
        assert {"variant", "symbol", "position_id", "pass"} <= r.keys(), r
        assert r["position_id"] in positions
    # The tokens appear nowhere: not in the logs, not in /health.
    for secret in (GOOD_TOKEN, HUNG_TOKEN):
        assert secret not in text
        assert secret not in health
    assert json.loads(health)["notify"]["services"] == ["json #1", "json #2"]
    await asyncio.to_thread(pg.drop_database, url)
