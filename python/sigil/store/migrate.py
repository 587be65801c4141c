"""Schema migrations: numbered SQL files applied in order, each in its own transaction.

The files ship inside the package (``sigil/defaults/migrations``, ``migrations/`` in the source tree)
and are named ``NNNN_what.sql``. ``schema_migrations`` records the version, name and SHA-256 of each
applied file. :func:`migrate` refuses to touch a database whose applied files have changed since, or
that holds a version this release does not know; two processes migrating at once take turns on a
session-level advisory lock, and a second run finds nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigil.defaults import migrations_dir
from sigil.errors import MigrationError, SchemaNotReady

#: Advisory lock key serialising migrations (an arbitrary constant: "sigil-migrate" in ASCII, truncated).
MIGRATE_LOCK_KEY = 0x5369_6769_6C4D_6967

if TYPE_CHECKING:
    from importlib.abc import Traversable

    from sigil.store.db import Connection, Database
    from sigil.store.wire import WireConnection

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str = field(repr=False)
    checksum: str

    @property
    def filename(self) -> str:
        """The file's name, ``NNNN_name.sql``."""
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """How a database's schema compares with this release's migrations."""

    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    #: Applied files whose content differs from the file shipped now.
    changed: tuple[Migration, ...]
    #: Versions in the database that this release does not ship (a newer release migrated it).
    unknown: tuple[AppliedMigration, ...]

    @property
    def current(self) -> bool:
        """True when every shipped migration is applied, unchanged, and nothing unknown is there."""
        return not (self.pending or self.changed or self.unknown)

    @property
    def version(self) -> int:
        """The highest applied version (0 for an empty database)."""
        return max((a.version for a in self.applied), default=0)


def default_source() -> Path:
    """The migrations shipped with the package."""
    return migrations_dir()


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """The migration files of ``source`` (default: the shipped ones), in version order.

    A ``.sql`` file with a malformed name or a repeated version raises :class:`MigrationError`.
    """
    root = source if source is not None else default_source()
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE_NAME.match(entry.name)
        if m is None:
            raise MigrationError(f"{entry.name}: a migration file is named NNNN_lowercase_words.sql")
        data = entry.read_bytes()
        mig = Migration(
            version=int(m["version"]),
            name=m["name"],
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
        if mig.version in found:
            raise MigrationError(
                f"{mig.filename}: version {mig.version} is also used by {found[mig.version].filename}"
            )
        found[mig.version] = mig
    return [found[v] for v in sorted(found)]


async def _create_history_table(conn: Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


_HISTORY_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL AS present"
_APPLIED = "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"


async def applied_migrations(conn: Connection) -> list[AppliedMigration]:
    """The rows of ``schema_migrations`` in version order (none when the table does not exist)."""
    if not await conn.fetchval(_HISTORY_EXISTS):
        return []
    return [_applied(r) for r in await conn.fetch(_APPLIED)]


def applied_migrations_wire(conn: WireConnection) -> list[AppliedMigration]:
    """:func:`applied_migrations` over the probe's synchronous connection."""
    if not conn.fetch(_HISTORY_EXISTS)[0]["present"]:
        return []
    return [_applied(r) for r in conn.fetch(_APPLIED)]


def _applied(r: Any) -> AppliedMigration:
    return AppliedMigration(r["version"], r["name"], r["checksum"], r["applied_at"])


async def _record(conn: Connection, m: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        m.version,
        m.name,
        m.checksum,
    )


def compare(applied: list[AppliedMigration], shipped: list[Migration]) -> SchemaStatus:
    """Compares the database's history with the shipped files."""
    by_version = {m.version: m for m in shipped}
    done = {a.version for a in applied}
    return SchemaStatus(
        applied=tuple(applied),
        pending=tuple(m for m in shipped if m.version not in done),
        changed=tuple(
            by_version[a.version]
            for a in applied
            if a.version in by_version and by_version[a.version].checksum != a.checksum
        ),
        unknown=tuple(a for a in applied if a.version not in by_version),
    )


async def schema_status(db: Database, source: Traversable | Path | None = None) -> SchemaStatus:
    """How ``db``'s schema compares with the migrations of ``source`` (default: the shipped ones)."""
    shipped = load_migrations(source)
    async with db.connection("schema status") as conn:
        return compare(await applied_migrations(conn), shipped)


def _refusal(status: SchemaStatus) -> MigrationError | None:
    if status.changed:
        m = status.changed[0]
        return MigrationError(
            f"migration {m.filename} has changed since it was applied to this database "
            f"(checksum {m.checksum[:12]} now, {_applied_checksum(status, m.version)[:12]} when applied); "
            "restore the original file and put the change in a new migration"
        )
    if status.unknown:
        versions = ", ".join(f"{a.version:04d}_{a.name}" for a in status.unknown)
        return MigrationError(
            f"the database has migrations this version of Sigil does not know ({versions}); "
            "it was migrated by a newer release: upgrade Sigil"
        )
    return None


def _applied_checksum(status: SchemaStatus, version: int) -> str:
    return next(a.checksum for a in status.applied if a.version == version)


async def migrate(
    db: Database, *, source: Traversable | Path | None = None, target: int | None = None
) -> list[Migration]:
    """Applies the pending migrations (up to version ``target``, default all) and returns them.

    Each file runs in its own transaction together with its ``schema_migrations`` row, so a failing
    file leaves the database at the previous version. Refuses (``MigrationError``, nothing applied)
    when an applied file has changed or the database knows versions that ``source`` does not.
    """
    shipped = load_migrations(source)
    # A dedicated connection: the session-level lock must outlive the per-file transactions, and a
    # pooled connection would have it dropped (pg_advisory_unlock_all) when returned to the pool.
    # asyncpg's error classes, imported here: the probe's schema check (this module) loads no driver.
    from sigil.store.db import is_unavailable, unavailable_as_error

    conn = await db.connect_direct("migrate")
    try:
        with unavailable_as_error("migrate", conn):
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_KEY)
            try:
                await _create_history_table(conn)
                status = compare(await applied_migrations(conn), shipped)
                refusal = _refusal(status)
                if refusal is not None:
                    raise refusal
                applied: list[Migration] = []
                for m in status.pending:
                    if target is not None and m.version > target:
                        break
                    try:
                        async with conn.transaction():
                            await conn.execute(m.sql)
                            await _record(conn, m)
                    except Exception as e:
                        if is_unavailable(e, conn):
                            raise
                        raise MigrationError(f"migration {m.filename} failed and was rolled back: {e}") from e
                    applied.append(m)
                return applied
            finally:
                if not conn.is_closed():
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK_KEY)
    finally:
        await conn.close()


async def require_current(db: Database, source: Traversable | Path | None = None) -> SchemaStatus:
    """The schema status; raises :class:`SchemaNotReady` (or the refusal) unless it is current."""
    return check_current(await schema_status(db, source))


def check_current(status: SchemaStatus) -> SchemaStatus:
    """``status`` when the schema is current; else raises the refusal or :class:`SchemaNotReady`."""
    refusal = _refusal(status)
    if refusal is not None:
        raise refusal
    if status.pending:
        raise SchemaNotReady(
            f"the database schema is at version {status.version}, this release needs "
            f"{status.pending[-1].version}: run `sigil migrate`"
        )
    return status


def require_current_wire(conn: WireConnection, source: Traversable | Path | None = None) -> SchemaStatus:
    """:func:`require_current` over the probe's synchronous connection."""
    return check_current(compare(applied_migrations_wire(conn), load_migrations(source)))
