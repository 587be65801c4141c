"""Walk-forward folds: where each fold's search trains and where its chosen posture is tested.

The data's time range (first candle open to last candle close) is cut into consecutive test windows
of one length T, preceded by the training data:

- ``folds=None`` (no ``--folds``): one fold, trained on the first 70 % and tested on the last 30 %;
- ``folds=N``, rolling: fold k trains on the ``TRAIN_TO_TEST`` × T (7/3 T, the same 70/30 proportion)
  just before its test window, so T = span / (N + 7/3); for N = 1 that is the 70/30 holdout again;
- ``folds=N``, anchored: the same test windows, each fold training on everything before its own.

Boundaries fall on whole UTC days (daily returns, Sharpe and the overfitting statistics work on
calendar days). A window holds the candles that open at or after its start and close at or before
its end; each replay of a window starts flat, with fresh indicators (no candle from another window
warms it up), so replaying the window's candles alone reproduces it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sigil.data.candles import CandleSeries
from sigil.report.performance import DAY_MS
from sigil.times import iso_z

#: Training span per unit of test span: the 70/30 holdout's proportion, for rolling folds too.
TRAIN_TO_TEST = 7 / 3
#: The share of the data held out when no folds are asked for.
HOLDOUT = 0.3
#: Shortest window (train or test) worth scoring: two weeks of daily returns.
MIN_WINDOW_DAYS = 14


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` in epoch ms (candle open ≥ start, close ≤ end)."""

    start: int
    end: int

    @property
    def days(self) -> float:
        """Length in days."""
        return (self.end - self.start) / DAY_MS

    def describe(self) -> str:
        """``2024-01-01 → 2024-03-15`` (the end day is the first day not included)."""
        return f"{iso_z(self.start)[:10]} → {iso_z(self.end)[:10]}"

    def to_json(self) -> dict[str, int]:
        """As stored in a study."""
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class Fold:
    """Fold ``index`` (1-based) of ``count``: searched on ``train``, its best posture tested on ``test``."""

    index: int
    count: int
    train: Window
    test: Window


def data_span(series: Sequence[CandleSeries]) -> Window:
    """From the first candle's open to the last candle's close, over every series."""
    filled = [s for s in series if len(s)]
    if not filled:
        raise ValueError("the data holds no candle")
    return Window(min(int(s.time[0]) for s in filled), max(int(s.time[-1]) + s.timeframe_ms for s in filled))


def split(span: Window, folds: int | None = None, anchored: bool = False) -> list[Fold]:
    """The folds over ``span`` (see the module docstring). ValueError when a window would be shorter
    than :data:`MIN_WINDOW_DAYS`, naming the window and the data's range."""
    if folds is not None and folds < 1:
        raise ValueError(f"--folds must be at least 1, got {folds}")
    length = span.end - span.start
    n = 1 if folds is None else folds
    test_len = length * HOLDOUT if folds is None else length / (n + TRAIN_TO_TEST)
    train_len = length - n * test_len
    cuts = [_day(span.start + train_len + k * test_len) for k in range(n)] + [span.end]
    out: list[Fold] = []
    for k in range(n):
        test = Window(cuts[k], cuts[k + 1])
        if anchored or folds is None:
            train_start = span.start
        else:
            train_start = max(span.start, _day(test.start - test_len * TRAIN_TO_TEST))
        out.append(Fold(k + 1, n, Window(train_start, test.start), test))
    shortest = min((w for f in out for w in (f.train, f.test)), key=lambda w: w.end - w.start)
    if shortest.days < MIN_WINDOW_DAYS:
        what = "the holdout" if folds is None else f"{n} fold{'s' if n > 1 else ''}"
        raise ValueError(
            f"the data ({span.describe()}, {span.days:.0f} days) is too short for {what}: a window of "
            f"{shortest.days:.1f} days ({shortest.describe()}), at least {MIN_WINDOW_DAYS} are needed"
        )
    return out


def slice_series(series: Sequence[CandleSeries], window: Window) -> list[CandleSeries]:
    """Each series cut to the candles inside ``window``; series left without a candle are dropped."""
    out: list[CandleSeries] = []
    for s in series:
        close = s.time + s.timeframe_ms
        lo = int((s.time < window.start).sum())
        hi = int((close <= window.end).sum())
        if hi > lo:
            out.append(
                replace(
                    s,
                    time=s.time[lo:hi],
                    open=s.open[lo:hi],
                    high=s.high[lo:hi],
                    low=s.low[lo:hi],
                    close=s.close[lo:hi],
                    volume=s.volume[lo:hi],
                )
            )
    return out


def _day(ms: float) -> int:
    """The UTC midnight nearest to ``ms``."""
    return round(ms / DAY_MS) * DAY_MS
