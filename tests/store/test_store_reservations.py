"""Live opens: a reservation is the ordinary one-transaction open, then either the exchange's fill is
recorded into it (the account settles the difference) or it is cancelled (everything given back, the
cooldown kept). Nothing is half-written when a call is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sigil.errors import InvalidOrder, PositionNotOpen
from sigil.store import Database, EventKind, GuardMirror, PositionStore, SkipReason
from tests.support.store_books import COOLDOWN, HOUR, T0, order, snapshot

pytestmark = pytest.mark.postgres


async def reserve(store: PositionStore, **over: object) -> int:
    r = await store.open_position(**order(**over), reserve=True)
    assert r.position is not None and r.position.reserved and r.position.fill == "reserved"
    return r.position.id


async def test_recorded_fill_replaces_the_estimate_and_settles_the_account(db: Database) -> None:
    store = PositionStore(db)
    estimate = order()
    pid = await reserve(store)
    reserved_cost = estimate["stake"] + estimate["entry_fee"]
    assert (await store.accounts.get("baseline")).balance == 1000.0 - reserved_cost

    # The exchange filled a little worse than the estimate, fee taken in the base asset.
    price, qty, fee = 2.0021, 49.9, 0.0999
    filled = await store.record_fill(
        pid,
        entry_price=price,
        qty=qty,
        stake=99.98,
        entry_fee=fee,
        stop_price=price * 0.96,
        order_id="12345",
    )
    assert filled.fill == "exchange" and not filled.reserved and filled.is_open
    assert (filled.entry_price, filled.qty, filled.stake, filled.entry_fee) == (price, qty, 99.98, fee)
    assert filled.trail_highest == price and filled.entry_order_id == "12345"
    assert filled.stop_pct == estimate["stop_pct"] and filled.opened_at == T0
    acct = await store.accounts.get("baseline")
    assert acct.balance == pytest.approx(1000.0 - (99.98 + fee), abs=1e-9)
    kinds = [(e.kind, e.position_id) for e in reversed(await store.events.recent())]
    assert kinds == [(EventKind.OPEN, pid), (EventKind.FILL, pid)]

    # Recorded once only; the position then closes like any other, with its sell's order id.
    with pytest.raises(PositionNotOpen, match="not an open reservation"):
        await store.record_fill(
            pid, entry_price=2.0, qty=1.0, stake=2.0, entry_fee=0.0, stop_price=1.0, order_id=None
        )
    closed = await store.close_position(
        pid,
        closed_at=T0 + HOUR,
        exit_price=2.1,
        gross=qty * 2.1,
        exit_fee=0.1,
        exit_reason="atr_trail",
        order_id="12346",
    )
    assert closed.exit_order_id == "12346"
    assert closed.pnl == (qty * 2.1 - 0.1) - (99.98 + fee)


async def test_cancelled_reservation_gives_everything_back_but_the_cooldown(db: Database) -> None:
    store = PositionStore(db)
    pid = await reserve(store)
    cancelled = await store.cancel_reservation(pid, at=T0, detail="ExchangeRejected: insufficient balance")
    assert cancelled.status == "closed" and cancelled.exit_reason == "order_failed"
    assert cancelled.pnl is None and cancelled.fees is None and cancelled.closed_at == T0
    assert (await store.accounts.get("baseline")).balance == 1000.0
    assert await store.open_positions() == []
    # Not a trade: no P&L to count.
    assert await store.realised() == {"baseline": (1, 0.0)}
    events = list(reversed(await store.events.recent()))
    assert [(e.kind, e.reason) for e in events] == [(EventKind.OPEN, None), (EventKind.ERROR, "order_failed")]
    assert "insufficient balance" in events[-1].detail["error"]
    # The cooldown written at the reservation stays: the pair is not tried again at once.
    assert await store.blocked("baseline", "ABC/USDT", T0 + HOUR) is SkipReason.COOLDOWN
    assert await store.blocked("baseline", "ABC/USDT", T0 + COOLDOWN) is None
    with pytest.raises(PositionNotOpen, match="not an open reservation"):
        await store.cancel_reservation(pid, at=T0, detail="again")


async def test_only_reservations_can_be_filled_or_cancelled(db: Database) -> None:
    store = PositionStore(db)
    paper = (await store.open_position(**order())).position
    assert paper is not None and paper.fill == "paper" and not paper.reserved
    before = await snapshot(db)
    with pytest.raises(PositionNotOpen, match="not an open reservation"):
        await store.cancel_reservation(paper.id, at=T0, detail="x")
    with pytest.raises(PositionNotOpen, match="not an open reservation"):
        await store.record_fill(
            paper.id, entry_price=2.0, qty=1.0, stake=2.0, entry_fee=0.0, stop_price=1.0, order_id="1"
        )
    with pytest.raises(PositionNotOpen, match="does not exist"):
        await store.cancel_reservation(999_999, at=T0, detail="x")
    assert await snapshot(db) == before


async def test_bad_fill_is_refused_and_writes_nothing(db: Database) -> None:
    store = PositionStore(db)
    pid = await reserve(store, symbol="XYZ/USDT")
    before = await snapshot(db)
    good = dict(entry_price=2.0, qty=49.0, stake=98.0, entry_fee=0.05, stop_price=1.9, order_id="7")
    for field, bad, message in (
        ("entry_price", float("nan"), "entry_price"),
        ("qty", 0.0, "qty"),
        ("entry_fee", -1.0, "entry_fee"),
        ("stop_price", 2.5, "stop_price 2.5 must be below entry_price"),
        ("order_id", "", "order_id"),
    ):
        with pytest.raises(InvalidOrder, match=message):
            await store.record_fill(pid, **{**good, field: bad})  # type: ignore[arg-type]
    with pytest.raises(InvalidOrder, match="position_id"):
        await store.record_fill("1", **good)  # type: ignore[arg-type]
    assert await snapshot(db) == before


async def test_a_reservation_blocks_the_pair_in_every_process(db: Database) -> None:
    """While its order is in flight the pair is open for every other opener, and the mirror says so;
    a cancellation tells the mirror the pair is closed but cooling down."""
    mirror = GuardMirror(db, ["baseline"])
    await mirror.start()
    try:
        store = PositionStore(db, mirror=mirror)
        other = PositionStore(db)
        pid = await reserve(store)
        assert mirror.state("baseline", "ABC/USDT")[0] is True
        refused = await other.open_position(**order(at=T0 + timedelta(minutes=1)))
        assert refused.refused is SkipReason.OPEN
        await store.cancel_reservation(pid, at=T0, detail="x")
        is_open, until = mirror.state("baseline", "ABC/USDT")
        assert not is_open and until == int((T0 + COOLDOWN).timestamp() * 1000)
    finally:
        await mirror.stop()


async def test_a_sell_in_flight_is_noted_on_the_open_position(db: Database) -> None:
    store = PositionStore(db)
    pid = await reserve(store)
    close = dict(closed_at=T0 + HOUR, exit_price=2.0, gross=99.0, exit_fee=0.1, exit_reason="hard_stop")
    with pytest.raises(PositionNotOpen, match="record its fill or cancel it first"):
        await store.close_position(pid, **close)  # type: ignore[arg-type]
    await store.record_fill(
        pid, entry_price=2.0, qty=49.9, stake=99.8, entry_fee=0.1, stop_price=1.9, order_id="76"
    )
    await store.mark_selling(pid, "sigil-c1")
    (p,) = await store.open_positions()
    assert p.exit_order_id == "sigil-c1" and p.is_open
    closed = await store.close_position(
        pid,
        closed_at=T0 + HOUR,
        exit_price=2.0,
        gross=99.0,
        exit_fee=0.1,
        exit_reason="hard_stop",
        order_id="77",
    )
    assert closed.exit_order_id == "77"
    with pytest.raises(PositionNotOpen, match="not open"):
        await store.mark_selling(pid, "sigil-c1")
    with pytest.raises(InvalidOrder, match="order_id"):
        await store.mark_selling(pid, "")
