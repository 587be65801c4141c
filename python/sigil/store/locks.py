"""Transaction-scoped advisory locks on one (variant, symbol).

Every change to a pair's guard state (open, close, protection) holds the pair's lock until its
transaction ends. The locks are transaction-scoped on purpose: asyncpg's pool runs
``pg_advisory_unlock_all()`` when a connection goes back, so a session lock taken on a pooled
connection would be released at a moment nobody chose, or kept by a connection that is reused.
"""

from __future__ import annotations

import hashlib

from sigil.store.db import Connection

# A fixed prefix keeps pair keys apart from any other use of advisory locks on the same server.
_KEY_PREFIX = b"sigil.pair\x00"


def pair_key(variant: str, symbol: str) -> int:
    """The signed 64-bit advisory lock key of (variant, symbol), the same in every process."""
    digest = hashlib.blake2b(
        _KEY_PREFIX + variant.encode() + b"\x00" + symbol.encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def try_lock_pair(conn: Connection, variant: str, symbol: str) -> bool:
    """Takes the pair's lock for the current transaction if it is free; False when another holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", pair_key(variant, symbol)))


async def lock_pair(conn: Connection, variant: str, symbol: str) -> None:
    """Takes the pair's lock for the current transaction, waiting for its holder to finish."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", pair_key(variant, symbol))
