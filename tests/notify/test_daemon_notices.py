"""The daemon's own notices, on a real scheduler with its job store in PostgreSQL and a webhook
receiver on 127.0.0.1: started, pass_failed once per run of failures, stale once per stale spell,
rearmed when the watchdog wakes a stalled scheduler, stopped with the exit status."""

from __future__ import annotations

import asyncio

import pytest

from sigil.config import NotifyConfig
from sigil.daemon.app import Daemon
from sigil.notify.sender import sender_for
from tests.daemon.conftest import FakePasses
from tests.daemon.test_scheduler import flaky, settings, start
from tests.support.daemon_stack import wait_until
from tests.support.receivers import JsonReceiver, body_fields

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def titles(hook: JsonReceiver) -> list[str]:
    return [str(b["title"]) for _, b in hook.posts]


async def test_failures_a_stale_heartbeat_and_the_stop_are_each_told_once(empty_db_url: str) -> None:
    hook = JsonReceiver()
    await hook.start()
    sender = sender_for([f"json://127.0.0.1:{hook.port}/"], NotifyConfig(flush_s=2))
    passes = FakePasses(breakout_s=0.1)
    passes.fail = True
    d = Daemon(
        settings(heartbeat_max_age_s=0.6),
        passes,
        database_url=empty_db_url,
        handle_signals=False,
        health_port=None,
        notifications=sender,
    )
    try:
        task = await start(d)
        await wait_until(lambda: "stale" in titles(hook) and passes.runs["breakout"] >= 8, timeout=10)
        passes.fail = False
        await wait_until(lambda: len(passes.heartbeats) >= 2)
        passes.fail = True
        await wait_until(lambda: titles(hook).count("pass_failed") == 2, timeout=10)
        d.request_stop("test over")
        assert await task == 0
        await asyncio.to_thread(sender.close)
    finally:
        await hook.stop()
    got = titles(hook)
    assert got[0] == "started" and got[-1] == "stopped"
    # Eight failed passes and more, told twice: once per run of failures.
    assert got.count("pass_failed") == 2 and got.count("stale") == 1, got
    failed = body_fields(hook.posts[got.index("pass_failed")][1])
    assert failed == {"pass": "breakout", "error": "RuntimeError: injected pass failure"}
    stopped = body_fields(hook.posts[-1][1])
    assert stopped == {"instance": "main", "reason": "test over", "exit": "0"}
    assert body_fields(hook.posts[0][1])["variants"] == "baseline, unhinged"


async def test_a_rearmed_scheduler_is_told(empty_db_url: str) -> None:
    hook = JsonReceiver()
    await hook.start()
    sender = sender_for([f"json://127.0.0.1:{hook.port}/"], NotifyConfig(events=["rearmed"]))
    passes = FakePasses(breakout_s=0.2)
    store = flaky(empty_db_url)
    d = Daemon(
        settings(), passes, jobstore=store, handle_signals=False, health_port=None, notifications=sender
    )
    try:
        task = await start(d)
        await wait_until(lambda: len(passes.heartbeats) >= 2)
        store.failures, store.armed = 1, True
        await wait_until(lambda: d.watchdog.rearms >= 1, timeout=5)
        await wait_until(lambda: len(hook.posts) >= 1, timeout=5)
        d.request_stop("test")
        assert await task == 0
        await asyncio.to_thread(sender.close)
    finally:
        await hook.stop()
    assert titles(hook) == ["rearmed"]
    fields = body_fields(hook.posts[0][1])
    assert fields["instance"] == "main" and fields["overdue"].startswith("breakout for ")
