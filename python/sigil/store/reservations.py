"""Live reservations: the row a live open writes before the exchange has answered, and what becomes of it.

A live open (``reserve=True``) is the same transaction as a paper one with the fill the order is
expected to get; the row is ``fill = 'reserved'`` until :meth:`~LiveReservations.record_fill` writes
the exchange's real fill (and settles the account for the difference), or
:meth:`~LiveReservations.cancel_reservation` closes it with no P&L and gives the whole cost back when
the order did not execute. The cooldown written at the reservation stays either way: a pair whose
order just failed is not tried again at once. Before a live sell goes out,
:meth:`~LiveReservations.mark_selling` notes its client id, so that it is looked up, never sent twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sigil.errors import InvalidOrder, PositionNotOpen
from sigil.store import _checks
from sigil.store.accounts import AccountStore
from sigil.store.db import Connection, Database
from sigil.store.events import EventKind, EventStore
from sigil.store.locks import lock_pair
from sigil.store.notify import GuardChange, next_seq, send, until_ms
from sigil.store.position_records import COLUMNS, Position, position_from_row, select_pair
from sigil.store.position_requests import check_order_id, check_position_id
from sigil.store.protections import SymbolProtectionStore

if TYPE_CHECKING:
    from sigil.store.guard_mirror import GuardMirror

#: Exit reason of a reservation whose order did not execute.
ORDER_FAILED = "order_failed"


class LiveReservations:
    """The live-order part of :class:`~sigil.store.positions.PositionStore` (a mixin: it works on the
    store's database, mirror, accounts, events and protections)."""

    _db: Database
    _mirror: GuardMirror | None
    accounts: AccountStore
    events: EventStore
    protections: SymbolProtectionStore

    async def record_fill(
        self,
        position_id: int,
        *,
        entry_price: float,
        qty: float,
        stake: float,
        entry_fee: float,
        stop_price: float,
        order_id: str | None,
    ) -> Position:
        """Writes the exchange's fill into a live reservation, in one transaction: the entry, quantity,
        stake, fee and stop become the real ones, the row ``fill = 'exchange'``, and the account is
        settled for the difference between the reserved cost and the real one. Raises
        :class:`PositionNotOpen` when the position is not an open reservation, :class:`InvalidOrder`
        for a bad value (nothing is written then).
        """
        check_position_id(position_id)
        e = InvalidOrder
        entry_price = _checks.positive("entry_price", entry_price, e)
        qty = _checks.positive("qty", qty, e)
        stake = _checks.positive("stake", stake, e)
        entry_fee = _checks.non_negative("entry_fee", entry_fee, e)
        stop_price = _checks.positive("stop_price", stop_price, e)
        order_id = check_order_id(order_id)
        if stop_price >= entry_price:
            raise e(f"stop_price {stop_price!r} must be below entry_price {entry_price!r}")
        async with self._db.transaction(f"record fill #{position_id}") as conn:
            variant, symbol, reserved = await self._lock_reservation(conn, position_id)
            row = await conn.fetchrow(
                "UPDATE micro_positions SET entry_price = $2, qty = $3, stake = $4, entry_fee = $5,"
                " stop_price = $6, trail_highest = $2, fill = 'exchange', entry_order_id = $7"
                f" WHERE id = $1 RETURNING {COLUMNS}",
                position_id,
                entry_price,
                qty,
                stake,
                entry_fee,
                stop_price,
                order_id,
            )
            position = position_from_row(row)
            after = await self.accounts.credit(conn, variant, reserved - position.cost)
            await self.events.record(
                EventKind.FILL,
                at=position.opened_at,
                variant=variant,
                symbol=symbol,
                position_id=position_id,
                detail={
                    "entry_price": entry_price,
                    "qty": qty,
                    "stake": stake,
                    "entry_fee": entry_fee,
                    "order_id": order_id,
                    "reserved_cost": reserved,
                    "balance": after,
                },
                conn=conn,
            )
        return position

    async def cancel_reservation(self, position_id: int, *, at: datetime, detail: str) -> Position:
        """Closes a live reservation whose order did not execute, in one transaction: no P&L, no fees,
        exit reason ``order_failed``, the reserved cost back on the account, an ``error`` event with
        ``detail``. The cooldown written at the reservation stays. Raises :class:`PositionNotOpen`
        when the position is not an open reservation.
        """
        check_position_id(position_id)
        at = _checks.utc("at", at, InvalidOrder)
        generation = self._mirror.generation if self._mirror is not None else 0
        async with self._db.transaction(f"cancel reservation #{position_id}") as conn:
            _, _, reserved = await self._lock_reservation(conn, position_id)
            row = await conn.fetchrow(
                "UPDATE micro_positions SET status = 'closed', closed_at = greatest(opened_at, $2),"
                f" exit_reason = $3 WHERE id = $1 RETURNING {COLUMNS}",
                position_id,
                at,
                ORDER_FAILED,
            )
            position = position_from_row(row)
            change = await self._released(
                conn,
                position,
                reserved,
                EventKind.ERROR,
                at,
                ORDER_FAILED,
                {"error": detail, "refunded": reserved},
            )
        if self._mirror is not None:
            self._mirror.apply(change, generation=generation)
        return position

    async def _released(
        self,
        conn: Connection,
        position: Position,
        credit: float,
        kind: EventKind,
        at: datetime,
        reason: str,
        detail: dict[str, Any],
    ) -> GuardChange:
        """What every end of a position does inside its transaction: ``credit`` back on the account,
        the event (``detail`` plus the balance after), and the pair's release announced (its cooldown
        stays). Returns the guard change to apply after the commit."""
        after = await self.accounts.credit(conn, position.variant, credit)
        end = await self.protections.protected_until(position.variant, position.symbol, conn=conn)
        await self.events.record(
            kind,
            at=at,
            variant=position.variant,
            symbol=position.symbol,
            reason=reason,
            position_id=position.id,
            detail={**detail, "balance": after},
            conn=conn,
        )
        change = GuardChange(position.variant, position.symbol, False, until_ms(end), await next_seq(conn))
        await send(conn, change)
        return change

    async def mark_selling(self, position_id: int, client_order_id: str) -> None:
        """Notes, before a live sell is sent, the client id it goes out under, so that a later attempt
        (or a restart) looks it up instead of selling twice. :class:`PositionNotOpen` when the position
        is not open."""
        check_position_id(position_id)
        cid = check_order_id(client_order_id)
        async with self._db.connection(f"mark selling #{position_id}") as conn:
            status = await conn.execute(
                "UPDATE micro_positions SET exit_order_id = $2 WHERE id = $1 AND status = 'open'",
                position_id,
                cid,
            )
        if status.endswith(" 0"):
            raise PositionNotOpen(f"position #{position_id} is not open")

    async def _lock_reservation(self, conn: Connection, position_id: int) -> tuple[str, str, float]:
        """Locks an open reservation's pair and row; (variant, symbol, reserved cost)."""
        pair = await select_pair(conn, position_id)
        if pair is None:
            raise PositionNotOpen(f"position #{position_id} does not exist")
        variant, symbol, _ = pair
        await lock_pair(conn, variant, symbol)
        r = await conn.fetchrow(
            "SELECT stake + entry_fee AS cost FROM micro_positions"
            " WHERE id = $1 AND status = 'open' AND fill = 'reserved' FOR UPDATE",
            position_id,
        )
        if r is None:
            raise PositionNotOpen(f"position #{position_id} ({variant} {symbol}) is not an open reservation")
        return variant, symbol, float(r["cost"])
