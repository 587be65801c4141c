"""Persistence on PostgreSQL (asyncpg): positions, cooldowns, accounts, heartbeats, the audit log.

Open one :class:`Database` per process (``await open_database(cli_url, config.settings.database)``),
run :func:`migrate` once, and hand the database to the stores:

- :class:`PositionStore` — opens (one transaction: advisory lock, re-check, insert, cooldown from the
  open, debit, event, NOTIFY) and closes positions;
- :class:`SymbolProtectionStore` — the only code that touches ``symbol_protections``;
- :class:`AccountStore`, :class:`HeartbeatStore`, :class:`EventStore`;
- :class:`GuardMirror` — the in-memory pre-signal guard, rebuilt at start-up and kept in step by
  LISTEN/NOTIFY.

The scheduler's job table has its own module, :mod:`sigil.store.jobs` (synchronous, on SQLAlchemy, and
not imported here so that commands without a scheduler do not load it).
"""

from __future__ import annotations

from sigil._core import SkipReason
from sigil.store.accounts import Account, AccountStore
from sigil.store.db import Database, DatabaseTarget, open_database, resolve_target
from sigil.store.events import Event, EventKind, EventStore
from sigil.store.guard_mirror import GuardMirror
from sigil.store.heartbeats import Heartbeat, HeartbeatStore, PassStats
from sigil.store.migrate import SchemaStatus, migrate, require_current, schema_status
from sigil.store.notify import GuardChange
from sigil.store.positions import OpenResult, Position, PositionStore
from sigil.store.protections import GuardState, Protection, SymbolProtectionStore

__all__ = [
    "Account",
    "AccountStore",
    "Database",
    "DatabaseTarget",
    "Event",
    "EventKind",
    "EventStore",
    "GuardChange",
    "GuardMirror",
    "GuardState",
    "Heartbeat",
    "HeartbeatStore",
    "OpenResult",
    "PassStats",
    "Position",
    "PositionStore",
    "Protection",
    "SchemaStatus",
    "SkipReason",
    "SymbolProtectionStore",
    "migrate",
    "open_database",
    "require_current",
    "resolve_target",
    "schema_status",
]
