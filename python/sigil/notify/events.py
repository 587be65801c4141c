"""The events a person can be notified of: one typed shape each, and its text.

Every notice has a title that starts with its event's word, then the variant and symbol where there
is one (``open baseline TST/USDT``, ``close moderate NFP/USDT``, ``stale``, ``summary baseline``), and
a body of ``field: value`` lines, one per field of its shape in order (:func:`shown` names and formats
them), so a person reads it and a script can split it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

# Re-exported: the names belong with the shapes for every reader but the config.
from sigil.notify.names import DEFAULT_EVENTS as DEFAULT_EVENTS
from sigil.notify.names import EVENT_NAMES as EVENT_NAMES
from sigil.notify.names import NotifyEvent
from sigil.times import iso

#: The title's first word where it is not the event's name.
_WORD = {NotifyEvent.HEARTBEAT_STALE: "stale", NotifyEvent.DAILY_SUMMARY: "summary"}

#: Apprise's message types, from good news to bad.
Level = Literal["info", "success", "warning", "failure"]


def _price(x: float) -> str:
    return f"{x:.10g}"


def _money(x: float) -> str:
    return f"{x:+.4f}" if x else "0"


def _seconds(x: float) -> str:
    return f"{x:.0f}s"


def shown(
    label: str | None = None, fmt: Callable[[Any], str] = str, default: Any = dataclasses.MISSING
) -> Any:
    """A notice's field as its body shows it: under ``label`` (default: the field's name), as
    ``fmt(value)``; a field that is None is left out."""
    return dataclasses.field(default=default, metadata={"label": label, "fmt": fmt})


@dataclass(frozen=True)
class Notice:
    """One notification. Subclasses set :attr:`event` and declare their fields with :func:`shown`."""

    event: ClassVar[NotifyEvent]
    #: Apprise's message type of this kind of notice (:meth:`level` may choose per notice).
    kind_level: ClassVar[Level] = "info"

    def level(self) -> Level:
        """Apprise's message type: info, success, warning or failure."""
        return self.kind_level

    @property
    def variant(self) -> str | None:
        """The variant it is about, if any."""
        value = getattr(self, "variant_name", None)
        return value if isinstance(value, str) else None

    @property
    def symbol(self) -> str | None:
        """The symbol it is about, if any."""
        value = getattr(self, "symbol_name", None)
        return value if isinstance(value, str) else None

    def fields(self) -> list[tuple[str, str]]:
        """The body's ``(field, value)`` pairs, in the order the shape declares them."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out.append((f.metadata.get("label") or f.name, f.metadata.get("fmt", str)(value)))
        return out

    def title(self) -> str:
        """The event's word, then the variant and symbol where there is one."""
        words = [_WORD.get(self.event, self.event.value), self.variant, self.symbol]
        return " ".join(w for w in words if w)

    def body(self) -> str:
        """``field: value`` lines."""
        return "\n".join(f"{k}: {v}" for k, v in self.fields()) or self.title()


@dataclass(frozen=True)
class _Trade(Notice):
    """A notice about one variant's symbol."""

    variant_name: str = shown("variant")
    symbol_name: str = shown("symbol")


@dataclass(frozen=True)
class PositionOpened(_Trade):
    """A position opened (committed in the database)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.OPEN
    position_id: int = shown("position")
    price: float = shown(fmt=_price)
    qty: float = shown(fmt=_price)
    stake: float = shown(fmt="{:.2f}".format)
    stop_pct: float = shown(fmt="{:.2%}".format)
    stop_price: float = shown("stop", fmt=_price)
    at_ms: int = shown("at", fmt=iso)


@dataclass(frozen=True)
class PositionClosed(_Trade):
    """A position closed, with why and its P&L (quote currency, fees included)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.CLOSE
    position_id: int = shown("position")
    price: float = shown(fmt=_price)
    reason: str = shown()
    pnl: float = shown(fmt=_money)
    at_ms: int = shown("at", fmt=iso)

    def level(self) -> Level:
        """Success for a gain, warning for a loss."""
        return "success" if self.pnl >= 0 else "warning"


@dataclass(frozen=True)
class OrderFilled(_Trade):
    """A live order's fill, as the exchange reported it."""

    event: ClassVar[NotifyEvent] = NotifyEvent.FILL
    position_id: int = shown("position")
    price: float = shown(fmt=_price)
    qty: float = shown(fmt=_price)
    order_id: str | None = shown("order")


@dataclass(frozen=True)
class OrderFailed(_Trade):
    """A live order that did not go through (refused, rejected, the exchange unreachable)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.ORDER_FAILED
    kind_level: ClassVar[Level] = "failure"
    side: str = shown()
    error: str = shown()
    position_id: int | None = shown("position", default=None)


@dataclass(frozen=True)
class OutcomeUnknown(_Trade):
    """A live order whose answer was lost: whether it executed is not known; a person must look."""

    event: ClassVar[NotifyEvent] = NotifyEvent.OUTCOME_UNKNOWN
    kind_level: ClassVar[Level] = "failure"
    side: str = shown()
    client_order_id: str = shown("order")
    error: str = shown()


@dataclass(frozen=True)
class PassFailed(Notice):
    """A pass failed (the first of a run of failures; the next completed pass ends the run)."""

    event: ClassVar[NotifyEvent] = NotifyEvent.PASS_FAILED
    kind_level: ClassVar[Level] = "failure"
    job: str = shown("pass")
    error: str = shown()


@dataclass(frozen=True)
class Rearmed(Notice):
    """The watchdog re-armed a scheduler that had stopped running passes."""

    event: ClassVar[NotifyEvent] = NotifyEvent.REARMED
    kind_level: ClassVar[Level] = "warning"
    instance: str = shown()
    overdue: str = shown()


@dataclass(frozen=True)
class HeartbeatStale(Notice):
    """No pass has completed for longer than ``daemon.heartbeat_max_age_s``."""

    event: ClassVar[NotifyEvent] = NotifyEvent.HEARTBEAT_STALE
    kind_level: ClassVar[Level] = "failure"
    instance: str = shown()
    age_s: float = shown("age", fmt=_seconds)
    max_age_s: float = shown("max_age", fmt=_seconds)


@dataclass(frozen=True)
class Started(Notice):
    """The daemon started its scheduler."""

    event: ClassVar[NotifyEvent] = NotifyEvent.STARTED
    instance: str = shown()
    mode: str = shown()
    variants: str = shown()
    address: str | None = shown("http", default=None)


@dataclass(frozen=True)
class Stopped(Notice):
    """The daemon stopped, why, and its exit status."""

    event: ClassVar[NotifyEvent] = NotifyEvent.STOPPED
    instance: str = shown()
    reason: str = shown()
    exit_code: int = shown("exit")

    def level(self) -> Level:
        """Info for a clean stop, failure otherwise."""
        return "info" if self.exit_code == 0 else "failure"


@dataclass(frozen=True)
class DailySummary(Notice):
    """One variant's market day: trades closed and their P&L, and the book now."""

    event: ClassVar[NotifyEvent] = NotifyEvent.DAILY_SUMMARY
    variant_name: str = shown("variant")
    day: str = shown()
    closes: int = shown()
    pnl: float = shown(fmt=_money)
    balance: float = shown(fmt="{:.2f}".format)
    equity: float = shown(fmt="{:.2f}".format)
    open_positions: int = shown("open")
