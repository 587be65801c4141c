"""One symbol's candles packed as machine numbers, not tuples of objects: what a fetch pass hands
over and what the daemon's feed keeps.

The daemon keeps ``exchange.history_candles`` (1,000 by default) candles of every symbol it scans,
for as long as it runs, and its first pass fetches that many of every symbol at once. As
:class:`~sigil.exchange.candle_rows.Candle` tuples that is about 250 bytes a candle (the tuple, an int
and five floats), some 25 MB over a 109-symbol universe; packed it is 48.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from sigil.exchange.candle_rows import Candle

#: Popped slots are given back once there are this many and they are half the storage or more.
_COMPACT_AFTER = 256


class CandleHistory(Sequence[Candle]):
    """Candles in the order appended (oldest first): ``append``, ``popleft``, ``len``, indexing
    (``[0]``, ``[-1]``) and iteration either way, each giving :class:`Candle` values equal to the
    ones appended."""

    __slots__ = ("_head", "_time", "_values")

    def __init__(self, candles: Iterable[Candle] = ()) -> None:
        self._time = array("q")
        #: open, high, low, close, volume of each candle, one after another.
        self._values = array("d")
        self._head = 0
        self.extend(candles)

    def __len__(self) -> int:
        return len(self._time) - self._head

    def append(self, candle: Candle) -> None:
        """Adds ``candle`` at the end."""
        self._time.append(candle.time)
        self._values.extend((candle.open, candle.high, candle.low, candle.close, candle.volume))

    def extend(self, candles: Iterable[Candle]) -> None:
        """Adds ``candles`` at the end, in order."""
        for c in candles:
            self.append(c)

    def popleft(self) -> Candle:
        """Removes and returns the oldest candle (IndexError when empty)."""
        first = self[0]
        self._head += 1
        if self._head >= _COMPACT_AFTER and 2 * self._head >= len(self._time):
            del self._time[: self._head]
            del self._values[: 5 * self._head]
            self._head = 0
        return first

    @overload
    def __getitem__(self, index: int) -> Candle: ...
    @overload
    def __getitem__(self, index: slice) -> list[Candle]: ...
    def __getitem__(self, index: int | slice) -> Candle | list[Candle]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("candle history index out of range")
        j = self._head + i
        v, k = self._values, 5 * j
        return Candle(self._time[j], v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4])

    def __iter__(self) -> Iterator[Candle]:
        return (self[i] for i in range(len(self)))

    def __reversed__(self) -> Iterator[Candle]:
        return (self[i] for i in range(len(self) - 1, -1, -1))
