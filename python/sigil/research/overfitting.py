"""How likely a search's best result is luck: Probability of Backtest Overfitting, Deflated Sharpe Ratio.

Two statistics over all the trials of a search (for instance every posture ``sigil optimize`` tried):

- :func:`pbo_cscv` — the Probability of Backtest Overfitting by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado, Zhu 2015, "The Probability of Backtest
  Overfitting", Journal of Computational Finance 20(4)): how often the trial that is best in sample
  ranks at or below the median out of sample.
- :func:`deflated_sharpe` — the Deflated Sharpe Ratio (Bailey, López de Prado 2014, "The Deflated
  Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality", Journal of
  Portfolio Management 40(5)): the probability that the selected trial's true Sharpe ratio is above
  the highest Sharpe ratio that as many trials without skill would be expected to show.

Every Sharpe ratio here is per period (mean / sample standard deviation, ``ddof=1``, risk-free 0),
not annualised, as in both papers. A set of returns with no dispersion at all (every value equal,
for instance a trial that never traded) has Sharpe 0 in the PBO and in
:func:`sharpe_variance_across`; the DSR refuses it. The module is pure: numpy and the standard
library's normal distribution, no I/O. docs/METRICS.md defines both figures as computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain, combinations
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from sigil.errors import SigilError

F64 = npt.NDArray[np.float64]

EULER_MASCHERONI = 0.5772156649015329
"""γ in the expected maximum of N standard normal draws (Bailey, López de Prado 2014)."""

DEFAULT_SPLITS = 16
"""The paper's suggested S: C(16, 8) = 12,870 combinations."""

MAX_SPLITS = 20
"""The most blocks accepted: C(20, 10) = 184,756 combinations; each 2 more multiply them by about 4."""

_COMBINATION_CHUNK = 2048
"""Combinations evaluated per step: bounds the temporaries to a few MB each for hundreds of trials."""

_STANDARD_NORMAL = NormalDist()


class OverfittingInputError(SigilError, ValueError):
    """The returns or the parameters given to an overfitting statistic are unusable; the message names why."""


@dataclass(frozen=True)
class PboResult:
    """The Probability of Backtest Overfitting of a set of trials, by CSCV.

    ``pbo`` is the share of the ``n_combinations`` in-sample/out-of-sample splits in which the trial
    with the best in-sample Sharpe ratio has a logit ``λ ≤ 0`` out of sample (ranks at or below the
    median of all trials). ``logits`` holds λ for every combination, in the order of
    ``itertools.combinations(range(n_splits), n_splits // 2)`` (the in-sample blocks); it is read-only.
    """

    pbo: float
    logits: F64 = field(compare=False, repr=False)
    n_combinations: int
    n_trials: int
    n_splits: int


@dataclass(frozen=True)
class DsrResult:
    """The Deflated Sharpe Ratio of a selected trial.

    ``dsr`` is the probability that the true per-period Sharpe ratio exceeds ``expected_max_sharpe``
    (SR₀, the expected maximum per-period Sharpe of ``n_trials`` trials without skill); ``sharpe`` is
    the observed per-period Sharpe ratio, ``annualised_sharpe`` the same × √periods_per_year, and
    ``significant`` says ``dsr >= significance``.
    """

    dsr: float
    sharpe: float
    annualised_sharpe: float
    expected_max_sharpe: float
    n_trials: int
    significant: bool


def pbo_cscv(performance: F64, n_splits: int = DEFAULT_SPLITS) -> PboResult:
    """The Probability of Backtest Overfitting of the trials (columns) of ``performance``, by CSCV.

    ``performance`` is [n_periods, n_trials] of per-period returns. Its rows are cut into ``n_splits``
    contiguous blocks as equal as possible (the first ``n_periods % n_splits`` blocks one row longer).
    For every choice of ``n_splits / 2`` blocks as the in-sample set (the other blocks, out of sample):

    - the selected trial is the one with the highest in-sample Sharpe ratio (the first on a tie);
    - its rank ``r`` among the out-of-sample Sharpe ratios of all N trials is 1 for the worst to N for
      the best, trials with an equal Sharpe sharing the mean of their ranks;
    - ω = r / (N + 1), the paper's relative rank, so ω lies strictly in (0, 1), and λ = ln(ω / (1 − ω)).

    PBO is the share of combinations with λ ≤ 0 (the selected trial at or below the median out of
    sample). A set of rows in which a trial's returns are all equal gives that trial Sharpe 0 there.
    """
    x = _finite_array(performance, "performance", "n_periods, n_trials")
    n_periods, n_trials = x.shape
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer):
        raise OverfittingInputError(f"n_splits must be an integer, got {n_splits!r}")
    if n_splits < 2 or n_splits % 2:
        raise OverfittingInputError(f"n_splits must be even and at least 2, got {n_splits}")
    if n_splits > MAX_SPLITS:
        raise OverfittingInputError(
            f"n_splits={n_splits} gives {math.comb(n_splits, n_splits // 2):,} combinations;"
            f" at most {MAX_SPLITS} blocks are accepted"
        )
    if n_periods < n_splits:
        raise OverfittingInputError(f"performance has {n_periods} rows, fewer than n_splits={n_splits}")
    half = n_splits // 2
    if (n_periods // n_splits) * half < 2:
        raise OverfittingInputError(
            f"performance has {n_periods} rows: with n_splits={n_splits} a half holds fewer than 2 rows"
        )
    if n_trials < 2:
        raise OverfittingInputError(f"performance has {n_trials} trial column(s), at least 2 are needed")

    # Centring each column first keeps the sums-of-squares variance accurate (no large mean to cancel).
    centre = x.mean(axis=0)
    xc = x - centre
    base, extra = divmod(n_periods, n_splits)
    sizes = np.full(n_splits, base, dtype=np.int64)
    sizes[:extra] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    blocks = _Blocks(
        count=sizes.astype(np.float64),
        total=np.add.reduceat(xc, starts, axis=0),
        square=np.add.reduceat(xc * xc, starts, axis=0),
        top=np.maximum.reduceat(x, starts, axis=0),
        bottom=np.minimum.reduceat(x, starts, axis=0),
    )
    # A set of blocks is the union of a subset of the first half of the blocks and one of the second
    # half: with every subset's figures tabulated (2^(S/2) rows each), a combination's figures are two
    # look-ups and an add, not a sum over S/2 blocks.
    first = _subset_table(blocks.rows(slice(0, half)))
    second = _subset_table(blocks.rows(slice(half, n_splits)))
    in_first, in_second = _combination_masks(n_splits)
    every = (1 << half) - 1
    n_combinations = in_first.size

    # In itertools order the complement of combination i is combination n - 1 - i, and the first
    # half of the combinations are those holding block 0: one pass over them gives both Sharpe
    # tables of a combination and of its complement (the same two tables, swapped).
    logits = np.empty(n_combinations, dtype=np.float64)
    holding_first = n_combinations // 2
    for lo in range(0, holding_first, _COMBINATION_CHUNK):
        hi = min(lo + _COMBINATION_CHUNK, holding_first)
        a = in_first[lo:hi]
        b = in_second[lo:hi]
        sharpe_in = _sharpe_over(first, second, a, b, centre)
        sharpe_out = _sharpe_over(first, second, every ^ a, every ^ b, centre)
        logits[lo:hi] = _selected_logit(sharpe_in, sharpe_out)
        logits[n_combinations - hi : n_combinations - lo] = _selected_logit(sharpe_out, sharpe_in)[::-1]
    logits.setflags(write=False)
    return PboResult(
        pbo=float(np.count_nonzero(logits <= 0.0) / logits.size),
        logits=logits,
        n_combinations=int(logits.size),
        n_trials=int(n_trials),
        n_splits=int(n_splits),
    )


def deflated_sharpe(
    returns: F64,
    n_trials: int,
    sharpe_variance: float,
    periods_per_year: float = 365.0,
    significance: float = 0.95,
) -> DsrResult:
    """The Deflated Sharpe Ratio of the selected trial's per-period ``returns``.

    With SR̂ the per-period Sharpe ratio of ``returns`` (mean / sample stdev), T their number, γ₃
    their skewness and γ₄ their kurtosis (not excess; both the population moments, m₃/m₂^1.5 and
    m₄/m₂²), V = ``sharpe_variance`` (the variance of the per-period Sharpe ratios across the trials,
    see :func:`sharpe_variance_across`) and N = ``n_trials``:

    SR₀ = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))), with γ the Euler-Mascheroni constant,
    and SR₀ = 0 when N = 1 (the DSR is then the Probabilistic Sharpe Ratio against 0);

    DSR = Φ((SR̂ − SR₀) √(T − 1) / √(1 − γ₃ SR̂ + (γ₄ − 1)/4 · SR̂²)).

    ``periods_per_year`` only annualises the reported Sharpe ratio (365: crypto trades every day).
    """
    r = _finite_array(returns, "returns", "n_periods")
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    if not (math.isfinite(periods_per_year) and periods_per_year > 0.0):
        raise OverfittingInputError(f"periods_per_year must be positive, got {periods_per_year}")
    if not 0.0 < significance < 1.0:
        raise OverfittingInputError(f"significance must lie strictly between 0 and 1, got {significance}")
    t = r.size
    if t < 3:
        raise OverfittingInputError(f"returns has {t} value(s), at least 3 are needed")
    if np.ptp(r) == 0.0:
        raise OverfittingInputError(
            "returns have zero variance (every value equal): the Sharpe ratio is undefined"
        )

    mean = float(r.mean())
    deviation = r - mean
    m2 = float(np.mean(deviation**2))
    skewness = float(np.mean(deviation**3)) / m2**1.5
    kurtosis = float(np.mean(deviation**4)) / m2**2
    sharpe = mean / float(r.std(ddof=1))
    dsr = probabilistic_sharpe(sharpe, benchmark, t, skewness, kurtosis)
    return DsrResult(
        dsr=dsr,
        sharpe=sharpe,
        annualised_sharpe=sharpe * math.sqrt(periods_per_year),
        expected_max_sharpe=benchmark,
        n_trials=int(n_trials),
        significant=dsr >= significance,
    )


def probabilistic_sharpe(
    sharpe: float, benchmark: float, n_obs: int, skewness: float, kurtosis: float
) -> float:
    """PSR: the probability that the true per-period Sharpe ratio exceeds ``benchmark``.

    Φ((SR̂ − SR*) √(T − 1) / √(1 − γ₃ SR̂ + (γ₄ − 1)/4 · SR̂²)) for an observed per-period Sharpe
    ``sharpe`` over ``n_obs`` returns of skewness γ₃ and (not excess) kurtosis γ₄ (Bailey, López de
    Prado 2014); the DSR is this with SR* = :func:`expected_max_sharpe`.
    """
    if n_obs < 2:
        raise OverfittingInputError(f"n_obs must be at least 2, got {n_obs}")
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not spread > 0.0:
        # γ₄ ≥ 1 + γ₃² makes this at least (1 − γ₃ SR̂/2)²: zero only for a two-valued series whose
        # Sharpe ratio is exactly 2/γ₃, or for moments no series has.
        raise OverfittingInputError(
            f"the Sharpe estimate has no spread (1 - skew*SR + (kurt-1)/4*SR^2 = {spread:.3g})"
        )
    return _STANDARD_NORMAL.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR₀: the expected highest per-period Sharpe of ``n_trials`` trials whose true Sharpe is 0.

    √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))) (Bailey, López de Prado 2014), 0 for N = 1.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer):
        raise OverfittingInputError(f"n_trials must be an integer, got {n_trials!r}")
    if n_trials < 1:
        raise OverfittingInputError(f"n_trials must be at least 1, got {n_trials}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0.0):
        raise OverfittingInputError(f"sharpe_variance must be finite and not negative, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    inv = _STANDARD_NORMAL.inv_cdf
    spread = (1.0 - EULER_MASCHERONI) * inv(1.0 - 1.0 / n_trials) + EULER_MASCHERONI * inv(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(sharpe_variance) * spread


def sharpe_variance_across(performance: F64) -> float:
    """The sample variance (``ddof=1``) across the trial columns of their per-period Sharpe ratios.

    ``performance`` is [n_periods, n_trials] of per-period returns, as for :func:`pbo_cscv`; a column
    whose returns are all equal has Sharpe 0. This is V for :func:`deflated_sharpe`.
    """
    x = _finite_array(performance, "performance", "n_periods, n_trials")
    if x.shape[0] < 2:
        raise OverfittingInputError(f"performance has {x.shape[0]} row(s), at least 2 are needed")
    if x.shape[1] < 2:
        raise OverfittingInputError(f"performance has {x.shape[1]} trial column(s), at least 2 are needed")
    std = x.std(axis=0, ddof=1)
    flat = np.ptp(x, axis=0) == 0.0
    sharpe = np.where(flat, 0.0, x.mean(axis=0) / np.where(flat, 1.0, std))
    return float(np.var(sharpe, ddof=1))


def _selected_logit(sharpe_in: F64, sharpe_out: F64) -> F64:
    """λ of each row: the logit of the out-of-sample relative rank of the in-sample best trial.

    Rank 1 is the worst of the N trials, N the best, equal Sharpe ratios share the mean of their
    ranks; ω = rank / (N + 1) and λ = ln(ω / (1 − ω)). The first trial wins an in-sample tie.
    """
    n_trials = sharpe_in.shape[1]
    best = np.argmax(sharpe_in, axis=1)
    selected = sharpe_out[np.arange(best.size), best][:, None]
    below = (sharpe_out < selected).sum(axis=1)
    level = (sharpe_out == selected).sum(axis=1)  # counts the selected trial itself
    omega = (below + (level + 1) / 2.0) / (n_trials + 1)
    result: F64 = np.log(omega / (1.0 - omega))
    return result


@dataclass(frozen=True)
class _Blocks:
    """Per-block figures of the centred returns: rows are blocks (or sets of blocks), columns trials.

    ``count`` is the number of rows, ``total`` and ``square`` the sums of the centred returns and of
    their squares, ``top`` and ``bottom`` the largest and smallest (uncentred) return.
    """

    count: F64
    total: F64
    square: F64
    top: F64
    bottom: F64

    @property
    def flat(self) -> npt.NDArray[np.bool_]:
        """Per trial: whether one of the rows has all its returns equal."""
        result: npt.NDArray[np.bool_] = (self.top == self.bottom).any(axis=0)
        return result

    def rows(self, which: slice) -> _Blocks:
        """The figures of the blocks ``which`` selects."""
        return _Blocks(
            self.count[which], self.total[which], self.square[which], self.top[which], self.bottom[which]
        )


def _subset_table(blocks: _Blocks) -> _Blocks:
    """The figures of every subset of ``blocks``, row m holding the subset whose bit j is block j."""
    n_trials = blocks.total.shape[1]
    count = np.zeros(1)
    total = np.zeros((1, n_trials))
    square = np.zeros((1, n_trials))
    top = np.full((1, n_trials), -np.inf)
    bottom = np.full((1, n_trials), np.inf)
    # Doubling: after block j the table's second half is its first half with block j added.
    for j in range(blocks.count.size):
        count = np.concatenate([count, count + blocks.count[j]])
        total = np.concatenate([total, total + blocks.total[j]])
        square = np.concatenate([square, square + blocks.square[j]])
        top = np.concatenate([top, np.maximum(top, blocks.top[j])])
        bottom = np.concatenate([bottom, np.minimum(bottom, blocks.bottom[j])])
    return _Blocks(count, total, square, top, bottom)


def _combination_masks(n_splits: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each in-sample choice of half the blocks (itertools order), its bits in each half of the blocks."""
    half = n_splits // 2
    picked = np.fromiter(
        chain.from_iterable(combinations(range(n_splits), half)),
        dtype=np.int64,
        count=math.comb(n_splits, half) * half,
    ).reshape(-1, half)
    one = np.int64(1)
    in_first = np.where(picked < half, one << np.minimum(picked, half - 1), 0).sum(axis=1)
    in_second = np.where(picked >= half, one << np.maximum(picked - half, 0), 0).sum(axis=1)
    return in_first, in_second


def _sharpe_over(
    first: _Blocks,
    second: _Blocks,
    in_first: npt.NDArray[np.int64],
    in_second: npt.NDArray[np.int64],
    centre: F64,
) -> F64:
    """Per-period Sharpe of every trial over each set of blocks (subset masks of the two halves)."""
    count = (first.count[in_first] + second.count[in_second])[:, None]
    total = first.total[in_first] + second.total[in_second]
    square = first.square[in_first] + second.square[in_second]
    std = np.sqrt(np.maximum(square - total * total / count, 0.0) / (count - 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = (centre + total / count) / std
    # A set of rows whose values are all equal has Sharpe 0 by definition; max == min detects it
    # exactly, where the variance from sums leaves rounding noise instead of 0.
    sharpe[std == 0.0] = 0.0
    # Only a trial with a flat block can be flat over a set of blocks: the others skip the test.
    maybe = first.flat | second.flat
    if maybe.any():
        top = np.maximum(first.top[in_first][:, maybe], second.top[in_second][:, maybe])
        bottom = np.minimum(first.bottom[in_first][:, maybe], second.bottom[in_second][:, maybe])
        sharpe[:, maybe] = np.where(top == bottom, 0.0, sharpe[:, maybe])
    return sharpe


def _finite_array(values: F64, name: str, shape: str) -> F64:
    """``values`` as a finite float64 array of the dimensions ``shape`` names, or an error naming ``name``."""
    x = np.asarray(values, dtype=np.float64)
    ndim = shape.count(",") + 1
    if x.ndim != ndim:
        raise OverfittingInputError(f"{name} must be {ndim}-D [{shape}], got {x.ndim} dimension(s)")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        at = tuple(int(i) for i in np.unravel_index(int(bad[0]), x.shape))
        raise OverfittingInputError(f"{name} holds {bad.size} non-finite value(s), the first at index {at}")
    return x
