"""Candle files: freqtrade feather/json and CSV, validated with file and row in every error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from sigil.data import expand_paths, load_universe, read_candles, timeframe_ms
from sigil.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "candles"


def test_bundled_feather_reads_as_the_file_says() -> None:
    s = read_candles(REPO / "data" / "TST_USDT-1h.feather")
    assert (s.symbol, s.timeframe_ms, len(s)) == ("TST/USDT", 3_600_000, 3093)
    assert s.time[0] == np.datetime64("2025-02-09T11:00", "ms").astype(np.int64)
    assert np.all(np.diff(s.time) > 0)
    assert s.close.dtype == np.float64 and s.close.flags.c_contiguous


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data")
def test_freqtrade_json_with_real_gaps() -> None:
    s = read_candles(SHARED / "DOGE_USDT-1m.json")
    assert (s.symbol, s.timeframe_ms, len(s)) == ("DOGE/USDT", 60_000, 61_272)
    assert int(np.max(np.diff(s.time))) > 60_000  # the exchange's real gaps are kept as gaps


def _rows(n: int = 5) -> list[list[float]]:
    return [[1_700_000_000_000 + i * 60_000, 10.0, 11.0, 9.0, 10.5, 100.0] for i in range(n)]


def test_json_and_csv_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    (tmp_path / "ABC_USDT-1m.json").write_text(json.dumps(rows))
    csv = "date,open,high,low,close,volume\n" + "\n".join(
        f"{int(r[0])},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}" for r in rows
    )
    (tmp_path / "XYZ_USDT-1m.csv").write_text(csv)
    a = read_candles(tmp_path / "ABC_USDT-1m.json")
    b = read_candles(tmp_path / "XYZ_USDT-1m.csv")
    assert np.array_equal(a.time, b.time) and np.array_equal(a.close, b.close)
    assert [s.symbol for s in load_universe([tmp_path])] == ["ABC/USDT", "XYZ/USDT"]


def test_csv_iso_dates_and_inferred_timeframe(tmp_path: Path) -> None:
    p = tmp_path / "candles.csv"
    p.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n2024-01-01T00:05:00Z,1.5,2,1,1.2,4\n"
    )
    s = read_candles(p)
    assert s.timeframe_ms == 300_000 and s.symbol == "candles"


@pytest.mark.parametrize(
    ("row", "value", "message"),
    [
        (2, ("high", float("nan")), "row 2 (from 0): high is not finite"),
        (3, ("low", -1.0), "row 3 (from 0): low is not positive"),
        (1, ("high", 8.0), "row 1 (from 0): high < low"),
        (4, ("close", 12.0), "row 4 (from 0): close outside [low, high]"),
        (0, ("volume", -3.0), "row 0 (from 0): volume is negative"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, row: int, value: tuple[str, float], message: str) -> None:
    rows = _rows()
    col = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}[value[0]]
    rows[row][col] = value[1]
    p = tmp_path / "BAD_USDT-1m.json"
    p.write_text(json.dumps(rows))
    with pytest.raises(DataError) as e:
        read_candles(p)
    assert str(e.value) == f"{p}: {message}"


def test_unsorted_and_duplicate_times(tmp_path: Path) -> None:
    rows = _rows()
    rows[3][0] = rows[2][0]
    (tmp_path / "D_USDT-1m.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 3 \(from 0\): duplicate candle time"):
        read_candles(tmp_path / "D_USDT-1m.json")
    rows = _rows()
    rows[3][0], rows[2][0] = rows[2][0], rows[3][0]
    (tmp_path / "U_USDT-1m.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 3 \(from 0\): candle times out of order"):
        read_candles(tmp_path / "U_USDT-1m.json")


def test_feather_with_a_bad_row(tmp_path: Path) -> None:
    n = 4
    table = pa.table(
        {
            "date": pa.array(
                np.arange(n, dtype="int64") * 3_600_000_000_000, type=pa.timestamp("ns", tz="UTC")
            ),
            "open": [1.0] * n,
            "high": [2.0, 2.0, float("inf"), 2.0],
            "low": [0.5] * n,
            "close": [1.5] * n,
            "volume": [1.0] * n,
        }
    )
    p = tmp_path / "F_USDT-1h.feather"
    feather.write_feather(table, p)
    with pytest.raises(DataError, match=r"F_USDT-1h\.feather: row 2 \(from 0\): high is not finite"):
        read_candles(p)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_candles(tmp_path / "nope.feather")
    with pytest.raises(DataError, match="file not found"):
        expand_paths([tmp_path / "nope"])
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_candles(tmp_path / "x.json")
    (tmp_path / "y.feather").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable feather file"):
        read_candles(tmp_path / "y.feather")
    (tmp_path / "z.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="header must name"):
        read_candles(tmp_path / "z.csv")
    (tmp_path / "w.txt").write_text("")
    with pytest.raises(DataError, match="unsupported file type"):
        read_candles(tmp_path / "w.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no candle files"):
        expand_paths([empty])


def test_timeframes() -> None:
    assert timeframe_ms("5m") == 300_000 and timeframe_ms("1d") == 86_400_000
    with pytest.raises(ValueError, match="not a timeframe"):
        timeframe_ms("0h")
