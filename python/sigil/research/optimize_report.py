"""The printed report of ``sigil optimize``: per fold, in-sample beside out-of-sample; the stitched
out-of-sample equity; PBO and DSR with a verdict in plain words; and ``--show``'s study state."""

from __future__ import annotations

from collections.abc import Sequence

from sigil.report.performance_table import pct, ratio
from sigil.report.table import aligned
from sigil.research.out_of_sample import PBO_LIMIT, FoldOutcome, Stitched
from sigil.research.studies import StudySpec, StudyState


def _pair(a: str, b: str) -> str:
    return f"{a} / {b}"


def _objective(values: list[float | None]) -> str:
    return ", ".join("—" if v is None else f"{v:.3g}".replace("-", "−") for v in values)


def folds_table(outcomes: Sequence[FoldOutcome]) -> str:
    """One row per fold: windows, then each figure as ``in-sample / out-of-sample``."""
    head = ("fold", "train", "test", "trial", "trades IS/OOS", "return IS/OOS", "max DD IS/OOS",
            "Sharpe IS/OOS", "Calmar IS/OOS", "objective IS/OOS")  # fmt: skip
    rows = []
    for o in outcomes:
        i, t = o.in_sample, o.out_of_sample
        rows.append(
            (
                f"{o.spec.fold.index}/{o.spec.fold.count}",
                o.spec.fold.train.describe(),
                o.spec.fold.test.describe(),
                f"#{o.trial.number}",
                _pair(str(i.closed_trades), str(t.closed_trades)),
                _pair(pct(i.total_return), pct(t.total_return)),
                _pair(f"{i.max_drawdown * 100:.1f}%", f"{t.max_drawdown * 100:.1f}%"),
                _pair(ratio(i.sharpe), ratio(t.sharpe)),
                _pair(ratio(i.calmar), ratio(t.calmar)),
                _pair(_objective(i.objective), _objective(t.objective)),
            )
        )
    return aligned(head, rows)


def stitched_line(stitched: Stitched, outcomes: Sequence[FoldOutcome]) -> str:
    """The stitched out-of-sample equity in one line."""
    first, last = outcomes[0].spec.fold.test, outcomes[-1].spec.fold.test
    return (
        f"Stitched out-of-sample equity ({first.describe()[:10]} → {last.describe()[-10:]}): "
        f"{stitched.starting_balance:,.2f} → {stitched.final_balance:,.2f} USDT "
        f"({pct(stitched.total_return)}), max drawdown {stitched.max_drawdown * 100:.1f}%"
    )


def statistics_lines(outcomes: Sequence[FoldOutcome]) -> list[str]:
    """Per fold, PBO and DSR and what they say."""
    lines = []
    for o in outcomes:
        pbo = "n/a" if o.pbo is None else f"{o.pbo.pbo:.2f} ({o.pbo.n_combinations:,} CSCV splits)"
        if o.dsr is None:
            dsr = "n/a"
        else:
            verdict = "significant" if o.dsr.significant else "not significant"
            dsr = f"{o.dsr.dsr:.2f} ({verdict}; Sharpe {o.dsr.annualised_sharpe:.2f} a year)"
        if o.overfit is None:
            says = "cannot tell"
        elif o.overfit:
            says = "probably overfit"
        else:
            says = "no sign of overfitting"
        line = f"  fold {o.spec.fold.index}: {o.n_trials} trials, PBO {pbo}, DSR {dsr} → {says}"
        if o.statistics_note:
            line += f" ({o.statistics_note})"
        lines.append(line)
    return lines


def verdict(outcomes: Sequence[FoldOutcome], stitched: Stitched | None) -> str:
    """The report's last line, in plain words."""
    flagged = [o for o in outcomes if o.overfit]
    unknown = [o for o in outcomes if o.overfit is None]
    losing = stitched is not None and stitched.total_return <= 0
    parts = []
    if flagged:
        parts.append(
            f"the best posture is probably overfit in {len(flagged)} of {len(outcomes)} fold(s) "
            f"(PBO > {PBO_LIMIT} or a DSR that is not significant)"
        )
    elif unknown:
        parts.append(f"overfitting could not be judged in {len(unknown)} fold(s)")
    else:
        parts.append("no fold's best posture shows signs of overfitting")
    if stitched is not None:
        parts.append("it loses money out of sample" if losing else "it makes money out of sample")
    return "Verdict: " + "; ".join(parts) + "."


def report_text(outcomes: Sequence[FoldOutcome], stitched: Stitched | None, missing: Sequence[str]) -> str:
    """The whole report."""
    out = []
    if outcomes:
        out += [folds_table(outcomes), ""]
    for name in missing:
        out.append(f"{name}: no trial has a score (every posture had too few trades or an undefined figure)")
    if stitched is not None:
        out.append(stitched_line(stitched, outcomes))
    if outcomes:
        out += ["Overfitting (over every trial, in sample):", *statistics_lines(outcomes)]
    out.append(verdict(outcomes, stitched))
    return "\n".join(out)


def header_line(name: str, spec: StudySpec, space_source: str) -> str:
    """What the search is: study, objective, folds, trials, space."""
    f = spec.fold
    layout = "a 70/30 holdout" if spec.holdout else f"{f.count} folds"
    return (
        f"Study {name}: objective {spec.objective.label} (at least {spec.objective.min_trades} closed "
        f"trades), {layout}, {spec.trials} trials per fold in batches of {spec.batch}, space "
        f"{space_source} ({spec.space.digest()}, {len(spec.space.params)} keys)"
    )


def state_lines(states: Sequence[StudyState], best: Sequence[str]) -> list[str]:
    """``--show``: per study, trials by state, the best so far, the workers seen, time spent."""
    lines = []
    for s, b in zip(states, best, strict=True):
        workers = ", ".join(f"{w} ({n})" for w, n in sorted(s.workers.items())) or "none yet"
        lines.append(
            f"{s.name}: {s.finished} finished ({s.complete} scored, {s.pruned} without a score), "
            f"{s.running} running, {s.waiting} waiting, {s.failed} failed; best {b}; workers {workers}; "
            f"engine {s.engine_s:.1f} s, Optuna {s.optuna_s:.1f} s"
        )
    return lines
