"""The operator's controls (migration 0010): pauses and manual exit requests, each with its audit event.

``sigil pause | resume | exit`` and the daemon's HTTP API write here; every daemon reads it at each
pass. Going through the database makes one path for both, reaches a daemon on another host, and keeps
a pause across restarts. Each action and its audit event (kind ``control``, naming who asked) are one
transaction.

A pause has a scope: an instance (``daemon.instance``) or :data:`ALL`, a variant or :data:`ALL`. A
daemon is paused for a variant when any pause covers (its instance, that variant). Resuming a scope
lifts every pause inside it: ``resume()`` with no scope lifts them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sigil.errors import PositionNotOpen
from sigil.store.db import Connection, Database
from sigil.store.events import EventKind, EventStore

#: The scope that covers every instance, or every variant.
ALL = "*"


@dataclass(frozen=True, slots=True)
class Pause:
    """A row of ``control_pauses``: no new opens for ``variant`` on ``instance`` (either may be ``*``)."""

    instance: str
    variant: str
    since: datetime
    by: str

    def covers(self, instance: str, variant: str) -> bool:
        """True when this pause applies to ``variant`` on ``instance``."""
        return self.instance in (ALL, instance) and self.variant in (ALL, variant)


@dataclass(frozen=True, slots=True)
class ExitRequest:
    """A pending request to sell ``position_id`` at the market, with what the position is now."""

    id: int
    position_id: int
    requested_at: datetime
    by: str
    variant: str
    symbol: str
    #: ``open`` or ``closed``: the position's status when the request was read.
    status: str


class ControlStore:
    """Writes and reads ``control_pauses`` and ``control_exits``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._events = EventStore(db)

    async def pause(self, *, by: str, instance: str = ALL, variant: str = ALL) -> bool:
        """Pauses opens in the scope; True when it was not paused in exactly that scope before."""
        scope = _scope(instance, variant)
        async with self._db.transaction("pause") as conn:
            added = await conn.fetchval(
                "INSERT INTO control_pauses (instance, variant_id, by_whom) VALUES ($1, $2, $3)"
                " ON CONFLICT (instance, variant_id) DO NOTHING RETURNING true",
                *scope,
                by,
            )
            await self._audit(conn, "pause", by, {"instance": scope[0], "variant": scope[1]})
        return bool(added)

    async def resume(self, *, by: str, instance: str = ALL, variant: str = ALL) -> int:
        """Lifts every pause inside the scope; returns how many were lifted."""
        scope = _scope(instance, variant)
        async with self._db.transaction("resume") as conn:
            lifted = await conn.fetch(
                "DELETE FROM control_pauses WHERE ($1 = '*' OR instance = $1)"
                " AND ($2 = '*' OR variant_id = $2) RETURNING instance",
                *scope,
            )
            detail = {"instance": scope[0], "variant": scope[1], "lifted": len(lifted)}
            await self._audit(conn, "resume", by, detail)
        return len(lifted)

    async def pauses(self) -> list[Pause]:
        """Every pause in force, oldest first."""
        async with self._db.connection("read pauses") as conn:
            rows = await conn.fetch(
                "SELECT instance, variant_id, since, by_whom FROM control_pauses ORDER BY since, instance"
            )
        return [Pause(r["instance"], r["variant_id"], r["since"], r["by_whom"]) for r in rows]

    async def paused_variants(self, instance: str, variants: Iterable[str]) -> frozenset[str]:
        """Which of ``variants`` are paused on ``instance``."""
        pauses = await self.pauses()
        return frozenset(v for v in variants if any(p.covers(instance, v) for p in pauses))

    async def request_exit(self, position_id: int, *, by: str) -> int:
        """Asks for ``position_id`` to be sold at the market at the next pass; returns the request's id
        (the pending one when it was asked for already). :class:`PositionNotOpen` when the position is
        unknown or closed: nothing is written then."""
        if isinstance(position_id, bool) or not isinstance(position_id, int) or position_id <= 0:
            raise ValueError(f"a position id is a positive integer, got {position_id!r}")
        async with self._db.transaction("request exit") as conn:
            status = await conn.fetchval(
                "SELECT status FROM micro_positions WHERE id = $1 FOR SHARE", position_id
            )
            if status != "open":
                what = "no such position" if status is None else f"it is {status}"
                raise PositionNotOpen(f"position #{position_id} is not open ({what})")
            request = await conn.fetchval(
                "INSERT INTO control_exits (position_id, by_whom) VALUES ($1, $2)"
                " ON CONFLICT (position_id) WHERE done_at IS NULL DO NOTHING RETURNING id",
                position_id,
                by,
            )
            if request is None:
                request = await conn.fetchval(
                    "SELECT id FROM control_exits WHERE position_id = $1 AND done_at IS NULL", position_id
                )
            await self._audit(conn, "exit", by, {"request": request}, position_id=position_id)
        return int(request)

    async def pending_exits(self) -> list[ExitRequest]:
        """The requests not carried out yet, oldest first."""
        async with self._db.connection("read exit requests") as conn:
            rows = await conn.fetch(
                "SELECT e.id, e.position_id, e.requested_at, e.by_whom, p.variant_id, p.symbol, p.status"
                " FROM control_exits e JOIN micro_positions p ON p.id = e.position_id"
                " WHERE e.done_at IS NULL ORDER BY e.id"
            )
        return [
            ExitRequest(
                id=r["id"],
                position_id=r["position_id"],
                requested_at=r["requested_at"],
                by=r["by_whom"],
                variant=r["variant_id"],
                symbol=r["symbol"],
                status=r["status"],
            )
            for r in rows
        ]

    async def finish_exit(self, request_id: int, outcome: str) -> None:
        """Marks a request done: ``closed`` (sold by it) or ``not_open`` (closed by something else first)."""
        if outcome not in ("closed", "not_open"):
            raise ValueError(f"an exit request ends closed or not_open, not {outcome!r}")
        async with self._db.connection("finish exit request") as conn:
            await conn.execute(
                "UPDATE control_exits SET done_at = now(), outcome = $2 WHERE id = $1 AND done_at IS NULL",
                request_id,
                outcome,
            )

    async def _audit(
        self,
        conn: Connection,
        action: str,
        by: str,
        detail: dict[str, Any],
        *,
        position_id: int | None = None,
    ) -> None:
        await self._events.record(
            EventKind.CONTROL,
            at=datetime.now(UTC),
            reason=action,
            position_id=position_id,
            detail={"by": by, **detail},
            conn=conn,
        )


def _scope(instance: str, variant: str) -> tuple[str, str]:
    for name, value in (("instance", instance), ("variant", variant)):
        if not isinstance(value, str) or not value.strip() or value != value.strip():
            raise ValueError(f"a pause's {name} is a name or {ALL!r}, got {value!r}")
    return instance, variant
