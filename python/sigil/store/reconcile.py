"""The database side of reconciling a live daemon's books with the exchange account (migration 0011).

What the database says is held (open positions with an exchange fill, by symbol), which of the orders
the exchange names ``sigil-…`` the database knows, and the drift pause: a row of ``control_pauses``
for the instance and every variant written by :data:`DRIFT_BY`, so the pass's usual pause check stops
its opens (exits go on). Entering and leaving a drift, an operator's acknowledgement and an unknown
order are each an event of kind ``reconcile`` whose detail names the instance; entering and leaving
are one transaction with their event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sigil.store.control import ALL
from sigil.store.db import Connection, Database
from sigil.store.events import EventKind, EventStore

#: ``by_whom`` of a drift pause (an operator's pause names the operator).
DRIFT_BY = "reconcile"
#: Event reasons.
DRIFT = "drift"
AGREE = "agree"
ACK = "ack"
UNKNOWN_ORDER = "unknown_order"


class ReconcileStore:
    """Reads the held quantities and known orders; writes the drift pause and its events."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._events = EventStore(db)

    async def held_by_symbol(self) -> tuple[dict[str, float], set[str]]:
        """The quantity of every symbol that open positions with an exchange fill hold (every variant,
        every instance: the account is one), and the symbols with a reservation whose fill is not
        recorded yet (what the account holds of those cannot be judged until it is)."""
        async with self._db.connection("read held quantities") as conn:
            rows = await conn.fetch(
                "SELECT symbol, fill, sum(qty) AS qty FROM micro_positions"
                " WHERE status = 'open' AND fill IN ('exchange', 'reserved') GROUP BY symbol, fill"
            )
        held = {r["symbol"]: float(r["qty"]) for r in rows if r["fill"] == "exchange"}
        return held, {r["symbol"] for r in rows if r["fill"] == "reserved"}

    async def known_positions(self, ids: Iterable[int]) -> set[int]:
        """Which of ``ids`` are positions whose orders went to the exchange and were not cancelled as
        never executed (``sigil-o<id>`` and ``sigil-c<id>`` are theirs)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return set()
        async with self._db.connection("read known orders") as conn:
            rows = await conn.fetch(
                "SELECT id FROM micro_positions WHERE id = ANY($1::bigint[]) AND fill <> 'paper'"
                " AND exit_reason IS DISTINCT FROM 'order_failed'",
                wanted,
            )
        return {int(r["id"]) for r in rows}

    async def drift_paused(self, instance: str) -> bool:
        """True when a drift pause is in force for ``instance``."""
        async with self._db.connection("read drift pause") as conn:
            found = await conn.fetchval(
                "SELECT true FROM control_pauses WHERE instance = $1 AND variant_id = $2 AND by_whom = $3",
                instance,
                ALL,
                DRIFT_BY,
            )
        return bool(found)

    async def enter_drift(self, instance: str, detail: Mapping[str, Any]) -> None:
        """Pauses ``instance``'s opens for a drift and records it (with ``detail``: the assets)."""
        async with self._db.transaction("enter drift") as conn:
            await conn.execute(
                "INSERT INTO control_pauses (instance, variant_id, by_whom) VALUES ($1, $2, $3)"
                " ON CONFLICT (instance, variant_id) DO NOTHING",
                instance,
                ALL,
                DRIFT_BY,
            )
            await self._record(conn, DRIFT, {"instance": instance, **detail})

    async def leave_drift(self, instance: str, detail: Mapping[str, Any]) -> None:
        """Lifts ``instance``'s drift pause (the books agree again) and records it."""
        async with self._db.transaction("leave drift") as conn:
            await _lift(conn, instance)
            await self._record(conn, AGREE, {"instance": instance, **detail})

    async def acknowledge(self, instance: str, by: str) -> dict[str, float] | None:
        """An operator accepts ``instance``'s drift: its pause is lifted and the differences of the
        last drift event become the accepted offsets (a later check measures from them). Returns the
        accepted differences, or None when no drift pause is in force (nothing is written then)."""
        async with self._db.transaction("acknowledge drift") as conn:
            lifted = await _lift(conn, instance)
            if not lifted:
                return None
            detail = await _last(conn, DRIFT, instance)
            raw = (detail or {}).get("raw") or {}
            accepted = {str(a): float(v) for a, v in raw.items()}
            await self._record(conn, ACK, {"instance": instance, "by": by, "accepted": accepted})
        return accepted

    async def accepted(self, instance: str) -> dict[str, float]:
        """The differences an operator accepted last for ``instance`` (empty when never)."""
        async with self._db.connection("read accepted drift") as conn:
            detail = await _last(conn, ACK, instance)
        return {str(a): float(v) for a, v in ((detail or {}).get("accepted") or {}).items()}

    async def unknown_order(self, instance: str, symbol: str, name: str, order: Mapping[str, Any]) -> None:
        """Records an order named ``sigil-…`` that the exchange knows and the database does not."""
        async with self._db.connection("record unknown order") as conn:
            detail = {"instance": instance, "order": name, **order}
            await self._record(conn, UNKNOWN_ORDER, detail, symbol=symbol)

    async def _record(
        self, conn: Connection, reason: str, detail: Mapping[str, Any], symbol: str | None = None
    ) -> None:
        await self._events.record(
            EventKind.RECONCILE, at=datetime.now(UTC), reason=reason, symbol=symbol, detail=detail, conn=conn
        )


async def _lift(conn: Connection, instance: str) -> bool:
    lifted = await conn.fetch(
        "DELETE FROM control_pauses WHERE instance = $1 AND variant_id = $2 AND by_whom = $3"
        " RETURNING instance",
        instance,
        ALL,
        DRIFT_BY,
    )
    return bool(lifted)


async def _last(conn: Connection, reason: str, instance: str) -> dict[str, Any] | None:
    """The detail of the newest ``reconcile`` event of ``reason`` for ``instance``."""
    detail = await conn.fetchval(
        "SELECT detail FROM events WHERE kind = 'reconcile' AND reason = $1 AND detail->>'instance' = $2"
        " ORDER BY id DESC LIMIT 1",
        reason,
        instance,
    )
    if detail is None:
        return None
    parsed: dict[str, Any] = json.loads(detail)
    return parsed
