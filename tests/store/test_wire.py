"""The probe's synchronous client (:mod:`sigil.store.wire`) against the real server: what it reads
equals what asyncpg reads, each authentication it speaks, and every connection it must leave to asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from sigil.store import Database, HeartbeatStore, PassStats
from sigil.store.heartbeats import latest_heartbeat_wire
from sigil.store.migrate import applied_migrations, applied_migrations_wire
from sigil.store.target import SERVER_SETTINGS
from sigil.store.wire import WireConnection, WireError, WireParams, WireTimeout, WireUnsupported
from tests.support.pg import ENV_TEST_URL, PgServer, db_name

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-Pw"
#: Role → the authentication pg_hba.conf asks of it over the Unix socket.
ROLES = {"sigil_wire_scram": "scram-sha-256", "sigil_wire_md5": "md5", "sigil_wire_plain": "password"}


def socket_dir(url: str) -> str:
    return dict(q.split("=", 1) for q in urlsplit(url).query.split("&"))["host"]


def connect(url: str, seconds: float = 10.0) -> WireConnection:
    return WireConnection.open(
        WireParams.from_url(url, environ={}), time.monotonic() + seconds, SERVER_SETTINGS
    )


def role_url(db_url: str, role: str, password: str = PASSWORD) -> str:
    return f"postgresql://{role}:{quote(password)}@/{db_name(db_url)}?host={socket_dir(db_url)}"


async def two_heartbeats(url: str) -> None:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        now = datetime.now(UTC).replace(microsecond=123456)
        await HeartbeatStore(db, "main").record(PassStats(now - timedelta(seconds=2.5), now, 7, errors=1))
        await HeartbeatStore(db, "other").record(
            PassStats(
                now - timedelta(seconds=1),
                now + timedelta(milliseconds=1),
                3,
                candles_decided=5,
                market_time=datetime(2024, 1, 1, 1, tzinfo=UTC),
                exchange_time=datetime(2024, 1, 1, 3, 0, 0, 5, tzinfo=UTC),
            )
        )
    finally:
        await db.close()


async def asyncpg_reads(url: str) -> tuple[Any, ...]:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        store = HeartbeatStore(db)
        async with db.connection("test") as conn:
            applied = await applied_migrations(conn)
        return applied, await store.latest(), await store.latest("main"), await store.latest("nobody")
    finally:
        await db.close()


def test_it_reads_what_asyncpg_reads(db_url: str) -> None:
    asyncio.run(two_heartbeats(db_url))
    expected = asyncio.run(asyncpg_reads(db_url))
    with connect(db_url) as conn:
        got = (
            applied_migrations_wire(conn),
            latest_heartbeat_wire(conn),
            latest_heartbeat_wire(conn, "main"),
            latest_heartbeat_wire(conn, "nobody"),
        )
    assert got == expected
    assert got[1] is not None and got[1].instance == "other" and got[1].market_time is not None
    assert got[2] is not None and got[2].errors == 1 and got[2].market_time is None


def test_values_nulls_and_a_refused_statement(db_url: str) -> None:
    with connect(db_url) as conn:
        row = conn.fetch(
            "SELECT $1::text AS t, $2::int8 AS n, NULL::text AS nothing, 0.1::float8 AS x,"
            " 'NaN'::float8 AS nan, true AS yes, now() AS at, current_setting('application_name') AS app",
            "héllo 'quoted'",
            -(2**62),
        )[0]
        assert row["t"] == "héllo 'quoted'" and row["n"] == -(2**62) and row["nothing"] is None
        assert row["x"] == 0.1 and row["nan"] != row["nan"] and row["yes"] is True
        assert row["at"].tzinfo is UTC and abs(row["at"] - datetime.now(UTC)) < timedelta(minutes=1)
        assert row["app"] == SERVER_SETTINGS["application_name"]
        with pytest.raises(WireError) as refused:
            conn.fetch("SELECT * FROM no_such_table")
        assert refused.value.sqlstate == "42P01"
        # The session is ready again after a refusal, and a type it does not know is not guessed.
        assert conn.fetch("SELECT 2 AS two") == [{"two": 2}]
        with pytest.raises(WireUnsupported, match="oid 1700"):
            conn.fetch("SELECT 1.5::numeric AS n")
        with pytest.raises(WireUnsupported, match="infinity"):
            conn.fetch("SELECT 'infinity'::timestamptz AS t")


@pytest.fixture
def password_roles(pg: PgServer, db_url: str) -> Iterator[str]:
    """Roles that must authenticate by each method, over the embedded server's socket; ``db_url``."""
    if not pg.embedded:
        pytest.fail(f"the authentication tests edit the embedded server's pg_hba.conf: unset {ENV_TEST_URL}")
    hba = Path(pg._embedded.pgdata) / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        for role, method in ROLES.items():
            conn.execute(f"SET password_encryption = '{'md5' if method == 'md5' else 'scram-sha-256'}'")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        hba.write_text("".join(f"local all {r} {m}\n" for r, m in ROLES.items()) + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield db_url
    finally:
        hba.write_text(original)
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


@pytest.mark.parametrize("role", list(ROLES))
def test_each_password_authentication(password_roles: str, role: str) -> None:
    with connect(role_url(password_roles, role)) as conn:
        assert conn.fetch("SELECT current_user AS me") == [{"me": role}]
    with pytest.raises(WireError) as wrong:
        connect(role_url(password_roles, role, "not-it"))
    assert wrong.value.sqlstate == "28P01"


def test_no_password_or_one_saslprep_might_change_goes_to_asyncpg(password_roles: str) -> None:
    without = role_url(password_roles, "sigil_wire_scram").replace(f":{PASSWORD}@", "@")
    with pytest.raises(WireUnsupported, match="authentication request 10"):
        connect(without)
    with pytest.raises(WireUnsupported):
        connect(role_url(password_roles, "sigil_wire_scram", "pâssword"))


@contextlib.contextmanager
def tcp_relay(unix_path: str) -> Iterator[int]:
    """A loopback TCP port relayed byte for byte to the server's Unix socket: the TCP path, real server."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := a.recv(65536):
                b.sendall(chunk)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            server = socket.socket(socket.AF_UNIX)
            server.connect(unix_path)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_tcp_asks_for_tls_and_goes_on_plain_when_declined(db_url: str) -> None:
    params = WireParams.from_url(db_url, environ={})
    assert params.unix_socket is not None
    with tcp_relay(params.unix_socket) as port:
        url = f"postgresql://{params.user}@127.0.0.1:{port}/{params.database}"
        assert WireParams.from_url(url, environ={}).sslmode == "prefer"
        with connect(url) as conn:
            assert conn.fetch("SELECT 1 AS one") == [{"one": 1}]
        with connect(url + "?sslmode=disable") as conn:
            assert conn.fetch("SELECT 1 AS one") == [{"one": 1}]


@contextlib.contextmanager
def fake_server(answer: bytes | None) -> Iterator[int]:
    """A loopback port that answers the first 8 bytes with ``answer`` (None: never answers)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            client, _ = listener.accept()
            held.append(client)
            client.recv(8)
            if answer is not None:
                client.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for s in held:
            s.close()
        thread.join(timeout=5)


def test_a_server_offering_tls_goes_to_asyncpg() -> None:
    with fake_server(b"S") as port, pytest.raises(WireUnsupported, match="TLS"):
        connect(f"postgresql://u:p@127.0.0.1:{port}/d")


def test_a_silent_server_is_a_timeout_while_connecting() -> None:
    with fake_server(None) as port:
        t0 = time.monotonic()
        with pytest.raises(WireTimeout) as silent:
            connect(f"postgresql://u:p@127.0.0.1:{port}/d", seconds=0.5)
        assert silent.value.connecting and 0.4 < time.monotonic() - t0 < 5


def test_a_closed_port_is_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        connect(f"postgresql://u:p@127.0.0.1:{port}/d")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://u:p@h1:5432,h2:5432/d", "several hosts"),
        ("postgresql://u:p@h/d?sslmode=require", "sslmode=require"),
        ("postgresql://u:p@h/d?sslmode=verify-full", "sslmode=verify-full"),
        ("postgresql://u:p@h/d?options=-c%20x%3D1", "URL options"),
        ("postgresql://u:p@h/d?sslrootcert=/x", "URL options"),
        ("postgresql://u:p@/d", "no host"),
    ],
)
def test_what_asyncpg_would_read_differently_is_left_to_it(url: str, why: str) -> None:
    with pytest.raises(WireUnsupported, match=why):
        WireParams.from_url(url, environ={})


def test_pg_variables_and_a_password_file_are_left_to_asyncpg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(WireUnsupported, match="PG"):
        WireParams.from_url("postgresql://u:p@h/d", environ={"PGSSLMODE": "require"})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert WireParams.from_url("postgresql://u@h/d", environ={}).password is None
    (tmp_path / ".pgpass").write_text("h:5432:d:u:secret\n")
    for no_password in ("postgresql://u@h/d", "postgresql://u:@h/d", "postgresql://u@h/d?password="):
        with pytest.raises(WireUnsupported, match="password file"):
            WireParams.from_url(no_password, environ={})
    assert WireParams.from_url("postgresql://u:p@h/d", environ={}).password == "p"


def test_url_parts_as_asyncpg_reads_them() -> None:
    p = WireParams.from_url("postgresql://us%40r:p%3Aw@[::1]:6543/my%20db?sslmode=disable", environ={})
    assert (p.host, p.port, p.user, p.password, p.database, p.sslmode) == (
        "::1",
        6543,
        "us@r",
        "p:w",
        "my db",
        "disable",
    )
    q = WireParams.from_url("postgresql://@/?host=/run/pg&port=5433&user=a&password=b&dbname=c", environ={})
    assert (q.unix_socket, q.user, q.password, q.database) == ("/run/pg/.s.PGSQL.5433", "a", "b", "c")
    # The netloc wins over the query, as in asyncpg; the database defaults to the user.
    r = WireParams.from_url("postgresql://x:y@host?user=a&password=b", environ={})
    assert (r.host, r.port, r.user, r.password, r.database) == ("host", 5432, "x", "y", "x")
