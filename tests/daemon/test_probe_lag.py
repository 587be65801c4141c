"""``sigil probe --max-lag``: a daemon that passes but falls behind the exchange is stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sigil.config import load_config
from sigil.config_digest import ProbeSettings
from sigil.daemon.heartbeat import PROBE_FRESH, PROBE_STALE, judge, probe
from sigil.store import Database, HeartbeatStore, PassStats

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_judge_lag() -> None:
    fresh = NOW - timedelta(seconds=5)
    assert judge(fresh, 60, NOW, lag_s=3600.0, max_lag_s=7200.0).code == PROBE_FRESH
    behind = judge(fresh, 60, NOW, lag_s=9000.0, max_lag_s=7200.0)
    assert behind.code == PROBE_STALE and "9000s behind the exchange's clock" in behind.line
    assert judge(fresh, 60, NOW, lag_s=None, max_lag_s=7200.0).code == PROBE_STALE
    assert judge(fresh, 60, NOW, lag_s=9000.0).code == PROBE_FRESH  # no --max-lag: age only


@pytest.mark.postgres
async def test_probe_reads_the_lag_of_the_newest_heartbeat(db_url: str) -> None:
    db = await Database.open(db_url, min_size=1, max_size=1)
    try:
        now = datetime.now(UTC)
        market = datetime(2024, 1, 1, tzinfo=UTC)
        await HeartbeatStore(db).record(
            PassStats(
                started_at=now - timedelta(seconds=1),
                finished_at=now,
                symbols_scanned=3,
                candles_decided=3,
                market_time=market,
                exchange_time=market + timedelta(hours=3),
            )
        )
    finally:
        await db.close()
    cfg = ProbeSettings.of(load_config())
    ok = await probe(cfg, db_url, 60, max_lag_s=4 * 3600)
    assert ok.code == PROBE_FRESH and "3 candles decided" in ok.line
    behind = await probe(cfg, db_url, 60, max_lag_s=2 * 3600)
    assert behind.code == PROBE_STALE and "10800s behind" in behind.line
