"""Prints what a development venv needs, one requirement per line, read from ``pyproject.toml`` alone.

That is the build backend (``[build-system] requires``: maturin), the runtime dependencies
(``[project] dependencies``) and the ``dev`` extra (``[project.optional-dependencies] dev``). The
Makefile installs exactly this list and then builds the extension with ``maturin develop``; the
project itself is never installed from a wheel. Usage: ``python tools/dev_requirements.py [PYPROJECT]``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def dev_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The build backend, the runtime dependencies and the ``dev`` extra, in that order."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    return [
        *data["build-system"]["requires"],
        *project["dependencies"],
        *project["optional-dependencies"]["dev"],
    ]


if __name__ == "__main__":
    print("\n".join(dev_requirements(Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT)))
