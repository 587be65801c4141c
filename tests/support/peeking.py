"""A replay with a look-ahead bug, to show the checks catch one: each candle carries the next one's
prices and volume (the series' times are kept), so a decision at a candle's close uses the candle
after it. The last candle of a series has nothing after it and keeps its own values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sigil.config import Config
from sigil.data.candles import CandleSeries
from sigil.research.replay import ReplayResult, replay_series


def next_candle(a: np.ndarray) -> np.ndarray:
    """``a`` shifted one candle towards the past: element i holds element i + 1."""
    return np.ascontiguousarray(np.concatenate([a[1:], a[-1:]]))


def peeking(series: Sequence[CandleSeries]) -> list[CandleSeries]:
    """Every series with each candle's values replaced by the next candle's."""
    return [
        CandleSeries(s.symbol, s.timeframe_ms, s.time, next_candle(s.open), next_candle(s.high),
                     next_candle(s.low), next_candle(s.close), next_candle(s.volume), s.source)
        for s in series
    ]  # fmt: skip


def peeking_replay(series: Sequence[CandleSeries], config: Config) -> ReplayResult:
    """:func:`sigil.research.replay.replay_series` given one candle of the future at every close."""
    return replay_series(peeking(series), config)
