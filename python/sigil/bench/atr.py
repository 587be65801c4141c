"""ATR speed from Python: Sigil next to TA-Lib, kand and talipp on the same candles.

pytest-benchmark tests (``test_*``), collected by ``tests/benchmarks/test_atr_bench.py`` in a checkout
and by ``python -m sigil.bench`` for an installed Sigil. Cases (each implementation is its own
benchmark, grouped by case; the session summary prints ``sigil / reference`` time ratios, below 1
meaning Sigil is faster):

- ``atr N bars``: one series of 10k, 100k and 1M bars (:meth:`BenchCandles.long_series`);
  ``sigil.atr`` vs ``talib.ATR`` vs ``kand.atr``.
- ``atr_many 500x1000``: 500 series of 1,000 bars; ``sigil.atr_many`` on the 2-D arrays vs a Python
  loop of ``talib.ATR`` (and of ``kand.atr``) over the rows.
- ``Atr.update``: one call per candle from a Python loop over float lists; the same loop shape for
  ``kand.atr_inc`` (which needs the previous close and ATR carried by the caller) and for talipp's
  ``ATR.add``. ``baseline`` is the loop with no call, for the net ratios.

Timings are reported, never asserted; each case checks once that the results agree. Needs the
references: ``pip install 'sigil-trader[bench]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kand
import numpy as np
import pytest
import talib
from talipp.indicators import ATR as TalippATR
from talipp.ohlcv import OHLCV

import sigil
from sigil.bench.candles import F64, BenchCandles

Timing = Callable[..., None]

PERIOD = 14
BATCH_IMPLS = ("sigil", "talib", "kand")
# kand's functions carry no annotations; typed here once.
KAND_ATR: Callable[[F64, F64, F64, int], F64] = kand.atr
KAND_ATR_INC: Callable[[float, float, float, float, int], float] = kand.atr_inc


def _batch(impl: str) -> Callable[[F64, F64, F64], Any]:
    return {
        "sigil": lambda h, low, c: sigil.atr(h, low, c, PERIOD),
        "talib": lambda h, low, c: talib.ATR(h, low, c, timeperiod=PERIOD),
        "kand": lambda h, low, c: KAND_ATR(h, low, c, PERIOD),
    }[impl]


# ------------------------------------------------------------------------------------------------
# One series
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", BATCH_IMPLS)
@pytest.mark.parametrize("n", [10_000, 100_000, 1_000_000], ids=["10k", "100k", "1M"])
def test_atr_one_series(
    benchmark: Any, timing: Timing, bench_candles: BenchCandles, n: int, impl: str
) -> None:
    """``atr N bars``: one series through each batch implementation."""
    h, low, c = (x[:n] for x in bench_candles.long_series())
    case = f"atr {n // 1000}k bars" if n < 1_000_000 else "atr 1M bars"
    benchmark.group = case
    f = _batch(impl)
    got = benchmark(f, h, low, c)
    timing(case, impl, units=n, unit="bar")
    np.testing.assert_allclose(got, talib.ATR(h, low, c, timeperiod=PERIOD), rtol=1e-9, atol=0.0)


# ------------------------------------------------------------------------------------------------
# Many series
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", BATCH_IMPLS)
def test_atr_many_500x1000(benchmark: Any, timing: Timing, bench_candles: BenchCandles, impl: str) -> None:
    """``atr_many 500x1000``: Sigil's 2-D call vs a Python loop of one-series calls."""
    h, low, c = bench_candles.many_series()
    rows, cols = h.shape
    case = f"atr_many {rows}x{cols}"
    benchmark.group = case
    if impl == "sigil":

        def run() -> Any:
            return sigil.atr_many(h, low, c, PERIOD)

    else:
        one = _batch(impl)

        def run() -> Any:
            return [one(h[r], low[r], c[r]) for r in range(rows)]

    got = np.asarray(benchmark(run))
    timing(case, impl, units=rows * cols, unit="bar")
    want = np.stack([talib.ATR(h[r], low[r], c[r], timeperiod=PERIOD) for r in range(rows)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0.0)


# ------------------------------------------------------------------------------------------------
# Streaming, one call per candle
# ------------------------------------------------------------------------------------------------


def _stream_sigil(h: list[float], low: list[float], c: list[float]) -> float:
    update = sigil.Atr(PERIOD).update
    v = float("nan")
    for x, y, z in zip(h, low, c, strict=True):
        v = update(x, y, z)
    return v


def _stream_kand(h: list[float], low: list[float], c: list[float]) -> float:
    # Seeded with the exact value at bar PERIOD (kand has no warm-up of its own): kand gets the
    # warm-up bars for free, every other bar is one call.
    inc = KAND_ATR_INC
    a = float(
        sigil.atr(np.array(h[: PERIOD + 1]), np.array(low[: PERIOD + 1]), np.array(c[: PERIOD + 1]))[-1]
    )
    pc = c[PERIOD]
    for x, y, z in zip(h[PERIOD + 1 :], low[PERIOD + 1 :], c[PERIOD + 1 :], strict=True):
        a = inc(x, y, pc, a, PERIOD)
        pc = z
    return float(a)


def _stream_talipp(h: list[float], low: list[float], c: list[float]) -> float:
    ind = TalippATR(PERIOD)
    add = ind.add
    for x, y, z in zip(h, low, c, strict=True):
        add(OHLCV(None, x, y, z))
    return float(ind[-1])


def _stream_baseline(h: list[float], low: list[float], c: list[float]) -> float:
    v = 0.0
    for x, _y, _z in zip(h, low, c, strict=True):
        v = x
    return v


STREAMS = {
    "sigil": _stream_sigil,
    "kand": _stream_kand,
    "talipp": _stream_talipp,
    "baseline": _stream_baseline,
}


@pytest.mark.parametrize("impl", list(STREAMS))
def test_atr_update_per_call(benchmark: Any, timing: Timing, bench_candles: BenchCandles, impl: str) -> None:
    """``Atr.update``: one call per candle from a Python loop."""
    h, low, c = bench_candles.stream_lists()
    case = f"Atr.update per call ({len(c):,} candles)"
    benchmark.group = case
    last = benchmark(STREAMS[impl], h, low, c)
    timing(case, impl, units=len(c), unit="call")
    if impl != "baseline":
        # talipp counts its first TR from high - low of the first candle, so it converges to
        # Wilder's value rather than matching it from the start: by the end of 5,000 candles
        # the difference is far below 1e-9.
        want = _stream_sigil(h, low, c)
        assert abs(last - want) <= 1e-9 * want, (impl, last, want)
