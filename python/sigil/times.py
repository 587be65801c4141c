"""Time conversions, one place for all of Sigil: epoch milliseconds (the engine's and the
exchange's unit) to and from UTC datetimes, and ISO 8601 text. Integer arithmetic only: a
``timestamp() * 1000`` float can land one millisecond off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: The Unix epoch, UTC.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, rounded down (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MS


def to_ms_ceil(value: datetime) -> int:
    """Milliseconds since the epoch, rounded up (a protection end must not end early when rounded)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return -((EPOCH - value) // _MS)


def from_ms(ms: int) -> datetime:
    """The UTC datetime of an epoch millisecond (exact)."""
    return EPOCH + ms * _MS


def iso_z(ms: int) -> str:
    """``2024-01-01T00:00:00Z``: an epoch millisecond as ISO 8601 UTC to the second (reports, logs)."""
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(ms: int) -> str:
    """An epoch millisecond as ``datetime.isoformat()`` in UTC (``…+00:00``, /health and status)."""
    return from_ms(ms).isoformat()
