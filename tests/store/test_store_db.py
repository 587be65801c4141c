"""Where the database is: URL resolution and its precedence, URLs without secrets, the embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigil.config import DatabaseConfig
from sigil.errors import ConfigError
from sigil.store import Database
from sigil.store.locks import pair_key
from sigil.store.target import normalize_url, redact, resolve_target, with_database


def test_precedence_cli_then_env_then_config_then_embedded(tmp_path: Path) -> None:
    cfg = DatabaseConfig(url="postgresql://cfg@h/db")
    env = {"SIGIL_DATABASE_URL": "postgresql://env@h/db", "SIGIL_HOME": str(tmp_path)}
    assert resolve_target("postgresql://cli@h/db", cfg, env).url == "postgresql://cli@h/db"
    assert resolve_target(None, cfg, env).url == "postgresql://env@h/db"
    assert resolve_target(None, cfg, {"SIGIL_HOME": str(tmp_path)}).url == "postgresql://cfg@h/db"
    embedded = resolve_target(None, DatabaseConfig(), {"SIGIL_HOME": str(tmp_path)})
    assert embedded.embedded and embedded.pgdata == tmp_path.resolve() / "pgdata"
    assert embedded.describe() == f"embedded PostgreSQL in {tmp_path.resolve() / 'pgdata'}"
    # An empty value does not count as set.
    assert resolve_target("", cfg, {"SIGIL_DATABASE_URL": " "}).url == "postgresql://cfg@h/db"


def test_home_precedence(tmp_path: Path) -> None:
    cfg = DatabaseConfig(home=str(tmp_path / "cfg"))
    assert resolve_target(None, cfg, {}).home == (tmp_path / "cfg").resolve()
    assert (
        resolve_target(None, cfg, {"SIGIL_HOME": str(tmp_path / "env")}).home == (tmp_path / "env").resolve()
    )
    assert resolve_target(None, DatabaseConfig(), {}).home.name == "sigil"


def test_urls() -> None:
    assert normalize_url("postgresql+psycopg://u:p@h:5/d") == "postgresql://u:p@h:5/d"
    assert normalize_url("postgres://u@h/d") == "postgresql://u@h/d"
    assert (
        normalize_url("postgresql://postgres:@/sigil?host=/tmp/x")
        == "postgresql://postgres:@/sigil?host=/tmp/x"
    )
    for bad in ("http://h/d", "postgresql:///d", "localhost:5432", "postgresql://h:port/d"):
        with pytest.raises(ConfigError, match="--database-url"):
            normalize_url(bad, "--database-url")
    assert redact("postgresql://u:s3cret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert with_database("postgresql://u@/old?host=/tmp/s", "new") == "postgresql://u@/new?host=/tmp/s"


def test_pair_keys_are_stable_signed_64_bit_and_distinct() -> None:
    k = pair_key("baseline", "ABC/USDT")
    assert k == pair_key("baseline", "ABC/USDT") and -(2**63) <= k < 2**63
    keys = {pair_key(v, f"S{i}/USDT") for v in ("a", "b", "c", "d") for i in range(2000)}
    assert len(keys) == 8000
    assert pair_key("ab", "c") != pair_key("a", "bc")


async def test_embedded_server_is_shared_and_stopped_by_its_last_user(sigil_home: Path) -> None:
    """Two users in one process share the server; it stops when the last leaves, even when a user
    that was killed (a pid that no longer runs) never said goodbye."""
    target = resolve_target(None, DatabaseConfig(), {"SIGIL_HOME": str(sigil_home)})
    pid_file = target.pgdata / "postmaster.pid"
    first = await Database.open(target, min_size=1, max_size=1)
    second = await Database.open(target, min_size=1, max_size=1)
    try:
        assert first.url == second.url and first.url.endswith(f"/sigil?host={target.pgdata}")
        await first.close()
        async with second.connection("still up") as conn:
            assert await conn.fetchval("SELECT current_database()") == "sigil"
    finally:
        await second.close()
    assert not pid_file.exists()

    # A user that died without leaving (SIGKILL) must not keep the server running for ever.
    (target.pgdata / ".handle_pids.json").write_text(json.dumps([2**22 + 12345]))
    third = await Database.open(target, min_size=1, max_size=1)
    assert pid_file.exists()
    await third.close()
    assert not pid_file.exists()
