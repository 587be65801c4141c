"""Scanner heartbeats: a row per COMPLETED pass (proof of progress, not of a live process).

Heartbeat times are liveness time, the local wall clock, unlike trading times (market time).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sigil.store import _checks

if TYPE_CHECKING:
    from sigil.store.db import Connection, Database
    from sigil.store.wire import WireConnection


@dataclass(frozen=True, slots=True)
class PassStats:
    """What one completed scanner pass did."""

    started_at: datetime
    finished_at: datetime
    symbols_scanned: int
    signals: int = 0
    opens: int = 0
    closes: int = 0
    errors: int = 0
    #: Candles the pass decided (traded on; warm-up candles do not count).
    candles_decided: int = 0
    #: Close time of the newest candle decided so far (market time), and the exchange's clock then.
    market_time: datetime | None = None
    exchange_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A row of ``scanner_heartbeats``."""

    id: int
    started_at: datetime
    finished_at: datetime
    duration: timedelta
    symbols_scanned: int
    signals: int
    opens: int
    closes: int
    errors: int
    host: str
    pid: int
    instance: str
    candles_decided: int = 0
    market_time: datetime | None = None
    exchange_time: datetime | None = None

    def lag(self) -> timedelta | None:
        """How far the newest decided candle's close lagged the exchange's clock at this pass."""
        if self.market_time is None or self.exchange_time is None:
            return None
        return self.exchange_time - self.market_time

    def age(self, now: datetime | None = None) -> timedelta:
        """Time since the pass finished (``now`` defaults to the wall clock)."""
        return (now or datetime.now(UTC)) - self.finished_at


_COLUMNS = (
    "id, started_at, finished_at, duration_s, symbols_scanned, signals, opens, closes, errors, host, pid,"
    " instance, candles_decided, market_time, exchange_time"
)


def _latest(instance: str | None) -> tuple[str, ...]:
    """The query (and its argument) for the newest heartbeat of ``instance`` (None: of any)."""
    if instance is None:
        return (f"SELECT {_COLUMNS} FROM scanner_heartbeats ORDER BY finished_at DESC LIMIT 1",)
    return (
        f"SELECT {_COLUMNS} FROM scanner_heartbeats WHERE instance = $1 ORDER BY finished_at DESC LIMIT 1",
        instance,
    )


def latest_heartbeat_wire(conn: WireConnection, instance: str | None = None) -> Heartbeat | None:
    """:meth:`HeartbeatStore.latest` over the probe's synchronous connection."""
    rows = conn.fetch(*_latest(instance))
    return _heartbeat(rows[0]) if rows else None


def _heartbeat(r: Any) -> Heartbeat:
    return Heartbeat(
        id=r["id"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        duration=timedelta(seconds=r["duration_s"]),
        symbols_scanned=r["symbols_scanned"],
        signals=r["signals"],
        opens=r["opens"],
        closes=r["closes"],
        errors=r["errors"],
        host=r["host"],
        pid=r["pid"],
        instance=r["instance"],
        candles_decided=r["candles_decided"],
        market_time=r["market_time"],
        exchange_time=r["exchange_time"],
    )


class HeartbeatStore:
    """Writes a heartbeat after each completed pass and reads the latest one.

    ``instance`` names the daemon writing (``daemon.instance``); reads may ask for one instance.
    """

    def __init__(self, db: Database, instance: str = "main") -> None:
        if not instance:
            raise ValueError("instance must be a non-empty name")
        self._db = db
        self._instance = instance
        self._host = socket.gethostname()
        self._pid = os.getpid()

    async def record(self, stats: PassStats) -> Heartbeat:
        """Stores a completed pass (call it only after the pass finished) and returns the row."""
        started = _checks.utc("started_at", stats.started_at)
        finished = _checks.utc("finished_at", stats.finished_at)
        if finished < started:
            raise ValueError(f"finished_at {finished.isoformat()} is before started_at {started.isoformat()}")
        names = ("symbols_scanned", "signals", "opens", "closes", "errors", "candles_decided")
        counts = {k: getattr(stats, k) for k in names}
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{k} must be an integer >= 0, got {v!r}")
        async with self._db.connection("record heartbeat") as conn:
            r = await _insert(
                conn,
                started,
                finished,
                counts,
                (
                    _optional_utc("market_time", stats.market_time),
                    _optional_utc("exchange_time", stats.exchange_time),
                ),
                self._host,
                self._pid,
                self._instance,
            )
        return _heartbeat(r)

    async def latest(self, instance: str | None = None) -> Heartbeat | None:
        """The most recent heartbeat (by finish time) of ``instance`` (None: of any daemon), or None
        when no pass has completed yet."""
        async with self._db.connection("read heartbeat") as conn:
            r = await conn.fetchrow(*_latest(instance))
        return None if r is None else _heartbeat(r)

    async def latest_per_instance(self) -> dict[str, Heartbeat]:
        """The most recent heartbeat of every instance that ever completed a pass, by instance name."""
        async with self._db.connection("read heartbeats per instance") as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT ON (instance) {_COLUMNS} FROM scanner_heartbeats"
                " ORDER BY instance, finished_at DESC"
            )
        return {r["instance"]: _heartbeat(r) for r in rows}

    async def age(self, now: datetime | None = None, instance: str | None = None) -> timedelta | None:
        """Time since the last completed pass (wall clock) of ``instance`` (None: any), or None."""
        hb = await self.latest(instance)
        return None if hb is None else hb.age(now)

    async def prune(self, before: datetime) -> int:
        """Deletes heartbeats that finished before ``before``, always keeping the latest; returns how many."""
        before = _checks.utc("before", before)
        async with self._db.connection("prune heartbeats") as conn:
            status = await conn.execute(
                "DELETE FROM scanner_heartbeats WHERE finished_at < $1"
                " AND id <> (SELECT id FROM scanner_heartbeats ORDER BY finished_at DESC LIMIT 1)",
                before,
            )
        return int(status.split()[-1])


async def _insert(
    conn: Connection,
    started: datetime,
    finished: datetime,
    counts: dict[str, int],
    times: tuple[datetime | None, datetime | None],
    host: str,
    pid: int,
    instance: str,
) -> Any:
    return await conn.fetchrow(
        "INSERT INTO scanner_heartbeats (started_at, finished_at, duration_s, symbols_scanned, signals,"
        " opens, closes, errors, host, pid, instance, candles_decided, market_time, exchange_time)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {_COLUMNS}",
        started,
        finished,
        (finished - started).total_seconds(),
        counts["symbols_scanned"],
        counts["signals"],
        counts["opens"],
        counts["closes"],
        counts["errors"],
        host,
        pid,
        instance,
        counts["candles_decided"],
        times[0],
        times[1],
    )


def _optional_utc(name: str, value: datetime | None) -> datetime | None:
    return None if value is None else _checks.utc(name, value)
