"""Timeframes as the candle files and the config name them (``5m``, ``1h``, ``1d``), apart from the
file readers: the exchange client and the daemon need these without importing numpy."""

from __future__ import annotations

import re

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

#: The longest timeframe a file or the config may name (a year of weeks).
MAX_TIMEFRAME_MS = 52 * _UNIT_MS["w"]


def timeframe_ms(tf: str) -> int:
    """``"1h"`` → 3,600,000. ValueError for anything else than a number and one of s, m, h, d, w
    (at most 52 weeks)."""
    m = re.fullmatch(r"([0-9]+)([smhdw])", tf)
    if not m or int(m.group(1)) == 0 or int(m.group(1)) * _UNIT_MS[m.group(2)] > MAX_TIMEFRAME_MS:
        raise ValueError(f"not a timeframe: {tf!r} (expected e.g. 5m, 1h, 1d; at most 52w)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]
