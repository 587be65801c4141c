"""Building blocks of the daemon's end-to-end tests: candle files cut from the bundled data, a fast
test configuration, the daemon as a subprocess, polling, and the invariants the database must always
satisfy."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from sigil.config import Config, apply_overrides, load_config
from sigil.data.candles import CandleSeries, load_universe, read_candles
from tests.support.data import BUNDLED, rows_of

TF_MS = 3_600_000

#: Settings that make a daemon fast enough for tests against the in-process simulator.
FAST = (
    "daemon.scan_interval_s=0.2",
    "daemon.exit_interval_s=0.1",
    "daemon.exit_pass=false",
    "daemon.job_timeout_s=20",
    "daemon.stop_timeout_s=5",
    "daemon.heartbeat_max_age_s=60",
    "daemon.loop_stall_s=60",
    "exchange.rate_limit_ms=1",
    "exchange.timeout_s=5",
    "exchange.backoff_base_s=0.01",
    "exchange.backoff_max_s=0.05",
)


def config(*overrides: str) -> Config:
    """The shipped config with :data:`FAST` and ``overrides`` applied."""
    return apply_overrides(load_config(), [*FAST, *overrides])


def cut(dest: Path, spec: dict[str, tuple[int, int]]) -> list[CandleSeries]:
    """Writes ``SYMBOL_USDT-1h.json`` files with candles [start, stop) of the bundled ``SYMBOL`` file."""
    dest.mkdir(parents=True, exist_ok=True)
    for base, (start, stop) in spec.items():
        s = read_candles(BUNDLED / f"{base}_USDT-1h.feather")
        rows = rows_of(s, start, min(stop, len(s)))
        (dest / f"{base}_USDT-1h.json").write_text(json.dumps(rows), encoding="utf-8")
    return load_universe([dest])


def span(series: Sequence[CandleSeries]) -> tuple[int, int]:
    """(first open time, last close time) over ``series``."""
    return min(int(s.time[0]) for s in series), max(int(s.time[-1]) + s.timeframe_ms for s in series)


def sigil_env() -> dict[str, str]:
    """The environment of a ``sigil`` subprocess: nothing from the outside chooses its database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGIL_") and k != "NOTIFY_SOCKET"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class DaemonProcess:
    """``sigil daemon`` in a subprocess (stderr to a file, so a kill cannot lose it)."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float

    @classmethod
    def spawn(
        cls, log: Path, database_url: str, exchange_url: str, *args: str, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        """Starts a daemon with the :data:`FAST` settings plus ``args`` (``env`` added to its environment)."""
        sets = [a for s in FAST for a in ("--set", s)]
        cmd = [
            sys.executable,
            "-m",
            "sigil",
            "daemon",
            "--database-url",
            database_url,
            "--exchange-url",
            exchange_url,
            "--health-port",
            "0",
            *sets,
            *args,
        ]
        fh = log.open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**sigil_env(), **(env or {})},
            start_new_session=True,
        )
        fh.close()
        return cls(proc, log, time.monotonic())

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM (the clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        """The exit status, waiting without blocking the event loop (the simulator runs on it)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                # Its threads' stacks into the log first (the daemon's SIGUSR1), then kill it.
                self.proc.send_signal(signal.SIGUSR1)
                await asyncio.sleep(2.0)
                self.kill9()
                raise AssertionError(f"daemon did not exit within {timeout}s; log:\n{self.text()[-8000:]}")
            await asyncio.sleep(0.05)
        return int(self.proc.returncode)

    def text(self) -> str:
        """Everything the daemon printed."""
        return self.log.read_text(encoding="utf-8", errors="replace")


async def wait_until(pred: Any, timeout: float = 10.0, step: float = 0.02) -> None:
    """Polls ``pred()`` until true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancels ``task`` if it is still running and waits for it to end, whatever it raises."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def health_port(text: str) -> int | None:
    """The port of /health, from a daemon's log; None before it is serving."""
    m = re.search(r"health on http://127\.0\.0\.1:(\d+)/health", text)
    return int(m[1]) if m else None


def logged_at(text: str, needle: str) -> float | None:
    """Wall time of the first line of a daemon's log (``2026-01-02 03:04:05,678 …``) containing
    ``needle``; None when there is none."""
    for line in text.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
        if m is not None and needle in line:
            return time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
    return None


# -- the database's invariants ---------------------------------------------------------------------------


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of a query, as dicts."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def heartbeats(url: str) -> list[dict[str, Any]]:
    """Every heartbeat, oldest first."""
    return rows(url, "SELECT * FROM scanner_heartbeats ORDER BY finished_at")


def book_problems(url: str, cfg: Config) -> list[str]:
    """Everything wrong with the database's book; [] when it is consistent.

    No (variant, symbol) open twice or overlapping in time; the cooldown from each open respected
    and its protection in force; each account's balance equal to its ledger; an event for every
    open and close.
    """
    problems: list[str] = []
    cooldown = {v.name: timedelta(milliseconds=v.cooldown_candles * TF_MS) for v in cfg.variants}
    positions = rows(url, "SELECT * FROM micro_positions ORDER BY opened_at, id")
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in positions:
        by_pair[(p["variant_id"], p["symbol"])].append(p)
    protections = {
        (r["variant_id"], r["symbol"]): r["protected_until"]
        for r in rows(url, "SELECT variant_id, symbol, protected_until FROM symbol_protections")
    }
    for pair, ps in by_pair.items():
        if sum(1 for p in ps if p["status"] == "open") > 1:
            problems.append(f"{pair}: more than one open position")
        for a, b in itertools.pairwise(ps):
            if a["closed_at"] is None or b["opened_at"] < a["closed_at"]:
                problems.append(f"{pair}: #{b['id']} opened while #{a['id']} was open")
            if b["opened_at"] < a["opened_at"] + cooldown[pair[0]]:
                problems.append(f"{pair}: #{b['id']} opened inside the cooldown of #{a['id']}")
        last = ps[-1]["opened_at"] + cooldown[pair[0]]
        if protections.get(pair) is None or protections[pair] < last:
            problems.append(f"{pair}: protection {protections.get(pair)} ends before {last} (cooldown lost)")
    starts = {a["variant_id"]: a for a in rows(url, "SELECT * FROM variant_accounts")}
    for name, acct in starts.items():
        mine = [p for p in positions if p["variant_id"] == name]
        ledger = acct["starting_balance"]
        ledger += sum(p["pnl"] for p in mine if p["status"] == "closed" and p["pnl"] is not None)
        ledger -= sum(p["stake"] + p["entry_fee"] for p in mine if p["status"] == "open")
        if abs(ledger - acct["balance"]) > 1e-6:
            problems.append(f"{name}: balance {acct['balance']!r} but the positions say {ledger!r}")
    events = rows(
        url,
        "SELECT kind, count(DISTINCT position_id) AS n FROM events"
        " WHERE position_id IS NOT NULL GROUP BY kind",
    )
    n = {e["kind"]: e["n"] for e in events}
    # A live reservation whose order did not execute is closed without a close event (an error says why).
    closed = sum(1 for p in positions if p["status"] == "closed" and p["exit_reason"] != "order_failed")
    filled = sum(1 for p in positions if p["fill"] == "exchange")
    if n.get("open", 0) != len(positions):
        problems.append(f"{len(positions)} positions but {n.get('open', 0)} open events")
    if n.get("close", 0) != closed:
        problems.append(f"{closed} closed positions but {n.get('close', 0)} close events")
    if n.get("fill", 0) != filled:
        problems.append(f"{filled} positions filled by the exchange but {n.get('fill', 0)} fill events")
    return problems


def ms(dt: datetime) -> int:
    """UTC datetime → epoch ms."""
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
