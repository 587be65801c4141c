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

A live open (``reserve=True``) is the same transaction with the fill the order is expected to get;
the row is ``fill = 'reserved'`` until :meth:`PositionStore.record_fill` writes the exchange's real
fill (and settles the account for the difference), or :meth:`PositionStore.cancel_reservation`
closes it with no P&L and gives the whole cost back when the order did not execute. The cooldown
written at the reservation stays either way: a pair whose order just failed is not tried again at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sigil.errors import InvalidOrder, PositionNotOpen
from sigil.store import _checks
from sigil.store.accounts import AccountStore
from sigil.store.db import Connection, Database
from sigil.store.events import EventKind, EventStore, SkipReason
from sigil.store.locks import lock_pair, try_lock_pair
from sigil.store.notify import GuardChange, next_seq, send, until_ms
from sigil.store.protections import SymbolProtectionStore

if TYPE_CHECKING:
    from sigil.store.guard_mirror import GuardMirror

#: Longest exit reason stored (``hard_stop``, ``atr_trail``, ``time_stop``, ``manual`` …).
EXIT_REASON_MAX_LEN = 32
#: Exit reason of a reservation whose order did not execute.
ORDER_FAILED = "order_failed"
#: Longest exchange order id stored.
ORDER_ID_MAX_LEN = 64
#: How a position was filled (``micro_positions.fill``).
FILL_PAPER, FILL_RESERVED, FILL_EXCHANGE = "paper", "reserved", "exchange"


@dataclass(frozen=True, slots=True)
class Position:
    """A row of ``micro_positions``. Money in the quote currency (USDT), times in UTC."""

    id: int
    variant: str
    symbol: str
    status: str
    opened_at: datetime
    entry_price: float
    qty: float
    stake: float
    entry_fee: float
    stop_pct: float
    stop_price: float
    atr_at_entry: float | None
    trail_active: bool
    trail_highest: float | None
    trail_stop: float | None
    closed_at: datetime | None
    exit_price: float | None
    exit_reason: str | None
    pnl: float | None
    fees: float | None
    #: ``paper``, ``reserved`` (a live order sent, its fill not recorded yet) or ``exchange``.
    fill: str = FILL_PAPER
    #: The exchange's id of a live buy.
    entry_order_id: str | None = None
    #: Closed: the exchange's id of the live sell. Open: the client id of a sell that was sent but
    #: not recorded (its outcome must be looked up before selling again).
    exit_order_id: str | None = None

    @property
    def is_open(self) -> bool:
        """The position is open."""
        return self.status == "open"

    @property
    def reserved(self) -> bool:
        """A live open whose order was sent but whose fill is not recorded yet."""
        return self.is_open and self.fill == FILL_RESERVED

    @property
    def cost(self) -> float:
        """What the open took from the balance: stake + entry fee."""
        return self.stake + self.entry_fee


@dataclass(frozen=True, slots=True)
class OpenResult:
    """The answer to an open: the new position, or why it was refused (and then nothing was written)."""

    position: Position | None
    refused: SkipReason | None
    #: The pair's protection end after the attempt (for a cooldown refusal: when it may open again).
    protected_until: datetime | None = None
    #: A short explanation of a refusal.
    detail: str = ""

    @property
    def opened(self) -> bool:
        """True when the position was opened."""
        return self.position is not None


_COLUMNS = (
    "id, variant_id, symbol, status, opened_at, entry_price, qty, stake, entry_fee, stop_pct, stop_price,"
    " atr_at_entry, trail_active, trail_highest, trail_stop, closed_at, exit_price, exit_reason, pnl, fees,"
    " fill, entry_order_id, exit_order_id"
)


def _position(r: Any) -> Position:
    return Position(
        id=r["id"],
        variant=r["variant_id"],
        symbol=r["symbol"],
        status=r["status"],
        opened_at=r["opened_at"],
        entry_price=r["entry_price"],
        qty=r["qty"],
        stake=r["stake"],
        entry_fee=r["entry_fee"],
        stop_pct=r["stop_pct"],
        stop_price=r["stop_price"],
        atr_at_entry=r["atr_at_entry"],
        trail_active=r["trail_active"],
        trail_highest=r["trail_highest"],
        trail_stop=r["trail_stop"],
        closed_at=r["closed_at"],
        exit_price=r["exit_price"],
        exit_reason=r["exit_reason"],
        pnl=r["pnl"],
        fees=r["fees"],
        fill=r["fill"],
        entry_order_id=r["entry_order_id"],
        exit_order_id=r["exit_order_id"],
    )


@dataclass(frozen=True, slots=True)
class _Open:
    """A validated open request."""

    variant: str
    symbol: str
    opened_at: datetime
    entry_price: float
    qty: float
    stake: float
    entry_fee: float
    stop_pct: float
    stop_price: float
    atr_at_entry: float
    cooldown: timedelta
    max_open: int | None
    fill: str = FILL_PAPER

    @property
    def cost(self) -> float:
        return self.stake + self.entry_fee


class PositionStore:
    """Opens, closes and reads positions; keeps accounts, protections, events and the mirror in step.

    ``mirror``, when given, is told of every committed open and close of this process at once (other
    processes' changes reach it by NOTIFY).
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
        o = _validate_open(
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
            position = _position(row)
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
        order_id = _order_id(order_id)
        _check_id(position_id)
        proceeds = gross - exit_fee
        generation = self._mirror.generation if self._mirror is not None else 0
        async with self._db.transaction(f"close #{position_id}") as conn:
            pair = await _select_pair(conn, position_id)
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
            position = _position(row)
            after = await self.accounts.credit(conn, variant, proceeds)
            end = await self.protections.protected_until(variant, symbol, conn=conn)
            await self.events.record(
                EventKind.CLOSE,
                at=closed_at,
                variant=variant,
                symbol=symbol,
                reason=exit_reason,
                position_id=position_id,
                detail={
                    "exit_price": exit_price,
                    "pnl": position.pnl,
                    "fees": position.fees,
                    "balance": after,
                },
                conn=conn,
            )
            change = GuardChange(variant, symbol, False, until_ms(end), await next_seq(conn))
            await send(conn, change)
        if self._mirror is not None:
            self._mirror.apply(change, generation=generation)
        return position

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
        _check_id(position_id)
        e = InvalidOrder
        entry_price = _checks.positive("entry_price", entry_price, e)
        qty = _checks.positive("qty", qty, e)
        stake = _checks.positive("stake", stake, e)
        entry_fee = _checks.non_negative("entry_fee", entry_fee, e)
        stop_price = _checks.positive("stop_price", stop_price, e)
        order_id = _order_id(order_id)
        if stop_price >= entry_price:
            raise e(f"stop_price {stop_price!r} must be below entry_price {entry_price!r}")
        async with self._db.transaction(f"record fill #{position_id}") as conn:
            variant, symbol, reserved = await self._lock_reservation(conn, position_id)
            row = await conn.fetchrow(
                "UPDATE micro_positions SET entry_price = $2, qty = $3, stake = $4, entry_fee = $5,"
                " stop_price = $6, trail_highest = $2, fill = 'exchange', entry_order_id = $7"
                f" WHERE id = $1 RETURNING {_COLUMNS}",
                position_id,
                entry_price,
                qty,
                stake,
                entry_fee,
                stop_price,
                order_id,
            )
            position = _position(row)
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
        _check_id(position_id)
        at = _checks.utc("at", at, InvalidOrder)
        generation = self._mirror.generation if self._mirror is not None else 0
        async with self._db.transaction(f"cancel reservation #{position_id}") as conn:
            variant, symbol, reserved = await self._lock_reservation(conn, position_id)
            row = await conn.fetchrow(
                "UPDATE micro_positions SET status = 'closed', closed_at = greatest(opened_at, $2),"
                f" exit_reason = $3 WHERE id = $1 RETURNING {_COLUMNS}",
                position_id,
                at,
                ORDER_FAILED,
            )
            position = _position(row)
            after = await self.accounts.credit(conn, variant, reserved)
            end = await self.protections.protected_until(variant, symbol, conn=conn)
            await self.events.record(
                EventKind.ERROR,
                at=at,
                variant=variant,
                symbol=symbol,
                reason=ORDER_FAILED,
                position_id=position_id,
                detail={"error": detail, "refunded": reserved, "balance": after},
                conn=conn,
            )
            change = GuardChange(variant, symbol, False, until_ms(end), await next_seq(conn))
            await send(conn, change)
        if self._mirror is not None:
            self._mirror.apply(change, generation=generation)
        return position

    async def mark_selling(self, position_id: int, client_order_id: str) -> None:
        """Notes, before a live sell is sent, the client id it goes out under, so that a later attempt
        (or a restart) looks it up instead of selling twice. :class:`PositionNotOpen` when the position
        is not open."""
        _check_id(position_id)
        cid = _order_id(client_order_id)
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
        pair = await _select_pair(conn, position_id)
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
            r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM micro_positions WHERE id = $1", position_id)
        return None if r is None else _position(r)

    async def open_positions(self, variant: str | None = None) -> list[Position]:
        """Open positions (of one variant, or all), oldest first."""
        async with self._db.connection("read open positions") as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM micro_positions WHERE status = 'open'"
                " AND ($1::text IS NULL OR variant_id = $1) ORDER BY opened_at, id",
                variant,
            )
        return [_position(r) for r in rows]

    async def closed_positions(self, variant: str | None = None, *, limit: int = 100) -> list[Position]:
        """The latest closed positions (of one variant, or all), newest first."""
        async with self._db.connection("read closed positions") as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM micro_positions WHERE status = 'closed'"
                " AND ($1::text IS NULL OR variant_id = $1)"
                " ORDER BY closed_at DESC NULLS LAST, id DESC LIMIT $2",
                variant,
                limit,
            )
        return [_position(r) for r in rows]

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


def _check_id(position_id: object) -> None:
    if isinstance(position_id, bool) or not isinstance(position_id, int):
        raise InvalidOrder(f"position_id must be an integer, got {position_id!r}")


def _order_id(order_id: str | None) -> str | None:
    return None if order_id is None else _checks.name("order_id", order_id, InvalidOrder, ORDER_ID_MAX_LEN)


def _why(reason: SkipReason, until: datetime | None) -> str:
    if reason is SkipReason.COOLDOWN and until is not None:
        return f"cooling down until {until.isoformat()}"
    return "a position is open"


def _validate_open(
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
    max_open: int | None,
) -> _Open:
    e = InvalidOrder
    o = _Open(
        variant=_checks.name("variant", variant, e),
        symbol=_checks.name("symbol", symbol, e),
        opened_at=_checks.utc("opened_at", opened_at, e),
        entry_price=_checks.positive("entry_price", entry_price, e),
        qty=_checks.positive("qty", qty, e),
        stake=_checks.positive("stake", stake, e),
        entry_fee=_checks.non_negative("entry_fee", entry_fee, e),
        stop_pct=_checks.positive("stop_pct", stop_pct, e),
        stop_price=_checks.positive("stop_price", stop_price, e),
        atr_at_entry=_checks.non_negative("atr_at_entry", atr_at_entry, e),
        cooldown=cooldown,
        max_open=max_open,
    )
    if o.stop_pct >= 1:
        raise e(f"stop_pct must be below 1, got {stop_pct!r}")
    if o.stop_price >= o.entry_price:
        raise e(f"stop_price {stop_price!r} must be below entry_price {entry_price!r}")
    if not isinstance(cooldown, timedelta) or cooldown < timedelta(0):
        raise e(f"cooldown must be a timedelta >= 0, got {cooldown!r}")
    if max_open is not None and (isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1):
        raise e(f"max_open must be an integer >= 1 or None, got {max_open!r}")
    return o


async def _count_open(conn: Connection, variant: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM micro_positions WHERE variant_id = $1 AND status = 'open'", variant
        )
    )


async def _insert_open(conn: Connection, o: _Open) -> Any:
    return await conn.fetchrow(
        "INSERT INTO micro_positions (variant_id, symbol, status, opened_at, entry_price, qty, stake,"
        " entry_fee, stop_pct, stop_price, atr_at_entry, trail_highest, fill)"
        " VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9, $10, $4, $11)"
        " ON CONFLICT (variant_id, symbol) WHERE status = 'open' DO NOTHING"
        f" RETURNING {_COLUMNS}",
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


async def _select_pair(conn: Connection, position_id: int) -> tuple[str, str, datetime] | None:
    r = await conn.fetchrow(
        "SELECT variant_id, symbol, opened_at FROM micro_positions WHERE id = $1", position_id
    )
    return None if r is None else (r["variant_id"], r["symbol"], r["opened_at"])


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
    # pnl in the order the decision rules give it, in float8 (IEEE double, as the engine computes it).
    return await conn.fetchrow(
        "UPDATE micro_positions SET status = 'closed', closed_at = $2, exit_price = $3, exit_reason = $6,"
        " exit_order_id = $7,"
        " pnl = ($4::float8 - $5::float8) - (stake + entry_fee), fees = entry_fee + $5::float8"
        f" WHERE id = $1 AND status = 'open' AND fill <> 'reserved' RETURNING {_COLUMNS}",
        position_id,
        closed_at,
        exit_price,
        gross,
        exit_fee,
        exit_reason,
        order_id,
    )
