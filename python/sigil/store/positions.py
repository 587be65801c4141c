"""Positions: ``PositionStore`` opens and closes them, each in ONE transaction.

The open is where root causes 2 and 3 are fixed. In one transaction it:

1. takes the pair's transaction-scoped advisory lock, without waiting (``pg_try_advisory_xact_lock``):
   a pair that another process is opening or closing right now is refused as ``open``;
2. re-reads the pair's open position and protection from the database (the guard mirror may be stale);
3. locks the variant's account row, then checks ``max_open`` and the balance;
4. inserts the position with ``ON CONFLICT (variant_id, symbol) WHERE status = 'open' DO NOTHING``
   (the partial unique index is the last line of defence);
5. writes the protection from the OPEN time (``opened_at + cooldown``);
6. debits the account (stake + entry fee), records the ``open`` event, and announces the change.

A refused open writes nothing at all. The guard mirror is changed only after the commit.

A live open (``reserve=True``) is a reservation until the exchange's fill is recorded or the order is
found not to have executed: :mod:`sigil.store.reservations`. The records are in
:mod:`sigil.store.position_records`, the checks of what a caller asks in
:mod:`sigil.store.position_requests`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sigil._core import SkipReason
from sigil.errors import InvalidOrder, PositionNotOpen
from sigil.store import _checks
from sigil.store.accounts import AccountStore
from sigil.store.db import Connection, Database
from sigil.store.events import EventKind, EventStore
from sigil.store.locks import lock_pair, try_lock_pair
from sigil.store.notify import GuardChange, next_seq, send, until_ms
from sigil.store.position_records import (
    COLUMNS,
    FILL_RESERVED,
    OpenResult,
    Position,
    position_from_row,
    select_pair,
)
from sigil.store.position_requests import (
    EXIT_REASON_MAX_LEN,
    OpenRequest,
    check_order_id,
    check_position_id,
    validate_open,
)
from sigil.store.protections import SymbolProtectionStore
from sigil.store.reservations import LiveReservations

if TYPE_CHECKING:
    from sigil.store.guard_mirror import GuardMirror

__all__ = ["OpenResult", "Position", "PositionStore"]


class PositionStore(LiveReservations):
    """Opens, closes and reads positions; keeps accounts, protections, events and the mirror in step.

    ``mirror``, when given, is told of every committed open and close of this process at once (other
    processes' changes reach it by NOTIFY). Live reservations: :class:`LiveReservations`.
    """

    def __init__(self, db: Database, *, mirror: GuardMirror | None = None) -> None:
        self._db = db
        self._mirror = mirror
        self.protections = SymbolProtectionStore(db)
        self.accounts = AccountStore(db)
        self.events = EventStore(db)

    async def open_position(
        self,
        *,
        variant: str,
        symbol: str,
        opened_at: datetime,
        entry_price: float,
        qty: float,
        stake: float,
        entry_fee: float,
        stop_pct: float,
        stop_price: float,
        atr_at_entry: float,
        cooldown: timedelta,
        max_open: int | None = None,
        reserve: bool = False,
    ) -> OpenResult:
        """Opens a position in one transaction, or refuses and writes nothing.

        ``reserve=True`` opens it as a live reservation (``fill = 'reserved'``) holding the expected
        fill, to be completed by :meth:`record_fill` or undone by :meth:`cancel_reservation`.

        ``opened_at`` is the market time of the entry; the pair is then protected until
        ``opened_at + cooldown`` (the cooldown starts at the OPEN). Refusals come back as
        ``OpenResult.refused``: ``open`` (open, or being opened or closed by another transaction),
        ``cooldown``, ``max_open`` (the variant already holds ``max_open`` positions), ``balance``
        (less than ``stake + entry_fee`` left). Raises :class:`InvalidOrder` for a bad value,
        :class:`UnknownVariant` for a variant without an account, and
        :class:`DatabaseUnavailable` when the database cannot be reached.
        """
        o = validate_open(
            variant,
            symbol,
            opened_at,
            entry_price,
            qty,
            stake,
            entry_fee,
            stop_pct,
            stop_price,
            atr_at_entry,
            cooldown,
            max_open,
        )
        if reserve:
            o = replace(o, fill=FILL_RESERVED)
        generation = self._mirror.generation if self._mirror is not None else 0
        async with self._db.transaction(f"open {o.variant} {o.symbol}") as conn:
            if not await try_lock_pair(conn, o.variant, o.symbol):
                return OpenResult(
                    None, SkipReason.OPEN, detail="another transaction is opening or closing this pair"
                )
            state = await self.protections.guard_state(o.variant, o.symbol, conn=conn)
            reason = state.blocked(o.opened_at)
            if reason is not None:
                return OpenResult(
                    None, reason, state.protected_until, detail=_why(reason, state.protected_until)
                )
            balance = await self.accounts.lock_balance(conn, o.variant)
            if o.max_open is not None:
                n = await _count_open(conn, o.variant)
                if n >= o.max_open:
                    return OpenResult(
                        None, SkipReason.MAX_OPEN, state.protected_until, detail=f"{n} open, max {o.max_open}"
                    )
            if balance < o.cost:
                return OpenResult(
                    None,
                    SkipReason.BALANCE,
                    state.protected_until,
                    detail=f"balance {balance:.2f} < cost {o.cost:.2f}",
                )
            row = await _insert_open(conn, o)
            if row is None:  # the unique index saw an open row the re-check did not: refuse, write nothing
                return OpenResult(None, SkipReason.OPEN, detail="an open position exists (unique index)")
            position = position_from_row(row)
            end = await self.protections.protect(
                o.variant, o.symbol, o.opened_at + o.cooldown, f"cooldown from open #{position.id}", conn=conn
            )
            after = await self.accounts.debit(conn, o.variant, o.cost)
            await self.events.record(
                EventKind.OPEN,
                at=o.opened_at,
                variant=o.variant,
                symbol=o.symbol,
                position_id=position.id,
                detail={
                    "entry_price": o.entry_price,
                    "qty": o.qty,
                    "stake": o.stake,
                    "entry_fee": o.entry_fee,
                    "stop_pct": o.stop_pct,
                    "protected_until": end.isoformat(),
                    "balance": after,
                    "fill": o.fill,
                },
                conn=conn,
            )
            change = GuardChange(o.variant, o.symbol, True, until_ms(end), await next_seq(conn))
            await send(conn, change)
        # Committed: only now may the in-memory guard say "open".
        if self._mirror is not None:
            self._mirror.apply(change, generation=generation)
        return OpenResult(position, None, end)

    async def close_position(
        self,
        position_id: int,
        *,
        closed_at: datetime,
        exit_price: float,
        gross: float,
        exit_fee: float,
        exit_reason: str,
        order_id: str | None = None,
    ) -> Position:
        """Closes an open position in one transaction and returns it as closed (``order_id``: the
        exchange's id of a live sell).

        ``gross`` is qty × exit price and ``exit_fee`` its fee (``sigil._core.sell_fill``); the account
        is credited ``gross - exit_fee``, and ``pnl = (gross - exit_fee) - (stake + entry_fee)``,
        ``fees = entry_fee + exit_fee``. The protection is left as it is (it ran from the open).
        Raises :class:`PositionNotOpen` when the position is unknown, already closed, or a live
        reservation whose fill is not recorded; :class:`InvalidOrder` for a bad value (including a
        close before the open).
        """
        closed_at = _checks.utc("closed_at", closed_at, InvalidOrder)
        exit_price = _checks.positive("exit_price", exit_price, InvalidOrder)
        gross = _checks.non_negative("gross", gross, InvalidOrder)
        exit_fee = _checks.non_negative("exit_fee", exit_fee, InvalidOrder)
        exit_reason = _checks.name("exit_reason", exit_reason, InvalidOrder, EXIT_REASON_MAX_LEN)
        order_id = check_order_id(order_id)
        check_position_id(position_id)
        proceeds = gross - exit_fee
        generation = self._mirror.generation if self._mirror is not None else 0
        async with self._db.transaction(f"close #{position_id}") as conn:
            pair = await select_pair(conn, position_id)
            if pair is None:
                raise PositionNotOpen(f"position #{position_id} does not exist")
            variant, symbol, opened_at = pair
            if closed_at < opened_at:
                raise InvalidOrder(
                    f"closed_at {closed_at.isoformat()} is before position #{position_id} opened "
                    f"({opened_at.isoformat()})"
                )
            await lock_pair(conn, variant, symbol)
            row = await _update_close(
                conn, position_id, closed_at, exit_price, gross, exit_fee, exit_reason, order_id
            )
            if row is None:
                if await _is_reserved(conn, position_id):
                    raise PositionNotOpen(
                        f"position #{position_id} ({variant} {symbol}) is a reservation whose fill is not"
                        " recorded: record its fill or cancel it first"
                    )
                raise PositionNotOpen(f"position #{position_id} ({variant} {symbol}) is already closed")
            position = position_from_row(row)
            change = await self._released(
                conn,
                position,
                proceeds,
                EventKind.CLOSE,
                closed_at,
                exit_reason,
                {"exit_price": exit_price, "pnl": position.pnl, "fees": position.fees},
            )
        if self._mirror is not None:
            self._mirror.apply(change, generation=generation)
        return position

    async def update_trail(
        self, position_id: int, *, active: bool, highest: float, stop: float | None
    ) -> None:
        """Stores the trailing-stop state of an open position (:class:`PositionNotOpen` when it is not)."""
        highest = _checks.positive("highest", highest, InvalidOrder)
        if stop is not None:
            stop = _checks.positive("stop", stop, InvalidOrder)
        async with self._db.connection(f"update trail #{position_id}") as conn:
            status = await conn.execute(
                "UPDATE micro_positions SET trail_active = $2, trail_highest = $3, trail_stop = $4"
                " WHERE id = $1 AND status = 'open'",
                position_id,
                bool(active),
                highest,
                stop,
            )
        if status.endswith(" 0"):
            raise PositionNotOpen(f"position #{position_id} is not open")

    async def get(self, position_id: int) -> Position | None:
        """The position with this id, or None."""
        async with self._db.connection("read position") as conn:
            r = await conn.fetchrow(f"SELECT {COLUMNS} FROM micro_positions WHERE id = $1", position_id)
        return None if r is None else position_from_row(r)

    async def open_positions(self, variant: str | None = None) -> list[Position]:
        """Open positions (of one variant, or all), oldest first."""
        async with self._db.connection("read open positions") as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM micro_positions WHERE status = 'open'"
                " AND ($1::text IS NULL OR variant_id = $1) ORDER BY opened_at, id",
                variant,
            )
        return [position_from_row(r) for r in rows]

    async def since(self, at: datetime) -> list[Position]:
        """Every position open now or closed after ``at`` (market time), oldest open first: what a
        rebuild from the resume point ``at`` must know of."""
        at = _checks.utc("at", at)
        async with self._db.connection("read positions since") as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM micro_positions WHERE status = 'open' OR closed_at > $1"
                " ORDER BY opened_at, id",
                at,
            )
        return [position_from_row(r) for r in rows]

    async def last_opens(self, at: datetime) -> dict[tuple[str, str], datetime]:
        """The latest open time at or before ``at`` of every (variant, symbol) that ever opened."""
        at = _checks.utc("at", at)
        async with self._db.connection("read last opens") as conn:
            rows = await conn.fetch(
                "SELECT variant_id, symbol, max(opened_at) AS opened_at FROM micro_positions"
                " WHERE opened_at <= $1 GROUP BY variant_id, symbol",
                at,
            )
        return {(r["variant_id"], r["symbol"]): r["opened_at"] for r in rows}

    async def closed_positions(self, variant: str | None = None, *, limit: int = 100) -> list[Position]:
        """The latest closed positions (of one variant, or all), newest first."""
        async with self._db.connection("read closed positions") as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM micro_positions WHERE status = 'closed'"
                " AND ($1::text IS NULL OR variant_id = $1)"
                " ORDER BY closed_at DESC NULLS LAST, id DESC LIMIT $2",
                variant,
                limit,
            )
        return [position_from_row(r) for r in rows]

    async def realised(self) -> dict[str, tuple[int, float]]:
        """Per variant: number of closed positions and their summed P&L."""
        async with self._db.connection("read realised P&L") as conn:
            rows = await conn.fetch(
                "SELECT variant_id, count(*) AS n, coalesce(sum(pnl), 0) AS pnl FROM micro_positions"
                " WHERE status = 'closed' GROUP BY variant_id"
            )
        return {r["variant_id"]: (int(r["n"]), float(r["pnl"])) for r in rows}

    async def blocked(self, variant: str, symbol: str, at: datetime) -> SkipReason | None:
        """The database's answer to the pre-signal guard (what the mirror answers from memory)."""
        at = _checks.utc("at", at)
        state = await self.protections.guard_state(variant, symbol)
        return state.blocked(at)


def _why(reason: SkipReason, until: datetime | None) -> str:
    if reason is SkipReason.COOLDOWN and until is not None:
        return f"cooling down until {until.isoformat()}"
    return "a position is open"


async def _count_open(conn: Connection, variant: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM micro_positions WHERE variant_id = $1 AND status = 'open'", variant
        )
    )


async def _insert_open(conn: Connection, o: OpenRequest) -> Any:
    return await conn.fetchrow(
        "INSERT INTO micro_positions (variant_id, symbol, status, opened_at, entry_price, qty, stake,"
        " entry_fee, stop_pct, stop_price, atr_at_entry, trail_highest, fill)"
        " VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9, $10, $4, $11)"
        " ON CONFLICT (variant_id, symbol) WHERE status = 'open' DO NOTHING"
        f" RETURNING {COLUMNS}",
        o.variant,
        o.symbol,
        o.opened_at,
        o.entry_price,
        o.qty,
        o.stake,
        o.entry_fee,
        o.stop_pct,
        o.stop_price,
        o.atr_at_entry,
        o.fill,
    )


async def _is_reserved(conn: Connection, position_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT fill = 'reserved' FROM micro_positions WHERE id = $1 AND status = 'open'", position_id
        )
    )


async def _update_close(
    conn: Connection,
    position_id: int,
    closed_at: datetime,
    exit_price: float,
    gross: float,
    exit_fee: float,
    exit_reason: str,
    order_id: str | None,
) -> Any:
    # pnl in the order the engine's rule gives it (sigil._core.round_trip), in float8 (IEEE double):
    # the stored P&L equals the engine's closed trade to the bit (a store test checks it).
    return await conn.fetchrow(
        "UPDATE micro_positions SET status = 'closed', closed_at = $2, exit_price = $3, exit_reason = $6,"
        " exit_order_id = $7,"
        " pnl = ($4::float8 - $5::float8) - (stake + entry_fee), fees = entry_fee + $5::float8,"
        " exit_gross = $4, exit_fee = $5"
        f" WHERE id = $1 AND status = 'open' AND fill <> 'reserved' RETURNING {COLUMNS}",
        position_id,
        closed_at,
        exit_price,
        gross,
        exit_fee,
        exit_reason,
        order_id,
    )
