"""Daemon instances in the database: the lease (one process per instance) and the share claims.

**The lease is a session-level advisory lock** (``pg_try_advisory_lock(lease_key(instance))``) held on
a connection of its own, outside the pool, for as long as the process runs. Why a lock rather than a
lease row with a TTL renewed by the holder:

* it ends the moment its holder's session ends, whoever ends it: a holder killed with -9 closes its
  socket and the server drops the session and the lock at once, so a standby can take over within
  its polling interval instead of waiting out a TTL (which must be long enough never to expire under a
  slow but live holder, so every failover would wait for it);
* the server keeps it: no renewal traffic, no clock to trust (a TTL compares times written by
  different machines), no "renewal came too late" race;
* not on a pooled connection: asyncpg's pool runs ``pg_advisory_unlock_all()`` when a connection goes
  back, so a session lock there would vanish at a moment nobody chose (hence the dedicated connection).

Its one weakness, a holder whose network vanishes without closing the socket, is bounded by TCP
keepalives on the lease session (:data:`KEEPALIVES`: the server drops a silent peer within about 25 s)
and, on the holder's side, by :mod:`sigil.daemon.lease` treating a lease it could not verify for
longer than that as lost.

**The row** ``daemon_instances`` (migration 0009) names the holder — host, pid, since, and the backend
pid of its lease session — so that a refused process can say who holds the instance, and records the
instance's share (``daemon.variants``, ``daemon.shard``). An instance is *live* when its recorded
session holds its lock (``pg_locks``), never because of the row alone: a holder killed with -9 leaves
its row behind, not its lock, and its claim then blocks nobody.

**Claims** (:func:`claim`) are serialised by a transaction-scoped advisory lock: the claim of an
instance whose share overlaps a live instance's (see :mod:`sigil.daemon.share`) is refused with
:class:`~sigil.errors.InstanceHeld` and writes nothing; two overlapping instances starting at once
cannot both pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sigil.daemon.share import Share
from sigil.errors import InstanceHeld
from sigil.store.db import Connection, Database
from sigil.store.positions import Position, PositionStore
from sigil.times import iso_z, to_ms

# Fixed prefixes keep these keys apart from the pair locks (sigil.store.locks) and any other use.
_LEASE_PREFIX = b"sigil.instance\x00"
#: Transaction-scoped lock serialising claims: "sigil-claims" in ASCII, truncated to 63 bits.
CLAIMS_KEY = 0x5369_6769_6C43_6C61

#: TCP keepalives of the lease session: the server drops a holder whose network went silent after
#: about idle + interval × count = 25 s (ignored on Unix sockets, where a dead peer is seen at once).
KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
#: How long a refused process looks for the row of a holder that has just taken the lock.
_HOLDER_WAIT_S = 2.0


def lease_key(instance: str) -> int:
    """The signed 64-bit advisory lock key of ``instance``'s lease, the same in every process."""
    digest = hashlib.blake2b(_LEASE_PREFIX + instance.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    """``pg_locks`` shows a bigint advisory key as two oids: (classid, objid)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


@dataclass(frozen=True)
class Holder:
    """A process holding (or, in a row, last holding) an instance's lease, and its share."""

    instance: str
    host: str
    pid: int
    since: datetime
    backend_pid: int
    share: Share

    def describe(self) -> str:
        """``pid 1234 on host box since 2026-01-02T03:04:05Z``."""
        return f"pid {self.pid} on host {self.host} since {iso_z(to_ms(self.since))}"


def this_process() -> tuple[str, int]:
    """(host, pid) of this process, as a holder row records them."""
    return socket.gethostname(), os.getpid()


async def configure_session(conn: Connection, instance: str) -> None:
    """Keepalives, and an ``application_name`` that names the instance and the process in
    ``pg_stat_activity`` (and so to a refused process before the holder's row is written)."""
    host, pid = this_process()
    for name, value in KEEPALIVES.items():
        await conn.execute(f"SET {name} = {int(value)}")
    await conn.execute(
        "SELECT set_config('application_name', $1, false)", f"sigil lease {instance} {host}:{pid}"[:63]
    )


async def try_lock(conn: Connection, instance: str) -> bool:
    """Takes ``instance``'s lease for the session of ``conn`` if it is free."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lease_key(instance)))


async def unlock(conn: Connection, instance: str) -> None:
    """Gives ``instance``'s lease back (closing the connection does too)."""
    await conn.execute("SELECT pg_advisory_unlock($1)", lease_key(instance))


async def _lock_holders(conn: Connection) -> dict[int, int]:
    """Backend pid of every session holding a session-level advisory lock on this database, by key."""
    rows = await conn.fetch(
        "SELECT pid, classid::int8 AS hi, objid::int8 AS lo FROM pg_locks WHERE locktype = 'advisory'"
        " AND objsubid = 1 AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    out: dict[int, int] = {}
    for r in rows:
        key = int.from_bytes(((r["hi"] << 32) | r["lo"]).to_bytes(8, "big"), "big", signed=True)
        out[key] = r["pid"]
    return out


def _holder(r: Any) -> Holder:
    share = Share(tuple(r["variants"]), r["shard_index"], r["shard_count"])
    return Holder(r["instance"], r["host"], r["pid"], r["since"], r["backend_pid"], share)


async def recorded(conn: Connection, instance: str) -> Holder | None:
    """The row of ``instance`` (its last holder), or None."""
    r = await conn.fetchrow("SELECT * FROM daemon_instances WHERE instance = $1", instance)
    return None if r is None else _holder(r)


async def holder(conn: Connection, instance: str) -> str:
    """Who holds ``instance``'s lease now, in words (``pid 1234 on host box since …``).

    The holder writes its row just after it took the lock, so a row that does not name the lock's
    session yet is looked at again for a moment; after that the session's ``application_name``
    (set by :func:`configure_session`) stands in.
    """
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        backend = (await _lock_holders(conn)).get(lease_key(instance))
        if backend is None:
            return "nobody any more (the lease has just been given back)"
        row = await recorded(conn, instance)
        if row is not None and row.backend_pid == backend:
            return row.describe()
        if time.monotonic() > deadline:
            name = await conn.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1", backend
            )
            return f"database session {backend} ({name or 'no name'}; it has not recorded its process yet)"
        await asyncio.sleep(0.05)


async def live_instances(conn: Connection) -> list[Holder]:
    """Every instance whose recorded session holds its lease now."""
    holders = await _lock_holders(conn)
    rows = await conn.fetch("SELECT * FROM daemon_instances ORDER BY instance")
    return [h for h in map(_holder, rows) if holders.get(lease_key(h.instance)) == h.backend_pid]


async def claim(conn: Connection, instance: str, share: Share, since: datetime | None = None) -> Holder:
    """Records this process as the holder of ``instance`` (whose lease the session of ``conn`` must
    hold) with its ``share``; returns the row. ``since`` keeps the time of a lease taken back.

    Raises :class:`~sigil.errors.InstanceHeld` naming the other instance and its holder, writing
    nothing, when ``share`` overlaps the share of a live instance.
    """
    host, pid = this_process()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIMS_KEY)
        for other in await live_instances(conn):
            if other.instance != instance and share.overlaps(other.share):
                raise InstanceHeld(
                    f"the share of instance {instance!r} ({share.describe()}) overlaps the share of live"
                    f" instance {other.instance!r} ({other.share.describe()}), held by {other.describe()}:"
                    " give them disjoint daemon.variants or daemon.shard",
                    holder=other.describe(),
                )
        r = await conn.fetchrow(
            "INSERT INTO daemon_instances"
            " (instance, host, pid, since, backend_pid, variants, shard_index, shard_count)"
            " VALUES ($1, $2, $3, coalesce($4, now()), pg_backend_pid(), $5, $6, $7)"
            " ON CONFLICT (instance) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
            " since = excluded.since, backend_pid = excluded.backend_pid, variants = excluded.variants,"
            " shard_index = excluded.shard_index, shard_count = excluded.shard_count, updated_at = now()"
            " RETURNING *",
            instance,
            host,
            pid,
            since,
            list(share.variants),
            share.index,
            share.count,
        )
    return _holder(r)


async def still_held(conn: Connection, me: Holder) -> bool:
    """True when the session of ``conn`` holds ``me``'s lease and the row still names ``me``."""
    hi, lo = _halves(lease_key(me.instance))
    r = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
        " AND pid = pg_backend_pid() AND classid = $1::int8::oid AND objid = $2::int8::oid) AS locked,"
        " (SELECT backend_pid = pg_backend_pid() AND host = $4 AND pid = $5"
        "  FROM daemon_instances WHERE instance = $3) AS recorded",
        hi,
        lo,
        me.instance,
        me.host,
        me.pid,
    )
    return bool(r["locked"]) and bool(r["recorded"])


async def all_instances(db: Database) -> list[tuple[Holder, bool]]:
    """Every recorded instance, with whether it is live (for ``sigil status`` and the tests)."""
    async with db.connection("read daemon instances") as conn:
        live = {h.instance for h in await live_instances(conn)}
        rows = await conn.fetch("SELECT * FROM daemon_instances ORDER BY instance")
    return [(h, h.instance in live) for h in map(_holder, rows)]


class SharePositions(PositionStore):
    """The position store as one instance sees it: every read the daemon rebuilds from (open
    positions, positions since a resume point, last opens) holds only the pairs ``owns`` is true of,
    so an instance never restores, settles or closes another instance's positions. Writes are the
    store's own (the database's guard, limits and balances stay shared)."""

    def __init__(self, db: Database, owns: Callable[[str, str], bool], **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        self.owns = owns

    async def open_positions(self, variant: str | None = None) -> list[Position]:
        """Open positions of the share (of one variant, or all), oldest first."""
        return [p for p in await super().open_positions(variant) if self.owns(p.variant, p.symbol)]

    async def since(self, at: datetime) -> list[Position]:
        """Positions of the share open now or closed after ``at``, oldest open first."""
        return [p for p in await super().since(at) if self.owns(p.variant, p.symbol)]

    async def last_opens(self, at: datetime) -> dict[tuple[str, str], datetime]:
        """The latest open time at or before ``at`` of every pair of the share that ever opened."""
        return {k: v for k, v in (await super().last_opens(at)).items() if self.owns(*k)}
