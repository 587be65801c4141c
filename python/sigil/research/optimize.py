"""One worker of ``sigil optimize``: trials asked of Optuna in batches, each batch replayed in one pass.

A batch's postures come from one fit of multivariate TPE on the study's trials
(:class:`sigil.research.sampler.BatchTPESampler`), and the batch is written to the study, running,
in one transaction, then told in another (:mod:`sigil.store.study_rows`): Optuna's ``ask`` and
``tell`` would refit TPE for every trial and commit every parameter and attribute on its own, which
at a thousand trials costs several times the engine's time per posture.

A batch of k postures is replayed by the engine over the fold's training candles in calls of
:data:`ENGINE_CHUNK` variants (:func:`sigil.research.replay.replay_series`): in each call the candles
are validated and packed once, and the variants share every pass over them and their indicators.
Each trial is then told its score (Optuna's ask-and-tell interface), or told "pruned" when it has
no score (fewer closed trades than the minimum, an undefined figure, or an impossible posture such
as a stop cap below its floor);
pruned trials count towards ``--trials`` and teach the sampler that their region is worse.

Every trial records, as user attributes: ``worker`` (``host:pid``), ``engine_s`` (its share of the
batch's replay time) and ``result``: ``optuna_s`` (its share of the time spent sampling and writing
the batch's trials), ``figures`` (trades, return, drawdown, Sharpe, Calmar on the training window),
``daily_returns`` (the equity's daily returns on the training window, packed; the overfitting
statistics read them) and ``failed`` (why a pruned trial has no score).

Several workers (processes, machines) may share a study: ``--trials`` counts the finished trials of
all of them (the batch asked is never more than the target less the finished and running trials).
A worker beats a heartbeat for every trial of its batch while the engine runs; a worker killed with
-9 stops beating, and the next worker to look fails its trials, which Optuna queues again
(:data:`sigil.research.studies.MAX_RETRY`) and the next ``ask`` takes first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from sigil.config import Config, Variant
from sigil.data.candles import CandleSeries
from sigil.errors import ConfigError
from sigil.report.performance import daily_returns
from sigil.research.objective import OBJECTIVES
from sigil.research.replay import ReplayResult, replay_series
from sigil.research.sampler import BatchTPESampler, space_distributions
from sigil.research.studies import FINISHED, StudySpec
from sigil.store.study_rows import Outcome, beat, counts, create_running, finish

#: Seconds between looks at a study whose remaining trials are all running elsewhere.
IDLE_POLL_S = 1.0
#: Postures per engine call. One pass over the candles serves every posture of a call, and the
#: postures share their ATRs and breakout windows (one per period and lookback), so the time per
#: posture keeps falling up to this many on the 109-pair universe (see the README's throughput
#: table); a larger batch is replayed in calls of this many, which bounds the equity curves held.
ENGINE_CHUNK = 256
#: Heartbeats a waiting worker gives running trials that show no sign of life before failing them.
STUCK_HEARTBEATS = 30


def worker_id() -> str:
    """``host:pid``, as recorded on every trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pack_returns(returns: npt.NDArray[np.float64]) -> str:
    """Daily returns as text for a user attribute (float64, zlib, base64: exact and small)."""
    return base64.b64encode(zlib.compress(np.asarray(returns, dtype="<f8").tobytes())).decode("ascii")


def unpack_returns(text: str) -> npt.NDArray[np.float64]:
    """The inverse of :func:`pack_returns`."""
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<f8").astype(np.float64)


@dataclass
class WorkerStats:
    """What a worker did: trials told, and where its time went."""

    trials: int = 0
    batches: int = 0
    engine_s: float = 0.0
    figures_s: float = 0.0
    optuna_s: float = 0.0
    by_study: dict[str, int] = field(default_factory=dict)


class Heartbeats:
    """Beats the heartbeat of a batch's trials every ``interval`` seconds, in one transaction each
    time, from a thread (the engine releases the GIL while it replays, so the beats go on). The
    trials beat once already when they were written (or taken from the queue)."""

    def __init__(self, storage: RDBStorage, trial_ids: Sequence[int], interval: float) -> None:
        self._storage, self._ids, self._interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sigil-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            beat(self._storage, self._ids)

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Claimed:
    """A trial this worker runs: its id in the storage, its number in the study, its posture."""

    trial_id: int
    number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class StudyTask:
    """One study for a worker: its name, its spec, and the training candles of its fold."""

    name: str
    spec: StudySpec
    train: Sequence[CandleSeries]


def run_studies(
    storage: RDBStorage,
    tasks: Sequence[StudyTask],
    config: Config,
    *,
    seed: int | None = None,
    on_batch: Callable[[int], object] | None = None,
) -> WorkerStats:
    """Adds trials to each study until it holds its ``spec.trials`` finished ones (this worker's and
    others'), taking the studies in order; a study whose remaining trials are all running elsewhere
    is passed over for the next, and looked at again later. ``on_batch(k)`` follows each batch."""
    stats = WorkerStats()
    # One sampler per study: multivariate TPE, a batch's postures from one fit of its estimators
    # (sigil.research.sampler); other workers' running trials count as bad ones (the constant liar).
    samplers = {t.name: BatchTPESampler(seed=seed) for t in tasks}
    studies = {
        t.name: optuna.load_study(study_name=t.name, storage=storage, sampler=samplers[t.name]) for t in tasks
    }
    spaces = {t.name: space_distributions(t.spec.space.suggest) for t in tasks}
    interval = float(storage.get_heartbeat_interval() or 10)
    me = worker_id()
    pending = list(tasks)
    stuck = _Stuck()
    while pending:
        progressed = False
        for task in list(pending):
            study = studies[task.name]
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)
            state = counts(storage, study._study_id)
            finished = state[TrialState.COMPLETE] + state[TrialState.PRUNED]
            if finished >= task.spec.trials:
                pending.remove(task)
                continue
            room = task.spec.trials - finished - state[TrialState.RUNNING]
            if room <= 0:
                # Every remaining trial runs in another worker: they finish, or their heartbeats stop
                # and a later look fails them and queues them again.
                stuck.watch(study, interval)
                continue
            k = min(task.spec.batch, room)
            trials = _retried(storage, study, task.spec, min(k, state[TrialState.WAITING]))
            trials += _claim(storage, study, samplers[task.name], spaces[task.name], k - len(trials), me)
            trials = _trim(storage, study, task.spec, trials)
            asked = time.perf_counter() - started
            if not trials:
                continue
            with Heartbeats(storage, [t.trial_id for t in trials], interval):
                told = _evaluate(storage, task.spec, trials, task.train, config, asked, stats)
            stats.trials += told
            stats.batches += 1
            stats.by_study[task.name] = stats.by_study.get(task.name, 0) + told
            progressed = True
            if on_batch is not None:
                on_batch(told)
            break
        if pending and not progressed:
            time.sleep(IDLE_POLL_S)
    return stats


class _Stuck:
    """Running trials that never change while a worker waits on them: a worker killed between
    writing a trial and its first heartbeat leaves one that Optuna never sees as stale. After
    :data:`STUCK_HEARTBEATS` heartbeats without any change, the waiting worker fails them itself."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[frozenset[int], float]] = {}

    def watch(self, study: optuna.Study, interval: float) -> None:
        running = frozenset(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        now = time.monotonic()
        seen, since = self._seen.get(study.study_name, (frozenset(), now))
        if running != seen:
            self._seen[study.study_name] = (running, now)
        elif running and now - since > STUCK_HEARTBEATS * interval:
            for number in running:
                with contextlib.suppress(RuntimeError, ValueError):
                    study.tell(number, state=TrialState.FAIL)
            self._seen.pop(study.study_name, None)


def _trim(storage: RDBStorage, study: optuna.Study, spec: StudySpec, trials: list[Claimed]) -> list[Claimed]:
    """The batch less the trials that took the study past its target: workers that counted the room
    at the same moment both asked for it. The last ones written are failed, unrun, with the reason."""
    state = counts(storage, study._study_id)
    excess = sum(state[s] for s in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)) - spec.trials
    if excess <= 0:
        return trials
    drop = sorted(trials, key=lambda t: t.number)[len(trials) - min(excess, len(trials)) :]
    reason = {"failed": "beyond the study's trial target (another worker took it)"}
    finish(storage, [Outcome(t.trial_id, TrialState.FAIL, None, {"result": reason}) for t in drop])
    return [t for t in trials if t not in drop]


def _retried(storage: RDBStorage, study: optuna.Study, spec: StudySpec, n: int) -> list[Claimed]:
    """Up to ``n`` trials queued again after their worker died, taken through Optuna's ``ask``
    (which hands out waiting trials first, with their parameters fixed)."""
    out = []
    for _ in range(n):
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize; this loop beats them itself.
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask()
        storage.record_heartbeat(trial._trial_id)
        spec.space.suggest(trial)
        # The queued copy carries the dead worker's attributes; this worker runs it now.
        trial.set_user_attr("worker", worker_id())
        out.append(Claimed(trial._trial_id, trial.number, dict(trial.params)))
    return out


def _claim(
    storage: RDBStorage,
    study: optuna.Study,
    sampler: BatchTPESampler,
    space: dict[str, BaseDistribution],
    k: int,
    me: str,
) -> list[Claimed]:
    """``k`` new trials, sampled together from one fit of TPE on the study's trials, and written to
    the shared study, running, in one transaction (see :mod:`sigil.store.study_rows`)."""
    if k <= 0:
        return []
    proposals = sampler.sample_batch(study, space, k)
    written = create_running(storage, study._study_id, proposals, space, {"worker": me})
    return [Claimed(trial_id, number, p) for (trial_id, number), p in zip(written, proposals, strict=True)]


def _evaluate(
    storage: RDBStorage,
    spec: StudySpec,
    trials: list[Claimed],
    train: Sequence[CandleSeries],
    config: Config,
    asked_s: float,
    stats: WorkerStats,
) -> int:
    """Replays the batch, then records every trial's attributes and tells its outcome, all in one
    transaction; returns the trials told (a trial another worker failed meanwhile keeps its state)."""
    started = time.perf_counter()
    variants: dict[int, Variant] = {}
    infeasible: dict[int, str] = {}
    for t in trials:
        try:
            posture = spec.space.posture(spec.base, t.params)
        except ConfigError as e:
            infeasible[t.number] = f"impossible posture: {e}"
            continue
        variants[t.number] = Variant(name=f"t{t.number}", **posture)
    suggest_s = time.perf_counter() - started
    engine_s = figures_s = 0.0
    outcomes: dict[int, tuple[list[float] | None, str | None, dict[str, Any]]] = {}
    items = list(variants.items())
    for lo in range(0, len(items), ENGINE_CHUNK):
        chunk = items[lo : lo + ENGINE_CHUNK]
        batch = config.model_copy(update={"variants": tuple(v for _, v in chunk), "source": "sigil optimize"})
        started = time.perf_counter()
        result = replay_series(train, batch)
        engine_s += time.perf_counter() - started
        started = time.perf_counter()
        outcomes.update({n: _outcome(spec, result, v) for n, v in chunk})
        figures_s += time.perf_counter() - started
    started = time.perf_counter()
    share_engine = engine_s / max(1, len(variants))
    share_optuna = (asked_s + suggest_s) / len(trials)
    told = []
    for t in trials:
        values, reason, attrs = outcomes.get(t.number) or (None, infeasible.get(t.number), {})
        if values is None:
            attrs["failed"] = reason
        user_attrs = {
            "engine_s": share_engine if t.number in variants else 0.0,
            "result": {**attrs, "optuna_s": share_optuna},
        }
        state = TrialState.PRUNED if values is None else TrialState.COMPLETE
        told.append(Outcome(t.trial_id, state, values, user_attrs))
    # A trial another worker gave up on and failed (see _Stuck) is left failed; its copy counts.
    finish(storage, told)
    stats.engine_s += engine_s
    stats.figures_s += figures_s
    stats.optuna_s += asked_s + suggest_s + time.perf_counter() - started
    return len(trials)


def _outcome(
    spec: StudySpec, result: ReplayResult, variant: Variant
) -> tuple[list[float] | None, str | None, dict[str, Any]]:
    """(values or None, why not, user attributes) of one variant of a batch."""
    perf = result.performance[variant.name]
    metrics = result.metrics[variant.name]
    values, reason = spec.objective.score(perf, metrics)
    figures = {
        name: OBJECTIVES[name][1](perf, metrics)
        for name in ("return", "drawdown", "sharpe", "calmar", "net_pnl", "profit_factor")
    }
    figures["closed_trades"] = perf.trades.closed_trades
    attrs: dict[str, Any] = {"figures": figures}
    returns = daily_returns(metrics.starting_balance, result.equity_time, result.equity[variant.name])
    if returns is not None:
        attrs["daily_returns"] = pack_returns(returns)
    return values, reason, attrs
