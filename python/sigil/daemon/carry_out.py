"""Carrying out the engine's intents in a pass: opens, closes and skips through the execution, the
events log, the metrics, the log and the notifications, and the engine told only after the database.

:class:`CarryOut` is the half of :class:`~sigil.daemon.scanner.Scanner` that acts on one intent;
the scanner decides which intents there are and when (its passes, recovery, the operator's controls).
"""

from __future__ import annotations

import logging
from typing import Any

from sigil._core import Engine, ExitReason, OpenIntent, SkipReason, hard_stop_price
from sigil.daemon.engine_state import EngineState
from sigil.daemon.execution import Cancelled, Execution, Notify, NotSold, Refused
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.passes import PassReport
from sigil.daemon.recovery import Recovery
from sigil.notify.events import PositionClosed, PositionOpened
from sigil.store import EventStore
from sigil.store.events import PAUSED, skip_reason_name
from sigil.times import from_ms

log = logging.getLogger("sigil.daemon.scanner")


class CarryOut:
    """Opens, closes and skips of one daemon's variants (mixed into the scanner, which sets these)."""

    names: list[str]
    tf_ms: int
    passes: int
    metrics: DaemonMetrics
    events: EventStore
    execution: Execution
    state: EngineState
    recovery: Recovery
    notify: Notify

    @property
    def engine(self) -> Engine:
        """The engine (replaced by every rebuild: do not keep it)."""
        return self.state.engine

    async def _open(self, sym: str, sid: int, intent: OpenIntent, counts: PassReport) -> None:
        v, t = intent.variant, intent.time
        name = self.names[v]
        counts.signals += 1
        self.metrics.signals.inc(name)
        detail = {"price": intent.price, "stop_pct": intent.stop_pct, "atr": intent.atr}
        await self.events.signal(name, sym, from_ms(t), detail)
        outcome = await self.execution.open(name, sym, intent, self.tf_ms)
        if isinstance(outcome, Refused):
            if outcome.by_broker:
                # The broker's books disagree with the engine: the database decides.
                await self._resync()
            await self._skip(v, sym, t, outcome.reason, counts, outcome.detail)
            if not outcome.by_broker:
                await self._resync()
            return
        if isinstance(outcome, Cancelled):
            counts.error(outcome.kind)
            return
        if outcome.problem is not None:
            kind, message = outcome.problem
            counts.error(kind)
            await self._record_error(message, t, symbol=sym)
        fill = outcome.fill
        # Committed: only now does the engine learn of it.
        self.engine.apply_open(
            v, sid, t, fill.price, fill.qty, fill.fee, fill.gross, intent.stop_pct, intent.atr
        )
        self.state.opened(v, sym, outcome.position_id, fill.price)
        counts.opens += 1
        self.metrics.opens.inc(name)
        stop_price = hard_stop_price(fill.price, intent.stop_pct)
        log.info(
            "open %s %s #%d at %.10g (stop %.2f%%)",
            name,
            sym,
            outcome.position_id,
            fill.price,
            intent.stop_pct * 100,
            extra={
                "variant": name,
                "symbol": sym,
                "position_id": outcome.position_id,
                "pass": self.passes + 1,
            },
        )
        self.notify(
            PositionOpened(
                name,
                sym,
                outcome.position_id,
                fill.price,
                fill.qty,
                fill.gross,
                intent.stop_pct,
                stop_price,
                t,
            )
        )

    async def _declined(self, sym: str, intent: OpenIntent, counts: PassReport) -> None:
        """A signal of a paused variant: recorded, then skipped with reason ``paused``."""
        name = self.names[intent.variant]
        counts.signals += 1
        self.metrics.signals.inc(name)
        detail = {"price": intent.price, "stop_pct": intent.stop_pct, "atr": intent.atr}
        await self.events.signal(name, sym, from_ms(intent.time), detail)
        await self._skip(intent.variant, sym, intent.time, PAUSED, counts, detail)

    async def _skip(
        self,
        v: int,
        sym: str,
        t: int,
        reason: SkipReason | str,
        counts: PassReport,
        detail: dict[str, Any] | None = None,
    ) -> None:
        name = self.names[v]
        counts.skips += 1
        self.metrics.skips.inc(name, skip_reason_name(reason))
        await self.events.skip(name, sym, reason, from_ms(t), detail)

    async def _close(
        self, v: int, sym: str, sid: int, t: int, price: float, reason: ExitReason, counts: PassReport
    ) -> None:
        name = self.names[v]
        pos = self.engine.position(v, sid)
        pid = self.state.position_ids.get((v, sym))
        if pos is None or pid is None:
            return
        result = await self.execution.close(pid, name, sym, pos.qty, price, t, reason)
        if isinstance(result, NotSold):
            counts.error(result.kind)
            await self._record_error(result.message, t, symbol=sym)
            return
        fill = result.fill
        self.engine.apply_close(v, sid, t, fill.price, fill.gross, fill.fee, reason)
        self.state.forget(v, sym)
        if result.elsewhere:
            # Closed by another process: dropped here too, and the balance comes from the database.
            await self._resync()
            return
        counts.closes += 1
        self.metrics.closes.inc(name, reason.value)
        log.info(
            "close %s %s #%d at %.10g (%s, pnl %+.4f)",
            name,
            sym,
            pid,
            fill.price,
            reason.value,
            result.pnl,
            extra={"variant": name, "symbol": sym, "position_id": pid, "pass": self.passes + 1},
        )
        self.notify(PositionClosed(name, sym, pid, fill.price, reason.value, result.pnl, t))

    async def _resync(self) -> None:
        await self.recovery.resync()

    async def _record_error(self, message: str, now_ms: int, symbol: str | None = None) -> None:
        try:
            await self.events.error(message, from_ms(now_ms), symbol=symbol)
        except Exception as e:  # the log of an error must not turn into a second failure
            log.warning("could not record an error event: %s", e)
