"""One worker of ``sigil optimize``: trials asked of Optuna in batches, each batch replayed in one pass.

A batch of k postures is replayed by the engine over the fold's training candles in calls of
:data:`ENGINE_CHUNK` variants (:func:`sigil.research.replay.replay_series`): in each call the candles
are validated and packed once, and the variants share every pass over them. Each trial is then told its score
(Optuna's ask-and-tell interface), or told "pruned" when it has no score (fewer closed trades than
the minimum, an undefined figure, or an impossible posture such as a stop cap below its floor);
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
from optuna.storages import InMemoryStorage, RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from sigil.config import Config, Variant
from sigil.data.candles import CandleSeries
from sigil.errors import ConfigError
from sigil.report.performance import daily_returns
from sigil.research.objective import OBJECTIVES
from sigil.research.replay import ReplayResult, replay_series
from sigil.research.studies import FINISHED, StudySpec, study_state

#: Seconds between looks at a study whose remaining trials are all running elsewhere.
IDLE_POLL_S = 1.0
#: Postures per engine call. One pass over the candles serves every posture of a call, but each
#: posture keeps its own state per symbol (ATR, breakout windows, positions); past about 16 postures
#: on the 109-pair universe that state outgrows the caches and the time per posture triples (see the
#: README's throughput table), so a batch is replayed in calls of this many.
ENGINE_CHUNK = 16
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
    """Beats the heartbeat of a batch's trials every ``interval`` seconds, from a thread (the engine
    releases the GIL while it replays, so the beats go on)."""

    def __init__(self, storage: RDBStorage, trial_ids: Sequence[int], interval: float) -> None:
        self._storage, self._ids, self._interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sigil-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for trial_id in self._ids:
                self._storage.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeats:
        for trial_id in self._ids:
            self._storage.record_heartbeat(trial_id)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_sampler(spec: StudySpec, seed: int | None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE with the constant liar: a batch's trials are asked before any is told, and the
    liar keeps them from all landing on the same spot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


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
    samplers = {t.name: make_sampler(t.spec, seed) for t in tasks}
    studies = {t.name: optuna.load_study(study_name=t.name, storage=storage) for t in tasks}
    interval = float(storage.get_heartbeat_interval() or 10)
    me = worker_id()
    pending = list(tasks)
    stuck = _Stuck()
    while pending:
        progressed = False
        for task in list(pending):
            study = studies[task.name]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)
            state = study_state(study)
            if state.finished >= task.spec.trials:
                pending.remove(task)
                continue
            room = task.spec.trials - state.finished - state.running
            if room <= 0:
                # Every remaining trial runs in another worker: they finish, or their heartbeats stop
                # and a later look fails them and queues them again.
                stuck.watch(study, interval)
                continue
            started = time.perf_counter()
            k = min(task.spec.batch, room)
            trials = _retried(storage, study, task.spec, min(k, state.waiting))
            trials += _claim(storage, study, samplers[task.name], task.spec, k - len(trials), me)
            trials = _trim(study, task.spec, trials)
            asked = time.perf_counter() - started
            if not trials:
                continue
            with Heartbeats(storage, [t._trial_id for t in trials], interval):
                told = _evaluate(study, task.spec, trials, task.train, config, asked, stats)
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


def _trim(study: optuna.Study, spec: StudySpec, trials: list[optuna.Trial]) -> list[optuna.Trial]:
    """The batch less the trials that took the study past its target: workers that counted the room
    at the same moment both asked for it. The last ones written are failed, unrun, with the reason."""
    state = study_state(study)
    excess = state.finished + state.running + state.waiting - spec.trials
    if excess <= 0:
        return trials
    drop = sorted(trials, key=lambda t: t.number)[len(trials) - min(excess, len(trials)) :]
    for t in drop:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, ValueError):
            t.set_user_attr("result", {"failed": "beyond the study's trial target (another worker took it)"})
            study.tell(t, state=TrialState.FAIL)
    return [t for t in trials if t not in drop]


def _retried(storage: RDBStorage, study: optuna.Study, spec: StudySpec, n: int) -> list[optuna.Trial]:
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
        out.append(trial)
    return out


def _claim(
    storage: RDBStorage,
    study: optuna.Study,
    sampler: optuna.samplers.BaseSampler,
    spec: StudySpec,
    k: int,
    me: str,
) -> list[optuna.Trial]:
    """``k`` new trials: sampled on an in-memory copy of the study (its finished trials, and its
    running ones for the constant liar), then written to the shared study in one transaction each.

    Optuna's own ``ask`` + ``suggest_*`` commits every parameter on its own (a dozen round trips per
    trial, several times the engine's time per posture); sampling on a copy and writing each trial
    whole gives the sampler the same view of the study and the database three statements per trial.
    """
    if k <= 0:
        return []
    memory = InMemoryStorage()
    local = optuna.create_study(storage=memory, directions=study.directions, sampler=sampler)
    local_id = memory.get_study_id_from_name(local.study_name)
    keys = set(spec.space.params)
    for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)):
        if set(t.params) == keys:
            memory.create_new_trial(local_id, template_trial=t)
    study_id = storage.get_study_id_from_name(study.study_name)
    out = []
    for _ in range(k):
        proposal = local.ask()
        spec.space.suggest(proposal)
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=proposal.params,
            distributions=proposal.distributions,
            user_attrs={"worker": me},
        )
        trial_id = storage.create_new_trial(study_id, template_trial=template)
        # At once: a trial that never beat is never seen as stale (see _fail_stuck for the rest).
        storage.record_heartbeat(trial_id)
        out.append(optuna.trial.Trial(study, trial_id))
    return out


def _evaluate(
    study: optuna.Study,
    spec: StudySpec,
    trials: list[optuna.Trial],
    train: Sequence[CandleSeries],
    config: Config,
    asked_s: float,
    stats: WorkerStats,
) -> int:
    """Replays the batch, records each trial's attributes and tells Optuna; returns the trials told."""
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
    for t in trials:
        values, reason, attrs = outcomes.get(t.number) or (None, infeasible.get(t.number), {})
        if values is None:
            attrs["failed"] = reason
        try:
            t.set_user_attr("engine_s", share_engine if t.number in variants else 0.0)
            # One attribute for the rest: every attribute is a statement and a commit of its own.
            t.set_user_attr("result", {**attrs, "optuna_s": share_optuna})
            if values is None:
                study.tell(t, state=TrialState.PRUNED)
            else:
                study.tell(t, values)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # Another worker gave up on this trial and failed it (see _Stuck); its copy counts.
            continue
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
