"""What the daemon schedules: the passes, and what a completed pass reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sigil.daemon.scheduler import JobSpec

#: The scanner's two jobs.
BREAKOUT = "breakout"
EXIT = "exit"


@dataclass
class PassReport:
    """Counts of one completed pass (the heartbeat row carries them)."""

    job: str
    #: Market time up to which candles were decided (ms UTC, the exchange's clock); None = no candles.
    market_time_ms: int | None = None
    symbols: int = 0
    candles: int = 0
    signals: int = 0
    opens: int = 0
    closes: int = 0
    skips: int = 0
    errors: int = 0
    #: Candles decided (traded on), and the close time of the newest decided so far (ms UTC).
    decided: int = 0
    newest_close_ms: int | None = None
    #: The exchange's clock at the pass (ms UTC).
    exchange_time_ms: int | None = None
    duration_s: float = 0.0
    #: Per-error-type counts of this pass (exchange errors, rejected opens).
    error_types: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        """Counts one error of ``kind``."""
        self.errors += 1
        self.error_types[kind] = self.error_types.get(kind, 0) + 1


@dataclass(frozen=True)
class VariantState:
    """One variant's book as /health and /metrics show it."""

    balance: float
    equity: float
    open_positions: int


class Passes(Protocol):
    """The work the daemon schedules. The scanner in production; a stand-in in scheduler tests."""

    def jobs(self) -> Sequence[JobSpec]:
        """The periodic jobs, the heartbeat job (:data:`BREAKOUT`) first."""
        ...

    async def run(self, name: str) -> PassReport:
        """Runs one pass to completion. Raising means the pass did not complete (no heartbeat)."""
        ...

    async def heartbeat(self, report: PassReport) -> None:
        """Records that ``report``'s pass completed (a heartbeat row)."""
        ...

    def variants(self) -> dict[str, VariantState]:
        """Balance, equity and open positions per variant, in config order (no I/O)."""
        ...

    def exhausted(self) -> bool:
        """True when the market data has ended (a simulator that ran out): nothing more will happen."""
        ...
