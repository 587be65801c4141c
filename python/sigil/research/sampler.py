"""The sampler of ``sigil optimize``: Optuna's multivariate TPE, asked for a whole batch at once.

Optuna's ``ask`` fits TPE's two Parzen estimators (the good trials' density l(x) and the others'
g(x)) on every finished trial, once per trial asked: at a thousand trials a batch of 32 refits them 32
times on almost the same history. :class:`BatchTPESampler` fits them once per batch and gives every
posture of the batch its own draw of TPE's candidates from l(x), keeping the one that maximises
l(x)/g(x), exactly as one ``ask`` would (a batch of one is Optuna's own proposal, which the tests
pin). The postures of a batch are what as many workers asking at the same moment would get, less
the repeats: a candidate already tried, running, or taken by an earlier posture of the batch is
passed over. Running trials of other workers count among the bad trials (Optuna's constant liar),
so two workers do not search the same spot.

The fit and the split use TPE's own methods; the tests in ``tests/research/test_sampler.py`` fail
when an Optuna version changes what they do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_gamma_multiobjective
from optuna.trial import FrozenTrial, TrialState

#: Candidates drawn from l(x) per posture (Optuna's default ``n_ei_candidates``).
CANDIDATES = 24
#: Finished trials before TPE takes over from uniform draws (Optuna's default ``n_startup_trials``).
STARTUP_TRIALS = 10
#: Fresh draws of a posture's candidates before it settles for a repeat.
REDRAWS = 4

Params = dict[str, Any]


class BatchTPESampler(optuna.samplers.TPESampler):
    """Multivariate TPE that proposes a batch of distinct postures from one fit (:meth:`sample_batch`).

    As an Optuna sampler (``study.ask``) it is the multivariate TPE with the constant liar."""

    def __init__(self, seed: int | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(
                seed=seed,
                multivariate=True,
                constant_liar=True,
                n_startup_trials=STARTUP_TRIALS,
                n_ei_candidates=CANDIDATES,
            )
        self._keys: dict[tuple[int, int, Any], tuple[float, ...]] = {}

    def sample_batch(self, study: optuna.Study, space: dict[str, BaseDistribution], k: int) -> list[Params]:
        """``k`` postures of ``space`` for ``study`` (external values, as ``trial.params`` holds them),
        none equal to a trial of the study or to another of the batch while the space has room."""
        order = list(space)
        # In name order, as Optuna's search space hands them to TPE: the draws depend on the order.
        space = dict(sorted(space.items()))
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        every = [
            t for t in study.get_trials(deepcopy=False, states=states) if space.keys() <= t.params.keys()
        ]
        # Trials queued again (waiting) are not repeated, but only the others teach the estimators.
        taken = {self._key_of(t, space) for t in every}
        trials = [t for t in every if t.state != TrialState.WAITING]
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        rounds: Callable[[int], list[Sequence[Params]]]
        if finished < self._n_startup_trials:
            rounds = lambda n: [[p] for p in self._uniform(space, n)]  # noqa: E731
        else:
            below, above = self._fit(study, space, trials, finished)
            rounds = lambda n: self._best(below, above, space, n)  # noqa: E731
        out = []
        for candidates in rounds(k):
            # A round whose candidates were all tried is drawn again, and again, then kept as it is.
            chosen = _first_new(candidates, space, taken)
            for _ in range(REDRAWS):
                if chosen is not None:
                    break
                candidates = rounds(1)[0]
                chosen = _first_new(candidates, space, taken)
            chosen = chosen or candidates[0]
            taken.add(_key(chosen, space))
            out.append({name: chosen[name] for name in order})
        return out

    def _key_of(self, trial: FrozenTrial, space: dict[str, BaseDistribution]) -> tuple[float, ...]:
        """:func:`_key` of a trial's posture, kept: a trial's parameters never change once written."""
        # Id, number and start together name a trial even across two in-memory studies.
        which = (trial._trial_id, trial.number, trial.datetime_start)
        key = self._keys.get(which)
        if key is None:
            key = self._keys[which] = _key(trial.params, space)
        return key

    def _fit(
        self, study: optuna.Study, space: dict[str, BaseDistribution], trials: Sequence[FrozenTrial], n: int
    ) -> tuple[Any, Any]:
        """TPE's estimators l(x) and g(x) over ``trials`` (running ones among the bad), as ``ask`` fits
        them; ``n`` of the trials are finished."""
        gamma = self._gamma or (default_gamma if len(study.directions) <= 1 else default_gamma_multiobjective)
        below_trials, above_trials = _split_trials(study, list(trials), gamma(n))
        below = self._build_parzen_estimator(study, space, below_trials, handle_below=True)
        above = self._build_parzen_estimator(study, space, above_trials, handle_below=False)
        return below, above

    def _best(
        self, below: Any, above: Any, space: dict[str, BaseDistribution], n: int
    ) -> list[Sequence[Params]]:
        """``n`` rounds of TPE's choice, drawn at once: per round, CANDIDATES drawn from l(x) in order
        of l(x)/g(x), best first (the first is what one ``ask`` proposes)."""
        per = self._n_ei_candidates
        samples = below.sample(self._rng.rng, n * per)
        score = np.asarray(self._compute_acquisition_func(samples, below, above))
        return [
            _Candidates(samples, space, r * per + np.argsort(-score[r * per : (r + 1) * per], kind="stable"))
            for r in range(n)
        ]

    def _uniform(self, space: dict[str, BaseDistribution], n: int) -> list[Params]:
        """``n`` uniform draws (the start, before TPE has trials to learn from)."""
        random = self._random_sampler
        return [
            {name: random.sample_independent(None, None, name, d) for name, d in space.items()}  # type: ignore[arg-type]
            for _ in range(n)
        ]


class _Candidates(Sequence[Params]):
    """A round's candidates in order of preference, turned into postures only when looked at (most
    rounds look at the first one only)."""

    def __init__(self, samples: dict[str, Any], space: dict[str, BaseDistribution], order: Any) -> None:
        self._samples, self._space, self._order = samples, space, order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        at = self._order[i]
        return {name: d.to_external_repr(self._samples[name][at].item()) for name, d in self._space.items()}


def _first_new(
    candidates: Sequence[Params], space: dict[str, BaseDistribution], taken: set[tuple[float, ...]]
) -> Params | None:
    """The first candidate not yet taken, or None."""
    return next((p for p in candidates if _key(p, space) not in taken), None)


def _key(params: Params, space: dict[str, BaseDistribution]) -> tuple[float, ...]:
    """A posture as a point of the (numeric) space, rounded past float noise."""
    return tuple(round(float(params[name]), 9) for name in space)


def space_distributions(suggest: Any) -> dict[str, BaseDistribution]:
    """The distributions a ``suggest(trial)`` function asks for, read from one trial of a scratch study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    suggest(trial)
    return dict(trial.distributions)
