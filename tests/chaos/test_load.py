"""Load: the daemon over 500 symbols (copies of the 109 real pairs of ``../shared/data/universe-1h``
under new names) at the shipped 60 s scan interval, the simulator at 60× so a new one-hour candle closes
on every symbol before every pass (sixty times the work of real time, where one pass in sixty sees a
close). Recorded: each pass's duration, the time between pass starts, the process's RSS after each
pass; asserted: every pass scans the 500 symbols, the RSS stays flat, the invariants hold."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sigil.times import to_ms
from tests.chaos.record import Record
from tests.chaos.scene import free_port, start_sim_process
from tests.support import daemon_stack as stack
from tests.support.data import SHARED_UNIVERSE
from tests.support.invariants import check, failures

pytestmark = [pytest.mark.postgres, pytest.mark.chaos, pytest.mark.timeout(900)]

SYMBOLS = 500
FILES = 560
INTERVAL_S = 60.0
#: Market time per real time: one hour of candles per scan interval.
SPEED = 3_600.0 / INTERVAL_S
PASSES = 5
#: Market time at the start: every pair has months of history before it, most trade on after it.
START = to_ms(datetime(2024, 6, 1, tzinfo=UTC))
#: RSS after the last pass may exceed RSS after the second (the first completed after warm-up) by this.
RSS_GROWTH = 1.15


def universe_of(dest: Path, n: int) -> int:
    """``n`` feather files in ``dest``: the shared universe's, then copies named ``BASE<k>``; how many."""
    files = sorted(SHARED_UNIVERSE.glob("*_USDT-1h.feather"))
    assert files, f"no candle files in {SHARED_UNIVERSE}"
    dest.mkdir(parents=True)
    made = 0
    for k in range(n // len(files) + 1):
        for f in files:
            if made == n:
                return made
            base = f.name.split("_USDT-")[0]
            shutil.copyfile(f, dest / f"{base}{'' if k == 0 else f'X{k}'}_USDT-1h.feather")
            made += 1
    return made


def rss_mib(pid: int) -> float:
    """A process's resident set size, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def test_500_symbols_at_a_60_s_scan_interval(tmp_path: Path, pg: Any, record: Record) -> None:
    record.scenario = f"load: {SYMBOLS} symbols, scan interval {INTERVAL_S:g} s, a candle closing every pass"
    data = tmp_path / "universe"
    # More files than symbols: a few pairs are not listed yet at START, or no longer.
    assert universe_of(data, FILES) == FILES
    url = await asyncio.to_thread(pg.create_database, migrated=True)
    port = free_port()
    sim = await asyncio.to_thread(start_sim_process, data, port, START, SPEED)
    rss: list[float] = []
    d = stack.DaemonProcess.spawn(
        tmp_path / "d.log",
        url,
        f"http://127.0.0.1:{port}",
        "--set",
        f"daemon.scan_interval_s={INTERVAL_S:g}",
        *("--set", f"exchange.max_symbols={SYMBOLS}"),
    )
    record.runs = 1
    try:
        t0 = time.monotonic()
        for n in range(1, PASSES + 1):
            await stack.wait_until(
                lambda n=n: d.proc.poll() is not None or len(stack.heartbeats(url)) >= n,
                timeout=INTERVAL_S * 3,
                step=0.2,
            )
            assert d.proc.poll() is None, d.text()[-3000:]
            rss.append(rss_mib(d.proc.pid))
        wall = time.monotonic() - t0
        d.terminate()
        assert await d.wait(60) == 0, d.text()[-3000:]
        beats = stack.heartbeats(url)
        checked = check(url, stack.config(), settled=True)
        record.checked(checked)
        assert not failures(checked), failures(checked)
    finally:
        d.kill9()
        sim.stop()
        await asyncio.to_thread(pg.drop_database, url)
    durations = [float(h["duration_s"]) for h in beats]
    starts = [h["started_at"].timestamp() for h in beats]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    record.times["warm-up pass"] = round(durations[0], 2)
    record.spread("later passes", durations[1:])
    record.spread("pass start to pass start", gaps)
    record.times["RSS after each pass (MiB)"] = ", ".join(f"{r:.0f}" for r in rss)
    scanned = sorted({int(h["symbols_scanned"]) for h in beats})
    record.notes.append(
        f"{len(beats)} passes in {wall:.0f} s; symbols scanned per pass {scanned};"
        f" {sum(int(h['opens']) for h in beats)} opens, {sum(int(h['closes']) for h in beats)} closes;"
        f" pass starts {'kept' if max(gaps) <= INTERVAL_S * 1.1 else 'NOT kept'} within 10 %"
        f" of {INTERVAL_S:g} s"
        " (exchange.rate_limit_ms=1: the simulator, not Binance's published limit)"
    )
    record.fault(f"{SYMBOLS} symbols of {FILES} files (the 109 real pairs copied under new names)")
    assert min(scanned) == SYMBOLS, f"passes scanned {scanned} of {SYMBOLS} symbols"
    assert rss[-1] <= rss[1] * RSS_GROWTH, f"RSS grew from {rss[1]:.0f} to {rss[-1]:.0f} MiB"
