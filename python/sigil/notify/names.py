"""The names of the events ``notify.events`` chooses among, apart from their shapes
(:mod:`sigil.notify.events`): the config checks its list against these without building the shapes."""

from __future__ import annotations

from enum import StrEnum


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
