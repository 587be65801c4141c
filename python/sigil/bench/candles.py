"""The candles the ATR benchmarks run on: real files, or seeded synthetic candles when none are given.

Three shapes, each built once per session and cached:

- :meth:`BenchCandles.long_series`: one series of 1M bars, its source series joined end to end
  (each scaled to continue the previous one's last close) and repeated the same way until long
  enough: a price path without jumps at the seams;
- :meth:`BenchCandles.many_series`: ``rows`` windows of ``cols`` bars, C-ordered 2-D arrays;
- :meth:`BenchCandles.stream_lists`: ``n`` candles as Python float lists, what a live feed hands over
  one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sigil.data.candles import CandleSeries, load_universe, read_candles

F64 = npt.NDArray[np.float64]
HLC = tuple[F64, F64, F64]
Lists = tuple[list[float], list[float], list[float]]

#: Bars of each synthetic series, and how many of them (enough for 500 windows of 1,000 bars).
SYNTHETIC_BARS = 20_000
SYNTHETIC_SERIES = 8


def _hlc(s: CandleSeries) -> HLC:
    return s.high, s.low, s.close


def _join(parts: Sequence[HLC]) -> HLC:
    h, low, c = parts[0]
    for ph, pl, pc in parts[1:]:
        k = c[-1] / pc[0]
        h, low, c = np.concatenate([h, ph * k]), np.concatenate([low, pl * k]), np.concatenate([c, pc * k])
    return h, low, c


def continued(h: F64, low: F64, c: F64, n: int) -> HLC:
    """The series repeated end to end until it has ``n`` bars, each repeat scaled to start where the
    previous one closed."""
    reps = -(-n // len(c))
    step = c[-1] / c[0]
    scale = np.repeat(step ** np.arange(reps), len(c))[:n]
    out = [np.ascontiguousarray(np.tile(x, reps)[:n] * scale) for x in (h, low, c)]
    return out[0], out[1], out[2]


def synthetic(bars: int, seed: int) -> HLC:
    """A seeded random walk of ``bars`` hourly-looking candles (about 1 % moves, ranges inside)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
    prev = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(prev, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, bars)))
    low = np.minimum(prev, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, bars)))
    return high, low, close


class BenchCandles:
    """Where the benchmarks' series come from; ``label`` says so in the report."""

    def __init__(
        self,
        label: str,
        long_parts: Callable[[], Sequence[HLC]],
        many_parts: Callable[[], Sequence[HLC]],
        stream: Callable[[], HLC],
    ) -> None:
        """Sources as loaders, called at most once each, when a benchmark first needs them."""
        self.label = label
        self._loaders: dict[str, Callable[[], Sequence[HLC]]] = {
            "long": long_parts,
            "many": many_parts,
            "stream": lambda: [stream()],
        }
        self._loaded: dict[str, Sequence[HLC]] = {}
        self._long: dict[int, HLC] = {}
        self._many: dict[tuple[int, int], HLC] = {}
        self._stream: dict[int, Lists] = {}

    @classmethod
    def from_files(cls, label: str, long: Sequence[Path], many: Sequence[Path], stream: Path) -> BenchCandles:
        """Candle files for each shape (read with :func:`sigil.data.candles.read_candles`)."""
        return cls(
            label,
            lambda: [_hlc(read_candles(p)) for p in long],
            lambda: [_hlc(read_candles(p)) for p in many],
            lambda: _hlc(read_candles(stream)),
        )

    @classmethod
    def from_data(cls, paths: Sequence[Path]) -> BenchCandles:
        """Every candle file under ``paths`` (files or folders) for every shape; the longest series
        streams. :class:`~sigil.errors.DataError` or :class:`ValueError` if there is none."""
        universe = load_universe(paths)
        if not universe:
            raise ValueError(f"no candle files in {', '.join(map(str, paths))}")
        series = [_hlc(s) for s in universe]
        longest = max(series, key=lambda s: len(s[2]))
        return cls(", ".join(map(str, paths)), lambda: series, lambda: series, lambda: longest)

    @classmethod
    def synthetic(cls) -> BenchCandles:
        """Seeded random walks: no files needed, the same candles on every machine."""
        series = [synthetic(SYNTHETIC_BARS, seed) for seed in range(SYNTHETIC_SERIES)]
        return cls("synthetic candles (seeded)", lambda: series, lambda: series, lambda: series[0])

    def _parts(self, shape: str) -> Sequence[HLC]:
        if shape not in self._loaded:
            self._loaded[shape] = self._loaders[shape]()
        return self._loaded[shape]

    def long_series(self, n: int = 1_000_000) -> HLC:
        """``n`` bars: the long sources joined and continued (see the module docstring)."""
        if n not in self._long:
            self._long[n] = continued(*_join(self._parts("long")), n)
        return self._long[n]

    def many_series(self, rows: int = 500, cols: int = 1_000) -> HLC:
        """``rows`` windows of ``cols`` bars, taken in turn from each source long enough, at offsets
        that move by 997 bars on each round over the sources."""
        if (rows, cols) not in self._many:
            series = [s for s in self._parts("many") if len(s[2]) >= cols]
            if not series:
                raise ValueError(f"{self.label}: no series of {cols} bars for the many-series benchmark")
            out: list[list[F64]] = [[], [], []]
            offset = 0
            while len(out[0]) < rows:
                for s in series:
                    if len(out[0]) == rows:
                        break
                    start = (offset * 997) % (len(s[2]) - cols + 1)
                    for k in range(3):
                        out[k].append(s[k][start : start + cols])
                offset += 1
            h, low, c = (np.ascontiguousarray(np.stack(x)) for x in out)
            self._many[(rows, cols)] = (h, low, c)
        return self._many[(rows, cols)]

    def stream_lists(self, n: int = 5_000) -> Lists:
        """The first ``n`` candles of the streaming source as Python float lists."""
        if n not in self._stream:
            h, low, c = self._parts("stream")[0]
            self._stream[n] = (h[:n].tolist(), low[:n].tolist(), c[:n].tolist())
        return self._stream[n]
