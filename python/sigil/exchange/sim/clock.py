"""The simulator's clock: market time that starts at a chosen moment and runs ``speed`` times real time."""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Simulated market time: ``start_ms`` at creation, advancing ``speed`` ms per real ms.

    ``speed`` 0 freezes it (tests and benchmarks then move it with :meth:`advance`).
    """

    def __init__(
        self, start_ms: int, speed: float = 1.0, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed >= 0 or speed == float("inf"):
            raise ValueError(f"speed must be a finite number >= 0, got {speed}")
        self._timer = timer
        self._base_ms = float(start_ms)
        self._base_t = timer()
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        """Simulated ms per real ms."""
        return self._speed

    def now_ms(self) -> int:
        """The simulated time, in ms since the epoch."""
        return int(self._base_ms + (self._timer() - self._base_t) * 1000.0 * self._speed)

    def _rebase(self, now_ms: float) -> None:
        self._base_ms = now_ms
        self._base_t = self._timer()

    def set(self, now_ms: int) -> None:
        """Jumps to ``now_ms`` (backwards too: a test may rewind)."""
        self._rebase(float(now_ms))

    def advance(self, ms: int) -> None:
        """Moves the clock ``ms`` forward at once."""
        self._rebase(self.now_ms() + float(ms))

    def set_speed(self, speed: float) -> None:
        """Changes the speed from now on (the time reached so far is kept)."""
        if not speed >= 0 or speed == float("inf"):
            raise ValueError(f"speed must be a finite number >= 0, got {speed}")
        self._rebase(float(self.now_ms()))
        self._speed = float(speed)
