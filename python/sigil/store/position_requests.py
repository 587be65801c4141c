"""What a caller asks of the position store, checked before any SQL runs: an open request, a position
id, an exchange order id. A bad value raises :class:`~sigil.errors.InvalidOrder` naming it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sigil.errors import InvalidOrder
from sigil.store import _checks
from sigil.store.position_records import FILL_PAPER

#: Longest exit reason stored (``hard_stop``, ``atr_trail``, ``time_stop``, ``manual`` …).
EXIT_REASON_MAX_LEN = 32
#: Longest exchange order id stored.
ORDER_ID_MAX_LEN = 64


@dataclass(frozen=True, slots=True)
class OpenRequest:
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
        """What the open takes from the balance: stake + entry fee."""
        return self.stake + self.entry_fee


def validate_open(
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
) -> OpenRequest:
    """The open request these arguments make; :class:`InvalidOrder` naming the first bad one."""
    e = InvalidOrder
    o = OpenRequest(
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


def check_position_id(position_id: object) -> None:
    """:class:`InvalidOrder` unless ``position_id`` is an integer."""
    if isinstance(position_id, bool) or not isinstance(position_id, int):
        raise InvalidOrder(f"position_id must be an integer, got {position_id!r}")


def check_order_id(order_id: str | None) -> str | None:
    """``order_id`` checked as an exchange order id (None stays None)."""
    return None if order_id is None else _checks.name("order_id", order_id, InvalidOrder, ORDER_ID_MAX_LEN)
