"""``sigil optimize --data PATH... [--space FILE] [--objective NAME[,NAME]] [--trials N] [--min-trades N]
[--folds N [--anchored]] [--workers N] [--study NAME [--join | --resume | --show]] [--database-url URL]
[--export OUT.yaml] [--html OUT.html] [--batch N] [--seed N]``.

Everything the search needs is checked before the database is touched (space, objective, data,
folds, output folders); a study that exists with another space or objective is refused before
anything is written to it. ``--workers N`` (N > 1) runs N processes of ``sigil optimize --join`` on
the studies and shows their progress; a worker started by hand with ``--join`` on any machine that
reaches the database adds to the same studies.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sigil.cli.args import positive_int
from sigil.cli.database import add_database_args, with_database
from sigil.config import Config, load_config
from sigil.data.candles import CandleSeries, load_universe
from sigil.errors import ConfigError
from sigil.research.objective import DEFAULT_MIN_TRADES, DEFAULT_OBJECTIVE, OBJECTIVES

#: Trials per fold when ``--trials`` is not given.
DEFAULT_TRIALS = 100
#: Postures asked and replayed together per batch: a larger batch costs less per posture (one pass of
#: the engine, one fit of the sampler), a smaller one lets TPE learn from the results more often.
DEFAULT_BATCH = 32
#: Seconds between a worker's heartbeats (a dead worker's trials are retried 3 beats later).
DEFAULT_HEARTBEAT_S = 10
#: Seconds between looks at the studies' progress while worker processes run.
POLL_S = 1.0


def add_parser(sub: Any) -> None:
    """Registers ``optimize``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "optimize",
        help="search postures on Optuna with walk-forward validation",
        description="Search postures (Optuna, study in the database) on training windows, replay the "
        "best one on the following test windows, and say how likely it is overfit.",
    )
    p.add_argument("--data", nargs="+", metavar="PATH", help="candle files or folders")
    add_database_args(p)
    p.add_argument("--space", metavar="FILE", help="search space (default: <config>/search/default.yaml)")
    p.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE,
        metavar="NAME[,NAME]",
        help=f"figure to optimise, or two for a Pareto front ({', '.join(OBJECTIVES)}; default calmar)",
    )
    p.add_argument("--min-trades", type=int, default=DEFAULT_MIN_TRADES, metavar="N",
                   help="a trial with fewer closed trades has no score (default 30)")  # fmt: skip
    p.add_argument("--trials", type=positive_int, metavar="N",
                   help=f"finished trials per fold, over all workers (default {DEFAULT_TRIALS})")  # fmt: skip
    p.add_argument("--folds", type=positive_int, metavar="N",
                   help="walk-forward folds (default: hold out the last 30%%)")  # fmt: skip
    p.add_argument("--anchored", action="store_true", help="training windows grow from the start")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="local worker processes")
    p.add_argument("--study", default="sigil", metavar="NAME", help="study name (folds add -foldK)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--join", action="store_true", help="add a worker to an existing study")
    mode.add_argument("--resume", action="store_true", help="continue a study as stored")
    mode.add_argument("--show", action="store_true", help="print the study's state, run nothing")
    p.add_argument("--export", metavar="OUT.yaml", help="write the chosen posture as a variant overlay")
    p.add_argument("--html", metavar="OUT.html", help="write the report with its charts as one HTML page")
    p.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, metavar="N",
                   help=f"postures replayed together (default {DEFAULT_BATCH})")  # fmt: skip
    p.add_argument("--seed", type=int, metavar="N", help="sampler seed (worker k uses N + k)")
    p.add_argument("--heartbeat", type=positive_int, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help=f"seconds between a worker's heartbeats (default {DEFAULT_HEARTBEAT_S})")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Checks the input, then searches (or joins, or shows) and prints the report."""
    from sigil.research.search_space import default_space_path, load_space
    from sigil.research.walk_forward import data_span, split

    config = load_config(args.config)
    if args.show:
        return with_database(args, lambda _c, db: asyncio.to_thread(_show, args, db.url))
    if not args.data:
        raise ValueError("--data is required (candle files or folders)")
    if args.join and (args.trials or args.folds or args.space or args.anchored):
        raise ValueError("--join takes the study's own settings: drop --trials, --folds, --space, --anchored")
    for out in (args.export, args.html):
        if out and not Path(out).resolve().parent.is_dir():
            raise ValueError(f"{out}: the folder does not exist")
    series = load_universe(args.data)
    plan = None
    if not args.join:
        from sigil.research.objective import parse_objective

        space_path = Path(args.space) if args.space else default_space_path(args.config)
        space = load_space(space_path)
        objective = parse_objective(args.objective, args.min_trades)
        folds = split(data_span(series), args.folds, args.anchored)
        base = space.base_posture(config)
        plan = (space_path, space, objective, folds, base)
    return with_database(args, lambda cfg, db: asyncio.to_thread(_search, args, cfg, series, plan, db.url))


def _search(args: argparse.Namespace, config: Config, series: list[CandleSeries], plan: Any, url: str) -> int:
    from sigil.research.optimize import StudyTask, run_studies
    from sigil.research.studies import (
        StudySpec,
        candles_digest,
        create_or_check,
        create_study,
        family,
        open_storage,
        stored_spec,
        study_names,
    )
    from sigil.research.walk_forward import slice_series

    storage = open_storage(url, args.heartbeat)
    if args.join:
        names = family(storage, args.study)
        specs = [stored_spec(storage, n) for n in names]
        for n, s in zip(names, specs, strict=True):
            if candles_digest(slice_series(series, s.fold.train)) != s.data_digest:
                raise ConfigError(
                    f"study {n!r} was searched on other candles than --data {' '.join(args.data)}"
                )
    else:
        _space_path, space, objective, folds, base = plan
        names = study_names(args.study, args.folds)
        wanted = [
            StudySpec(space, objective, args.trials or DEFAULT_TRIALS, args.batch, f, base,
                      candles_digest(slice_series(series, f.train)), args.folds is None)
            for f in folds
        ]  # fmt: skip
        # Every study is checked before any is written.
        checked = [create_or_check(storage, n, s, args.resume) for n, s in zip(names, wanted, strict=True)]
        specs = [s for s, _new in checked]
        for n, (s, new) in zip(names, checked, strict=True):
            create_study(storage, n, s, new)
    tasks = [StudyTask(n, s, slice_series(series, s.fold.train)) for n, s in zip(names, specs, strict=True)]

    if args.join or args.workers == 1:
        bar = _bar(args, tasks, storage)
        stats = run_studies(storage, tasks, config, seed=args.seed, on_batch=bar.update if bar else None)
        if bar is not None:
            bar.close()
        if args.join:
            from sigil.research.optimize import worker_id

            print(
                f"worker {worker_id()}: {stats.trials} trials in {stats.batches} batches; engine "
                f"{stats.engine_s:.1f} s, figures {stats.figures_s:.1f} s, Optuna {stats.optuna_s:.1f} s"
            )
            return 0
    else:
        _run_workers(args, url, tasks, storage)
    return _report(args, config, series, storage, names, specs, plan[0] if plan else "stored")


def _bar(args: argparse.Namespace, tasks: list[Any], storage: Any) -> Any:
    if args.quiet:
        return None
    import optuna
    from tqdm import tqdm

    from sigil.research.studies import study_state

    done = sum(
        min(t.spec.trials, study_state(optuna.load_study(study_name=t.name, storage=storage)).finished)
        for t in tasks
    )
    return tqdm(
        total=sum(t.spec.trials for t in tasks), initial=done, unit="trial", file=sys.stderr, desc="optimize"
    )


def _run_workers(args: argparse.Namespace, url: str, tasks: list[Any], storage: Any) -> None:
    """Runs ``--workers`` processes of ``sigil optimize --join`` and follows the studies until they end."""
    import optuna

    from sigil.research.studies import study_state

    base = [sys.executable, "-m", "sigil", "optimize", "--join", "--study", args.study, "--quiet",
            "--database-url", url, "--heartbeat", str(args.heartbeat), "--data", *args.data]  # fmt: skip
    if args.config:
        base += ["--config", args.config]
    procs = [
        subprocess.Popen(
            base + ([] if args.seed is None else ["--seed", str(args.seed + k + 1)]),
            stdout=subprocess.DEVNULL,
        )
        for k in range(args.workers)
    ]
    bar = _bar(args, tasks, storage)
    studies = [optuna.load_study(study_name=t.name, storage=storage) for t in tasks]
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(POLL_S)
            if bar is not None:
                done = sum(
                    min(t.spec.trials, study_state(s).finished) for t, s in zip(tasks, studies, strict=True)
                )
                bar.update(done - bar.n)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        if bar is not None:
            bar.close()
    failed = [f"worker {p.pid} exited with {p.returncode}" for p in procs if p.returncode]
    if failed:
        print(f"sigil optimize: {'; '.join(failed)}", file=sys.stderr)


def _report(
    args: argparse.Namespace,
    config: Config,
    series: list[CandleSeries],
    storage: Any,
    names: list[str],
    specs: list[Any],
    space_source: Any,
) -> int:
    import optuna

    from sigil.research.optimize_report import header_line, report_text
    from sigil.research.out_of_sample import evaluate_fold, stitch

    outcomes, missing = [], []
    studies = [optuna.load_study(study_name=name, storage=storage) for name in names]
    for study, spec in zip(studies, specs, strict=True):
        name = study.study_name
        o = evaluate_fold(study, spec, series, config)
        if o is None:
            missing.append(name)
        else:
            outcomes.append(o)
    stitched = stitch(outcomes)
    print(header_line(args.study, specs[0], str(space_source)))
    print(report_text(outcomes, stitched, missing))
    if args.export:
        from sigil.research.export import export

        written = export(args.export, outcomes)
        print(f"wrote {', '.join(str(p) for p in written)}")
    if args.html:
        from sigil.research.optimize_html import write_html

        write_html(args.html, f"sigil optimize: study {args.study}", studies, outcomes, stitched)
        print(f"wrote {args.html}")
    return 0


def _show(args: argparse.Namespace, url: str) -> int:
    import optuna

    from sigil.research.optimize_report import state_lines
    from sigil.research.studies import family, open_storage, stored_spec, study_state

    storage = open_storage(url, args.heartbeat)
    names = family(storage, args.study)
    states, best = [], []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        states.append(study_state(study))
        spec = stored_spec(storage, name)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            best.append("none yet")
        elif spec.objective.multi:
            best.append(f"{len(study.best_trials)} trials on the Pareto front")
        else:
            b = study.best_trial
            best.append(f"#{b.number} {spec.objective.label} {b.value:.4g}")
    print(f"Study {args.study} ({len(names)} {'study' if len(names) == 1 else 'fold studies'}):")
    print("\n".join(state_lines(states, best)))
    return 0
