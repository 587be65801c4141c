"""The audit log: every signal, every skipped signal with its reason, every open, close and error, and
every action of the operator (pause, resume, exit) naming who asked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sigil._core import SkipReason
from sigil.store import _checks
from sigil.store.db import Connection, Database


class EventKind(StrEnum):
    """What an event records."""

    SIGNAL = "signal"
    SKIP = "skip"
    OPEN = "open"
    #: A live position's exchange fill recorded into its reservation.
    FILL = "fill"
    CLOSE = "close"
    ERROR = "error"
    #: An operator's action (``reason``: pause, resume or exit; ``detail["by"]``: who asked).
    CONTROL = "control"
    #: A live daemon's books against the exchange account (``reason``: drift, agree, ack, unknown_order).
    RECONCILE = "reconcile"


#: Skip reason of a breakout not taken because trading is paused: the daemon's reason, not the engine's
#: (the engine's are :class:`SkipReason`).
PAUSED = "paused"


def skip_reason_name(reason: object) -> str:
    """The stored name of a skip reason: a :class:`SkipReason`, a name the engine knows, or
    :data:`PAUSED` (ValueError naming any other)."""
    if isinstance(reason, SkipReason):
        return reason.value
    if reason == PAUSED:
        return PAUSED
    return SkipReason.parse(str(reason)).value


@dataclass(frozen=True, slots=True)
class Event:
    """A row of the audit log."""

    id: int
    at: datetime
    kind: EventKind
    variant: str | None
    symbol: str | None
    reason: str | None
    position_id: int | None
    detail: dict[str, Any] = field(default_factory=dict)


_COLUMNS = "id, at, kind, variant_id, symbol, reason, position_id, detail"


def _event(r: Any) -> Event:
    return Event(
        id=r["id"],
        at=r["at"],
        kind=EventKind(r["kind"]),
        variant=r["variant_id"],
        symbol=r["symbol"],
        reason=r["reason"],
        position_id=r["position_id"],
        detail=json.loads(r["detail"]) if r["detail"] else {},
    )


class EventStore:
    """Writes and reads the audit log (table ``events``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        kind: EventKind,
        *,
        at: datetime,
        variant: str | None = None,
        symbol: str | None = None,
        reason: str | None = None,
        position_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Appends an event and returns its id. With ``conn``, inside the caller's transaction.

        ``at`` is when it happened (market time for trading events); ``detail`` must be JSON-serialisable.
        """
        at = _checks.utc("at", at)
        kind = EventKind(kind)
        if kind is EventKind.SKIP:
            reason = skip_reason_name(reason) if reason is not None else None
            if reason is None:
                raise ValueError("a skip event needs a reason (open, cooldown, max_open, balance or paused)")
        payload = json.dumps(dict(detail or {}), default=str)
        if conn is not None:
            return await _insert(conn, kind, at, variant, symbol, reason, position_id, payload)
        async with self._db.connection("record event") as c:
            return await _insert(c, kind, at, variant, symbol, reason, position_id, payload)

    async def signal(
        self, variant: str, symbol: str, at: datetime, detail: Mapping[str, Any] | None = None
    ) -> int:
        """Records a signal (before the guard and limits decide on it)."""
        return await self.record(EventKind.SIGNAL, at=at, variant=variant, symbol=symbol, detail=detail)

    async def skip(
        self,
        variant: str,
        symbol: str,
        reason: SkipReason | str,
        at: datetime,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Records a skipped signal and why (a :class:`SkipReason`, or :data:`PAUSED`)."""
        return await self.record(
            EventKind.SKIP,
            at=at,
            variant=variant,
            symbol=symbol,
            reason=skip_reason_name(reason),
            detail=detail,
        )

    async def error(
        self,
        message: str,
        at: datetime,
        *,
        variant: str | None = None,
        symbol: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Records an error (``message`` goes in ``reason``, one line)."""
        line = " ".join(str(message).split())[:500]
        return await self.record(
            EventKind.ERROR, at=at, variant=variant, symbol=symbol, reason=line, detail=detail
        )

    async def recent(
        self, limit: int = 50, *, kind: EventKind | None = None, variant: str | None = None
    ) -> list[Event]:
        """The latest events, newest first."""
        async with self._db.connection("read events") as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events"
                " WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR variant_id = $2)"
                " ORDER BY id DESC LIMIT $3",
                None if kind is None else EventKind(kind).value,
                variant,
                limit,
            )
        return [_event(r) for r in rows]

    async def counts(self, *, since: datetime | None = None) -> dict[tuple[str, str | None], int]:
        """Number of events per (kind, reason), optionally since a time."""
        async with self._db.connection("count events") as conn:
            rows = await conn.fetch(
                "SELECT kind, reason, count(*) AS n FROM events"
                " WHERE ($1::timestamptz IS NULL OR at >= $1) GROUP BY kind, reason",
                None if since is None else _checks.utc("since", since),
            )
        return {(r["kind"], r["reason"]): int(r["n"]) for r in rows}


async def _insert(
    conn: Connection,
    kind: EventKind,
    at: datetime,
    variant: str | None,
    symbol: str | None,
    reason: str | None,
    position_id: int | None,
    detail: str,
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO events (at, kind, variant_id, symbol, reason, position_id, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING id",
            at,
            kind.value,
            variant,
            symbol,
            reason,
            position_id,
            detail,
        )
    )
