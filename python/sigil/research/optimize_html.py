"""``sigil optimize --html OUT.html``: one self-contained page (inline SVG, no script) with the
in-sample/out-of-sample comparison, the stitched out-of-sample equity, and per fold the optimisation
history, the parameter importances (Optuna's default evaluator) and, for a two-figure search, the
Pareto front. Charts are :mod:`sigil.report.charts`'; figures come from the report's outcomes."""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sigil.report.charts import bar_chart_svg, line_chart_svg
from sigil.research.optimize_report import folds_table, statistics_lines, stitched_line, verdict
from sigil.research.out_of_sample import FoldOutcome, Stitched
from sigil.times import to_ms

_STYLE = "body{font-family:sans-serif;max-width:1180px;margin:1em auto;color:#222}pre{font-size:12px}"


def _history(study: optuna.Study, label: str, maximize: bool) -> str:
    """The best value so far of the first figure, over the trials' completion times."""
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.datetime_complete),
        key=lambda t: t.datetime_complete,  # type: ignore[arg-type, return-value]
    )
    times: list[int] = []
    best: list[float] = []
    for t in done:
        v = t.values[0]
        best.append(v if not best else (max if maximize else min)(best[-1], v))
        times.append(to_ms(t.datetime_complete))  # type: ignore[arg-type]
    return line_chart_svg({f"best {label}": (times, best)}, title=f"{study.study_name}: best so far",
                          y_format="{:,.3g}")  # fmt: skip


def _importances(study: optuna.Study) -> str:
    """Optuna's parameter importances for the first figure (none below two scored trials)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (RuntimeError, ValueError):
        imp = {}
    return bar_chart_svg(list(imp), list(imp.values()), title=f"{study.study_name}: parameter importances",
                         y_format="{:.2f}")  # fmt: skip


def _pareto(study: optuna.Study, names: Sequence[str]) -> str:
    rows = "".join(
        f"<tr><td>#{t.number}</td>{''.join(f'<td>{v:.4g}</td>' for v in t.values)}</tr>"
        for t in sorted(study.best_trials, key=lambda t: t.values[0])
    )
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    name = html.escape(study.study_name)
    return f"<h3>{name}: Pareto front</h3><table><tr><th>trial</th>{head}</tr>{rows}</table>"


def optimize_html(
    title: str, studies: Sequence[optuna.Study], outcomes: Sequence[FoldOutcome], stitched: Stitched | None
) -> str:
    """The page."""
    head = f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"
    parts = [head, f"<h1>{html.escape(title)}</h1>"]
    if outcomes:
        parts.append(f"<h2>In sample and out of sample</h2><pre>{html.escape(folds_table(outcomes))}</pre>")
        labels, values = [], []
        for o in outcomes:
            for side, w in (("IS", o.in_sample), ("OOS", o.out_of_sample)):
                labels.append(f"fold {o.spec.fold.index} {side}")
                values.append((w.total_return or 0.0) * 100)
        parts.append(bar_chart_svg(labels, values, title="return per fold, %", y_format="{:+.1f}"))
    if stitched is not None and outcomes:
        parts.append(f"<p>{html.escape(stitched_line(stitched, outcomes))}</p>")
        parts.append(line_chart_svg({"out of sample": (stitched.equity_time, stitched.equity)},
                                    title="stitched out-of-sample equity (USDT)"))  # fmt: skip
    if outcomes:
        lines = "\n".join(statistics_lines(outcomes))
        parts.append(f"<h2>Overfitting</h2><pre>{html.escape(lines)}</pre>")
    parts.append(f"<p><b>{html.escape(verdict(outcomes, stitched))}</b></p><h2>Search</h2>")
    by_name = {o.name: o for o in outcomes}
    for study in studies:
        found = by_name.get(study.study_name)
        if found is None:
            continue
        names = found.spec.objective.names
        parts.append(_history(study, names[0], found.spec.objective.directions[0] == "maximize"))
        parts.append(_importances(study))
        if found.spec.objective.multi:
            parts.append(_pareto(study, names))
    return "\n".join(parts)


def write_html(
    path: str | Path, title: str, studies: Sequence[optuna.Study], outcomes: Sequence[FoldOutcome],
    stitched: Stitched | None,
) -> None:  # fmt: skip
    """Writes :func:`optimize_html` to ``path``."""
    Path(path).write_text(optimize_html(title, studies, outcomes, stitched), encoding="utf-8")
