"""Persistence benchmarks on the embedded PostgreSQL (its default settings: fsync on).

- The pre-signal guard answered from memory (``GuardMirror``, the Rust ``GuardTable``) vs the same
  answer from a Postgres query (``PositionStore.blocked``), per check; the ratio is recorded.
- Opens and closes per second through ``PositionStore``: one caller alone, and 8 callers contending
  for the same pairs and the same account (8 pooled connections).

Timings are reported, never asserted: the machine is shared. With timing off (``make test``) each
runs once on the test suite's PostgreSQL (a fresh database on its server) with 20 pairs instead of
150: starting a server of its own and filling 600 pairs takes half a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigil.store import AccountStore, Database, GuardMirror, PositionStore, SkipReason, migrate
from sigil.store.target import DatabaseTarget
from tests.support.pg import PgServer
from tests.support.store_workers import close_args, order_args

pytestmark = pytest.mark.postgres

VARIANTS = ["baseline", "moderate", "aggressive", "unhinged"]
SYMBOLS = [f"B{i:03d}/USDT" for i in range(150)]
QUICK_SYMBOLS = 20
T0 = datetime(2024, 6, 1, tzinfo=UTC)
#: Checks per benchmark round (the Postgres side needs a batch to amortise the event loop's overhead).
CHECKS = 600
CYCLES = 40  # open + close cycles per round, alone
CONTENDERS = 8
CONTENDED_PAIRS = 8

_medians: dict[str, float] = {}


class _Bench:
    """An event loop, a database with the schema (on ``url``, else an embedded server of its own),
    and a guard populated over ``symbols``."""

    def __init__(self, symbols: list[str], url: str | None = None) -> None:
        self.symbols = symbols
        self.check_points = [(v, s) for s in symbols for v in VARIANTS][:CHECKS]
        self.home = Path(tempfile.mkdtemp(prefix="sigil-bench-"))
        self.loop = asyncio.new_event_loop()
        self.db: Database = self.run(
            Database.open(DatabaseTarget(url=url, home=self.home), min_size=CONTENDERS, max_size=CONTENDERS)
        )
        self.run(self._prepare())
        self.mirror = GuardMirror(self.db, VARIANTS)
        self.run(self.mirror.start())
        self.store = PositionStore(self.db, mirror=self.mirror)
        self.counter = itertools.count()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _prepare(self) -> None:
        await migrate(self.db)

        class Rich:
            name = "bench"
            starting_balance = 1e12

        class Account:
            def __init__(self, name: str) -> None:
                self.name = name
                self.starting_balance = 1e12

        await AccountStore(self.db).ensure([Rich(), *(Account(v) for v in VARIANTS)])
        store = PositionStore(self.db)
        # Every third pair open, every third cooling down: the guard has real work to answer.
        for i, symbol in enumerate(self.symbols):
            for v in VARIANTS:
                kind = (i + VARIANTS.index(v)) % 3
                if kind == 2:
                    continue
                r = await store.open_position(**order_args(v, symbol, T0))
                if kind == 1 and r.position is not None:
                    await store.close_position(r.position.id, **close_args(T0))

    def close(self) -> None:
        self.run(self.mirror.stop())
        self.run(self.db.close())
        self.loop.close()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest, timing_off: bool) -> Iterator[_Bench]:
    with contextlib.ExitStack() as stack:
        url = None
        if timing_off:
            pg: PgServer = request.getfixturevalue("pg")
            url = stack.enter_context(pg.database(migrated=False))
        b = _Bench(SYMBOLS[:QUICK_SYMBOLS] if timing_off else SYMBOLS, url)
        try:
            yield b
        finally:
            b.close()


def _record(
    request: pytest.FixtureRequest, benchmark: Any, name: str, value: float, note: str, better: str
) -> None:
    """Puts a ratio in the benchmark's extra info and, when the suite collects ratios, registers it
    (``better``: lower, higher, or report for an absolute figure that is never gated)."""
    benchmark.extra_info[name] = round(value, 3)
    try:
        record = request.getfixturevalue("record_ratio")
    except pytest.FixtureLookupError:
        record = None
        for plugin in request.config.pluginmanager.get_plugins():
            fn = getattr(plugin, "record_ratio", None)
            if callable(fn):
                record = fn
                break
    if record is not None:
        record(name, value, note, better=better)


def _median(benchmark: Any) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else float(stats.stats.median)


def test_presignal_guard_in_memory(benchmark: Any, bench: _Bench) -> None:
    mirror = bench.mirror
    now_ms = int((T0 + timedelta(hours=1)).timestamp() * 1000)

    def checks() -> int:
        blocked = 0
        for v, s in bench.check_points:
            if mirror.blocked_ms(v, s, now_ms) is not None:
                blocked += 1
        return blocked

    blocked = benchmark(checks)
    assert blocked == sum(
        1 for i, s in enumerate(bench.symbols) for v in VARIANTS if (i + VARIANTS.index(v)) % 3 != 2
    )
    m = _median(benchmark)
    if m is not None:
        _medians["memory"] = m / len(bench.check_points)
        benchmark.extra_info["per_check_us"] = round(m / len(bench.check_points) * 1e6, 3)


def test_presignal_guard_from_postgres(benchmark: Any, bench: _Bench, request: pytest.FixtureRequest) -> None:
    store = bench.store
    at = T0 + timedelta(hours=1)

    async def checks() -> int:
        blocked = 0
        for v, s in bench.check_points:
            if await store.blocked(v, s, at) is not None:
                blocked += 1
        return blocked

    # The same answers as the mirror's, from the database.
    now_ms = int(at.timestamp() * 1000)
    for v, s in bench.check_points[:50]:
        assert bench.run(store.blocked(v, s, at)) == bench.mirror.blocked_ms(v, s, now_ms)
    benchmark.pedantic(lambda: bench.run(checks()), rounds=5, iterations=1, warmup_rounds=1)
    m = _median(benchmark)
    if m is not None:
        per = m / len(bench.check_points)
        benchmark.extra_info["per_check_us"] = round(per * 1e6, 3)
        if "memory" in _medians:
            _record(
                request,
                benchmark,
                "store.presignal_guard.postgres_over_memory",
                per / _medians["memory"],
                "pre-signal check: one Postgres query vs the in-memory guard mirror (times slower)",
                "higher",
            )


def test_open_close_alone(benchmark: Any, bench: _Bench, request: pytest.FixtureRequest) -> None:
    store = bench.store

    async def cycles() -> None:
        for _ in range(CYCLES):
            k = next(bench.counter)
            r = await store.open_position(**order_args("bench", f"A{k}/USDT", T0))
            assert r.position is not None
            await store.close_position(r.position.id, **close_args(T0))

    benchmark.pedantic(lambda: bench.run(cycles()), rounds=5, iterations=1, warmup_rounds=1)
    m = _median(benchmark)
    if m is not None:
        per_s = 2 * CYCLES / m
        benchmark.extra_info["opens_closes_per_s"] = round(per_s, 1)
        _medians["alone_ops_per_s"] = per_s
        _record(
            request,
            benchmark,
            "store.open_close_per_s.alone",
            per_s,
            "opens+closes per second, one caller",
            "report",
        )


def test_open_close_8_way_contention(benchmark: Any, bench: _Bench, request: pytest.FixtureRequest) -> None:
    """8 callers, 8 connections, the same 8 pairs of one variant: the lock, the re-check and the account
    row lock all contend. Cooldown 0 so a closed pair can open again at once."""
    store = bench.store
    outcomes: dict[str, int] = {}
    zero = timedelta(0)

    async def contender(c: int) -> None:
        for i in range(CYCLES // 2):
            symbol = f"C{(c + i) % CONTENDED_PAIRS}/USDT"
            r = await store.open_position(**order_args("bench", symbol, T0, cooldown=zero))
            if r.position is None:
                assert r.refused is SkipReason.OPEN
                outcomes["refused"] = outcomes.get("refused", 0) + 1
                continue
            outcomes["opened"] = outcomes.get("opened", 0) + 1
            await store.close_position(r.position.id, **close_args(T0))

    async def round_() -> None:
        await asyncio.gather(*(contender(c) for c in range(CONTENDERS)))

    benchmark.pedantic(lambda: bench.run(round_()), rounds=5, iterations=1, warmup_rounds=1)
    m = _median(benchmark)
    rounds = 6  # 5 measured + 1 warm-up
    opened = outcomes.get("opened", 0) / rounds
    refused = outcomes.get("refused", 0) / rounds
    benchmark.extra_info["opened_per_round"] = opened
    benchmark.extra_info["refused_per_round"] = refused
    if m is not None:
        per_s = 2 * opened / m
        benchmark.extra_info["opens_closes_per_s"] = round(per_s, 1)
        benchmark.extra_info["attempts_per_s"] = round((opened + refused) / m, 1)
        _record(
            request,
            benchmark,
            "store.open_close_per_s.8way",
            per_s,
            "opens+closes per second, 8 callers contending",
            "report",
        )
        if "alone_ops_per_s" in _medians:
            _record(
                request,
                benchmark,
                "store.open_close.8way_over_alone",
                per_s / _medians["alone_ops_per_s"],
                "throughput under 8-way contention relative to one caller",
                "higher",
            )
