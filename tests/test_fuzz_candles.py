"""Fuzzed candle files (feather, JSON, CSV): any input reads as a valid series or fails with a
:class:`~sigil.errors.DataError` naming the file — never another exception, a warning, or a NaN in
the loaded arrays. Every input that broke a reader stays below as an ``@example``."""

from __future__ import annotations

import atexit
import io
import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sigil.data.candles import CandleSeries, read_candles
from sigil.errors import DataError

#: One folder for every example (a folder per example costs more than the reading).
_FOLDER = Path(tempfile.mkdtemp(prefix="sigil-fuzz-"))
atexit.register(shutil.rmtree, _FOLDER, True)
T0 = 1_704_067_200_000
HOUR = 3_600_000
NAMES = ("FZ_USDT-1h", "FZ_USDT-0h", "FZ_USDT-99999999999999999999h", "fz", "FZ_USDT-5m", "FZ-USDT-1h")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a fuzz failure is a bug to keep, not noise
)

#: A cell of a candle file: mostly plausible numbers, often garbage of every kind.
numbers = st.one_of(
    st.floats(min_value=0.5, max_value=2.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(2**63), max_value=2**64),
)
cells = st.one_of(numbers, st.text(max_size=8), st.none(), st.booleans())
#: Times: hourly from T0 (valid), shuffled steps, or garbage.
times = st.one_of(
    st.integers(min_value=0, max_value=5).map(lambda k: T0 + k * HOUR),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.sampled_from([T0 * 1_000_000, T0 * 1_000, T0 // 1_000, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=25),
    st.none(),
)


@st.composite
def candle_rows(draw: st.DrawFn) -> list[list[Any]]:
    """Rows that are mostly valid hourly candles, some with a cell or the time replaced."""
    n = draw(st.integers(min_value=0, max_value=8))
    rows: list[list[Any]] = []
    for i in range(n):
        price = draw(st.floats(min_value=0.5, max_value=2.0))
        row: list[Any] = [T0 + i * HOUR, price, price * 1.01, price * 0.99, price, 10.0]
        if draw(st.integers(0, 3)) == 0:
            row[draw(st.integers(0, 5))] = draw(cells)
        if draw(st.integers(0, 4)) == 0:
            row[0] = draw(times)
        if draw(st.integers(0, 9)) == 0:
            row = draw(st.lists(cells, max_size=8))
        rows.append(row)
    return rows


def _csv_cell(x: Any) -> str:
    return "" if x is None else str(x)


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    """A CSV: a valid header or a garbled one, rows as cells joined by commas, maybe raw text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    header = draw(
        st.sampled_from(
            [
                "date,open,high,low,close,volume",
                "time,open,high,low,close,volume",
                "volume,close,low,high,open,timestamp",
                "date,open,high,low,close",
                "date,date,open,high,low,close,volume",
                "",
            ]
        )
    )
    lines = [",".join(_csv_cell(x) for x in row) for row in draw(candle_rows())]
    if draw(st.booleans()):
        lines = [
            line.replace(str(T0), draw(st.sampled_from(["2024-01-01T00:00:00Z", "nan", "", "1e12"])))
            for line in lines
        ]
    return "\n".join([header, *lines]) + draw(st.sampled_from(["", "\n", "\n\n", "\r\n"]))


def _column(values: list[Any], kind: str) -> pa.Array:
    """A feather column of ``kind`` from fuzzed values (what does not fit becomes null)."""

    def fit(x: Any, f: Any) -> Any:
        try:
            return f(x)
        except (TypeError, ValueError, OverflowError):
            return None

    if kind == "float":
        return pa.array([fit(x, float) for x in values], pa.float64())
    if kind == "int":
        return pa.array(
            [v if (v := fit(x, int)) is not None and -(2**63) <= v < 2**63 else None for x in values],
            pa.int64(),
        )
    if kind in ("ms", "ns", "s"):
        ints = [v if (v := fit(x, int)) is not None and -(2**63) <= v < 2**63 else None for x in values]
        return pa.array(ints, pa.int64()).cast(pa.timestamp(kind, tz="UTC"))
    return pa.array([None if x is None else str(x) for x in values], pa.string())


@st.composite
def feather_bytes(draw: st.DrawFn) -> bytes:
    """A feather file whose columns have fuzzed types and values, or bytes that are not one."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    rows = [r + [None] * (6 - len(r)) for r in draw(candle_rows())]
    names = ["date", "open", "high", "low", "close", "volume"]
    if draw(st.integers(0, 9)) == 0:
        names[draw(st.integers(0, 5))] = draw(st.sampled_from(["Date", "date", "", "clóse"]))
    cols: dict[str, pa.Array] = {}
    for k, name in enumerate(names):
        kind = draw(
            st.sampled_from(
                ["ms", "ns", "int", "float", "str"] if k == 0 else ["float", "float", "int", "str"]
            )
        )
        scaled = [r[k] * 1_000_000 if kind == "ns" and isinstance(r[k], int) else r[k] for r in rows]
        cols[name if name not in cols else name + "_"] = _column(scaled, kind)
    sink = io.BytesIO()
    feather.write_feather(pa.table(cols), sink)
    return sink.getvalue()


def check(name: str, suffix: str, content: str | bytes) -> None:
    """Writes ``content`` as ``name + suffix`` and reads it: a valid series or a DataError naming it."""
    path = _FOLDER / f"{name}{suffix}"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning is a failure too: nothing may print
            s = read_candles(path)
    except DataError as e:
        assert str(path) in str(e), str(e)
        assert "\n" not in str(e), str(e)
        return
    finally:
        path.unlink()
    valid(s)


def valid(s: CandleSeries) -> None:
    """What every loaded series guarantees."""
    assert len(s) > 0 and s.timeframe_ms > 0
    assert s.time.dtype == np.int64 and np.all(np.diff(s.time) > 0) and s.time[0] >= 0
    for col in (s.open, s.high, s.low, s.close, s.volume):
        assert col.dtype == np.float64 and len(col) == len(s) and np.all(np.isfinite(col))
    assert np.all(s.low > 0) and np.all(s.low <= s.high)


@FUZZ
@given(st.sampled_from(NAMES), candle_rows(), st.booleans())
@example("FZ_USDT-1h", [[10**400 // 10**370, 1.0, 1.0, 1.0, 1.0, 1.0]], False)  # a time beyond int64
@example("FZ_USDT-1h", [[T0, 10**400, 1.0, 1.0, 1.0, 1.0]], False)  # a price beyond float64
@example("FZ_USDT-1h", [[math.nan, 1.0, 1.0, 1.0, 1.0, 1.0]], False)  # a NaN time
@example("FZ_USDT-1h", [[T0 + 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]], False)  # a fraction of a millisecond
@example("FZ_USDT-1h", [], False)  # no candles
@example("FZ_USDT-99999999999999999999h", [[T0, 1.0, 1.0, 1.0, 1.0, 1.0]], False)  # a timeframe beyond int64
def test_json(name: str, rows: list[list[Any]], nested: bool) -> None:
    text = json.dumps([rows] if nested else rows)  # nested: the rows inside a list, a wrong shape
    check(name, ".json", text)


@FUZZ
@given(st.sampled_from(NAMES), csv_text())
@example("FZ_USDT-1h", "date,open,high,low,close,volume\n99999999999999999999999,1,1,1,1,1\n")
@example("FZ_USDT-1h", f"date,open,high,low,close,volume\n{T0 * 1_000_000},1,1,1,1,1\n")
@example("FZ_USDT-1h", "date,open,high,low,close,volume\nnan,1,1,1,1,1\n")
@example("FZ_USDT-1h", "date,open,high,low,close,volume\n")
@example("FZ_USDT-1h", "date,open,high,low,close,volume\n" + "9" * 5000 + ",1,1,1,1,1\n")  # beyond int()
@example("FZ_USDT-1h", "date,open,high,low,close,volume\n2024-01-01T00:00:00+02:00,1,1,1,1,1\n")
def test_csv(name: str, text: str) -> None:
    check(name, ".csv", text)


@FUZZ
@given(st.sampled_from(NAMES), feather_bytes())
@example("FZ_USDT-1h", b"")
def test_feather(name: str, data: bytes) -> None:
    check(name, ".feather", data)


def test_json_nested_too_deep_is_a_data_error() -> None:
    check("FZ_USDT-1h", ".json", "[" * 100_000 + "]" * 100_000)


def test_feather_special_cases() -> None:
    """Tables that broke the feather reader before (run against it, the fuzz found each of these
    kinds: string, float and null columns, NaN times, a zero timeframe), and ones the strategies
    rarely draw: a duplicated column, no rows."""
    base = {c: pa.array([1.0, 1.0], pa.float64()) for c in ("open", "high", "low", "close", "volume")}
    dates = pa.array([T0, T0 + HOUR], pa.int64())
    for table in (
        pa.table({"date": dates, **base, "close": pa.array([None, None], pa.null())}),
        pa.table({"date": pa.array(["a", "b"]), **base}),
        pa.table({"date": pa.array([T0, None], pa.timestamp("ms")), **base}),
        pa.table({"date": pa.array([10**17, 10**17 + 3600], pa.timestamp("s")), **base}),
        pa.table({"date": pa.array([0.5, 1.5]), **base}),
        pa.table({"date": pa.array([float(T0), math.nan]), **base}),
        pa.table({"date": dates, **base, "high": pa.array(["", "1"])}),
        pa.Table.from_arrays([dates, dates, *base.values()], ["date", "date", *base]),
        pa.table({"date": pa.array([], pa.int64()), **{c: pa.array([], pa.null()) for c in base}}),
    ):
        sink = io.BytesIO()
        feather.write_feather(table, sink)
        check("FZ_USDT-1h", ".feather", sink.getvalue())
    sink = io.BytesIO()
    feather.write_feather(pa.table({"date": dates, **base}), sink)
    check("FZ_USDT-0h", ".feather", sink.getvalue())  # the file name's timeframe is zero
