"""``sigil report`` shows the same figures as ``sigil replay`` (one implementation): a small book
written through the store, read back by the command, each figure against a computation by hand."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigil.store import AccountStore, Database, Position, PositionStore
from tests.support.pg import run_cli
from tests.support.store_workers import order_args

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 3, 10, tzinfo=UTC)
FEE = 0.001
SHORT = timedelta(hours=1)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


async def _trade(store: PositionStore, symbol: str, opened: int, closed: int, price: float) -> Position:
    """An :func:`order_args` position (5 at 2.0, stake 10, fee 0.01, stop 3 %) closed at ``price``."""
    res = await store.open_position(**order_args("baseline", symbol, at(opened), SHORT))
    assert res.position is not None, res
    gross = 5.0 * price
    return await store.close_position(
        res.position.id,
        closed_at=at(closed),
        exit_price=price,
        gross=gross,
        exit_fee=gross * FEE,
        exit_reason="atr_trail",
    )


async def test_report_figures_by_hand(db_url: str, tmp_path: Path) -> None:
    db = await Database.open(db_url, min_size=1, max_size=1)
    try:
        store = PositionStore(db)
        a = await _trade(store, "A/USDT", 1, 5, 2.2)
        b = await _trade(store, "B/USDT", 2, 30, 1.9)
        c = await _trade(store, "A/USDT", 40, 50, 2.0)
        assert (await store.open_position(**order_args("baseline", "B/USDT", at(60), SHORT))).opened
        names = [acct.variant for acct in await AccountStore(db).all()]
        marked = {n: 1000.0 for n in names} | {"baseline": 1000.2}
        await AccountStore(db).mark_pass(marked, at(72))
    finally:
        await db.close()

    out = tmp_path / "report.json"
    r = run_cli("report", "--database-url", db_url, "--json", str(out), "--metrics", "full")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("figure") and "baseline" in line for line in lines)
    assert any(line.startswith("A/USDT ") for line in lines) and any(
        line.startswith("2024-03 ") for line in lines
    )
    doc = json.loads(out.read_text())  # strict JSON: json.loads refuses nothing, so check the text too
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()
    v = doc["variants"]["baseline"]

    pnl = [a.pnl, b.pnl, c.pnl]
    assert all(p is not None for p in pnl)
    pa, pb, pc = (float(p or 0.0) for p in pnl)
    assert pa > 0 > pb and pc < 0
    assert v["profit_factor"] == pytest.approx(pa / (-pb - pc), rel=1e-12)
    assert v["expectancy"] == pytest.approx((pa + pb + pc) / 3, rel=1e-12)
    assert v["expectancy_r"] == pytest.approx((pa + pb + pc) / 3 / (10.0 * 0.03), rel=1e-12)
    assert (v["best_trade"], v["worst_trade"], v["max_losing_streak"]) == (pa, min(pb, pc), 2)
    assert v["avg_hold_s"] == pytest.approx((4 + 28 + 10) / 3 * 3600)
    assert v["median_hold_s"] == 10 * 3600
    # Open from hour 1 to 30, 40 to 50, and 60 to the last pass at 72, over hours 1 to 72.
    assert v["exposure"] == pytest.approx((29 + 10 + 12) / 71, rel=1e-12)
    # The book's curve: realised P&L at each close, then the equity of the last pass.
    peak = 1000.0 + pa
    assert v["max_drawdown"] == pytest.approx((peak - 1000.2) / peak, rel=1e-12)
    assert v["max_drawdown_duration_s"] == (72 - 5) * 3600
    # End of day: Mar 10 → after the first close; Mar 11 → after the second; Mar 12 → the mark.
    assert v["cagr"] == pytest.approx((1000.2 / 1000.0) ** (365 / 3) - 1, rel=1e-9)
    assert v["calmar"] == pytest.approx(v["cagr"] / v["max_drawdown"], rel=1e-12)
    days = [1000.0, peak, peak + pb, 1000.2]
    rets = [y / x - 1 for x, y in itertools.pairwise(days)]
    mean = sum(rets) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in rets) / 2)
    assert v["sharpe"] == pytest.approx(mean / sd * math.sqrt(365), rel=1e-9)
    assert set(v["by_symbol"]) == {"A/USDT", "B/USDT"}
    assert v["by_symbol"]["A/USDT"]["net_pnl"] == pytest.approx(pa + pc, rel=1e-12)
    assert v["by_month"]["2024-03"]["closed_trades"] == 3
    assert v["by_month"]["2024-03"]["end_equity"] == 1000.2

    idle = doc["variants"]["moderate"]
    assert idle["profit_factor"] is None and idle["expectancy"] is None and idle["exposure"] == 0.0
