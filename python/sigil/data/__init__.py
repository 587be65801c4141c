"""Candle data: reading and validating candle files (:mod:`sigil.data.candles`, which needs numpy,
imported on first use) and timeframes (:mod:`sigil.data.timeframes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sigil.data.timeframes import timeframe_ms

if TYPE_CHECKING:
    from sigil.data.candles import CandleSeries, expand_paths, load_universe, read_candles

_FROM_CANDLES = ("CandleSeries", "expand_paths", "load_universe", "read_candles")


def __getattr__(name: str) -> Any:
    # The daemon needs timeframes, not the file readers (or numpy, about 16 MB of its resident set).
    if name in _FROM_CANDLES:
        from sigil.data import candles

        return getattr(candles, name)
    raise AttributeError(f"module 'sigil.data' has no attribute {name!r}")


__all__ = ["CandleSeries", "expand_paths", "load_universe", "read_candles", "timeframe_ms"]
