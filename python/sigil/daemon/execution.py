"""Carrying out the engine's intents: the broker and the database, paper or live, behind one interface.

:class:`PaperExecution` fills first (the paper fill is known before anything is sent) and then opens
the position in the database. :class:`LiveExecution` reverses that: the database reserves the
position first (the advisory lock, the re-check and the unique index decide, so two daemons can
never both send an order for one pair), then the order goes out under :func:`client_order_id`, then
the exchange's fill is recorded into the reservation. An order that did not execute closes the
reservation with no P&L and the money back; one whose outcome could not be learnt stays reserved at
its estimate, is never sold, and is looked up again (:meth:`Execution.settle`) until the exchange
answers. A live sell names its order on the position before it is sent, so a later attempt or a
restart looks it up instead of selling twice.

:func:`make_execution` chooses once, at start-up, from the exchange client's mode. The scanner never
asks which one it has.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sigil._core import ExitReason, OpenIntent, SkipReason, hard_stop_price
from sigil.config import Variant
from sigil.errors import (
    ExchangeRejected,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRefused,
    PositionNotOpen,
)
from sigil.exchange.broker import Fill, LiveBroker, PaperBroker, make_broker
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.notify.events import Notice, OrderFailed, OrderFilled, OutcomeUnknown
from sigil.store import Position, PositionStore
from sigil.times import from_ms, to_ms

log = logging.getLogger(__name__)

#: Re-reads balances and holdings from the database into the engine and the broker.
Resync = Callable[[], Awaitable[None]]
#: Hands a notice to the notification sender (never blocks).
Notify = Callable[[Notice], None]


def _no_notice(_notice: Notice) -> None:
    """Where notices go when nobody listens."""


def client_order_id(side: str, position_id: int) -> str:
    """The exchange-side name of a position's order: ``sigil-o<id>`` (its buy), ``sigil-c<id>`` (its sell)."""
    return f"sigil-{side}{position_id}"


def error_kind(e: BaseException) -> str:
    """The name an error is counted under: its cause's type when it wraps one (an exchange error)."""
    cause = e.__cause__
    return type(cause).__name__ if cause is not None else type(e).__name__


@dataclass(frozen=True)
class Opened:
    """An open carried out: the position's id and its fill (live: the exchange's, or, while the
    order's outcome is unknown, the reservation's estimate with ``problem`` saying why)."""

    position_id: int
    fill: Fill
    #: (error kind, message) when the fill is only an estimate.
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class Refused:
    """An open the broker's books (``by_broker``) or the database refused, and why: nothing was
    bought, nothing was written."""

    reason: SkipReason
    detail: dict[str, Any] = field(default_factory=dict)
    by_broker: bool = False


@dataclass(frozen=True)
class Cancelled:
    """A live order that did not execute: its reservation is closed with no P&L, the money back."""

    kind: str


@dataclass(frozen=True)
class Sold:
    """A close carried out, with the position's P&L as booked. ``elsewhere``: another process had
    closed the position already."""

    fill: Fill
    elsewhere: bool = False
    pnl: float = 0.0


@dataclass(frozen=True)
class NotSold:
    """A close that did not go through: the position stays open and the next candle decides again."""

    kind: str
    message: str


class Execution:
    """The part both modes share: the database side of opens and closes, and the broker's books."""

    live = False

    def __init__(
        self,
        client: ExchangeClient,
        variants: tuple[Variant, ...],
        positions: PositionStore,
        resync: Resync,
    ) -> None:
        self.client = client
        self.variants = {v.name: v for v in variants}
        self._variant_list = variants
        self.positions = positions
        self._resync = resync
        self.broker: PaperBroker | LiveBroker = make_broker(client, variants)
        #: Live reservations whose order's outcome is unknown: not sold until they are settled.
        self.unsettled: set[int] = set()
        #: Live positions a sell was sent for, outcome not recorded: looked up before selling again.
        self.selling: set[int] = set()
        #: Live order failures and lost answers go here (the scanner sets the notification sender).
        self.notify: Notify = _no_notice
        #: Positions whose failed sell was notified: a sell that keeps failing is told once.
        self._sell_failure_told: set[int] = set()

    def reset_books(self, balances: Mapping[str, float], holdings: Mapping[tuple[str, str], float]) -> None:
        """The broker's balances and holdings as the database has them."""
        self.broker = make_broker(self.client, self._variant_list, balances, holdings)

    def restored(self, open_positions: list[Position]) -> None:
        """After a rebuild: which positions are still waiting for their buy's or sell's outcome."""
        self.unsettled = {p.id for p in open_positions if p.reserved}
        self.selling = {p.id for p in open_positions if p.exit_order_id is not None}

    def health(self) -> dict[str, Any]:
        """The broker for /health (``paper`` or ``live``, balances; never a key)."""
        return self.broker.health()

    async def settle(self) -> int:
        """Live: settles reservations whose order's outcome is not recorded; returns how many. Paper: 0."""
        return 0

    # -- opens ----------------------------------------------------------------------------------

    async def open(
        self, name: str, symbol: str, intent: OpenIntent, tf_ms: int
    ) -> Opened | Refused | Cancelled:
        """Carries out an open intent of variant ``name`` on ``symbol``."""
        raise NotImplementedError

    async def _open_in_database(
        self, name: str, symbol: str, intent: OpenIntent, fill: Fill, tf_ms: int, *, reserve: bool
    ) -> Position | Refused:
        variant = self.variants[name]
        result = await self.positions.open_position(
            variant=name,
            symbol=symbol,
            opened_at=from_ms(intent.time),
            entry_price=fill.price,
            qty=fill.qty,
            stake=fill.gross,
            entry_fee=fill.fee,
            stop_pct=intent.stop_pct,
            stop_price=hard_stop_price(fill.price, intent.stop_pct),
            atr_at_entry=intent.atr,
            cooldown=timedelta(milliseconds=variant.cooldown_candles * tf_ms),
            max_open=variant.max_open,
            reserve=reserve,
        )
        if result.position is None:
            reason = result.refused if result.refused is not None else SkipReason.OPEN
            return Refused(reason, {"refused_by": "database", "detail": result.detail})
        return result.position

    # -- closes ---------------------------------------------------------------------------------

    async def close(
        self, position_id: int, name: str, symbol: str, qty: float, price: float, t: int, reason: ExitReason
    ) -> Sold | NotSold:
        """Sells the position ``position_id`` (``qty`` of ``symbol``) at reference ``price`` and closes
        it in the database."""
        if position_id in self.unsettled:
            # Whether (and how much) was bought is not known yet: selling now could sell what is not
            # held. The start of the next pass settles it first; the exit is decided again then.
            return NotSold(
                OrderOutcomeUnknown.__name__, f"close {name} {symbol} ({reason}): entry not settled yet"
            )
        cid = client_order_id("c", position_id)
        maybe_sent = position_id in self.selling
        await self._before_sell(position_id, cid, maybe_sent)

        async def sell() -> Fill:
            return await self.broker.close(
                name, symbol, qty, price, time_ms=t, client_order_id=cid, maybe_sent=maybe_sent
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
            if position_id not in self._sell_failure_told:
                self._sell_failure_told.add(position_id)
                error = f"{type(e).__name__}: {e}"
                if isinstance(e, OrderOutcomeUnknown):
                    self.notify(OutcomeUnknown(name, symbol, "sell", e.client_order_id, error))
                else:
                    self.notify(OrderFailed(name, symbol, "sell", error, position_id))
            return NotSold(error_kind(e), f"close {name} {symbol} ({reason}): {e}")
        self._sell_failure_told.discard(position_id)
        try:
            closed = await self.positions.close_position(
                position_id,
                closed_at=from_ms(t),
                exit_price=fill.price,
                gross=fill.gross,
                exit_fee=fill.fee,
                exit_reason=reason.value,
                order_id=fill.order_id,
            )
        except PositionNotOpen:
            self.selling.discard(position_id)
            return Sold(fill, elsewhere=True)
        self.selling.discard(position_id)
        return Sold(fill, pnl=closed.pnl if closed.pnl is not None else 0.0)

    async def _before_sell(self, position_id: int, cid: str, maybe_sent: bool) -> None:
        """Paper: nothing. Live: the sell's name goes on the position before it is sent."""


class PaperExecution(Execution):
    """Paper fills (the engine's fill maths), then the database."""

    async def open(
        self, name: str, symbol: str, intent: OpenIntent, tf_ms: int
    ) -> Opened | Refused | Cancelled:
        """Fills on paper, then opens in the database (one transaction)."""
        try:
            fill = await self.broker.open(name, symbol, intent.price, time_ms=intent.time)
        except OrderRefused as e:
            return Refused(SkipReason.BALANCE, {"broker": str(e)}, by_broker=True)
        opened = await self._open_in_database(name, symbol, intent, fill, tf_ms, reserve=False)
        if isinstance(opened, Refused):
            return opened
        return Opened(opened.id, fill)


class LiveExecution(Execution):
    """Reserve in the database, send the order, record the exchange's fill (see the module docstring)."""

    live = True

    async def open(
        self, name: str, symbol: str, intent: OpenIntent, tf_ms: int
    ) -> Opened | Refused | Cancelled:
        """Reserves the position, sends the market buy named after it, records its fill."""
        try:
            estimate = self.broker.estimate_open(name, symbol, intent.price)
        except OrderRefused as e:
            return Refused(SkipReason.BALANCE, {"broker": str(e)}, by_broker=True)
        reserved = await self._open_in_database(name, symbol, intent, estimate, tf_ms, reserve=True)
        if isinstance(reserved, Refused):
            return reserved
        cid = client_order_id("o", reserved.id)
        try:
            fill = await self.broker.open(
                name, symbol, intent.price, time_ms=intent.time, client_order_id=cid
            )
        except OrderOutcomeUnknown as e:
            # It may have executed: the reservation stays, at its estimate, and the next pass rebuilds
            # from the database, which first settles it by looking the order up again.
            self.unsettled.add(reserved.id)
            self.notify(OutcomeUnknown(name, symbol, "buy", cid, f"{type(e).__name__}: {e}"))
            problem = (type(e).__name__, f"open {name} {symbol}: {e}")
            return Opened(reserved.id, _reserved_fill(reserved, intent.price), problem)
        except (OrderRefused, ExchangeRejected, ExchangeUnavailable) as e:
            self.notify(OrderFailed(name, symbol, "buy", f"{type(e).__name__}: {e}", reserved.id))
            await self.positions.cancel_reservation(
                reserved.id, at=from_ms(intent.time), detail=f"{type(e).__name__}: {e}"
            )
            # The broker never booked it; the balance and the cooldown now come from the database.
            await self._resync()
            return Cancelled(error_kind(e))
        await self._record_fill(reserved, fill)
        return Opened(reserved.id, fill)

    async def _record_fill(self, reserved: Position, fill: Fill) -> None:
        await self.positions.record_fill(
            reserved.id,
            entry_price=fill.price,
            qty=fill.qty,
            stake=fill.gross,
            entry_fee=fill.fee,
            stop_price=hard_stop_price(fill.price, reserved.stop_pct),
            order_id=fill.order_id,
        )
        self.notify(
            OrderFilled(reserved.variant, reserved.symbol, reserved.id, fill.price, fill.qty, fill.order_id)
        )

    async def settle(self) -> int:
        """Looks up the order of every reservation whose fill was never recorded (an answer lost, or a
        crash between the send and the record) and records its fill or cancels it; returns how many
        were settled. One the exchange cannot tell about stays reserved, and is looked up again at
        the start of the next pass."""
        assert isinstance(self.broker, LiveBroker)
        settled = 0
        for p in await self.positions.open_positions():
            if not p.reserved or p.variant not in self.variants:
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
                await self._record_fill(p, fill)
            settled += 1
        return settled

    async def _before_sell(self, position_id: int, cid: str, maybe_sent: bool) -> None:
        if not maybe_sent:
            await self.positions.mark_selling(position_id, cid)
            self.selling.add(position_id)


def make_execution(
    client: ExchangeClient, variants: tuple[Variant, ...], positions: PositionStore, resync: Resync
) -> Execution:
    """Live execution when ``client`` is in live mode (keys from the environment), else paper."""
    cls = LiveExecution if client.live else PaperExecution
    return cls(client, variants, positions, resync)


def _reserved_fill(p: Position, price: float) -> Fill:
    """A reservation's estimate as a fill (what the engine holds until the real fill is known)."""
    return Fill(p.variant, p.symbol, "buy", price, p.entry_price, p.qty, p.entry_fee, p.stake, p.cost, 0.0)
