"""What ships inside the package: the default configuration and the schema migrations."""

from __future__ import annotations

from pathlib import Path


def default_config_dir() -> Path:
    """The configuration shipped inside the package (``config/`` in the source tree)."""
    # Beside this file, not through importlib.resources: the package is always installed as files (it
    # holds an extension module), and the probe's start-up has no time for importing that machinery.
    return Path(__file__).with_name("config")


def migrations_dir() -> Path:
    """The schema migrations shipped inside the package (``migrations/`` in the source tree)."""
    return Path(__file__).with_name("migrations")
