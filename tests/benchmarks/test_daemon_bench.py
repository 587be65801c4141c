"""The daemon end to end: ``sigil exchange-sim`` (its own process, 50 ms added latency on every call)
serving the 109-pair universe (``../shared/data/universe-1h``; the 7 bundled pairs when absent), the
real ccxt client at Binance's published rate limit (ccxt's ``binance`` rateLimit and costs, never
loosened here), an embedded PostgreSQL, and the daemon's own scheduler, engine and stores.

Reports (never asserts timings):

- **candle close → last decision**: the simulated clock is frozen and moved one hour at a time; each
  round times from that move (the candle closes) to the end of the last decision of the breakout pass
  that decided it (``daemon.scan_interval_s`` = 1, so up to 1 s of that is the schedule); p50/p95 over
  the rounds, with the pass's own duration beside it;
- **CPU per symbol**: process CPU time (``time.process_time``; the simulator and PostgreSQL are other
  processes) per round divided by the symbols scanned, and the share of it in Sigil's own code from one
  round under cProfile with a CPU timer (``tottime`` of functions under ``python/sigil`` plus the Rust
  engine's methods, over the round's total);
- **RSS**: a ``sigil daemon`` process (rate limit lifted to 1 ms: this measures memory, not speed)
  after its warm-up pass, after one simulated hour of trading, and after a simulated month (24 h per
  pass): it should stay flat.

With timing off (``make test``) each runs once on the 7 bundled pairs, the month cut to one day.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import sigil
from sigil.config import apply_overrides, load_config
from sigil.daemon.passes import PassReport
from sigil.daemon.scanner import Scanner
from sigil.daemon.serve import serve
from tests.support.sim_process import SimProcess, sim_clock

LATENCY_MS = 50
HOUR = 3_600_000
ROUNDS = 8
RSS_DAYS = 30
#: With timing off: simulated days of the RSS run, unmeasured rounds of the latency run.
QUICK_RSS_DAYS = 1
QUICK_ROUNDS = 2
SIGIL_DIR = str(Path(sigil.__file__).resolve().parent)
#: Market time the runs start at: every pair of the universe is listed by then.
START = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)

RecordRatio = Callable[..., None]
Capsys = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def simulator(system_data: Path) -> Iterator[str]:
    """``sigil exchange-sim`` with 50 ms latency on a frozen clock; its URL."""
    sim = SimProcess.frozen(system_data, START, latency_ms=LATENCY_MS)
    try:
        yield sim.url
    finally:
        sim.stop()


@pytest.fixture
def database(db_url: str, simulator: str) -> str:
    """A fresh migrated database for one test (its URL), the simulator's clock back at :data:`START`."""
    sim_clock(simulator, now_ms=START)
    return db_url


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class DaemonThread:
    """``serve()`` on an event loop in a thread of its own, so the benchmark harness can block."""

    def __init__(self, database_url: str, exchange_url: str, *overrides: str) -> None:
        self.config = apply_overrides(load_config(), list(overrides))
        self.loop = asyncio.new_event_loop()
        self.passes: list[tuple[float, PassReport]] = []
        self.last_decision = 0.0
        self.symbols = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._done: Future[int] = asyncio.run_coroutine_threadsafe(
            serve(
                self.config,
                database_url=database_url,
                exchange_url=exchange_url,
                on_pass=self._on_pass,
                health_port=None,
                handle_signals=False,
            ),
            self.loop,
        )

    def _on_pass(self, scanner: Scanner, report: PassReport) -> None:
        self.symbols = report.symbols
        self.passes.append((time.perf_counter(), report))

    def wait_market(self, market_ms: int, timeout: float = 120) -> PassReport:
        """Blocks until a breakout pass has decided every candle up to ``market_ms``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._done.done():
                self._done.result()
                raise AssertionError("the daemon stopped")
            for _, r in reversed(self.passes):
                if r.market_time_ms is not None and r.market_time_ms >= market_ms:
                    return r
            time.sleep(0.002)
        raise AssertionError(f"no pass decided {market_ms} within {timeout}s")

    def on_loop(self, fn: Callable[[], None]) -> None:
        """Runs ``fn`` on the daemon's loop thread (cProfile profiles one thread: that one)."""
        done = threading.Event()

        def call() -> None:
            fn()
            done.set()

        self.loop.call_soon_threadsafe(call)
        done.wait(10)

    def stop(self) -> None:
        from sigil.daemon import handle

        async def stop() -> None:
            with contextlib.suppress(Exception):
                handle.current().request_stop("benchmark over")  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        with contextlib.suppress(Exception):
            self._done.result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def own_share(profile: cProfile.Profile) -> float:
    """Sigil's own CPU (Python under python/sigil, and the Rust engine) over the profiled total."""
    own = total = 0.0
    for (filename, _, name), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        total += tottime
        if filename.startswith(SIGIL_DIR) or "builtins.Engine" in name or "sigil._core" in name:
            own += tottime
    return own / total if total else 0.0


def test_candle_close_to_last_decision(
    benchmark: Any,
    database: str,
    simulator: str,
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = database
    daemon = DaemonThread(url, simulator, "daemon.scan_interval_s=1", "daemon.exit_pass=false")
    latencies: list[float] = []
    durations: list[float] = []
    cpu: list[float] = []
    market = [START - START % HOUR]
    original = Scanner._feed

    async def feed(self: Scanner, cutoff: int, counts: Any) -> None:
        await original(self, cutoff, counts)
        daemon.last_decision = time.perf_counter()

    mp = pytest.MonkeyPatch()
    mp.setattr(Scanner, "_feed", feed)
    try:
        daemon.wait_market(START, timeout=300)  # the warm-up pass (history of every symbol)

        def one_round() -> None:
            market[0] += HOUR
            c0 = time.process_time()
            t0 = time.perf_counter()
            sim_clock(simulator, now_ms=market[0])  # the candle closes now (simulated clock)
            report = daemon.wait_market(market[0])
            latencies.append(daemon.last_decision - t0)
            durations.append(report.duration_s)
            cpu.append(time.process_time() - c0)

        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        if not latencies:  # --benchmark-disable
            for _ in range(QUICK_ROUNDS):
                one_round()
        profile = cProfile.Profile(time.process_time)
        daemon.on_loop(profile.enable)
        one_round()
        daemon.on_loop(profile.disable)
        share = own_share(profile)
    finally:
        daemon.stop()
        mp.undo()
    n = max(daemon.symbols, 1)
    cpu_ms = 1000 * statistics.median(cpu[:-1]) / n
    note = f"{n} symbols, {LATENCY_MS} ms latency, Binance rate limit"
    # Absolute seconds and milliseconds on a shared machine: reported next to the baseline, not gated.
    report = "report"
    p50, p95 = statistics.median(latencies[:-1]), pct(latencies[:-1], 0.95)
    record_ratio("daemon: candle close -> last decision p50 (s)", p50, note, better=report)
    record_ratio("daemon: candle close -> last decision p95 (s)", p95, note, better=report)
    record_ratio(
        "daemon: breakout pass duration p50 (s)", statistics.median(durations[:-1]), note, better=report
    )
    record_ratio("daemon: CPU per symbol per pass (ms)", cpu_ms, "whole process", better=report)
    record_ratio(
        "daemon: Sigil's own CPU per symbol per pass (ms)",
        share * cpu_ms,
        f"share {share:.1%} (cProfile)",
        better=report,
    )
    benchmark.extra_info.update(
        {
            "symbols": n,
            "latency_s": latencies,
            "pass_s": durations,
            "cpu_ms_per_symbol": cpu_ms,
            "own_share": share,
        }
    )
    with capsys.disabled():
        print(
            f"\ndaemon, {n} symbols: close->decision p50 {statistics.median(latencies[:-1]):.2f}s "
            f"p95 {pct(latencies[:-1], 0.95):.2f}s; pass p50 {statistics.median(durations[:-1]):.2f}s; "
            f"CPU {cpu_ms:.2f} ms/symbol (Sigil's own {share * cpu_ms:.2f} ms, {share:.0%})"
        )


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def test_daemon_rss_over_a_month_of_simulated_trading(
    benchmark: Any,
    database: str,
    simulator: str,
    record_ratio: RecordRatio,
    capsys: pytest.CaptureFixture[str],
    timing_off: bool,
) -> None:
    url = database
    days = QUICK_RSS_DAYS if timing_off else RSS_DAYS
    fast = ["daemon.scan_interval_s=0.2", "daemon.exit_pass=false", "exchange.rate_limit_ms=1"]
    cmd = [sys.executable, "-m", "sigil", "daemon", "--database-url", url, "--exchange-url", simulator]
    cmd += ["--health-port", "0", "--quiet", *[a for s in fast for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[str, tuple[int, int]] = {}

    def heartbeats() -> int:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM scanner_heartbeats").fetchone()
            return int(row[0]) if row else 0

    def after_passes(n: int) -> None:
        deadline = time.monotonic() + 120
        while heartbeats() < n:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

    def month() -> None:
        market = START - START % HOUR
        after_passes(1)
        samples["after warm-up"] = rss_kib(proc.pid)
        market += HOUR
        sim_clock(simulator, now_ms=market)
        after_passes(heartbeats() + 2)
        samples["after 1 simulated hour"] = rss_kib(proc.pid)
        for _ in range(days):
            market += 24 * HOUR
            sim_clock(simulator, now_ms=market)
            after_passes(heartbeats() + 2)
        samples[f"after {days} simulated days"] = rss_kib(proc.pid)

    try:
        benchmark.pedantic(month, rounds=1, iterations=1, warmup_rounds=0)
        if not samples:
            month()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for label, (rss, _) in samples.items():
        record_ratio(f"daemon RSS {label} (MiB)", rss / 1024, "", better="lower")
    peak = max(h for _, h in samples.values())
    record_ratio("daemon peak RSS (MiB)", peak / 1024, "VmHWM", better="lower")
    with capsys.disabled():
        print("\n" + "; ".join(f"RSS {k}: {v[0] / 1024:.0f} MiB" for k, v in samples.items()))
