"""The pytest plugin of Sigil's benchmarks: timings, ratios, the session table and the ratios file.

Loaded by ``tests/benchmarks/conftest.py`` in a checkout and by ``python -m sigil.bench``
(``-p sigil.bench.plugin``) for an installed Sigil. Two ways to report a comparison; both end up in
one table at the end of the session and in the ratios file (:mod:`sigil.bench.ratios`; option
``--sigil-ratios PATH``, default ``.benchmarks/ratios.json`` under the rootdir), next to
pytest-benchmark's own output:

- ``record_timing(case, impl, median_s, min_s, units, unit)`` after a benchmark ran: its time per
  unit (per bar, per call...). Every case that has an ``impl`` named ``sigil`` gets the ratio
  ``sigil / other`` of time per unit against each other implementation of that case, so below 1
  means Sigil is faster, of the medians (reported) and of the fastest rounds (gated: the case's
  name with :data:`FASTEST` appended). An ``impl`` named ``baseline`` is the harness alone (say,
  the Python loop without the call): it gets no ratio of its own, and the other ratios of its case
  also say how they come out net of it. The ``timing`` fixture records from a ``benchmark``.
- ``record_ratio(name, value, note, better=...)`` for any other figure (also a fixture of that
  name); ``better`` is ``lower``, ``higher`` or ``report`` (an absolute figure, never gated).

Timings never fail a test: a benchmark reports, it does not assert. With timing off
(``--benchmark-disable``) nothing is recorded and no ratios file is written: each benchmark runs
once, as a test that its set-up and its checks still work.

The ``bench_candles`` fixture is where the ATR benchmarks get their candles: the files under
``--sigil-data PATH`` (repeatable), else seeded synthetic candles; a checkout's conftest overrides it
with the repository's data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from sigil.bench.candles import BenchCandles
from sigil.bench.ratios import Better, Figure, RatiosFile

# numpy's OpenBLAS keeps worker threads that spin after a BLAS call; on a small machine they
# compete with what is being measured. No benchmark here needs a threaded BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: The implementation every case's ratios are taken against.
SUBJECT = "sigil"
#: The harness alone; subtracted for the net ratios.
BASELINE = "baseline"
#: The suffix of a case's ratio of fastest rounds. Other work on a shared machine only ever adds time,
#: so each side's fastest round is the figure it moves least: between two runs minutes apart on a
#: loaded 2-core machine the medians of single-thread cases moved by up to half, their minima by
#: an eighth. The gate judges these; the median ratios are reported beside them.
FASTEST = " (fastest rounds)"
#: Where the ratios file goes under the rootdir unless ``--sigil-ratios`` says otherwise.
DEFAULT_RATIOS = Path(".benchmarks") / "ratios.json"

RecordRatio = Callable[..., None]


@dataclass(frozen=True)
class Ratio:
    """One reported figure."""

    name: str
    value: float
    note: str
    better: Better


@dataclass(frozen=True)
class Timing:
    """Time per unit of one implementation on one case."""

    case: str
    impl: str
    median_s: float
    min_s: float
    unit: str


_RATIOS: list[Ratio] = []
_TIMINGS: dict[tuple[str, str], Timing] = {}


def record_ratio(name: str, value: float, note: str = "", better: Better = "lower") -> None:
    """Reports ``value`` under ``name`` in the session summary and the ratios file."""
    _RATIOS.append(Ratio(name, float(value), note, better))


def record_timing(
    case: str, impl: str, median_s: float, min_s: float | None = None, units: int = 1, unit: str = "call"
) -> None:
    """Reports how long ``impl`` took on ``case``: ``median_s`` (and ``min_s``) for ``units`` units."""
    low = median_s if min_s is None else min_s
    _TIMINGS[(case, impl)] = Timing(case, impl, median_s / units, low / units, unit)


def case_ratios() -> list[Ratio]:
    """``sigil / other`` time per unit, for every case with a ``sigil`` timing: of the medians (the
    figure people quote, reported) and of the fastest rounds (:data:`FASTEST`, the one the gate
    judges)."""
    out: list[Ratio] = []
    for (case, impl), t in _TIMINGS.items():
        subject = _TIMINGS.get((case, SUBJECT))
        if impl in (SUBJECT, BASELINE) or subject is None:
            continue
        note = (
            f"median {_fmt(subject.median_s)} vs {_fmt(t.median_s)} per {t.unit}; "
            f"min-based {subject.min_s / t.min_s:.3f}"
        )
        base = _TIMINGS.get((case, BASELINE))
        if base is not None and t.median_s > base.median_s:
            net = (subject.median_s - base.median_s) / (t.median_s - base.median_s)
            note += f"; net of the {_fmt(base.median_s)} baseline {net:.3f}"
        name = f"{case}: {SUBJECT}/{impl}"
        out.append(Ratio(name, subject.median_s / t.median_s, note, "report"))
        out.append(Ratio(name + FASTEST, subject.min_s / t.min_s, "ratio of the fastest rounds", "lower"))
    return out


def _fmt(seconds: float) -> str:
    for scale, suffix in ((1e-9, "ns"), (1e-6, "us"), (1e-3, "ms")):
        if seconds < scale * 1000:
            return f"{seconds / scale:.3g} {suffix}"
    return f"{seconds:.3g} s"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--sigil-ratios PATH`` and ``--sigil-data PATH``."""
    group = parser.getgroup("sigil benchmarks")
    group.addoption(
        "--sigil-ratios",
        metavar="PATH",
        default=None,
        help=f"where the run's ratios file goes (default: {DEFAULT_RATIOS} under the rootdir)",
    )
    group.addoption(
        "--sigil-data",
        metavar="PATH",
        action="append",
        default=[],
        help="candle files or folders for the ATR benchmarks (repeatable; default: synthetic candles)",
    )


@pytest.fixture(name="record_ratio")
def record_ratio_fixture() -> RecordRatio:
    """:func:`record_ratio`, for benchmark files that prefer a fixture to an import."""
    return record_ratio


@pytest.fixture
def timing(benchmark: Any) -> Callable[..., None]:
    """``timing(case, impl, units=1, unit="call")``: records this test's benchmark result (after the
    ``benchmark`` call) as :func:`record_timing` does. Nothing is recorded when benchmarking is off."""

    def record(case: str, impl: str, units: int = 1, unit: str = "call") -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:
            return
        record_timing(case, impl, float(stats.stats.median), float(stats.stats.min), units, unit)

    return record


@pytest.fixture(scope="session")
def bench_candles(pytestconfig: pytest.Config) -> BenchCandles:
    """The ATR benchmarks' candles: ``--sigil-data`` files, else seeded synthetic ones."""
    paths = [Path(p) for p in pytestconfig.getoption("sigil_data", default=None) or []]
    return BenchCandles.from_data(paths) if paths else BenchCandles.synthetic()


def ratios_path(config: pytest.Config) -> Path:
    """Where this session's ratios file goes."""
    given = config.getoption("sigil_ratios", default=None)
    return Path(given) if given else config.rootpath / DEFAULT_RATIOS


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Prints the timings and ratios of the session and writes them to the ratios file."""
    ratios = case_ratios() + _RATIOS
    if config.getoption("benchmark_disable", default=False) or (not ratios and not _TIMINGS):
        return
    tr = terminalreporter
    tr.write_sep("=", "benchmark timings and ratios")
    if _TIMINGS:
        width = max(len(t.case) for t in _TIMINGS.values())
        for t in sorted(_TIMINGS.values(), key=lambda t: (t.case, t.impl != SUBJECT, t.impl)):
            tr.write_line(
                f"{t.case:<{width}}  {t.impl:<18} median {_fmt(t.median_s):>10}/{t.unit}"
                f"   min {_fmt(t.min_s):>10}/{t.unit}"
            )
        tr.write_line("")
    width = max((len(r.name) for r in ratios), default=0)
    for r in ratios:
        tr.write_line(f"{r.name:<{width}}  {r.value:10.4g}   {r.note}")
    out = ratios_path(config)
    figures = {r.name: Figure(r.value, r.better, r.note) for r in ratios}
    RatiosFile.measured_here(figures, [asdict(t) for t in _TIMINGS.values()]).write(out)
    tr.write_line(f"written to {out}")
