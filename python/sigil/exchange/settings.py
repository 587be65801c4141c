"""Where the exchange settings that do not live in config files come from: the one place that reads
the environment for the exchange.

- API URL: ``--exchange-url`` (passed in), else ``SIGIL_EXCHANGE_URL``, else ``exchange.url`` from the
  config, else the exchange's own URLs.
- Live trading: only when the caller passes ``live=True`` (the ``--live`` switch; there is no config key
  for it, so a config file can never turn real orders on). Keys come from ``SIGIL_API_KEY`` and
  ``SIGIL_API_SECRET`` only, never from files or arguments (they would show in ``ps`` and shell history).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import SecretStr

from sigil.config import ExchangeConfig
from sigil.errors import ConfigError, LiveKeysMissing

ENV_URL = "SIGIL_EXCHANGE_URL"
ENV_API_KEY = "SIGIL_API_KEY"
ENV_API_SECRET = "SIGIL_API_SECRET"


@dataclass(frozen=True)
class Credentials:
    """An API key pair. Both are :class:`~pydantic.SecretStr`: printing or logging this object shows
    ``**********``; only :meth:`reveal` gives the values, for the one place that signs requests."""

    api_key: SecretStr
    secret: SecretStr

    def reveal(self) -> tuple[str, str]:
        """(key, secret) in clear, for the ccxt client only."""
        return self.api_key.get_secret_value(), self.secret.get_secret_value()

    def __repr__(self) -> str:
        return "Credentials(api_key='**********', secret='**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class ExchangeSettings:
    """Everything needed to build the exchange client: the config, the resolved URL and mode."""

    config: ExchangeConfig
    #: Base URL every API URL is pointed at (scheme://host[:port][/prefix]); None = the exchange's own.
    url: str | None = None
    #: Which source gave ``url``: "--exchange-url", SIGIL_EXCHANGE_URL, "config" or None.
    url_source: str | None = None
    live: bool = False
    credentials: Credentials | None = field(default=None, repr=False)


def _check_url(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}: not an http(s) URL: {url!r} (expected e.g. http://127.0.0.1:8900)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{source}: a base URL takes no query or fragment: {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{source}: bad port in {url!r}") from None
    return url.rstrip("/")


def resolve_exchange(
    config: ExchangeConfig,
    *,
    url: str | None = None,
    live: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ExchangeSettings:
    """Resolves the exchange settings from the command line, the environment and the config.

    Raises :class:`~sigil.errors.ConfigError` for a malformed URL (naming where it came from) and
    :class:`~sigil.errors.LiveKeysMissing` when ``live`` is on and a key is missing.
    """
    env = os.environ if environ is None else environ
    chosen: tuple[str, str] | None = None
    for value, source in ((url, "--exchange-url"), (env.get(ENV_URL), ENV_URL), (config.url, "exchange.url")):
        if value:
            chosen = (_check_url(value, source), source)
            break
    credentials = None
    if live:
        key, secret = env.get(ENV_API_KEY, "").strip(), env.get(ENV_API_SECRET, "").strip()
        missing = [name for name, v in ((ENV_API_KEY, key), (ENV_API_SECRET, secret)) if not v]
        if missing:
            need = " and ".join(missing)
            raise LiveKeysMissing(
                f"live trading needs the exchange API key pair in the environment: set {need}"
            )
        credentials = Credentials(SecretStr(key), SecretStr(secret))
    return ExchangeSettings(
        config=config,
        url=chosen[0] if chosen else None,
        url_source=chosen[1] if chosen else None,
        live=live,
        credentials=credentials,
    )
