"""The benchmark gate: a run's ratios against a saved baseline, case by case; fails on a regression.

Usage::

    python -m sigil.bench.gate BASELINE CURRENT [--tolerances FILE]

``BASELINE`` and ``CURRENT`` are ratios files (:mod:`sigil.bench.ratios`; ``make bench-save`` writes
``.benchmarks/baseline.json``, every timed run ``.benchmarks/ratios.json``). Prints one row per case
(case, baseline, now, change, tolerance, verdict) and exits

- 0 when no gated case got worse by more than its tolerance;
- 1 when one did (``WORSE``), when a baseline case is missing from the run (``MISSING``: a benchmark
  that stopped reporting is a regression too) or when a figure is not a positive number (``INVALID``);
- 2 on bad input (a file that is missing or is not a ratios or tolerances file), before comparing.

"Worse" is the figure's own direction: for a ``lower``-is-better ratio (Sigil's time over a
reference's), ``now / baseline``; for a ``higher``-is-better one (a speed-up), ``baseline / now``; a
case fails when that factor exceeds ``1 + tolerance``. ``report`` figures (absolute times, MiB) are
printed and never fail; cases only in the run are listed as ``new``.

Tolerances (TOML, e.g. ``tests/benchmarks/tolerances.toml``)::

    default = 0.15                      # the fraction a case may get worse (15 % unless set)
    [cases]
    "atr_many 500x1000: sigil/talib" = 0.25
    "daemon RSS *" = 0.10               # fnmatch patterns; an exact name wins, else the first match
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sigil.bench.ratios import Better, RatiosFile, is_figure, read_document

#: How much worse a case may get unless the tolerances file says otherwise.
DEFAULT_TOLERANCE = 0.15

OK, WORSE, MISSING, INVALID, NEW, REPORT = "ok", "WORSE", "MISSING", "INVALID", "new", "report"
FAILING = (WORSE, MISSING, INVALID)


@dataclass(frozen=True)
class Tolerances:
    """The default tolerance and the per-case ones (fnmatch patterns, in file order)."""

    default: float = DEFAULT_TOLERANCE
    cases: tuple[tuple[str, float], ...] = ()

    def of(self, case: str) -> float:
        """The tolerance of ``case``: its exact entry, else the first matching pattern, else the default."""
        exact = dict(self.cases)
        if case in exact:
            return exact[case]
        for pattern, tolerance in self.cases:
            if fnmatch.fnmatchcase(case, pattern):
                return tolerance
        return self.default

    @classmethod
    def read(cls, path: Path) -> Tolerances:
        """Reads a tolerances file; :class:`ValueError` naming the file and the problem."""
        data = read_document(path, tomllib.loads, "tolerances file")
        unknown = set(data) - {"default", "cases"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)} (expected default and [cases])")
        default = _fraction(path, "default", data.get("default", DEFAULT_TOLERANCE))
        cases = data.get("cases", {})
        if not isinstance(cases, dict):
            raise ValueError(f"{path}: [cases] must be a table of case = tolerance")
        return cls(default, tuple((k, _fraction(path, k, v)) for k, v in cases.items()))


def _fraction(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10:
        raise ValueError(f"{path}: {key!r}: tolerance must be a fraction such as 0.15, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Row:
    """One case of the comparison."""

    case: str
    baseline: float | None
    now: float | None
    better: Better
    tolerance: float
    verdict: str

    @property
    def change(self) -> float | None:
        """``now / baseline - 1`` (positive: the figure went up), when both are there."""
        if self.baseline is None or self.now is None or not is_figure(self.baseline):
            return None
        return self.now / self.baseline - 1


def worse_factor(baseline: float, now: float, better: Better) -> float:
    """How many times worse ``now`` is than ``baseline`` in the figure's own direction (1 = same)."""
    return now / baseline if better == "lower" else baseline / now


def compare(baseline: RatiosFile, current: RatiosFile, tolerances: Tolerances) -> list[Row]:
    """Every case of the baseline (in its order), then the cases only the current run has."""
    rows: list[Row] = []
    for case, base in baseline.figures.items():
        tolerance = tolerances.of(case)
        now = current.figures.get(case)
        if now is None:
            rows.append(Row(case, base.value, None, base.better, tolerance, MISSING))
            continue
        better = now.better
        if better == "report":
            verdict = REPORT
        elif not (is_figure(base.value) and is_figure(now.value)):
            verdict = INVALID
        else:
            verdict = WORSE if worse_factor(base.value, now.value, better) > 1 + tolerance else OK
        rows.append(Row(case, base.value, now.value, better, tolerance, verdict))
    for case, fig in current.figures.items():
        if case not in baseline.figures:
            rows.append(Row(case, None, fig.value, fig.better, tolerances.of(case), NEW))
    return rows


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def format_table(rows: Sequence[Row]) -> str:
    """The comparison as an aligned text table."""
    head = ("case", "baseline", "now", "change", "tolerance", "verdict")
    body = [
        (
            r.case,
            _num(r.baseline),
            _num(r.now),
            "-" if r.change is None else f"{r.change:+.1%}",
            "-" if r.better == "report" else f"{r.tolerance:.0%} ({r.better} is better)",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sigil.bench.gate", description=__doc__.split("\n")[0])
    parser.add_argument("baseline", type=Path, help="the saved baseline ratios file")
    parser.add_argument("current", type=Path, help="the ratios file of the run to check")
    parser.add_argument("--tolerances", type=Path, help="per-case tolerances (TOML)")
    args = parser.parse_args(argv)
    try:
        baseline = RatiosFile.read(args.baseline)
        current = RatiosFile.read(args.current)
        tolerances = Tolerances.read(args.tolerances) if args.tolerances else Tolerances()
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    rows = compare(baseline, current, tolerances)
    print(f"baseline: {baseline.describe()}")
    print(f"now:      {current.describe()}")
    if baseline.machine.get("cpu") != current.machine.get("cpu"):
        print("note: the two runs are from different CPUs; ratios move between machines too")
    print(format_table(rows))
    failed = [r for r in rows if r.verdict in FAILING]
    if failed:
        print(f"{len(failed)} case(s) failed: " + "; ".join(f"{r.case} ({r.verdict})" for r in failed))
        return 1
    gated = sum(r.verdict == OK for r in rows)
    print(f"all {gated} gated case(s) within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
