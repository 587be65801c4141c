"""Guard changes announced to every process on the database (LISTEN/NOTIFY).

A change is sent inside the transaction that makes it (``pg_notify`` is transactional: listeners hear
it only after the commit, and never when the transaction rolls back). ``seq`` comes from
``guard_change_seq`` while the pair's advisory lock is held, so for one (variant, symbol) it grows in
commit order and a listener can drop a change older than the one it already applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sigil.store._checks import to_ms_ceil
from sigil.store.db import Connection

#: The channel every guard change is sent on.
GUARD_CHANNEL = "sigil_guard"


@dataclass(frozen=True, slots=True)
class GuardChange:
    """The state of one (variant, symbol) after a committed change."""

    variant: str
    symbol: str
    #: Open after the change; None = unchanged (a protection set on its own).
    open: bool | None
    #: End of the protection in force (epoch ms, rounded up), None = none.
    protected_until_ms: int | None
    seq: int

    def encode(self) -> str:
        """The NOTIFY payload."""
        return json.dumps(
            {
                "v": self.variant,
                "s": self.symbol,
                "o": self.open,
                "u": self.protected_until_ms,
                "q": self.seq,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, payload: str) -> GuardChange:
        """Parses a payload; ValueError when it is not one of ours."""
        try:
            d = json.loads(payload)
            change = cls(str(d["v"]), str(d["s"]), d["o"], d["u"], int(d["q"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"not a guard change: {payload[:80]!r}") from e
        if change.open not in (True, False, None) or not (
            change.protected_until_ms is None or isinstance(change.protected_until_ms, int)
        ):
            raise ValueError(f"not a guard change: {payload[:80]!r}")
        return change


async def next_seq(conn: Connection) -> int:
    """The next change number (call it while holding the pair's advisory lock)."""
    return int(await conn.fetchval("SELECT nextval('guard_change_seq')"))


async def send(conn: Connection, change: GuardChange) -> None:
    """Announces ``change`` when the current transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", GUARD_CHANNEL, change.encode())


def until_ms(value: datetime | None) -> int | None:
    """A protection end as epoch ms for a change (rounded up), or None."""
    return None if value is None else to_ms_ceil(value)
