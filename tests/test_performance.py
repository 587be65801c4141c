"""The performance figures (``sigil.report.performance``), each against a computation by hand from the
trades and the equity curve of a small constructed case; the undefined cases are ``None`` (JSON
``null``); the replay's ``--json`` carries every figure under DESIGN's key names."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import sigil
from sigil.report.performance import (
    DAYS_PER_YEAR,
    ClosedTrades,
    Performance,
    daily_equity,
    performance,
)
from sigil.research.replay import ReplayResult

H = 3_600_000
#: 2024-01-30T00:00Z: the case runs over Jan 30, Jan 31 and Feb 1 (so over two months).
T0 = int(datetime(2024, 1, 30, tzinfo=UTC).timestamp()) * 1000

#: DESIGN's key names of the figures in ``variants.<name>``.
DESIGN_KEYS = {
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_s",
    "profit_factor",
    "expectancy",
    "expectancy_r",
    "sqn",
    "exposure",
    "avg_hold_s",
    "median_hold_s",
    "best_trade",
    "worst_trade",
    "max_losing_streak",
    "fees",
    "by_symbol",
    "by_month",
}

# The equity curve: (hour after T0, equity).
CURVE = [
    (1, 1000.0),
    (6, 1010.0),
    (12, 990.0),
    (24, 1005.0),  # midnight: the end of Jan 30
    (30, 1020.0),
    (40, 1000.0),
    (48, 1015.0),  # midnight: the end of Jan 31, and of January
    (60, 1030.0),
    (70, 1012.0),
    (71, 1012.0),
]
# Closed trades in closing order: symbol, entry hour, exit hour, pnl, fees, stake, stop_pct.
TRADES = [
    ("A/USDT", 2, 6, 10.0, 0.2, 100.0, 0.04),
    ("B/USDT", 5, 12, -5.0, 0.2, 100.0, 0.05),
    ("A/USDT", 26, 40, -3.0, 0.2, 50.0, 0.03),
    ("B/USDT", 45, 48, 0.0, 0.1, 100.0, 0.04),
    ("A/USDT", 50, 60, 7.0, 0.2, 100.0, 0.05),
    ("B/USDT", 61, 70, -4.0, 0.2, 100.0, 0.04),
]
OPEN_AT = [70]  # one position opened at hour 70, still open at the end (hour 71)
START = 1000.0


def closed(trades: list[tuple[str, int, int, float, float, float, float]]) -> ClosedTrades:
    symbols = sorted({t[0] for t in trades})
    return ClosedTrades.from_columns(
        symbols,
        {
            "symbol": [symbols.index(t[0]) for t in trades],
            "entry_time": [T0 + t[1] * H for t in trades],
            "exit_time": [T0 + t[2] * H for t in trades],
            "pnl": [t[3] for t in trades],
            "fees": [t[4] for t in trades],
            "stake": [t[5] for t in trades],
            "stop_pct": [t[6] for t in trades],
        },
    )


@pytest.fixture(scope="module")
def case() -> Performance:
    return performance(
        START,
        [T0 + h * H for h, _ in CURVE],
        [e for _, e in CURVE],
        closed(TRADES),
        [T0 + h * H for h in OPEN_AT],
    )


def test_daily_ratios_by_hand(case: Performance) -> None:
    # End-of-day equity: Jan 30 → 1005 (the sample at midnight ends that day), Jan 31 → 1015,
    # Feb 1 → 1012 (its last sample); the first day is measured from the starting balance.
    days = [START, 1005.0, 1015.0, 1012.0]
    r = [b / a - 1 for a, b in itertools.pairwise(days)]
    mean = sum(r) / len(r)
    assert case.cagr == pytest.approx((1012.0 / 1000.0) ** (DAYS_PER_YEAR / 3) - 1, rel=1e-12)
    assert case.sharpe == pytest.approx(mean / statistics.stdev(r) * math.sqrt(365), rel=1e-12)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    assert case.sortino == pytest.approx(mean * 365 / (downside * math.sqrt(365)), rel=1e-12)
    # Calmar over the drawdown of the full curve (not of the daily series).
    assert case.calmar == pytest.approx(case.cagr / (20 / 1010), rel=1e-12)


def test_drawdown_by_hand(case: Performance) -> None:
    # Deepest: 1010 → 990. Longest: under 1020 from hour 30 until 1030 at hour 60.
    assert case.max_drawdown == pytest.approx(20 / 1010, rel=1e-15)
    assert case.max_drawdown_duration_s == 30 * 3600


def test_trade_figures_by_hand(case: Performance) -> None:
    pnl = [t[3] for t in TRADES]
    r = [t[3] / (t[5] * t[6]) for t in TRADES]  # 2.5, -1, -2, 0, 1.4, -1
    t = case.trades
    assert (t.closed_trades, t.wins) == (6, 2)
    assert t.profit_factor == pytest.approx((10 + 7) / (5 + 3 + 4), rel=1e-15)
    assert t.expectancy == pytest.approx(sum(pnl) / 6, rel=1e-15)
    assert t.expectancy_r == pytest.approx(sum(r) / 6, rel=1e-12)
    assert case.sqn == pytest.approx(math.sqrt(6) * statistics.mean(r) / statistics.stdev(r), rel=1e-12)
    assert (t.best_trade, t.worst_trade) == (10.0, -5.0)
    assert t.fees == pytest.approx(1.1, rel=1e-15)
    # Losses -5, -3 in a row; the trade at exactly 0 ends a streak.
    assert case.max_losing_streak == 2
    holds = [(t[2] - t[1]) * 3600 for t in TRADES]  # 4, 7, 14, 3, 10, 9 hours
    assert case.avg_hold_s == pytest.approx(sum(holds) / 6, rel=1e-15)
    assert case.median_hold_s == (7 + 9) / 2 * 3600


def test_exposure_by_hand(case: Performance) -> None:
    # Union of [2,6] [5,12] [26,40] [45,48] [50,60] [61,70] and the open [70,71]: 10+14+3+10+10 hours
    # over the curve's span, hour 1 to hour 71.
    assert case.exposure == pytest.approx(47 / 70, rel=1e-15)


def test_breakdowns_by_hand(case: Performance) -> None:
    a, b = case.by_symbol["A/USDT"], case.by_symbol["B/USDT"]
    assert list(case.by_symbol) == ["A/USDT", "B/USDT"]
    assert (a.closed_trades, a.wins, a.net_pnl, a.best_trade, a.worst_trade) == (3, 2, 14.0, 10.0, -3.0)
    assert a.profit_factor == pytest.approx(17 / 3) and a.expectancy == pytest.approx(14 / 3)
    assert a.expectancy_r == pytest.approx((2.5 - 2 + 1.4) / 3)
    assert (b.closed_trades, b.wins, b.net_pnl, b.profit_factor) == (3, 0, -9.0, 0.0)
    assert b.expectancy_r == pytest.approx(-2 / 3)
    # The trade that closed at midnight of Feb 1 closed at the end of January.
    assert list(case.by_month) == ["2024-01", "2024-02"]
    jan, feb = case.by_month["2024-01"], case.by_month["2024-02"]
    assert (jan.closed_trades, jan.wins, jan.net_pnl, jan.end_equity) == (4, 1, 2.0, 1015.0)
    assert jan.equity_return == pytest.approx(1015 / 1000 - 1, rel=1e-15)
    assert (feb.closed_trades, feb.wins, feb.net_pnl, feb.end_equity) == (2, 1, 3.0, 1012.0)
    assert feb.equity_return == pytest.approx(1012 / 1015 - 1, rel=1e-15)
    assert jan.fees + feb.fees == pytest.approx(1.1)


def test_json_has_the_design_keys_and_is_strict(case: Performance) -> None:
    doc = case.to_json()
    assert set(doc) | {"fees"} == DESIGN_KEYS  # ``fees`` comes with the trade tally
    json.dumps(doc, allow_nan=False)
    assert doc["by_symbol"]["B/USDT"]["win_rate"] == 0.0
    assert doc["by_month"]["2024-02"]["return"] == pytest.approx(1012 / 1015 - 1)


def test_undefined_figures_are_none() -> None:
    times = [T0 + h * H for h in range(0, 72, 6)]
    flat = performance(START, times, [START] * len(times), closed([]))
    doc = flat.to_json()
    json.dumps(doc, allow_nan=False)
    for key in (
        "sharpe",  # no dispersion
        "sortino",  # no losing day
        "calmar",  # no drawdown
        "profit_factor",
        "expectancy",
        "expectancy_r",
        "sqn",
        "avg_hold_s",
        "median_hold_s",
        "best_trade",
        "worst_trade",
    ):
        assert doc[key] is None, key
    assert (doc["cagr"], doc["max_drawdown"], doc["max_drawdown_duration_s"]) == (0.0, 0.0, 0)
    assert (doc["exposure"], doc["max_losing_streak"], doc["by_symbol"]) == (0.0, 0, {})

    wins_only = performance(START, times, np.linspace(START, 1100, len(times)), closed(TRADES[:1]))
    assert wins_only.trades.profit_factor is None and wins_only.sqn is None  # one trade: no stdev
    assert wins_only.sortino is None and wins_only.max_drawdown == 0.0

    empty = performance(START, [], [], closed([]))
    assert (empty.cagr, empty.sharpe, empty.exposure, empty.by_month) == (None, None, None, {})
    json.dumps(empty.to_json(), allow_nan=False)


def test_days_without_a_sample_keep_the_equity_before() -> None:
    times = np.asarray([T0 + 12 * H, T0 + 3 * 24 * H + 12 * H], dtype=np.int64)
    assert daily_equity(START, times, np.asarray([1010.0, 990.0])).tolist() == [
        START,
        1010.0,
        1010.0,
        1010.0,
        990.0,
    ]


def test_refuses_ragged_columns() -> None:
    with pytest.raises(ValueError, match="one length"):
        ClosedTrades.from_columns(
            ["A"],
            {
                "symbol": [0],
                "entry_time": [0, 1],
                "exit_time": [1],
                "pnl": [1.0],
                "fees": [0.0],
                "stake": [1.0],
                "stop_pct": [0.03],
            },
        )
    with pytest.raises(ValueError, match="must not decrease"):
        performance(START, [2, 1], [1.0, 1.0], closed([]))


# --- the replay: the same figures from its trades, in --json, and in the table ------------------


@pytest.fixture(scope="module")
def bundled(bundled_data: Path) -> ReplayResult:
    return sigil.replay(bundled_data)


def test_replay_figures_equal_a_loop_over_its_trades(bundled: ReplayResult) -> None:
    for name in bundled.variants:
        mine = [t for t in bundled.trades if t.variant == name]
        p = bundled.performance[name]
        wins = sum(t.pnl for t in mine if t.pnl > 0)
        losses = -sum(t.pnl for t in mine if t.pnl < 0)
        assert p.trades.profit_factor == pytest.approx(wins / losses, rel=1e-12)
        assert p.trades.expectancy == pytest.approx(sum(t.pnl for t in mine) / len(mine), rel=1e-12)
        r = [t.pnl / (t.stake * t.stop_pct) for t in mine]
        assert p.trades.expectancy_r == pytest.approx(statistics.mean(r), rel=1e-12)
        assert p.trades.best_trade == max(t.pnl for t in mine)
        assert p.trades.worst_trade == min(t.pnl for t in mine)
        streak = longest = 0
        for t in mine:
            streak = streak + 1 if t.pnl < 0 else 0
            longest = max(longest, streak)
        assert p.max_losing_streak == longest
        assert p.median_hold_s == statistics.median((t.exit_time - t.entry_time) / 1000 for t in mine)
        assert p.max_drawdown == bundled.metrics[name].max_drawdown
        assert sum(f.closed_trades for f in p.by_symbol.values()) == len(mine)
        assert sum(f.closed_trades for f in p.by_month.values()) == len(mine)
        final = list(p.by_month.values())[-1].end_equity
        assert final == bundled.metrics[name].equity


def test_replay_json_carries_every_figure(bundled: ReplayResult) -> None:
    doc = json.loads(json.dumps(bundled.to_json(), allow_nan=False))
    for name, v in doc["variants"].items():
        assert set(v) >= DESIGN_KEYS, name
        assert v["fees"] == bundled.metrics[name].fees  # the tally's figure, unchanged
        assert v["max_drawdown"] == bundled.metrics[name].max_drawdown
        assert set(v["by_symbol"]) <= set(doc["symbols"])
        for month, f in v["by_month"].items():
            assert len(month) == 7 and month[4] == "-"
            assert {"return", "end_equity", "closed_trades", "wins", "net_pnl", "fees"} == set(f)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sigil", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_replay_prints_the_compact_figures_and_the_full_ones(bundled_data: Path) -> None:
    compact = _run("replay", "--data", str(bundled_data))
    assert compact.returncode == 0, compact.stderr
    heads = [line for line in compact.stdout.splitlines() if line.startswith("variant")]
    assert len(heads) == 2 and "closed trades" in heads[0]
    for col in ("CAGR", "Sharpe", "Sortino", "max DD", "profit factor", "expectancy", "exposure"):
        assert col in heads[1]
    assert "by month" not in compact.stdout

    full = _run("replay", "--data", str(bundled_data), "--metrics", "full")
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    for label in ("Calmar", "SQN", "median hold", "longest losing streak", "fees", "expectancy (R)"):
        assert any(line.startswith(label) for line in lines), label
    assert any(line.startswith("2024-01 ") for line in lines)
    assert any(line.startswith("BTC/USDT ") for line in lines)

    bad = _run("replay", "--data", str(bundled_data), "--metrics", "most")
    assert bad.returncode == 2 and "--metrics" in bad.stderr
