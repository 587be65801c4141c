"""Bad candle files through ``sigil replay``: one line naming the file, where in it (a CSV's line as an
editor counts it, header = line 1; a JSON or feather row counting from 0) and the problem; exit 2, no
traceback, no warning lines, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from sigil.cli import main

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR = 3_600_000
HEADER = "date,open,high,low,close,volume"


def csv_rows(n: int = 5, times: list[str] | None = None) -> list[str]:
    """``n`` valid hourly CSV lines (``times`` replaces their time cells)."""
    cells = times or [str(T0 + i * HOUR) for i in range(n)]
    return [f"{t},10,11,9,10.5,100" for t in cells]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def feather_table(n: int = 4, **columns: pa.Array) -> pa.Table:
    """``n`` valid hourly candles (``columns`` replaces some)."""
    cols: dict[str, pa.Array] = {
        "date": pa.array(np.arange(n, dtype="int64") * HOUR + T0, type=pa.timestamp("ms", tz="UTC")),
        **{c: pa.array([[10.0, 11.0, 9.0, 10.5, 100.0][k]] * n, pa.float64()) for k, c in enumerate(_PRICES)},
    }
    cols.update(columns)
    return pa.table(cols)


_PRICES = ("open", "high", "low", "close", "volume")


def replay_error(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The one stderr line of ``sigil replay --data PATH --json OUT`` (checked: exit 2, nothing on
    stdout, no warning, OUT not written)."""
    out = tmp_path / "out.json"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["replay", "--data", str(path), "--json", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == "" and not out.exists()
    assert [str(w.message) for w in seen] == []
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    prefix = "sigil replay: error: "
    assert lines[0].startswith(prefix)
    return lines[0][len(prefix) :]


def test_csv_time_beyond_int64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_csv(
        tmp_path / "BIG_USDT-1h.csv", csv_rows(times=[str(T0), "99999999999999999999999", str(T0 + HOUR)])
    )
    assert replay_error(p, tmp_path, capsys) == (
        f"{p}: line 3: time 99999999999999999999999 is out of range (expected milliseconds since 1970)"
    )


def test_csv_nanosecond_times_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns = [str((T0 + i * HOUR) * 1_000_000) for i in range(3)]
    p = write_csv(tmp_path / "NS_USDT-1h.csv", csv_rows(times=ns))
    assert replay_error(p, tmp_path, capsys) == (
        f"{p}: line 2: time {ns[0]} is out of range in milliseconds; it looks like nanoseconds (expected ms)"
    )


def test_csv_nan_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_csv(
        tmp_path / "NAN_USDT-1h.csv", csv_rows(times=[str(T0), str(T0 + HOUR), "nan", str(T0 + 3 * HOUR)])
    )
    assert replay_error(p, tmp_path, capsys) == (
        f"{p}: line 4: time 'nan' is not a date (expected ms since 1970 or ISO 8601 UTC)"
    )


def test_csv_bad_candle_names_the_editor_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = csv_rows(5)
    lines[3] = f"{T0 + 3 * HOUR},10,8,9,10.5,100"  # high under low, on line 5 (the header is line 1)
    p = write_csv(tmp_path / "HL_USDT-1h.csv", [*lines[:2], "", *lines[2:]])  # a blank line 4
    assert replay_error(p, tmp_path, capsys) == f"{p}: line 6: high < low"


def test_json_nan_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "NAN_USDT-1h.json"
    rows = [[T0 + i * HOUR, 10, 11, 9, 10.5, 100] for i in range(4)]
    rows[2][0] = float("nan")
    p.write_text(json.dumps(rows))  # Python writes NaN, as pandas' writers do
    assert replay_error(p, tmp_path, capsys) == f"{p}: row 2 (from 0): time is not a number"


def test_feather_null_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dates = pa.array([T0, T0 + HOUR, None, T0 + 3 * HOUR], type=pa.timestamp("ms", tz="UTC"))
    p = tmp_path / "NUL_USDT-1h.feather"
    feather.write_feather(feather_table(date=dates), p)
    assert replay_error(p, tmp_path, capsys) == f"{p}: row 2 (from 0): date is missing (null)"


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("date", ["2024-01-01", "2024-01-02", "x", "y"],
         "column date has type string; expected a timestamp or integer milliseconds"),
        ("close", ["10.5", "10.5", "oops", "10.5"], "column close has type string; expected numbers"),
    ],
)  # fmt: skip
def test_feather_string_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, values: list[str], message: str
) -> None:
    p = tmp_path / "STR_USDT-1h.feather"
    feather.write_feather(feather_table(**{column: pa.array(values)}), p)
    assert replay_error(p, tmp_path, capsys) == f"{p}: {message}"


def test_zero_timeframe_in_the_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_csv(tmp_path / "ZERO_USDT-0h.csv", csv_rows())
    assert replay_error(p, tmp_path, capsys) == (
        f"{p}: the file name's timeframe is wrong: "
        "not a timeframe: '0h' (expected e.g. 5m, 1h, 1d; at most 52w)"
    )


def test_header_only_csv_and_empty_feather(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "HDR_USDT-1h.csv", [])
    assert replay_error(csv, tmp_path, capsys) == f"no candles in {csv}"
    empty = tmp_path / "EMP_USDT-1h.feather"
    feather.write_feather(feather_table(0), empty)
    assert replay_error(empty, tmp_path, capsys) == f"no candles in {empty}"


def test_the_command_line_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The same through a real process: the overflow that used to end in a traceback is one line."""
    p = write_csv(tmp_path / "BIG_USDT-1h.csv", csv_rows(times=[str(T0), "99999999999999999999999"]))
    out = tmp_path / "out.json"
    r = subprocess.run(
        [sys.executable, "-m", "sigil", "replay", "--data", str(p), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == "" and not out.exists()
    assert r.stderr.splitlines() == [
        f"sigil replay: error: {p}: line 3: time 99999999999999999999999 is out of range "
        "(expected milliseconds since 1970)"
    ]
