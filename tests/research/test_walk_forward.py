"""Walk-forward folds: the 70/30 holdout, rolling and anchored folds on whole days, data too short
for the folds refused, and windows cut to the candles inside them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sigil.data.candles import load_universe
from sigil.report.performance import DAY_MS
from sigil.research.walk_forward import MIN_WINDOW_DAYS, TRAIN_TO_TEST, Window, data_span, slice_series, split
from tests.support.data import BUNDLED

START = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SPAN = Window(START, START + 300 * DAY_MS)


def test_without_folds_the_last_30_percent_is_held_out() -> None:
    (fold,) = split(SPAN)
    assert fold.train == Window(START, START + 210 * DAY_MS)
    assert fold.test == Window(START + 210 * DAY_MS, SPAN.end)
    assert (fold.index, fold.count) == (1, 1)


def test_rolling_folds_tile_the_end_and_train_just_before_each_test() -> None:
    folds = split(SPAN, 4)
    assert [f.index for f in folds] == [1, 2, 3, 4]
    tests = [f.test for f in folds]
    assert tests[-1].end == SPAN.end
    assert all(a.end == b.start for a, b in itertools.pairwise(tests))
    for f in folds:
        assert f.train.end == f.test.start
        assert f.train.start % DAY_MS == 0 and f.test.start % DAY_MS == 0
        assert abs(f.train.days - TRAIN_TO_TEST * f.test.days) <= 1.5
    assert folds[1].train.start > folds[0].train.start  # the training window rolls


def test_anchored_folds_train_on_everything_before() -> None:
    rolling, anchored = split(SPAN, 3), split(SPAN, 3, anchored=True)
    assert [f.test for f in anchored] == [f.test for f in rolling]
    assert all(f.train.start == START for f in anchored)
    assert anchored[2].train.days > anchored[0].train.days


def test_data_too_short_for_the_folds_is_refused() -> None:
    with pytest.raises(
        ValueError, match=f"too short for 40 folds: a window of .* at least {MIN_WINDOW_DAYS}"
    ):
        split(SPAN, 40)
    with pytest.raises(ValueError, match="too short for the holdout"):
        split(Window(START, START + 20 * DAY_MS))


def test_a_window_holds_the_candles_that_open_and_close_inside_it() -> None:
    series = load_universe([BUNDLED])
    span = data_span(series)
    (fold,) = split(span)
    train, test = slice_series(series, fold.train), slice_series(series, fold.test)
    for part, w in ((train, fold.train), (test, fold.test)):
        for s in part:
            assert s.time[0] >= w.start and s.time[-1] + s.timeframe_ms <= w.end
    # Every candle is in one window or the other (the cut falls on a candle boundary).
    whole = {s.symbol: len(s) for s in series}
    parts: dict[str, int] = {}
    for s in [*train, *test]:
        parts[s.symbol] = parts.get(s.symbol, 0) + len(s)
    assert parts == whole
    assert all(np.all(np.diff(s.time) > 0) for s in test)
