"""One decision step: the daemon, over real candles through the simulator and the real ccxt client,
trades exactly as ``sigil replay`` does on the same candles — and with the between-closes exit pass
on, every exit still happens at or beyond its stop level and the breakouts are the same."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from sigil._core import ExitReason
from sigil.daemon import handle
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.passes import PassReport
from sigil.daemon.scanner import Scanner
from sigil.daemon.serve import serve
from sigil.errors import DaemonNotRunning
from sigil.exchange.sim import SimExchange
from sigil.research.replay import replay_series
from tests.support.daemon_stack import (
    book_problems,
    cancel,
    config,
    cut,
    ms,
    rows,
    sigil_env,
    span,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

#: DOGE from the start, PEPE listed 150 h later, WIF delisted (data ends) 300 h before the others.
SPEC = {"DOGE": (0, 1300), "PEPE": (150, 1300), "WIF": (0, 1000)}
#: Market time the frozen simulator clock moves per step.
STEP_MS = 48 * 3_600_000
#: With the exit pass on, a move to a third of the candle in progress: where the simulator walks a rising
#: candle through its low, so a ticker between two closes can hit a stop.
LIVE_STEP_MS = 20 * 60_000


async def exit_passes(task: asyncio.Task[int], n: int) -> None:
    """Waits until ``n`` more exit passes have run (or the daemon has stopped)."""
    try:
        daemon = cast(Daemon, handle.current())
    except DaemonNotRunning:
        return
    target = daemon.completed.get("exit", 0) + n
    await wait_until(lambda: task.done() or daemon.completed.get("exit", 0) >= target, timeout=30)


async def run_daemon(
    sim: SimExchange,
    url: str,
    cfg: Any,
    end_ms: int,
    on_step: Callable[[Daemon], Any] | None = None,
    live_steps: bool = False,
) -> None:
    """Runs the daemon in this loop and moves the frozen clock one step whenever it has caught up."""
    seen: list[int] = []

    def on_pass(scanner: Scanner, report: PassReport) -> None:
        if report.market_time_ms is not None:
            seen.append(report.market_time_ms)

    task = asyncio.create_task(
        serve(
            cfg,
            database_url=url,
            exchange_url=sim.url,
            limits=RunLimits(until_exhausted=True),
            until_ms=end_ms,
            on_pass=on_pass,
            health_port=0,
            handle_signals=False,
        )
    )
    step = 0
    try:
        while not task.done():
            target = sim.clock.now_ms()
            await wait_until(lambda t=target: task.done() or (bool(seen) and seen[-1] >= t), timeout=30)
            if task.done():
                break
            if on_step is not None:
                with contextlib.suppress(DaemonNotRunning):  # it may be stopping by itself already
                    await on_step(cast(Daemon, handle.current()))
            step += 1
            if live_steps:
                # A price inside the candle in progress, checked by an exit pass before the candle closes.
                sim.clock.advance(LIVE_STEP_MS)
                await exit_passes(task, 2)
                sim.clock.advance(STEP_MS - LIVE_STEP_MS)
            else:
                sim.clock.advance(STEP_MS)
        assert await asyncio.wait_for(task, 30) == 0
    finally:
        await cancel(task)


def trades(url: str) -> list[tuple[Any, ...]]:
    return [
        (
            r["variant_id"],
            r["symbol"],
            ms(r["opened_at"]),
            ms(r["closed_at"]),
            r["entry_price"],
            r["exit_price"],
            r["stop_pct"],
            r["atr_at_entry"],
            r["exit_reason"],
            r["pnl"],
            r["fees"],
        )
        for r in rows(
            url,
            "SELECT * FROM micro_positions WHERE status = 'closed' ORDER BY closed_at, variant_id, symbol",
        )
    ]


def breakouts(url: str) -> set[tuple[str, str, int]]:
    """Every breakout the scanner saw: signals, and skips decided by the engine's guard and limits."""
    return {
        (r["variant_id"], r["symbol"], ms(r["at"]))
        for r in rows(
            url, "SELECT variant_id, symbol, at, detail FROM events WHERE kind IN ('signal', 'skip')"
        )
        if r["detail"].get("refused_by") != "database"
    }


async def test_daemon_trades_exactly_as_replay(tmp_path: Path, pg: Any) -> None:
    series = cut(tmp_path / "data", SPEC)
    first, end = span(series)
    cfg = config()
    want = replay_series(series, cfg)
    assert len(want.trades) > 30

    url = await asyncio.to_thread(pg.create_database, migrated=True)
    sim = SimExchange(series, speed=0, start_ms=first)
    await sim.start(0)
    snapshots: list[tuple[int, dict[str, Any], str]] = []

    async def look(daemon: Daemon) -> None:
        if len(snapshots) in (2, 8) and daemon.health_port:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{daemon.health_port}"
                async with http.get(base + "/health") as r:
                    doc = await r.json()
                    status = r.status
                async with http.get(base + "/metrics") as r:
                    text = await r.text()
            snapshots.append((status, doc, text))
        else:
            snapshots.append((0, {}, ""))

    try:
        await run_daemon(sim, url, cfg, end, on_step=look)
    finally:
        await sim.stop()

    got = trades(url)
    expected = sorted(
        (
            (
                t.variant,
                t.symbol,
                t.entry_time,
                t.exit_time,
                t.entry_price,
                t.exit_price,
                t.stop_pct,
                t.atr_at_entry,
                t.exit_reason,
                t.pnl,
                t.fees,
            )
            for t in want.trades
        ),
        key=lambda x: (x[3], x[0], x[1]),
    )
    assert got == expected, "daemon and replay must take the same decisions, to the last bit"
    open_now = {
        (r["variant_id"], r["symbol"], ms(r["opened_at"]))
        for r in rows(url, "SELECT * FROM micro_positions WHERE status = 'open'")
    }
    assert open_now == {(p.variant, p.symbol, p.entry_time) for p in want.open_positions}
    balances = {r["variant_id"]: r["balance"] for r in rows(url, "SELECT * FROM variant_accounts")}
    assert balances == {n: m.balance for n, m in want.metrics.items()}
    assert book_problems(url, cfg) == []

    # `sigil report` reads the same book back: the table, the JSON and the plot.
    out, png = tmp_path / "report.json", tmp_path / "report.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sigil",
            "report",
            "--database-url",
            url,
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=sigil_env(),
    )
    assert r.returncode == 0, r.stderr
    assert all(any(line.startswith(n) for line in r.stdout.splitlines()) for n in want.metrics)
    doc = json.loads(out.read_text())
    for name, m in want.metrics.items():
        got_m = doc["variants"][name]
        assert (got_m["closed_trades"], got_m["wins"], got_m["balance"]) == (
            m.closed_trades,
            m.wins,
            m.balance,
        )
        assert got_m["net_pnl"] == pytest.approx(m.net_pnl, rel=1e-12, abs=1e-9)
        for reason, (n, pnl) in m.by_reason.items():
            assert got_m["exits"][reason]["count"] == n
            assert got_m["exits"][reason]["pnl"] == pytest.approx(pnl, rel=1e-12, abs=1e-9)
    assert png.read_bytes()[:4] == b"\x89PNG"

    # /health and /metrics answered and moved on between two looks.
    (s1, h1, m1), (s2, h2, m2) = (x for x in snapshots if x[0])
    assert s1 == s2 == 200 and h1["status"] == h2["status"] == "ok"
    assert h2["passes"]["breakout"] > h1["passes"]["breakout"]
    assert h2["market_time"] > h1["market_time"]
    assert m1 != m2 and "sigil_candles_fetched_total" in m2

    # With the exit pass on (live tickers between closes): exits at or beyond the stop, same breakouts.
    seen_exits: list[tuple[str, float, float]] = []
    original = Scanner._close

    async def watched(
        self: Scanner, v: int, sym: str, sid: int, t: int, price: float, reason: ExitReason, counts: Any
    ) -> None:
        pos = self.engine.position(v, sid)
        if pos is not None:
            seen_exits.append((reason, price, pos.stop_price))
        await original(self, v, sym, sid, t, price, reason, counts)

    url2 = await asyncio.to_thread(pg.create_database, migrated=True)
    sim2 = SimExchange(series, speed=0, start_ms=first)
    await sim2.start(0)
    mp = pytest.MonkeyPatch()
    mp.setattr(Scanner, "_close", watched)
    try:
        await run_daemon(
            sim2, url2, config("daemon.exit_pass=true", "daemon.exit_interval_s=0.05"), end, live_steps=True
        )
    finally:
        mp.undo()
        await sim2.stop()
    closes = rows(url2, "SELECT closed_at FROM micro_positions WHERE status = 'closed'")
    assert len(closes) == len(seen_exits) > 30
    between = [c for c in closes if ms(c["closed_at"]) % 3_600_000]
    assert between, "some exits must have come from the exit pass (a ticker between two closes)"
    for reason, price, level in seen_exits:
        assert price <= level, f"{reason} exit at {price} above its stop level {level}"
    assert breakouts(url2) == breakouts(url), "the exit pass must not change which breakouts are seen"
    entries1 = {(t[0], t[1], t[2]): t[4] for t in got}
    entries2 = {(t[0], t[1], t[2]): t[4] for t in trades(url2)}
    common = entries1.keys() & entries2.keys()
    assert len(common) > 0.5 * len(entries1)
    assert all(entries1[k] == entries2[k] for k in common), "same signal, same entry"
    assert book_problems(url2, config()) == []
    pg.drop_database(url)
    pg.drop_database(url2)


async def test_failed_and_malformed_fetches_do_not_change_the_decisions(tmp_path: Path, pg: Any) -> None:
    """Klines that fail (5xx, no retries) or stop at a malformed candle hold the pass back: the late
    candles are still decided in replay's order, so the trades stay exactly replay's."""
    from sigil.exchange.sim import Faults

    series = cut(tmp_path / "data", SPEC)
    first, end = span(series)
    cfg = config("exchange.retries=0", "daemon.hold_back_passes=1000")
    want = replay_series(series, cfg)
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    faults = Faults(seed=11, rate_5xx=0.3, rate_malformed=0.3, endpoints=frozenset({"klines"}))
    sim = SimExchange(series, speed=0, start_ms=first, faults=faults)
    await sim.start(0)
    try:
        await run_daemon(sim, url, cfg, end)
    finally:
        await sim.stop()
    injected = sim.stats.faults
    assert sum(v for k, v in injected.items() if k.startswith("http_5")) > 3
    assert sum(v for k, v in injected.items() if k.startswith("malformed")) > 3
    assert sum(r["errors"] for r in rows(url, "SELECT errors FROM scanner_heartbeats")) > 3
    got = trades(url)
    expected = sorted(
        (
            (t.variant, t.symbol, t.entry_time, t.exit_time, t.entry_price, t.exit_price, t.stop_pct,
             t.atr_at_entry, t.exit_reason, t.pnl, t.fees)
            for t in want.trades
        ),
        key=lambda x: (x[3], x[0], x[1]),
    )  # fmt: skip
    assert got == expected
    assert book_problems(url, cfg) == []
