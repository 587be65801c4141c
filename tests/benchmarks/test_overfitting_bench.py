"""The Probability of Backtest Overfitting at the size ``sigil optimize`` gives it: 240 days × 300
trials, S = 16 (12,870 in-sample/out-of-sample splits).

``sigil`` is :func:`sigil.research.overfitting.pbo_cscv` (subset tables of the block sums, no
per-split pass over the rows); ``per-split`` is the direct method — for each split, the Sharpe ratio
of every trial recomputed from its rows with numpy — which gives the same PBO. Reports, never asserts.
With timing off (``make test``) the per-split check runs at S = 8 (70 splits) instead of 12,870.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from sigil.research.overfitting import pbo_cscv

F64 = npt.NDArray[np.float64]

DAYS, TRIALS, SPLITS = 240, 300, 16
QUICK_SPLITS = 8


def _performance() -> F64:
    return np.random.default_rng(42).normal(0.0005, 0.01, (DAYS, TRIALS))


def _per_split_pbo(perf: F64, n_splits: int) -> float:
    blocks = np.array_split(np.arange(perf.shape[0]), n_splits)
    n_trials = perf.shape[1]
    overfit = total = 0
    for inside in combinations(range(n_splits), n_splits // 2):
        rows_in = np.concatenate([blocks[k] for k in inside])
        rows_out = np.concatenate([blocks[k] for k in range(n_splits) if k not in inside])
        a, b = perf[rows_in], perf[rows_out]
        sharpe_in = a.mean(axis=0) / a.std(axis=0, ddof=1)
        sharpe_out = b.mean(axis=0) / b.std(axis=0, ddof=1)
        mine = sharpe_out[int(np.argmax(sharpe_in))]
        rank = (sharpe_out < mine).sum() + ((sharpe_out == mine).sum() + 1) / 2
        overfit += rank / (n_trials + 1) <= 0.5
        total += 1
    return overfit / total


def test_pbo_sigil(benchmark: Any, timing: Callable[..., None]) -> None:
    perf = _performance()
    benchmark.pedantic(pbo_cscv, args=(perf, SPLITS), rounds=5, iterations=1)
    timing("pbo 240x300 S=16", "sigil")


def test_pbo_per_split(benchmark: Any, timing: Callable[..., None], timing_off: bool) -> None:
    perf = _performance()
    splits = QUICK_SPLITS if timing_off else SPLITS
    # One round: it takes seconds, and the ratio it gives is far from 1 either way.
    pbo = benchmark.pedantic(_per_split_pbo, args=(perf, splits), rounds=1, iterations=1)
    timing("pbo 240x300 S=16", "per-split")
    assert pbo == pbo_cscv(perf, splits).pbo
