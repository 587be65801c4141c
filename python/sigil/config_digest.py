"""What a command reads of the configuration, remembered between its runs.

``sigil probe`` runs every minute and ``sigil replay`` is run again and again over candle files.
Validating the configuration through its pydantic models (importing pydantic, building the models) is
most of the probe's start-up and most of a short replay's, yet each reads a few settings. So after a
full validation a command's settings are written to a small JSON digest in Sigil's cache directory
(``SIGIL_CACHE_DIR``, else the user cache dir), with a fingerprint of what produced them: the bytes of
every file the configuration was read from, and the files of the code that judged them (the modules
of :data:`RULES` and the extension module, by size and modification time). The next run takes the
digest when the fingerprint still matches, and validates again as before when anything differs.

A digest is kept per config directory, overlay files (``--variant``) and kind of settings
(:class:`ProbeSettings`, :class:`ReplaySettings`), so the probe's and a replay's never stand in for
each other. Nothing here validates: every digest was written from a :class:`~sigil.config.Config` that
:func:`~sigil.config.load_config` accepted, and a configuration that fails is never digested, so a bad
configuration is still refused. The cache is best effort: a digest that cannot be read or written
only costs the time it was meant to save.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import Field, asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

from sigil.defaults import default_config_dir
from sigil.errors import unknown_variant

if TYPE_CHECKING:
    from sigil.config import Config, Variant

#: Where digests are kept (a directory); unset: the user cache dir (``~/.cache/sigil`` on Linux).
ENV_CACHE_DIR = "SIGIL_CACHE_DIR"

#: The modules whose code decides what a valid configuration is, relative to the package
#: (tests/test_config_digest.py keeps this equal to what ``sigil.config`` imports of Sigil's own).
RULES = (
    "config.py",
    "daemon/__init__.py",
    "daemon/share.py",
    "defaults/__init__.py",
    "errors.py",
    "notify/__init__.py",
    "notify/names.py",
)

#: Bumped when the digest's layout changes, so an older file is a miss rather than misread.
#: 2: one digest per (config directory, overlays, kind), the key written beside the settings.
LAYOUT = 2

_PACKAGE = Path(__file__).parent


class Digestible(Protocol):
    """A kind of settings the digest keeps: a frozen dataclass named by :attr:`KIND`, taken from a
    validated configuration by :meth:`of` and read back from its JSON (``asdict``) by :meth:`from_json`."""

    KIND: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def of(cls, config: Config) -> Self:
        """These settings of a loaded configuration."""
        ...

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """These settings from what ``asdict`` made of them (KeyError, TypeError or ValueError when
        ``data`` is not that)."""
        ...


S = TypeVar("S", bound=Digestible)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The ``database`` section as the probe opens the database with it (the fields of
    :class:`~sigil.config.DatabaseConfig`, which tests keep equal)."""

    url: str | None
    home: str | None
    pool_min: int
    pool_max: int
    connect_timeout_s: float
    command_timeout_s: float


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """What ``sigil probe`` reads of a validated configuration."""

    KIND: ClassVar[str] = "probe"

    database: DatabaseSettings
    heartbeat_max_age_s: float
    instance: str

    @classmethod
    def of(cls, config: Config) -> ProbeSettings:
        """The probe's settings of a loaded configuration."""
        s = config.settings
        db = s.database
        return cls(
            DatabaseSettings(
                db.url, db.home, db.pool_min, db.pool_max, db.connect_timeout_s, db.command_timeout_s
            ),
            s.daemon.heartbeat_max_age_s,
            s.daemon.instance,
        )

    @classmethod
    def from_json(cls, data: Any) -> ProbeSettings:
        """The probe's settings from their digest."""
        return cls(DatabaseSettings(**data["database"]), data["heartbeat_max_age_s"], data["instance"])


@dataclass(frozen=True, slots=True)
class VariantSettings:
    """One variant as a replay reads it: the surface of :class:`~sigil.config.Variant` that
    :func:`~sigil.research.replay.replay_series` uses."""

    name: str
    starting_balance: float
    #: What :meth:`~sigil.config.Variant.engine_params` gave (left out of the hash: a dict has none).
    engine: dict[str, Any] = field(hash=False)

    @classmethod
    def of(cls, variant: Variant) -> VariantSettings:
        """The replay's view of a validated variant."""
        return cls(variant.name, variant.starting_balance, variant.engine_params())

    def engine_params(self) -> dict[str, Any]:
        """The dict ``sigil._core`` takes for this variant (a copy: the settings stay as validated)."""
        return dict(self.engine)


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What ``sigil replay`` reads of a validated configuration: its variants, in order."""

    KIND: ClassVar[str] = "replay"

    variants: tuple[VariantSettings, ...]

    @classmethod
    def of(cls, config: Config) -> ReplaySettings:
        """The replay's settings of a loaded configuration."""
        return cls(tuple(VariantSettings.of(v) for v in config.variants))

    @classmethod
    def from_json(cls, data: Any) -> ReplaySettings:
        """The replay's settings from their digest (JSON keeps each engine parameter's type and
        value: ints stay ints, floats round-trip exactly)."""
        return cls(
            tuple(
                VariantSettings(v["name"], v["starting_balance"], dict(v["engine"])) for v in data["variants"]
            )
        )

    def variant(self, name: str) -> VariantSettings:
        """The variant called ``name``; ConfigError when there is none (as :meth:`Config.variant
        <sigil.config.Config.variant>`)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise unknown_variant(name, (v.name for v in self.variants))


def probe_settings(config_dir: str | Path | None = None, *, cache_dir: Path | None = None) -> ProbeSettings:
    """The probe's settings of the configuration in ``config_dir`` (default: the shipped one): from
    its digest when the fingerprint matches, else from :func:`~sigil.config.load_config`, whose
    :class:`~sigil.errors.ConfigError` propagates (and then no digest is written)."""
    return _settings_of(ProbeSettings, config_dir, (), cache_dir=cache_dir)


def replay_settings(
    config_dir: str | Path | None = None,
    overlays: Iterable[str | Path] = (),
    *,
    cache_dir: Path | None = None,
) -> ReplaySettings:
    """The replay's settings of the configuration in ``config_dir`` (default: the shipped one) with
    the variant ``overlays`` after its own (``sigil replay --variant``), as
    :func:`~sigil.config.load_config` loads them: from their digest when the fingerprint matches,
    else validated, whose :class:`~sigil.errors.ConfigError` propagates (and then no digest is written)."""
    return _settings_of(ReplaySettings, config_dir, overlays, cache_dir=cache_dir)


def _settings_of(
    kind: type[S],
    config_dir: str | Path | None,
    overlays: Iterable[str | Path] = (),
    *,
    cache_dir: Path | None = None,
) -> S:
    """``kind``'s settings of the configuration in ``config_dir`` with ``overlays``: from the digest
    of that (directory, overlays, kind) when its fingerprint matches, else validated and digested."""
    root = Path(config_dir) if config_dir is not None else default_config_dir()
    extra = tuple(Path(o) for o in overlays)
    digest = _digest_of(kind.KIND, root, extra, cache_dir)
    try:
        # Taken before validating, like the files' hashes: code replaced in the meantime then
        # makes the digest out of date instead of vouching for what it did not judge.
        rules = _rules()
    except OSError:
        digest = None
    if digest is not None:
        hit = _read(kind, digest, rules)
        if hit is not None:
            return hit
    from sigil.config import load_config

    config = load_config(root, extra)
    settings = kind.of(config)
    if digest is not None:
        _write(digest, asdict(settings), rules, config.files)
    return settings


def cache_root() -> Path:
    """Sigil's cache directory: ``SIGIL_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sigil", appauthor=False))


@dataclass(frozen=True, slots=True)
class _Digest:
    """Which digest: what it is of (the kind, the config directory and the overlays, resolved and in
    order, as the same files named another way are the same configuration), and its file."""

    key: list[Any]
    path: Path


def _digest_of(kind: str, root: Path, overlays: tuple[Path, ...], cache_dir: Path | None) -> _Digest | None:
    """The digest of ``kind``'s settings of ``root`` with ``overlays``; None when a path cannot be
    resolved."""
    try:
        key = [kind, str(root.resolve()), [str(o.resolve()) for o in overlays]]
        name = hashlib.blake2b(json.dumps(key).encode(), digest_size=10).hexdigest()
        base = cache_dir if cache_dir is not None else cache_root()
        return _Digest(key, base / "config-digest" / f"{kind}-{name}.json")
    except (OSError, RuntimeError):
        return None


def _rules() -> list[list[Any]]:
    """Size and modification time of each file of code that judges a configuration."""
    paths = [_PACKAGE / name for name in RULES] + [_extension_module()]
    out: list[list[Any]] = []
    for path in paths:
        st = path.stat()
        out.append([str(path), st.st_size, st.st_mtime_ns])
    return out


def _extension_module() -> Path:
    """The file of ``sigil._core`` (its limits judge a posture), found without loading it."""
    spec = importlib.util.find_spec("sigil._core")
    if spec is None or spec.origin is None:
        raise OSError("sigil._core is not installed")
    return Path(spec.origin)


def content_hash(data: bytes) -> str:
    """The hash a digest keeps of a configuration file's bytes."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _matches(files: dict[str, str]) -> bool:
    """True when each file still holds the bytes it held when the digest was written."""
    return all(content_hash(Path(f).read_bytes()) == h for f, h in files.items())


def _read(kind: type[S], digest: _Digest, rules: list[list[Any]]) -> S | None:
    """The settings in ``digest``'s file when it is whole, of its key, and its fingerprint matches
    the code (``rules``) and the files as they are now."""
    try:
        data = json.loads(digest.path.read_bytes())
        if (
            data["layout"] != LAYOUT
            or data["key"] != digest.key  # a file name two keys share is a miss, never the other's
            or data["rules"] != rules
            or not _matches(data["files"])
        ):
            return None
        return kind.from_json(data["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        # Missing, half-written by a tool other than ours, or of another layout: validate again.
        return None


def _write(digest: _Digest, settings: dict[str, Any], rules: list[list[Any]], files: dict[str, str]) -> None:
    """Writes the digest atomically (a command running at the same moment sees the old file or the new)."""
    import tempfile  # only a miss writes; a hit has no use for it

    where = digest.path
    try:
        body = {
            "layout": LAYOUT,
            "key": digest.key,
            "rules": rules,
            "files": {str(Path(f).resolve()): h for f, h in files.items()},
            "settings": settings,
        }
        where.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where.parent, prefix=".digest-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f)
            os.replace(tmp, where)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # a read-only or full cache directory: the next run validates again
