"""The feather fast path (``sigil._core.feather_columns``): the plain candle layout read from the
file's bytes gives what pyarrow gives; every other file goes to pyarrow; no bytes make it fail."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from sigil import _core
from sigil.data import candles
from sigil.data.candles import read_candles
from tests.support.data import BUNDLED, sample_files

HOUR = 3_600_000
N = 300


def frame(date: Any, **prices: Any) -> pa.Table:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, N))
    cols = {
        "open": close - 0.5,
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": rng.uniform(1, 9, N),
    }
    cols.update(prices)
    return pa.table({"date": date, **cols})


def ms_times() -> np.ndarray[Any, np.dtype[np.int64]]:
    return 1_704_067_200_000 + HOUR * np.arange(N, dtype=np.int64)


def write(path: Path, table: pa.Table, **kw: Any) -> Path:
    feather.write_feather(table, path, **kw)
    return path


def same_series(a: candles.CandleSeries, b: candles.CandleSeries) -> None:
    assert (a.symbol, a.timeframe_ms, a.source) == (b.symbol, b.timeframe_ms, b.source)
    for name in ("time", "open", "high", "low", "close", "volume"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def pyarrow_series(path: Path, monkeypatch: pytest.MonkeyPatch) -> candles.CandleSeries:
    with monkeypatch.context() as m:
        m.setattr(_core, "feather_columns", lambda _data: None)
        return read_candles(path)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("compression", ["lz4", "uncompressed"])
def test_timestamps_of_every_unit_read_as_pyarrow_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit: str, compression: str
) -> None:
    per_ms = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    date = pa.array((ms_times() * per_ms).astype(np.int64), pa.timestamp(unit, tz="UTC"))
    path = write(tmp_path / "TST_USDT-1h.feather", frame(date), compression=compression)
    columns = _core.feather_columns(path.read_bytes())
    assert columns is not None and columns[0][:2] == ("date", f"timestamp[{unit}]")
    same_series(read_candles(path), pyarrow_series(path, monkeypatch))


def test_int64_times_and_several_record_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "TST_USDT-1h.feather", frame(ms_times()), chunksize=70)
    assert feather.read_table(path).column("close").num_chunks > 1
    columns = _core.feather_columns(path.read_bytes())
    assert columns is not None and columns[0][1] == "int64" and len(columns[0][2]) == N
    same_series(read_candles(path), pyarrow_series(path, monkeypatch))


@pytest.mark.parametrize(
    "table",
    [
        pytest.param(lambda: frame(ms_times().astype(np.int32) // 1000), id="int32 date"),
        pytest.param(lambda: frame(ms_times(), close=pa.array([None] * N, pa.float64())), id="nulls"),
        pytest.param(lambda: frame(pa.array([str(t) for t in ms_times()])), id="text date"),
    ],
)
def test_other_layouts_are_left_to_pyarrow(tmp_path: Path, table: Any) -> None:
    path = write(tmp_path / "TST_USDT-1h.feather", table())
    assert _core.feather_columns(path.read_bytes()) is None


def test_zstd_is_left_to_pyarrow_and_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "TST_USDT-1h.feather", frame(ms_times()), compression="zstd")
    assert _core.feather_columns(path.read_bytes()) is None
    same_series(read_candles(path), pyarrow_series(path, monkeypatch))


def test_integer_prices_are_cast_by_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "TST_USDT-1h.feather", frame(ms_times(), volume=np.arange(1, N + 1)))
    columns = _core.feather_columns(path.read_bytes())
    assert columns is not None and dict((n, k) for n, k, _ in columns)["volume"] == "int64"
    series = read_candles(path)
    assert series.volume.dtype == np.float64 and series.volume[-1] == N
    same_series(series, pyarrow_series(path, monkeypatch))


def test_the_repository_files_read_as_pyarrow_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(BUNDLED.glob("*.feather")) + sample_files()
    for path in files:
        assert _core.feather_columns(path.read_bytes()) is not None, path
        same_series(read_candles(path), pyarrow_series(path, monkeypatch))


def test_cut_or_damaged_bytes_give_columns_or_none_never_a_failure(tmp_path: Path) -> None:
    data = write(tmp_path / "TST_USDT-1h.feather", frame(ms_times()), chunksize=100).read_bytes()
    for cut in range(0, len(data), 7):
        _core.feather_columns(data[:cut])
    rng = random.Random(3)
    for _ in range(3000):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        got = _core.feather_columns(bytes(damaged))
        if got is not None:
            assert len({len(values) for _, _, values in got}) == 1
