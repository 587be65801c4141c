"""The Optuna studies of ``sigil optimize``: how they are named, what each one records about itself,
and the checks before a process adds trials to one.

Organisation: one Optuna study per walk-forward fold, ``NAME-fold1`` … ``NAME-foldN`` (``NAME`` alone
for the 70/30 holdout without ``--folds``), so each fold's sampler learns from its own training
window only, and a fold's best trial is simply the study's best. Every study carries, as the user
attribute ``sigil``, a :class:`StudySpec`: the space (and its hash), the objective, the trade minimum,
the trial target, the fold's windows, the posture of the unvaried keys and a digest of the training
candles. A worker that joins (``--join``) takes all of that from the study, so workers on other
machines search the same thing whatever their local config, and a worker with other data is refused.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sigil.config import Posture
from sigil.data.candles import CandleSeries
from sigil.errors import ConfigError
from sigil.research.objective import Objective
from sigil.research.search_space import SearchSpace, space_from_dict
from sigil.research.walk_forward import Fold, Window
from sigil.store.studies import engine_kwargs, ensure_study_schema, storage_url

#: The study user attribute that holds the spec.
SPEC_ATTR = "sigil"
SPEC_FORMAT = 1
DEFAULT_STUDY = "sigil"
#: A killed worker's trial is failed (and queued again) this many heartbeats after its last one.
GRACE_HEARTBEATS = 3
#: How many times a trial whose worker died is tried again.
MAX_RETRY = 3


@dataclass(frozen=True)
class StudySpec:
    """What one fold's study searches, stored with it."""

    space: SearchSpace
    objective: Objective
    trials: int
    batch: int
    fold: Fold
    #: Posture of the keys the space does not vary.
    base: Posture
    #: sha256 of the training window's candles (symbols, times, prices, volumes).
    data_digest: str
    holdout: bool

    def to_json(self) -> dict[str, Any]:
        """As stored in the study's user attribute :data:`SPEC_ATTR`."""
        return {
            "format": SPEC_FORMAT,
            "space": self.space.model_dump(mode="json"),
            "space_digest": self.space.digest(),
            "objective": list(self.objective.names),
            "min_trades": self.objective.min_trades,
            "trials": self.trials,
            "batch": self.batch,
            "fold": self.fold.index,
            "folds": self.fold.count,
            "holdout": self.holdout,
            "train": self.fold.train.to_json(),
            "test": self.fold.test.to_json(),
            "base": self.base.model_dump(),
            "data_digest": self.data_digest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> StudySpec:
        """From a study's stored attribute; ConfigError when it is not one this version reads."""
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            raise ConfigError(f"{source}: not a study of this version of sigil optimize")
        fold = Fold(
            int(data["fold"]),
            int(data["folds"]),
            Window(int(data["train"]["start"]), int(data["train"]["end"])),
            Window(int(data["test"]["start"]), int(data["test"]["end"])),
        )
        return cls(
            space=space_from_dict(data["space"], source),
            objective=Objective(tuple(data["objective"]), int(data["min_trades"])),
            trials=int(data["trials"]),
            batch=int(data["batch"]),
            fold=fold,
            base=Posture.model_validate(data["base"]),
            data_digest=str(data["data_digest"]),
            holdout=bool(data["holdout"]),
        )

    def differences(self, other: StudySpec) -> list[str]:
        """What makes ``other`` another search than this one (space, objective, windows, data)."""
        out = []
        if self.space.digest() != other.space.digest():
            out.append("another space")
        if self.objective.names != other.objective.names:
            out.append(f"objective {self.objective.label} (asked: {other.objective.label})")
        if self.objective.min_trades != other.objective.min_trades:
            out.append(f"min trades {self.objective.min_trades} (asked: {other.objective.min_trades})")
        if self.base != other.base:
            out.append("another base posture")
        return out

    def same_data(self, other: StudySpec) -> bool:
        """True when both train on the same window of the same candles."""
        return self.fold == other.fold and self.data_digest == other.data_digest


def study_names(name: str, folds: int | None) -> list[str]:
    """``NAME`` for the holdout, ``NAME-fold1`` … ``NAME-foldN`` for walk-forward folds."""
    return [name] if folds is None else [f"{name}-fold{k}" for k in range(1, folds + 1)]


def candles_digest(series: Sequence[CandleSeries]) -> str:
    """sha256 (16 hex digits) of the candles, in symbol order: workers must search the same data."""
    h = hashlib.sha256()
    for s in sorted(series, key=lambda s: s.symbol):
        h.update(s.symbol.encode())
        h.update(np.int64(s.timeframe_ms).tobytes())
        for col in (s.time, s.open, s.high, s.low, s.close, s.volume):
            h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()[:16]


def open_storage(url: str, heartbeat_s: int) -> RDBStorage:
    """Optuna's RDB storage on the database at ``url`` (schema ``optuna``), with heartbeats every
    ``heartbeat_s`` seconds: a trial whose worker stops beating for :data:`GRACE_HEARTBEATS` of them
    is failed by the next worker that looks, and queued again (:data:`MAX_RETRY` times at most).
    :class:`~sigil.errors.DatabaseUnavailable` when the server cannot be reached."""
    ensure_study_schema(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental; they are what this needs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            storage_url(url),
            engine_kwargs=engine_kwargs(),
            heartbeat_interval=heartbeat_s,
            grace_period=GRACE_HEARTBEATS * heartbeat_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )


def existing_studies(storage: RDBStorage) -> set[str]:
    """Names of every study in the storage."""
    return {s.study_name for s in storage.get_all_studies()}


def stored_spec(storage: RDBStorage, name: str) -> StudySpec:
    """The spec stored with study ``name``; ConfigError when there is none."""
    study_id = storage.get_study_id_from_name(name)
    attrs = storage.get_study_user_attrs(study_id)
    if SPEC_ATTR not in attrs:
        raise ConfigError(f"study {name!r} exists but was not made by sigil optimize")
    return StudySpec.from_json(attrs[SPEC_ATTR], f"study {name!r}")


def family(storage: RDBStorage, name: str) -> list[str]:
    """The studies of a search started as ``--study NAME``: ``NAME``, or its folds; ConfigError when
    there is none (or both, which only a person can sort out)."""
    names = existing_studies(storage)
    holdout = name in names
    first = f"{name}-fold1"
    if holdout and first in names:
        raise ConfigError(f"both study {name!r} and {first!r} exist: delete one of them")
    if holdout:
        return [name]
    if first not in names:
        raise ConfigError(f"no study {name!r} in the database (start one without --join)")
    return study_names(name, stored_spec(storage, first).fold.count)


def create_or_check(storage: RDBStorage, name: str, spec: StudySpec, resume: bool) -> tuple[StudySpec, bool]:
    """Checks study ``name`` against ``spec`` before anything is written; returns the spec to search
    (the stored one when resuming) and whether the study is new (the caller creates it later).

    Refused (ConfigError): a study of another space or objective unless ``resume`` (which continues
    the stored search, its space and objective), and a study of other data or windows in any case.
    """
    if name not in existing_studies(storage):
        return spec, True
    stored = stored_spec(storage, name)
    if not stored.same_data(spec):
        raise ConfigError(
            f"study {name!r} searched other data or windows (train {stored.fold.train.describe()}, "
            f"candles {stored.data_digest}); use another --study name"
        )
    diff = stored.differences(spec)
    if diff and not resume:
        raise ConfigError(
            f"study {name!r} exists with {', '.join(diff)}: pass --resume to continue it as stored, "
            f"or use another --study name"
        )
    if resume:
        return StudySpec(
            stored.space, stored.objective, spec.trials, stored.batch, stored.fold, stored.base,
            stored.data_digest, stored.holdout,
        ), False  # fmt: skip
    return spec, False


def create_study(storage: RDBStorage, name: str, spec: StudySpec, new: bool) -> optuna.Study:
    """Creates study ``name`` (when ``new``) with ``spec`` as its user attribute, or updates the
    stored trial target of an existing one."""
    if new:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=spec.objective.directions, load_if_exists=True
        )
    else:
        study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr(SPEC_ATTR, spec.to_json())
    return study


@dataclass(frozen=True)
class StudyState:
    """Counts of a study's trials by state, and the workers that ran them."""

    name: str
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    workers: dict[str, int]
    engine_s: float
    optuna_s: float

    @property
    def finished(self) -> int:
        """Trials that count towards ``--trials``: scored, or refused a score (too few trades)."""
        return self.complete + self.pruned


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def study_state(study: optuna.Study) -> StudyState:
    """The counts of ``study``'s trials (one read of them)."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s: 0 for s in TrialState}
    workers: dict[str, int] = {}
    engine = optuna_s = 0.0
    for t in trials:
        by_state[t.state] += 1
        w = t.user_attrs.get("worker")
        if w is not None and t.state in FINISHED:
            workers[str(w)] = workers.get(str(w), 0) + 1
        engine += float(t.user_attrs.get("engine_s", 0.0))
        optuna_s += float(t.user_attrs.get("result", {}).get("optuna_s", 0.0))
    return StudyState(
        study.study_name,
        by_state[TrialState.COMPLETE],
        by_state[TrialState.PRUNED],
        by_state[TrialState.FAIL],
        by_state[TrialState.RUNNING],
        by_state[TrialState.WAITING],
        workers,
        engine,
        optuna_s,
    )
