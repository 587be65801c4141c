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
not imported here so that commands without a scheduler do not load it); so have the rows of
``sigil optimize``'s Optuna studies, :mod:`sigil.store.study_rows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Imported now: ``migrate`` is also the name of its module, which the import system would otherwise
# bind here in the function's place the first time any code imports ``sigil.store.migrate``.
from sigil._lazy import lazy_exports
from sigil.store.migrate import SchemaStatus, migrate, require_current, schema_status

if TYPE_CHECKING:
    from sigil._core import SkipReason
    from sigil.store.accounts import Account, AccountStore
    from sigil.store.db import Database, open_database
    from sigil.store.events import Event, EventKind, EventStore
    from sigil.store.guard_mirror import GuardMirror
    from sigil.store.heartbeats import Heartbeat, HeartbeatStore, PassStats
    from sigil.store.notify import GuardChange
    from sigil.store.positions import OpenResult, Position, PositionStore
    from sigil.store.protections import GuardState, Protection, SymbolProtectionStore
    from sigil.store.target import DatabaseTarget, resolve_target

#: Where each name lives. Imported on first use: ``sigil probe`` needs the heartbeats and the schema
#: check, not the position or guard stores (about a third of its start-up on their own).
_HOME = {
    "SkipReason": "sigil._core",
    **dict.fromkeys(("Account", "AccountStore"), "sigil.store.accounts"),
    **dict.fromkeys(("Database", "open_database"), "sigil.store.db"),
    **dict.fromkeys(("DatabaseTarget", "resolve_target"), "sigil.store.target"),
    **dict.fromkeys(("Event", "EventKind", "EventStore"), "sigil.store.events"),
    "GuardMirror": "sigil.store.guard_mirror",
    **dict.fromkeys(("Heartbeat", "HeartbeatStore", "PassStats"), "sigil.store.heartbeats"),
    "GuardChange": "sigil.store.notify",
    **dict.fromkeys(("OpenResult", "Position", "PositionStore"), "sigil.store.positions"),
    **dict.fromkeys(("GuardState", "Protection", "SymbolProtectionStore"), "sigil.store.protections"),
}

__getattr__ = lazy_exports(globals(), _HOME)


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
