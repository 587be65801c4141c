"""A pure-Python reference of Sigil's decision rules (docs/HLD.md, "Decision rules"), for tests only."""

from .engine import (
    ENGINE_STOP_PCT_RULE,
    STOP_PCT_RULES,
    ReferenceResult,
    RefOpenPosition,
    RefSeries,
    RefTrade,
    RefVariantState,
    Variant,
    differences,
    replay,
)

__all__ = [
    "ENGINE_STOP_PCT_RULE",
    "STOP_PCT_RULES",
    "RefOpenPosition",
    "RefSeries",
    "RefTrade",
    "RefVariantState",
    "ReferenceResult",
    "Variant",
    "differences",
    "replay",
]
