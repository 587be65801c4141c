"""Wilder's ATR: ``sigil.atr``, ``sigil.atr_many`` and the streaming ``sigil.Atr``.

TA-Lib is the reference on real candles (every bundled file, and every file of the shared data set
when the machine has it); a plain-Python textbook ATR is the reference on random series. Errors must
name the offending index (and row), never come back as NaN.
"""

from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

import sigil
from sigil.data import read_candles

F64 = npt.NDArray[np.float64]
Bars = tuple[list[float], list[float], list[float]]

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted((REPO / "data").glob("*.feather"))
SHARED = REPO.parent / "shared" / "data"
#: The shared folders whose every candle file is checked against TA-Lib.
SHARED_DIRS = ("candles", "universe-1h")
CANDLE_SUFFIXES = (".feather", ".json", ".csv")

#: Agreement with TA-Lib (the kernels land near 1e-15; this is the contract).
TALIB_RTOL = 1e-9


def _shared_files() -> list[Path]:
    files: list[Path] = []
    for name in SHARED_DIRS:
        folder = SHARED / name
        if folder.is_dir():
            files += sorted(f for f in folder.iterdir() if f.suffix in CANDLE_SUFFIXES)
    return files


SHARED_FILES = _shared_files()


@functools.cache
def hlc(path: Path) -> tuple[F64, F64, F64]:
    """High, low, close of a candle file, read once per session."""
    s = read_candles(path)
    return s.high, s.low, s.close


def assert_matches_talib(h: F64, low: F64, c: F64, period: int = 14) -> None:
    """``sigil.atr`` against ``talib.ATR``: the same NaN positions, the rest within TALIB_RTOL."""
    got = sigil.atr(h, low, c, period)
    want = talib.ATR(h, low, c, timeperiod=period)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=TALIB_RTOL, atol=0.0)


def textbook_atr(h: list[float], low: list[float], c: list[float], period: int) -> list[float]:
    """Wilder's ATR written out the slow way: TR, the mean of the first ``period`` TRs, then the
    ``(prev * (period - 1) + tr) / period`` update."""
    n = len(c)
    out = [math.nan] * n
    if n <= period:
        return out
    tr = [max(h[i], c[i - 1]) - min(low[i], c[i - 1]) for i in range(1, n)]
    a = sum(tr[:period]) / period
    out[period] = a
    for i in range(period + 1, n):
        a = (a * (period - 1) + tr[i - 1]) / period
        out[i] = a
    return out


def walk(n: int, seed: int = 7) -> tuple[F64, F64, F64]:
    """A random walk of ``n`` bars with highs above and lows below the close."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    h = c * (1.0 + rng.uniform(0.0, 0.02, n))
    low = c * (1.0 - rng.uniform(0.0, 0.02, n))
    return h, low, c


# ------------------------------------------------------------------------------------------------
# Against TA-Lib on real candles
# ------------------------------------------------------------------------------------------------


def test_bundled_data_is_there() -> None:
    assert len(BUNDLED) >= 5, f"expected the bundled candle files in {REPO / 'data'}"


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_matches_talib_on_bundled_candles(path: Path) -> None:
    assert_matches_talib(*hlc(path))


@pytest.mark.parametrize(
    "path",
    SHARED_FILES or [pytest.param(None, marks=pytest.mark.skip(reason=f"{SHARED} is not on this machine"))],
    ids=lambda p: f"{p.parent.name}/{p.name}" if isinstance(p, Path) else "absent",
)
def test_matches_talib_on_every_shared_candle_file(path: Path) -> None:
    assert_matches_talib(*hlc(path))


def test_shared_data_covers_both_folders() -> None:
    """Where the shared data exists, both folders were found (a rename would silently shrink the check)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not on this machine")
    for name in SHARED_DIRS:
        assert any(p.parent.name == name for p in SHARED_FILES), f"no candle files in {SHARED / name}"


@pytest.mark.parametrize("period", [1, 2, 5, 30])
def test_other_periods_match_talib(period: int) -> None:
    for path in BUNDLED:
        assert_matches_talib(*hlc(path), period=period)


def test_series_not_longer_than_the_period_is_all_nan() -> None:
    h, low, c = walk(20)
    for n in (0, 1, 13, 14):
        got = sigil.atr(h[:n], low[:n], c[:n], 14)
        assert got.shape == (n,) and np.isnan(got).all()
    got = sigil.atr(h[:15], low[:15], c[:15], 14)
    assert np.isnan(got[:14]).all() and np.isfinite(got[14])


# ------------------------------------------------------------------------------------------------
# Streaming and many-series forms agree with the batch form
# ------------------------------------------------------------------------------------------------


def _streaming_files() -> list[Path]:
    """The bundled files, plus the longest shared series when it is there (130k bars of 1m)."""
    longest = SHARED / "candles" / "BTC_USDT-1m.feather"
    return BUNDLED + ([longest] if longest.exists() else [])


@pytest.mark.parametrize("path", _streaming_files(), ids=lambda p: p.name)
def test_streaming_equals_batch_on_real_candles(path: Path) -> None:
    h, low, c = hlc(path)
    batch = sigil.atr(h, low, c, 14)
    a = sigil.Atr(14)
    update = a.update
    stream = np.array([update(x, y, z) for x, y, z in zip(h.tolist(), low.tolist(), c.tolist(), strict=True)])
    np.testing.assert_array_equal(np.isnan(stream), np.isnan(batch))
    np.testing.assert_allclose(stream, batch, rtol=1e-12, atol=0.0)
    assert a.ready and a.period == 14 and a.value == stream[-1]


@pytest.mark.parametrize("period", [1, 2, 5, 30])
def test_streaming_equals_batch_for_other_periods(period: int) -> None:
    h, low, c = hlc(BUNDLED[0])
    a = sigil.Atr(period)
    stream = np.array([a.update(x, y, z) for x, y, z in zip(h, low, c, strict=True)])
    batch = sigil.atr(h, low, c, period)
    np.testing.assert_allclose(stream, batch, rtol=1e-12, atol=0.0)


def test_streaming_ready_and_value() -> None:
    a = sigil.Atr(3)
    assert (a.period, a.ready) == (3, False) and math.isnan(a.value)
    values = [a.update(2.0, 1.0, 1.5) for _ in range(4)]
    assert all(math.isnan(v) for v in values[:3]) and values[3] == 1.0
    assert a.ready and a.value == 1.0
    assert repr(a) == "Atr(period=3, value=1)"
    assert sigil.Atr().period == 14


def _rows(paths: list[Path], cols: int) -> tuple[F64, F64, F64]:
    """One row per file that has ``cols`` bars: its last ``cols`` bars."""
    picked = [hlc(p) for p in paths if len(hlc(p)[2]) >= cols]
    return tuple(np.stack([s[k][-cols:] for s in picked]) for k in range(3))


def _many_inputs() -> list[object]:
    cases = [pytest.param(BUNDLED, 2_000, id="bundled")]
    universe = [p for p in SHARED_FILES if p.parent.name == "universe-1h"]
    if universe:
        # 100+ rows of 4,000 bars: enough bars that the rows are split across threads.
        cases.append(pytest.param(universe, 4_000, id="universe-1h"))
    return cases


@pytest.mark.parametrize(("paths", "cols"), _many_inputs())
def test_atr_many_equals_atr_per_row(paths: list[Path], cols: int) -> None:
    h, low, c = _rows(paths, cols)
    assert h.shape[0] >= 5
    many = sigil.atr_many(h, low, c, 14)
    assert many.shape == h.shape and many.dtype == np.float64
    for r in range(h.shape[0]):
        np.testing.assert_array_equal(many[r], sigil.atr(h[r], low[r], c[r], 14))
        np.testing.assert_allclose(many[r], talib.ATR(h[r], low[r], c[r], 14), rtol=TALIB_RTOL, atol=0.0)


def test_atr_many_other_periods_and_empty_shapes() -> None:
    h, low, c = _rows(BUNDLED, 500)
    for period in (1, 2, 5, 30):
        many = sigil.atr_many(h, low, c, period)
        for r in range(h.shape[0]):
            np.testing.assert_array_equal(many[r], sigil.atr(h[r], low[r], c[r], period))
    assert sigil.atr_many(h[:0], low[:0], c[:0]).shape == (0, 500)
    assert sigil.atr_many(h[:, :0], low[:, :0], c[:, :0]).shape == (h.shape[0], 0)
    assert np.isnan(sigil.atr_many(h[:, :10], low[:, :10], c[:, :10], 14)).all()


# ------------------------------------------------------------------------------------------------
# Memory layouts
# ------------------------------------------------------------------------------------------------


def test_non_contiguous_input() -> None:
    h, low, c = hlc(BUNDLED[0])
    for view in (slice(None, None, 2), slice(None, None, -1), slice(3, None, 3)):
        hv, lv, cv = h[view], low[view], c[view]
        assert not hv.flags.c_contiguous
        np.testing.assert_array_equal(
            sigil.atr(hv, lv, cv, 14), sigil.atr(*(np.ascontiguousarray(x) for x in (hv, lv, cv)), 14)
        )
        assert_matches_talib(*(np.ascontiguousarray(x) for x in (hv, lv, cv)))
    # One column of a row-major table.
    table = np.stack([h, low, c], axis=1)
    np.testing.assert_array_equal(sigil.atr(table[:, 0], table[:, 1], table[:, 2]), sigil.atr(h, low, c))


def test_atr_many_fortran_order_and_strided_rows() -> None:
    h, low, c = _rows(BUNDLED, 1_000)
    want = sigil.atr_many(h, low, c, 14)
    f = [np.asfortranarray(x) for x in (h, low, c)]
    np.testing.assert_array_equal(sigil.atr_many(*f, 14), want)
    np.testing.assert_array_equal(sigil.atr_many(h[::2], low[::2], c[::2], 14), want[::2])
    wide = [np.repeat(x, 2, axis=1) for x in (h, low, c)]
    np.testing.assert_array_equal(
        sigil.atr_many(*(w[:, ::2] for w in wide), 14), sigil.atr_many(h, low, c, 14)
    )


def test_input_is_not_modified() -> None:
    h, low, c = walk(300)
    copies = [x.copy() for x in (h, low, c)]
    sigil.atr(h, low, c)
    sigil.atr_many(h.reshape(3, 100), low.reshape(3, 100), c.reshape(3, 100))
    for x, y in zip((h, low, c), copies, strict=True):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------------------
# Long series: scanned in segments (shared with a second core when it is free), written with
# streaming stores; the same result whichever thread ran what
# ------------------------------------------------------------------------------------------------

#: Longer than the engine's thresholds for both (512k bars after the warm-up, 256k bars).
LONG = 1_200_003


@functools.cache
def long_walk() -> tuple[F64, F64, F64]:
    return walk(LONG, seed=11)


def test_long_series_match_talib_and_repeat_bit_for_bit() -> None:
    h, low, c = long_walk()
    first = sigil.atr(h, low, c, 14)
    np.testing.assert_allclose(first, talib.ATR(h, low, c, timeperiod=14), rtol=TALIB_RTOL, atol=0.0)
    for _ in range(3):
        np.testing.assert_array_equal(sigil.atr(h, low, c, 14), first)
    # A copy lands elsewhere in memory: the output does not depend on alignment either.
    offset = np.empty(LONG + 1)[1:]
    offset[:] = c
    np.testing.assert_array_equal(sigil.atr(h.copy(), low.copy(), offset, 14), first)


def test_long_rows_of_atr_many_equal_atr() -> None:
    h, low, c = (np.stack([x[:600_000], x[600_000:1_200_000]]) for x in long_walk())
    many = sigil.atr_many(h, low, c, 14)
    for r in range(2):
        np.testing.assert_array_equal(many[r], sigil.atr(h[r], low[r], c[r], 14))


@pytest.mark.parametrize("at", [600_000, LONG - 1])
def test_long_series_name_a_bad_bar_in_a_late_segment(at: int) -> None:
    h, low, c = (x.copy() for x in long_walk())
    low[at] = -1.0
    with pytest.raises(ValueError, match=rf"^low\[{at}\] is not positive$"):
        sigil.atr(h, low, c, 14)


def test_threads_calling_at_once_get_the_same_results() -> None:
    """Python threads (the GIL is released) share the engine's helper thread or run alone."""
    h, low, c = long_walk()
    rows = (np.reshape(x[: 400 * 1_000], (400, 1_000)) for x in (h, low, c))
    hm, lm, cm = (np.ascontiguousarray(x) for x in rows)
    one, many = sigil.atr(h, low, c, 14), sigil.atr_many(hm, lm, cm, 14)
    results: list[bool] = []

    def work(k: int) -> None:
        for _ in range(5):
            if k % 2:
                results.append(bool(np.array_equal(sigil.atr(h, low, c, 14), one, equal_nan=True)))
            else:
                results.append(bool(np.array_equal(sigil.atr_many(hm, lm, cm, 14), many, equal_nan=True)))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


# ------------------------------------------------------------------------------------------------
# Errors name the index (and the row)
# ------------------------------------------------------------------------------------------------

BAD_PRICES = [
    ("high", math.nan, r"high\[17\] is not finite"),
    ("high", math.inf, r"high\[17\] is not finite"),
    ("low", -math.inf, r"low\[17\] is not finite"),
    ("close", math.nan, r"close\[17\] is not finite"),
    ("low", 0.0, r"low\[17\] is not positive"),
    ("close", -1.0, r"close\[17\] is not positive"),
    ("high", -1.0, r"high\[17\] is not positive"),
]


def _same(x: float, y: float) -> bool:
    """Equal, NaN included."""
    return x == y or (math.isnan(x) and math.isnan(y))


def _spoil(field: str, value: float, at: int, n: int = 40) -> tuple[F64, F64, F64]:
    h, low, c = walk(n)
    {"high": h, "low": low, "close": c}[field][at] = value
    return h, low, c


@pytest.mark.parametrize(("field", "value", "message"), BAD_PRICES)
def test_atr_bad_price_names_the_index(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sigil.atr(*_spoil(field, value, 17), 14)


def test_atr_high_below_low_names_the_index() -> None:
    h, low, c = walk(40)
    h[17] = low[17] * 0.99
    with pytest.raises(ValueError, match=r"^high < low at index 17$"):
        sigil.atr(h, low, c, 14)


@pytest.mark.parametrize("at", [0, 1, 13, 14, 15, 16, 17, 18, 19, 38, 39])
def test_atr_reports_the_first_bad_bar_wherever_it_is(at: int) -> None:
    """Warm-up bars, the bar of the first value, bars inside and at the end of the scan."""
    h, low, c = walk(40)
    c[at] = math.nan
    c[min(at + 1, 39)] = -1.0 if at < 39 else math.nan
    with pytest.raises(ValueError, match=rf"^close\[{at}\] is not finite$"):
        sigil.atr(h, low, c, 14)


def test_atr_unequal_lengths_and_period_zero() -> None:
    h, low, c = walk(40)
    with pytest.raises(ValueError, match=r"^low has length 39, expected 40$"):
        sigil.atr(h, low[:-1], c)
    with pytest.raises(ValueError, match=r"^close has length 41, expected 40$"):
        sigil.atr(h, low, np.append(c, 1.0))
    with pytest.raises(ValueError, match="period"):
        sigil.atr(h, low, c, 0)
    with pytest.raises((OverflowError, ValueError)):
        sigil.atr(h, low, c, -1)


@pytest.mark.parametrize(("field", "value", "message"), BAD_PRICES)
def test_atr_many_names_the_row_and_index(field: str, value: float, message: str) -> None:
    rows = [walk(40, seed=s) for s in range(6)]
    h, low, c = (np.stack([r[k] for r in rows]) for k in range(3))
    {"high": h, "low": low, "close": c}[field][4, 17] = value
    # A later bad row does not hide the first one.
    low[5, 3] = -1.0
    what = message.split("\\[")[0]
    reason = "not finite" if "finite" in message else "not positive"
    with pytest.raises(ValueError, match=rf"^invalid {what}: row 4, index 17: {reason}$"):
        sigil.atr_many(h, low, c, 14)


def test_atr_many_high_below_low_shapes_and_period() -> None:
    rows = [walk(40, seed=s) for s in range(3)]
    h, low, c = (np.stack([r[k] for r in rows]) for k in range(3))
    h2 = h.copy()
    h2[2, 30] = low[2, 30] * 0.5
    with pytest.raises(ValueError, match=r"^invalid high: row 2, index 30: high < low$"):
        sigil.atr_many(h2, low, c)
    with pytest.raises(ValueError, match=r"^low has shape \[2, 40\], expected \[3, 40\]$"):
        sigil.atr_many(h, low[:2], c)
    with pytest.raises(ValueError, match=r"^close has shape \[3, 39\], expected \[3, 40\]$"):
        sigil.atr_many(h, low, c[:, :39])
    with pytest.raises(ValueError, match="period"):
        sigil.atr_many(h, low, c, 0)


@pytest.mark.parametrize(("field", "value", "message"), BAD_PRICES)
def test_streaming_bad_price_names_the_index_and_keeps_state(field: str, value: float, message: str) -> None:
    h, low, c = walk(40)
    a, clean = sigil.Atr(14), sigil.Atr(14)
    for i in range(17):
        assert _same(a.update(h[i], low[i], c[i]), clean.update(h[i], low[i], c[i]))
    bad = {"high": h[17], "low": low[17], "close": c[17], field: value}
    with pytest.raises(ValueError, match=message):
        a.update(bad["high"], bad["low"], bad["close"])
    # The refused candle left no trace: the next good one continues as if it never came.
    for i in range(17, 40):
        assert a.update(h[i], low[i], c[i]) == clean.update(h[i], low[i], c[i])


def test_streaming_high_below_low_and_period_zero() -> None:
    a = sigil.Atr(14)
    a.update(2.0, 1.0, 1.5)
    with pytest.raises(ValueError, match=r"^high < low at index 1$"):
        a.update(1.0, 2.0, 1.5)
    with pytest.raises(ValueError, match="period"):
        sigil.Atr(0)


def test_streaming_arguments_bind_like_python() -> None:
    a, b = sigil.Atr(3), sigil.Atr(3)
    for _ in range(5):
        assert _same(a.update(2.0, 1.0, 1.5), b.update(close=1.5, low=1.0, high=2.0))
    assert a.update(3, 1, 2) == b.update(3.0, low=1.0, close=2.0)  # ints convert, as for any float
    with pytest.raises(TypeError, match="3 arguments"):
        a.update(2.0, 1.0)
    with pytest.raises(TypeError, match="3 arguments"):
        a.update(2.0, 1.0, 1.5, 1.0)
    with pytest.raises(TypeError, match="multiple values for argument 'low'"):
        a.update(2.0, 1.0, low=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lo'"):
        a.update(2.0, lo=1.0, close=1.5)
    with pytest.raises(TypeError, match="missing required argument 'close'"):
        a.update(high=2.0, low=1.0)
    with pytest.raises(TypeError, match="argument 'low'"):
        a.update(2.0, "1.0", 1.5)
    with pytest.raises(TypeError):
        sigil.Atr.update(object(), 2.0, 1.0, 1.5)
    # None of the refused calls moved the state.
    assert a.update(2.0, 1.0, 1.5) == b.update(2.0, 1.0, 1.5)


# ------------------------------------------------------------------------------------------------
# Property: the textbook definition on random valid series
# ------------------------------------------------------------------------------------------------


@st.composite
def candles(draw: st.DrawFn) -> Bars:
    """Valid bars: 0 < low <= close <= high, prices from 1e-6 to 1e6, zero-range bars included."""
    n = draw(st.integers(min_value=0, max_value=150))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e6]))
    base = st.floats(min_value=0.5, max_value=2.0, allow_nan=False, allow_infinity=False)
    frac = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
    h, low, c = [], [], []
    for _ in range(n):
        lo = draw(base) * scale
        hi = lo * (1.0 + draw(st.sampled_from([0.0, 0.001, 0.05, 0.5])) * draw(frac))
        low.append(lo)
        h.append(hi)
        c.append(lo + (hi - lo) * draw(frac))
    return h, low, c


@settings(max_examples=300, deadline=None)
@given(candles(), st.integers(min_value=1, max_value=40))
def test_matches_textbook_on_random_series(bars: Bars, period: int) -> None:
    h, low, c = bars
    want = np.array(textbook_atr(h, low, c, period), dtype=np.float64)
    got = sigil.atr(np.array(h), np.array(low), np.array(c), period)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)
    a = sigil.Atr(period)
    stream = np.array([a.update(x, y, z) for x, y, z in zip(h, low, c, strict=True)], dtype=np.float64)
    np.testing.assert_allclose(stream, want, rtol=1e-12, atol=0.0)
