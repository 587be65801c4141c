"""A Binance-compatible spot exchange on 127.0.0.1, serving real candle files on a simulated clock.

The endpoints are the ones ccxt's ``binance`` class calls for ``load_markets``, ``fetch_ohlcv``,
``fetch_tickers``, ``fetch_ticker`` and ``fetch_time`` (``/api/v3/exchangeInfo``, ``/api/v3/klines``,
``/api/v3/ticker/24hr``, ``/api/v3/time``, ``/api/v3/ping``), in Binance's own JSON shapes, plus
the signed ones a live broker needs (``/api/v3/account``, ``POST /api/v3/order`` for market orders,
``GET /api/v3/order`` to look an executed order up by its client id; the signature is required but not
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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from sigil.data.candles import CandleSeries

log = logging.getLogger("sigil.exchange.sim")

HOST = "127.0.0.1"

#: Binance's interval names by length in ms.
INTERVALS = {
    60_000: "1m",
    180_000: "3m",
    300_000: "5m",
    900_000: "15m",
    1_800_000: "30m",
    3_600_000: "1h",
    7_200_000: "2h",
    14_400_000: "4h",
    21_600_000: "6h",
    28_800_000: "8h",
    43_200_000: "12h",
    86_400_000: "1d",
    259_200_000: "3d",
    604_800_000: "1w",
}
DAY_MS = 86_400_000
#: Binance's own limits on klines.
KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000
#: Binance keeps at most 8 decimals on prices and quantities.
MAX_DECIMALS = 8
#: Half the bid/ask spread quoted around the last price, as a fraction of it.
HALF_SPREAD = 0.00005
MIN_NOTIONAL = 5.0

#: Endpoint names (used by ``Faults.endpoints`` and the stats) by path.
ENDPOINTS = {
    "/api/v3/exchangeInfo": "exchangeInfo",
    "/api/v3/klines": "klines",
    "/api/v3/ticker/24hr": "ticker",
    "/api/v3/time": "time",
    "/api/v3/ping": "ping",
    "/api/v3/account": "account",
    "/api/v3/order": "order",
}
#: ``GET /api/v3/order`` (looking an order up) is an endpoint of its own for faults and stats.
ORDER_QUERY = "queryOrder"
#: Every endpoint name faults can be given to.
FAULT_ENDPOINTS = (*ENDPOINTS.values(), ORDER_QUERY)
MARKET_ENDPOINTS = frozenset({"exchangeInfo", "klines", "ticker", "time"})
MALFORMED_KINDS = ("nan", "high_low", "out_of_order", "duplicate")
#: Query parameters that change on every signed request; left out of the fault key.
_VOLATILE_PARAMS = frozenset({"timestamp", "signature", "recvWindow"})

_ERR_SYMBOL = (-1121, "Invalid symbol.")
_ERR_INTERVAL = (-1120, "Invalid interval.")
_ERR_429 = (
    -1003,
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
)
_ERR_418 = (
    -1003,
    "Way too much request weight used; IP banned. Please use WebSocket Streams for live updates.",
)
#: The fault draws of the request being handled (set by the middleware, read by the klines handler).
_DRAWS: contextvars.ContextVar[tuple[random.Random, bool]] = contextvars.ContextVar("sigil_sim_draws")
_HTML_5XX = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
_STATUS_TEXT = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Unavailable"}
_STATUS_TEXT[504] = "504 Gateway Time-out"


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


@dataclass(frozen=True)
class Faults:
    """What goes wrong, how often (each rate is a probability per request), from which seed."""

    seed: int = 0
    latency_ms: float = 0.0
    #: Extra latency drawn uniformly from [0, latency_jitter_ms].
    latency_jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_418: float = 0.0
    #: Seconds sent in the Retry-After header of a 429 or 418.
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    #: Probability that a request is carried out but its answer never arrives (it hangs like a timeout
    #: AFTER the work: an order executed whose client never hears of it).
    rate_lost_answer: float = 0.0
    #: How long a "timed out" request hangs before it is answered (longer than any client timeout).
    hang_s: float = 30.0
    #: Probability that a klines response carries a malformed candle, of one of ``malformed_kinds``.
    rate_malformed: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    #: Symbols (``BASE/QUOTE`` or ``BASEQUOTE``) that disappear from the markets…
    vanish: tuple[str, ...] = ()
    #: …after this many exchangeInfo responses listed them.
    vanish_after: int = 1
    #: The endpoints faults apply to (names from ``ENDPOINTS``).
    endpoints: frozenset[str] = field(default_factory=lambda: MARKET_ENDPOINTS)

    def __post_init__(self) -> None:
        rates = ("rate_429", "rate_418", "rate_5xx", "rate_timeout", "rate_lost_answer", "rate_malformed")
        for name in rates:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be a probability in [0, 1], got {v}")
        for name in ("latency_ms", "latency_jitter_ms", "retry_after_s", "hang_s"):
            v = getattr(self, name)
            if not 0.0 <= v < float("inf"):
                raise ValueError(f"{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        bad = [k for k in self.malformed_kinds if k not in MALFORMED_KINDS]
        if bad or not self.malformed_kinds:
            raise ValueError(
                f"malformed kinds must be among {', '.join(MALFORMED_KINDS)}, got {bad or 'none'}"
            )
        unknown = sorted(set(self.endpoints) - set(FAULT_ENDPOINTS))
        if unknown:
            raise ValueError(
                f"unknown endpoint(s) {', '.join(unknown)} (known: {', '.join(FAULT_ENDPOINTS)})"
            )
        if self.vanish_after < 0:
            raise ValueError(f"vanish-after must be >= 0, got {self.vanish_after}")


def _decimals(values: np.ndarray[Any, np.dtype[np.float64]], cap: int = MAX_DECIMALS) -> int:
    """The fewest decimals that write every value exactly (at most ``cap``): the tick or step size."""
    v = values[np.isfinite(values)]
    if v.size > 4096:  # a sample is plenty: ticks do not change within a file
        v = v[np.linspace(0, v.size - 1, 4096).astype(np.int64)]
    for d in range(cap + 1):
        scaled = v * 10.0**d
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-7 * np.maximum(1.0, np.abs(scaled))):
            return d
    return cap


def num(x: float) -> str:
    """A float as Binance writes numbers: positional, and exact (parses back to the same float)."""
    if x != x:
        return "NaN"
    s = repr(float(x))
    if "e" in s or "E" in s:
        s = np.format_float_positional(x, unique=True, trim="-")
    return s


def _fixed(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


class SimMarket:
    """One symbol: its candles, and everything the simulator derives from them at a given time."""

    def __init__(self, series: CandleSeries) -> None:
        if "/" not in series.symbol:
            raise ValueError(f"{series.source}: name the file BASE_QUOTE-<tf> (e.g. TST_USDT-1h.feather)")
        if series.timeframe_ms not in INTERVALS:
            raise ValueError(
                f"{series.source}: timeframe of {series.timeframe_ms} ms is not a Binance interval"
            )
        if len(series) == 0:
            raise ValueError(f"{series.source}: no candles")
        self.series = series
        self.symbol = series.symbol
        self.base, self.quote = series.symbol.split("/")
        self.id = self.base + self.quote
        self.tf = series.timeframe_ms
        self.interval = INTERVALS[self.tf]
        prices = np.concatenate((series.open, series.high, series.low, series.close))
        self.price_decimals = _decimals(prices)
        self.qty_decimals = _decimals(series.volume)
        self.first_ms = int(series.time[0])
        self.end_ms = int(series.time[-1]) + self.tf

    def visible_end(self, now_ms: int) -> int:
        """Index after the last candle that has opened by ``now_ms``."""
        return int(np.searchsorted(self.series.time, now_ms, side="right"))

    def candle(self, i: int, now_ms: int) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of candle ``i`` as known at ``now_ms`` (partial while open)."""
        s = self.series
        o, h, lo, c, v = (
            float(s.open[i]),
            float(s.high[i]),
            float(s.low[i]),
            float(s.close[i]),
            float(s.volume[i]),
        )
        frac = (now_ms - int(s.time[i])) / self.tf
        if frac >= 1.0:
            return o, h, lo, c, v
        frac = max(frac, 0.0)
        # The walk a candle is assumed to take: one third of its time per leg.
        path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        leg = min(int(frac * 3.0), 2)
        u = frac * 3.0 - leg
        price = path[leg] + (path[leg + 1] - path[leg]) * u
        price = min(max(round(price, self.price_decimals), lo), h)
        seen = (*path[: leg + 1], price)
        return o, max(seen), min(seen), price, round(v * frac, self.qty_decimals)

    def last_price(self, now_ms: int) -> float | None:
        """The last traded price at ``now_ms``; None before the first candle."""
        i = self.visible_end(now_ms) - 1
        return None if i < 0 else self.candle(i, now_ms)[3]

    def klines(self, now_ms: int, start: int | None, end: int | None, limit: int) -> list[list[Any]]:
        """Binance klines rows visible at ``now_ms`` (open time in [start, end], at most ``limit``)."""
        t = self.series.time
        hi = self.visible_end(now_ms)
        if end is not None:
            hi = min(hi, int(np.searchsorted(t, end, side="right")))
        lo = 0 if start is None else int(np.searchsorted(t, start, side="left"))
        if start is not None:
            hi = min(hi, lo + limit)
        else:
            lo = max(lo, hi - limit)
        rows: list[list[Any]] = []
        for i in range(lo, hi):
            o, h, low, c, v = self.candle(i, now_ms)
            ot = int(t[i])
            qv = v * (o + h + low + c) / 4.0
            rows.append(
                [
                    ot,
                    num(o),
                    num(h),
                    num(low),
                    num(c),
                    num(v),
                    ot + self.tf - 1,
                    _fixed(qv, 8),
                    0,
                    "0",
                    "0",
                    "0",
                ]
            )
        return rows

    def ticker(self, now_ms: int) -> dict[str, Any] | None:
        """The rolling 24h ticker at ``now_ms``; None before the first candle."""
        hi = self.visible_end(now_ms)
        if hi == 0:
            return None
        t = self.series.time
        lo = int(np.searchsorted(t, now_ms - DAY_MS, side="right"))
        lo = min(lo, hi - 1)
        o = h = low = c = vol = qvol = 0.0
        for i in range(lo, hi):
            co, ch, cl, cc, cv = self.candle(i, now_ms)
            if i == lo:
                o, h, low = co, ch, cl
            h, low, c = max(h, ch), min(low, cl), cc
            vol += cv
            qvol += cv * (co + ch + cl + cc) / 4.0
        prev = float(self.series.close[lo - 1]) if lo > 0 else o
        d = self.price_decimals
        bid, ask = c * (1.0 - HALF_SPREAD), c * (1.0 + HALF_SPREAD)
        change = c - o
        return {
            "symbol": self.id,
            "priceChange": _fixed(change, d),
            "priceChangePercent": _fixed(100.0 * change / o if o else 0.0, 3),
            "weightedAvgPrice": _fixed(qvol / vol if vol else c, d),
            "prevClosePrice": num(prev),
            "lastPrice": num(c),
            "lastQty": _fixed(0.0, self.qty_decimals),
            "bidPrice": _fixed(bid, d),
            "bidQty": "1.00000000",
            "askPrice": _fixed(ask, d),
            "askQty": "1.00000000",
            "openPrice": num(o),
            "highPrice": num(h),
            "lowPrice": num(low),
            "volume": _fixed(vol, 8),
            "quoteVolume": _fixed(qvol, 8),
            "openTime": max(now_ms - DAY_MS, int(t[lo])),
            "closeTime": now_ms,
            "firstId": -1,
            "lastId": -1,
            "count": hi - lo,
        }

    def exchange_info(self, now_ms: int) -> dict[str, Any]:
        """This market's entry in exchangeInfo's ``symbols``."""
        tick = _fixed(10.0**-self.price_decimals, MAX_DECIMALS)
        step = _fixed(10.0**-self.qty_decimals, MAX_DECIMALS)
        status = "TRADING" if now_ms < self.end_ms else "BREAK"
        order_types = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
        return {
            "symbol": self.id,
            "status": status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": order_types,
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": tick,
                    "maxPrice": "1000000.00000000",
                    "tickSize": tick,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": step,
                    "maxQty": "90000000000.00000000",
                    "stepSize": step,
                },
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "90000000000.00000000"},
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _fixed(MIN_NOTIONAL, 8),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class SimStats:
    """What the simulator saw and did (served as ``GET /sim/stats``)."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)

    def total(self) -> int:
        """Requests to exchange endpoints (not ``/sim/``)."""
        return sum(self.requests.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "requests": dict(self.requests),
            "total": self.total(),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "faults": dict(self.faults),
            "unknown": dict(self.unknown),
        }


def _error(status: int, code: int, msg: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _int_param(q: Mapping[str, str], name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit():
        raise _BadParam(name)
    return int(raw)


class _BadParam(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class SimExchange:
    """The simulated exchange: markets from candle series, a clock, faults, and a paper account.

    Use :meth:`start` / :meth:`stop` to serve it on 127.0.0.1 inside a running event loop, or
    :meth:`app` to mount it elsewhere.
    """

    def __init__(
        self,
        series: Sequence[CandleSeries],
        *,
        clock: SimClock | None = None,
        speed: float = 1.0,
        start_ms: int | None = None,
        faults: Faults | None = None,
        balances: Mapping[str, float] | None = None,
        fee_rate: float = 0.001,
    ) -> None:
        if not series:
            raise ValueError("no candle series to serve")
        markets = [SimMarket(s) for s in series]
        self.markets: dict[str, SimMarket] = {m.id: m for m in markets}
        if len(self.markets) != len(markets):
            raise ValueError("two files give the same symbol")
        first = min(m.first_ms for m in markets)
        self.clock = clock or SimClock(first if start_ms is None else start_ms, speed)
        self.faults = faults or Faults()
        self.stats = SimStats()
        self.balances: dict[str, float] = dict(balances if balances is not None else {"USDT": 10_000.0})
        self.fee_rate = fee_rate
        self._seen: Counter[str] = Counter()
        self._vanish = {v.replace("/", "").upper() for v in self.faults.vanish}
        unknown = self._vanish - set(self.markets)
        if unknown:
            raise ValueError(f"vanish: unknown symbol(s) {', '.join(sorted(unknown))}")
        self._info_served: Counter[str] = Counter()
        self._gone: set[str] = set()
        self._order_id = 0
        #: Executed orders by (symbol id, client order id), for the order query endpoint.
        self._orders: dict[tuple[str, str], dict[str, Any]] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    # ----- serving

    def app(self) -> web.Application:
        """The aiohttp application (Binance routes, ``/sim/`` control routes, the fault middleware)."""
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/api/v3/ticker/24hr", self._ticker)
        r.add_get("/api/v3/account", self._account)
        r.add_post("/api/v3/order", self._order)
        r.add_get("/api/v3/order", self._query_order)
        r.add_get("/sim/stats", self._sim_stats)
        r.add_get("/sim/clock", self._sim_clock)
        r.add_post("/sim/clock", self._sim_clock)
        return app

    async def start(self, port: int = 0) -> str:
        """Serves on 127.0.0.1:``port`` (0 = a free port) and returns the base URL."""
        # Handlers are cancelled when a client gives up, so a hanging "timeout" fault ends with it.
        self._runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{HOST}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        """Stops serving; requests still hanging are released."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----- state

    def vanish_now(self, symbol: str) -> None:
        """Removes ``symbol`` from the markets from now on (as a delisting does)."""
        self._gone.add(symbol.replace("/", "").upper())

    def _listed(self, market: SimMarket, now_ms: int) -> bool:
        return market.id not in self._gone and market.first_ms <= now_ms

    def _market(self, market_id: str | None) -> SimMarket | None:
        if market_id is None:
            return None
        m = self.markets.get(market_id.upper())
        if m is None or not self._listed(m, self.clock.now_ms()):
            return None
        return m

    # ----- faults

    def _rng(self, request: web.Request) -> random.Random:
        """The fault draws for this request: seed × request × how often it was seen (order-free)."""
        items = sorted((k, v) for k, v in request.query.items() if k not in _VOLATILE_PARAMS)
        key = f"{request.method} {request.path}?{items}"
        n = self._seen[key]
        self._seen[key] = n + 1
        return random.Random(f"{self.faults.seed}|{key}|{n}")

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/sim/"):
            return await handler(request)
        endpoint = ENDPOINTS.get(request.path)
        if endpoint == "order" and request.method == "GET":
            endpoint = ORDER_QUERY
        if endpoint is None:
            self.stats.unknown[f"{request.method} {request.path}"] += 1
            self.stats.statuses[404] += 1
            log.warning("exchange-sim: unknown path %s %s (404)", request.method, request.path)
            return web.json_response({"code": -1, "msg": "Not found."}, status=404)
        self.stats.requests[endpoint] += 1
        f = self.faults
        rng = self._rng(request)
        # Draw every fault in a fixed order so that one rate does not shift the others' outcomes.
        jitter = rng.random() * f.latency_jitter_ms
        hang, ban, limit, fail, bad, lost = (rng.random() for _ in range(6))
        faulty = endpoint in f.endpoints
        _DRAWS.set((rng, faulty and bad < f.rate_malformed))
        resp: web.StreamResponse
        if faulty and (f.latency_ms or jitter):
            await asyncio.sleep((f.latency_ms + jitter) / 1000.0)
        if faulty and hang < f.rate_timeout:
            self.stats.faults["timeout"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), f.hang_s)
            resp = await handler(request)
        elif faulty and ban < f.rate_418:
            self.stats.faults["http_418"] += 1
            resp = _error(418, *_ERR_418, headers={"Retry-After": num(f.retry_after_s)})
        elif faulty and limit < f.rate_429:
            self.stats.faults["http_429"] += 1
            resp = _error(429, *_ERR_429, headers={"Retry-After": num(f.retry_after_s)})
        elif faulty and fail < f.rate_5xx:
            status = rng.choice((500, 502, 503, 504))
            self.stats.faults[f"http_{status}"] += 1
            resp = web.Response(
                status=status, text=_HTML_5XX.format(_STATUS_TEXT[status]), content_type="text/html"
            )
        else:
            try:
                resp = await handler(request)
            except _BadParam as e:
                resp = _error(400, -1100, f"Illegal characters found in parameter '{e.name}'.")
            if faulty and lost < f.rate_lost_answer:
                self.stats.faults["lost_answer"] += 1
                # Shielded: the work is done; only its answer is held back (until the client gives up).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), f.hang_s)
        self.stats.statuses[resp.status] += 1
        return resp

    def _malform(self, rows: list[list[Any]], rng: random.Random) -> None:
        kind = rng.choice(self.faults.malformed_kinds)
        if len(rows) < 2 and kind in ("out_of_order", "duplicate"):
            kind = "nan"
        if not rows:
            return
        self.stats.faults[f"malformed_{kind}"] += 1
        i = rng.randrange(len(rows))
        if kind == "nan":
            rows[i][rng.choice((1, 2, 3, 4))] = "NaN"
        elif kind == "high_low":
            row = rows[i]
            # Swap high and low; a candle with no range gets a low above its high instead.
            if row[2] != row[3]:
                row[2], row[3] = row[3], row[2]
            else:
                row[3] = num(float(row[2]) * 1.01)
        elif kind == "out_of_order":
            rows.reverse()
        else:
            rows.insert(i, list(rows[i]))

    # ----- Binance endpoints

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock.now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        now = self.clock.now_ms()
        wanted = self._wanted(request)
        symbols = []
        for m in self.markets.values():
            if not self._listed(m, now) or (wanted is not None and m.id not in wanted):
                continue
            if m.id in self._vanish:
                if self._info_served[m.id] >= self.faults.vanish_after:
                    if m.id not in self._gone:
                        log.info("exchange-sim: %s disappears from the markets", m.symbol)
                        self._gone.add(m.id)
                    continue
                self._info_served[m.id] += 1
            symbols.append(m.exchange_info(now))
        if wanted is not None and not symbols:
            return _error(400, *_ERR_SYMBOL)
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": now,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    def _wanted(self, request: web.Request) -> set[str] | None:
        one = request.query.get("symbol")
        if one:
            return {one.upper()}
        many = request.query.get("symbols")
        if many:
            try:
                ids = json.loads(many)
            except json.JSONDecodeError:
                raise _BadParam("symbols") from None
            if not isinstance(ids, list):
                raise _BadParam("symbols")
            return {str(x).upper() for x in ids}
        return None

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        if not q.get("symbol"):
            return _error(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        m = self._market(q.get("symbol"))
        if m is None:
            return _error(400, *_ERR_SYMBOL)
        if q.get("interval") != m.interval:
            return _error(400, *_ERR_INTERVAL)
        limit = _int_param(q, "limit")
        if limit is None:
            limit = KLINES_DEFAULT_LIMIT
        if not 1 <= limit <= KLINES_MAX_LIMIT:
            return _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        rows = m.klines(self.clock.now_ms(), _int_param(q, "startTime"), _int_param(q, "endTime"), limit)
        rng, malformed = _DRAWS.get((random.Random(0), False))
        if malformed:
            self._malform(rows, rng)
        return web.json_response(rows)

    async def _ticker(self, request: web.Request) -> web.Response:
        now = self.clock.now_ms()
        wanted = self._wanted(request)
        out = []
        for m in self.markets.values():
            if (wanted is None or m.id in wanted) and self._listed(m, now):
                t = m.ticker(now)
                if t is not None:
                    out.append(t)
        if wanted is not None and len(out) != len(wanted):
            return _error(400, *_ERR_SYMBOL)
        if request.query.get("symbol"):
            return web.json_response(out[0])
        return web.json_response(out)

    # ----- signed endpoints (a paper account inside the simulator)

    async def _signed(self, request: web.Request) -> tuple[dict[str, str], web.Response | None]:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if not request.headers.get("X-MBX-APIKEY"):
            return params, _error(401, -2014, "API-key format invalid.")
        if not params.get("signature") or not params.get("timestamp"):
            return params, _error(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        return params, None

    async def _account(self, request: web.Request) -> web.Response:
        _, err = await self._signed(request)
        if err is not None:
            return err
        balances = [
            {"asset": a, "free": _fixed(v, 8), "locked": "0.00000000"}
            for a, v in sorted(self.balances.items())
        ]
        return web.json_response(
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "updateTime": self.clock.now_ms(),
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
            }
        )

    async def _order(self, request: web.Request) -> web.Response:
        p, err = await self._signed(request)
        if err is not None:
            return err
        m = self._market(p.get("symbol"))
        if m is None:
            return _error(400, *_ERR_SYMBOL)
        if p.get("type") != "MARKET" or p.get("side") not in ("BUY", "SELL"):
            return _error(400, -1116, "Invalid orderType.")
        now = self.clock.now_ms()
        last = m.last_price(now)
        if last is None:
            return _error(400, *_ERR_SYMBOL)
        step = 10.0**-m.qty_decimals
        buy = p["side"] == "BUY"
        price = last * (1.0 + HALF_SPREAD) if buy else last * (1.0 - HALF_SPREAD)
        try:
            if p.get("quoteOrderQty"):
                qty = float(p["quoteOrderQty"]) / price
            else:
                qty = float(p.get("quantity", "nan"))
        except ValueError:
            return _error(400, -1100, "Illegal characters found in a parameter.")
        qty = float(np.floor(qty / step + 1e-9) * step)
        if not qty > 0 or qty * price < MIN_NOTIONAL:
            return _error(400, -1013, "Filter failure: NOTIONAL")
        quote = qty * price
        have_quote, have_base = self.balances.get(m.quote, 0.0), self.balances.get(m.base, 0.0)
        if (buy and have_quote < quote) or (not buy and have_base < qty):
            return _error(400, -2010, "Account has insufficient balance for requested action.")
        # Binance takes its commission from what the order receives.
        if buy:
            commission, asset = qty * self.fee_rate, m.base
            self.balances[m.quote] = have_quote - quote
            self.balances[m.base] = have_base + qty - commission
        else:
            commission, asset = quote * self.fee_rate, m.quote
            self.balances[m.base] = have_base - qty
            self.balances[m.quote] = have_quote + quote - commission
        self._order_id += 1
        d = m.price_decimals
        client_id = p.get("newClientOrderId") or f"sim{self._order_id}"
        body: dict[str, Any] = {
            "symbol": m.id,
            "orderId": self._order_id,
            "orderListId": -1,
            "clientOrderId": client_id,
            "transactTime": now,
            "price": "0.00000000",
            "origQty": _fixed(qty, 8),
            "executedQty": _fixed(qty, 8),
            "origQuoteOrderQty": _fixed(float(p.get("quoteOrderQty") or 0.0), 8),
            "cummulativeQuoteQty": _fixed(quote, 8),
            "status": "FILLED",
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": p["side"],
            "workingTime": now,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": [
                {
                    "price": _fixed(price, max(d, 8)),
                    "qty": _fixed(qty, 8),
                    "commission": _fixed(commission, 8),
                    "commissionAsset": asset,
                    "tradeId": self._order_id,
                }
            ],
        }
        self._orders[(m.id, client_id)] = body
        return web.json_response(body)

    async def _query_order(self, request: web.Request) -> web.Response:
        """``GET /api/v3/order``: an executed order by ``origClientOrderId`` (or ``orderId``), as placed."""
        p, err = await self._signed(request)
        if err is not None:
            return err
        m = self._market(p.get("symbol"))
        if m is None:
            return _error(400, *_ERR_SYMBOL)
        found = self._orders.get((m.id, p.get("origClientOrderId") or ""))
        if found is None and p.get("orderId"):
            found = next((o for o in self._orders.values() if str(o["orderId"]) == p["orderId"]), None)
        if found is None:
            return _error(400, -2013, "Order does not exist.")
        out = {k: v for k, v in found.items() if k != "fills"}
        return web.json_response({**out, "time": found["transactTime"], "updateTime": found["transactTime"]})

    # ----- control

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats.to_json(), "now_ms": self.clock.now_ms()})

    async def _sim_clock(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
                if "now_ms" in body:
                    self.clock.set(int(body["now_ms"]))
                if "advance_ms" in body:
                    self.clock.advance(int(body["advance_ms"]))
                if "speed" in body:
                    self.clock.set_speed(float(body["speed"]))
            except (ValueError, TypeError, json.JSONDecodeError) as e:
                return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"now_ms": self.clock.now_ms(), "speed": self.clock.speed})
