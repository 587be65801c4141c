"""Configuration: one pydantic model, loaded from ``sigil.yaml`` plus one overlay per variant.

A config directory holds ``sigil.yaml`` (shared defaults and the daemon's settings) and
``variants/<name>.yaml`` (one posture overlay per variant, in the order ``sigil.yaml`` lists them).
Every file is validated: an unknown key, a wrong type or an impossible value raises
:class:`~sigil.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sigil._core import STOP_CAP_PCT, STOP_FLOOR_PCT
from sigil.config_digest import content_hash
from sigil.daemon.share import parse_shard
from sigil.defaults import default_config_dir as default_config_dir
from sigil.errors import ConfigError, unknown_variant
from sigil.notify.names import DEFAULT_EVENTS, EVENT_NAMES


class _Strict(BaseModel):
    # No float of any section may be inf or NaN: an infinite interval or timeout passes ``gt=0`` and
    # fails only later, inside the work.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: What a daemon instance's name may hold (it names jobs, heartbeats, pauses and log lines).
INSTANCE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def check_instance(name: str) -> str:
    """``name`` when it is a valid daemon instance name (as ``daemon.instance``); ValueError otherwise."""
    if re.fullmatch(INSTANCE_PATTERN, name) is None:
        raise ValueError(f"not an instance name: {name!r} (1-64 letters, digits, '_', '.', '-')")
    return name


class Posture(_Strict):
    """Every trading parameter of a variant; ``sigil.yaml``'s ``defaults`` and each overlay set these."""

    starting_balance: float = Field(1000.0, ge=0, allow_inf_nan=False)
    stake: float = Field(100.0, gt=0, allow_inf_nan=False)
    fee_rate: float = Field(0.001, ge=0, lt=0.5, allow_inf_nan=False)
    slippage: float = Field(0.0005, ge=0, lt=0.5, allow_inf_nan=False)
    atr_period: int = Field(14, ge=1, le=1000)
    stop_k: float = Field(1.5, ge=0, allow_inf_nan=False)
    stop_floor: float = Field(STOP_FLOOR_PCT, gt=0, lt=1, allow_inf_nan=False)
    stop_cap: float = Field(STOP_CAP_PCT, gt=0, lt=1, allow_inf_nan=False)
    lookback: int = Field(20, ge=1, le=10_000)
    volume_mult: float = Field(2.0, ge=0, allow_inf_nan=False)
    breakout_buffer: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False)
    atr_min_pct: float = Field(0.005, ge=0, allow_inf_nan=False)
    atr_max_pct: float = Field(0.10, gt=0, allow_inf_nan=False)
    trail_activation: float = Field(1.0, ge=0, allow_inf_nan=False)
    trail_mult: float = Field(2.0, gt=0, allow_inf_nan=False)
    time_stop_candles: int = Field(0, ge=0)
    max_open: int = Field(5, ge=1)
    cooldown_candles: int = Field(8, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.stop_cap < self.stop_floor:
            raise ValueError(f"stop_cap ({self.stop_cap}) is below stop_floor ({self.stop_floor})")
        if self.atr_max_pct < self.atr_min_pct:
            raise ValueError(f"atr_max_pct ({self.atr_max_pct}) is below atr_min_pct ({self.atr_min_pct})")
        return self


class Variant(Posture):
    """One named variant: the shared defaults with its overlay applied."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")

    def engine_params(self) -> dict[str, Any]:
        """The dict ``sigil._core`` takes for this variant."""
        return self.model_dump()


class ExchangeConfig(_Strict):
    """Where candles come from."""

    id: str = "binance"
    #: Points every API URL of the ccxt client at this host (the simulator, a proxy); None = the real one.
    url: str | None = None
    timeframe: str = Field("1h", pattern=r"^[0-9]+[mhd]$")
    quote: str = "USDT"
    min_quote_volume: float = Field(0.0, ge=0)
    max_quote_volume: float | None = Field(None, gt=0)
    max_symbols: int = Field(150, ge=1)
    #: Candles fetched before the first pass (and before a resume point): enough for a rebuilt
    #: engine's ATR to reach the very bits of one that never stopped (Wilder's recursion forgets its
    #: start by a factor 13/14 a candle: about 500 candles reach double precision).
    history_candles: int = Field(1000, ge=1, le=5000)
    max_concurrency: int = Field(8, ge=1, le=64)
    retries: int = Field(4, ge=0, le=20)
    timeout_s: float = Field(10.0, gt=0)
    universe_refresh_s: float = Field(3600.0, gt=0)
    #: First retry wait; it doubles per attempt (with jitter) up to backoff_max_s.
    backoff_base_s: float = Field(0.5, gt=0, allow_inf_nan=False)
    backoff_max_s: float = Field(30.0, gt=0, allow_inf_nan=False)
    #: A Retry-After longer than this fails the call at once instead of stalling the pass behind it.
    retry_after_max_s: float = Field(120.0, gt=0, allow_inf_nan=False)
    #: Milliseconds per request of unit cost; None = ccxt's published limit for the exchange.
    rate_limit_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    #: Fiat-pegged bases: never in the universe (nothing to break out of).
    stablecoins: tuple[str, ...] = (
        "USDT", "USDC", "BUSD", "TUSD", "FDUSD", "USDP", "PAX", "DAI", "UST", "USDD", "PYUSD", "GUSD",
        "SUSD", "USDS", "USDE", "USD1", "RLUSD", "XUSD", "BFUSD", "EURC", "EURI", "AEUR", "EUR", "GBP",
    )  # fmt: skip
    #: A base made of another listed base plus one of these is a leveraged token (BTCUP, ETHBEAR, XRP3L).
    leveraged_suffixes: tuple[str, ...] = ("UP", "DOWN", "BULL", "BEAR", "2L", "2S", "3L", "3S", "5L", "5S")


class DatabaseConfig(_Strict):
    """Where state lives. ``url`` None = an embedded PostgreSQL under ``home``.

    The URL actually used is ``--database-url``, else ``SIGIL_DATABASE_URL``, else ``url``
    (see :func:`sigil.store.target.resolve_target`).
    """

    url: str | None = None
    #: Home of the embedded server (its data in ``<home>/pgdata``). ``SIGIL_HOME`` wins; None = user data dir.
    home: str | None = None
    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(8, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    #: Upper bound of one statement; a hung statement raises instead of stalling the caller forever.
    command_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _pool(self) -> Self:
        if self.pool_min > self.pool_max:
            raise ValueError(f"pool_min ({self.pool_min}) is above pool_max ({self.pool_max})")
        return self


class DaemonConfig(_Strict):
    """Scheduling, liveness and the health endpoint."""

    scan_interval_s: float = Field(60.0, gt=0)
    exit_interval_s: float = Field(10.0, gt=0)
    exit_pass: bool = True
    job_timeout_s: float = Field(120.0, gt=0)
    health_host: str = "127.0.0.1"
    health_port: int = Field(8787, ge=0, le=65535)
    heartbeat_max_age_s: float = Field(300.0, gt=0)
    #: Names this daemon's jobs and heartbeats; daemons sharing one database need distinct names.
    instance: str = Field("main", pattern=INSTANCE_PATTERN)
    #: On SIGTERM/SIGINT the pass in flight gets this long to finish before it is cancelled.
    stop_timeout_s: float = Field(10.0, gt=0)
    #: An event loop that does not turn for this long (a blocking call) ends the process (exit 3).
    loop_stall_s: float = Field(300.0, gt=0)
    #: A symbol whose candles fail to arrive holds the pass's decisions back (so they stay in replay's
    #: order) for at most this many passes in a row; then the pass goes on without it.
    hold_back_passes: int = Field(3, ge=0)
    #: This instance's share of the work (see :mod:`sigil.daemon.share`): the variants it trades
    #: (None = every configured variant) on the symbols of its shard ``"i/N"`` (CRC-32 of the symbol
    #: mod N == i). Instances whose shares overlap are refused at start-up.
    variants: list[str] | None = Field(None, min_length=1)
    shard: str = "0/1"
    #: A live daemon compares the exchange's balance of each asset with the open positions' quantities
    #: at start-up and then at the first breakout pass this long after the last check.
    reconcile_interval_s: float = Field(300.0, gt=0)
    #: A difference beyond this fraction of the quantity held, and worth more than
    #: reconcile_dust_quote, stops new opens (exits go on) until the books agree or `sigil ack-drift`.
    reconcile_tolerance: float = Field(0.01, ge=0, lt=1)
    #: Differences worth less than this (in the quote currency) are dust: lots rounded down on sells.
    reconcile_dust_quote: float = Field(1.0, ge=0)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        parse_shard(value)
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"a variant is listed twice: {value}")
        return value


#: Apprise URLs (they hold tokens) from the environment, space- or comma-separated; wins over notify.urls.
ENV_NOTIFY_URLS = "SIGIL_NOTIFY_URLS"
#: The bearer token of the daemon's state-changing HTTP endpoints; without it they are off.
ENV_API_TOKEN = "SIGIL_API_TOKEN"


def _check_notify_url(i: int, url: str, where: str) -> None:
    # Never echo the URL itself: it holds a token.
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not rest or any(c.isspace() for c in url):
        raise ValueError(f"{where}: entry {i + 1} is not an apprise URL (expected SCHEME://…)")


class NotifyConfig(_Strict):
    """Notifications through apprise: where to (``urls``, or ``SIGIL_NOTIFY_URLS``), which events,
    and how hard to try. Sending never waits on a pass: a bounded queue per URL, a worker thread."""

    #: Apprise URLs (json://, tgram://, discord://, ntfy://, mailto://…). They hold tokens: prefer the
    #: environment (:data:`ENV_NOTIFY_URLS`), which wins when set.
    urls: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    #: Notifications waiting per URL; beyond it new ones are dropped (and counted).
    queue_size: int = Field(256, ge=1, le=100_000)
    #: Further attempts after a failed send, waiting backoff_s, then twice that, and so on.
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(1.0, gt=0, le=600, allow_inf_nan=False)
    #: At a stop, how long the queued notifications (the "stopped" one last) get to go out.
    flush_s: float = Field(5.0, ge=0, le=600, allow_inf_nan=False)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            _check_notify_url(i, url, "notify.urls")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in EVENT_NAMES]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r} (known: {', '.join(EVENT_NAMES)})")
        if len(set(value)) != len(value):
            raise ValueError(f"an event is listed twice: {value}")
        return value


class LoggingConfig(_Strict):
    """How the daemon logs on stderr: ``text`` (the default) or ``json`` (one object per line)."""

    format: Literal["text", "json"] = "text"


def notify_urls(settings: NotifyConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """The apprise URLs to notify: ``SIGIL_NOTIFY_URLS`` (space- or comma-separated) when set and not
    empty, else ``notify.urls``. ConfigError names a malformed entry (never the URL)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_NOTIFY_URLS, "")
    urls = [u for u in raw.replace(",", " ").split() if u]
    if not urls:
        return list(settings.urls)
    for i, url in enumerate(urls):
        try:
            _check_notify_url(i, url, ENV_NOTIFY_URLS)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return urls


def api_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The API token of the daemon's state-changing endpoints (``SIGIL_API_TOKEN``); None when unset
    or blank. The one place that reads it."""
    env = os.environ if environ is None else environ
    token = env.get(ENV_API_TOKEN, "").strip()
    return token or None


class SigilConfig(_Strict):
    """The whole configuration: shared defaults, the variants, exchange, database, daemon,
    notifications and logging."""

    defaults: Posture = Posture()
    variants: list[str] = Field(default_factory=lambda: ["baseline", "moderate", "aggressive", "unhinged"])
    exchange: ExchangeConfig = ExchangeConfig()
    database: DatabaseConfig = DatabaseConfig()
    daemon: DaemonConfig = DaemonConfig()
    notify: NotifyConfig = NotifyConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _share_known(self) -> Self:
        unknown = [n for n in self.daemon.variants or () if n not in self.variants]
        if unknown:
            raise ValueError(
                f"daemon.variants: unknown variant {unknown[0]!r} (configured: {', '.join(self.variants)})"
            )
        return self


class Config(BaseModel):
    """A loaded configuration: the settings and the resolved variants, in order."""

    model_config = ConfigDict(frozen=True)

    settings: SigilConfig
    variants: tuple[Variant, ...]
    source: str
    #: Every file the configuration was read from, in the order read, with a hash of the bytes read
    #: (:func:`sigil.config_digest.content_hash`): what the digests of this config are keyed on.
    files: dict[str, str] = Field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; ConfigError when there is none."""
        for v in self.variants:
            if v.name == name:
                return v
        raise unknown_variant(name, (v.name for v in self.variants))


#: Sections ``--set`` may change (variant postures come from their files only).
OVERRIDABLE = ("daemon", "exchange", "database", "notify", "logging")


def apply_overrides(config: Config, items: list[str]) -> Config:
    """``config`` with each ``section.key=value`` applied (value parsed as YAML), validated again."""
    if not items:
        return config
    data = config.settings.model_dump()
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, field_name = key.strip().partition(".")
        if not sep or not dot or section not in OVERRIDABLE or not field_name:
            raise ConfigError(
                f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {', '.join(OVERRIDABLE)}"
            )
        if field_name not in data[section]:
            raise ConfigError(f"--set {item!r}: {section}.{field_name}: unknown key")
        try:
            data[section][field_name] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: {_yaml_problem(e)}") from None
    try:
        settings = SigilConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"--set: {_problems(e)}") from None
    return config.model_copy(update={"settings": settings})


def _read_yaml(path: Path, read: dict[str, str] | None = None) -> dict[str, Any]:
    """The mapping in ``path``; its content hash goes into ``read`` (when given) before it is parsed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if read is not None:
        read[str(path)] = content_hash(raw)
    try:
        data = _load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {_yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml when PyYAML was built with it (several times
    faster: every command reads sigil.yaml and each variant). A document libyaml refuses is parsed
    again by PyYAML's own parser, so a refusal is worded (and placed) as it always was."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line: where the YAML breaks (line and column, from 1) and why (PyYAML's message spans lines)."""
    mark = getattr(e, "problem_mark", None)
    why = " ".join(str(getattr(e, "problem", None) or e).split())
    if mark is None:
        return f"not valid YAML: {why}"
    return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {why}"


def _problems(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        # A check of the whole file names its keys in the message itself; a key that is not
        # printable as it is (a YAML key may hold a line break) is quoted, so the error stays one line.
        where = ".".join(str(x) if str(x).isprintable() else repr(str(x)) for x in err["loc"])
        parts.append(f"{where}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


def _explain(path: Path, e: ValidationError) -> ConfigError:
    return ConfigError(f"{path}: {_problems(e)}")


def load_variant(
    path: Path, defaults: Posture, known: dict[str, Variant] | None = None, read: dict[str, str] | None = None
) -> Variant:
    """One overlay file over ``defaults``. ``extends: NAME`` starts from an already loaded variant;
    ``read`` collects the file's content hash (as :func:`load_config` records them)."""
    overlay = _read_yaml(path, read)
    base: dict[str, Any] = defaults.model_dump()
    parent = overlay.pop("extends", None)
    if parent is not None:
        if known is None or parent not in known:
            raise ConfigError(f"{path}: extends: unknown variant {parent!r}")
        base = known[parent].model_dump()
    base["name"] = overlay.pop("name", path.stem)
    try:
        return Variant.model_validate({**base, **overlay})
    except ValidationError as e:
        raise _explain(path, e) from None


def load_config(config_dir: str | Path | None = None, extra_variants: tuple[str | Path, ...] = ()) -> Config:
    """Loads ``sigil.yaml`` and its variants from ``config_dir`` (default: the shipped config).

    ``extra_variants`` are overlay files added after the configured variants (for instance the
    pre-fix posture ``config/legacy/fixed3.yaml``, which extends a configured variant).
    """
    root = Path(config_dir) if config_dir is not None else default_config_dir()
    if not root.is_dir():
        raise ConfigError(f"{root}: config directory not found")
    main = root / "sigil.yaml"
    read: dict[str, str] = {}
    try:
        settings = SigilConfig.model_validate(_read_yaml(main, read))
    except ValidationError as e:
        raise _explain(main, e) from None
    variants: dict[str, Variant] = {}
    for path in [root / "variants" / f"{name}.yaml" for name in settings.variants] + [
        Path(extra) for extra in extra_variants
    ]:
        v = load_variant(path, settings.defaults, variants, read)
        if v.name in variants:
            raise ConfigError(f"{path}: variant name {v.name!r} used twice")
        variants[v.name] = v
    if not variants:
        raise ConfigError(f"{main}: variants: at least one variant is needed")
    return Config(
        settings=settings,
        variants=tuple(variants.values()),
        source=str(root),
        files=read,
    )
