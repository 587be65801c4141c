"""Helpers for the exchange tests (imported by the tests and by conftest.py): real candle files,
a plain ccxt binance pointed at a simulator, test client settings. The simulator as a subprocess is
``tests/sim_process.py``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt

from sigil.config import ExchangeConfig

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data"
SHARED_UNIVERSE = REPO.parent / "shared" / "data" / "universe-1h"
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


def fast_config(**overrides: Any) -> ExchangeConfig:
    """Client settings for tests: the real rate limiter, but short backoffs and timeouts."""
    values: dict[str, Any] = {
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 2.0,
        "history_candles": 48,
        "universe_refresh_s": 3600.0,
    }
    values.update(overrides)
    return ExchangeConfig(**values)


def plain_binance(url: str, **config: Any) -> Any:
    """A plain ccxt ``binance`` (no Sigil code) with every API URL pointed at ``url``, as a user would."""
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}, **config})
    for key, value in ex.urls["api"].items():
        if isinstance(value, str):
            ex.urls["api"][key] = re.sub(r"^https://[^/]+", url, value)
    return ex


def clean_env() -> dict[str, str]:
    """The environment without any SIGIL_ variable (so a developer's own settings do not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")}
