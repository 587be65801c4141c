"""What one worker writes of each trial, on a real PostgreSQL: batches sampled and written whole still
leave a plain Optuna study, every trial with its worker, engine time and figures, distinct postures,
the trial target met exactly, and the same postures for the same seed."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from sigil.config import load_config
from sigil.data.candles import load_universe
from sigil.research.objective import parse_objective
from sigil.research.optimize import StudyTask, run_studies, unpack_returns
from sigil.research.search_space import default_space_path, load_space
from sigil.research.studies import StudySpec, candles_digest, create_study, open_storage, study_state
from sigil.research.walk_forward import data_span, slice_series, split
from tests.support.data import BUNDLED
from tests.support.pg import PgServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(pg: PgServer) -> Iterator[str]:
    with pg.database(migrated=False) as u:
        yield u


def search(
    url: str, name: str, trials: int, batch: int, seed: int | None, objective: str = "calmar"
) -> list[FrozenTrial]:
    """A holdout study on two bundled files, run to ``trials`` by this process; its trials."""
    series = load_universe(sorted(BUNDLED.glob("*.feather"))[:2])
    (fold,) = split(data_span(series))
    train = slice_series(series, fold.train)
    config = load_config()
    spec = StudySpec(load_space(default_space_path()), parse_objective(objective, 1), trials, batch, fold,
                     config.settings.defaults, candles_digest(train), True)  # fmt: skip
    storage = open_storage(url, 10)
    create_study(storage, name, spec, True)
    stats = run_studies(storage, [StudyTask(name, spec, train)], config, seed=seed)
    assert stats.trials == trials and stats.batches == -(-trials // batch)
    study = optuna.load_study(study_name=name, storage=storage)
    assert study_state(study).finished == trials
    return study.get_trials()


def test_every_trial_records_its_worker_engine_time_and_figures(url: str) -> None:
    """Three batches (uniform draws, then TPE's): every trial finished, numbered in order, with its
    own posture and the attributes the report and the overfitting statistics read."""
    trials = search(url, "attrs", 20, 8, seed=3)
    assert [t.number for t in trials] == list(range(20))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 20
    me = f"{socket.gethostname()}:{os.getpid()}"
    space = load_space(default_space_path())
    for t in trials:
        assert set(t.params) == set(space.params)
        assert t.user_attrs["worker"] == me
        assert t.user_attrs["engine_s"] >= 0.0
        result = t.user_attrs["result"]
        assert result["optuna_s"] > 0.0
        if t.state == TrialState.COMPLETE:
            assert t.value is not None and "figures" in result and "failed" not in result
            assert len(unpack_returns(result["daily_returns"])) > 0
        else:
            assert t.values is None and result["failed"]
        assert t.datetime_start is not None and t.datetime_complete is not None
    assert sum(t.user_attrs["engine_s"] for t in trials) > 0.0


def test_the_same_seed_gives_the_same_search(url: str) -> None:
    a = search(url, "a", 12, 6, seed=11)
    b = search(url, "b", 12, 6, seed=11)
    c = search(url, "c", 12, 6, seed=12)
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.values for t in a] == [t.values for t in b]
    assert [t.params for t in a] != [t.params for t in c]


def test_a_two_objective_search_finds_a_front(url: str) -> None:
    """``--objective return,drawdown``: TPE's batches on two figures, every scored trial with both."""
    trials = search(url, "front", 24, 8, seed=4, objective="return,drawdown")
    scored = [t for t in trials if t.state == TrialState.COMPLETE]
    assert scored and all(len(t.values) == 2 for t in scored)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 24
