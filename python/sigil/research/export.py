"""``--export FILE``: the chosen posture as a variant overlay that ``sigil replay --variant FILE`` and
the daemon (``config/variants/<name>.yaml``) take unchanged.

The overlay holds every posture key, not only the searched ones, so that it replays the same whatever
the defaults of the config it is used with; the variant is named after the file (no ``name`` key).
Floats are written so that they read back bit for bit. With folds, FILE holds the last fold's
posture (the one trained on the most recent data) and ``FILE-foldK.yaml`` each fold's, whose replay
on that fold's test window gives exactly the out-of-sample figures of the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from sigil.config import Posture
from sigil.research.out_of_sample import FoldOutcome


def overlay_text(outcome: FoldOutcome) -> str:
    """The YAML of one fold's chosen posture, with a header saying where it comes from."""
    spec = outcome.spec
    posture = Posture.model_validate(outcome.posture).model_dump()
    values = ", ".join(f"{v:.6g}" if v is not None else "n/a" for v in outcome.out_of_sample.objective)
    header = (
        f"# sigil optimize: study {outcome.name}, trial {outcome.trial.number}, objective "
        f"{spec.objective.label}\n"
        f"# trained on {spec.fold.train.describe()}, tested on {spec.fold.test.describe()} "
        f"(out of sample: {values})\n"
    )
    return header + yaml.safe_dump(posture, sort_keys=False)


def fold_path(path: Path, index: int) -> Path:
    """``best.yaml`` → ``best-fold2.yaml``."""
    return path.with_name(f"{path.stem}-fold{index}{path.suffix or '.yaml'}")


def export(path: str | Path, outcomes: Sequence[FoldOutcome]) -> list[Path]:
    """Writes the last fold's overlay to ``path`` and, with more than one fold, each fold's beside it;
    returns the files written."""
    if not outcomes:
        raise ValueError("--export: no fold has a scored trial, there is no posture to export")
    target = Path(path)
    written = [target]
    target.write_text(overlay_text(outcomes[-1]), encoding="utf-8")
    if len(outcomes) > 1 or outcomes[-1].spec.fold.count > 1:
        for o in outcomes:
            p = fold_path(target, o.spec.fold.index)
            p.write_text(overlay_text(o), encoding="utf-8")
            written.append(p)
    return written
