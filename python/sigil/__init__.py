"""Sigil: a breakout-scanning crypto trading daemon (paper, or live behind --live) with a Rust engine.

The numeric core lives in :mod:`sigil._core` (Rust); this package re-exports its public API:

- :func:`atr`, :func:`atr_many`, :class:`Atr` — Wilder's ATR, TA-Lib compatible;
- :func:`hard_stop_pct` — the ATR-relative hard stop;
- :class:`GuardTable` — the pre-signal guard and cooldowns;
- :func:`replay` — deterministic replay of candle files through the variants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sigil._core import Atr, GuardTable, atr, atr_many, hard_stop_pct
from sigil.errors import ConfigError, DataError, SigilError

if TYPE_CHECKING:
    from sigil.research.replay import ReplayResult, replay


def __getattr__(name: str) -> Any:
    # Replay pulls in numpy and pyarrow; commands that do not replay (probe, status) start faster
    # without them.
    if name in ("replay", "ReplayResult"):
        from sigil.research import replay as module

        return getattr(module, name)
    raise AttributeError(f"module 'sigil' has no attribute {name!r}")


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
