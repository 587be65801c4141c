"""ccxt with only the exchanges Sigil trades on loaded.

ccxt's package ``__init__`` (and ``ccxt.async_support``'s) imports the module of every exchange it
knows, over a hundred twice: about 90 MB of resident memory that a daemon trading on one exchange
holds for its whole life, half of what it holds at all. :func:`async_ccxt` imports
``ccxt.async_support`` with each exchange's module standing in for itself; the real module is
imported when its class is first asked for (``ccxt.binance``, ``getattr(ccxt, exchange_id)``,
``from ccxt.async_support import okx``), so ``exchange.id`` may still name any exchange ccxt knows,
and an exchange built on another (``binanceus`` on ``binance``) gets the real base class.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

#: The packages whose exchange modules stand in until used.
_PACKAGES = ("ccxt", "ccxt.async_support")
_lock = threading.RLock()


class _Placeholder:
    """A stand-in module's class while ccxt's ``__init__`` imports it; removed from the packages right
    after, so no caller ever gets it."""


def _exchange_names() -> frozenset[str]:
    """ccxt's exchange modules: the single files beside its ``__init__`` (its packages are base,
    abstract, pro, async_support and helpers, never exchanges)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or spec.submodule_search_locations is None:
        return frozenset()
    root = Path(next(iter(spec.submodule_search_locations)))
    return frozenset(p.stem for p in root.glob("*.py") if p.stem != "__init__")


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """On ``sys.meta_path`` while ccxt's packages import: each exchange module a stand-in whose class
    is a placeholder. Afterwards a stand-in's class is the real one, imported then (a real exchange
    importing its base gets it so)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.importing = False

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package in _PACKAGES and name in self.names:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__.rpartition(".")[2]
        finder = self

        def __getattr__(attr: str) -> Any:
            if attr != name:
                raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")
            if finder.importing:
                return _Placeholder
            return getattr(_real_module(module.__name__), attr)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__sigil_stand_in__ = True  # type: ignore[attr-defined]


_finder = _StandIns(frozenset())


def _real_module(fullname: str) -> ModuleType:
    """The real module of a stand-in, imported now and bound where ccxt's package binds it."""
    with _lock:
        current = sys.modules.get(fullname)
        if current is not None and not getattr(current, "__sigil_stand_in__", False):
            return current
        sys.modules.pop(fullname, None)
        module = importlib.import_module(fullname)
        package, _, name = fullname.rpartition(".")
        setattr(sys.modules[package], name, getattr(module, name))
        return module


def _package_getattr(package: str, names: frozenset[str]) -> Any:
    """A package's ``__getattr__``: an exchange's class, its real module imported on first use."""

    def __getattr__(attr: str) -> Any:
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(_real_module(f"{package}.{attr}"), attr)

    return __getattr__


def async_ccxt() -> ModuleType:
    """``ccxt.async_support``, each exchange's class imported on first use (see the module doc).
    When ccxt was already imported whole (a script that imported it first), that is what is returned."""
    with _lock:
        if "ccxt.async_support" not in sys.modules:
            names = _finder.names = _exchange_names()
            _finder.importing = True
            sys.meta_path.insert(0, _finder)
            try:
                importlib.import_module("ccxt.async_support")
            finally:
                _finder.importing = False
                sys.meta_path.remove(_finder)
            for package in _PACKAGES:
                module = sys.modules[package]
                for name in names:
                    if module.__dict__.get(name) is _Placeholder:
                        del module.__dict__[name]
                module.__getattr__ = _package_getattr(package, names)  # type: ignore[method-assign]
    return sys.modules["ccxt.async_support"]
