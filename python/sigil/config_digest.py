"""What the dead-man probe needs of the configuration, remembered between its runs.

``sigil probe`` runs every minute. Validating the configuration through its pydantic models (importing
pydantic, building the models) is most of the probe's start-up, yet the probe reads six settings. So
after a full validation those settings are written to a small JSON digest in Sigil's cache directory
(``SIGIL_CACHE_DIR``, else the user cache dir), with a fingerprint of what produced them: the bytes of
every file the configuration was read from, and the files of the code that judged them (the modules
of :data:`RULES` and the extension module, by size and modification time). The next probe takes the
digest when the fingerprint still matches, and validates again as before when anything differs.

Nothing here validates: every digest was written from a :class:`~sigil.config.Config` that
:func:`~sigil.config.load_config` accepted, and a configuration that fails is never digested, so a bad
configuration is still "cannot tell". The cache is best effort: a digest that cannot be read or written
only costs the time it was meant to save.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigil.defaults import default_config_dir

if TYPE_CHECKING:
    from sigil.config import Config

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
LAYOUT = 1

_PACKAGE = Path(__file__).parent


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


def probe_settings(config_dir: str | Path | None = None, *, cache_dir: Path | None = None) -> ProbeSettings:
    """The probe's settings of the configuration in ``config_dir`` (default: the shipped one): from
    its digest when the fingerprint matches, else from :func:`~sigil.config.load_config`, whose
    :class:`~sigil.errors.ConfigError` propagates (and then no digest is written)."""
    root = Path(config_dir) if config_dir is not None else default_config_dir()
    where = _digest_path(root, cache_dir)
    try:
        # Taken before validating, like the files' hashes: code replaced in the meantime then
        # makes the digest out of date instead of vouching for what it did not judge.
        rules = _rules()
    except OSError:
        where = None
    if where is not None:
        hit = _read(where, rules)
        if hit is not None:
            return hit
    from sigil.config import load_config

    config = load_config(root)
    settings = ProbeSettings.of(config)
    if where is not None:
        _write(where, settings, rules, config.files)
    return settings


def cache_root() -> Path:
    """Sigil's cache directory: ``SIGIL_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sigil", appauthor=False))


def _digest_path(root: Path, cache_dir: Path | None) -> Path | None:
    try:
        key = hashlib.blake2b(str(root.resolve()).encode(), digest_size=10).hexdigest()
        return (cache_dir if cache_dir is not None else cache_root()) / "config-digest" / f"{key}.json"
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


def _read(where: Path, rules: list[list[Any]]) -> ProbeSettings | None:
    """The digest at ``where`` when it is whole and its fingerprint matches the code (``rules``) and
    the files as they are now."""
    try:
        data = json.loads(where.read_bytes())
        if data["layout"] != LAYOUT or data["rules"] != rules or not _matches(data["files"]):
            return None
        settings = data["settings"]
        return ProbeSettings(
            DatabaseSettings(**settings["database"]), settings["heartbeat_max_age_s"], settings["instance"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing, half-written by a tool other than ours, or of another layout: validate again.
        return None


def _write(where: Path, settings: ProbeSettings, rules: list[list[Any]], files: dict[str, str]) -> None:
    """Writes the digest atomically (a probe running at the same moment sees the old file or the new)."""
    import tempfile  # only a miss writes; a hit has no use for it

    try:
        body = {
            "layout": LAYOUT,
            "rules": rules,
            "files": {str(Path(f).resolve()): h for f, h in files.items()},
            "settings": asdict(settings),
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
        pass  # a read-only or full cache directory: the next probe validates again
