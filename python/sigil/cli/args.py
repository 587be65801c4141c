"""Argument types shared by the commands: each turns one command-line word into a value or says why not."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sigil.times import to_ms


def time_ms(raw: str) -> int:
    """ISO 8601 (UTC unless it says otherwise) or epoch milliseconds → epoch milliseconds."""
    if raw.isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {raw!r} (e.g. 2025-06-19 or 2025-06-19T00:00:00Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return to_ms(dt)


def positive_int(raw: str) -> int:
    """A whole number >= 1."""
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {raw!r}")
    return int(raw)


def seconds(raw: str) -> float:
    """A finite number of seconds > 0."""
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {raw}")
    return v


def port(raw: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    if not raw.isdigit() or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {raw!r}")
    return int(raw)
