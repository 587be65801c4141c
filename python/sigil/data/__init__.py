"""Candle data: reading and validating candle files."""

from sigil.data.candles import CandleSeries, expand_paths, load_universe, read_candles, timeframe_ms

__all__ = ["CandleSeries", "expand_paths", "load_universe", "read_candles", "timeframe_ms"]
