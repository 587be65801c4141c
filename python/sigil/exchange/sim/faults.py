"""Fault injection: what goes wrong with the simulator's answers, how often, and the middleware that
makes it go wrong while counting every request.

Each fault has its own rate and all are drawn from ``seed``: added latency, 429 with Retry-After, 418,
5xx with a non-JSON body (as a load balancer sends), requests that hang longer than any client timeout,
answers lost after the work is done, malformed candles (NaN, high < low, rows out of order, a
duplicated row), and symbols that disappear from the markets. A decision depends only on the seed, the
request (method, path, query without timestamp/signature) and how many times that request was seen
before, so a run is reproducible even when requests arrive concurrently in a different order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sigil.exchange.sim.market import num
from sigil.exchange.sim.responses import BadParam, error

log = logging.getLogger("sigil.exchange.sim")

#: Endpoint names (used by ``Faults.endpoints`` and the stats) by path.
ENDPOINTS = {
    "/api/v3/exchangeInfo": "exchangeInfo",
    "/api/v3/klines": "klines",
    "/api/v3/ticker/24hr": "ticker",
    "/api/v3/time": "time",
    "/api/v3/ping": "ping",
    "/api/v3/account": "account",
    "/api/v3/order": "order",
    "/api/v3/allOrders": "allOrders",
    "/api/v3/openOrders": "openOrders",
}
#: ``GET /api/v3/order`` (looking an order up) is an endpoint of its own for faults and stats.
ORDER_QUERY = "queryOrder"
#: Every endpoint name faults can be given to.
FAULT_ENDPOINTS = (*ENDPOINTS.values(), ORDER_QUERY)
MARKET_ENDPOINTS = frozenset({"exchangeInfo", "klines", "ticker", "time"})
MALFORMED_KINDS = ("nan", "high_low", "out_of_order", "duplicate")
#: Query parameters that change on every signed request; left out of the fault key.
_VOLATILE_PARAMS = frozenset({"timestamp", "signature", "recvWindow"})

_ERR_429 = (
    -1003,
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
)
_ERR_418 = (
    -1003,
    "Way too much request weight used; IP banned. Please use WebSocket Streams for live updates.",
)
_HTML_5XX = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
_STATUS_TEXT = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Unavailable"}
_STATUS_TEXT[504] = "504 Gateway Time-out"
#: The fault draws of the request being handled (set by the middleware, read by ``malform``).
_DRAWS: contextvars.ContextVar[tuple[random.Random, bool]] = contextvars.ContextVar("sigil_sim_draws")


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


class FaultInjector:
    """Draws each request's faults from the seed and applies them, counting what it saw in ``stats``.

    ``closing`` releases the requests left hanging (a timeout or a lost answer) when the simulator stops.
    """

    def __init__(self, faults: Faults, stats: SimStats, closing: asyncio.Event) -> None:
        self.faults = faults
        self.stats = stats
        self.closing = closing
        self._seen: Counter[str] = Counter()

    def _rng(self, request: web.Request) -> random.Random:
        """The fault draws for this request: seed × request × how often it was seen (order-free)."""
        items = sorted((k, v) for k, v in request.query.items() if k not in _VOLATILE_PARAMS)
        key = f"{request.method} {request.path}?{items}"
        n = self._seen[key]
        self._seen[key] = n + 1
        return random.Random(f"{self.faults.seed}|{key}|{n}")

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Counts the request, draws its faults, and answers with a fault or with ``handler``'s answer."""
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
                await asyncio.wait_for(self.closing.wait(), f.hang_s)
            resp = await handler(request)
        elif faulty and ban < f.rate_418:
            self.stats.faults["http_418"] += 1
            resp = error(418, *_ERR_418, headers={"Retry-After": num(f.retry_after_s)})
        elif faulty and limit < f.rate_429:
            self.stats.faults["http_429"] += 1
            resp = error(429, *_ERR_429, headers={"Retry-After": num(f.retry_after_s)})
        elif faulty and fail < f.rate_5xx:
            status = rng.choice((500, 502, 503, 504))
            self.stats.faults[f"http_{status}"] += 1
            resp = web.Response(
                status=status, text=_HTML_5XX.format(_STATUS_TEXT[status]), content_type="text/html"
            )
        else:
            try:
                resp = await handler(request)
            except BadParam as e:
                resp = error(400, -1100, f"Illegal characters found in parameter '{e.name}'.")
            if faulty and lost < f.rate_lost_answer:
                self.stats.faults["lost_answer"] += 1
                # Shielded: the work is done; only its answer is held back (until the client gives up).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), f.hang_s)
        self.stats.statuses[resp.status] += 1
        return resp

    def malform(self, rows: list[list[Any]]) -> None:
        """Spoils one of a klines answer's ``rows`` in place, when this request drew a malformed answer."""
        rng, malformed = _DRAWS.get((random.Random(0), False))
        if not malformed:
            return
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
