"""An Optuna study's trials, written and counted a batch at a time: one transaction, a few statements.

Optuna's ``RDBStorage`` commits every step on its own: a new trial costs two statements per parameter
(the trial looked up, the study's earlier distribution of that name compared) and a count, each told
trial a look-up and a commit per user attribute and one for its state, and counting a study's trials
by state reads all of them. At a dozen parameters that is some fifty round trips a trial, several
times the engine's time per posture. The functions here write the same rows into Optuna's own tables
(its table models, its session), for a whole batch at a time:

- :func:`create_running` — the batch's new trials, running, with their parameters, user attributes
  and a first heartbeat, numbered as Optuna numbers them (under its lock on the study's row);
- :func:`finish` — each trial's state, values and user attributes, only for trials still running
  (one that another worker failed meanwhile is left as it is);
- :func:`beat` — the heartbeat of every trial of a batch;
- :func:`counts` — the study's trials by state, counted by the database.

The rows are the ones Optuna's own calls write (the tests compare them), so the study stays a plain
Optuna study for every reader, Optuna's heartbeat and retry included. The storage checks when it
opens that the database's schema is the one its models describe.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
USER_ATTRS = models.TrialUserAttributeModel.__table__
HEARTBEATS = models.TrialHeartbeatModel.__table__


@dataclass(frozen=True)
class Outcome:
    """How a trial ends: its state, its values (a scored trial) and the user attributes to set."""

    trial_id: int
    state: TrialState
    values: Sequence[float] | None
    user_attrs: Mapping[str, Any]


def _utc_now() -> datetime:
    """Now as Optuna's tables hold times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_running(
    storage: RDBStorage,
    study_id: int,
    params: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    user_attrs: Mapping[str, Any],
) -> list[tuple[int, int]]:
    """New running trials of study ``study_id``, one per entry of ``params`` (each with
    ``user_attrs`` and a heartbeat); their (trial id, number), in the order of ``params``.
    ValueError when a distribution is not the one the study already holds for that name."""
    if not params:
        return []
    with _create_scoped_session(storage.scoped_session) as session:
        # Optuna's lock: a trial's number is the count of the study's trials before it.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        _check_distributions(session, study_id, distributions)
        before = session.execute(
            sa.select(sa.func.count()).select_from(TRIALS).where(TRIALS.c.study_id == study_id)
        ).scalar_one()
        now = _utc_now()
        rows = [
            {"study_id": study_id, "number": before + i, "state": TrialState.RUNNING, "datetime_start": now}
            for i in range(len(params))
        ]
        # Each row carries its provisional number, which says which row got which id.
        by_number = {
            int(n): int(t)
            for t, n in session.execute(sa.insert(TRIALS).returning(TRIALS.c.trial_id, TRIALS.c.number), rows)
        }
        ids = [by_number[before + i] for i in range(len(rows))]
        # Numbers follow the ids, as Optuna counts them; the ids of one insert normally come in order.
        numbered = {trial_id: before + i for i, trial_id in enumerate(sorted(ids))}
        misplaced = [
            {"tid": t, "n": numbered[t]} for t, r in zip(ids, rows, strict=True) if numbered[t] != r["number"]
        ]
        if misplaced:
            session.execute(
                sa.update(TRIALS)
                .where(TRIALS.c.trial_id == sa.bindparam("tid"))
                .values(number=sa.bindparam("n")),
                misplaced,
            )
        as_json = {name: distribution_to_json(d) for name, d in distributions.items()}
        session.execute(
            sa.insert(PARAMS),
            [
                {
                    "trial_id": t,
                    "param_name": name,
                    "param_value": distributions[name].to_internal_repr(value),
                    "distribution_json": as_json[name],
                }
                for t, p in zip(ids, params, strict=True)
                for name, value in p.items()
            ],
        )
        if user_attrs:
            attrs = [(key, json.dumps(value)) for key, value in user_attrs.items()]
            session.execute(
                sa.insert(USER_ATTRS),
                [{"trial_id": t, "key": k, "value_json": v} for t in ids for k, v in attrs],
            )
        # The heartbeat column's default is the database's clock, as record_heartbeat's is.
        session.execute(sa.insert(HEARTBEATS), [{"trial_id": t} for t in ids])
        return [(t, numbered[t]) for t in ids]


def finish(storage: RDBStorage, outcomes: Sequence[Outcome]) -> set[int]:
    """Ends the trials of ``outcomes`` that are still running; returns their ids. A scored trial with
    a NaN value is failed, as Optuna's ``tell`` fails it."""
    if not outcomes:
        return set()
    with _create_scoped_session(storage.scoped_session) as session:
        locked = session.execute(
            sa.select(TRIALS.c.trial_id, TRIALS.c.state)
            .where(TRIALS.c.trial_id.in_([o.trial_id for o in outcomes]))
            .with_for_update()
        ).all()
        running = {int(t) for t, state in locked if state == TrialState.RUNNING}
        told = [o for o in outcomes if o.trial_id in running]
        if not told:
            return set()
        ids = [o.trial_id for o in told]
        keys = {key for o in told for key in o.user_attrs}
        # A trial queued again carries its dead worker's attributes: the new ones replace them.
        if keys:
            session.execute(
                sa.delete(USER_ATTRS).where(USER_ATTRS.c.trial_id.in_(ids), USER_ATTRS.c.key.in_(keys))
            )
        session.execute(sa.delete(VALUES).where(VALUES.c.trial_id.in_(ids)))
        now = _utc_now()
        values: list[dict[str, Any]] = []
        attrs: list[dict[str, Any]] = []
        states: list[dict[str, Any]] = []
        for o in told:
            state, scores = o.state, o.values
            if scores is not None and any(math.isnan(v) for v in scores):
                state, scores = TrialState.FAIL, None
            for objective, v in enumerate(scores or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(v)
                values.append(
                    {"trial_id": o.trial_id, "objective": objective, "value": stored, "value_type": kind}
                )
            attrs += [
                {"trial_id": o.trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in o.user_attrs.items()
            ]
            states.append({"tid": o.trial_id, "st": state})
        if values:
            session.execute(sa.insert(VALUES), values)
        if attrs:
            session.execute(sa.insert(USER_ATTRS), attrs)
        session.execute(
            sa.update(TRIALS)
            .where(TRIALS.c.trial_id == sa.bindparam("tid"))
            .values(state=sa.bindparam("st"), datetime_complete=now),
            states,
        )
        return set(ids)


def beat(storage: RDBStorage, trial_ids: Sequence[int]) -> None:
    """Records a heartbeat, now, for every trial of ``trial_ids`` (as ``record_heartbeat`` does)."""
    if not trial_ids:
        return
    with _create_scoped_session(storage.scoped_session, True) as session:
        beaten = session.execute(
            sa.update(HEARTBEATS)
            .where(HEARTBEATS.c.trial_id.in_(list(trial_ids)))
            .values(heartbeat=sa.func.now())
            .returning(HEARTBEATS.c.trial_id)
        ).scalars()
        missing = set(trial_ids) - {int(t) for t in beaten}
        if missing:
            session.execute(sa.insert(HEARTBEATS), [{"trial_id": t} for t in missing])


def counts(storage: RDBStorage, study_id: int) -> dict[TrialState, int]:
    """How many trials of study ``study_id`` are in each state (every state present, zero or more)."""
    with _create_scoped_session(storage.scoped_session) as session:
        rows = session.execute(
            sa.select(TRIALS.c.state, sa.func.count())
            .where(TRIALS.c.study_id == study_id)
            .group_by(TRIALS.c.state)
        ).all()
    out = dict.fromkeys(TrialState, 0)
    out.update(
        {TrialState(state) if not isinstance(state, TrialState) else state: int(n) for state, n in rows}
    )
    return out


def _check_distributions(session: Any, study_id: int, distributions: Mapping[str, BaseDistribution]) -> None:
    """Optuna's check that a parameter keeps its distribution across a study's trials."""
    stored = session.execute(
        sa.select(PARAMS.c.param_name, PARAMS.c.distribution_json)
        .join(TRIALS, TRIALS.c.trial_id == PARAMS.c.trial_id)
        .where(TRIALS.c.study_id == study_id, PARAMS.c.param_name.in_(list(distributions)))
        .distinct()
    ).all()
    for name, text in stored:
        check_distribution_compatibility(json_to_distribution(text), distributions[name])
