"""The store tests' books: a baseline open request with the engine's fill maths, a snapshot of everything
an open or close may write, and the check that positions, protections, accounts and events agree (nothing
was half-written)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sigil._core import buy_fill
from sigil.store import Database

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
COOLDOWN = 12 * HOUR  # baseline: 12 candles of 1h


def order(
    variant: str = "baseline", symbol: str = "ABC/USDT", at: datetime = T0, **over: Any
) -> dict[str, Any]:
    """An open request with the paper fill maths of the engine (stake 100, fee 0.1%, 5 bps slippage)."""
    price, qty, fee, _cost = buy_fill(2.0, 100.0, 0.001, 0.0005)
    args: dict[str, Any] = dict(
        variant=variant,
        symbol=symbol,
        opened_at=at,
        entry_price=price,
        qty=qty,
        stake=100.0,
        entry_fee=fee,
        stop_pct=0.04,
        stop_price=price * (1 - 0.04),
        atr_at_entry=0.06,
        cooldown=COOLDOWN,
    )
    args.update(over)
    return args


async def snapshot(db: Database) -> dict[str, Any]:
    """Everything an open or close may write."""
    async with db.connection("snapshot") as conn:
        return {
            "positions": [dict(r) for r in await conn.fetch("SELECT * FROM micro_positions ORDER BY id")],
            "protections": [
                dict(r) for r in await conn.fetch("SELECT * FROM symbol_protections ORDER BY 1, 2")
            ],
            "accounts": [
                dict(r)
                for r in await conn.fetch(
                    "SELECT variant_id, balance, equity FROM variant_accounts ORDER BY 1"
                )
            ],
            "events": [dict(r) for r in await conn.fetch("SELECT * FROM events ORDER BY id")],
        }


async def assert_books_consistent(db: Database, cooldown: timedelta, start_balance: float = 1000.0) -> int:
    """Every position has its protection, its events and its account movements, and nothing else exists.

    Returns the number of positions.
    """
    async with db.connection("books") as conn:
        positions = await conn.fetch("SELECT * FROM micro_positions ORDER BY id")
        protections = {
            (r["variant_id"], r["symbol"]): r["protected_until"]
            for r in await conn.fetch("SELECT * FROM symbol_protections")
        }
        events = await conn.fetch("SELECT kind, position_id FROM events WHERE kind IN ('open', 'close')")
        balances = {r["variant_id"]: r["balance"] for r in await conn.fetch("SELECT * FROM variant_accounts")}
    opens: defaultdict[int, int] = defaultdict(int)
    closes: defaultdict[int, int] = defaultdict(int)
    for e in events:
        (opens if e["kind"] == "open" else closes)[e["position_id"]] += 1
    ids = {p["id"] for p in positions}
    assert set(opens) == ids and all(n == 1 for n in opens.values()), "one open event per position"
    closed = {p["id"] for p in positions if p["status"] == "closed"}
    assert set(closes) == closed and all(n == 1 for n in closes.values()), (
        "one close event per closed position"
    )
    latest: dict[tuple[str, str], datetime] = {}
    expected: defaultdict[str, float] = defaultdict(lambda: start_balance)
    for p in positions:
        key = (p["variant_id"], p["symbol"])
        latest[key] = max(latest.get(key, p["opened_at"]), p["opened_at"])
        expected[p["variant_id"]] -= p["stake"] + p["entry_fee"]
        if p["status"] == "closed":
            assert p["pnl"] is not None and p["closed_at"] is not None and p["exit_price"] is not None
            expected[p["variant_id"]] += p["pnl"] + p["stake"] + p["entry_fee"]
    assert set(protections) == set(latest), "a protection for every pair that opened, and only those"
    for key, opened_at in latest.items():
        assert protections[key] == opened_at + cooldown
    for variant, balance in balances.items():
        assert balance == pytest.approx(expected[variant], abs=1e-6), variant
    return len(positions)
