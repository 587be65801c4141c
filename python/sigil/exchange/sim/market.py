"""One simulated market: a symbol's candle file, seen at a moment of the simulator's clock.

Only candles closed by that moment are complete; the current one is partial, built from the file's
candle as if price had walked open → low → high → close (open → high → low → close for a falling
candle). Klines, the 24h ticker and the exchangeInfo entry are derived from it, in Binance's shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sigil.data.candles import CandleSeries

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


def fixed(x: float, decimals: int) -> str:
    """``x`` with exactly ``decimals`` decimals, as Binance writes amounts."""
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
                    fixed(qv, 8),
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
            "priceChange": fixed(change, d),
            "priceChangePercent": fixed(100.0 * change / o if o else 0.0, 3),
            "weightedAvgPrice": fixed(qvol / vol if vol else c, d),
            "prevClosePrice": num(prev),
            "lastPrice": num(c),
            "lastQty": fixed(0.0, self.qty_decimals),
            "bidPrice": fixed(bid, d),
            "bidQty": "1.00000000",
            "askPrice": fixed(ask, d),
            "askQty": "1.00000000",
            "openPrice": num(o),
            "highPrice": num(h),
            "lowPrice": num(low),
            "volume": fixed(vol, 8),
            "quoteVolume": fixed(qvol, 8),
            "openTime": max(now_ms - DAY_MS, int(t[lo])),
            "closeTime": now_ms,
            "firstId": -1,
            "lastId": -1,
            "count": hi - lo,
        }

    def exchange_info(self, now_ms: int) -> dict[str, Any]:
        """This market's entry in exchangeInfo's ``symbols``."""
        tick = fixed(10.0**-self.price_decimals, MAX_DECIMALS)
        step = fixed(10.0**-self.qty_decimals, MAX_DECIMALS)
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
                    "minNotional": fixed(MIN_NOTIONAL, 8),
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
