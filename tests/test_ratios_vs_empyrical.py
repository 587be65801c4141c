"""Sigil's CAGR, Sharpe and Sortino equal empyrical-reloaded's (the library whose definitions they
follow) on seeded random and edge-case daily returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sigil.report.performance import DAYS_PER_YEAR, annual_return, sharpe_ratio, sortino_ratio

empyrical = pytest.importorskip("empyrical")


def library(returns: np.ndarray) -> tuple[float | None, float | None, float | None]:
    with np.errstate(divide="ignore", invalid="ignore"):
        got = (
            empyrical.annual_return(returns, annualization=DAYS_PER_YEAR),
            empyrical.sharpe_ratio(returns, annualization=DAYS_PER_YEAR),
            empyrical.sortino_ratio(returns, annualization=DAYS_PER_YEAR),
        )
    return tuple(float(x) if math.isfinite(float(x)) else None for x in got)  # type: ignore[return-value]


CASES = [
    np.array([0.01]),
    np.array([0.01, -0.02]),
    np.array([0.0, 0.0, 0.0]),
    np.array([0.003] * 40),
    np.array([0.01, 0.02, 0.005]),
    np.array([-0.01, -0.02, -0.5]),
    np.array([-0.999, 0.5, 0.1]),
]


@pytest.mark.parametrize("seed", range(40))
def test_random_returns_equal_the_librarys(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    returns = rng.normal(float(rng.normal(0, 0.002)), float(rng.uniform(0.001, 0.05)), n)
    mine = (annual_return(returns), sharpe_ratio(returns), sortino_ratio(returns))
    assert mine == pytest.approx(library(returns), rel=1e-12, abs=0)


@pytest.mark.parametrize("returns", CASES, ids=lambda r: f"n{r.size}-{r[0]:g}")
def test_edge_cases_equal_the_librarys(returns: np.ndarray) -> None:
    assert (annual_return(returns), sharpe_ratio(returns), sortino_ratio(returns)) == library(returns)
