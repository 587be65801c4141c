"""The feed's packed candle history behaves as the deque of candles it replaced."""

from __future__ import annotations

import random
from collections import deque

import pytest

from sigil.exchange.candle_history import CandleHistory
from sigil.exchange.candle_rows import Candle


def candle(rng: random.Random, t: int) -> Candle:
    c = rng.uniform(1e-9, 1e6)
    return Candle(t, c * rng.uniform(0.9, 1.1), c * 1.2, c * 0.8, c, rng.choice([0.0, rng.random() * 1e9]))


def test_appends_pops_and_reads_as_a_deque_does() -> None:
    rng = random.Random(5)
    ours, theirs = CandleHistory(), deque[Candle]()
    t = 1_700_000_000_000
    for step in range(20_000):
        if theirs and rng.random() < 0.45:
            assert ours.popleft() == theirs.popleft()
        else:
            t += 3_600_000
            c = candle(rng, t)
            ours.append(c)
            theirs.append(c)
        assert len(ours) == len(theirs) and bool(ours) == bool(theirs)
        if theirs:
            assert ours[0] == theirs[0] and ours[-1] == theirs[-1]
        if step % 997 == 0:
            assert list(ours) == list(theirs) and list(reversed(ours)) == list(reversed(theirs))
            assert ours[1:-1:3] == list(theirs)[1:-1:3]
            assert all(type(x) is Candle and type(x.time) is int for x in ours)


def test_empty_and_out_of_range() -> None:
    h = CandleHistory()
    with pytest.raises(IndexError):
        h.popleft()
    with pytest.raises(IndexError):
        h[-1]
    h.append(Candle(1, 1.0, 2.0, 0.5, 1.5, 3.0))
    assert h[-1] == h[0] == Candle(1, 1.0, 2.0, 0.5, 1.5, 3.0)
    with pytest.raises(IndexError):
        h[1]
    with pytest.raises(IndexError):
        h[-2]
