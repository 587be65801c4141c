"""Where the tests' candle files are: the repository's ``data/`` (always there) and the larger shared data
set next to the repository (``<repo>/../shared/data``), when the machine has it."""

from __future__ import annotations

from pathlib import Path

from sigil.data.candles import CandleSeries

REPO = Path(__file__).resolve().parents[2]
#: Small real candle files that ship with the repository: always there.
BUNDLED = REPO / "data"
#: The larger shared data set next to the repository (``candles/``, ``universe-1h/``).
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_UNIVERSE = SHARED_DATA / "universe-1h"
#: Files of the shared universe the fidelity tests read (a spread of price scales and listing dates);
#: the bundled files stand in when ../shared is absent.
SAMPLE_NAMES = ("BTC", "PEPE", "1000SATS", "DOGS", "EURI", "ZRO", "XVG")


def universe_dir() -> Path:
    """The 109-pair universe when ../shared/data is there, else the bundled files."""
    return SHARED_UNIVERSE if SHARED_UNIVERSE.is_dir() else BUNDLED


def sample_files() -> list[Path]:
    """Several real 1h files of different price scales (bundled data when ../shared is absent)."""
    if SHARED_UNIVERSE.is_dir():
        files = [SHARED_UNIVERSE / f"{n}_USDT-1h.feather" for n in SAMPLE_NAMES]
        return [f for f in files if f.exists()]
    return sorted(BUNDLED.glob("*.feather"))


def rows_of(s: CandleSeries, lo: int = 0, hi: int | None = None) -> list[list[float]]:
    """The series' candles ``[lo, hi)`` as ccxt rows ``[time, o, h, l, c, v]``."""
    hi = len(s) if hi is None else hi
    return [
        [
            int(s.time[i]),
            float(s.open[i]),
            float(s.high[i]),
            float(s.low[i]),
            float(s.close[i]),
            float(s.volume[i]),
        ]
        for i in range(lo, hi)
    ]
