"""PositionStore, SymbolProtectionStore, AccountStore, EventStore and HeartbeatStore on a real server."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sigil._core import buy_fill, round_trip, sell_fill
from sigil.errors import InvalidOrder, PositionNotOpen, UnknownVariant
from sigil.store import (
    AccountStore,
    Database,
    EventKind,
    EventStore,
    HeartbeatStore,
    PassStats,
    PositionStore,
    SkipReason,
    SymbolProtectionStore,
)
from tests.support.store_books import COOLDOWN, HOUR, T0, order, snapshot

pytestmark = pytest.mark.postgres


async def test_open_then_close_keeps_books(db: Database) -> None:
    store = PositionStore(db)
    r = await store.open_position(**order())
    assert r.opened and r.refused is None and r.position is not None
    p = r.position
    assert p.variant == "baseline" and p.symbol == "ABC/USDT" and p.is_open
    assert p.opened_at == T0 and r.protected_until == T0 + COOLDOWN
    acct = await store.accounts.get("baseline")
    assert acct.balance == 1000.0 - (p.stake + p.entry_fee)

    exit_price, gross, exit_fee, proceeds = sell_fill(2.2, p.qty, 0.001, 0.0005)
    closed = await store.close_position(
        p.id,
        closed_at=T0 + 3 * HOUR,
        exit_price=exit_price,
        gross=gross,
        exit_fee=exit_fee,
        exit_reason="atr_trail",
    )
    assert closed.status == "closed" and closed.exit_reason == "atr_trail"
    # Exactly the decision rules' formulas, in the same order, in doubles.
    assert closed.pnl == (gross - exit_fee) - (p.stake + p.entry_fee)
    assert closed.fees == p.entry_fee + exit_fee
    acct = await store.accounts.get("baseline")
    assert acct.balance == 1000.0 - (p.stake + p.entry_fee) + proceeds
    kinds = [(e.kind, e.reason, e.position_id) for e in reversed(await store.events.recent())]
    assert kinds == [(EventKind.OPEN, None, p.id), (EventKind.CLOSE, "atr_trail", p.id)]
    assert await store.open_positions() == []
    assert [c.id for c in await store.closed_positions()] == [p.id]
    assert await store.realised() == {"baseline": (1, closed.pnl)}

    with pytest.raises(PositionNotOpen, match="already closed"):
        await store.close_position(
            p.id, closed_at=T0 + 4 * HOUR, exit_price=2.0, gross=1.0, exit_fee=0.0, exit_reason="manual"
        )
    with pytest.raises(PositionNotOpen, match="does not exist"):
        await store.close_position(
            999_999, closed_at=T0, exit_price=2.0, gross=1.0, exit_fee=0.0, exit_reason="manual"
        )


async def test_cooldown_starts_at_open_not_at_close(db: Database) -> None:
    """Root cause 2: open then close at once; the pair stays protected until open time + cooldown."""
    store = PositionStore(db)
    p = (await store.open_position(**order())).position
    assert p is not None
    await store.close_position(
        p.id, closed_at=T0, exit_price=2.0, gross=99.0, exit_fee=0.099, exit_reason="hard_stop"
    )
    protections = SymbolProtectionStore(db)
    assert await protections.protected_until("baseline", "ABC/USDT") == T0 + COOLDOWN
    for at in (T0, T0 + HOUR, T0 + COOLDOWN - timedelta(microseconds=1)):
        assert await protections.is_protected("baseline", "ABC/USDT", at)
        assert await store.blocked("baseline", "ABC/USDT", at) is SkipReason.COOLDOWN
        r = await store.open_position(**order(at=at))
        assert r.refused is SkipReason.COOLDOWN and r.protected_until == T0 + COOLDOWN
        assert "cooling down until" in r.detail
    assert not await protections.is_protected("baseline", "ABC/USDT", T0 + COOLDOWN)
    assert await store.blocked("baseline", "ABC/USDT", T0 + COOLDOWN) is None
    # Another variant on the same symbol is independent.
    assert (await store.open_position(**order(variant="moderate", at=T0 + HOUR))).opened
    again = await store.open_position(**order(at=T0 + COOLDOWN))
    assert again.opened and again.protected_until == T0 + 2 * COOLDOWN


async def test_open_pair_is_refused_as_open(db: Database) -> None:
    store = PositionStore(db)
    assert (await store.open_position(**order(cooldown=timedelta(0)))).opened
    before = await snapshot(db)
    r = await store.open_position(**order(at=T0 + 100 * HOUR))
    assert r.refused is SkipReason.OPEN and r.position is None
    assert await snapshot(db) == before


async def test_max_open_and_balance_refusals_write_nothing(db: Database) -> None:
    store = PositionStore(db)
    for i in range(3):
        assert (await store.open_position(**order(symbol=f"S{i}/USDT"), max_open=3)).opened
    before = await snapshot(db)
    r = await store.open_position(**order(symbol="S9/USDT"), max_open=3)
    assert r.refused is SkipReason.MAX_OPEN and "3 open, max 3" in r.detail
    assert await snapshot(db) == before
    # 1000 - 3 × 100.1 = 699.7 left: a stake of 699.7 plus its fee does not fit.
    r = await store.open_position(**order(symbol="S9/USDT", stake=699.7, entry_fee=0.6997))
    assert r.refused is SkipReason.BALANCE
    assert await snapshot(db) == before
    assert (await store.open_position(**order(symbol="S9/USDT", stake=699.0, entry_fee=0.699))).opened
    assert (await store.accounts.get("baseline")).balance >= 0


BAD_OPENS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"variant": "nonesuch"}, UnknownVariant, "unknown variant 'nonesuch'"),
    ({"variant": ""}, InvalidOrder, "variant is empty"),
    ({"symbol": ""}, InvalidOrder, "symbol is empty"),
    ({"symbol": "ABC /USDT"}, InvalidOrder, "not a valid name"),
    ({"stake": -100.0}, InvalidOrder, "stake must be a finite number > 0"),
    ({"stake": 0.0}, InvalidOrder, "stake must be a finite number > 0"),
    ({"entry_price": math.nan}, InvalidOrder, "entry_price must be a finite number"),
    ({"entry_price": math.inf}, InvalidOrder, "entry_price must be a finite number"),
    ({"qty": math.nan}, InvalidOrder, "qty must be a finite number"),
    ({"entry_fee": -0.1}, InvalidOrder, "entry_fee must be a finite number >= 0"),
    ({"atr_at_entry": math.nan}, InvalidOrder, "atr_at_entry"),
    ({"stop_pct": 1.5}, InvalidOrder, "stop_pct must be below 1"),
    ({"stop_price": 5.0}, InvalidOrder, "must be below entry_price"),
    ({"opened_at": datetime(2024, 5, 1, 8, 0)}, InvalidOrder, "timezone-aware"),
    ({"cooldown": timedelta(hours=-1)}, InvalidOrder, "cooldown must be a timedelta >= 0"),
    ({"cooldown": 3600}, InvalidOrder, "cooldown must be a timedelta"),
    ({"stake": "100"}, InvalidOrder, "stake must be a number"),
]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    BAD_OPENS,
    ids=[next(iter(b)) + "=" + repr(next(iter(b.values()))) for b, _, _ in BAD_OPENS],
)
async def test_bad_open_input_is_a_clear_error_and_writes_nothing(
    db: Database, bad: dict[str, Any], error: type[Exception], message: str
) -> None:
    store = PositionStore(db)
    before = await snapshot(db)
    with pytest.raises(error, match=message):
        await store.open_position(**order(**bad))
    assert await snapshot(db) == before
    with pytest.raises(InvalidOrder, match="max_open"):
        await store.open_position(**order(), max_open=0)


async def test_bad_close_input_writes_nothing(db: Database) -> None:
    store = PositionStore(db)
    p = (await store.open_position(**order())).position
    assert p is not None
    before = await snapshot(db)
    good: dict[str, Any] = dict(
        closed_at=T0 + HOUR, exit_price=2.0, gross=100.0, exit_fee=0.1, exit_reason="manual"
    )
    bads: list[tuple[dict[str, Any], str]] = [
        ({"exit_price": math.nan}, "exit_price"),
        ({"gross": -1.0}, "gross"),
        ({"exit_fee": math.inf}, "exit_fee"),
        ({"exit_reason": ""}, "exit_reason is empty"),
        ({"closed_at": T0 - HOUR}, "before position"),
        ({"closed_at": datetime(2024, 5, 1, 9)}, "timezone-aware"),
    ]
    for bad, message in bads:
        with pytest.raises(InvalidOrder, match=message):
            await store.close_position(p.id, **{**good, **bad})
    assert await snapshot(db) == before


async def test_trail_updates(db: Database) -> None:
    store = PositionStore(db)
    p = (await store.open_position(**order())).position
    assert p is not None and p.trail_highest == p.entry_price and not p.trail_active
    await store.update_trail(p.id, active=True, highest=2.5, stop=2.3)
    got = await store.get(p.id)
    assert got is not None and (got.trail_active, got.trail_highest, got.trail_stop) == (True, 2.5, 2.3)
    with pytest.raises(InvalidOrder):
        await store.update_trail(p.id, active=True, highest=math.nan, stop=None)
    await store.close_position(
        p.id, closed_at=T0, exit_price=2.0, gross=1.0, exit_fee=0.0, exit_reason="manual"
    )
    with pytest.raises(PositionNotOpen):
        await store.update_trail(p.id, active=True, highest=2.6, stop=2.4)


async def test_protection_store(db: Database) -> None:
    prot = SymbolProtectionStore(db)
    end = await prot.protect("baseline", "XYZ/USDT", T0 + HOUR, "manual lock")
    assert end == T0 + HOUR
    # A protection only grows.
    assert await prot.protect("baseline", "XYZ/USDT", T0 + 30 * timedelta(minutes=1), "shorter") == T0 + HOUR
    assert await prot.protect("baseline", "XYZ/USDT", T0 + 2 * HOUR, "longer") == T0 + 2 * HOUR
    await prot.protect("moderate", "XYZ/USDT", T0 + 3 * HOUR, "other")
    active = await prot.active(T0)
    assert [(a.variant, a.protected_until, a.reason) for a in active] == [
        ("baseline", T0 + 2 * HOUR, "longer"),
        ("moderate", T0 + 3 * HOUR, "other"),
    ]
    assert [a.variant for a in await prot.active(T0, variant="moderate")] == ["moderate"]
    assert [a.variant for a in await prot.active(T0 + 2 * HOUR)] == ["moderate"]
    assert await prot.expire(T0 + 2 * HOUR) == 1
    assert await prot.protected_until("baseline", "XYZ/USDT") is None
    state = await prot.guard_state("moderate", "XYZ/USDT")
    assert (
        not state.open and state.blocked(T0) is SkipReason.COOLDOWN and state.blocked(T0 + 3 * HOUR) is None
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        await prot.protect("baseline", "XYZ/USDT", datetime(2024, 1, 1), "naive")
    with pytest.raises(ValueError, match="symbol is empty"):
        await prot.protect("baseline", "", T0, "x")


async def test_accounts(db: Database) -> None:
    accounts = AccountStore(db)
    names = [a.variant for a in await accounts.all()]
    assert sorted(names) == ["aggressive", "baseline", "moderate", "unhinged"]
    assert all(a.balance == a.starting_balance == a.equity == 1000.0 for a in await accounts.all())

    class V:
        name = "extra"
        starting_balance = 250.0

    assert await accounts.ensure([V()]) == ["extra"]
    assert await accounts.ensure([V()]) == []
    await accounts.mark_equity("extra", 260.5, T0)
    extra = await accounts.get("extra")
    assert (extra.balance, extra.equity, extra.equity_at) == (250.0, 260.5, T0)
    with pytest.raises(UnknownVariant):
        await accounts.get("nonesuch")
    with pytest.raises(UnknownVariant):
        await accounts.mark_equity("nonesuch", 1.0, T0)


async def test_events_record_skips_with_reasons(db: Database) -> None:
    events = EventStore(db)
    await events.signal("baseline", "ABC/USDT", T0, {"close": 2.0})
    for reason in SkipReason.all():
        await events.skip("baseline", "ABC/USDT", reason, T0)
    await events.error("exchange timed out\nafter 10 s", T0, symbol="ABC/USDT")
    with pytest.raises(ValueError):
        await events.skip("baseline", "ABC/USDT", "because", T0)  # type: ignore[arg-type]
    got = list(reversed(await events.recent()))
    assert [(e.kind, e.reason) for e in got] == [
        (EventKind.SIGNAL, None),
        (EventKind.SKIP, "open"),
        (EventKind.SKIP, "cooldown"),
        (EventKind.SKIP, "max_open"),
        (EventKind.SKIP, "balance"),
        (EventKind.ERROR, "exchange timed out after 10 s"),
    ]
    assert got[0].detail == {"close": 2.0}
    counts = await events.counts()
    assert counts[("skip", "cooldown")] == 1 and counts[("signal", None)] == 1
    assert [e.kind for e in await events.recent(kind=EventKind.ERROR)] == [EventKind.ERROR]


async def test_heartbeats(db: Database) -> None:
    hb = HeartbeatStore(db)
    assert await hb.latest() is None and await hb.age() is None
    now = datetime.now(UTC)
    for i in range(3):
        start = now - timedelta(minutes=10 - i)
        await hb.record(PassStats(start, start + timedelta(seconds=2), 150, signals=i, opens=1, errors=0))
    last = await hb.latest()
    assert last is not None and last.signals == 2 and last.duration == timedelta(seconds=2)
    age = await hb.age(now)
    assert age is not None and timedelta(minutes=7) < age < timedelta(minutes=8)
    assert await hb.prune(now) == 2
    assert (await hb.latest()) is not None
    with pytest.raises(ValueError, match="before started_at"):
        await hb.record(PassStats(now, now - timedelta(seconds=1), 1))
    with pytest.raises(ValueError, match="symbols_scanned"):
        await hb.record(PassStats(now, now, -1))


async def test_heartbeats_per_instance(db: Database) -> None:
    """Two daemons on one database: each heartbeat is its own; a dead one cannot hide behind a live one."""
    now = datetime.now(UTC)
    live, dead = HeartbeatStore(db, "shard-a"), HeartbeatStore(db, "shard-b")
    await dead.record(
        PassStats(now - timedelta(hours=2), now - timedelta(hours=2) + timedelta(seconds=1), 50)
    )
    await live.record(PassStats(now - timedelta(seconds=30), now - timedelta(seconds=29), 60))
    newest = await live.latest()
    assert newest is not None and newest.instance == "shard-a"
    b = await live.latest("shard-b")
    assert b is not None and b.instance == "shard-b" and b.symbols_scanned == 50
    age_b = await live.age(now, "shard-b")
    assert age_b is not None and age_b > timedelta(hours=1)
    assert await live.latest("nobody") is None
    with pytest.raises(ValueError, match="instance"):
        HeartbeatStore(db, "")


async def test_the_stored_pnl_is_the_engines_round_trip_to_the_bit(db: Database) -> None:
    """One P&L rule: what the database writes on a close equals ``sigil._core.round_trip`` (the
    engine's closed-trade P&L and fees) bit for bit, over many prices and sizes."""
    store = PositionStore(db)
    rng = random.Random(7)
    for i in range(40):
        entry = rng.uniform(1e-5, 5.0) * 10 ** rng.randint(-3, 3)
        stake = rng.choice([10.0, 33.3, 100.0, 0.7])
        price, qty, fee, _cost = buy_fill(entry, stake, 0.001, 0.0005)
        at = T0 + i * 13 * HOUR
        opened = await store.open_position(
            **order(
                symbol=f"P{i}/USDT",
                at=at,
                entry_price=price,
                qty=qty,
                stake=stake,
                entry_fee=fee,
                stop_price=price * 0.96,
                cooldown=HOUR,
            )
        )
        assert opened.position is not None
        exit_price, gross, exit_fee, _ = sell_fill(entry * rng.uniform(0.8, 1.3), qty, 0.001, 0.0005)
        closed = await store.close_position(
            opened.position.id,
            closed_at=at + HOUR,
            exit_price=exit_price,
            gross=gross,
            exit_fee=exit_fee,
            exit_reason="atr_trail",
        )
        assert (closed.pnl, closed.fees) == round_trip(stake, fee, gross, exit_fee)
