"""Exchange I/O: the ccxt client, the universe, the brokers, and a Binance-compatible simulator.

- :mod:`sigil.exchange.settings` — URL and API keys resolved from the command line, env and config.
- :mod:`sigil.exchange.ccxt_client` — :class:`ExchangeClient` (retries, validation, candle cache).
- :mod:`sigil.exchange.candle_rows` — :class:`Candle`, the validity rule of a candle row, the accept path.
- :mod:`sigil.exchange.ccxt_hooks` — ccxt's exchange class with request counting, Retry-After, URLs.
- :mod:`sigil.exchange.redaction` — the API key pair and URL credentials kept out of logs.
- :mod:`sigil.exchange.universe` — :class:`Universe`: which symbols are scanned.
- :mod:`sigil.exchange.broker` — :class:`PaperBroker`, :class:`LiveBroker`.
- :mod:`sigil.exchange.sim` — ``sigil exchange-sim``: the exchange, offline.

Names are imported on first use, so that the simulator starts without loading ccxt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sigil.exchange.broker import Fill, LiveBroker, PaperBroker, make_broker
    from sigil.exchange.candle_rows import Candle
    from sigil.exchange.ccxt_client import ExchangeClient, ExchangeStats, PassResult
    from sigil.exchange.settings import Credentials, ExchangeSettings, resolve_exchange
    from sigil.exchange.universe import Universe, UniverseSelection

_WHERE = {
    "Fill": "broker",
    "LiveBroker": "broker",
    "PaperBroker": "broker",
    "make_broker": "broker",
    "Candle": "candle_rows",
    "ExchangeClient": "ccxt_client",
    "ExchangeStats": "ccxt_client",
    "PassResult": "ccxt_client",
    "Credentials": "settings",
    "ExchangeSettings": "settings",
    "resolve_exchange": "settings",
    "Universe": "universe",
    "UniverseSelection": "universe",
}

__all__ = [
    "Candle",
    "Credentials",
    "ExchangeClient",
    "ExchangeSettings",
    "ExchangeStats",
    "Fill",
    "LiveBroker",
    "PaperBroker",
    "PassResult",
    "Universe",
    "UniverseSelection",
    "make_broker",
    "resolve_exchange",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sigil.exchange' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sigil.exchange.{module}"), name)
