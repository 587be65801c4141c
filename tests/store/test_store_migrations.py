"""Migrations: fresh database, re-run, changed file, concurrent runs, and the variant_id step on old data."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from sigil.errors import MigrationError, SchemaNotReady
from sigil.store import Database, migrate, require_current, schema_status
from sigil.store.migrate import default_source, load_migrations

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def empty_db(empty_db_url: str) -> AsyncIterator[Database]:
    db = await Database.open(empty_db_url, min_size=1, max_size=2)
    yield db
    await db.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """The shipped migrations copied to a folder the test may edit."""
    out = tmp_path / "migrations"
    out.mkdir()
    for f in default_source().iterdir():
        if f.name.endswith(".sql"):
            (out / f.name).write_bytes(f.read_bytes())
    return out


async def _tables(db: Database) -> set[str]:
    async with db.connection("t") as conn:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def test_shipped_files_are_numbered_in_order() -> None:
    ms = load_migrations()
    assert [m.version for m in ms] == list(range(1, len(ms) + 1))
    assert ms[0].filename == "0001_micro_positions.sql"
    assert Path("migrations").resolve() == Path(str(default_source())).resolve(), "repo-root symlink"


async def test_fresh_database_then_rerun_is_a_noop(empty_db: Database) -> None:
    with pytest.raises(SchemaNotReady, match="sigil migrate"):
        await require_current(empty_db)
    applied = await migrate(empty_db)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert {
        "micro_positions",
        "symbol_protections",
        "variant_accounts",
        "scanner_heartbeats",
        "events",
        "apscheduler_jobs",
        "schema_migrations",
    } <= await _tables(empty_db)
    status = await require_current(empty_db)
    assert status.current and status.version == len(applied)
    async with empty_db.connection("t") as conn:
        before = await conn.fetch(
            "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version"
        )
        assert all(r["applied_at"].tzinfo is not None for r in before)
    assert await migrate(empty_db) == []
    async with empty_db.connection("t") as conn:
        after = await conn.fetch(
            "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version"
        )
    assert before == after


async def test_changed_applied_file_is_refused(empty_db: Database, migrations_copy: Path) -> None:
    await migrate(empty_db, source=migrations_copy)
    f = migrations_copy / "0002_protections_accounts_heartbeats_events.sql"
    f.write_text(f.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"0002_protections_accounts_heartbeats_events\.sql has changed"):
        await migrate(empty_db, source=migrations_copy)
    status = await schema_status(empty_db, migrations_copy)
    assert [m.version for m in status.changed] == [2]
    with pytest.raises(MigrationError, match="has changed"):
        await require_current(empty_db, migrations_copy)


async def test_new_file_is_applied_and_unknown_version_refused(
    empty_db: Database, migrations_copy: Path
) -> None:
    await migrate(empty_db, source=migrations_copy)
    (migrations_copy / "0099_extra.sql").write_text("CREATE TABLE extra (id int);\n")
    assert [m.version for m in await migrate(empty_db, source=migrations_copy)] == [99]
    (migrations_copy / "0099_extra.sql").unlink()
    with pytest.raises(MigrationError, match=r"does not know \(0099_extra\)"):
        await migrate(empty_db, source=migrations_copy)


async def test_failing_file_rolls_back_and_keeps_earlier_ones(
    empty_db: Database, migrations_copy: Path
) -> None:
    shipped = max(m.version for m in load_migrations(migrations_copy))
    (migrations_copy / "0099_broken.sql").write_text(
        "CREATE TABLE half (id int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(MigrationError, match=r"0099_broken\.sql failed and was rolled back"):
        await migrate(empty_db, source=migrations_copy)
    status = await schema_status(empty_db, migrations_copy)
    assert status.version == shipped and [m.version for m in status.pending] == [99]
    assert "half" not in await _tables(empty_db)


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_words\.sql"):
        load_migrations(tmp_path)
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="also used by"):
        load_migrations(tmp_path)


async def test_two_concurrent_runs_take_turns(empty_db_url: str) -> None:
    dbs = [await Database.open(empty_db_url, min_size=1, max_size=1) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(d) for d in dbs))
        assert sorted(len(r) for r in results) == [0, 0, len(load_migrations())]
        assert (await require_current(dbs[0])).current
    finally:
        for d in dbs:
            await d.close()


async def test_variant_id_step_on_populated_database_with_duplicates(empty_db: Database) -> None:
    """0001 has no variant_id; rows written then, duplicates included, survive 0003 settled."""
    assert [m.version for m in await migrate(empty_db, target=2)] == [1, 2]
    rows = [
        # (strategy, symbol, status, opened_at offset in hours)
        ("baseline", "AAA/USDT", "open", 0),
        ("baseline", "AAA/USDT", "open", 2),  # duplicate: closed by 0003
        ("baseline", "AAA/USDT", "open", 1),  # duplicate: closed by 0003
        ("moderate", "AAA/USDT", "open", 5),  # another variant: kept
        ("baseline", "BBB/USDT", "closed", 0),
        ("baseline", "BBB/USDT", "open", 3),  # the only open one: kept
        (None, "CCC/USDT", "open", 0),  # no tag: variant 'legacy'
        ("  ", "CCC/USDT", "open", 1),  # blank tag: 'legacy' too, and a duplicate of the row above
    ]
    async with empty_db.connection("seed") as conn:
        for strategy, symbol, status, hours in rows:
            await conn.execute(
                "INSERT INTO micro_positions (strategy, symbol, status, opened_at, entry_price, qty,"
                " stake, entry_fee, stop_pct, stop_price)"
                " VALUES ($1, $2, $3, $4, 1.0, 10.0, 10.0, 0.01, 0.03, 0.97)",
                strategy,
                symbol,
                status,
                T0 + timedelta(hours=hours),
            )
    assert [m.version for m in await migrate(empty_db)] == [m.version for m in load_migrations()][2:]
    async with empty_db.connection("check") as conn:
        got = await conn.fetch(
            "SELECT id, variant_id, symbol, status, opened_at, exit_reason FROM micro_positions ORDER BY id"
        )
        events = await conn.fetch(
            "SELECT kind, reason, position_id, variant_id FROM events ORDER BY position_id"
        )
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'micro_positions'"
            )
        }
        nullable = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'micro_positions' AND column_name = 'variant_id'"
        )
        # The partial unique index now stands guard.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO micro_positions (variant_id, symbol, status, opened_at, entry_price, qty, stake,"
                " stop_pct, stop_price) VALUES ('baseline', 'AAA/USDT', 'open', now(), 1, 1, 1, 0.03, 0.97)"
            )
    assert "strategy" not in columns and nullable == "NO"
    by_id = {r["id"]: r for r in got}
    assert [(r["variant_id"], r["status"], r["exit_reason"]) for r in got] == [
        ("baseline", "open", None),
        ("baseline", "closed", "duplicate_open"),
        ("baseline", "closed", "duplicate_open"),
        ("moderate", "open", None),
        ("baseline", "closed", None),
        ("baseline", "open", None),
        ("legacy", "open", None),
        ("legacy", "closed", "duplicate_open"),
    ]
    # Exactly one open row per (variant, symbol), and it is the oldest one.
    opens = [r for r in got if r["status"] == "open"]
    assert len({(r["variant_id"], r["symbol"]) for r in opens}) == len(opens)
    assert by_id[1]["opened_at"] < by_id[3]["opened_at"] < by_id[2]["opened_at"]
    assert [(e["kind"], e["reason"], e["position_id"]) for e in events] == [
        ("close", "duplicate_open", 2),
        ("close", "duplicate_open", 3),
        ("close", "duplicate_open", 8),
    ]
