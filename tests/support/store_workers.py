"""Processes the store tests start (``python tests/support/store_workers.py COMMAND …``): each opens its
own connection and reports one JSON line. It imports nothing from ``tests``, so it runs as a plain script.

- ``race URL WORKER START PAIRS...``: at wall-clock START, try to open every pair (in a shuffled order),
  close at once the won positions with an even id; report the answers.
- ``open-loop URL VARIANT``: open and close positions until killed.
- ``open URL VARIANT SYMBOL``: open one position, report its id.
- ``close URL ID``: close one position.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sigil.store import Database, PositionStore

#: The market time every race attempt uses (all attempts are "the same candle close").
RACE_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
COOLDOWN = timedelta(hours=8)


def order_args(
    variant: str, symbol: str, at: datetime, cooldown: timedelta = COOLDOWN, **over: Any
) -> dict[str, Any]:
    """A valid open request (stake 10 USDT at price 2.0, fee 0.1%); ``over`` replaces any field."""
    args: dict[str, Any] = dict(
        variant=variant,
        symbol=symbol,
        opened_at=at,
        entry_price=2.0,
        qty=5.0,
        stake=10.0,
        entry_fee=0.01,
        stop_pct=0.03,
        stop_price=1.94,
        atr_at_entry=0.05,
        cooldown=cooldown,
    )
    args.update(over)
    return args


def close_args(at: datetime) -> dict[str, Any]:
    """The close of an :func:`order_args` position at its entry price, by hand (gross 10 USDT, fee 0.1%)."""
    return dict(closed_at=at, exit_price=2.0, gross=10.0, exit_fee=0.01, exit_reason="manual")


async def race(url: str, worker: int, pairs: list[str], start_at: float) -> dict[str, object]:
    db = await Database.open(url, min_size=1, max_size=1)
    store = PositionStore(db)
    answers: dict[str, int] = {}
    won: list[list[object]] = []
    errors: list[str] = []
    order = list(pairs)
    random.Random(worker).shuffle(order)
    # All workers start at the same wall-clock moment, so their attempts overlap.
    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        for pair in order:
            variant, symbol = pair.split("|")
            try:
                result = await store.open_position(**order_args(variant, symbol, RACE_TIME))
                if result.position is not None:
                    answers["opened"] = answers.get("opened", 0) + 1
                    closed = result.position.id % 2 == 0
                    if closed:
                        await store.close_position(result.position.id, **close_args(RACE_TIME))
                    won.append([pair, result.position.id, closed])
                else:
                    assert result.refused is not None
                    answers[result.refused.value] = answers.get(result.refused.value, 0) + 1
            except Exception as e:  # the test fails on any of these
                errors.append(f"{pair}: {type(e).__name__}: {e}")
    finally:
        await db.close()
    return {"worker": worker, "answers": answers, "won": won, "errors": errors}


async def open_loop(url: str, variant: str) -> None:
    db = await Database.open(url, min_size=1, max_size=1)
    store = PositionStore(db)
    async with db.connection("pid") as conn:
        print("ready", await conn.fetchval("SELECT pg_backend_pid()"), flush=True)
    i = 0
    while True:
        at = RACE_TIME + timedelta(minutes=i)
        r = await store.open_position(**order_args(variant, f"L{i}/USDT", at))
        if r.position is not None and i % 3 == 0:
            await store.close_position(
                r.position.id,
                closed_at=at,
                exit_price=2.1,
                gross=10.5,
                exit_fee=0.0105,
                exit_reason="atr_trail",
            )
        i += 1


async def open_one(url: str, variant: str, symbol: str) -> dict[str, object]:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        r = await PositionStore(db).open_position(**order_args(variant, symbol, RACE_TIME))
    finally:
        await db.close()
    return {"id": None if r.position is None else r.position.id, "refused": r.refused}


async def close_one(url: str, position_id: int) -> dict[str, object]:
    db = await Database.open(url, min_size=1, max_size=1)
    try:
        p = await PositionStore(db).close_position(position_id, **close_args(RACE_TIME))
    finally:
        await db.close()
    return {"id": p.id, "status": p.status}


def main(argv: list[str]) -> None:
    cmd, url, *rest = argv
    if cmd == "race":
        worker, start_at, *pairs = rest
        out = asyncio.run(race(url, int(worker), pairs, float(start_at)))
    elif cmd == "open-loop":
        asyncio.run(open_loop(url, rest[0]))
        return
    elif cmd == "open":
        out = asyncio.run(open_one(url, rest[0], rest[1]))
    elif cmd == "close":
        out = asyncio.run(close_one(url, int(rest[0])))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
