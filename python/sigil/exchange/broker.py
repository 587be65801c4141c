"""Brokers: where the daemon's open and close intents become fills.

:class:`PaperBroker` fills market orders at the reference (last) price ± the variant's slippage with
its taker fee, using the same fill arithmetic as the Rust replay (``sigil._core.buy_fill`` /
``sell_fill``), and keeps a balance per variant. :class:`LiveBroker` sends real market orders through
the exchange client; it exists only when live mode was switched on explicitly (``--live``) with keys
from the environment, and keeps the same per-variant ledger as a budget on top of the real account.

Both refuse, before anything is sent, what the variant cannot pay for or does not hold, raising
:class:`~sigil.errors.OrderRefused` with a ``reason``; :meth:`PaperBroker.can_open` tells in advance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from sigil import _core
from sigil.config import Variant
from sigil.errors import ExchangeRejected, ExchangeUnavailable, OrderOutcomeUnknown, OrderRefused
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.ccxt_deferred import async_ccxt

# ccxt with only the exchange that is used loaded (sigil.exchange.ccxt_deferred).
ccxt = async_ccxt()

#: Refusal reasons.
REFUSED_VARIANT = "variant"
REFUSED_PRICE = "price"
REFUSED_BALANCE = "balance"
REFUSED_POSITION = "position"
REFUSED_EXCHANGE_BALANCE = "exchange_balance"
#: Relative slack when a close asks for the quantity held (float sums of partial fills differ in the
#: last bits).
QTY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Fill:
    """One executed order, in the quote currency."""

    variant: str
    symbol: str
    side: Literal["buy", "sell"]
    #: The price the order was placed against (the last price).
    reference_price: float
    #: Execution price (slippage included).
    price: float
    #: Base quantity bought or sold (net of a fee taken in the base asset).
    qty: float
    #: Fee in quote currency.
    fee: float
    #: Buy: stake spent before the fee. Sell: qty × price.
    gross: float
    #: Quote moved: buy cost (gross + fee) debited, or sell proceeds (gross − fee) credited.
    amount: float
    #: The variant's balance after the fill.
    balance: float
    time_ms: int | None = None
    order_id: str | None = None


class _Ledger:
    """Balances and holdings per variant, and the checks both brokers make before an order."""

    def __init__(
        self,
        variants: Iterable[Variant],
        balances: Mapping[str, float] | None = None,
        holdings: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self.variants: dict[str, Variant] = {v.name: v for v in variants}
        if not self.variants:
            raise ValueError("a broker needs at least one variant")
        self._balance = {name: float(v.starting_balance) for name, v in self.variants.items()}
        for name, value in (balances or {}).items():
            self._variant(name)
            self._balance[name] = float(value)
        self._holdings: dict[tuple[str, str], float] = {}
        for (name, symbol), qty in (holdings or {}).items():
            self._variant(name)
            if qty > 0:
                self._holdings[(name, symbol)] = float(qty)

    def _variant(self, name: str) -> Variant:
        v = self.variants.get(name)
        if v is None:
            raise OrderRefused(REFUSED_VARIANT, f"unknown variant {name!r}")
        return v

    def balance(self, variant: str) -> float:
        """The variant's quote balance."""
        self._variant(variant)
        return self._balance[variant]

    def balances(self) -> dict[str, float]:
        """Every variant's quote balance."""
        return dict(self._balance)

    def holding(self, variant: str, symbol: str) -> float:
        """Base quantity of ``symbol`` the variant holds (0.0 when none)."""
        return self._holdings.get((variant, symbol), 0.0)

    def can_open(self, variant: str, stake: float | None = None) -> str | None:
        """None when ``variant`` can pay for an open of ``stake`` (default: its configured stake) plus
        the taker fee; else the refusal reason. The test is the engine's (``_core.open_cost``)."""
        v = self.variants.get(variant)
        if v is None:
            return REFUSED_VARIANT
        s = v.stake if stake is None else stake
        if not (math.isfinite(s) and s > 0):
            return REFUSED_PRICE
        if self._balance[variant] < _core.open_cost(s, v.fee_rate):
            return REFUSED_BALANCE
        return None

    def _check_open(self, variant: str, price: float, stake: float | None) -> tuple[Variant, float]:
        v = self._variant(variant)
        s = v.stake if stake is None else float(stake)
        if not (math.isfinite(price) and price > 0):
            raise OrderRefused(REFUSED_PRICE, f"{variant}: no valid price to buy at ({price!r})")
        reason = self.can_open(variant, s)
        if reason == REFUSED_PRICE:
            raise OrderRefused(REFUSED_PRICE, f"{variant}: stake must be a positive number, got {s!r}")
        if reason == REFUSED_BALANCE:
            need = _core.open_cost(s, v.fee_rate)
            have = self._balance[variant]
            raise OrderRefused(
                REFUSED_BALANCE,
                f"{variant}: balance {have:.2f} cannot pay {need:.2f} (stake {s:g} + taker fee)",
            )
        return v, s

    def estimate_open(self, variant: str, symbol: str, price: float, *, stake: float | None = None) -> Fill:
        """The fill a market buy of ``stake`` at reference ``price`` gets at the variant's slippage and
        taker fee (the engine's fill maths), without booking it; raises :class:`OrderRefused` as
        :meth:`open` would. The paper broker's fills are exactly this; a live open reserves its
        position with it and then records the exchange's real fill."""
        v, s = self._check_open(variant, price, stake)
        fill_price, qty, fee, cost = _core.buy_fill(price, s, v.fee_rate, v.slippage)
        return Fill(
            variant, symbol, "buy", price, fill_price, qty, fee, s, cost, self._balance[variant] - cost
        )

    def _check_close(self, variant: str, symbol: str, qty: float, price: float) -> Variant:
        v = self._variant(variant)
        if not (math.isfinite(price) and price > 0):
            raise OrderRefused(REFUSED_PRICE, f"{variant}: no valid price to sell {symbol} at ({price!r})")
        held = self.holding(variant, symbol)
        if not (math.isfinite(qty) and qty > 0) or qty > held * (1.0 + QTY_TOLERANCE):
            raise OrderRefused(REFUSED_POSITION, f"{variant}: cannot sell {qty!r} {symbol}, holds {held!r}")
        return v

    def _book_buy(self, variant: str, symbol: str, qty: float, amount: float) -> float:
        self._balance[variant] -= amount
        key = (variant, symbol)
        self._holdings[key] = self._holdings.get(key, 0.0) + qty
        return self._balance[variant]

    def _book_sell(self, variant: str, symbol: str, qty: float, amount: float) -> float:
        self._balance[variant] += amount
        key = (variant, symbol)
        left = self._holdings.get(key, 0.0) - qty
        if left <= self._holdings.get(key, 0.0) * QTY_TOLERANCE:
            self._holdings.pop(key, None)
        else:
            self._holdings[key] = left
        return self._balance[variant]


class PaperBroker(_Ledger):
    """Simulated market fills: last price ± slippage, taker fee, a balance per variant.

    ``balances`` and ``holdings`` restore state after a restart (default: each variant's
    ``starting_balance`` and nothing held).
    """

    live = False

    def __repr__(self) -> str:
        return f"PaperBroker(variants={list(self.variants)})"

    async def open(
        self,
        variant: str,
        symbol: str,
        price: float,
        *,
        stake: float | None = None,
        time_ms: int | None = None,
        client_order_id: str | None = None,
    ) -> Fill:
        """Buys ``stake`` (default: the variant's) of ``symbol`` at reference ``price``
        (``client_order_id`` names the order at an exchange; paper fills have none)."""
        f = self.estimate_open(variant, symbol, price, stake=stake)
        balance = self._book_buy(variant, symbol, f.qty, f.amount)
        return replace(f, balance=balance, time_ms=time_ms)

    async def close(
        self,
        variant: str,
        symbol: str,
        qty: float,
        price: float,
        *,
        time_ms: int | None = None,
        client_order_id: str | None = None,
        maybe_sent: bool = False,
    ) -> Fill:
        """Sells ``qty`` of ``symbol`` at reference ``price`` (the order arguments are a live broker's)."""
        v = self._check_close(variant, symbol, qty, price)
        fill_price, gross, fee, proceeds = _core.sell_fill(price, qty, v.fee_rate, v.slippage)
        balance = self._book_sell(variant, symbol, qty, proceeds)
        return Fill(variant, symbol, "sell", price, fill_price, qty, fee, gross, proceeds, balance, time_ms)

    def health(self) -> dict[str, Any]:
        """Mode and balances, for ``/health``."""
        return {"mode": "paper", "balances": self.balances()}


class LiveBroker(_Ledger):
    """Real market orders through ``client`` (which must be in live mode, i.e. hold keys).

    The per-variant balances stay a budget: an open is refused when the variant's budget or the
    account's free quote balance cannot pay. Orders are never retried: after a timeout the order may or
    may not have been executed. With a ``client_order_id`` the broker then looks the order up by that
    id: executed → its fill; unknown to the exchange → the original :class:`ExchangeUnavailable`
    stands (nothing was bought or sold); the lookup failing too → :class:`OrderOutcomeUnknown`.
    """

    live = True

    def __init__(
        self,
        client: ExchangeClient,
        variants: Iterable[Variant],
        balances: Mapping[str, float] | None = None,
        holdings: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        if not client.live:
            raise ValueError(
                "LiveBroker needs an exchange client created in live mode (--live, keys in the env)"
            )
        super().__init__(variants, balances, holdings)
        self.client = client

    def __repr__(self) -> str:
        return f"LiveBroker(exchange={self.client.id!r}, variants={list(self.variants)})"

    async def free_balance(self, asset: str) -> float:
        """The account's free balance of ``asset`` on the exchange."""
        bal = await self.client.call("fetch_balance", "fetch_balance")
        free = (bal.get("free") or {}).get(asset) if isinstance(bal, dict) else None
        return float(free) if isinstance(free, int | float) and math.isfinite(free) else 0.0

    def _assets(self, symbol: str) -> tuple[str, str]:
        market = (self.client.exchange.markets or {}).get(symbol)
        if market is None:
            raise ExchangeRejected(f"{self.client.id}: unknown market {symbol}")
        return str(market["base"]), str(market["quote"])

    async def open(
        self,
        variant: str,
        symbol: str,
        price: float,
        *,
        stake: float | None = None,
        time_ms: int | None = None,
        client_order_id: str | None = None,
    ) -> Fill:
        """Market-buys ``stake`` quote of ``symbol``; ``price`` is the last price seen (for the checks),
        ``client_order_id`` the order's name at the exchange (how it is found again after a timeout)."""
        v, s = self._check_open(variant, price, stake)
        await self.client.load_markets()
        _, quote = self._assets(symbol)
        free = await self.free_balance(quote)
        if free < _core.open_cost(s, v.fee_rate):
            raise OrderRefused(
                REFUSED_EXCHANGE_BALANCE,
                f"{variant}: account holds {free:.2f} {quote}, an open needs {s:g} + fee",
            )
        order = await self._place(
            f"market buy {symbol}", "create_market_buy_order_with_cost", symbol, s, client_order_id
        )
        return self._book_buy_order(v, symbol, price, order, time_ms)

    async def recover_open(
        self, variant: str, symbol: str, client_order_id: str, *, time_ms: int | None = None
    ) -> Fill | None:
        """The fill of a buy sent earlier as ``client_order_id`` (booked like :meth:`open`'s), or None
        when the exchange never executed it. Raises :class:`ExchangeUnavailable` or
        :class:`ExchangeRejected` when the exchange cannot tell."""
        v = self._variant(variant)
        await self.client.load_markets()
        order = await self._look_up(symbol, client_order_id)
        if order is None:
            return None
        return self._book_buy_order(v, symbol, None, order, time_ms)

    def _book_buy_order(
        self, v: Variant, symbol: str, price: float | None, order: Any, time_ms: int | None
    ) -> Fill:
        base, quote = self._assets(symbol)
        filled, avg, cost, fee_quote, fee_base = _order_numbers(order, symbol, base, quote, v.fee_rate)
        qty = filled - fee_base
        amount = cost + fee_quote
        fee = fee_quote + fee_base * avg
        balance = self._book_buy(v.name, symbol, qty, amount)
        ref = avg if price is None else price
        return Fill(v.name, symbol, "buy", ref, avg, qty, fee, cost, amount, balance, time_ms, _id(order))

    async def close(
        self,
        variant: str,
        symbol: str,
        qty: float,
        price: float,
        *,
        time_ms: int | None = None,
        client_order_id: str | None = None,
        maybe_sent: bool = False,
    ) -> Fill:
        """Market-sells ``qty`` of ``symbol`` (rounded down to the exchange's lot size).

        ``maybe_sent``: an earlier attempt under the same ``client_order_id`` may have executed (its
        outcome was never learnt). The order is looked up first and, if the exchange has it, that fill
        is the answer: selling again would sell coins this variant no longer holds. When the lookup
        cannot answer, nothing is sent (:class:`OrderOutcomeUnknown`)."""
        v = self._check_close(variant, symbol, qty, price)
        await self.client.load_markets()
        base, quote = self._assets(symbol)
        order = None
        if maybe_sent and client_order_id is not None:
            order = await self._find(f"market sell {symbol} (an earlier attempt)", symbol, client_order_id)
        if order is None:
            amount = float(self.client.exchange.amount_to_precision(symbol, qty))
            order = await self._place(
                f"market sell {symbol}", "create_market_sell_order", symbol, amount, client_order_id
            )
        filled, avg, gross, fee_quote, fee_base = _order_numbers(order, symbol, base, quote, v.fee_rate)
        fee = fee_quote + fee_base * avg
        proceeds = gross - fee
        # The ledger forgets the whole position: the dust below one lot cannot be sold anyway.
        balance = self._book_sell(variant, symbol, max(qty, filled), proceeds)
        return Fill(
            variant, symbol, "sell", price, avg, filled, fee, gross, proceeds, balance, time_ms, _id(order)
        )

    async def _place(
        self, what: str, method: str, symbol: str, amount: float, client_order_id: str | None
    ) -> Any:
        """Sends one market order (never retried); after a lost answer, looks it up by its client id."""
        params = {} if client_order_id is None else {"newClientOrderId": client_order_id}
        try:
            return await self.client.call(what, method, symbol, amount, params, retry=False)
        except ExchangeUnavailable as lost:
            if client_order_id is None:
                raise OrderOutcomeUnknown(
                    f"{what}: {lost}; the order had no client id to look it up by, check the exchange", ""
                ) from lost
            order = await self._find(f"{what}: {lost};", symbol, client_order_id)
            if order is None:
                raise lost from None  # never executed: the send's own failure is the answer
            return order

    async def _find(self, what: str, symbol: str, client_order_id: str) -> Any | None:
        """:meth:`_look_up`, with an exchange that cannot answer turned into :class:`OrderOutcomeUnknown`."""
        try:
            return await self._look_up(symbol, client_order_id)
        except (ExchangeRejected, ExchangeUnavailable) as e:
            raise OrderOutcomeUnknown(
                f"{what} outcome still unknown, looking it up failed: {e}", client_order_id
            ) from e

    async def _look_up(self, symbol: str, client_order_id: str) -> Any | None:
        """The order named ``client_order_id``, or None when the exchange does not know it."""
        try:
            # A read: safe to retry under the client's usual rules.
            return await self.client.call(
                f"look up order {client_order_id}",
                "fetch_order",
                "",
                symbol,
                {"origClientOrderId": client_order_id},
            )
        except ExchangeRejected as e:
            if isinstance(e.__cause__, ccxt.OrderNotFound):
                return None
            raise

    def health(self) -> dict[str, Any]:
        """Mode and balances, for ``/health`` (the keys are never part of it)."""
        return {
            "mode": "live",
            "exchange": self.client.id,
            "keys": "from environment",
            "balances": self.balances(),
        }


def _id(order: Any) -> str | None:
    oid = order.get("id") if isinstance(order, dict) else None
    return None if oid is None else str(oid)


def _order_numbers(
    order: Any, symbol: str, base: str, quote: str, fee_rate: float
) -> tuple[float, float, float, float, float]:
    """(filled, average price, quote cost, fee in quote, fee in base) of a ccxt order.

    A fee paid in a third asset (BNB on Binance) changes neither the quantity nor the quote amounts
    and is not counted here. An order without fee information (an order looked up rather than placed:
    Binance's order query carries no fills) is charged ``fee_rate`` on what it received, as the
    exchange charges it: a buy in the base asset, a sell in the quote asset."""
    if not isinstance(order, dict):
        raise ExchangeRejected(f"{symbol}: the exchange returned no order")
    filled = order.get("filled")
    cost = order.get("cost")
    if not isinstance(filled, int | float) or not filled > 0 or not isinstance(cost, int | float):
        raise ExchangeRejected(
            f"{symbol}: order {order.get('id')} not filled (status {order.get('status')!r})"
        )
    avg = order.get("average")
    avg = float(avg) if isinstance(avg, int | float) and avg > 0 else float(cost) / float(filled)
    fee_quote = fee_base = 0.0
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    if not any(isinstance(f, dict) and isinstance(f.get("cost"), int | float) for f in fees):
        if order.get("side") == "buy":
            return float(filled), avg, float(cost), 0.0, float(filled) * fee_rate
        return float(filled), avg, float(cost), float(cost) * fee_rate, 0.0
    for f in fees:
        c = f.get("cost") if isinstance(f, dict) else None
        if not isinstance(c, int | float):
            continue
        if f.get("currency") == quote:
            fee_quote += float(c)
        elif f.get("currency") == base:
            fee_base += float(c)
    return float(filled), avg, float(cost), fee_quote, fee_base


def make_broker(
    client: ExchangeClient,
    variants: Iterable[Variant],
    balances: Mapping[str, float] | None = None,
    holdings: Mapping[tuple[str, str], float] | None = None,
) -> PaperBroker | LiveBroker:
    """A LiveBroker when ``client`` is in live mode, else a PaperBroker."""
    if client.live:
        return LiveBroker(client, variants, balances, holdings)
    return PaperBroker(variants, balances, holdings)
