"""Names a package re-exports, imported from their modules on first use (PEP 562).

``sigil`` and ``sigil.store`` re-export names whose modules are costly to import (numpy through the
replay, the extension module, the stores); the commands that never touch them, the every-minute probe
first, start without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(namespace: dict[str, Any], homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``namespace`` (the package's ``globals()``): a name of ``homes``
    is imported from its module the first time it is asked for, then kept in ``namespace``."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
