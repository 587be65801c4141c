"""Root cause 3: many processes opening the same pairs at once. Exactly one open per pair."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sigil.store import Database
from tests.support import store_workers as workers

pytestmark = pytest.mark.postgres

WORKERS = 8
VARIANTS = ["baseline", "moderate", "aggressive", "unhinged"]
SYMBOLS = [f"R{i:02d}/USDT" for i in range(32)]
PAIRS = [f"{v}|{s}" for v in VARIANTS for s in SYMBOLS]  # 128 pairs × 8 workers = 1,024 attempts


async def test_race_exactly_one_open_per_pair(db_url: str) -> None:
    script = str(Path(workers.__file__))
    start_at = time.time() + 2.5  # every worker has imported and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, script, "race", db_url, str(w), str(start_at), *PAIRS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    errors = [e for r in reports for e in r["errors"]]
    assert errors == [], "an exception escaped an open"
    answers: Counter[str] = Counter()
    for r in reports:
        answers.update(r["answers"])
    assert sum(answers.values()) == WORKERS * len(PAIRS) >= 1000
    assert answers["opened"] == len(PAIRS)
    assert set(answers) <= {"opened", "open", "cooldown"}, answers
    assert answers["cooldown"] > 0 and answers["open"] > 0, "both refusals were exercised"
    won = [w for r in reports for w in r["won"]]
    assert sorted(pair for pair, _, _ in won) == sorted(PAIRS)
    assert len({r["worker"] for r in reports if r["won"]}) > 1, "the opens were spread over processes"

    db = await Database.open(db_url, min_size=1, max_size=1)
    try:
        async with db.connection("check") as conn:
            per_pair = await conn.fetch(
                "SELECT variant_id, symbol, count(*) AS n,"
                " count(*) FILTER (WHERE status = 'open') AS still_open"
                " FROM micro_positions GROUP BY 1, 2"
            )
            protections = await conn.fetch(
                "SELECT variant_id, symbol, protected_until FROM symbol_protections"
            )
            events = await conn.fetch("SELECT kind, count(*) AS n FROM events GROUP BY kind")
            balances = {
                r["variant_id"]: r["balance"] for r in await conn.fetch("SELECT * FROM variant_accounts")
            }
    finally:
        await db.close()

    closed = {pair for pair, _, was_closed in won if was_closed}
    assert len(per_pair) == len(PAIRS) and all(r["n"] == 1 for r in per_pair)
    assert {f"{r['variant_id']}|{r['symbol']}" for r in per_pair if r["still_open"] == 0} == closed
    # One protection per pair, from the winner's open time; losers wrote none.
    assert len(protections) == len(PAIRS)
    assert {r["protected_until"] for r in protections} == {workers.RACE_TIME + workers.COOLDOWN}
    assert {r["kind"]: r["n"] for r in events} == {"open": len(PAIRS), "close": len(closed)}
    # Accounts moved by the winners only: stake + fee per open, proceeds per close.
    for v in VARIANTS:
        n_open = sum(1 for pair in PAIRS if pair.startswith(v + "|"))
        n_closed = sum(1 for pair in closed if pair.startswith(v + "|"))
        assert balances[v] == pytest.approx(1000.0 - n_open * 10.01 + n_closed * 9.99, abs=1e-9)
