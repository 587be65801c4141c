"""What one chaos scenario reports: the faults it injected, the invariants it checked, the times it
measured (tests/chaos/report.py turns these into docs/RELIABILITY.md's table)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Record:
    """One scenario's figures, filled in by the test as it goes."""

    test: str
    scenario: str = ""
    runs: int = 0
    faults: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)
    #: Name → seconds (or a short text), e.g. ``{"recovery max": 1.2}``.
    times: dict[str, float | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    result: str = ""
    wall_s: float = 0.0

    def fault(self, what: str) -> None:
        """One fault injected."""
        self.faults.append(what)

    def checked(self, names: list[str] | dict[str, list[str]]) -> None:
        """Invariants checked (names kept once, in order)."""
        for n in names:
            if n not in self.invariants:
                self.invariants.append(n)

    def spread(self, name: str, values: list[float]) -> None:
        """Median and maximum of ``values`` (seconds) as two times."""
        if values:
            self.times[f"{name} median"] = round(statistics.median(values), 2)
            self.times[f"{name} max"] = round(max(values), 2)

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return asdict(self)
