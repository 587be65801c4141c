"""ATR speed from Python, in the checkout: the benchmarks that ship with Sigil (:mod:`sigil.bench.atr`),
collected here so ``make bench`` and ``make test`` run them on the repository's candles (the
``bench_candles`` fixture of this folder's conftest)."""

from __future__ import annotations

from sigil.bench.atr import test_atr_many_500x1000, test_atr_one_series, test_atr_update_per_call

__all__ = ["test_atr_many_500x1000", "test_atr_one_series", "test_atr_update_per_call"]
