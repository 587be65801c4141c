"""Which database: the ``database`` settings a handle reads, and the one place that resolves them.

:func:`resolve_target` is the one place that reads the environment: ``--database-url`` wins, then
``SIGIL_DATABASE_URL``, then ``database.url`` of the config; with none of them, Sigil runs an embedded
PostgreSQL in ``<home>/pgdata`` (home: ``SIGIL_HOME``, else ``database.home``, else the user data dir).

Nothing here imports a database driver, so the probe can resolve its target before choosing how to
connect (:mod:`sigil.store.wire`, or asyncpg through :mod:`sigil.store.db`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, urlsplit, urlunsplit

from sigil.errors import ConfigError

ENV_DATABASE_URL = "SIGIL_DATABASE_URL"
ENV_HOME = "SIGIL_HOME"
#: Name of the application in platformdirs' user data dir, and of the database inside the embedded server.
APP_NAME = "sigil"
EMBEDDED_DATABASE = "sigil"
#: Shown in pg_stat_activity, so an operator can tell Sigil's sessions from others.
APPLICATION_NAME = "sigil"
#: Every session's settings, whichever client opens it.
SERVER_SETTINGS = {"application_name": APPLICATION_NAME, "timezone": "UTC"}

_SCHEMES = ("postgresql", "postgres")


class DatabaseSettings(Protocol):
    """What a database handle reads of the ``database`` section: a :class:`sigil.config.DatabaseConfig`,
    or the probe's digest of one (this module leaves the config's models unimported, so the probe can)."""

    @property
    def url(self) -> str | None:
        """``database.url``."""

    @property
    def home(self) -> str | None:
        """``database.home``."""

    @property
    def pool_min(self) -> int:
        """``database.pool_min``."""

    @property
    def pool_max(self) -> int:
        """``database.pool_max``."""

    @property
    def connect_timeout_s(self) -> float:
        """``database.connect_timeout_s``."""

    @property
    def command_timeout_s(self) -> float:
        """``database.command_timeout_s``."""


def default_settings() -> DatabaseSettings:
    """The ``database`` section's defaults (the config's model, imported only when asked for)."""
    from sigil.config import DatabaseConfig

    return DatabaseConfig()


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the database is: a server URL, or (``url`` None) the embedded server under ``home``."""

    url: str | None
    home: Path

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded server."""
        return self.home / "pgdata"

    @property
    def embedded(self) -> bool:
        """True when Sigil runs its own PostgreSQL."""
        return self.url is None

    def describe(self) -> str:
        """A one-line description without secrets."""
        return f"embedded PostgreSQL in {self.pgdata}" if self.url is None else redact(self.url)


def resolve_target(
    cli_url: str | None = None,
    config: DatabaseSettings | None = None,
    environ: Mapping[str, str] | None = None,
) -> DatabaseTarget:
    """The database to use: ``cli_url`` > ``SIGIL_DATABASE_URL`` > ``config.url`` > embedded.

    ``environ`` defaults to the process environment. A URL that is not ``postgresql://…`` raises
    :class:`~sigil.errors.ConfigError` naming where it came from.
    """
    env = os.environ if environ is None else environ
    cfg = config if config is not None else default_settings()
    url: str | None = None
    for source, value in (
        ("--database-url", cli_url),
        (ENV_DATABASE_URL, env.get(ENV_DATABASE_URL)),
        ("database.url", cfg.url),
    ):
        if value is not None and value.strip():
            url = normalize_url(value.strip(), source)
            break
    home_value = env.get(ENV_HOME) or cfg.home
    home = Path(home_value).expanduser() if home_value else default_home()
    return DatabaseTarget(url=url, home=home.resolve())


def default_home() -> Path:
    """The user data dir for Sigil (``~/.local/share/sigil`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def normalize_url(url: str, source: str = "database URL") -> str:
    """``url`` as asyncpg takes it. SQLAlchemy spellings (``postgresql+psycopg://``) are accepted."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ConfigError(f"{source}: not a valid URL: {e}") from None
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _SCHEMES or (not parts.netloc and "host=" not in parts.query):
        raise ConfigError(
            f"{source}: expected a PostgreSQL URL like postgresql://user:password@host:5432/dbname, "
            f"got {redact(url)!r}"
        )
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"{source}: the port in {redact(url)!r} is not a number") from None
    return urlunsplit(parts._replace(scheme="postgresql"))


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server (same user, host and options)."""
    parts: SplitResult = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))
