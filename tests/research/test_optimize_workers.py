"""Workers on one study, as real processes on a real PostgreSQL: ``sigil optimize --join`` processes
started separately both add trials; a worker killed with -9 in the middle of a trial loses none of
its finished trials, and its running trial is failed by the heartbeat and tried again by another."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from sigil.config import load_config
from sigil.data.candles import load_universe
from sigil.research.objective import parse_objective
from sigil.research.optimize import StudyTask, run_studies
from sigil.research.search_space import default_space_path, load_space
from sigil.research.studies import StudySpec, candles_digest, create_study, open_storage
from sigil.research.walk_forward import data_span, slice_series, split
from tests.support.data import BUNDLED
from tests.support.pg import PgServer

pytestmark = pytest.mark.postgres

#: Heartbeat of the workers here: a dead worker's trial is failed 3 s after its last beat.
HEARTBEAT_S = 1
#: The two-process study's target.
PAIR_TRIALS = 1_000
#: Workers started and killed, at most, until one is caught in the middle of a batch (a batch may end
#: between the look and the kill).
ATTEMPTS = 5


@pytest.fixture
def url(pg: PgServer) -> Iterator[str]:
    with pg.database(migrated=False) as u:
        yield u


def make_study(url: str, name: str, trials: int, batch: int) -> StudyTask:
    """A holdout study on the bundled candles, as ``sigil optimize`` makes it."""
    series = load_universe([BUNDLED])
    (fold,) = split(data_span(series))
    train = slice_series(series, fold.train)
    spec = StudySpec(
        load_space(default_space_path()), parse_objective("calmar", 5), trials, batch, fold,
        load_config().settings.defaults, candles_digest(train), True,
    )  # fmt: skip
    create_study(open_storage(url, HEARTBEAT_S), name, spec, True)
    return StudyTask(name, spec, train)


def join(url: str, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("SIGIL_DATABASE_URL", "SIGIL_HOME")}
    command = [sys.executable, "-m", "sigil", "optimize", "--join", "--study", name, "--data", str(BUNDLED),
               "--database-url", url, "--heartbeat", str(HEARTBEAT_S), "--quiet"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def trials_of(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, HEARTBEAT_S)).get_trials(
        deepcopy=False
    )


def worker(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def kill_mid_trial(
    url: str, name: str, proc: subprocess.Popen[bytes], timeout: float = 240
) -> tuple[set[int], set[int]]:
    """Waits until ``proc`` has finished a trial and is running another, kills it with -9, and returns
    the numbers of the trials it had finished and of those it left running (none when it finished
    them between the look and the kill)."""
    me = worker(proc.pid)
    study = optuna.load_study(study_name=name, storage=open_storage(url, HEARTBEAT_S))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        trials = study.get_trials(deepcopy=False)
        mine = [t for t in trials if t.user_attrs.get("worker") == me]
        if any(t.state.is_finished() for t in mine) and any(t.state == TrialState.RUNNING for t in mine):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            after = [t for t in trials_of(url, name) if t.user_attrs.get("worker") == me]
            return (
                {t.number for t in after if t.state.is_finished()},
                {t.number for t in after if t.state == TrialState.RUNNING},
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the worker never ran a second trial")


def check_after_crash(url: str, name: str, target: int, killed: int, finished_before: set[int]) -> None:
    trials = {t.number: t for t in trials_of(url, name)}
    finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= target
    # Nothing the killed worker had finished is lost.
    assert all(trials[n].state in (TrialState.COMPLETE, TrialState.PRUNED) for n in finished_before)
    # Its running trial was failed by the heartbeat and run again, with the same posture.
    failed = [
        t
        for t in trials.values()
        if t.state == TrialState.FAIL and t.user_attrs.get("worker") == worker(killed)
    ]
    assert failed
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") in {f.number for f in failed}]
    assert retries and all(r.state.is_finished() for r in retries)
    assert all(r.params == trials[r.system_attrs["failed_trial"]].params for r in retries)
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def test_a_worker_killed_mid_trial_loses_nothing_and_another_finishes(url: str) -> None:
    """Quick version: one ``--join`` process, killed with -9; this process is the second worker."""
    # A target the killed worker cannot reach first (a trial takes milliseconds; batches of 64 keep it
    # running long enough to be caught in one); this process then works to a nearer one.
    task = make_study(url, "crash", trials=10_000, batch=64)
    for _attempt in range(ATTEMPTS):
        a = join(url, "crash")
        finished_before, running = kill_mid_trial(url, "crash", a)
        if running:
            break
    else:
        raise AssertionError("the worker was never caught in the middle of a trial")
    finished = [t for t in trials_of(url, "crash") if t.state.is_finished() and t.state != TrialState.FAIL]
    # This process must run the killed worker's trials again, and one more of its own.
    target = len(finished) + len(running) + 1
    stats = run_studies(
        open_storage(url, HEARTBEAT_S), [replace(task, spec=replace(task.spec, trials=target))], load_config()
    )
    assert stats.trials >= 1
    check_after_crash(url, "crash", target, a.pid, finished_before)
    workers = {t.user_attrs.get("worker") for t in trials_of(url, "crash") if t.state.is_finished()}
    assert {worker(a.pid), worker(os.getpid())} <= workers


@pytest.mark.long
def test_two_join_processes_share_a_study_and_survive_a_kill(url: str) -> None:
    """Two ``--join`` processes started separately both add trials; one is killed with -9 mid-trial,
    the other completes the study, retried trial included."""
    # Enough trials that the study is not done before a worker is caught mid-batch (a trial takes
    # milliseconds on the bundled pairs).
    make_study(url, "pair", trials=PAIR_TRIALS, batch=32)
    b = join(url, "pair")
    started = [b]
    try:
        for _attempt in range(ATTEMPTS):
            a = join(url, "pair")
            started.append(a)
            finished_before, running = kill_mid_trial(url, "pair", a)
            if running:
                break
        else:
            raise AssertionError("no worker was caught in the middle of a trial")
        assert b.wait(timeout=900) == 0, b.stderr.read() if b.stderr else ""
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
    check_after_crash(url, "pair", PAIR_TRIALS, a.pid, finished_before)
    by = {t.user_attrs.get("worker") for t in trials_of(url, "pair") if t.state.is_finished()}
    assert {worker(a.pid), worker(b.pid)} <= by
