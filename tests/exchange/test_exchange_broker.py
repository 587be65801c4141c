"""Brokers: paper fills to the cent over a scripted sequence, refusals, and the live broker against
the simulator's signed endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal as D

import pytest

from sigil.config import load_config
from sigil.errors import ExchangeUnavailable, OrderOutcomeUnknown, OrderRefused
from sigil.exchange.broker import LiveBroker, PaperBroker, make_broker
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import Faults
from tests.support.exchange import fast_config

VARIANTS = load_config().variants
FAKE_KEYS = {"SIGIL_API_KEY": "test-key-not-real", "SIGIL_API_SECRET": "test-secret-not-real"}


def cents(x: float | D) -> D:
    return D(str(x)).quantize(D("0.01"))


def hld_buy(price: str, stake: str, fee: str, slip: str) -> tuple[D, D, D, D]:
    """docs/HLD.md "Fills", in decimal arithmetic: an independent check of the float fills."""
    p = D(price) * (1 + D(slip))
    return p, D(stake) / p, D(stake) * D(fee), D(stake) + D(stake) * D(fee)


def hld_sell(price: str, qty: D, fee: str, slip: str) -> tuple[D, D, D, D]:
    p = D(price) * (1 - D(slip))
    gross = qty * p
    return p, gross, gross * D(fee), gross - gross * D(fee)


async def test_scripted_fills_to_the_cent() -> None:
    broker = PaperBroker(VARIANTS)
    v = VARIANTS[0]
    assert (v.stake, v.fee_rate, v.slippage, v.starting_balance) == (100.0, 0.001, 0.0005, 1000.0)
    fee, slip = str(v.fee_rate), str(v.slippage)
    balance = D("1000")

    b1 = await broker.open(v.name, "BTC/USDT", 42000.0, time_ms=1)
    p, q, _f, cost = hld_buy("42000", "100", fee, slip)
    assert b1.price == pytest.approx(float(p), rel=1e-15) and b1.qty == pytest.approx(float(q), rel=1e-15)
    assert (cents(b1.fee), cents(b1.amount), b1.side, b1.gross) == (D("0.10"), D("100.10"), "buy", 100.0)
    balance -= cost
    assert cents(b1.balance) == cents(balance) == D("899.90")

    b2 = await broker.open(v.name, "PEPE/USDT", 0.00001234, stake=50.0)
    _, q2, _, cost2 = hld_buy("0.00001234", "50", fee, slip)
    balance -= cost2
    assert cents(b2.balance) == cents(balance) == D("849.85")
    assert b2.qty == pytest.approx(float(q2), rel=1e-12)

    s1 = await broker.close(v.name, "BTC/USDT", b1.qty, 46200.0, time_ms=2)  # +10 %
    _, gross, f1, proceeds = hld_sell("46200", q, fee, slip)
    assert cents(s1.gross) == cents(gross) == D("109.89")
    assert cents(s1.fee) == cents(f1) == D("0.11")
    balance += proceeds
    assert cents(s1.balance) == cents(balance) == D("959.63")
    assert broker.holding(v.name, "BTC/USDT") == 0.0

    half = b2.qty / 2
    s2 = await broker.close(v.name, "PEPE/USDT", half, 0.000011)
    balance += hld_sell("0.000011", D(half), fee, slip)[3]
    assert cents(s2.amount) == D("22.24") and cents(s2.balance) == cents(balance) == D("981.87")
    s3 = await broker.close(v.name, "PEPE/USDT", b2.qty - half, 0.00001)
    balance += hld_sell("0.00001", D(b2.qty - half), fee, slip)[3]
    assert cents(s3.amount) == D("20.22") and cents(s3.balance) == cents(balance) == D("1002.09")
    assert broker.holding(v.name, "PEPE/USDT") == 0.0
    # the float ledger stays within a millionth of a cent of the decimal one
    assert abs(D(broker.balance(v.name)) - balance) < D("1e-8")
    # other variants untouched
    assert all(broker.balance(o.name) == 1000.0 for o in VARIANTS[1:])


async def test_an_open_the_balance_cannot_pay_is_refused_with_a_reason() -> None:
    name = VARIANTS[0].name
    broker = PaperBroker(VARIANTS, balances={name: 150.0})
    assert broker.can_open(name) is None
    await broker.open(name, "BTC/USDT", 100.0)
    assert broker.can_open(name) == "balance"
    with pytest.raises(OrderRefused, match=r"balance 49\.90 cannot pay 100\.10") as e:
        await broker.open(name, "DOGE/USDT", 0.1)
    assert e.value.reason == "balance"
    assert cents(broker.balance(name)) == D("49.90") and broker.holding(name, "DOGE/USDT") == 0.0
    # exactly enough is enough (the engine's test: balance < stake × (1 + fee))
    exact = PaperBroker(VARIANTS, balances={name: 100.1})
    await exact.open(name, "BTC/USDT", 100.0)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda b: b.open("nobody", "BTC/USDT", 1.0), "variant"),
        (lambda b: b.open(VARIANTS[0].name, "BTC/USDT", float("nan")), "price"),
        (lambda b: b.open(VARIANTS[0].name, "BTC/USDT", 1.0, stake=-5.0), "price"),
        (lambda b: b.close(VARIANTS[0].name, "BTC/USDT", 1.0, 1.0), "position"),
        (lambda b: b.close(VARIANTS[0].name, "ETH/USDT", 2.5, 1.0), "position"),
    ],
)
async def test_other_refusals(call: Callable[[PaperBroker], Awaitable[object]], reason: str) -> None:
    broker = PaperBroker(VARIANTS, holdings={(VARIANTS[0].name, "ETH/USDT"): 2.0})
    with pytest.raises(OrderRefused) as e:
        await call(broker)
    assert e.value.reason == reason
    assert broker.balances() == {v.name: 1000.0 for v in VARIANTS}


async def test_restored_state_and_health() -> None:
    name = VARIANTS[1].name
    broker = PaperBroker(VARIANTS, balances={name: 512.25}, holdings={(name, "SUI/USDT"): 3.0})
    fill = await broker.close(name, "SUI/USDT", 3.0, 2.0)
    assert cents(fill.balance) == cents(D("512.25") + hld_sell("2", D(3), "0.001", "0.0005")[3])
    assert broker.health() == {"mode": "paper", "balances": broker.balances()}
    with pytest.raises(OrderRefused):
        PaperBroker(VARIANTS, balances={"nobody": 1.0})


async def test_live_broker_trades_on_the_simulators_account(start_sim, bundled_series) -> None:
    btc = next(s for s in bundled_series if s.symbol == "BTC/USDT")
    sim = await start_sim([btc], start_ms=int(btc.time[500]) + 1_800_000, balances={"USDT": 1000.0})
    cfg = fast_config()
    async with ExchangeClient.from_config(cfg, url=sim.url, live=True, environ=FAKE_KEYS) as client:
        broker = make_broker(client, VARIANTS)
        assert isinstance(broker, LiveBroker)
        name = VARIANTS[0].name
        last = await client.last_price("BTC/USDT")
        buy = await broker.open(name, "BTC/USDT", last, time_ms=sim.clock.now_ms())
        assert buy.order_id and buy.gross == pytest.approx(1000.0 - sim.balances["USDT"])
        assert buy.qty == pytest.approx(sim.balances["BTC"], rel=1e-12)  # commission taken in BTC
        assert buy.price == pytest.approx(last, rel=1e-3) and buy.fee > 0
        assert broker.balance(name) == pytest.approx(1000.0 - buy.amount)
        sell = await broker.close(name, "BTC/USDT", buy.qty, last)
        assert sell.qty <= buy.qty and sell.amount == pytest.approx(sell.gross - sell.fee)
        assert sim.balances["USDT"] == pytest.approx(1000.0 - buy.gross + sell.amount, abs=1e-6)
        assert broker.holding(name, "BTC/USDT") == 0.0
        assert broker.health()["mode"] == "live"
        # the account, not only the variant's budget, must be able to pay
        sim.balances["USDT"] = 50.0
        with pytest.raises(OrderRefused) as e:
            await broker.open(name, "BTC/USDT", last)
        assert e.value.reason == "exchange_balance"
    assert sim.stats.requests["order"] == 2 and sim.stats.statuses[401] == 0


async def test_live_broker_needs_a_live_client(start_sim, bundled_series) -> None:
    sim = await start_sim(bundled_series[:1])
    async with ExchangeClient.from_config(fast_config(), url=sim.url, environ=FAKE_KEYS) as client:
        assert isinstance(make_broker(client, VARIANTS), PaperBroker)  # keys alone do not switch it on
        with pytest.raises(ValueError, match="live mode"):
            LiveBroker(client, VARIANTS)


def _lost_orders_sim(start_sim, bundled_series, **faults):  # type: ignore[no-untyped-def]
    btc = next(s for s in bundled_series if s.symbol == "BTC/USDT")
    return start_sim(
        [btc],
        start_ms=int(btc.time[500]) + 1_800_000,
        balances={"USDT": 1000.0},
        faults=Faults(hang_s=10.0, **faults),
    )


async def test_an_order_whose_answer_is_lost_is_found_by_its_client_id(start_sim, bundled_series) -> None:
    sim = await _lost_orders_sim(
        start_sim, bundled_series, endpoints=frozenset({"order"}), rate_lost_answer=1.0
    )
    cfg = fast_config(timeout_s=0.3, retries=1)
    async with ExchangeClient.from_config(cfg, url=sim.url, live=True, environ=FAKE_KEYS) as client:
        broker = make_broker(client, VARIANTS)
        assert isinstance(broker, LiveBroker)
        name = VARIANTS[0].name
        last = await client.last_price("BTC/USDT")
        buy = await broker.open(name, "BTC/USDT", last, client_order_id="sigil-o1")
        # Executed once (never sent twice), and the fill is the exchange's: the order query carries no
        # fills, so the fee is the exchange's rate on what was bought, which is what it took.
        assert sim.stats.faults["lost_answer"] == 1 and sim.stats.requests["queryOrder"] == 1
        assert buy.order_id == "1" and buy.gross == pytest.approx(1000.0 - sim.balances["USDT"])
        assert buy.qty == pytest.approx(sim.balances["BTC"], rel=1e-12)
        assert broker.holding(name, "BTC/USDT") == buy.qty
        again = await broker.recover_open(name, "BTC/USDT", "sigil-o1")
        assert again is not None and (again.qty, again.price, again.order_id) == (buy.qty, buy.price, "1")
        assert await broker.recover_open(name, "BTC/USDT", "sigil-o999") is None


async def test_an_order_that_timed_out_unexecuted_is_reported_as_such(start_sim, bundled_series) -> None:
    sim = await _lost_orders_sim(start_sim, bundled_series, endpoints=frozenset({"order"}), rate_timeout=1.0)
    cfg = fast_config(timeout_s=0.3, retries=1)
    async with ExchangeClient.from_config(cfg, url=sim.url, live=True, environ=FAKE_KEYS) as client:
        broker = make_broker(client, VARIANTS)
        name = VARIANTS[0].name
        last = await client.last_price("BTC/USDT")
        with pytest.raises(ExchangeUnavailable, match="market buy BTC/USDT"):
            await broker.open(name, "BTC/USDT", last, client_order_id="sigil-o2")
        assert sim.stats.requests["order"] == 1 and sim.stats.requests["queryOrder"] == 1
        assert sim.balances == {"USDT": 1000.0} and broker.holding(name, "BTC/USDT") == 0.0
        assert broker.balance(name) == VARIANTS[0].starting_balance


async def test_an_order_nobody_can_look_up_is_an_unknown_outcome(start_sim, bundled_series) -> None:
    sim = await _lost_orders_sim(
        start_sim, bundled_series, endpoints=frozenset({"order", "queryOrder"}), rate_timeout=1.0
    )
    cfg = fast_config(timeout_s=0.3, retries=1)
    async with ExchangeClient.from_config(cfg, url=sim.url, live=True, environ=FAKE_KEYS) as client:
        broker = make_broker(client, VARIANTS)
        name = VARIANTS[0].name
        last = await client.last_price("BTC/USDT")
        with pytest.raises(OrderOutcomeUnknown, match="looking it up failed") as e:
            await broker.open(name, "BTC/USDT", last, client_order_id="sigil-o3")
        assert e.value.client_order_id == "sigil-o3"
        assert sim.stats.requests["queryOrder"] == 2  # a read is retried
        assert broker.holding(name, "BTC/USDT") == 0.0


async def test_a_sell_whose_outcome_was_lost_is_looked_up_before_selling_again(
    start_sim, bundled_series
) -> None:
    sim = await _lost_orders_sim(start_sim, bundled_series, endpoints=frozenset())
    cfg = fast_config(timeout_s=0.3, retries=0)
    async with ExchangeClient.from_config(cfg, url=sim.url, live=True, environ=FAKE_KEYS) as client:
        broker = make_broker(client, VARIANTS)
        name = VARIANTS[0].name
        last = await client.last_price("BTC/USDT")
        buy = await broker.open(name, "BTC/USDT", last, client_order_id="sigil-o5")
        # The sell executes but neither its answer nor the lookup's comes back.
        sim.faults = Faults(hang_s=10.0, endpoints=frozenset({"order", "queryOrder"}), rate_lost_answer=1.0)
        with pytest.raises(OrderOutcomeUnknown):
            await broker.close(name, "BTC/USDT", buy.qty, last, client_order_id="sigil-c5")
        assert sim.stats.requests["order"] == 2 and "BTC" in sim.balances
        sold_btc = sim.balances["BTC"]
        # While the exchange still cannot answer, nothing is sent again.
        with pytest.raises(OrderOutcomeUnknown, match="still unknown"):
            await broker.close(name, "BTC/USDT", buy.qty, last, client_order_id="sigil-c5", maybe_sent=True)
        assert sim.stats.requests["order"] == 2
        # Once it answers, the sell is found: the same fill, and no second sell.
        sim.faults = Faults()
        sell = await broker.close(
            name, "BTC/USDT", buy.qty, last, client_order_id="sigil-c5", maybe_sent=True
        )
        assert sim.stats.requests["order"] == 2 and sim.balances["BTC"] == sold_btc
        assert sell.order_id == "2" and sell.qty <= buy.qty and broker.holding(name, "BTC/USDT") == 0.0
        assert sim.balances["USDT"] == pytest.approx(1000.0 - buy.gross + sell.amount, abs=1e-6)
        # A sell that never went out is simply sent.
        again = await broker.open(name, "BTC/USDT", last, client_order_id="sigil-o6")
        await broker.close(name, "BTC/USDT", again.qty, last, client_order_id="sigil-c6", maybe_sent=True)
        assert sim.stats.requests["order"] == 4
