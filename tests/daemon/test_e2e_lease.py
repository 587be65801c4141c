"""One instance, one process; instances never trade the same (variant, symbol). Real ``sigil daemon``
processes against a real PostgreSQL and the simulator: a second process of an instance, or an instance
whose share overlaps a live one's, exits 4 naming the holder and writes nothing; ``--standby`` takes
over after a kill -9 of the holder (the failover time is measured and printed); a holder whose lease
is taken while it is frozen exits 1 and acts no more; and instances with disjoint shares together
make exactly one daemon's book."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from sigil.daemon.share import Share
from sigil.exchange.sim import SimExchange
from sigil.times import iso_z
from tests.support import daemon_stack as stack

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

SPEC = {"DOGE": (0, 4000), "PEPE": (0, 4000), "SUI": (0, 4000)}
#: Simulated stack.ms per real stack.ms: 25 candles a second.
SPEED = 90_000.0
WAITING = "waiting for its lease"


@contextlib.asynccontextmanager
async def simulated(tmp_path: Path, pg: Any) -> AsyncIterator[tuple[str, SimExchange]]:
    """A fresh migrated database and the simulator (25 candles a second) over :data:`SPEC`."""
    series = stack.cut(tmp_path / "data", SPEC)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=SPEED, start_ms=stack.span(series)[0])
    await sim.start(0)
    try:
        yield url, sim
    finally:
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, url)


def snapshot(url: str) -> dict[str, str]:
    """A digest of every table's stack.rows: equal snapshots, nothing written in between."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " ORDER BY table_name"
            )
        ]
        out = {}
        for t in tables:
            digest = "md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
            row = conn.execute(f'SELECT count(*), {digest} FROM "{t}" x').fetchone()
            out[t] = f"{row[0]}:{row[1]}" if row else ""
        return out


def last_line(d: stack.DaemonProcess) -> str:
    return d.text().strip().splitlines()[-1]


async def health(d: stack.DaemonProcess) -> dict[str, Any]:
    port = stack.health_port(d.text())
    assert port is not None
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
        doc: dict[str, Any] = await r.json()
        return doc


def lease_session(url: str, instance: str = "main") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT backend_pid FROM daemon_instances WHERE instance = %s", (instance,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_second_process_or_an_overlapping_share_exits_4_naming_the_holder_and_writes_nothing(
    tmp_path: Path, pg: Any
) -> None:
    async with simulated(tmp_path, pg) as (url, sim):
        a = stack.DaemonProcess.spawn(tmp_path / "a.log", url, str(sim.url))
        await stack.wait_until(lambda: len(stack.heartbeats(url)) >= 2, timeout=60)
        # Frozen, the holder writes nothing, and its session (so its lease) stays.
        a.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(0.5)
            before = snapshot(url)
            since = stack.rows(url, "SELECT since FROM daemon_instances WHERE instance = 'main'")[0]["since"]
            holder = f"pid {a.proc.pid} on host {socket.gethostname()} since {iso_z(stack.ms(since))}"

            b = stack.DaemonProcess.spawn(tmp_path / "b.log", url, str(sim.url))
            assert await b.wait(60) == 4, b.text()[-2000:]
            assert last_line(b) == (
                f"sigil daemon: error: instance 'main' is held by {holder}"
                " (`sigil daemon --standby` waits for it)"
            )
            assert "Traceback" not in b.text()

            # Another instance with the default share (every variant, every symbol) overlaps main's.
            c = stack.DaemonProcess.spawn(
                tmp_path / "c.log", url, str(sim.url), "--set", "daemon.instance=other"
            )
            assert await c.wait(60) == 4, c.text()[-2000:]
            line = last_line(c)
            assert line.startswith("sigil daemon: error: the share of instance 'other'"), line
            everything = "variants baseline, moderate, aggressive, unhinged; shard 0/1"
            assert f"overlaps the share of live instance 'main' ({everything}), held by {holder}" in line
            assert snapshot(url) == before, "a refused process writes nothing: no job row, account, heartbeat"
        finally:
            a.proc.send_signal(signal.SIGCONT)
        a.terminate()
        assert await a.wait(30) == 0, a.text()[-2000:]
        assert {h["pid"] for h in stack.heartbeats(url)} == {a.proc.pid}
        assert stack.book_problems(url, stack.config()) == []


@pytest.mark.parametrize("interval", [1.0, 5.0])
async def test_a_standby_takes_over_within_two_intervals_of_a_kill_9(
    tmp_path: Path, pg: Any, interval: float
) -> None:
    every = ("--set", f"daemon.scan_interval_s={interval}")
    async with simulated(tmp_path, pg) as (url, sim):
        a = stack.DaemonProcess.spawn(tmp_path / "a.log", url, str(sim.url), *every)
        await stack.wait_until(lambda: len(stack.heartbeats(url)) >= 1, timeout=60)
        s = stack.DaemonProcess.spawn(tmp_path / "s.log", url, str(sim.url), *every, "--standby")
        await stack.wait_until(lambda: WAITING in s.text(), timeout=60)
        # A few passes of the holder, the standby waiting all along.
        n = len(stack.heartbeats(url))
        await stack.wait_until(lambda: len(stack.heartbeats(url)) >= n + 2, timeout=60)
        assert s.proc.poll() is None and s.text().count(WAITING) == 1, "waits, and says so once"
        assert f"held by pid {a.proc.pid} on host" in s.text()
        assert "accounts created" not in s.text() and "scheduler started" not in s.text()

        a.kill9()
        killed = time.time()
        await stack.wait_until(
            lambda: any(h["pid"] == s.proc.pid for h in stack.heartbeats(url)), timeout=max(30, 10 * interval)
        )
        first_pass = next(h for h in stack.heartbeats(url) if h["pid"] == s.proc.pid)
        failover = first_pass["finished_at"].timestamp() - killed
        text = s.text()
        leased, started = stack.logged_at(text, "lease taken"), stack.logged_at(text, "scheduler started")
        assert leased is not None and started is not None
        print(
            f"\nfailover at scan_interval_s={interval:g}: {failover:.3f}s from kill -9 to the standby's first"
            f" completed pass (lease taken after {leased - killed:.3f}s, scheduler started after"
            f" {started - killed:.3f}s)"
        )
        assert failover <= 2 * interval, f"failover {failover:.3f}s > two scan intervals"
        doc = await health(s)
        assert doc["lease"]["state"] == "held" and doc["lease"]["holder"]["pid"] == s.proc.pid
        assert all(
            h["pid"] != a.proc.pid for h in stack.heartbeats(url) if h["finished_at"].timestamp() > killed
        )
        s.terminate()
        assert await s.wait(30) == 0, s.text()[-2000:]
        assert stack.book_problems(url, stack.config()) == []


async def test_a_holder_whose_lease_is_taken_stops_acting_and_exits_1(tmp_path: Path, pg: Any) -> None:
    async with simulated(tmp_path, pg) as (url, sim):
        a = stack.DaemonProcess.spawn(tmp_path / "a.log", url, str(sim.url))
        await stack.wait_until(lambda: len(stack.heartbeats(url)) >= 2, timeout=60)
        # Its lease session ended, nobody else waiting: the holder takes the lease back and goes on.
        pg_terminate(url, lease_session(url))
        await stack.wait_until(lambda: "lease taken back" in a.text(), timeout=20)
        assert "lease lost (its database session ended)" in a.text()
        n = len(stack.heartbeats(url))
        await stack.wait_until(lambda: len(stack.heartbeats(url)) >= n + 2, timeout=30)
        assert (await health(a))["lease"]["regained"] == 1

        s = stack.DaemonProcess.spawn(tmp_path / "s.log", url, str(sim.url), "--standby")
        await stack.wait_until(lambda: WAITING in s.text(), timeout=60)
        # The holder frozen, its session ended: the standby takes over; the holder, thawed, finds the
        # lease held by another, stops acting and exits 1 (a supervisor restarts it).
        a.proc.send_signal(signal.SIGSTOP)
        pg_terminate(url, lease_session(url))
        await stack.wait_until(lambda: any(h["pid"] == s.proc.pid for h in stack.heartbeats(url)), timeout=60)
        thawed = time.time()
        a.proc.send_signal(signal.SIGCONT)
        assert await a.wait(30) == 1, a.text()[-3000:]
        text = a.text()
        assert f"instance lease lost to pid {s.proc.pid} on host" in text, text[-3000:]
        late = [
            h
            for h in stack.heartbeats(url)
            if h["pid"] == a.proc.pid and h["finished_at"].timestamp() > thawed
        ]
        assert late == [], "a holder that lost its lease writes no heartbeat"
        s.terminate()
        assert await s.wait(30) == 0, s.text()[-2000:]
        assert stack.book_problems(url, stack.config()) == []


def pg_terminate(url: str, backend_pid: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))


# -- disjoint shares ---------------------------------------------------------------------------------

#: The same stack.span for every symbol (no listing in the middle, whose pass boundary could differ).
SHARES_SPEC = {"DOGE": (0, 900), "PEPE": (0, 900), "SUI": (0, 900), "BTC": (0, 900)}
#: Three instances that together hold every (variant, symbol) once: a variant split, and a symbol
#: split of the other two variants (shard 0/2: DOGE, SUI; 1/2: PEPE, BTC).
SHARES = {
    "a": ("daemon.variants=[baseline, moderate]",),
    "b": ("daemon.variants=[aggressive, unhinged]", "daemon.shard=0/2"),
    "c": ("daemon.variants=[aggressive, unhinged]", "daemon.shard=1/2"),
}
#: The clock starts this many candles in (and stands still until every daemon has made its first
#: pass, so each one's history ends at the same candle).
START_CANDLES = 40
SHARES_SPEED = stack.TF_MS * 40 / 1000  # simulated stack.ms per real stack.ms: 40 candles a second


def book(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(closed trades, open positions) with every field that is decided, to the bit."""
    closed = [
        (r["variant_id"], r["symbol"], stack.ms(r["opened_at"]), stack.ms(r["closed_at"]), r["entry_price"],
         r["exit_price"], r["stop_pct"], r["atr_at_entry"], r["exit_reason"], r["pnl"], r["fees"])
        for r in stack.rows(url, "SELECT * FROM micro_positions WHERE status = 'closed'"
                      " ORDER BY closed_at, variant_id, symbol")
    ]  # fmt: skip
    still = [
        (r["variant_id"], r["symbol"], stack.ms(r["opened_at"]), r["entry_price"], r["qty"], r["stop_pct"])
        for r in stack.rows(
            url, "SELECT * FROM micro_positions WHERE status = 'open' ORDER BY variant_id, symbol"
        )
    ]
    return closed, still


async def first_pass_done(daemons: Sequence[stack.DaemonProcess]) -> bool:
    for d in daemons:
        if d.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {d.text()[-2000:]}")
        if stack.health_port(d.text()) is None or (await health(d))["passes"]["breakout"] < 1:
            return False
    return True


async def test_disjoint_shares_trade_exactly_as_one_daemon(tmp_path: Path, pg: Any) -> None:
    series = stack.cut(tmp_path / "data", SHARES_SPEC)
    first, end = stack.span(series)
    shard = {sym: Share(("x",), 0, 2).owns_symbol(sym) for sym in (s.symbol for s in series)}
    assert sorted(shard.values()) == [False, False, True, True], "each shard holds two of the symbols"
    one_url = await asyncio.to_thread(pg.create_database, migrated=True)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=0, start_ms=first + START_CANDLES * stack.TF_MS)
    await sim.start(0)
    until = ("--until", iso_z(end))
    try:
        one = stack.DaemonProcess.spawn(tmp_path / "one.log", one_url, str(sim.url), *until)
        shares = {
            name: stack.DaemonProcess.spawn(
                tmp_path / f"{name}.log",
                url,
                str(sim.url),
                *until,
                "--set",
                f"daemon.instance={name}",
                *(a for s in sets for a in ("--set", s)),
            )
            for name, sets in SHARES.items()
        }
        everyone = [one, *shares.values()]
        deadline = time.monotonic() + 90
        while not await first_pass_done(everyone):
            assert time.monotonic() < deadline, "first passes"
            await asyncio.sleep(0.1)
        sim.clock.set_speed(SHARES_SPEED)
        for d in everyone:
            assert await d.wait(150) == 0, d.text()[-3000:]
    finally:
        await sim.stop()
    try:
        want, got = book(one_url), book(url)
        assert len(want[0]) > 20, "the one daemon should have traded"
        assert got == want, "the union of the shares' books is the one daemon's book, to the bit"
        balances = {r["variant_id"]: r["balance"] for r in stack.rows(url, "SELECT * FROM variant_accounts")}
        one_bal = {
            r["variant_id"]: r["balance"] for r in stack.rows(one_url, "SELECT * FROM variant_accounts")
        }
        assert balances == pytest.approx(one_bal, rel=1e-12)
        assert (
            stack.book_problems(url, stack.config()) == []
            and stack.book_problems(one_url, stack.config()) == []
        )
        # Each instance traded its share only: its heartbeats count the opens of its pairs.
        opens: dict[str, int] = {}
        for h in stack.heartbeats(url):
            opens[h["instance"]] = opens.get(h["instance"], 0) + h["opens"]
        positions = stack.rows(url, "SELECT variant_id, symbol FROM micro_positions")
        for name, sets in SHARES.items():
            cfg = stack.config(*sets)
            mine = Share.of_config(cfg)
            assert opens.get(name, 0) == sum(mine.owns(p["variant_id"], p["symbol"]) for p in positions), name
            assert opens.get(name, 0) > 0, f"instance {name} traded"
        claims = stack.rows(
            url, "SELECT instance, variants, shard_index, shard_count FROM daemon_instances ORDER BY 1"
        )
        assert [(c["instance"], c["variants"], f"{c['shard_index']}/{c['shard_count']}") for c in claims] == [
            ("a", ["baseline", "moderate"], "0/1"),
            ("b", ["aggressive", "unhinged"], "0/2"),
            ("c", ["aggressive", "unhinged"], "1/2"),
        ]
        print(f"\n{len(want[0])} trades, {len(want[1])} open: the shares' union equals the one daemon")
    finally:
        await asyncio.to_thread(pg.drop_database, url)
        await asyncio.to_thread(pg.drop_database, one_url)
