"""``sigil daemon --live`` as a real process against the simulator's signed endpoints: every open is
reserved in the database before its order goes out, every recorded fill is the exchange's, and the
database's book and the exchange account agree to the cent — with orders whose answers are lost,
orders that time out unexecuted, and an account that runs out of money. The keys never appear in
anything the process writes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import Faults, SimExchange
from sigil.store import PositionStore, open_database
from sigil.times import from_ms
from tests.support.daemon_stack import (
    DaemonProcess,
    book_problems,
    config,
    cut,
    health_port,
    rows,
    sigil_env,
    span,
    wait_until,
)
from tests.support.receivers import JsonReceiver, body_fields

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

SPEC = {"DOGE": (0, 700), "PEPE": (0, 700), "SUI": (0, 700)}
SPEED = 150_000.0
HOUR_MS = 3_600_000
KEY = "LiVeKeY4c1d9e2f7a3b8ZZNOTAREALKEYxx"
SECRET = "LiVeSeCrEt6e0f1a2b3c4d5ZZNOTAREALSECRETxx"
#: The account holds enough for a few positions only: later opens are refused by the exchange balance.
ACCOUNT_USDT = 650.0
LIVE = ("--live", "--set", "exchange.timeout_s=0.4", "--set", "exchange.retries=0")


def keys_env() -> dict[str, str]:
    return {"SIGIL_API_KEY": KEY, "SIGIL_API_SECRET": SECRET}


#: The live notices, sent to a webhook receiver on 127.0.0.1.
NOTIFY = ("--set", "notify.events=[fill, order_failed, outcome_unknown]")


def test_live_without_keys_exits_2_before_touching_anything() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing"
    for env, missing in (
        ({}, "SIGIL_API_KEY and SIGIL_API_SECRET"),
        ({"SIGIL_API_KEY": KEY}, "SIGIL_API_SECRET"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "sigil", "daemon", "--live", "--database-url", unreachable],
            capture_output=True,
            text=True,
            env={**sigil_env(), **env},
            timeout=60,
        )
        # 2 (bad input), not 1 (database unavailable): the keys are checked before anything starts.
        assert r.returncode == 2, r.stderr
        assert f"set {missing}" in r.stderr and KEY not in r.stderr + r.stdout


async def test_live_daemon_books_what_the_exchange_filled(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, last = span(series)
    cfg = config()
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    faults = Faults(
        seed=7,
        # Orders and the lookups of lost answers both fail now and then; with no retries a lookup that
        # fails leaves the order's outcome unknown, to be settled by a later pass.
        endpoints=frozenset({"order", "queryOrder"}),
        rate_lost_answer=0.2,  # executed, answer lost: found again by its client id
        rate_timeout=0.1,  # not executed: the reservation is cancelled
        hang_s=5.0,
    )
    sim = SimExchange(series, speed=SPEED, start_ms=first, faults=faults, balances={"USDT": ACCOUNT_USDT})
    await sim.start(0)
    hook = JsonReceiver()
    await hook.start()
    env = {**keys_env(), "SIGIL_NOTIFY_URLS": f"json://127.0.0.1:{hook.port}/"}
    try:
        until = last - 3_600_000
        d = DaemonProcess.spawn(
            tmp_path / "daemon.log", url, str(sim.url), *LIVE, *NOTIFY, "--until", str(until), env=env
        )
        await wait_until(lambda: d.proc.poll() is not None or health_port(d.text()) is not None, timeout=60)
        port = health_port(d.text())
        assert port is not None, d.text()[-3000:]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
            health = await r.text()
        assert KEY not in health and SECRET not in health
        assert json.loads(health)["broker"]["mode"] == "live"
        assert await d.wait(200) == 0, d.text()[-3000:]
        # The exchange recovers; one more pass settles whatever the last one left unknown.
        sim.faults = Faults()
        d2 = DaemonProcess.spawn(
            tmp_path / "daemon.log", url, str(sim.url), *LIVE, *NOTIFY, "--max-passes", "1", env=env
        )
        assert await d2.wait(60) == 0, d2.text()[-3000:]
        text = d.text()
    finally:
        await sim.stop()
        await hook.stop()

    assert "LIVE: real orders" in text
    assert KEY not in text and SECRET not in text, "a key reached the daemon's output"
    assert book_problems(url, cfg) == []
    positions = rows(url, "SELECT * FROM micro_positions ORDER BY id")
    failed = [p for p in positions if p["exit_reason"] == "order_failed"]
    filled = [p for p in positions if p["fill"] == "exchange"]
    assert len(filled) >= 10, "the run should have traded"
    assert failed, "the timeouts and the small account should have cancelled some reservations"
    assert sim.stats.faults["lost_answer"] > 0 and sim.stats.faults["timeout"] > 0
    # An order whose outcome stayed unknown is the only kind of open the scanner logs as an error.
    unknown = rows(url, "SELECT count(*) AS n FROM events WHERE kind = 'error' AND reason LIKE 'open %%'")
    assert unknown[0]["n"] > 0, "some orders' outcomes should have been unknown for a while"
    # Nothing is left half-done: a position is either the exchange's fill or a cancelled reservation.
    assert len(filled) + len(failed) == len(positions)
    assert all(p["status"] == "closed" and p["pnl"] is None for p in failed)
    sold = [p for p in filled if p["status"] == "closed"]
    assert all(p["entry_order_id"] for p in filled) and all(p["exit_order_id"] for p in sold)
    order_ids = [p["entry_order_id"] for p in filled] + [p["exit_order_id"] for p in sold]
    assert len(set(order_ids)) == len(order_ids)
    executed = {str(o["orderId"]) for o in sim._orders.values()}
    assert set(order_ids) == executed, "every executed order is booked once, and only those"

    # The exchange account and the database's book agree.
    usdt = ACCOUNT_USDT - sum(p["stake"] for p in filled)
    usdt += sum(p["pnl"] + p["stake"] + p["entry_fee"] for p in sold)
    assert sim.balances["USDT"] == pytest.approx(usdt, abs=1e-4)
    held: dict[str, float] = defaultdict(float)
    closes: dict[str, int] = defaultdict(int)
    for p in filled:
        if p["status"] == "open":
            held[p["symbol"]] += p["qty"]
        else:
            closes[p["symbol"]] += 1
    for m in sim.markets.values():
        dust = closes[f"{m.base}/{m.quote}"] * 10.0**-m.qty_decimals  # sells are rounded down to a lot
        have = sim.balances.get(m.base, 0.0)
        assert held[f"{m.base}/{m.quote}"] - 1e-6 <= have <= held[f"{m.base}/{m.quote}"] + dust + 1e-6, m.id
    # Every cancelled reservation says why, and kept its cooldown.
    errors = rows(
        url, "SELECT position_id, detail FROM events WHERE kind = 'error' AND reason = 'order_failed'"
    )
    assert {e["position_id"] for e in errors} == {p["id"] for p in failed}

    # Notified: every exchange fill once; every order that failed, and every open whose outcome was
    # unknown for a while (the buys' error events), once each.
    notices = [(str(b["title"]).split()[0], body_fields(b)) for _, b in hook.posts]
    fills = sorted(int(f["position"]) for kind, f in notices if kind == "fill")
    assert fills == sorted(p["id"] for p in filled)
    buys_failed = [int(f["position"]) for kind, f in notices if kind == "order_failed" and f["side"] == "buy"]
    assert buys_failed and len(set(buys_failed)) == len(buys_failed)
    assert set(buys_failed) <= {p["id"] for p in failed}  # the rest were unknown, then never executed
    unknown_buys = [f for kind, f in notices if kind == "outcome_unknown" and f["side"] == "buy"]
    assert len(unknown_buys) == unknown[0]["n"]
    assert all(f["order"].startswith("sigil-o") for f in unknown_buys)


async def test_a_restart_settles_the_reservations_a_crash_left(tmp_path: Path, pg: Any) -> None:
    """A crash between sending an order and recording its fill leaves a reservation; the next start
    looks the order up by its client id: executed → the exchange's fill is recorded; unknown to the
    exchange → the reservation is cancelled and its money given back."""
    series = cut(tmp_path / "data", {"DOGE": (0, 300), "PEPE": (0, 300)})
    first, _ = span(series)
    cfg = config()
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=0, start_ms=first + 200 * HOUR_MS, balances={"USDT": 1000.0})
    await sim.start(0)
    try:
        db = await open_database(url)
        try:
            store = PositionStore(db)
            at = from_ms(first + 100 * HOUR_MS)
            reserved = {}
            for s in series:
                price = float(s.close[99])
                r = await store.open_position(
                    variant="baseline",
                    symbol=s.symbol,
                    opened_at=at,
                    entry_price=price,
                    qty=100.0 / price,
                    stake=100.0,
                    entry_fee=0.1,
                    stop_pct=0.05,
                    stop_price=price * 0.95,
                    atr_at_entry=price * 0.01,
                    cooldown=timedelta(hours=12),
                    reserve=True,
                )
                assert r.position is not None
                reserved[s.symbol] = r.position.id
        finally:
            await db.close()
        # DOGE's order reached the exchange before the crash; PEPE's never did.
        exchange = cfg.settings.exchange
        async with ExchangeClient.from_config(exchange, url=sim.url, live=True, environ=keys_env()) as client:
            await client.call(
                "buy",
                "create_market_buy_order_with_cost",
                "DOGE/USDT",
                100.0,
                {"newClientOrderId": f"sigil-o{reserved['DOGE/USDT']}"},
                retry=False,
            )
        d = DaemonProcess.spawn(
            tmp_path / "daemon.log", url, str(sim.url), *LIVE, "--max-passes", "1", env=keys_env()
        )
        assert await d.wait(60) == 0, d.text()[-3000:]
    finally:
        await sim.stop()
    by_id = {p["id"]: p for p in rows(url, "SELECT * FROM micro_positions")}
    doge, pepe = by_id[reserved["DOGE/USDT"]], by_id[reserved["PEPE/USDT"]]
    assert doge["status"] == "open" and doge["fill"] == "exchange" and doge["entry_order_id"] == "1"
    assert doge["qty"] == pytest.approx(sim.balances["DOGE"], rel=1e-12)
    assert doge["stake"] == pytest.approx(1000.0 - sim.balances["USDT"], abs=1e-6)
    assert pepe["status"] == "closed" and pepe["exit_reason"] == "order_failed" and pepe["pnl"] is None
    (acct,) = rows(
        url, "SELECT balance, starting_balance FROM variant_accounts WHERE variant_id = 'baseline'"
    )
    assert acct["balance"] == pytest.approx(acct["starting_balance"] - doge["stake"] - doge["entry_fee"])
    assert book_problems(url, cfg) == []
