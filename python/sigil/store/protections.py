"""Cooldowns: ``SymbolProtectionStore``, the only code that reads or writes ``symbol_protections``.

A protection says a (variant, symbol) may not open again before ``protected_until``. The open of a
position writes it in the same transaction, from the OPEN time (``PositionStore.open_position``); a
close leaves it as it is. A protection only ever grows: writing an earlier end keeps the later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sigil._core import SkipReason
from sigil.store import _checks
from sigil.store.db import Connection, Database
from sigil.store.locks import lock_pair
from sigil.store.notify import GuardChange, next_seq, send, until_ms


@dataclass(frozen=True, slots=True)
class Protection:
    """A row of ``symbol_protections``."""

    variant: str
    symbol: str
    protected_until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class GuardState:
    """What the database says about one (variant, symbol): its open position and its protection."""

    variant: str
    symbol: str
    open_position_id: int | None
    protected_until: datetime | None

    @property
    def open(self) -> bool:
        """A position is open."""
        return self.open_position_id is not None

    def blocked(self, at: datetime) -> SkipReason | None:
        """Why the pair may not open at ``at`` (``open`` first, then ``cooldown``), or None."""
        if self.open_position_id is not None:
            return SkipReason.OPEN
        if self.protected_until is not None and at < self.protected_until:
            return SkipReason.COOLDOWN
        return None


def _protection(r: Any) -> Protection:
    return Protection(r["variant_id"], r["symbol"], r["protected_until"], r["reason"])


class SymbolProtectionStore:
    """protect, is_protected, active, expire — and the guard's view of a pair for the open path."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def protect(
        self,
        variant: str,
        symbol: str,
        until: datetime,
        reason: str,
        *,
        conn: Connection | None = None,
    ) -> datetime:
        """Protects (variant, symbol) until ``until`` (a later end stays) and returns the end in force.

        Without ``conn`` this is its own transaction: it takes the pair's lock and announces the change
        to the guard mirrors. With ``conn`` it joins the caller's transaction, and the caller (which
        holds the pair's lock) announces the change.
        """
        variant = _checks.name("variant", variant)
        symbol = _checks.name("symbol", symbol)
        until = _checks.utc("until", until)
        if not reason:
            raise ValueError("a protection needs a reason")
        if conn is not None:
            return await _upsert(conn, variant, symbol, until, reason)
        async with self._db.transaction("protect") as c:
            await lock_pair(c, variant, symbol)
            end = await _upsert(c, variant, symbol, until, reason)
            await send(c, GuardChange(variant, symbol, None, until_ms(end), await next_seq(c)))
        return end

    async def protected_until(
        self, variant: str, symbol: str, *, conn: Connection | None = None
    ) -> datetime | None:
        """The end of the pair's protection (past or future), or None when it has none."""
        if conn is not None:
            return await _select_until(conn, variant, symbol)
        async with self._db.connection("read protection") as c:
            return await _select_until(c, variant, symbol)

    async def is_protected(self, variant: str, symbol: str, at: datetime) -> bool:
        """True when the pair is protected at ``at``."""
        at = _checks.utc("at", at)
        end = await self.protected_until(variant, symbol)
        return end is not None and at < end

    async def active(self, at: datetime, *, variant: str | None = None) -> list[Protection]:
        """Protections still in force at ``at``, soonest end first."""
        at = _checks.utc("at", at)
        async with self._db.connection("read protections") as conn:
            rows = await conn.fetch(
                "SELECT variant_id, symbol, protected_until, reason FROM symbol_protections"
                " WHERE protected_until > $1 AND ($2::text IS NULL OR variant_id = $2)"
                " ORDER BY protected_until, variant_id, symbol",
                at,
                variant,
            )
        return [_protection(r) for r in rows]

    async def expire(self, before: datetime) -> int:
        """Deletes protections that ended at or before ``before``; returns how many.

        An ended protection blocks nothing, so no guard mirror needs to hear of it.
        """
        before = _checks.utc("before", before)
        async with self._db.connection("expire protections") as conn:
            status = await conn.execute("DELETE FROM symbol_protections WHERE protected_until <= $1", before)
        return int(status.split()[-1])

    async def guard_state(self, variant: str, symbol: str, *, conn: Connection | None = None) -> GuardState:
        """The pair's open position and protection, read in one statement (the open path's re-check, and
        the database's answer to the pre-signal guard)."""
        if conn is not None:
            return await _select_guard_state(conn, variant, symbol)
        async with self._db.connection("read guard state") as c:
            return await _select_guard_state(c, variant, symbol)

    async def guard_states(self, *, conn: Connection | None = None) -> list[GuardState]:
        """Every pair that has an open position or a protection row (the guard mirror's rebuild)."""
        if conn is not None:
            return await _select_guard_states(conn)
        async with self._db.connection("read guard states") as c:
            return await _select_guard_states(c)


async def _upsert(conn: Connection, variant: str, symbol: str, until: datetime, reason: str) -> datetime:
    end: datetime = await conn.fetchval(
        """
        INSERT INTO symbol_protections AS p (variant_id, symbol, protected_until, reason)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (variant_id, symbol) DO UPDATE
        SET protected_until = GREATEST(p.protected_until, EXCLUDED.protected_until),
            reason = CASE WHEN EXCLUDED.protected_until > p.protected_until
                          THEN EXCLUDED.reason ELSE p.reason END,
            updated_at = now()
        RETURNING protected_until
        """,
        variant,
        symbol,
        until,
        reason,
    )
    return end


async def _select_until(conn: Connection, variant: str, symbol: str) -> datetime | None:
    end: datetime | None = await conn.fetchval(
        "SELECT protected_until FROM symbol_protections WHERE variant_id = $1 AND symbol = $2",
        variant,
        symbol,
    )
    return end


async def _select_guard_state(conn: Connection, variant: str, symbol: str) -> GuardState:
    r = await conn.fetchrow(
        """
        SELECT (SELECT id FROM micro_positions
                WHERE variant_id = $1 AND symbol = $2 AND status = 'open' ORDER BY id LIMIT 1) AS open_id,
               (SELECT protected_until FROM symbol_protections
                WHERE variant_id = $1 AND symbol = $2) AS protected_until
        """,
        variant,
        symbol,
    )
    return GuardState(variant, symbol, r["open_id"], r["protected_until"])


async def _select_guard_states(conn: Connection) -> list[GuardState]:
    rows = await conn.fetch(
        """
        SELECT coalesce(o.variant_id, p.variant_id) AS variant_id,
               coalesce(o.symbol, p.symbol) AS symbol,
               o.id AS open_id,
               p.protected_until
        FROM (SELECT id, variant_id, symbol FROM micro_positions WHERE status = 'open') AS o
        FULL OUTER JOIN symbol_protections AS p ON p.variant_id = o.variant_id AND p.symbol = o.symbol
        """
    )
    return [GuardState(r["variant_id"], r["symbol"], r["open_id"], r["protected_until"]) for r in rows]
