"""Objectives: figures read from sigil.report.performance, a trial under the trade minimum has no
score, and bad --objective words are refused."""

from __future__ import annotations

import pytest

from sigil.research.objective import OBJECTIVES, parse_objective
from sigil.research.replay import replay
from tests.support.data import BUNDLED


@pytest.fixture(scope="module")
def baseline() -> tuple[object, object]:
    result = replay([BUNDLED])
    return result.performance["baseline"], result.metrics["baseline"]


def test_figures_are_the_replay_figures(baseline: tuple[object, object]) -> None:
    perf, metrics = baseline
    values, reason = parse_objective("calmar", min_trades=1).score(perf, metrics)  # type: ignore[arg-type]
    assert reason is None and values == [perf.calmar]  # type: ignore[attr-defined]
    both, _ = parse_objective("return,drawdown", min_trades=1).score(perf, metrics)  # type: ignore[arg-type]
    assert both == [metrics.equity / metrics.starting_balance - 1.0, perf.max_drawdown]  # type: ignore[attr-defined]
    assert parse_objective("return,drawdown").directions == ["maximize", "minimize"]


def test_fewer_trades_than_the_minimum_score_as_failed(baseline: tuple[object, object]) -> None:
    perf, metrics = baseline
    closed = perf.trades.closed_trades  # type: ignore[attr-defined]
    values, reason = parse_objective("sharpe", min_trades=closed + 1).score(perf, metrics)  # type: ignore[arg-type]
    assert values is None
    assert reason == f"{closed} closed trades, fewer than the minimum {closed + 1}"
    ok, _ = parse_objective("sharpe", min_trades=closed).score(perf, metrics)  # type: ignore[arg-type]
    assert ok is not None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("calamr", "unknown figure 'calamr'"),
        ("sharpe,sharpe", "names a figure twice"),
        ("return,drawdown,sharpe", "at most two figures"),
    ],
)
def test_bad_objectives_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_objective(raw)


def test_every_objective_has_a_direction() -> None:
    assert {d for d, _ in OBJECTIVES.values()} == {"maximize", "minimize"}
