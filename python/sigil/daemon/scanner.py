"""The scanner: the daemon's two passes, driving the Rust engine from the exchange and the database.

**Breakout pass** (every ``daemon.scan_interval_s``): take the exchange's time ``C`` once, refresh the
universe when due, fetch every symbol's candles closed since its last pass, and feed the engine the
candles that closed in (previous C, C], merged in ``(close time, symbol)`` order, exactly as replay
orders them. Per candle: ``engine.exits`` → each close goes through the broker and
``PositionStore.close_position``; then ``engine.signals``, where the pre-signal guard lives (an open
or cooling-down (variant, symbol) produces a skip, not a signal) → each open goes through the broker
and ``PositionStore.open_position`` (one transaction: advisory lock, re-check, insert, cooldown from
the open, debit) and is applied to the engine only after the commit. Every signal, skip, open, fill,
close and exchange error is in the events log.

**Paper or live.** The paper broker's fill is known before anything is sent, so a paper open fills
first and then opens in the database. A live open (``--live``) reverses that: the database reserves
the position first (the advisory lock, the re-check and the unique index decide, so two daemons can
never both send an order for one pair), then the order goes out under the client id
``sigil-o<position id>``, then the exchange's fill is recorded into the reservation. An order that did
not execute closes the reservation with no P&L and the money back; one whose outcome could not be
learnt stays reserved at its estimate, is not sold, and is looked up again at the start of every pass
until the exchange answers (every rebuild does the same, which settles what a crash left behind). A
live sell that fails leaves the position open (the next candle or exit pass tries again).

**Exit pass** (every ``daemon.exit_interval_s``, when ``daemon.exit_pass``): checks the open
positions' stops and trails against the tickers between candle closes (``engine.on_price``).

The passes never interleave (one lock), so an intent is always carried out against the state that
produced it.

**Resuming.** The database is the authority. At start-up, and after a pass that failed half-way,
the engine is rebuilt: candles up to the resume point ``R`` (the market time of the last completed
pass, stored as the accounts' ``equity_at``) only warm up ATR and breakout windows; then positions are
restored with their trail state, cooldowns come from the guard mirror and balances from the accounts;
candles after ``R`` are decided again. A decision that was already carried out before a crash is
found in the database (the position is open, the pair is protected, the balance is debited), so it
is never carried out twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sigil import _core
from sigil.config import Config, Variant
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.passes import BREAKOUT, EXIT, PassReport, VariantState
from sigil.daemon.scheduler import JobSpec
from sigil.errors import (
    ExchangeRejected,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRefused,
    PositionNotOpen,
)
from sigil.exchange.broker import Fill, LiveBroker, make_broker
from sigil.exchange.ccxt_client import MAX_CANDLES_PER_REQUEST, Candle, ExchangeClient
from sigil.exchange.universe import Universe
from sigil.store import (
    AccountStore,
    Database,
    EventStore,
    GuardChange,
    GuardMirror,
    HeartbeatStore,
    PassStats,
    Position,
    PositionStore,
    SkipReason,
    require_current,
)

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A fetch that returned this many candles for one symbol may have been cut at the request limit.
TRUNCATED_AT = MAX_CANDLES_PER_REQUEST - 1
#: At most this many extra fetch rounds per pass to catch up a symbol cut at the request limit.
MAX_CATCHUP_ROUNDS = 20


def to_dt(ms: int) -> datetime:
    """Epoch milliseconds → UTC datetime (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(dt: datetime) -> int:
    """UTC datetime → epoch milliseconds (rounded down)."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


@dataclass
class _Pending:
    """A position the database holds that the engine gets back once the candles reach it."""

    position: Position
    variant: int
    restore_after: int
    bars_held: int = 0


@dataclass
class _Counts:
    signals: int = 0
    opens: int = 0
    closes: int = 0
    skips: int = 0
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_types[kind] = self.error_types.get(kind, 0) + 1


class Scanner:
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
    ) -> None:
        self.config = config
        self.settings = config.settings.daemon
        self.db = db
        self.client = client
        self.metrics = metrics or DaemonMetrics()
        self.universe = universe or Universe(client)
        self.until_ms = until_ms
        self.on_pass = on_pass
        self.variant_configs: tuple[Variant, ...] = config.variants
        self.names = [v.name for v in self.variant_configs]
        self._vid = {n: i for i, n in enumerate(self.names)}
        self.params = [v.engine_params() for v in self.variant_configs]
        self.tf_ms = client.timeframe_ms
        self.accounts = AccountStore(db)
        self.events = EventStore(db)
        self.heartbeats = HeartbeatStore(db, self.settings.instance)
        self.mirror = GuardMirror(db, self.names, on_change=self._on_guard_change)
        self.positions = PositionStore(db, mirror=self.mirror)
        self.broker = make_broker(client, self.variant_configs)
        self.engine = _core.Engine(self.params)
        self._lock = asyncio.Lock()
        self._sym_names: dict[int, str] = {}
        self._history: dict[str, deque[Candle]] = {}
        #: Candles kept per symbol once decided: enough to warm a rebuilt engine up.
        self._keep = max(client.config.history_candles, 1)
        #: Open time of the last candle fed to the engine, per symbol.
        self._cursor: dict[str, int] = {}
        #: Candles of a symbol closing at or before this time only warm the engine up.
        self._trade_after: dict[str, int] = {}
        self._pending: dict[tuple[int, str], _Pending] = {}
        #: Live reservations whose order's outcome is unknown: not sold until they are settled.
        self._unsettled: set[int] = set()
        #: Live positions a sell was sent for, outcome not recorded: looked up before selling again.
        self._selling: set[int] = set()
        self._pos_id: dict[tuple[int, str], int] = {}
        self._trail: dict[int, tuple[bool, float, float | None]] = {}
        #: Pairs whose own open or close is being committed (their mirror change is applied by us).
        self._busy: set[tuple[str, str]] = set()
        self._draining: set[str] = set()
        #: Consecutive passes in which a symbol's fetch failed or stopped short.
        self._fail_streak: dict[str, int] = {}
        #: Symbols whose fetch stopped at a malformed candle this pass (the rest comes next pass).
        self._behind: set[str] = set()
        self._dirty = True
        self._resume_ms: int | None = None
        #: Market time up to which candles have been decided (the last completed pass's C).
        self.cutoff_ms: int | None = None
        self._exchange_errors_seen: dict[str, int] = {}
        self.passes = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Checks the schema, creates missing accounts, starts the guard mirror, reads the resume point."""
        await require_current(self.db)
        created = await self.accounts.ensure(self.variant_configs)
        if created:
            log.info("accounts created: %s", ", ".join(created))
        await self.mirror.start()
        self._resume_ms = await self._resume_point()
        log.info(
            "resuming after %s",
            "nothing (fresh start)" if self._resume_ms is None else to_dt(self._resume_ms).isoformat(),
        )

    async def close(self) -> None:
        """Stops the guard mirror (the caller closes the exchange client and the database)."""
        await self.mirror.stop()

    async def _resume_point(self) -> int | None:
        accounts = {a.variant: a for a in await self.accounts.all()}
        marks = [accounts[n].equity_at for n in self.names if n in accounts]
        if not marks or any(m is None for m in marks):
            return None
        return min(to_ms(m) for m in marks if m is not None)

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
            )
        )

    def variants(self) -> dict[str, VariantState]:
        """Balance, equity and open positions per variant (the engine's view, which follows the database)."""
        return {
            name: VariantState(
                self.engine.balance(v), self.engine.equity(v), len(self.engine.open_symbols(v))
            )
            for v, name in enumerate(self.names)
        }

    def describe(self) -> dict[str, Any]:
        """What /health shows about trading: market time decided up to, universe, exchange counters,
        and the broker (``paper`` or ``live``, with the variants' balances; never a key)."""
        return {
            "broker": self.broker.health(),
            "market_time": None if self.cutoff_ms is None else to_dt(self.cutoff_ms).isoformat(),
            "universe": len(self.universe.symbols),
            "exchange": self.client.health(),
            "guard_mirror_listening": self.mirror.listening,
        }

    def exhausted(self) -> bool:
        """True once a pass has decided every candle up to ``until_ms``."""
        return self.until_ms is not None and self.cutoff_ms is not None and self.cutoff_ms >= self.until_ms

    # -- the breakout pass ----------------------------------------------------------------------------

    def _scan_list(self) -> list[str]:
        held = {s for v in range(len(self.names)) for s in self._engine_symbols(v)} | {
            sym for (_, sym) in self._pending
        }
        out = list(self.universe.symbols)
        seen = set(out)
        for sym in sorted(held | self._draining):
            if sym not in seen:
                out.append(sym)
                seen.add(sym)
        return out

    def _engine_symbols(self, v: int) -> list[str]:
        return [self._symbol_name(s) for s in self.engine.open_symbols(v)]

    def _symbol_name(self, sid: int) -> str:
        return self._sym_names[sid]

    def _sid(self, symbol: str) -> int:
        sid = self.engine.symbol_id(symbol)
        if sid is None:
            sid = self.engine.add_symbol(symbol, self.tf_ms)
            self._sym_names[sid] = symbol
        return sid

    async def _breakout(self) -> PassReport:
        t0 = time.perf_counter()
        counts = _Counts()
        report = PassReport(BREAKOUT)
        now = await self.client.server_time()
        before = set(self.universe.symbols)
        try:
            await self.universe.refresh_if_due(now)
        except (ExchangeUnavailable, ExchangeRejected) as e:
            await self._record_error(f"universe refresh: {e}", now)
            if self.universe.selection is None:
                raise  # no universe yet: a pass over nothing must not pass for progress
            # The last good universe stays; the pass goes on with it.
            counts.error(_kind(e))
        after = set(self.universe.symbols)
        # Symbols that just left are fetched once more so their last candles are decided in order.
        self._draining = (self._draining | (before - after)) - after
        if self._unsettled and not self._dirty and await self._settle_reservations():
            # The engine holds estimates for what is now settled: rebuild it from the database.
            self._dirty = True
        symbols = self._scan_list()
        fetched, failed = await self._fetch(symbols, now)
        for sym, kind in sorted(failed.items()):
            counts.error(kind)
            await self._record_error(f"fetch_ohlcv {sym}: {kind}", now, symbol=sym)
        self._draining -= {s for s in self._draining if s not in failed}
        now = self._decide_to(now, symbols, failed)
        self.metrics.candles.inc(by=fetched)
        self.metrics.symbols.set(len(self.universe.symbols))
        self._sync_exchange_errors()
        try:
            if self._dirty:
                await self._rebuild(now, counts)
            else:
                await self._feed(now, counts)
            await self._persist_pass_end(now)
            self._trim()
        except BaseException:
            # Engine and database may now disagree: rebuild from the database before the next pass.
            self._dirty = True
            raise
        self.cutoff_ms = now
        self.passes += 1
        report.market_time_ms = now
        report.symbols = len(symbols)
        report.candles = fetched
        report.signals, report.opens, report.closes = counts.signals, counts.opens, counts.closes
        report.skips, report.errors, report.error_types = counts.skips, counts.errors, counts.error_types
        report.duration_s = time.perf_counter() - t0
        if self.on_pass is not None:
            self.on_pass(self, report)
        return report

    def _decide_to(self, now: int, symbols: list[str], failed: dict[str, str]) -> int:
        """The market time this pass decides up to: ``now``, or earlier while a symbol's fetch fails or
        stops short (for up to ``daemon.hold_back_passes`` passes), so candles are still decided in
        (close time, symbol) order when its late candles arrive."""
        lagging = set(failed) | self._behind
        for sym in symbols:
            self._fail_streak[sym] = self._fail_streak.get(sym, 0) + 1 if sym in lagging else 0
        bound = now
        for sym in lagging:
            # Its late candles would otherwise be decided after later candles of other symbols (not
            # replay's order); past the limit the pass goes on without it: one dead symbol cannot stop
            # trading.
            if self._fail_streak.get(sym, 0) > self.settings.hold_back_passes:
                continue
            hist = self._history.get(sym)
            last = hist[-1].time + self.tf_ms if hist else self.cutoff_ms
            if last is not None:
                bound = min(bound, last)
        # Never behind what is already decided.
        return bound if self.cutoff_ms is None else max(bound, self.cutoff_ms)

    async def _fetch(self, symbols: list[str], cutoff: int) -> tuple[int, dict[str, str]]:
        """New candles of ``symbols`` into the history; a symbol cut at the request limit is fetched
        again until it reaches ``cutoff``. Returns (candles fetched, failures by symbol)."""
        total = 0
        failed: dict[str, str] = {}
        self._behind = set()
        todo = symbols
        for _ in range(MAX_CATCHUP_ROUNDS):
            if not todo:
                break
            result = await self.client.fetch_new_candles(todo)
            failed.update(result.failed)
            self._behind.update(result.behind)
            again = []
            for sym, rows in result.candles.items():
                total += len(rows)
                self._append(sym, rows)
                last = self.client.last_candle_time(sym)
                if len(rows) >= TRUNCATED_AT and last is not None and last + self.tf_ms < cutoff:
                    again.append(sym)
            todo = again
        return total, failed

    def _append(self, symbol: str, rows: Iterable[Candle]) -> None:
        hist = self._history.get(symbol)
        if hist is None:
            hist = self._history[symbol] = deque()
        for c in rows:
            # The client's cache restarts from scratch for a symbol that left and came back.
            if hist and c.time <= hist[-1].time:
                continue
            hist.append(c)

    def _trim(self) -> None:
        """Drops decided candles beyond what a rebuild needs (memory stays flat however long it runs)."""
        for sym, hist in self._history.items():
            cursor = self._cursor.get(sym)
            while len(hist) > self._keep and cursor is not None and hist[0].time <= cursor:
                hist.popleft()

    def _due(self, cutoff: int) -> list[tuple[int, str, Candle]]:
        """Every candle not yet fed and closed by ``cutoff``, in replay's order (close time, symbol)."""
        out: list[tuple[int, str, Candle]] = []
        for sym, hist in self._history.items():
            cursor = self._cursor.get(sym)
            for c in reversed(hist):
                if cursor is not None and c.time <= cursor:
                    break
                close = c.time + self.tf_ms
                if close <= cutoff:
                    out.append((close, sym, c))
        out.sort(key=lambda x: (x[0], x[1]))
        return out

    async def _feed(self, cutoff: int, counts: _Counts) -> None:
        for close, sym, c in self._due(cutoff):
            if sym not in self._trade_after:
                # First seen now: what closed before the previous pass is history, not news.
                self._trade_after[sym] = self.cutoff_ms if self.cutoff_ms is not None else cutoff
            await self._candle(sym, close, c, counts, trade=close > self._trade_after[sym])

    async def _candle(self, sym: str, close: int, c: Candle, counts: _Counts, *, trade: bool) -> None:
        sid = self._sid(sym)
        self._restore_due(sym, sid, close)
        self._cursor[sym] = c.time
        closes = self.engine.exits(sid, c.time, c.open, c.high, c.low, c.close, c.volume)
        for key, p in self._pending.items():
            if key[1] == sym and close > to_ms(p.position.opened_at):
                p.bars_held += 1  # a candle it was held through before it is restored
        if trade:
            for _, v, _, t, price, reason in closes:
                await self._close(v, sym, sid, t, price, reason, counts)
        intents = self.engine.signals(sid)
        if not trade:
            return
        for intent in intents:
            v = intent[1]
            pending = self._pending.get((v, sym))
            if pending is not None and to_ms(pending.position.opened_at) == close:
                continue  # carried out before a restart: the position comes back from the database
            if intent[0] == "open":
                _, _, _, t, price, stop_pct, atr = intent
                await self._open(v, sym, sid, t, price, stop_pct, atr, counts)
            else:
                _, _, _, t, reason = intent
                await self._skip(v, sym, t, reason, counts)

    # -- carrying out intents -------------------------------------------------------------------------

    async def _open(
        self, v: int, sym: str, sid: int, t: int, price: float, stop_pct: float, atr: float, counts: _Counts
    ) -> None:
        name = self.names[v]
        variant = self.variant_configs[v]
        at = to_dt(t)
        counts.signals += 1
        self.metrics.signals.inc(name)
        await self.events.signal(name, sym, at, {"price": price, "stop_pct": stop_pct, "atr": atr})
        live = isinstance(self.broker, LiveBroker)
        try:
            if live:
                fill = self.broker.estimate_open(name, sym, price)
            else:
                fill = await self.broker.open(name, sym, price, time_ms=t)
        except OrderRefused as e:
            # The broker's ledger disagrees with the engine: the database decides.
            await self._resync()
            await self._skip(v, sym, t, SkipReason.BALANCE.value, counts, {"broker": str(e)})
            return
        self._busy.add((name, sym))
        try:
            result = await self.positions.open_position(
                variant=name,
                symbol=sym,
                opened_at=at,
                entry_price=fill.price,
                qty=fill.qty,
                stake=fill.gross,
                entry_fee=fill.fee,
                stop_pct=stop_pct,
                stop_price=fill.price * (1.0 - stop_pct),
                atr_at_entry=atr,
                cooldown=timedelta(milliseconds=variant.cooldown_candles * self.tf_ms),
                max_open=variant.max_open,
                reserve=live,
            )
        finally:
            self._busy.discard((name, sym))
        if result.position is None:
            reason = result.refused.value if result.refused is not None else SkipReason.OPEN.value
            counts.skips += 1
            self.metrics.skips.inc(name, reason)
            await self.events.skip(
                name, sym, SkipReason(reason), at, {"refused_by": "database", "detail": result.detail}
            )
            await self._resync(sym)
            return
        if live:
            filled = await self._fill_live(v, sym, t, price, result.position, counts)
            if filled is None:
                return
            fill = filled
        # Committed: only now does the engine learn of it.
        self.engine.apply_open(v, sid, t, fill.price, fill.qty, fill.fee, fill.gross, stop_pct, atr)
        self._pos_id[(v, sym)] = result.position.id
        self._trail[result.position.id] = (False, fill.price, None)
        counts.opens += 1
        self.metrics.opens.inc(name)

    async def _fill_live(
        self, v: int, sym: str, t: int, price: float, reserved: Position, counts: _Counts
    ) -> Fill | None:
        """Sends the order of a live reservation and records its fill. None when the order did not
        execute (the reservation is then cancelled); the estimate when its outcome is unknown."""
        name = self.names[v]
        cid = client_order_id("o", reserved.id)
        try:
            fill = await self.broker.open(name, sym, price, time_ms=t, client_order_id=cid)
        except OrderOutcomeUnknown as e:
            # It may have executed: the reservation stays, at its estimate, and the next pass rebuilds
            # from the database, which first settles it by looking the order up again.
            counts.error(type(e).__name__)
            await self._record_error(f"open {name} {sym}: {e}", t, symbol=sym)
            self._unsettled.add(reserved.id)
            return _reserved_fill(reserved, price)
        except (OrderRefused, ExchangeRejected, ExchangeUnavailable) as e:
            counts.error(_kind(e))
            await self._cancel_reservation(reserved, t, f"{type(e).__name__}: {e}")
            return None
        await self._record_live_fill(reserved, fill)
        return fill

    async def _record_live_fill(self, reserved: Position, fill: Fill) -> None:
        self._busy.add((reserved.variant, reserved.symbol))
        try:
            await self.positions.record_fill(
                reserved.id,
                entry_price=fill.price,
                qty=fill.qty,
                stake=fill.gross,
                entry_fee=fill.fee,
                stop_price=fill.price * (1.0 - reserved.stop_pct),
                order_id=fill.order_id,
            )
        finally:
            self._busy.discard((reserved.variant, reserved.symbol))

    async def _cancel_reservation(self, reserved: Position, t: int, detail: str) -> None:
        await self.positions.cancel_reservation(reserved.id, at=to_dt(t), detail=detail)
        # The broker never booked it; the balance and the cooldown now come from the database.
        await self._resync(reserved.symbol)

    async def _settle_reservations(self) -> int:
        """Live: looks up the order of every reservation whose fill was never recorded (an answer lost,
        or a crash between the send and the record) and records its fill or cancels it; returns how
        many were settled. One the exchange cannot tell about stays reserved, and is looked up again
        at the start of the next pass."""
        if not isinstance(self.broker, LiveBroker):
            return 0
        settled = 0
        for p in await self.positions.open_positions():
            if not p.reserved or p.variant not in self._vid:
                continue
            cid = client_order_id("o", p.id)
            try:
                fill = await self.broker.recover_open(p.variant, p.symbol, cid, time_ms=to_ms(p.opened_at))
            except (ExchangeRejected, ExchangeUnavailable) as e:
                log.warning("reservation #%d (%s %s) still unsettled: %s", p.id, p.variant, p.symbol, e)
                continue
            if fill is None:
                await self.positions.cancel_reservation(
                    p.id, at=p.opened_at, detail=f"order {cid} was never executed"
                )
            else:
                await self._record_live_fill(p, fill)
            settled += 1
        return settled

    async def _skip(
        self, v: int, sym: str, t: int, reason: str, counts: _Counts, detail: dict[str, Any] | None = None
    ) -> None:
        name = self.names[v]
        counts.skips += 1
        self.metrics.skips.inc(name, reason)
        await self.events.skip(name, sym, SkipReason(reason), to_dt(t), detail)

    async def _close(
        self, v: int, sym: str, sid: int, t: int, price: float, reason: str, counts: _Counts
    ) -> None:
        name = self.names[v]
        pos = self.engine.position(v, sid)
        pid = self._pos_id.get((v, sym))
        if pos is None or pid is None:
            return
        if pid in self._unsettled:
            # Whether (and how much) was bought is not known yet: selling now could sell what is not
            # held. The start of the next pass settles it first; the exit is decided again then.
            counts.error(OrderOutcomeUnknown.__name__)
            await self._record_error(f"close {name} {sym} ({reason}): entry not settled yet", t, symbol=sym)
            return
        qty = float(pos["qty"])
        cid = client_order_id("c", pid)
        maybe_sent = pid in self._selling
        if isinstance(self.broker, LiveBroker) and not maybe_sent:
            await self.positions.mark_selling(pid, cid)
            self._selling.add(pid)

        async def sell() -> Fill:
            return await self.broker.close(
                name, sym, qty, price, time_ms=t, client_order_id=cid, maybe_sent=maybe_sent
            )

        try:
            try:
                fill = await sell()
            except OrderRefused:
                await self._resync()
                fill = await sell()
        except (ExchangeRejected, ExchangeUnavailable, OrderOutcomeUnknown) as e:
            # A live sell that failed: the position stays open here and in the database, and the next
            # candle (or exit pass) decides again.
            counts.error(_kind(e))
            await self._record_error(f"close {name} {sym} ({reason}): {e}", t, symbol=sym)
            return
        self._busy.add((name, sym))
        try:
            await self.positions.close_position(
                pid,
                closed_at=to_dt(t),
                exit_price=fill.price,
                gross=fill.gross,
                exit_fee=fill.fee,
                exit_reason=reason,
                order_id=fill.order_id,
            )
        except PositionNotOpen:
            # Closed by another process: drop it here too and take the balance from the database.
            self.engine.apply_close(v, sid, t, fill.price, fill.gross, fill.fee, reason)
            self._forget(v, sym)
            await self._resync(sym)
            return
        finally:
            self._busy.discard((name, sym))
        self.engine.apply_close(v, sid, t, fill.price, fill.gross, fill.fee, reason)
        self._forget(v, sym)
        counts.closes += 1
        self.metrics.closes.inc(name, reason)

    def _forget(self, v: int, sym: str) -> None:
        pid = self._pos_id.pop((v, sym), None)
        if pid is not None:
            self._trail.pop(pid, None)
            self._selling.discard(pid)

    async def _record_error(self, message: str, now_ms: int, symbol: str | None = None) -> None:
        try:
            await self.events.error(message, to_dt(now_ms), symbol=symbol)
        except Exception as e:  # the log of an error must not turn into a second failure
            log.warning("could not record an error event: %s", e)

    # -- the exit pass --------------------------------------------------------------------------------

    async def _exit_pass(self) -> PassReport:
        t0 = time.perf_counter()
        report = PassReport(EXIT)
        counts = _Counts()
        if self._dirty:
            return report  # nothing trustworthy to check until the next breakout pass rebuilt the engine
        held: dict[str, int] = {}
        for v in range(len(self.names)):
            for sid in self.engine.open_symbols(v):
                held[self._symbol_name(sid)] = sid
        if held:
            try:
                tickers = await self.client.fetch_tickers(sorted(held))
            except (ExchangeUnavailable, ExchangeRejected) as e:
                counts.error(_kind(e))
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
                    for _, v, _, t, p, reason in self.engine.on_price(sid, ts, float(price)):
                        await self._close(v, sym, sid, t, p, reason, counts)
                except BaseException:
                    self._dirty = True
                    raise
            await self._persist_trails()
        report.symbols = len(held)
        report.closes = counts.closes
        report.errors = counts.errors
        report.duration_s = time.perf_counter() - t0
        return report

    # -- the end of a pass ----------------------------------------------------------------------------

    async def _persist_trails(self) -> None:
        for (v, sym), pid in list(self._pos_id.items()):
            sid = self.engine.symbol_id(sym)
            pos = None if sid is None else self.engine.position(v, sid)
            if pos is None:
                continue
            state = (bool(pos["trail_active"]), float(pos["highest"]), pos["trail_stop"])
            if self._trail.get(pid) == state:
                continue
            try:
                await self.positions.update_trail(pid, active=state[0], highest=state[1], stop=state[2])
            except PositionNotOpen:
                continue  # closed by another process; its close reaches us as a refusal later
            self._trail[pid] = state

    async def _persist_pass_end(self, cutoff: int) -> None:
        """Trails first, then the equity marks: ``equity_at`` is the resume point, so it moves last."""
        await self._persist_trails()
        at = to_dt(cutoff)
        for v, name in enumerate(self.names):
            await self.accounts.mark_equity(name, max(0.0, self.engine.equity(v)), at)

    def _sync_exchange_errors(self) -> None:
        for kind, n in self.client.stats.errors.items():
            seen = self._exchange_errors_seen.get(kind, 0)
            if n > seen:
                self.metrics.exchange_errors.inc(kind, by=n - seen)
                self._exchange_errors_seen[kind] = n

    # -- rebuilding from the database -----------------------------------------------------------------

    async def _rebuild(self, cutoff: int, counts: _Counts) -> None:
        """A fresh engine from the candle history and the database (start-up, or after a failed pass)."""
        resume = self._resume_ms if self.cutoff_ms is None else await self._resume_point()
        if resume is None:
            resume = cutoff  # a fresh database: what closed before the first pass is history
        self.engine = _core.Engine(self.params)
        self._sym_names.clear()
        self._cursor.clear()
        self._pos_id.clear()
        self._trail.clear()
        self._pending.clear()
        self._trade_after = dict.fromkeys(self._history, resume)
        await self._settle_reservations()
        # The rebuild calls back for every pair the database holds: the new engine's guard follows it.
        await self.mirror.rebuild()
        open_positions = await self.positions.open_positions()
        self._unsettled = {p.id for p in open_positions if p.reserved}
        self._selling = {p.id for p in open_positions if p.exit_order_id is not None}
        for p in open_positions:
            v = self._vid.get(p.variant)
            if v is None:
                continue
            self._sid(p.symbol)
            self._pending[(v, p.symbol)] = _Pending(p, v, max(to_ms(p.opened_at), resume))
        await self._resync()
        for close, sym, c in self._due(cutoff):
            self._trade_after.setdefault(sym, resume)
            await self._candle(sym, close, c, counts, trade=close > self._trade_after[sym])
        for key in list(self._pending):
            # Still pending: the candles did not reach it. Restore now unless the symbol has no candles
            # yet (a failed fetch): then its first candles restore it, in order.
            if key[1] in self._history:
                self._restore(key)
        self._dirty = False
        log.info(
            "engine rebuilt: %d open position(s) restored, resuming after %s",
            sum(len(self.engine.open_symbols(v)) for v in range(len(self.names))),
            to_dt(resume).isoformat(),
        )

    def _restore_due(self, sym: str, sid: int, close: int) -> None:
        for key in [k for k, p in self._pending.items() if k[1] == sym and close > p.restore_after]:
            self._restore(key)

    def _restore(self, key: tuple[int, str]) -> None:
        p = self._pending.pop(key)
        pos = p.position
        sid = self._sid(pos.symbol)
        _, until = self.mirror.state(pos.variant, pos.symbol)
        self.engine.restore_position(
            p.variant,
            sid,
            to_ms(pos.opened_at),
            pos.entry_price,
            pos.qty,
            pos.stake,
            pos.entry_fee,
            pos.stop_pct,
            pos.atr_at_entry if pos.atr_at_entry is not None else math.nan,
            pos.trail_highest if pos.trail_highest is not None else pos.entry_price,
            pos.trail_active,
            pos.trail_stop,
            p.bars_held,
            until,
        )
        self._pos_id[key] = pos.id
        self._trail[pos.id] = (
            pos.trail_active,
            pos.trail_highest if pos.trail_highest is not None else pos.entry_price,
            pos.trail_stop,
        )

    async def _resync(self, symbol: str | None = None) -> None:
        """Balances into the engine and a paper broker rebuilt, both from the database."""
        accounts = {a.variant: a for a in await self.accounts.all()}
        holdings: dict[tuple[str, str], float] = {}
        for p in await self.positions.open_positions():
            if p.variant in self._vid:
                holdings[(p.variant, p.symbol)] = holdings.get((p.variant, p.symbol), 0.0) + p.qty
        balances = {n: accounts[n].balance for n in self.names if n in accounts}
        self.broker = make_broker(self.client, self.variant_configs, balances, holdings)
        for n, b in balances.items():
            self.engine.set_balance(self._vid[n], b)
        if symbol is not None:
            for n in self.names:
                self._guard_from_mirror(n, symbol)

    # -- the guard mirror -----------------------------------------------------------------------------

    def _on_guard_change(self, change: GuardChange) -> None:
        if (change.variant, change.symbol) in self._busy:
            return  # our own open or close: the engine is told by apply_open / apply_close
        self._guard_from_mirror(change.variant, change.symbol)

    def _guard_from_mirror(self, variant: str, symbol: str) -> None:
        v = self._vid.get(variant)
        if v is None:
            return
        sid = self._sid(symbol)
        is_open, until = self.mirror.state(variant, symbol)
        if self.engine.position(v, sid) is not None:
            is_open = True  # the engine's own position stays open until it closes it
        self.engine.set_guard(v, sid, is_open, until)


def client_order_id(side: str, position_id: int) -> str:
    """The exchange-side name of a position's order: ``sigil-o<id>`` (its buy), ``sigil-c<id>`` (its sell)."""
    return f"sigil-{side}{position_id}"


def _reserved_fill(p: Position, price: float) -> Fill:
    """A reservation's estimate as a fill (what the engine holds until the real fill is known)."""
    return Fill(p.variant, p.symbol, "buy", price, p.entry_price, p.qty, p.entry_fee, p.stake, p.cost, 0.0)


def _kind(e: BaseException) -> str:
    cause = e.__cause__
    return type(cause).__name__ if cause is not None else type(e).__name__
