"""Sigil's ratios file: what one benchmark run measured, figure by figure, and where it ran.

Every benchmark run with timing on writes one (``.benchmarks/ratios.json`` by default;
``make bench-save`` keeps its run as ``.benchmarks/baseline.json``) and :mod:`sigil.bench.gate`
compares two of them. The JSON::

    {
      "format": 1,
      "written": "2026-12-01T23:00:00+0000",
      "commit": "9610edb...",              # null outside a git checkout
      "dirty": true,                       # uncommitted changes in the checkout (null: unknown)
      "sigil": {"version": "0.2.0", "path": ".../site-packages/sigil"},
      "machine": {"cpu": "AMD EPYC", "vector": "AVX2/FMA", "cores": 2, "python": "3.11.7",
                  "platform": "Linux-..."},
      "ratios": {"atr 10k bars: sigil/talib": 0.47, ...},     # case -> figure
      "better": {"atr 10k bars: sigil/talib": "lower", ...},  # lower, higher, or report (not gated)
      "notes": {"atr 10k bars: sigil/talib": "median 1.1 ns vs 2.3 ns per bar; ...", ...},
      "timings": [{"case": ..., "impl": ..., "median_s": ..., "min_s": ..., "unit": ...}, ...]
    }

A ratio is Sigil's time over a reference's measured in the same run (``lower`` is better), or a
figure normalised the same way (a speed-up over a reference: ``higher``). Absolute figures (seconds,
MiB, operations per second) are kept as ``report``: printed next to the baseline, never gated, since
absolute times on a shared machine drift by a third between runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args

#: How a figure is judged: lower is better, higher is better, or reported only.
Better = Literal["lower", "higher", "report"]
BETTER: tuple[Better, ...] = get_args(Better)
FORMAT = 1


@dataclass(frozen=True)
class Figure:
    """One case of a run: its value, which way is better, and how it was measured."""

    value: float
    better: Better
    note: str = ""


@dataclass(frozen=True)
class RatiosFile:
    """A benchmark run's figures with the commit and the machine they were measured on."""

    figures: dict[str, Figure]
    commit: str | None = None
    dirty: bool | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    sigil: dict[str, Any] = field(default_factory=dict)
    written: str = ""
    timings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def measured_here(cls, figures: dict[str, Figure], timings: list[dict[str, Any]]) -> RatiosFile:
        """The figures stamped with this machine, the Sigil measured and, when that Sigil is a git
        checkout's source (a development build), its commit."""
        sigil = sigil_info()
        commit, dirty = git_commit(Path(sigil["path"]))
        return cls(
            figures=figures,
            commit=commit,
            dirty=dirty,
            machine=machine_info(),
            sigil=sigil,
            written=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            timings=timings,
        )

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object (see the module docstring)."""
        return {
            "format": FORMAT,
            "written": self.written,
            "commit": self.commit,
            "dirty": self.dirty,
            "sigil": self.sigil,
            "machine": self.machine,
            "ratios": {k: f.value for k, f in self.figures.items()},
            "better": {k: f.better for k, f in self.figures.items()},
            "notes": {k: f.note for k, f in self.figures.items() if f.note},
            "timings": self.timings,
        }

    def write(self, path: Path) -> None:
        """Writes the file (its folder made if needed), replacing any file there at once."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> RatiosFile:
        """Reads a ratios file; :class:`ValueError` naming the file and the problem if it is not one."""
        data = read_document(path, json.loads, "ratios file", " (make bench-save writes the baseline)")
        if not isinstance(data, dict) or not isinstance(data.get("ratios"), dict):
            raise ValueError(f"{path}: not a ratios file: no 'ratios' object")
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: ratios file format {data.get('format')!r}, expected {FORMAT}")
        better = data.get("better", {})
        notes = data.get("notes", {})
        figures: dict[str, Figure] = {}
        for case, value in data["ratios"].items():
            way = better.get(case, "lower")
            if isinstance(value, bool) or not isinstance(value, int | float) or way not in BETTER:
                raise ValueError(f"{path}: case {case!r}: bad value {value!r} or direction {way!r}")
            figures[case] = Figure(float(value), way, str(notes.get(case, "")))
        return cls(
            figures=figures,
            commit=data.get("commit"),
            dirty=data.get("dirty"),
            machine=dict(data.get("machine") or {}),
            sigil=dict(data.get("sigil") or {}),
            written=str(data.get("written", "")),
            timings=list(data.get("timings") or []),
        )

    def describe(self) -> str:
        """One line: commit, CPU (with its vector units, when known), cores, when."""
        commit = (self.commit or "no commit")[:12] + (" (uncommitted changes)" if self.dirty else "")
        cpu = self.machine.get("cpu", "unknown CPU")
        vector = self.machine.get("vector")
        if vector:
            cpu = f"{cpu} ({vector})"
        return f"{commit}, {cpu}, {self.machine.get('cores', '?')} cores, {self.written or 'unknown time'}"


def read_document(path: Path, parse: Callable[[str], Any], what: str, missing: str = "") -> Any:
    """``parse`` of the file's text; :class:`ValueError` naming the file if it is missing (with the
    ``missing`` hint) or unreadable, or if ``parse`` raises ValueError (as JSON and TOML errors are)."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file{missing}") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError too
        raise ValueError(f"{path}: not a {what}: {e}") from None


def is_figure(value: float) -> bool:
    """Whether ``value`` can be compared: a finite number above zero."""
    return math.isfinite(value) and value > 0


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The widest vector kernel of ``sigil.atr`` this CPU can run, as its flags say: ``AVX-512``,
    ``AVX2/FMA``, else ``no AVX2/FMA`` (the same tests the kernel choice makes); empty when unknown.
    The same model name can stand for machines with and without AVX-512 (a cloud's "AMD EPYC")."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = set(value.split())
                if {"avx512f", "fma"} <= flags:
                    return "AVX-512"
                return "AVX2/FMA" if {"avx2", "fma"} <= flags else "no AVX2/FMA"
    except OSError:
        pass
    return ""


def machine_info() -> dict[str, Any]:
    """The CPU model and vector units, the cores this process may run on, the Python and the platform."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu_model(),
        "vector": vector_units(),
        "cores": cores,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def sigil_info() -> dict[str, Any]:
    """The version and location of the ``sigil`` being measured (installed wheel or checkout)."""
    import sigil

    try:
        version = metadata.version("sigil-trader")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "path": str(Path(sigil.__file__).resolve().parent)}


def git_commit(package: Path) -> tuple[str | None, bool | None]:
    """``(HEAD, has uncommitted changes other than to README.md)`` of the git checkout whose tracked
    source ``package`` is; ``(None, None)`` for an installed package (even one installed inside some
    checkout's venv)."""
    try:
        tracked = subprocess.run(
            ["git", "-C", str(package), "ls-files", "--error-unmatch", "__init__.py"],
            capture_output=True,
            timeout=10,
        )
        if tracked.returncode != 0:
            return None, None
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        # The README is where `make bench` writes its table: one from an earlier run does not
        # change what this run measures.
        status = subprocess.run(
            [
                "git",
                "-C",
                str(package),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)README.md",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip(), dirty
