"""The dashboard of a daemon trading against the simulator, loaded in headless Chromium: no console
error, no request beyond the page itself, the equity chart drawn, and every figure the database's.
The test takes a screenshot; with SIGIL_UPDATE_SCREENSHOTS=1 it replaces the one the README shows
(docs/dashboard.png), otherwise it goes to the test's temporary folder."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.cli import main
from tests.support.browser import Browser, require_chromium
from tests.support.daemon_stack import rows
from tests.support.stepped_daemon import SteppedDaemon

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

SPEC = {"DOGE": (0, 700), "PEPE": (0, 700), "SUI": (0, 700)}
STEP_MS = 24 * 3_600_000
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def cells(dom: str, table: str, cls: str) -> dict[str, str]:
    """The text of the ``td.cls`` cell in each ``data-*`` row of table ``#table``, by the row's key."""
    body = dom.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    out = {}
    for key, row in re.findall(r'<tr data-[a-z]+="([^"]+)">(.*?)</tr>', body, re.S):
        m = re.search(rf'<td class="n {cls}[^"]*">([^<]*)</td>', row)
        if m:
            out[key] = m[1]
    return out


def money(v: float) -> str:
    return f"{v:,.2f}".replace("-", "−")


async def test_the_dashboard_shows_the_databases_figures(
    tmp_path: Path, pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    require_chromium()
    stack = await SteppedDaemon.over(tmp_path / "data", SPEC, pg, STEP_MS)
    url = stack.url
    caplog.set_level(logging.INFO, logger="sigil.daemon.health.address")
    try:
        await stack.start()

        def traded() -> bool:
            got = rows(url, "SELECT status, count(*) AS n FROM micro_positions GROUP BY status")
            n = {r["status"]: r["n"] for r in got}
            return n.get("closed", 0) >= 6 and n.get("open", 0) >= 2

        await stack.step_until(traded, limit=28)
        assert await asyncio.to_thread(main, ["pause", "--database-url", url, "--variant", "unhinged"]) == 0
        await stack.step(60_000)
        assert f"dashboard: {stack.base}/" in caplog.messages

        async with aiohttp.ClientSession() as http, http.get(stack.base + "/api/state") as r:
            assert r.status == 200
            state = await r.json()
        async with Browser(width=1280, height=900) as browser:
            update = os.environ.get("SIGIL_UPDATE_SCREENSHOTS") == "1"
            screenshot = DOCS_SCREENSHOT if update else tmp_path / "dashboard.png"
            page = await browser.load(
                stack.base + "/",
                selectors=[
                    "#equity-chart svg path.series",
                    "#skips-chart svg rect.bar",
                    "#open-positions tr",
                ],
                expressions={"refresh": "document.querySelector('meta[http-equiv=refresh]').content"},
                screenshot=screenshot,
                full_page=True,
            )
        await stack.stop()
    finally:
        await stack.close()

    assert page.console_errors == []
    assert page.requests == [stack_url := page.url], f"the page fetched more than itself: {page.requests}"
    assert stack_url.endswith("/")
    assert page.values["refresh"] == "5"

    accounts = {a["variant_id"]: a for a in rows(url, "SELECT * FROM variant_accounts")}
    open_rows = rows(url, "SELECT * FROM micro_positions WHERE status = 'open' ORDER BY id")
    closed = rows(
        url, "SELECT * FROM micro_positions WHERE status = 'closed' ORDER BY closed_at DESC, id DESC"
    )
    skips = rows(url, "SELECT reason, count(*) AS n FROM events WHERE kind = 'skip' GROUP BY reason")

    # The chart: one line per variant; one bar per skip reason.
    assert page.counts["#equity-chart svg path.series"] == len(accounts) == 4
    assert page.counts["#skips-chart svg rect.bar"] == len(skips) > 0
    # The figures: balances, equity and open counts per variant, each open position's stop and trail.
    assert cells(page.dom, "variants", "balance") == {n: money(a["balance"]) for n, a in accounts.items()}
    assert cells(page.dom, "variants", "equity") == {n: money(a["equity"]) for n, a in accounts.items()}
    opens = {n: str(sum(1 for p in open_rows if p["variant_id"] == n)) for n in accounts}
    assert cells(page.dom, "variants", "open") == opens
    assert cells(page.dom, "open-positions", "stop") == {
        str(p["id"]): f"{p['stop_price']:.6g}" for p in open_rows
    }
    trail = {str(p["id"]): "-" if p["trail_stop"] is None else f"{p['trail_stop']:.6g}" for p in open_rows}
    assert cells(page.dom, "open-positions", "trail") == trail
    assert page.counts["#open-positions tr"] == len(open_rows) + 1
    assert 'id="paused"' in page.dom and "PAUSED: no new opens for unhinged" in page.dom

    # /api/state is the page's data: the same figures, exactly.
    assert state["paused"] == ["unhinged"]
    assert {n: v["balance"] for n, v in state["variants"].items()} == {
        n: a["balance"] for n, a in accounts.items()
    }
    assert [p["id"] for p in state["open_positions"]] == [p["id"] for p in open_rows]
    assert [p["stop_price"] for p in state["open_positions"]] == [p["stop_price"] for p in open_rows]
    assert [t["id"] for t in state["trades"]] == [p["id"] for p in closed][: len(state["trades"])]
    assert state["skips"] == {s["reason"]: s["n"] for s in skips}
    assert state["daemon"]["scheduler"]["state"] == "running" and state["heartbeat"] is not None
    for name, curve in state["equity"].items():
        assert curve["equity"][-1] == accounts[name]["equity"]
    assert screenshot.read_bytes()[:4] == b"\x89PNG"
    pg.drop_database(url)
