"""What a search's best postures do out of sample, and how likely they are overfit.

For each fold's study: the best trial (for a two-figure search, the Pareto trial with the best first
figure per unit of the second when that one is minimised, else the best first figure), its posture
replayed on the training window (in-sample) and, untouched, on the test window (out-of-sample); the
out-of-sample equity curves stitched end to end (each fold's growth applied to the balance the fold
before ended with); and, over all the fold's trials, the Probability of Backtest Overfitting (CSCV)
and the Deflated Sharpe Ratio of the chosen trial, from the trials' daily returns in sample
(:mod:`sigil.research.overfitting`). A posture is called probably overfit when its PBO is above 0.5
or its DSR is not significant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import optuna
from optuna.trial import FrozenTrial, TrialState

from sigil.config import Config, Variant
from sigil.data.candles import CandleSeries
from sigil.report.performance import DAYS_PER_YEAR, Performance, max_drawdown
from sigil.research.objective import OBJECTIVES
from sigil.research.optimize import unpack_returns
from sigil.research.overfitting import (
    DsrResult,
    OverfittingInputError,
    PboResult,
    deflated_sharpe,
    pbo_cscv,
    sharpe_variance_across,
)
from sigil.research.replay import VariantMetrics, replay_series
from sigil.research.studies import FINISHED, StudySpec
from sigil.research.walk_forward import slice_series

#: Above this PBO the best trial is more likely than not to be below the median out of sample.
PBO_LIMIT = 0.5
#: CSCV's number of blocks (the paper's 16), fewer when the window has few days.
PBO_SPLITS = 16


@dataclass(frozen=True)
class WindowFigures:
    """One posture's figures on one window."""

    closed_trades: int
    total_return: float | None
    max_drawdown: float
    sharpe: float | None
    calmar: float | None
    net_pnl: float
    objective: list[float | None]
    equity_time: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    starting_balance: float


@dataclass(frozen=True)
class FoldOutcome:
    """One fold: its chosen trial and posture, its figures in and out of sample, and the statistics."""

    name: str
    spec: StudySpec
    trial: FrozenTrial
    posture: dict[str, Any]
    in_sample: WindowFigures
    out_of_sample: WindowFigures
    n_trials: int
    pbo: PboResult | None
    dsr: DsrResult | None
    statistics_note: str | None

    @property
    def overfit(self) -> bool | None:
        """True when PBO > 0.5 or the DSR is not significant; None when neither could be computed."""
        if self.pbo is None and self.dsr is None:
            return None
        return (self.pbo is not None and self.pbo.pbo > PBO_LIMIT) or (
            self.dsr is not None and not self.dsr.significant
        )


@dataclass(frozen=True)
class Stitched:
    """The out-of-sample equity of every fold, end to end."""

    equity_time: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    starting_balance: float

    @property
    def final_balance(self) -> float:
        """The equity at the end of the last test window."""
        return float(self.equity[-1]) if self.equity.size else self.starting_balance

    @property
    def total_return(self) -> float:
        """Final over starting balance, less one."""
        return self.final_balance / self.starting_balance - 1.0

    @property
    def max_drawdown(self) -> float:
        """The largest fall from a peak of the stitched curve."""
        return max_drawdown(self.equity)


def choose(study: optuna.Study, spec: StudySpec) -> FrozenTrial | None:
    """The fold's chosen trial (see the module docstring); None when no trial has a score."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if not spec.objective.multi:
        return study.best_trial
    front = study.best_trials
    if spec.objective.directions == ["maximize", "minimize"]:
        return max(front, key=lambda t: (t.values[0] / max(t.values[1], 1e-12), -t.number))
    sign = 1.0 if spec.objective.directions[0] == "maximize" else -1.0
    return max(front, key=lambda t: (sign * t.values[0], -t.number))


def window_figures(
    series: Sequence[CandleSeries], config: Config, posture: dict[str, Any], spec: StudySpec
) -> WindowFigures:
    """Replays ``posture`` alone over ``series`` and reads its figures."""
    variant = Variant(name="chosen", **posture)
    result = replay_series(
        series, config.model_copy(update={"variants": (variant,), "source": "sigil optimize"})
    )
    perf: Performance = result.performance["chosen"]
    metrics: VariantMetrics = result.metrics["chosen"]
    return WindowFigures(
        closed_trades=perf.trades.closed_trades,
        total_return=OBJECTIVES["return"][1](perf, metrics),
        max_drawdown=perf.max_drawdown,
        sharpe=perf.sharpe,
        calmar=perf.calmar,
        net_pnl=perf.trades.net_pnl,
        objective=spec.objective.values_of(perf, metrics),
        equity_time=result.equity_time,
        equity=result.equity["chosen"],
        starting_balance=metrics.starting_balance,
    )


def evaluate_fold(
    study: optuna.Study, spec: StudySpec, series: Sequence[CandleSeries], config: Config
) -> FoldOutcome | None:
    """The fold's outcome, or None when no trial of it has a score."""
    chosen = choose(study, spec)
    if chosen is None:
        return None
    posture = spec.space.posture(spec.base, chosen.params)
    in_sample = window_figures(slice_series(series, spec.fold.train), config, posture, spec)
    out_of_sample = window_figures(slice_series(series, spec.fold.test), config, posture, spec)
    pbo, dsr, note, n = _statistics(study, chosen)
    return FoldOutcome(study.study_name, spec, chosen, posture, in_sample, out_of_sample, n, pbo, dsr, note)


def _statistics(
    study: optuna.Study, chosen: FrozenTrial
) -> tuple[PboResult | None, DsrResult | None, str | None, int]:
    """PBO over every finished trial's in-sample daily returns, and the chosen trial's DSR."""
    trials = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if _returns_of(t) is not None]
    columns = [unpack_returns(_returns_of(t) or "") for t in trials]
    lengths = {c.size for c in columns}
    if len(lengths) > 1:
        return None, None, "the trials' daily returns differ in length", len(columns)
    chosen_returns = _returns_of(chosen)
    if chosen_returns is None:
        return None, None, "the chosen trial has no daily returns", len(columns)
    notes: list[str] = []
    matrix = np.column_stack(columns) if columns else np.empty((0, 0))
    pbo: PboResult | None = None
    dsr: DsrResult | None = None
    try:
        days = matrix.shape[0]
        splits = PBO_SPLITS if days >= 2 * PBO_SPLITS else max(2, (days // 2) // 2 * 2)
        pbo = pbo_cscv(matrix, n_splits=splits)
    except OverfittingInputError as e:
        notes.append(f"PBO: {e}")
    try:
        dsr = deflated_sharpe(
            unpack_returns(chosen_returns),
            n_trials=len(columns),
            sharpe_variance=sharpe_variance_across(matrix),
            periods_per_year=float(DAYS_PER_YEAR),
        )
    except OverfittingInputError as e:
        notes.append(f"DSR: {e}")
    return pbo, dsr, "; ".join(notes) or None, len(columns)


def _returns_of(trial: FrozenTrial) -> str | None:
    """The packed in-sample daily returns a worker recorded on ``trial``, if any."""
    result = trial.user_attrs.get("result")
    value = result.get("daily_returns") if isinstance(result, dict) else None
    return value if isinstance(value, str) else None


def stitch(outcomes: Sequence[FoldOutcome]) -> Stitched | None:
    """The test windows' equity curves end to end; None without an outcome."""
    if not outcomes:
        return None
    start = outcomes[0].out_of_sample.starting_balance
    balance = start
    times: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    for o in outcomes:
        w = o.out_of_sample
        growth = w.equity / w.starting_balance if w.starting_balance > 0 else np.ones_like(w.equity)
        times.append(w.equity_time)
        values.append(balance * growth)
        if w.equity.size:
            balance = float(balance * growth[-1])
    return Stitched(np.concatenate(times), np.concatenate(values), start)
