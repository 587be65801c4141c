"""The notification sender against real receivers on 127.0.0.1: each notice once, a full queue drops
(counted) without blocking, failed sends are retried with back-off, a silent receiver never holds
another one up."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from sigil.config import NotifyConfig
from sigil.daemon.metrics import DaemonMetrics
from sigil.errors import ConfigError
from sigil.notify.events import PositionClosed, PositionOpened, Stopped
from sigil.notify.sender import NotificationSender, sender_for
from tests.support.daemon_stack import wait_until
from tests.support.receivers import JsonReceiver, SilentReceiver, body_fields

T0 = 1_718_755_200_000


def opened(i: int) -> PositionOpened:
    return PositionOpened("baseline", "TST/USDT", i, 1.5 + i, 10.0, 100.0, 0.03, 1.455, T0)


async def test_each_notice_arrives_once_and_a_silent_receiver_holds_nobody_up() -> None:
    good, silent = JsonReceiver(), SilentReceiver()
    await good.start()
    await silent.start()
    metrics = DaemonMetrics()
    settings = NotifyConfig(retries=0, queue_size=4, flush_s=0.5)
    urls = [f"json://127.0.0.1:{silent.port}/?rto=30&cto=30", f"json://127.0.0.1:{good.port}/x"]
    sender = sender_for(urls, settings, metrics)
    try:
        t = time.monotonic()
        for i in range(20):
            sender.send(opened(i))
        queued_s = time.monotonic() - t
        await wait_until(lambda: len(good.posts) >= 4, timeout=20)
        await asyncio.sleep(0.3)
    finally:
        await asyncio.to_thread(sender.close)
        await good.stop()
        await silent.stop()
    # The good receiver's queue of 4 took what it could; the rest of its 20 were dropped, as were
    # the silent one's: nothing waited for a send (20 notices queued in far less than one timeout).
    assert queued_s < 1.0
    positions = [int(body_fields(b)["position"]) for _, b in good.posts]
    assert len(positions) == len(set(positions)), "never twice"
    counts = sender.counts()
    assert counts["sent"] == len(good.posts)
    assert counts["sent"] + counts["dropped"] + counts["failed"] <= 40
    assert counts["dropped"] >= 20 - 4 - 1  # the silent receiver's queue: 4 queued, one in flight
    scrape = metrics.render()
    assert 'sigil_notifications_total{event="open",outcome="dropped"}' in scrape
    assert f'sigil_notifications_total{{event="open",outcome="sent"}} {counts["sent"]}' in scrape
    assert silent.connections >= 1


async def test_a_failed_send_is_retried_with_back_off_then_counted() -> None:
    seen: list[float] = []

    async def flaky(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        return web.Response(status=500 if len(seen) <= 2 else 200)

    app = web.Application()
    app.router.add_post("/", flaky)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sender = sender_for([f"json://127.0.0.1:{port}/"], NotifyConfig(retries=2, backoff_s=0.2, flush_s=5))
    try:
        sender.send(PositionClosed("moderate", "NFP/USDT", 7, 2.0, "atr_trail", -1.25, T0))
        await wait_until(lambda: sender.counts()["sent"] == 1, timeout=20)
        sender.send(Stopped("main", "test over", 0))
        await wait_until(lambda: len(seen) == 4, timeout=20)
        await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(sender.close)
        await runner.cleanup()
    assert sender.counts() == {"sent": 2, "failed": 0, "dropped": 0}
    # Waits of 0.2 s, then 0.4 s between the three attempts of the first notice.
    assert seen[1] - seen[0] >= 0.2 and seen[2] - seen[1] >= 0.4


async def test_only_the_chosen_events_are_sent() -> None:
    good = JsonReceiver()
    await good.start()
    sender = sender_for([f"json://127.0.0.1:{good.port}/"], NotifyConfig(events=["close"]))
    try:
        sender.send(opened(1))
        sender.send(PositionClosed("baseline", "TST/USDT", 1, 1.6, "hard_stop", 3.0, T0))
        await wait_until(lambda: len(good.posts) == 1, timeout=20)
    finally:
        await asyncio.to_thread(sender.close)
        await good.stop()
    assert good.posts[0][1]["title"] == "close baseline TST/USDT"
    assert body_fields(good.posts[0][1])["reason"] == "hard_stop"


def test_a_url_apprise_refuses_is_named_by_its_place_only() -> None:
    with pytest.raises(ConfigError, match=r"notify URL nosuchscheme #2") as e:
        NotificationSender(["json://127.0.0.1:9/", "nosuchscheme://s3cr3t-token-value"], NotifyConfig())
    assert "s3cr3t" not in str(e.value)
