"""Candle files: freqtrade's feather and json, and CSV with a header; validated, never silently fixed.

A file holds one symbol. Its name says which and at what timeframe, freqtrade style:
``TST_USDT-1h.feather`` is ``TST/USDT`` on 1h candles. Times are candle OPEN times, UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sigil import _core
from sigil.errors import DataError

SUFFIXES = (".feather", ".json", ".csv")
_NAME = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_[A-Za-z0-9]+)?-(?P<tf>[0-9]+[smhdw])$"
)
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_COLUMNS = ("open", "high", "low", "close", "volume")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def timeframe_ms(tf: str) -> int:
    """``"1h"`` → 3,600,000. ValueError for anything else than a number and one of s, m, h, d, w."""
    m = re.fullmatch(r"([0-9]+)([smhdw])", tf)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"not a timeframe: {tf!r} (expected e.g. 5m, 1h, 1d)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


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

    def validate(self) -> None:
        """Sorted, no duplicate times, finite positive prices, volume >= 0, low <= open/close <= high
        (the engine's candle rules, :func:`sigil._core.check_candles`).

        Raises :class:`DataError` naming the file and the first bad row (0-based, as in the file).
        """
        problem = _core.check_candles(self.time, self.open, self.high, self.low, self.close, self.volume)
        if problem is not None:
            raise DataError(f"{self.source}: row {problem.index}: {problem.message}")


def parse_name(path: Path) -> tuple[str, str | None]:
    """``TST_USDT-1h.feather`` → (``"TST/USDT"``, ``"1h"``); other names → (stem, None)."""
    m = _NAME.match(path.name.split(".")[0])
    if not m:
        return path.name.split(".")[0], None
    return f"{m['base'].upper()}/{m['quote'].upper()}", m["tf"]


def _infer_tf(path: Path, time: I64, tf: str | None) -> int:
    if tf is not None:
        return timeframe_ms(tf)
    if len(time) < 2:
        raise DataError(f"{path}: cannot tell the timeframe (name it like XXX_USDT-1h, or give 2+ candles)")
    d = np.diff(time)
    d = d[d > 0]
    if d.size == 0:
        raise DataError(f"{path}: cannot tell the timeframe from the candle times")
    return int(d.min())


def _read_feather(path: Path) -> tuple[I64, list[F64]]:
    import pyarrow as pa
    import pyarrow.feather as feather

    try:
        table = feather.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable feather file: {e}") from None
    names = set(table.column_names)
    missing = [c for c in ("date", *_COLUMNS) if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    date = table.column("date")
    if pa.types.is_timestamp(date.type):
        unit = {"s": 1_000, "ms": 1, "us": 1e-3, "ns": 1e-6}[date.type.unit]
        raw = date.cast(pa.int64()).to_numpy(zero_copy_only=False)
        time = (
            raw // 1_000_000 if unit == 1e-6 else raw // 1000 if unit == 1e-3 else raw * int(unit)
        ).astype(np.int64)
    else:
        time = date.to_numpy(zero_copy_only=False).astype(np.int64)
    cols = [
        np.ascontiguousarray(table.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
        for c in _COLUMNS
    ]
    return time, cols


def _read_json(path: Path) -> tuple[I64, list[F64]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of [time, open, high, low, close, volume] rows")
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != 6:
            raise DataError(f"{path}: row {i}: expected [time, open, high, low, close, volume]")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in r):
            raise DataError(f"{path}: row {i}: a value is not a number")
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return arr[:, 0].astype(np.int64), [np.ascontiguousarray(arr[:, k]) for k in range(1, 6)]


def _read_csv(path: Path) -> tuple[I64, list[F64]]:
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
    time = np.empty(len(lines) - 1, dtype=np.int64)
    cols = [np.empty(len(lines) - 1) for _ in _COLUMNS]
    for row, line in enumerate(lines[1:]):
        cells = line.split(",")
        if len(cells) != len(header):
            raise DataError(f"{path}: row {row}: {len(cells)} fields, header has {len(header)}")
        try:
            time[row] = _parse_time(cells[idx[0]].strip())
            for k in range(5):
                cols[k][row] = float(cells[idx[k + 1]])
        except ValueError as e:
            raise DataError(f"{path}: row {row}: {e}") from None
    return time, cols


def _parse_time(s: str) -> int:
    if re.fullmatch(r"-?[0-9]+", s):
        v = int(s)
        return v * 1000 if abs(v) < 10**11 else v  # seconds or milliseconds
    return int(np.datetime64(s.replace("Z", "").replace("+00:00", ""), "ms").astype(np.int64))


def read_candles(path: str | Path) -> CandleSeries:
    """Reads and validates one candle file (.feather, .json or .csv)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.suffix not in SUFFIXES:
        raise DataError(f"{p}: unsupported file type (expected {', '.join(SUFFIXES)})")
    reader = {".feather": _read_feather, ".json": _read_json, ".csv": _read_csv}[p.suffix]
    try:
        time, (o, h, lo, c, v) = reader(p)
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file") from None
    symbol, tf = parse_name(p)
    series = CandleSeries(symbol, _infer_tf(p, time, tf), time, o, h, lo, c, v, str(p))
    series.validate()
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


def load_universe(paths: Iterable[str | Path]) -> list[CandleSeries]:
    """Every candle file under ``paths``; one symbol may appear once."""
    series = [read_candles(p) for p in expand_paths(paths)]
    seen: dict[str, str] = {}
    for s in series:
        if s.symbol in seen:
            raise DataError(f"{s.source}: symbol {s.symbol} already read from {seen[s.symbol]}")
        seen[s.symbol] = s.source
    return series
