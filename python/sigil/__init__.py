"""Sigil: a breakout-scanning crypto trading daemon (paper, or live behind --live) with a Rust engine.

The numeric core lives in :mod:`sigil._core` (Rust); this package re-exports its public API:

- :func:`atr`, :func:`atr_many`, :class:`Atr` — Wilder's ATR, TA-Lib compatible;
- :func:`hard_stop_pct` — the ATR-relative hard stop;
- :class:`GuardTable` — the pre-signal guard and cooldowns;
- :func:`replay` — deterministic replay of candle files through the variants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil._lazy import lazy_exports
from sigil.errors import ConfigError, DataError, SigilError

if TYPE_CHECKING:
    from sigil._core import Atr, GuardTable, atr, atr_many, hard_stop_pct
    from sigil.research.replay import ReplayResult, replay

#: Where each re-exported name lives, imported on first use: replay pulls in numpy, and even the
#: extension module is a cost for the commands that never compute (the probe runs every minute).
_HOME = {
    **dict.fromkeys(("Atr", "GuardTable", "atr", "atr_many", "hard_stop_pct"), "sigil._core"),
    **dict.fromkeys(("replay", "ReplayResult"), "sigil.research.replay"),
}

__getattr__ = lazy_exports(globals(), _HOME)


__all__ = [
    "Atr",
    "ConfigError",
    "DataError",
    "GuardTable",
    "ReplayResult",
    "SigilError",
    "atr",
    "atr_many",
    "hard_stop_pct",
    "replay",
]
