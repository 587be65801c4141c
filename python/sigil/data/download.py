"""History from the exchange into freqtrade-format candle files (``sigil download``).

One file per pair and timeframe, named and laid out like freqtrade's ``download-data`` output
(``TST_USDT-1h.feather``: Arrow IPC / Feather v2, lz4, columns ``date`` timestamp[ns, tz=UTC] = candle
OPEN time, then ``open, high, low, close, volume`` float64), so that freqtrade and ``sigil replay``
both read it (:func:`sigil.data.candles.read_candles`).

- Every request goes through :class:`~sigil.exchange.ccxt_client.ExchangeClient` (rate limiter,
  retries, Sigil's error classes), at most :data:`MAX_CANDLES_PER_REQUEST` candles a request.
- Incremental: with a file already there, only candles after its last one are asked for; with
  ``prepend``, only candles before its first one. Which candles are closed is decided by the
  exchange's clock: the candle in progress is never stored.
- A candle the exchange sends malformed (:func:`~sigil.exchange.candle_rows.candle_problem`, the
  engine's candle rule) is asked for once more, then reported with its pair and time and left out.
- A file is written to a temporary file in the same folder and renamed over the old one
  (``os.replace``), so a killed download leaves either the old file or the new one, never a torn one.
  Appending keeps what was fetched every :data:`CHECKPOINT_PAGES` requests and when the exchange
  stops answering, so the next run goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigil.data.candles import CandleSeries, read_candles, timeframe_ms
from sigil.errors import DataError, ExchangeRejected, ExchangeUnavailable
from sigil.exchange.candle_rows import Candle, candle_problem
from sigil.exchange.ccxt_client import MAX_CANDLES_PER_REQUEST, ExchangeClient
from sigil.times import iso_z

log = logging.getLogger("sigil.download")

DAY_MS = 86_400_000
#: Appending writes the file again after this many requests of one pair (a long download that is
#: killed then loses at most this many pages).
CHECKPOINT_PAGES = 10
#: The process's umask (read once: reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_COLUMNS = ("open", "high", "low", "close", "volume")
#: Gaps listed one by one per file in the report (the count is always complete).
GAPS_SHOWN = 5

#: (pair, timeframe, candles just fetched, whether the file is done), called after each request
#: and once when a file is done; for a progress bar.
Progress = Callable[[str, str, int, bool], None]


def file_name(pair: str, timeframe: str) -> str:
    """``TST/USDT``, ``1h`` → ``TST_USDT-1h.feather`` (freqtrade's spot naming)."""
    return f"{pair.replace('/', '_').replace(':', '_')}-{timeframe}.feather"


def normalize_pair(raw: str) -> str:
    """``tst/usdt`` or ``TST_USDT`` → ``TST/USDT``; ValueError for anything else."""
    text = raw.strip().upper().replace("_", "/")
    base, sep, quote = text.partition("/")
    if not sep or not base.isalnum() or not quote.isalnum():
        raise ValueError(f"not a pair: {raw!r} (expected BASE/QUOTE, e.g. TST/USDT)")
    return f"{base}/{quote}"


@dataclass(frozen=True)
class Gap:
    """Candles missing inside a stored range: open times ``start`` to ``end`` inclusive."""

    start: int
    end: int
    missing: int


@dataclass
class FileResult:
    """What one pair and timeframe got."""

    pair: str
    timeframe: str
    path: Path
    #: Candles added to the file by this run.
    new: int = 0
    #: Candles in the file after the run.
    stored: int = 0
    first: int | None = None
    last: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    #: Candles the exchange sent malformed, left out: (open time, reason).
    bad: list[tuple[int, str]] = field(default_factory=list)
    #: Why nothing could be fetched (an unknown pair, an error of the exchange); None = fetched.
    error: str | None = None
    #: True when nothing needed asking for (already up to date).
    up_to_date: bool = False


@dataclass
class DownloadResult:
    """Every file's result, and the requests sent."""

    files: list[FileResult]
    requests: int
    server_time: int

    @property
    def fetched(self) -> list[FileResult]:
        """The files that got candles or were up to date (not an unknown pair or a refusal)."""
        return [f for f in self.files if f.error is None]

    @property
    def candles(self) -> int:
        """New candles stored by the run."""
        return sum(f.new for f in self.files)

    @property
    def gaps(self) -> int:
        """Gaps in every file, in all."""
        return sum(len(f.gaps) for f in self.files)


def find_gaps(time: np.ndarray[Any, np.dtype[np.int64]], tf: int) -> list[Gap]:
    """Missing open times between the first and the last candle of ``time`` (sorted)."""
    if len(time) < 2:
        return []
    d = np.diff(time)
    at = np.nonzero(d > tf)[0]
    return [Gap(int(time[i]) + tf, int(time[i + 1]) - tf, int(d[i]) // tf - 1) for i in at]


def write_feather(path: Path, candles: Sequence[Candle]) -> None:
    """Writes ``candles`` (sorted) as a freqtrade feather file, atomically (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.feather as feather

    arr = np.asarray(candles, dtype=np.float64).reshape(-1, 6)
    times = np.asarray([c.time for c in candles], dtype=np.int64) * 1_000_000
    table = pa.table(
        {
            "date": pa.array(times, type=pa.timestamp("ns", tz="UTC")),
            **{
                name: pa.array(arr[:, k + 1])
                for k, name in enumerate(("open", "high", "low", "close", "volume"))
            },
        }
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; the file is data, not a secret
        with os.fdopen(fd, "wb") as f:
            feather.write_feather(table, f, compression="lz4")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _stored(path: Path) -> list[Candle]:
    if not path.exists():
        return []
    s: CandleSeries = read_candles(path)
    return [
        Candle(int(t), float(o), float(h), float(lo), float(c), float(v))
        for t, o, h, lo, c, v in zip(s.time, s.open, s.high, s.low, s.close, s.volume, strict=True)
    ]


def _clean_leftovers(path: Path) -> None:
    """Removes temporary files a killed run of this file left behind."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


class Downloader:
    """Downloads pairs × timeframes into ``folder`` through one exchange client."""

    def __init__(
        self,
        client: ExchangeClient,
        folder: Path,
        timeframes: Sequence[str],
        *,
        since_ms: int | None = None,
        days: int | None = None,
        until_ms: int | None = None,
        prepend: bool = False,
        progress: Progress | None = None,
    ) -> None:
        check_request(client, folder, timeframes, since_ms, days, until_ms)
        self.client = client
        self.folder = folder
        self.timeframes = list(dict.fromkeys(timeframes))
        self.since_ms, self.days, self.until_ms = since_ms, days, until_ms
        self.prepend = prepend
        self.progress = progress

    def planned(self, pairs: Sequence[str], now: int) -> int:
        """About how many candles the run asks for at most (for a progress bar's total)."""
        total = 0
        for tf in self.timeframes:
            t = timeframe_ms(tf)
            start, end = self._range(t, now)
            total += max(0, (end - start) // t) * len(pairs)
        return total

    def _range(self, tf: int, now: int) -> tuple[int, int]:
        """[start, end) of open times asked for before looking at the files; end excludes the
        candle in progress at exchange time ``now``."""
        end = now - now % tf
        if self.until_ms is not None:
            end = min(end, self.until_ms)
        if self.since_ms is not None:
            start = self.since_ms
        else:
            assert self.days is not None
            start = (self.until_ms if self.until_ms is not None else now) - self.days * DAY_MS
        return -(-start // tf) * tf, end

    async def run(self, pairs: Sequence[str], server_time: int | None = None) -> DownloadResult:
        """Downloads every pair at every timeframe. Pairs the exchange does not list are reported in
        their result's ``error``; ExchangeUnavailable propagates (what was fetched is kept)."""
        before = self.client.stats.requests
        markets = await self.client.load_markets()
        now = await self.client.server_time() if server_time is None else server_time
        self.folder.mkdir(parents=True, exist_ok=True)
        sem = asyncio.Semaphore(self.client.config.max_concurrency)
        results: list[FileResult] = []

        async def one(pair: str, tf: str) -> None:
            result = FileResult(pair, tf, self.folder / file_name(pair, tf))
            results.append(result)
            if pair not in markets:
                result.error = f"{self.client.id} does not list {pair}"
                return
            async with sem:
                await self._file(result, now)
            if self.progress is not None:
                self.progress(pair, tf, 0, True)

        jobs = [one(p, tf) for p in dict.fromkeys(pairs) for tf in self.timeframes]
        await asyncio.gather(*jobs)
        order = {(p, tf): i for i, (p, tf) in enumerate((p, tf) for p in pairs for tf in self.timeframes)}
        results.sort(key=lambda r: order.get((r.pair, r.timeframe), 0))
        return DownloadResult(results, self.client.stats.requests - before, now)

    async def _file(self, result: FileResult, now: int) -> None:
        tf = timeframe_ms(result.timeframe)
        path = result.path
        _clean_leftovers(path)
        stored = _stored(path)
        start, end = self._range(tf, now)
        append = True
        if stored and self.prepend:
            start, end, append = start, min(end, stored[0].time), False
        elif stored:
            start = stored[-1].time + tf
        got: list[Candle] = []

        def save() -> None:
            merged = stored + got if append else got + stored
            if merged and got:
                write_feather(path, merged)

        if start >= end:
            result.up_to_date = True
        else:
            try:
                await self._fetch(result, start, end, now, got, save if append else None)
            except ExchangeRejected as e:
                result.error = str(e)
            except ExchangeUnavailable:
                if append:
                    save()
                raise
            save()
        merged = stored + got if append else got + stored
        result.new = len(got)
        result.stored = len(merged)
        if merged:
            result.first, result.last = merged[0].time, merged[-1].time
            result.gaps = find_gaps(np.fromiter((c.time for c in merged), np.int64, len(merged)), tf)
        if result.error is not None and got:
            result.error = None  # some candles came: report them; the log has the failure

    async def _fetch(
        self,
        result: FileResult,
        start: int,
        end: int,
        now: int,
        got: list[Candle],
        checkpoint: Callable[[], None] | None,
    ) -> None:
        """Pages forward from ``start`` until ``end`` (exclusive), appending to ``got``."""
        pair, tf_name = result.pair, result.timeframe
        tf = timeframe_ms(tf_name)
        since = start
        pages = 0
        # Every request moves ``since`` at least one candle forward, so this ends.
        while since < end:
            limit = min(MAX_CANDLES_PER_REQUEST, (end - since + tf - 1) // tf)
            for attempt in range(2):
                rows = await self.client.call(
                    f"fetch_ohlcv {pair} {tf_name}",
                    "fetch_ohlcv",
                    pair,
                    tf_name,
                    since,
                    limit,
                    {"endTime": end - 1},
                )
                rows = rows if isinstance(rows, list) else []
                page, bad, top = self._accept(rows, since, end, now, tf, got[-1].time if got else None)
                if not bad:
                    break
                if attempt == 1:
                    for t, reason in bad:
                        log.warning("%s %s: candle %s: %s: not stored", pair, tf_name, _iso(t), reason)
                    result.bad.extend(bad)
            got.extend(page)
            pages += 1
            if self.progress is not None:
                self.progress(pair, tf_name, len(page), False)
            if top is None or len(rows) < limit:
                break  # nothing more up to ``end``: the exchange sent all it has
            since = top + tf
            if checkpoint is not None and pages % CHECKPOINT_PAGES == 0:
                checkpoint()

    @staticmethod
    def _accept(
        rows: Sequence[Any], since: int, end: int, now: int, tf: int, last: int | None
    ) -> tuple[list[Candle], list[tuple[int, str]], int | None]:
        """(valid new candles, malformed ones as (time, reason), newest open time seen) of a response."""
        out: list[Candle] = []
        bad: list[tuple[int, str]] = []
        top: int | None = None
        timed: list[tuple[int, Sequence[Any]]] = []
        for row in rows:
            t = row[0] if isinstance(row, list | tuple) and row else None
            if not isinstance(t, int) or isinstance(t, bool):
                bad.append((-1, "bad_time"))
            else:
                timed.append((t, row))
        # Rows out of order are put in order (stable: of two rows for one time, the first is kept).
        timed.sort(key=lambda x: x[0])
        for t, row in timed:
            if t < since or t >= end or t + tf > now:
                continue  # outside the range asked for, or still in progress
            top = t if top is None else max(top, t)
            problem = candle_problem(row)
            if problem is None and last is not None and t <= last:
                if out and out[-1] == Candle(t, *(float(x) for x in row[1:6])):
                    continue  # the same row twice: nothing is lost
                problem = "duplicate"  # two different candles for one time: which is right?
            if problem is not None:
                bad.append((t, problem))
                continue
            out.append(Candle(t, *(float(x) for x in row[1:6])))
            last = t
        return out, bad, top


def check_request(
    client: ExchangeClient,
    folder: Path,
    timeframes: Sequence[str],
    since_ms: int | None,
    days: int | None,
    until_ms: int | None,
) -> None:
    """Bad input, before any request: ValueError naming the problem."""
    if not timeframes:
        raise ValueError("no timeframe given")
    known = client.exchange.timeframes or {}
    for tf in timeframes:
        timeframe_ms(tf)
        if tf not in known:
            raise ValueError(f"{client.id} has no {tf!r} candles (it has {', '.join(known)})")
    if (since_ms is None) == (days is None):
        raise ValueError("give one of --days or --since")
    if days is not None and days < 1:
        raise ValueError(f"--days must be >= 1, got {days}")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ValueError(f"--until {iso_z(until_ms)} is not after --since {iso_z(since_ms)}")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: not a folder")


def _iso(t: int) -> str:
    return iso_z(t) if t >= 0 else "(no time)"
