"""Batch writes to Optuna's RDB storage, on a real PostgreSQL: the trials they write read back as the
ones Optuna's own calls write, a trial failed meanwhile is left alone, and the heartbeats beat."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sigil.research.studies import open_storage
from sigil.store.study_rows import Outcome, beat, create_running, finish
from tests.support.pg import PgServer

pytestmark = pytest.mark.postgres

SPACE = {
    "k": FloatDistribution(0.5, 4.0, step=0.25),
    "n": IntDistribution(1, 12),
    "x": FloatDistribution(0.01, 1.0, log=True),
}
POSTURES = [{"k": 0.5 + 0.25 * i, "n": 1 + i % 12, "x": 0.01 * (i + 1)} for i in range(6)]


@pytest.fixture
def storage(pg: PgServer) -> Iterator[RDBStorage]:
    with pg.database(migrated=False) as url:
        yield open_storage(url, 1)


def comparable(t: FrozenTrial) -> dict[str, Any]:
    """What a reader of the study sees of a trial, less its id and times."""
    return {
        "number": t.number, "state": t.state, "values": t.values, "params": t.params,
        "distributions": t.distributions, "user_attrs": t.user_attrs, "system_attrs": t.system_attrs,
        "finished": t.datetime_complete is not None, "started": t.datetime_start is not None,
    }  # fmt: skip


def test_batch_writes_read_back_as_optunas_own(storage: RDBStorage) -> None:
    """The same trials written by Optuna's calls (a trial written whole, attributes set, told) and by
    one transaction each way: every trial reads back the same, in both studies."""
    ours = optuna.create_study(study_name="ours", storage=storage, direction="maximize")
    theirs = optuna.create_study(study_name="theirs", storage=storage, direction="maximize")
    attrs = {"worker": "host:1"}
    ids = create_running(storage, ours._study_id, POSTURES, SPACE, attrs)
    assert [n for _, n in ids] == list(range(len(POSTURES)))
    outcomes = []
    for i, (trial_id, _) in enumerate(ids):
        state = TrialState.PRUNED if i % 3 == 2 else TrialState.COMPLETE
        values = None if state == TrialState.PRUNED else [float(i) if i != 4 else math.inf]
        result = {"figures": {"return": i / 10}, "optuna_s": 0.01}
        outcomes.append(Outcome(trial_id, state, values, {"engine_s": 0.5, "result": result}))
    assert finish(storage, outcomes) == {t for t, _ in ids}
    for p, o in zip(POSTURES, outcomes, strict=True):
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=p, distributions=SPACE, user_attrs=attrs
        )
        trial_id = storage.create_new_trial(theirs._study_id, template_trial=template)
        for key, value in o.user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        theirs.tell(storage.get_trial(trial_id).number, o.values, state=o.state)
    got = [comparable(t) for t in storage.get_all_trials(ours._study_id)]
    want = [comparable(t) for t in storage.get_all_trials(theirs._study_id)]
    assert got == want
    # Numbers go on from the trials already there.
    more = create_running(storage, ours._study_id, POSTURES[:2], SPACE, attrs)
    assert [n for _, n in more] == [len(POSTURES), len(POSTURES) + 1]


def test_finish_leaves_a_trial_another_worker_failed(storage: RDBStorage) -> None:
    study = optuna.create_study(study_name="s", storage=storage)
    (a, _), (b, _) = create_running(storage, study._study_id, POSTURES[:2], SPACE, {"worker": "host:1"})
    storage.set_trial_state_values(b, TrialState.FAIL)
    told = finish(storage, [Outcome(i, TrialState.COMPLETE, [1.0], {"engine_s": 0.1}) for i in (a, b)])
    assert told == {a}
    assert storage.get_trial(a).state == TrialState.COMPLETE and storage.get_trial(a).value == 1.0
    failed = storage.get_trial(b)
    assert failed.state == TrialState.FAIL and failed.values is None and "engine_s" not in failed.user_attrs


def test_finish_replaces_attributes_and_fails_a_nan(storage: RDBStorage) -> None:
    """A queued copy carries its dead worker's attributes: the new ones replace them. A NaN score is
    a failed trial, as Optuna's ``tell`` makes it."""
    study = optuna.create_study(study_name="s", storage=storage)
    (a, _), (b, _) = create_running(storage, study._study_id, POSTURES[:2], SPACE, {"worker": "host:1"})
    storage.set_trial_user_attr(a, "result", {"old": True})
    finish(storage, [Outcome(a, TrialState.COMPLETE, [2.0], {"result": {"new": 1}}),
                     Outcome(b, TrialState.COMPLETE, [math.nan], {"result": {"new": 2}})])  # fmt: skip
    assert storage.get_trial(a).user_attrs == {"worker": "host:1", "result": {"new": 1}}
    assert storage.get_trial(b).state == TrialState.FAIL and storage.get_trial(b).values is None


def test_another_distribution_for_a_name_is_refused(storage: RDBStorage) -> None:
    study = optuna.create_study(study_name="s", storage=storage)
    create_running(storage, study._study_id, POSTURES[:1], SPACE, {})
    with pytest.raises(ValueError):
        create_running(storage, study._study_id, [{"k": 1.0}], {"k": IntDistribution(0, 4)}, {})
    assert len(storage.get_all_trials(study._study_id)) == 1


def test_heartbeats_beat_and_a_silent_trial_goes_stale(storage: RDBStorage) -> None:
    """Written trials beat at once; beating keeps them alive; one left silent past the grace period
    (3 heartbeats of 1 s) is failed by Optuna's check and queued again with its posture."""
    study = optuna.load_study(
        study_name=optuna.create_study(study_name="s", storage=storage).study_name, storage=storage
    )
    (a, _), (b, _) = create_running(storage, study._study_id, POSTURES[:2], SPACE, {})
    assert storage._get_stale_trial_ids(study._study_id) == []
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        beat(storage, [a])
        time.sleep(0.5)
    assert storage._get_stale_trial_ids(study._study_id) == [b]
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    states = {t._trial_id: t.state for t in storage.get_all_trials(study._study_id)}
    assert states[a] == TrialState.RUNNING and states[b] == TrialState.FAIL
    queued = storage.get_all_trials(study._study_id, states=(TrialState.WAITING,))
    assert [t.params for t in queued] == [POSTURES[1]]
