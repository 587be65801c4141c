"""A Binance-compatible spot exchange on 127.0.0.1, serving real candle files on a simulated clock.

The endpoints are the ones ccxt's ``binance`` class calls for ``load_markets``, ``fetch_ohlcv``,
``fetch_tickers``, ``fetch_ticker`` and ``fetch_time`` (``/api/v3/exchangeInfo``, ``/api/v3/klines``,
``/api/v3/ticker/24hr``, ``/api/v3/time``, ``/api/v3/ping``), in Binance's own JSON shapes, plus
the signed ones a live broker needs (``/api/v3/account``, ``POST /api/v3/order`` for market orders,
``GET /api/v3/order`` to look an executed order up by its client id, ``GET /api/v3/allOrders`` and
``/api/v3/openOrders`` for the books' reconciliation; :meth:`SimExchange.set_balance` changes a balance
behind the client's back); the signature is required but not
checked, the simulator does not know the secret). Anything else is a 404 that is
logged, so a ccxt upgrade that starts calling something new shows up at once.

Time: :class:`SimClock` starts at the first candle (or a given time) and runs ``speed`` times real
time. Only candles closed by that clock are served complete; the current one is partial, built from
the file's candle as if price had walked open → low → high → close (open → high → low → close for a
falling candle), and tickers come from the same clock.

Faults (:class:`Faults`), each with its own rate and all drawn from ``seed``: added latency, 429 with
Retry-After, 418, 5xx with a non-JSON body (as a load balancer sends), requests that hang longer than
any client timeout, malformed candles (NaN, high < low, rows out of order, a duplicated row), and
symbols that disappear from the markets. A decision depends only on the seed, the request (method,
path, query without timestamp/signature) and how many times that request was seen before, so a run is
reproducible even when requests arrive concurrently in a different order.

Control endpoints under ``/sim/`` (never faulted): ``GET /sim/stats``, ``GET|POST /sim/clock``
(``{"advance_ms": N}``, ``{"now_ms": T}``, ``{"speed": X}``).

Where things are: :mod:`~sigil.exchange.sim.clock` (the clock), :mod:`~sigil.exchange.sim.market`
(one symbol's candles as Binance shows them at a moment), :mod:`~sigil.exchange.sim.faults` (fault
injection and request counts), :mod:`~sigil.exchange.sim.server` (:class:`SimExchange`: routes, the
paper account, serving) and :mod:`~sigil.exchange.sim.responses` (Binance's error answers).
"""

from __future__ import annotations

from sigil.exchange.sim.clock import SimClock
from sigil.exchange.sim.faults import ENDPOINTS, FAULT_ENDPOINTS, MALFORMED_KINDS, Faults, SimStats
from sigil.exchange.sim.market import INTERVALS, SimMarket, num
from sigil.exchange.sim.server import HOST, SimExchange

__all__ = [
    "ENDPOINTS",
    "FAULT_ENDPOINTS",
    "HOST",
    "INTERVALS",
    "MALFORMED_KINDS",
    "Faults",
    "SimClock",
    "SimExchange",
    "SimMarket",
    "SimStats",
    "num",
]
