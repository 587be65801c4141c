"""The simulated exchange's HTTP side: Binance's routes over the markets, a paper account for the signed
endpoints, and the ``/sim/`` control routes, served on 127.0.0.1 through the fault middleware."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from aiohttp import web

from sigil.data.candles import CandleSeries
from sigil.exchange.sim.clock import SimClock
from sigil.exchange.sim.faults import FaultInjector, Faults, SimStats
from sigil.exchange.sim.market import (
    HALF_SPREAD,
    KLINES_DEFAULT_LIMIT,
    KLINES_MAX_LIMIT,
    MIN_NOTIONAL,
    SimMarket,
    fixed,
)
from sigil.exchange.sim.responses import BadParam, error, int_param

log = logging.getLogger("sigil.exchange.sim")

HOST = "127.0.0.1"

ERR_SYMBOL = (-1121, "Invalid symbol.")
ERR_INTERVAL = (-1120, "Invalid interval.")


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
        self.stats = SimStats()
        self._closing = asyncio.Event()
        self._injector = FaultInjector(faults or Faults(), self.stats, self._closing)
        self.balances: dict[str, float] = dict(balances if balances is not None else {"USDT": 10_000.0})
        self.fee_rate = fee_rate
        self._vanish = {v.replace("/", "").upper() for v in self.faults.vanish}
        unknown = self._vanish - set(self.markets)
        if unknown:
            raise ValueError(f"vanish: unknown symbol(s) {', '.join(sorted(unknown))}")
        self._info_served: Counter[str] = Counter()
        self._gone: set[str] = set()
        self._order_id = 0
        #: Executed orders by (symbol id, client order id), for the order query endpoint.
        self._orders: dict[tuple[str, str], dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    @property
    def faults(self) -> Faults:
        """The faults in force; assigning new ones changes them from the next request on."""
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._injector.faults = faults

    # ----- serving

    def app(self) -> web.Application:
        """The aiohttp application (Binance routes, ``/sim/`` control routes, the fault middleware)."""
        app = web.Application(middlewares=[self._injector.middleware])
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/api/v3/ticker/24hr", self._ticker)
        r.add_get("/api/v3/account", self._account)
        r.add_post("/api/v3/order", self._order)
        r.add_get("/api/v3/order", self._query_order)
        r.add_get("/api/v3/allOrders", self._all_orders)
        r.add_get("/api/v3/openOrders", self._open_orders)
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

    def set_balance(self, asset: str, amount: float) -> None:
        """Sets the account's balance of ``asset`` (a deposit or withdrawal behind the client's back)."""
        if not 0.0 <= amount < float("inf"):
            raise ValueError(f"a balance is a finite number >= 0, got {amount}")
        self.balances[asset.upper()] = float(amount)

    def _listed(self, market: SimMarket, now_ms: int) -> bool:
        return market.id not in self._gone and market.first_ms <= now_ms

    def _market(self, market_id: str | None) -> SimMarket | None:
        if market_id is None:
            return None
        m = self.markets.get(market_id.upper())
        if m is None or not self._listed(m, self.clock.now_ms()):
            return None
        return m

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
            return error(400, *ERR_SYMBOL)
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
                raise BadParam("symbols") from None
            if not isinstance(ids, list):
                raise BadParam("symbols")
            return {str(x).upper() for x in ids}
        return None

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        if not q.get("symbol"):
            return error(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        m = self._market(q.get("symbol"))
        if m is None:
            return error(400, *ERR_SYMBOL)
        if q.get("interval") != m.interval:
            return error(400, *ERR_INTERVAL)
        limit = int_param(q, "limit")
        if limit is None:
            limit = KLINES_DEFAULT_LIMIT
        if not 1 <= limit <= KLINES_MAX_LIMIT:
            return error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        rows = m.klines(self.clock.now_ms(), int_param(q, "startTime"), int_param(q, "endTime"), limit)
        self._injector.malform(rows)
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
            return error(400, *ERR_SYMBOL)
        if request.query.get("symbol"):
            return web.json_response(out[0])
        return web.json_response(out)

    # ----- signed endpoints (a paper account inside the simulator)

    async def _signed(self, request: web.Request) -> tuple[dict[str, str], web.Response | None]:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if not request.headers.get("X-MBX-APIKEY"):
            return params, error(401, -2014, "API-key format invalid.")
        if not params.get("signature") or not params.get("timestamp"):
            return params, error(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        return params, None

    async def _account(self, request: web.Request) -> web.Response:
        _, err = await self._signed(request)
        if err is not None:
            return err
        balances = [
            {"asset": a, "free": fixed(v, 8), "locked": "0.00000000"}
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

    async def _signed_market(self, request: web.Request) -> tuple[dict[str, str], SimMarket] | web.Response:
        """A signed request's parameters and the listed market it names, or the error to answer with."""
        p, err = await self._signed(request)
        if err is not None:
            return err
        m = self._market(p.get("symbol"))
        if m is None:
            return error(400, *ERR_SYMBOL)
        return p, m

    async def _order(self, request: web.Request) -> web.Response:
        signed = await self._signed_market(request)
        if isinstance(signed, web.Response):
            return signed
        p, m = signed
        if p.get("type") != "MARKET" or p.get("side") not in ("BUY", "SELL"):
            return error(400, -1116, "Invalid orderType.")
        now = self.clock.now_ms()
        last = m.last_price(now)
        if last is None:
            return error(400, *ERR_SYMBOL)
        step = 10.0**-m.qty_decimals
        buy = p["side"] == "BUY"
        price = last * (1.0 + HALF_SPREAD) if buy else last * (1.0 - HALF_SPREAD)
        try:
            if p.get("quoteOrderQty"):
                qty = float(p["quoteOrderQty"]) / price
            else:
                qty = float(p.get("quantity", "nan"))
        except ValueError:
            return error(400, -1100, "Illegal characters found in a parameter.")
        qty = float(np.floor(qty / step + 1e-9) * step)
        if not qty > 0 or qty * price < MIN_NOTIONAL:
            return error(400, -1013, "Filter failure: NOTIONAL")
        quote = qty * price
        have_quote, have_base = self.balances.get(m.quote, 0.0), self.balances.get(m.base, 0.0)
        if (buy and have_quote < quote) or (not buy and have_base < qty):
            return error(400, -2010, "Account has insufficient balance for requested action.")
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
            "origQty": fixed(qty, 8),
            "executedQty": fixed(qty, 8),
            "origQuoteOrderQty": fixed(float(p.get("quoteOrderQty") or 0.0), 8),
            "cummulativeQuoteQty": fixed(quote, 8),
            "status": "FILLED",
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": p["side"],
            "workingTime": now,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": [
                {
                    "price": fixed(price, max(d, 8)),
                    "qty": fixed(qty, 8),
                    "commission": fixed(commission, 8),
                    "commissionAsset": asset,
                    "tradeId": self._order_id,
                }
            ],
        }
        self._orders[(m.id, client_id)] = body
        return web.json_response(body)

    async def _query_order(self, request: web.Request) -> web.Response:
        """``GET /api/v3/order``: an executed order by ``origClientOrderId`` (or ``orderId``), as placed."""
        signed = await self._signed_market(request)
        if isinstance(signed, web.Response):
            return signed
        p, m = signed
        found = self._orders.get((m.id, p.get("origClientOrderId") or ""))
        if found is None and p.get("orderId"):
            found = next((o for o in self._orders.values() if str(o["orderId"]) == p["orderId"]), None)
        if found is None:
            return error(400, -2013, "Order does not exist.")
        return web.json_response(_as_queried(found))

    async def _all_orders(self, request: web.Request) -> web.Response:
        """``GET /api/v3/allOrders``: every order of one symbol, oldest first, as the order query shows it."""
        signed = await self._signed_market(request)
        if isinstance(signed, web.Response):
            return signed
        _, m = signed
        found = sorted((o for (sym, _), o in self._orders.items() if sym == m.id), key=lambda o: o["orderId"])
        return web.json_response([_as_queried(o) for o in found])

    async def _open_orders(self, request: web.Request) -> web.Response:
        """``GET /api/v3/openOrders``: none ever (every order is a market order, filled at once)."""
        _, err = await self._signed(request)
        return err if err is not None else web.json_response([])

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


def _as_queried(order: dict[str, Any]) -> dict[str, Any]:
    """An executed order as Binance's order queries show it: no fills, with its times."""
    out = {k: v for k, v in order.items() if k != "fills"}
    return {**out, "time": order["transactTime"], "updateTime": order["transactTime"]}
