"""The trade tally behind both variant tables (replay's and the daemon book's): equal, to the bit, to
a plain loop over the trades in order."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sigil.report.metrics import EXIT_REASONS, tally

NAMES = ("baseline", "moderate", "aggressive", "unhinged")
REASONS = ("hard_stop", "atr_trail", "time_stop", "manual", "order_failed")


def loop_tally(rows: list[tuple[int, int, float, float]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for k, name in enumerate(NAMES):
        n, wins, pnl, fees = 0, 0, 0.0, 0.0
        by: dict[str, list[float]] = {r: [0, 0.0] for r in EXIT_REASONS}
        for v, r, p, f in rows:
            if v != k:
                continue
            n += 1
            wins += p > 0
            pnl += p
            fees += f
            cell = by.setdefault(REASONS[r], [0, 0.0])
            cell[0] += 1
            cell[1] += p
        out[name] = {
            "closed_trades": n,
            "wins": wins,
            "net_pnl": pnl,
            "fees": fees,
            "by_reason": {r: (int(c[0]), c[1]) for r, c in by.items()},
        }
    return out


@pytest.mark.parametrize("seed", range(5))
def test_tally_equals_a_loop_in_trade_order(seed: int) -> None:
    rng = random.Random(seed)
    # Magnitudes far apart, so a pairwise or reordered sum would differ in the last bits.
    rows = [
        (
            rng.randrange(3),
            rng.choice((0, 0, 1, 1, 2, 3, 4)),
            rng.uniform(-1, 1) * 10 ** rng.randint(-6, 4),
            rng.random(),
        )
        for _ in range(rng.randint(0, 3000))
    ]
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    got = tally(NAMES, cols[0], cols[1], REASONS, cols[2], cols[3])
    want = loop_tally(rows)
    assert list(got) == list(NAMES)
    for name in NAMES:
        g = got[name]
        assert {
            "closed_trades": g.closed_trades,
            "wins": g.wins,
            "net_pnl": g.net_pnl,
            "fees": g.fees,
            "by_reason": g.by_reason,
        } == want[name]
        # table order: the known reasons first, then any other reason that occurred
        assert list(g.by_reason)[: len(EXIT_REASONS)] == list(EXIT_REASONS)
    assert got["unhinged"].closed_trades == 0 and "order_failed" not in got["unhinged"].by_reason
    assert got["unhinged"].by_reason["manual"] == (0, 0.0)


def test_tally_refuses_ragged_or_out_of_range_columns() -> None:
    with pytest.raises(ValueError, match="one length"):
        tally(NAMES, [0, 1], [0], REASONS, [1.0, 2.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="out of range"):
        tally(NAMES, [4], [0], REASONS, [1.0], [0.1])
    with pytest.raises(ValueError, match="out of range"):
        tally(NAMES, [0], [9], REASONS, [1.0], [0.1])
    assert (
        tally(NAMES, np.zeros(0), np.zeros(0), REASONS, np.zeros(0), np.zeros(0))["baseline"].net_pnl == 0.0
    )
