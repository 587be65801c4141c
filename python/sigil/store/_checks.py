"""Argument checks shared by the stores (before any SQL runs); the time conversions are
:mod:`sigil.times`' (re-exported for the stores)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sigil.times import from_ms, to_ms, to_ms_ceil

__all__ = ["from_ms", "to_ms", "to_ms_ceil"]


def utc(name: str, value: datetime, error: type[ValueError] = ValueError) -> datetime:
    """``value`` in UTC; a naive datetime (ambiguous: local or UTC?) raises ``error`` naming ``name``."""
    if not isinstance(value, datetime):
        raise error(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise error(f"{name} must be timezone-aware (UTC), got the naive datetime {value.isoformat()}")
    return value.astimezone(UTC)


def positive(name: str, value: float, error: type[ValueError] = ValueError) -> float:
    """``value`` as a float when finite and > 0."""
    v = _number(name, value, error)
    if not v > 0:
        raise error(f"{name} must be a finite number > 0, got {value!r}")
    return v


def non_negative(name: str, value: float, error: type[ValueError] = ValueError) -> float:
    """``value`` as a float when finite and >= 0."""
    v = _number(name, value, error)
    if not v >= 0:
        raise error(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _number(name: str, value: float, error: type[ValueError]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise error(f"{name} must be a finite number, got {value!r}")
    return v


def name(what: str, value: str, error: type[ValueError] = ValueError, max_len: int = 64) -> str:
    """A variant or symbol name: a non-empty string without surrounding or inner whitespace."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise error(f"{what} is empty")
    if len(value) > max_len or any(c.isspace() for c in value):
        raise error(f"{what} {value!r} is not a valid name (at most {max_len} characters, no spaces)")
    return value
