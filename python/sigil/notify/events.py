"""The events a person can be notified of: one typed shape each, and its text.

Every notice has a title that starts with its event's word, then the variant and symbol where there
is one (``open baseline TST/USDT``, ``close moderate NFP/USDT``, ``stale``, ``summary baseline``), and
a body of ``field: value`` lines, so a person reads it and a script can split it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal

from sigil.times import iso


class NotifyEvent(StrEnum):
    """The names ``notify.events`` chooses among."""

    OPEN = "open"
    CLOSE = "close"
    #: A live order's exchange fill recorded (the open's notice carries the price already).
    FILL = "fill"
    ORDER_FAILED = "order_failed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    PASS_FAILED = "pass_failed"
    REARMED = "rearmed"
    HEARTBEAT_STALE = "heartbeat_stale"
    STARTED = "started"
    STOPPED = "stopped"
    DAILY_SUMMARY = "daily_summary"


EVENT_NAMES: tuple[str, ...] = tuple(e.value for e in NotifyEvent)
#: What is sent when ``notify.events`` is not set: everything but the live fill, which repeats the open.
DEFAULT_EVENTS: tuple[str, ...] = tuple(e for e in EVENT_NAMES if e != NotifyEvent.FILL)

#: The title's first word where it is not the event's name.
_WORD = {NotifyEvent.HEARTBEAT_STALE: "stale", NotifyEvent.DAILY_SUMMARY: "summary"}

#: Apprise's message types, from good news to bad.
Level = Literal["info", "success", "warning", "failure"]


def _money(x: float) -> str:
    return f"{x:+.4f}" if x else "0"


def _price(x: float) -> str:
    return f"{x:.10g}"


@dataclass(frozen=True)
class Notice:
    """One notification. Subclasses set :attr:`event` and give their fields."""

    event: ClassVar[NotifyEvent]
    #: Apprise's message type of this kind of notice (:meth:`level` may choose per notice).
    kind_level: ClassVar[Level] = "info"

    def level(self) -> Level:
        """Apprise's message type: info, success, warning or failure."""
        return self.kind_level

    @property
    def variant(self) -> str | None:
        """The variant it is about, if any."""
        return None

    @property
    def symbol(self) -> str | None:
        """The symbol it is about, if any."""
        return None

    def fields(self) -> list[tuple[str, str]]:
        """The body's ``(field, value)`` pairs, in order."""
        return []

    def title(self) -> str:
        """The event's word, then the variant and symbol where there is one."""
        words = [_WORD.get(self.event, self.event.value), self.variant, self.symbol]
        return " ".join(w for w in words if w)

    def body(self) -> str:
        """``field: value`` lines."""
        return "\n".join(f"{k}: {v}" for k, v in self.fields()) or self.title()


@dataclass(frozen=True)
class _Trade(Notice):
    variant_name: str
    symbol_name: str

    @property
    def variant(self) -> str | None:
        """The variant that traded."""
        return self.variant_name

    @property
    def symbol(self) -> str | None:
        """The symbol it traded."""
        return self.symbol_name


@dataclass(frozen=True)
class PositionOpened(_Trade):
    """A position opened (committed in the database)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.OPEN
    position_id: int
    price: float
    qty: float
    stake: float
    stop_pct: float
    stop_price: float
    at_ms: int

    def fields(self) -> list[tuple[str, str]]:
        """Variant, symbol, price, stake, stop, position, market time."""
        return [
            ("variant", self.variant_name),
            ("symbol", self.symbol_name),
            ("price", _price(self.price)),
            ("qty", f"{self.qty:.10g}"),
            ("stake", f"{self.stake:.2f}"),
            ("stop", f"{_price(self.stop_price)} ({self.stop_pct:.2%})"),
            ("position", str(self.position_id)),
            ("at", iso(self.at_ms)),
        ]


@dataclass(frozen=True)
class PositionClosed(_Trade):
    """A position closed, with why and its P&L (quote currency, fees included)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.CLOSE
    position_id: int
    price: float
    reason: str
    pnl: float
    at_ms: int

    def level(self) -> Level:
        """Success for a gain, warning for a loss."""
        return "success" if self.pnl >= 0 else "warning"

    def fields(self) -> list[tuple[str, str]]:
        """Variant, symbol, price, reason, P&L, position, market time."""
        return [
            ("variant", self.variant_name),
            ("symbol", self.symbol_name),
            ("price", _price(self.price)),
            ("reason", self.reason),
            ("pnl", _money(self.pnl)),
            ("position", str(self.position_id)),
            ("at", iso(self.at_ms)),
        ]


@dataclass(frozen=True)
class OrderFilled(_Trade):
    """A live order's fill, as the exchange reported it."""

    event: ClassVar[NotifyEvent] = NotifyEvent.FILL
    position_id: int
    price: float
    qty: float
    order_id: str | None

    def fields(self) -> list[tuple[str, str]]:
        """Variant, symbol, price, qty, position, the exchange's order id."""
        return [
            ("variant", self.variant_name),
            ("symbol", self.symbol_name),
            ("price", _price(self.price)),
            ("qty", f"{self.qty:.10g}"),
            ("position", str(self.position_id)),
            ("order", self.order_id or "-"),
        ]


@dataclass(frozen=True)
class OrderFailed(_Trade):
    """A live order that did not go through (refused, rejected, the exchange unreachable)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.ORDER_FAILED
    kind_level: ClassVar[Level] = "failure"
    side: str
    error: str
    position_id: int | None = None

    def fields(self) -> list[tuple[str, str]]:
        """Variant, symbol, side, error, position."""
        out = [("variant", self.variant_name), ("symbol", self.symbol_name), ("side", self.side)]
        if self.position_id is not None:
            out.append(("position", str(self.position_id)))
        return [*out, ("error", self.error)]


@dataclass(frozen=True)
class OutcomeUnknown(_Trade):
    """A live order whose answer was lost: whether it executed is not known; a person must look."""

    event: ClassVar[NotifyEvent] = NotifyEvent.OUTCOME_UNKNOWN
    kind_level: ClassVar[Level] = "failure"
    side: str
    client_order_id: str
    error: str

    def fields(self) -> list[tuple[str, str]]:
        """Variant, symbol, side, the order's client id, error."""
        return [
            ("variant", self.variant_name),
            ("symbol", self.symbol_name),
            ("side", self.side),
            ("order", self.client_order_id),
            ("error", self.error),
        ]


@dataclass(frozen=True)
class PassFailed(Notice):
    """A pass failed (the first of a run of failures; the next completed pass ends the run)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.PASS_FAILED
    kind_level: ClassVar[Level] = "failure"
    job: str
    error: str

    def fields(self) -> list[tuple[str, str]]:
        """The pass and its error."""
        return [("pass", self.job), ("error", self.error)]


@dataclass(frozen=True)
class Rearmed(Notice):
    """The watchdog re-armed a scheduler that had stopped running passes."""

    event: ClassVar[NotifyEvent] = NotifyEvent.REARMED
    kind_level: ClassVar[Level] = "warning"
    instance: str
    overdue: str

    def fields(self) -> list[tuple[str, str]]:
        """The instance and the passes that were overdue."""
        return [("instance", self.instance), ("overdue", self.overdue)]


@dataclass(frozen=True)
class HeartbeatStale(Notice):
    """No pass has completed for longer than ``daemon.heartbeat_max_age_s``."""

    event: ClassVar[NotifyEvent] = NotifyEvent.HEARTBEAT_STALE
    kind_level: ClassVar[Level] = "failure"
    instance: str
    age_s: float
    max_age_s: float

    def fields(self) -> list[tuple[str, str]]:
        """The instance, the heartbeat's age and its bound."""
        return [
            ("instance", self.instance),
            ("age", f"{self.age_s:.0f}s"),
            ("max_age", f"{self.max_age_s:g}s"),
        ]


@dataclass(frozen=True)
class Started(Notice):
    """The daemon started its scheduler."""

    event: ClassVar[NotifyEvent] = NotifyEvent.STARTED
    instance: str
    mode: str
    variants: str
    address: str | None = None

    def fields(self) -> list[tuple[str, str]]:
        """The instance, paper or live, its variants, where its HTTP server listens."""
        out = [("instance", self.instance), ("mode", self.mode), ("variants", self.variants)]
        return [*out, ("http", self.address)] if self.address else out


@dataclass(frozen=True)
class Stopped(Notice):
    """The daemon stopped, why, and its exit status."""

    event: ClassVar[NotifyEvent] = NotifyEvent.STOPPED
    instance: str
    reason: str
    exit_code: int

    def level(self) -> Level:
        """Info for a clean stop, failure otherwise."""
        return "info" if self.exit_code == 0 else "failure"

    def fields(self) -> list[tuple[str, str]]:
        """The instance, the reason, the exit status."""
        return [("instance", self.instance), ("reason", self.reason), ("exit", str(self.exit_code))]


@dataclass(frozen=True)
class DailySummary(Notice):
    """One variant's market day: trades closed and their P&L, and the book now."""

    event: ClassVar[NotifyEvent] = NotifyEvent.DAILY_SUMMARY
    variant_name: str
    day: str
    closes: int
    pnl: float
    balance: float
    equity: float
    open_positions: int

    @property
    def variant(self) -> str | None:
        """The variant summarised."""
        return self.variant_name

    def fields(self) -> list[tuple[str, str]]:
        """Day, closes, P&L, balance, equity, open positions."""
        return [
            ("variant", self.variant_name),
            ("day", self.day),
            ("closes", str(self.closes)),
            ("pnl", _money(self.pnl)),
            ("balance", f"{self.balance:.2f}"),
            ("equity", f"{self.equity:.2f}"),
            ("open", str(self.open_positions)),
        ]
