"""The scanner: the daemon's two passes, driving the Rust engine from the exchange and the database.

The work flows one way — exchange → :mod:`~sigil.daemon.feed` → engine → :mod:`~sigil.daemon.execution`
→ store — and the scanner is the orchestrator over those units, with :mod:`~sigil.daemon.recovery`
rebuilding the engine from the database when it cannot be trusted and
:mod:`~sigil.daemon.carry_out` carrying out each intent.

**Breakout pass** (every ``daemon.scan_interval_s``): take the exchange's time ``C`` once, refresh the
universe when due, fetch every symbol's candles closed since its last pass, and feed the engine the
candles that closed in (previous C, C], in ``(close time, symbol)`` order, exactly as replay orders
them. Per candle: ``engine.exits`` → each :class:`~sigil._core.CloseIntent` is sold and closed in the
database; then ``engine.signals``, where the pre-signal guard lives (an open or cooling-down
(variant, symbol) produces a :class:`~sigil._core.SkipIntent`) → each
:class:`~sigil._core.OpenIntent` is carried out (paper: fill, then one database transaction;
live: reserve, send, record) and applied to the engine only after the commit. Every signal, skip,
open, fill, close and exchange error is in the events log.

**Exit pass** (every ``daemon.exit_interval_s``, when ``daemon.exit_pass``): checks the open
positions' stops and trails against the tickers between candle closes (``engine.on_price``).

**The operator's controls** (:mod:`sigil.store.control`) are read at the start of every pass: a
paused variant's open intents become skips (reason ``paused``; exits go on), and each requested exit
of a position this daemon holds is sold at the ticker's price with reason ``manual`` at the end of
the pass.

The passes never interleave (one lock), so an intent is always carried out against the state that
produced it. After a pass that failed half-way the engine is rebuilt from the database before the
next one decides anything.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sigil._core import ExitReason, OpenIntent
from sigil.config import Config, Variant
from sigil.daemon.carry_out import CarryOut
from sigil.daemon.engine_state import EngineState
from sigil.daemon.execution import Notify, error_kind, make_execution
from sigil.daemon.feed import CandleFeed, DueCandle
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.passes import BREAKOUT, EXIT, PassReport, VariantState
from sigil.daemon.reconcile import Reconciler
from sigil.daemon.recovery import Recovery
from sigil.daemon.scheduler import JobSpec
from sigil.daemon.share import Share
from sigil.errors import ExchangeRejected, ExchangeUnavailable, PositionNotOpen
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.universe import Universe
from sigil.store import (
    AccountStore,
    Database,
    EventStore,
    GuardMirror,
    HeartbeatStore,
    PassStats,
    PositionStore,
    require_current,
)
from sigil.store.control import ControlStore, ExitRequest
from sigil.store.instances import SharePositions
from sigil.times import from_ms, iso

log = logging.getLogger(__name__)


class Scanner(CarryOut):
    """The passes of one daemon (see the module docstring); implements :class:`~sigil.daemon.passes.Passes`.

    Create it, ``await start()`` (checks the schema, creates missing accounts, starts the guard
    mirror, reads the resume point), hand it to :class:`~sigil.daemon.app.Daemon`, ``await close()``.
    ``until_ms``: the market time after which :meth:`exhausted` is true (a bounded run).
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        client: ExchangeClient,
        *,
        metrics: DaemonMetrics | None = None,
        universe: Universe | None = None,
        until_ms: int | None = None,
        on_pass: Callable[[Scanner, PassReport], None] | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.config = config
        self.settings = config.settings.daemon
        self.db = db
        self.client = client
        self.metrics = metrics or DaemonMetrics()
        #: This instance's share: its variants only, on its shard's symbols only (daemon.variants/shard).
        self.share = Share.of_config(config)
        self.universe = universe or Universe(client, keep=self.share.owns_symbol)
        self.until_ms = until_ms
        self.on_pass = on_pass
        self.variant_configs: tuple[Variant, ...] = self.share.pick(config.variants)
        self.names = [v.name for v in self.variant_configs]
        self.tf_ms = client.timeframe_ms
        self.accounts = AccountStore(db)
        self.events = EventStore(db)
        self.control = ControlStore(db)
        #: A live daemon's books against the exchange account (a drift pauses opens through control).
        self.reconciler = Reconciler(config, db, client, self.metrics) if client.live else None
        #: The variants paused for this instance, as of the start of the current pass.
        self.paused: frozenset[str] = frozenset()
        self.heartbeats = HeartbeatStore(db, self.settings.instance)
        self.state = EngineState([v.engine_params() for v in self.variant_configs], self.names, self.tf_ms)
        # The mirror keeps the database's guard in the engine's own guard table.
        self.mirror = GuardMirror(db, self.names, target=self.state)
        self.positions: PositionStore = SharePositions(db, self.share.owns, mirror=self.mirror)
        self.feed = CandleFeed(
            client, keep=client.config.history_candles, hold_back_passes=self.settings.hold_back_passes
        )
        self.execution = make_execution(client, self.variant_configs, self.positions, self._resync)
        if notify is not None:
            # Opens and closes are told from here, order failures and fills from the execution.
            self.execution.notify = notify
        self.notify = self.execution.notify
        self.recovery = Recovery(
            self.state, self.feed, self.execution, self.accounts, self.positions, self.mirror
        )
        self._lock = asyncio.Lock()
        self._dirty = True
        self._resume_ms: int | None = None
        #: Market time up to which candles have been decided (the last completed pass's C).
        self.cutoff_ms: int | None = None
        self._exchange_errors_seen: dict[str, int] = {}
        #: Close time of the newest candle decided so far (ms UTC).
        self.newest_close_ms: int | None = None
        self.passes = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Checks the schema, creates missing accounts, starts the guard mirror, reads the resume point."""
        await require_current(self.db)
        created = await self.accounts.ensure(self.variant_configs)
        if created:
            log.info("accounts created: %s", ", ".join(created))
        await self.mirror.start()
        self._resume_ms = await self.recovery.resume_point()
        if self._resume_ms is not None:
            # Every candle since the resume point, and enough before it to warm the engine up.
            self.client.start_at(self._resume_ms - self.client.config.history_candles * self.tf_ms)
        log.info(
            "resuming after %s",
            "nothing (fresh start)" if self._resume_ms is None else iso(self._resume_ms),
        )

    async def close(self) -> None:
        """Stops the guard mirror (the caller closes the exchange client and the database)."""
        await self.mirror.stop()

    # -- what the daemon schedules (sigil.daemon.passes.Passes) ---------------------------------------

    def jobs(self) -> Sequence[JobSpec]:
        """The breakout pass, and the exit pass when ``daemon.exit_pass`` is on."""
        jobs = [JobSpec(BREAKOUT, self.settings.scan_interval_s)]
        if self.settings.exit_pass:
            jobs.append(JobSpec(EXIT, self.settings.exit_interval_s, run_at_start=False))
        return jobs

    async def run(self, name: str) -> PassReport:
        """One pass; see the module docstring."""
        async with self._lock:
            if name == BREAKOUT:
                return await self._breakout()
            if name == EXIT:
                return await self._exit_pass()
        raise ValueError(f"unknown pass {name!r}")

    async def heartbeat(self, report: PassReport) -> None:
        """The heartbeat row of a completed breakout pass."""
        finished = datetime.now(UTC)
        started = finished - timedelta(seconds=report.duration_s)
        await self.heartbeats.record(
            PassStats(
                started_at=started,
                finished_at=finished,
                symbols_scanned=report.symbols,
                signals=report.signals,
                opens=report.opens,
                closes=report.closes,
                errors=report.errors,
                candles_decided=report.decided,
                market_time=None if report.newest_close_ms is None else from_ms(report.newest_close_ms),
                exchange_time=None if report.exchange_time_ms is None else from_ms(report.exchange_time_ms),
            )
        )

    def variants(self) -> dict[str, VariantState]:
        """Balance, equity and open positions per variant (the engine's view, which follows the database)."""
        e = self.engine
        return {
            name: VariantState(e.balance(v), e.equity(v), len(e.open_symbols(v)))
            for v, name in enumerate(self.names)
        }

    def describe(self) -> dict[str, Any]:
        """What /health shows about trading: market time decided up to, universe, exchange counters,
        and the broker (``paper`` or ``live``, with the variants' balances; never a key)."""
        return {
            "broker": self.execution.health(),
            "market_time": None if self.cutoff_ms is None else iso(self.cutoff_ms),
            "universe": len(self.universe.symbols),
            "exchange": self.client.health(),
            "guard_mirror_listening": self.mirror.listening,
            "paused": sorted(self.paused),
            **({} if self.reconciler is None else {"reconcile": self.reconciler.describe()}),
        }

    def exhausted(self) -> bool:
        """True once a pass has decided every candle up to ``until_ms``."""
        return self.until_ms is not None and self.cutoff_ms is not None and self.cutoff_ms >= self.until_ms

    # -- the breakout pass ----------------------------------------------------------------------------

    def _scan_list(self) -> list[str]:
        """The universe, then every other symbol a position is held (or about to be restored) in, or
        whose last candles are still to be decided."""
        held = set(self.state.held()) | self.recovery.pending_symbols()
        out = list(self.universe.symbols)
        seen = set(out)
        for sym in sorted(held | self.feed.draining):
            if sym not in seen:
                out.append(sym)
                seen.add(sym)
        return out

    async def _breakout(self) -> PassReport:
        t0 = time.perf_counter()
        report = counts = PassReport(BREAKOUT)
        now = exchange_time = await self.client.server_time()
        if self.reconciler is not None:
            # Before the pauses are read: a drift found now stops this pass's opens.
            await self.reconciler.check_if_due()
        # After the clock: whatever was written before the exchange's time C is in force for C.
        exits = await self._read_control()
        before = set(self.universe.symbols)
        try:
            await self.universe.refresh_if_due(now)
        except (ExchangeUnavailable, ExchangeRejected) as e:
            await self._record_error(f"universe refresh: {e}", now)
            if self.universe.selection is None:
                raise  # no universe yet: a pass over nothing must not pass for progress
            # The last good universe stays; the pass goes on with it.
            counts.error(error_kind(e))
        self.feed.universe_changed(before, set(self.universe.symbols))
        if self.execution.unsettled and not self._dirty and await self.execution.settle():
            # The engine holds estimates for what is now settled: rebuild it from the database.
            self._dirty = True
        symbols = self._scan_list()
        fetched, failed = await self.feed.fetch(symbols, now)
        for sym, kind in sorted(failed.items()):
            counts.error(kind)
            await self._record_error(f"fetch_ohlcv {sym}: {kind}", now, symbol=sym)
        if symbols and len(failed) == len(symbols):
            self._sync_exchange_errors()
            # Nothing could be fetched: a pass that learnt nothing is not progress (no heartbeat).
            raise ExchangeUnavailable(f"every fetch of this pass failed ({len(failed)} symbols)")
        self.feed.drained(failed)
        now = self.feed.decide_to(now, symbols, failed, self.cutoff_ms)
        self.metrics.candles.inc(by=fetched)
        self.metrics.symbols.set(len(self.universe.symbols))
        self._sync_exchange_errors()
        try:
            if self._dirty:
                await self._rebuild(now, counts)
            else:
                await self._feed(now, counts)
            await self._manual_exits(exits, now, counts)
            await self._persist_pass_end(now)
            self.feed.trim()
        except BaseException:
            # Engine and database may now disagree: rebuild from the database before the next pass.
            self._dirty = True
            raise
        self.cutoff_ms = now
        self.passes += 1
        report.market_time_ms = now
        report.symbols = len(symbols)
        report.candles = fetched
        report.newest_close_ms, report.exchange_time_ms = self.newest_close_ms, exchange_time
        report.duration_s = time.perf_counter() - t0
        if self.on_pass is not None:
            self.on_pass(self, report)
        return report

    async def _rebuild(self, cutoff: int, counts: PassReport) -> None:
        """A fresh engine from the candle history and the database (start-up, or after a failed pass)."""
        resume = self._resume_ms if self.cutoff_ms is None else await self.recovery.resume_point()

        async def decide(due: DueCandle, trade: bool) -> None:
            await self._candle(due, counts, trade=trade)

        await self.recovery.rebuild(cutoff, resume, decide)
        self._dirty = False

    async def _feed(self, cutoff: int, counts: PassReport) -> None:
        """Decides the candles due by ``cutoff``; what closed before the previous pass is history."""
        first_seen = self.cutoff_ms if self.cutoff_ms is not None else cutoff
        for due in self.feed.due(cutoff):
            await self._candle(due, counts, trade=self.feed.is_news(due, first_seen))

    async def _candle(self, due: DueCandle, counts: PassReport, *, trade: bool) -> None:
        sym, c = due.symbol, due.candle
        sid = self.state.sid(sym)
        self.recovery.before_candle(due)
        self.feed.fed(due)
        closes = self.engine.exits(sid, c.time, c.open, c.high, c.low, c.close, c.volume)
        self.recovery.held_through(due)
        # Warm-up candles are accounted for too: the market time the engine has reached.
        self.newest_close_ms = max(due.close, self.newest_close_ms or due.close)
        if trade:
            counts.decided += 1
            for ci in closes:
                if self.recovery.redo.close(ci, sym):
                    counts.closes += 1  # the database holds this close already (a pass cut short)
                    continue
                await self._close(ci.variant, sym, sid, ci.time, ci.price, ci.reason, counts)
        intents = self.engine.signals(sid)
        if not trade:
            return
        for intent in intents:
            if self.recovery.carried_out(intent.variant, sym, due.close):
                continue  # carried out before a restart: the position comes back from the database
            if isinstance(intent, OpenIntent):
                if self.recovery.redo.open(intent, sym):
                    counts.opens += 1  # the database holds this open already (a pass cut short)
                    continue
                if self.names[intent.variant] in self.paused:
                    await self._declined(sym, intent, counts)
                    continue
                await self._open(sym, sid, intent, counts)
            else:
                await self._skip(intent.variant, sym, intent.time, intent.reason, counts)

    # -- the exit pass --------------------------------------------------------------------------------

    async def _exit_pass(self) -> PassReport:
        t0 = time.perf_counter()
        report = counts = PassReport(EXIT)
        if self._dirty:
            return report  # nothing trustworthy to check until the next breakout pass rebuilt the engine
        held = self.state.held()
        if held:
            # Only a position held can be asked to exit; pauses matter to the breakout pass alone.
            exits = await self._read_control()
            try:
                tickers = await self.client.fetch_tickers(sorted(held))
            except (ExchangeUnavailable, ExchangeRejected) as e:
                counts.error(error_kind(e))
                self._sync_exchange_errors()
                raise
            for sym in sorted(held):
                tk = tickers.get(sym) or {}
                price, ts = tk.get("last"), tk.get("timestamp")
                if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
                    continue
                if not isinstance(ts, int) or self.cutoff_ms is None or ts < self.cutoff_ms:
                    continue  # a ticker older than the candles already decided says nothing new
                if ts - ts % self.tf_ms > self.cutoff_ms:
                    # A candle has closed since the last breakout pass: deciding on this price now would
                    # act ahead of that candle. The breakout pass decides it first.
                    continue
                sid = held[sym]
                try:
                    for ci in self.engine.on_price(sid, ts, float(price)):
                        await self._close(ci.variant, sym, sid, ci.time, ci.price, ci.reason, counts)
                except BaseException:
                    self._dirty = True
                    raise
            if self.cutoff_ms is not None:
                try:
                    await self._manual_exits(exits, self.cutoff_ms, counts)
                except BaseException:
                    self._dirty = True
                    raise
            await self._persist_trails()
        report.symbols = len(held)
        report.duration_s = time.perf_counter() - t0
        return report

    # -- the operator's controls ---------------------------------------------------------------------

    async def _read_control(self) -> list[ExitRequest]:
        """Reads the pauses in force for this instance and the pending exit requests."""
        self.paused = await self.control.paused_variants(self.settings.instance, self.names)
        return await self.control.pending_exits()

    async def _manual_exits(self, requests: list[ExitRequest], cutoff: int, counts: PassReport) -> None:
        """Sells every requested position this daemon holds at the ticker's price (reason ``manual``).

        The close is dated at the ticker's time when no candle has closed since ``cutoff`` (as the
        exit pass dates its closes), else at ``cutoff``: never ahead of a candle still to be decided.
        A request whose position another process closed first is marked ``not_open``; one that could
        not be sold now stays pending for the next pass.
        """
        mine: list[tuple[int, ExitRequest]] = []
        for r in requests:
            v = self.state.vid.get(r.variant)
            if r.status != "open":
                await self.control.finish_exit(r.id, "not_open")
            elif v is not None and self.state.position_ids.get((v, r.symbol)) == r.position_id:
                mine.append((v, r))
        if not mine:
            return
        try:
            tickers = await self.client.fetch_tickers(sorted({r.symbol for _, r in mine}))
        except (ExchangeUnavailable, ExchangeRejected) as e:
            counts.error(error_kind(e))
            await self._record_error(f"manual exit: {e}", cutoff)
            return
        for v, r in mine:
            tk = tickers.get(r.symbol) or {}
            price, ts = tk.get("last"), tk.get("timestamp")
            if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
                await self._record_error(f"manual exit #{r.position_id}: no price", cutoff, symbol=r.symbol)
                continue
            at = ts if isinstance(ts, int) and cutoff <= ts and ts - ts % self.tf_ms <= cutoff else cutoff
            log.info("manual exit of #%d (%s %s), asked by %s", r.position_id, r.variant, r.symbol, r.by)
            sid = self.state.sid(r.symbol)
            await self._close(v, r.symbol, sid, at, float(price), ExitReason.MANUAL, counts)
            if self.state.position_ids.get((v, r.symbol)) != r.position_id:
                await self.control.finish_exit(r.id, "closed")

    # -- the end of a pass ----------------------------------------------------------------------------

    async def _persist_trails(self) -> None:
        for pid, mark in self.state.trail_changes():
            try:
                await self.positions.update_trail(
                    pid, active=mark.active, highest=mark.highest, stop=mark.stop
                )
            except PositionNotOpen:
                continue  # closed by another process; its close reaches us as a refusal later
            self.state.trail_written(pid, mark)

    async def _persist_pass_end(self, cutoff: int) -> None:
        """Trails first, then the equity marks: ``equity_at`` is the resume point, so it moves last."""
        await self._persist_trails()
        equities = {name: max(0.0, self.engine.equity(v)) for v, name in enumerate(self.names)}
        await self.accounts.mark_pass(equities, from_ms(cutoff))

    def _sync_exchange_errors(self) -> None:
        for kind, n in self.client.stats.errors.items():
            seen = self._exchange_errors_seen.get(kind, 0)
            if n > seen:
                self.metrics.exchange_errors.inc(kind, by=n - seen)
                self._exchange_errors_seen[kind] = n
