"""The overfitting statistics: PBO by CSCV against an independent loop implementation and cases whose
answer is known by construction; the DSR against the 2014 paper's numerical example."""

from __future__ import annotations

import math
import statistics
from itertools import combinations, pairwise

import numpy as np
import pytest

from sigil.research.overfitting import (
    DsrResult,
    OverfittingInputError,
    PboResult,
    deflated_sharpe,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe,
    sharpe_variance_across,
)

# ---------------------------------------------------------------------------------------------------
# An independent PBO, written from the paper's description with plain loops and the statistics module.


def _loop_sharpe(values: list[float]) -> float:
    if max(values) == min(values):
        return 0.0
    return statistics.mean(values) / statistics.stdev(values)


def _loop_pbo(rows: list[list[float]], n_splits: int) -> tuple[float, list[float]]:
    n_rows, n_trials = len(rows), len(rows[0])
    base, extra = divmod(n_rows, n_splits)
    blocks: list[list[int]] = []
    start = 0
    for k in range(n_splits):
        size = base + (1 if k < extra else 0)
        blocks.append(list(range(start, start + size)))
        start += size
    logits = []
    for inside in combinations(range(n_splits), n_splits // 2):
        in_rows = [r for k in inside for r in blocks[k]]
        out_rows = [r for k in range(n_splits) if k not in inside for r in blocks[k]]
        sharpe_in = [_loop_sharpe([rows[r][n] for r in in_rows]) for n in range(n_trials)]
        sharpe_out = [_loop_sharpe([rows[r][n] for r in out_rows]) for n in range(n_trials)]
        best = sharpe_in.index(max(sharpe_in))
        mine = sharpe_out[best]
        below = sum(1 for v in sharpe_out if v < mine)
        level = sum(1 for v in sharpe_out if v == mine)
        omega = (below + (level + 1) / 2) / (n_trials + 1)
        logits.append(math.log(omega / (1 - omega)))
    return sum(1 for v in logits if v <= 0) / len(logits), logits


# ---------------------------------------------------------------------------------------------------
# PBO


def test_two_blocks_by_hand() -> None:
    # Rows 0-1 are block 0, rows 2-3 block 1. Per-block Sharpe (mean / sample stdev):
    #   trial A: block 0 [1, 3] -> 2/√2 = 1.414, block 1 [-1, 0] -> -0.5/0.707 = -0.707
    #   trial B: block 0 [0, 1] -> 0.5/0.707 = 0.707, block 1 [1, 2] -> 1.5/0.707 = 2.121
    #   trial C: block 0 [-1, 1] -> 0, block 1 [0, 1] -> 0.707
    # In-sample block 0: A is best, out of sample it is the worst (rank 1): ω = 1/4, λ = ln(1/3).
    # In-sample block 1: B is best, out of sample (1.414, 0.707, 0) it is the median (rank 2):
    # ω = 2/4, λ = 0, which counts as overfit (λ ≤ 0). PBO = 2/2.
    perf = np.array([[1.0, 0.0, -1.0], [3.0, 1.0, 1.0], [-1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    result = pbo_cscv(perf, n_splits=2)
    assert result.n_combinations == 2
    assert result.logits.tolist() == pytest.approx([math.log(1 / 3), 0.0], abs=1e-12)
    assert result.pbo == 1.0
    assert (result.n_trials, result.n_splits) == (3, 2)


def test_ties_share_their_mean_rank_by_hand() -> None:
    # Trial A: block 0 [1, 3] (Sharpe 1.414), block 1 [0, 0] (flat: Sharpe 0); B and C never trade
    # (Sharpe 0); D: block 0 [0, 1] (0.707), block 1 [1, 2] (2.121).
    # In-sample block 0: A is best; out of sample A, B and C tie at 0 below D, so A takes the mean of
    # ranks 1, 2, 3: ω = 2/5, λ = ln(2/3). In-sample block 1: D is best (2.121); out of sample
    # (1.414, 0, 0, 0.707) it ranks 3: ω = 3/5, λ = ln(3/2). PBO = 1/2.
    perf = np.array([[1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    result = pbo_cscv(perf, n_splits=2)
    assert result.logits.tolist() == pytest.approx([math.log(2 / 3), math.log(3 / 2)], abs=1e-12)
    assert result.pbo == 0.5


def test_constant_returns_have_sharpe_zero_not_rounding_noise() -> None:
    # A trial earning exactly 0.1 every period (and one doing so for its first 20 periods): centred
    # sums leave a variance of ~1e-34 instead of 0, which would make its Sharpe ~1e16 and the trial
    # the in-sample best. By definition it has Sharpe 0 there, as in the loop implementation.
    perf = np.random.default_rng(3).normal(0.001, 0.02, (37, 4))
    perf[:, 2] = 0.1
    perf[:20, 3] = 0.1
    result = pbo_cscv(perf, n_splits=6)
    expected, logits = _loop_pbo(perf.tolist(), 6)
    assert result.logits.tolist() == pytest.approx(logits, abs=1e-9)
    assert result.pbo == expected


def test_four_blocks_three_trials_match_the_loop_implementation() -> None:
    rng = np.random.default_rng(7)
    perf = rng.normal(0.0, 1.0, (14, 3))  # 14 rows: blocks of 4, 4, 3, 3
    result = pbo_cscv(perf, n_splits=4)
    expected, logits = _loop_pbo(perf.tolist(), 4)
    assert result.n_combinations == math.comb(4, 2) == 6
    assert result.logits.tolist() == pytest.approx(logits, abs=1e-12)
    assert result.pbo == expected


@pytest.mark.parametrize(
    ("n_rows", "n_trials", "n_splits", "seed"), [(40, 5, 8, 1), (37, 4, 6, 2), (23, 6, 8, 3)]
)
def test_random_cases_match_the_loop_implementation(
    n_rows: int, n_trials: int, n_splits: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    perf = rng.normal(0.001, 0.02, (n_rows, n_trials))
    perf[: n_rows // 3, 0] = 0.0  # a trial that does not trade for a while: flat in some sets of blocks
    perf[:, 1] = 0.0 if seed == 1 else perf[:, 1]  # a trial that never trades (Sharpe 0 everywhere)
    result = pbo_cscv(perf, n_splits=n_splits)
    expected, logits = _loop_pbo(perf.tolist(), n_splits)
    assert result.logits.tolist() == pytest.approx(logits, abs=1e-9)
    assert result.pbo == expected


def test_in_sample_best_always_out_of_sample_worst_gives_one() -> None:
    # Each row is a common ±1 pattern (summing to zero inside every block) plus ε·μ[trial, block].
    # Every trial's μ sums to zero over the blocks, so a trial's out-of-sample mean is minus its
    # in-sample mean, and the common pattern makes the standard deviations almost the same: the
    # in-sample best has the lowest out-of-sample Sharpe in every one of the C(8, 4) = 70 splits.
    rng = np.random.default_rng(11)
    n_splits, rows_per_block, n_trials, eps = 8, 4, 6, 1e-3
    mu = rng.normal(0.0, 1.0, (n_trials, n_splits))
    mu -= mu.mean(axis=1, keepdims=True)
    pattern = np.tile([1.0, -1.0], n_splits * rows_per_block // 2)
    perf = pattern[:, None] + eps * np.repeat(mu.T, rows_per_block, axis=0)
    result = pbo_cscv(perf, n_splits=n_splits)
    assert result.pbo == 1.0
    # Rank 1 of 6 every time: ω = 1/7, λ = ln(1/6).
    assert np.allclose(result.logits, math.log(1 / 6))


def test_dominant_trial_gives_zero() -> None:
    rng = np.random.default_rng(5)
    perf = rng.normal(0.0, 0.01, (160, 10))
    perf[:, 3] = 0.01 + rng.normal(0.0, 0.001, 160)  # Sharpe ~10 per period in every set of rows
    result = pbo_cscv(perf, n_splits=16)
    assert result.n_combinations == 12_870
    assert result.pbo == 0.0
    # Best of 10 out of sample every time: ω = 10/11, λ = ln(10).
    assert np.allclose(result.logits, math.log(10))


def test_pure_noise_gives_about_one_half() -> None:
    # Under the null (iid trials, an even number of them) the in-sample best's out-of-sample rank is
    # uniform on 1..N, so each split has λ ≤ 0 with probability exactly 1/2. The C(8, 4) = 70 splits
    # of one matrix share its rows and are far from independent: measured over 200 seeded 160×20
    # matrices, one matrix's PBO has a standard deviation of 0.22 around 0.5, whatever the number of
    # combinations. So the claim is checked on the mean over 64 independent matrices, whose standard
    # deviation is about 0.22 / √64 = 0.028: ±0.1 is 3.6 of them.
    pbos = [
        pbo_cscv(np.random.default_rng(1000 + seed).normal(0.0, 0.01, (64, 20)), n_splits=8).pbo
        for seed in range(64)
    ]
    assert abs(statistics.mean(pbos) - 0.5) < 0.1
    assert min(pbos) < 0.5 < max(pbos)


def test_result_is_read_only_and_frozen() -> None:
    result = pbo_cscv(np.random.default_rng(3).normal(0.0, 1.0, (16, 4)), n_splits=4)
    assert isinstance(result, PboResult)
    with pytest.raises(ValueError, match="read-only"):
        result.logits[0] = 1.0
    with pytest.raises(AttributeError):
        result.pbo = 0.0  # type: ignore[misc]


def test_large_search_runs_whole() -> None:
    # The size sigil optimize gives it: 240 days × 300 trials, 12,870 splits (timed in benchmarks,
    # not here; this checks the chunked pass covers every split once and agrees with a slice done
    # the slow way).
    perf = np.random.default_rng(9).normal(0.0005, 0.01, (240, 300))
    result = pbo_cscv(perf)
    assert result.logits.shape == (12_870,)
    assert np.all(np.isfinite(result.logits))
    _, logits = _loop_pbo(perf[:, :5].tolist(), 4)
    assert pbo_cscv(perf[:, :5], n_splits=4).logits.tolist() == pytest.approx(logits, abs=1e-9)


@pytest.mark.parametrize(
    ("perf", "n_splits", "message"),
    [
        (np.zeros((32, 4)), 5, "even"),
        (np.zeros((32, 4)), 0, "even"),
        (np.zeros((32, 4)), 2.0, "integer"),
        (np.zeros((64, 4)), 22, "705,432 combinations"),
        (np.zeros((6, 4)), 8, "fewer than n_splits"),
        (np.zeros((3, 4)), 2, "fewer than 2 rows"),
        (np.zeros((32, 1)), 4, "1 trial column"),
        (np.zeros(32), 4, "2-D"),
        (np.array([[0.0, 1.0]] * 7 + [[np.nan, 1.0]]), 4, "non-finite value.*index \\(7, 0\\)"),
        (np.array([[0.0, np.inf]] * 8), 4, "non-finite"),
    ],
)
def test_bad_input_is_refused(perf: np.ndarray, n_splits: int, message: str) -> None:
    with pytest.raises(OverfittingInputError, match=message):
        pbo_cscv(perf, n_splits=n_splits)


# ---------------------------------------------------------------------------------------------------
# DSR


def test_paper_numerical_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", the numerical example: the best of
    # N = 100 trials has an annualised Sharpe of 2.5 over T = 1250 daily returns (five years of 250
    # days), skewness -3 and kurtosis 10; the trials' annualised Sharpe ratios have variance 1/2.
    # Per day: SR̂ = 2.5/√250, V = 0.5/250. The paper finds SR₀ ≈ 0.1132 and DSR ≈ 0.9004.
    sharpe, variance = 2.5 / math.sqrt(250), 0.5 / 250
    benchmark = expected_max_sharpe(100, variance)
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert probabilistic_sharpe(sharpe, benchmark, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)


def test_dsr_of_a_series_uses_its_moments() -> None:
    rng = np.random.default_rng(21)
    returns = rng.standard_t(4, 500) * 0.01 + 0.002
    result = deflated_sharpe(returns, n_trials=50, sharpe_variance=0.004, periods_per_year=365.0)
    assert isinstance(result, DsrResult)
    values = returns.tolist()
    mean = statistics.fmean(values)
    m2 = statistics.fmean([(v - mean) ** 2 for v in values])
    skew = statistics.fmean([(v - mean) ** 3 for v in values]) / m2**1.5
    kurt = statistics.fmean([(v - mean) ** 4 for v in values]) / m2**2
    sharpe = mean / statistics.stdev(values)
    gamma = 0.5772156649015329
    inv = statistics.NormalDist().inv_cdf
    sr0 = math.sqrt(0.004) * ((1 - gamma) * inv(1 - 1 / 50) + gamma * inv(1 - 1 / (50 * math.e)))
    z = (sharpe - sr0) * math.sqrt(499) / math.sqrt(1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2)
    assert result.sharpe == pytest.approx(sharpe, rel=1e-12)
    assert result.annualised_sharpe == pytest.approx(sharpe * math.sqrt(365), rel=1e-12)
    assert result.expected_max_sharpe == pytest.approx(sr0, rel=1e-12)
    assert result.dsr == pytest.approx(statistics.NormalDist().cdf(z), rel=1e-10)
    assert result.n_trials == 50
    assert result.significant == (result.dsr >= 0.95)


def test_one_trial_is_the_probabilistic_sharpe_ratio() -> None:
    returns = np.random.default_rng(4).normal(0.001, 0.01, 365)
    result = deflated_sharpe(returns, n_trials=1, sharpe_variance=0.01)
    assert result.expected_max_sharpe == 0.0
    deviation = returns - returns.mean()
    skew = float(np.mean(deviation**3) / np.mean(deviation**2) ** 1.5)
    kurt = float(np.mean(deviation**4) / np.mean(deviation**2) ** 2)
    assert result.dsr == probabilistic_sharpe(result.sharpe, 0.0, 365, skew, kurt)


def test_dsr_falls_as_trials_grow() -> None:
    returns = np.random.default_rng(8).normal(0.004, 0.02, 730)
    dsrs = [deflated_sharpe(returns, n, 0.002).dsr for n in (1, 2, 10, 100, 1000, 10_000)]
    assert all(a > b for a, b in pairwise(dsrs))
    assert dsrs[0] > 0.95 > dsrs[-1]


def test_significance_threshold() -> None:
    returns = np.random.default_rng(8).normal(0.004, 0.02, 730)
    result = deflated_sharpe(returns, 10, 0.002, significance=0.5)
    assert result.significant == (result.dsr >= 0.5)
    assert deflated_sharpe(returns, 10, 0.002, significance=result.dsr).significant


@pytest.mark.parametrize(
    ("returns", "n_trials", "variance", "extra", "message"),
    [
        (np.array([0.01, 0.02, 0.03]), 0, 0.001, {}, "n_trials must be at least 1"),
        (np.array([0.01, 0.02, 0.03]), 2.5, 0.001, {}, "integer"),
        (np.array([0.01, 0.02]), 5, 0.001, {}, "2 value"),
        (np.array([0.01, 0.01, 0.01, 0.01]), 5, 0.001, {}, "zero variance"),
        (np.array([0.01, np.nan, 0.03]), 5, 0.001, {}, "non-finite"),
        (np.array([[0.01, 0.02, 0.03]]), 5, 0.001, {}, "1-D"),
        (np.array([0.01, 0.02, 0.03]), 5, -1.0, {}, "sharpe_variance"),
        (np.array([0.01, 0.02, 0.03]), 5, math.nan, {}, "sharpe_variance"),
        (np.array([0.01, 0.02, 0.03]), 5, 0.001, {"periods_per_year": 0.0}, "periods_per_year"),
        (np.array([0.01, 0.02, 0.03]), 5, 0.001, {"significance": 1.0}, "significance"),
    ],
)
def test_dsr_bad_input_is_refused(
    returns: np.ndarray, n_trials: int, variance: float, extra: dict[str, float], message: str
) -> None:
    with pytest.raises(OverfittingInputError, match=message):
        deflated_sharpe(returns, n_trials, variance, **extra)


def test_psr_refuses_moments_without_spread() -> None:
    # Kurtosis 0 is impossible (γ₄ ≥ 1 + γ₃²); with it 1 - γ₃ SR + (γ₄ - 1)/4 SR² = 1 - 9/4 < 0.
    with pytest.raises(OverfittingInputError, match="no spread"):
        probabilistic_sharpe(3.0, 0.0, 10, 0.0, 0.0)
    with pytest.raises(OverfittingInputError, match="n_obs"):
        probabilistic_sharpe(0.1, 0.0, 1, 0.0, 3.0)


def test_errors_are_value_errors() -> None:
    assert issubclass(OverfittingInputError, ValueError)


# ---------------------------------------------------------------------------------------------------
# The variance of the trials' Sharpe ratios


def test_sharpe_variance_across_columns() -> None:
    rng = np.random.default_rng(2)
    perf = rng.normal(0.001, 0.01, (100, 6))
    perf[:, 2] = 0.0  # a trial that never traded: Sharpe 0
    columns = perf.T.tolist()
    expected = statistics.variance([_loop_sharpe(c) for c in columns])
    assert sharpe_variance_across(perf) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("perf", "message"),
    [(np.zeros((1, 4)), "1 row"), (np.zeros((10, 1)), "1 trial column"), (np.zeros(10), "2-D")],
)
def test_sharpe_variance_bad_input(perf: np.ndarray, message: str) -> None:
    with pytest.raises(OverfittingInputError, match=message):
        sharpe_variance_across(perf)
