"""The simulator's clock: market time that starts at a chosen moment and runs ``speed`` times real time."""

from __future__ import annotations

import time
from collections.abc import Callable

#: The fastest clock: a million market seconds per real second (a year in 32 s). Faster, market time
#: leaves the calendar (and the ms integers) within seconds of real time.
MAX_SPEED = 1_000_000.0


def check_speed(speed: float) -> float:
    """``speed`` when the clock can run at it (finite, 0 to :data:`MAX_SPEED`); ValueError otherwise."""
    if not 0.0 <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be a number from 0 to {MAX_SPEED:g}, got {speed:g}")
    return speed


class SimClock:
    """Simulated market time: ``start_ms`` at creation, advancing ``speed`` ms per real ms.

    ``speed`` 0 freezes it (tests and benchmarks then move it with :meth:`advance`).
    """

    def __init__(
        self, start_ms: int, speed: float = 1.0, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        check_speed(speed)
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
        check_speed(speed)
        self._rebase(float(self.now_ms()))
        self._speed = float(speed)
