"""Positions as the store keeps them: a ``micro_positions`` row as a :class:`Position`, the answer to an
open (:class:`OpenResult`), and the mapping between the two."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sigil._core import SkipReason
from sigil.store.db import Connection

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
    #: Closed: the sell's gross proceeds (qty × exit price) and its fee, as the close recorded them.
    exit_gross: float | None = None
    exit_fee: float | None = None

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


#: The columns of ``micro_positions`` that make a :class:`Position`, in its order.
COLUMNS = (
    "id, variant_id, symbol, status, opened_at, entry_price, qty, stake, entry_fee, stop_pct, stop_price,"
    " atr_at_entry, trail_active, trail_highest, trail_stop, closed_at, exit_price, exit_reason, pnl, fees,"
    " fill, entry_order_id, exit_order_id, exit_gross, exit_fee"
)


def position_from_row(r: Any) -> Position:
    """The :class:`Position` of a row read with :data:`COLUMNS`."""
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
        exit_gross=r["exit_gross"],
        exit_fee=r["exit_fee"],
    )


async def select_pair(conn: Connection, position_id: int) -> tuple[str, str, datetime] | None:
    """(variant, symbol, opened_at) of position ``position_id``, open or closed; None when unknown."""
    r = await conn.fetchrow(
        "SELECT variant_id, symbol, opened_at FROM micro_positions WHERE id = $1", position_id
    )
    return None if r is None else (r["variant_id"], r["symbol"], r["opened_at"])
