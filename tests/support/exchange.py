"""Helpers for the exchange tests: test client settings, a plain ccxt binance pointed at a simulator, an
environment without Sigil's variables. The candle files are in ``tests.support.data``, the simulator as a
subprocess in ``tests.support.sim_process``."""

from __future__ import annotations

import os
import re
from typing import Any

from sigil.config import ExchangeConfig
from sigil.exchange.ccxt_deferred import async_ccxt

# ccxt with only the exchange that is used loaded (sigil.exchange.ccxt_deferred).
ccxt = async_ccxt()


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
