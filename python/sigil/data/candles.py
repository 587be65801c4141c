"""Candle files: freqtrade's feather and json, and CSV with a header; validated, never silently fixed.

A file holds one symbol. Its name says which and at what timeframe, freqtrade style:
``TST_USDT-1h.feather`` is ``TST/USDT`` on 1h candles. Times are candle OPEN times, UTC.

Every error is one line naming the file and where in it: a CSV names ``line N`` as an editor counts
lines (the header is line 1), a JSON or feather file names ``row N (from 0)``. Integer times are
milliseconds (freqtrade's unit; a CSV may also give seconds, told apart by magnitude); a time that
only makes sense as microseconds or nanoseconds is an error that says so, not a guess.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sigil import _core
from sigil.data.timeframes import MAX_TIMEFRAME_MS as MAX_TIMEFRAME_MS
from sigil.data.timeframes import timeframe_ms as timeframe_ms
from sigil.errors import DataError

SUFFIXES = (".feather", ".json", ".csv")
_NAME = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_[A-Za-z0-9]+)?-(?P<tf>[0-9]+[smhdw])$"
)
_COLUMNS = ("open", "high", "low", "close", "volume")

#: Candle times must lie in [1970, 9999): what a report can print as a date.
MIN_TIME_MS = 0
MAX_TIME_MS = 253_370_764_800_000
#: Integer CSV times below this are seconds (up to the year 5138), at or above it milliseconds.
_SECONDS_BELOW = 10**11

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: Where row ``i`` is, in the words of its file's format (``line 7``, ``row 5 (from 0)``).
Where = Callable[[int], str]


def row_from_0(i: int) -> str:
    """How JSON and feather errors name a row: ``row 5 (from 0)``."""
    return f"row {i} (from 0)"


def time_problem(ms: int | float) -> str | None:
    """Why ``ms`` cannot be a candle time in milliseconds (None when it can): not a whole number,
    before 1970, or so large that it looks like microseconds or nanoseconds."""
    if isinstance(ms, float):
        if not math.isfinite(ms):
            return "time is not a number"
        if ms != int(ms):
            return f"time {ms!r} is not a whole number of milliseconds"
    v = int(ms)
    if v < MIN_TIME_MS:
        return f"time {v} is before 1970"
    if v < MAX_TIME_MS:
        return None
    for unit, per_ms in (("microseconds", 10**3), ("nanoseconds", 10**6)):
        if v < MAX_TIME_MS * per_ms:
            return f"time {v} is out of range in milliseconds; it looks like {unit} (expected ms)"
    return f"time {v} is out of range (expected milliseconds since 1970)"


@dataclass(frozen=True)
class CandleSeries:
    """One symbol's candles as columns (times in ms UTC, prices float64)."""

    symbol: str
    timeframe_ms: int
    time: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    source: str

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def engine_tuple(self) -> tuple[str, int, I64, F64, F64, F64, F64, F64]:
        """The tuple ``sigil._core.replay`` takes."""
        return (
            self.symbol,
            self.timeframe_ms,
            self.time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
        )

    def validate(self, where: Where = row_from_0) -> None:
        """Sorted, no duplicate times, finite positive prices, volume >= 0, low <= open/close <= high
        (the engine's candle rules, :func:`sigil._core.check_candles`).

        Raises :class:`DataError` naming the file and the first bad row, as ``where`` names it
        (``row N (from 0)`` unless the file counts otherwise, as a CSV's lines do).
        """
        problem = _core.check_candles(self.time, self.open, self.high, self.low, self.close, self.volume)
        if problem is not None:
            raise DataError(f"{self.source}: {where(problem.index)}: {problem.message}")


def parse_name(path: Path) -> tuple[str, str | None]:
    """``TST_USDT-1h.feather`` → (``"TST/USDT"``, ``"1h"``); other names → (stem, None)."""
    m = _NAME.match(path.name.split(".")[0])
    if not m:
        return path.name.split(".")[0], None
    return f"{m['base'].upper()}/{m['quote'].upper()}", m["tf"]


def _infer_tf(path: Path, time: I64, tf: str | None) -> int:
    if tf is not None:
        try:
            return timeframe_ms(tf)
        except ValueError as e:
            raise DataError(f"{path}: the file name's timeframe is wrong: {e}") from None
    if len(time) < 2:
        raise DataError(f"{path}: cannot tell the timeframe (name it like XXX_USDT-1h, or give 2+ candles)")
    d = np.diff(time)
    d = d[d > 0]
    if d.size == 0:
        raise DataError(f"{path}: cannot tell the timeframe from the candle times")
    return int(d.min())


class _Read:
    """What a reader got from a file: times, the five price columns, and how it names a row."""

    def __init__(self, time: I64, cols: list[F64], where: Where = row_from_0) -> None:
        self.time, self.cols, self.where = time, cols, where


def _check_times(path: Path, arr: F64, where: Where) -> None:
    """The first value that is not a time in ms, as a DataError (before any cast can wrap it)."""
    bad = ~np.isfinite(arr) | (arr < MIN_TIME_MS) | (arr >= MAX_TIME_MS) | (arr != np.floor(arr))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: {where(i)}: {time_problem(float(arr[i]))}")


def _read_feather(path: Path) -> _Read:
    """A feather file in the plain candle layout straight from its bytes (:func:`sigil._core.feather_columns`:
    no pyarrow to import, no table to build); any other file through pyarrow, which reads what Arrow
    can and words what is wrong."""
    try:
        columns = _core.feather_columns(path.read_bytes())
    except OSError:
        columns = None  # pyarrow says why it cannot read it, as for any other unreadable file
    plain = _plain_feather(path, columns) if columns is not None else None
    return plain if plain is not None else _read_feather_pyarrow(path)


def _plain_feather(path: Path, columns: list[tuple[str, str, npt.NDArray[Any]]]) -> _Read | None:
    """The candles of a plain file's columns; None when a column is missing, given twice or of
    another type, or there are no rows: the pyarrow reader words those refusals."""
    names = [name for name, _, _ in columns]
    by_name = {name: (kind, values) for name, kind, values in columns}
    if any(names.count(c) != 1 for c in ("date", *_COLUMNS)) or len(columns[0][2]) == 0:
        return None
    kind, raw = by_name["date"]
    if kind.startswith("timestamp["):
        time = _timestamp_ms(path, raw, kind.removeprefix("timestamp[").removesuffix("]"))
    else:
        _check_times(path, raw.astype(np.float64), row_from_0)
        time = raw
    if any(by_name[c][0] != "double" for c in _COLUMNS):
        return None
    return _Read(np.ascontiguousarray(time, dtype=np.int64), [by_name[c][1] for c in _COLUMNS])


def _timestamp_ms(path: Path, raw: I64, unit: str) -> I64:
    """Timestamps in ``unit`` (s, ms, us, ns) as milliseconds, each checked to be a candle time."""
    mul, div = {"s": (1_000, 1), "ms": (1, 1), "us": (1, 1_000), "ns": (1, 1_000_000)}[unit]
    # Checked as floats first: seconds scaled to ms could leave int64.
    _check_times(path, np.floor(raw.astype(np.float64) * mul / div), row_from_0)
    time: I64 = raw * mul // div
    return time


def _read_feather_pyarrow(path: Path) -> _Read:
    import pyarrow as pa
    import pyarrow.feather as feather

    try:
        table = feather.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable feather file: {' '.join(str(e).split())}") from None
    names = list(table.column_names)
    missing = [c for c in ("date", *_COLUMNS) if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    twice = [c for c in ("date", *_COLUMNS) if names.count(c) > 1]
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} given twice")
    if table.num_rows == 0:  # said as "no candles", whatever types the empty columns have
        return _Read(np.empty(0, np.int64), [np.empty(0) for _ in _COLUMNS])
    for name in ("date", *_COLUMNS):
        column = table.column(name)
        if column.null_count:
            i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise DataError(f"{path}: {row_from_0(i)}: {name} is missing (null)")
    date = table.column("date")
    if pa.types.is_timestamp(date.type):
        time = _timestamp_ms(path, _numpy(date.cast(pa.int64()), np.dtype(np.int64)), date.type.unit)
    elif pa.types.is_integer(date.type):
        raw_any = _numpy(date, np.dtype(str(date.type)))
        _check_times(path, raw_any.astype(np.float64), row_from_0)
        time = raw_any.astype(np.int64)
    else:
        raise DataError(
            f"{path}: column date has type {date.type}; expected a timestamp or integer milliseconds"
        )
    cols: list[F64] = []
    for name in _COLUMNS:
        column = table.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise DataError(f"{path}: column {name} has type {column.type}; expected numbers")
        cols.append(_numpy(column.cast(pa.float64(), safe=False), np.dtype(np.float64)))
    return _Read(np.ascontiguousarray(time, dtype=np.int64), cols)


def _numpy(column: Any, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """A null-free fixed-width Arrow column as a numpy array, read from its data buffers.

    pyarrow's ``to_numpy`` imports pandas whenever it is installed (about a second), which would be
    most of a replay's run time; the buffers need nothing."""
    parts = [
        np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * dtype.itemsize)
        for c in column.chunks
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def _number(x: object) -> float | None:
    """A JSON value as a float, or None if it is not a number a candle can hold."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    try:
        return float(x)
    except OverflowError:  # an integer beyond float64
        return math.inf


def _read_json(path: Path) -> _Read:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON: nested too deeply") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of [time, open, high, low, close, volume] rows")
    arr = np.empty((len(rows), 6), dtype=np.float64)
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != 6:
            raise DataError(f"{path}: {row_from_0(i)}: expected [time, open, high, low, close, volume]")
        values = [_number(x) for x in r]
        if None in values:
            raise DataError(f"{path}: {row_from_0(i)}: a value is not a number")
        problem = time_problem(r[0])  # the value as written: a huge integer stays exact
        if problem is not None:
            raise DataError(f"{path}: {row_from_0(i)}: {problem}")
        arr[i] = values
    return _Read(arr[:, 0].astype(np.int64), [np.ascontiguousarray(arr[:, k]) for k in range(1, 6)])


def _read_csv(path: Path) -> _Read:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{path}: empty file")
    header = [h.strip().lower() for h in lines[0].split(",")]
    tcol = next((h for h in ("date", "time", "timestamp", "open_time") if h in header), None)
    missing = [c for c in _COLUMNS if c not in header]
    if tcol is None or missing:
        need = ", ".join(missing + ([] if tcol else ["date"]))
        raise DataError(
            f"{path}: header must name date (or time/timestamp), open, high, low, close, volume; "
            f"missing {need}"
        )
    idx = [header.index(c) for c in (tcol, *_COLUMNS)]
    # Blank lines (a trailing one is common) hold no candle; the others keep their editor's number.
    numbers = [n for n, line in enumerate(lines[1:], start=2) if line.strip()]
    time = np.empty(len(numbers), dtype=np.int64)
    cols = [np.empty(len(numbers)) for _ in _COLUMNS]
    for row, n in enumerate(numbers):
        cells = lines[n - 1].split(",")
        if len(cells) != len(header):
            raise DataError(f"{path}: line {n}: {len(cells)} fields, header has {len(header)}")
        try:
            time[row] = _parse_time(cells[idx[0]].strip())
            for k in range(5):
                cols[k][row] = float(cells[idx[k + 1]])
        except ValueError as e:
            raise DataError(f"{path}: line {n}: {e}") from None
    return _Read(time, cols, lambda i: f"line {numbers[i]}")


def _parse_time(s: str) -> int:
    """A CSV time: integer seconds or milliseconds (by magnitude), or an ISO 8601 date in UTC."""
    if re.fullmatch(r"-?[0-9]+", s):
        v = int(s)
        ms = v * 1000 if abs(v) < _SECONDS_BELOW else v
    else:
        text = s.removesuffix("Z").removesuffix("+00:00")
        try:
            with warnings.catch_warnings():
                # An offset other than UTC's is converted to UTC correctly; numpy still warns.
                warnings.simplefilter("ignore", UserWarning)
                parsed = np.datetime64(text, "ms")
        except (ValueError, OverflowError, TypeError):
            raise ValueError(f"time {s!r} is not a date (expected ms since 1970 or ISO 8601 UTC)") from None
        if np.isnat(parsed):
            raise ValueError(f"time {s!r} is not a date (expected ms since 1970 or ISO 8601 UTC)")
        ms = int(parsed.astype(np.int64))
    problem = time_problem(ms)
    if problem is not None:
        raise ValueError(problem)
    return ms


def read_candles(path: str | Path) -> CandleSeries:
    """Reads and validates one candle file (.feather, .json or .csv)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.suffix not in SUFFIXES:
        raise DataError(f"{p}: unsupported file type (expected {', '.join(SUFFIXES)})")
    reader = {".feather": _read_feather, ".json": _read_json, ".csv": _read_csv}[p.suffix]
    try:
        got = reader(p)
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    if len(got.time) == 0:
        raise DataError(f"no candles in {p}")
    symbol, tf = parse_name(p)
    o, h, lo, c, v = got.cols
    series = CandleSeries(symbol, _infer_tf(p, got.time, tf), got.time, o, h, lo, c, v, str(p))
    series.validate(got.where)
    return series


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders become their candle files (sorted). Missing paths are DataErrors."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in SUFFIXES)
            if not found:
                raise DataError(f"{p}: no candle files (.feather, .json, .csv) in this folder")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"{p}: file not found")
    return out


def load_universe(paths: Iterable[str | Path], detail: str | None = None) -> list[CandleSeries]:
    """Every candle file under ``paths``; one symbol may appear once. With ``detail`` (a timeframe),
    files named for that timeframe are left out: they are the detail of the others."""
    paths = list(paths)
    if detail is not None:
        timeframe_ms(detail)  # a bad timeframe is the first thing to say
    files = expand_paths(paths)
    if detail is not None:
        files = [f for f in files if parse_name(f)[1] != detail]
        if not files:
            raise DataError(f"no candle files other than the {detail} detail in {', '.join(map(str, paths))}")
    series = [read_candles(p) for p in files]
    seen: dict[str, str] = {}
    for s in series:
        if s.symbol in seen:
            raise DataError(f"{s.source}: symbol {s.symbol} already read from {seen[s.symbol]}")
        seen[s.symbol] = s.source
    return series


def detail_file(path: Path, tf: str) -> Path | None:
    """The file of the same pair at timeframe ``tf`` beside ``path`` (``TST_USDT-1h.feather`` →
    ``TST_USDT-5m.feather``, ``.json`` or ``.csv``), or None. Two candidates are a DataError."""
    pair, own = path.name.split(".")[0].rpartition("-")[0], parse_name(path)[1]
    if own is None or not pair:
        return None
    found = [path.with_name(f"{pair}-{tf}{suffix}") for suffix in SUFFIXES]
    found = [f for f in found if f.is_file()]
    if len(found) > 1:
        raise DataError(f"{path}: more than one {tf} detail file: {', '.join(f.name for f in found)}")
    return found[0] if found else None


def load_detail(series: Sequence[CandleSeries], tf: str) -> tuple[list[CandleSeries], list[str]]:
    """For each series, its pair's candles at the lower timeframe ``tf`` from the file beside it
    (read and validated like any candle file), and the symbols that have no such file.

    ``tf`` must divide each series' timeframe into smaller candles (a DataError naming the file if not).
    """
    tf_ms = timeframe_ms(tf)
    found: list[CandleSeries] = []
    without: list[str] = []
    for s in series:
        f = detail_file(Path(s.source), tf)
        if f is None:
            without.append(s.symbol)
            continue
        if tf_ms >= s.timeframe_ms or s.timeframe_ms % tf_ms:
            raise DataError(f"{f}: {tf} candles do not divide the {s.source} candles into smaller ones")
        d = read_candles(f)
        if d.symbol != s.symbol:
            raise DataError(f"{f}: symbol {d.symbol}, but {s.source} holds {s.symbol}")
        found.append(d)
    return found, without
