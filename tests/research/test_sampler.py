"""The batch sampler: a batch of one is Optuna's own TPE proposal (which pins the Optuna internals it
uses), a batch's postures are distinct and in the space, and the search beats uniform draws."""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from sigil.research.sampler import STARTUP_TRIALS, BatchTPESampler, space_distributions
from sigil.research.search_space import default_space_path, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def space() -> dict[str, BaseDistribution]:
    """The shipped space's distributions, in the order it asks for them."""
    return space_distributions(load_space(default_space_path()).suggest)


def toy(params: dict[str, Any], space: dict[str, BaseDistribution]) -> float:
    """Higher near a fixed corner-ish point of the space (each key scaled to [0, 1])."""
    total = 0.0
    for i, (name, d) in enumerate(sorted(space.items())):
        low, high = float(d.low), float(d.high)  # type: ignore[attr-defined]
        x = (float(params[name]) - low) / (high - low)
        total += (x - (0.2 if i % 2 else 0.8)) ** 2
    return -total


Direction = Literal["minimize", "maximize"]


def study_with(
    space: dict[str, BaseDistribution], n: int, directions: list[Direction], seed: int = 0, running: int = 0
) -> optuna.Study:
    """An in-memory study with ``n`` uniform trials scored by :func:`toy` (a second objective: the
    distance to the opposite point), and ``running`` unscored running ones."""
    study = optuna.create_study(directions=directions)
    draws = BatchTPESampler(seed=seed)._uniform(space, n + running)
    rng = random.Random(seed)
    for i, p in enumerate(draws):
        if i >= n:
            study.add_trial(
                optuna.trial.create_trial(state=TrialState.RUNNING, params=p, distributions=space)
            )
            continue
        values = [toy(p, space)] + ([rng.random()] if len(directions) > 1 else [])
        state = TrialState.PRUNED if i % 7 == 3 else TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=p,
                distributions=space,
                values=values if state == TrialState.COMPLETE else None,
            )
        )
    return study


@pytest.mark.parametrize("directions", [["maximize"], ["minimize"], ["maximize", "minimize"]])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_of_one_is_what_optunas_tpe_asks(
    space: dict[str, BaseDistribution], directions: list[Direction], seed: int
) -> None:
    """Same seed, same trials: the batch sampler's only posture is the multivariate TPE's ``ask``
    (with the constant liar, a running trial among the others)."""
    study = study_with(space, 40, directions, seed=seed, running=1)
    ours = BatchTPESampler(seed=seed).sample_batch(study, space, 1)
    study.sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    trial = study.ask()
    load_space(default_space_path()).suggest(trial)
    assert ours == [trial.params]
    assert list(ours[0]) == list(space)


@pytest.mark.parametrize("finished", [0, STARTUP_TRIALS - 1, 30, 300])
def test_a_batch_is_distinct_new_and_in_the_space(space: dict[str, BaseDistribution], finished: int) -> None:
    """Uniform draws before TPE has trials to learn from, TPE's after: every posture is on the space's
    grid, and none repeats another of the batch or a trial of the study (running ones included)."""
    study = study_with(space, finished, ["maximize"], running=3)
    before = {tuple(sorted(t.params.items())) for t in study.get_trials()}
    batch = BatchTPESampler(seed=5).sample_batch(study, space, 64)
    assert len(batch) == 64
    keys = [tuple(sorted(p.items())) for p in batch]
    assert len(set(keys)) == 64
    assert not set(keys) & before
    for p in batch:
        assert p.keys() == space.keys()
        for name, d in space.items():
            assert d._contains(d.to_internal_repr(p[name])), (name, p[name])


def test_the_same_seed_gives_the_same_batch(space: dict[str, BaseDistribution]) -> None:
    study = study_with(space, 50, ["maximize"])
    assert BatchTPESampler(seed=9).sample_batch(study, space, 16) == BatchTPESampler(seed=9).sample_batch(
        study, space, 16
    )
    assert BatchTPESampler(seed=9).sample_batch(study, space, 16) != BatchTPESampler(seed=10).sample_batch(
        study, space, 16
    )


def best_after(sampler: Any, space: dict[str, BaseDistribution], batches: int, k: int) -> float:
    """The best toy score after ``batches`` batches of ``k`` postures, each batch asked before it is told."""
    study = optuna.create_study(direction="maximize")
    for _ in range(batches):
        if isinstance(sampler, BatchTPESampler):
            batch = sampler.sample_batch(study, space, k)
        else:
            batch = [
                {n: sampler.sample_independent(study, None, n, d) for n, d in space.items()} for _ in range(k)
            ]
        for p in batch:
            study.add_trial(optuna.trial.create_trial(params=p, distributions=space, value=toy(p, space)))
    return study.best_value


def test_the_search_beats_uniform_draws_on_a_toy_objective(space: dict[str, BaseDistribution]) -> None:
    """Eight batches of 16 on a smooth 12-dimensional objective, five seeds each: TPE's batches find
    better postures than as many uniform draws, on average and for most seeds."""
    tpe = [best_after(BatchTPESampler(seed=s), space, 8, 16) for s in range(5)]
    uniform = [best_after(optuna.samplers.RandomSampler(seed=s), space, 8, 16) for s in range(5)]
    assert sum(tpe) / 5 > sum(uniform) / 5
    assert sum(t > u for t, u in zip(tpe, uniform, strict=True)) >= 4
    assert all(math.isfinite(v) for v in tpe)
