"""The dead-man probe: is the newest scanner heartbeat younger than ``max_age``?

Heartbeats are written only after a pass completes, so a fresh one proves progress. The probe runs
outside the daemon (cron, a systemd timer, a monitor) and reads the database only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sigil.config_digest import ProbeSettings
from sigil.errors import ConfigError, DatabaseUnavailable, MigrationError

#: Exit statuses of ``sigil probe``.
PROBE_FRESH = 0
PROBE_STALE = 1
PROBE_UNKNOWN = 2


@dataclass(frozen=True)
class ProbeResult:
    """The verdict: ``code`` (0 fresh, 1 stale or missing, 2 cannot tell) and one line saying why."""

    code: int
    line: str
    age_s: float | None = None


def judge(
    finished_at: datetime | None,
    max_age_s: float,
    now: datetime,
    detail: str = "",
    *,
    lag_s: float | None = None,
    max_lag_s: float | None = None,
) -> ProbeResult:
    """The verdict for a heartbeat that finished at ``finished_at`` (None: there is none). With
    ``max_lag_s``, also stale when the newest decided candle closed more than that before the
    exchange's clock at that pass (``lag_s``; unknown lag counts as behind)."""
    if finished_at is None:
        return ProbeResult(PROBE_STALE, "STALE: no scanner pass has completed yet")
    age = (now - finished_at).total_seconds()
    extra = f" ({detail})" if detail else ""
    if max_lag_s is not None and (lag_s is None or lag_s > max_lag_s):
        behind = "an unknown time" if lag_s is None else f"{lag_s:.0f}s"
        return ProbeResult(
            PROBE_STALE,
            f"STALE: the newest decided candle is {behind} behind the exchange's clock,"
            f" max lag {max_lag_s:g}s{extra}",
            age,
        )
    if age > max_age_s:
        return ProbeResult(
            PROBE_STALE, f"STALE: last pass completed {age:.1f}s ago, max age {max_age_s:g}s{extra}", age
        )
    return ProbeResult(
        PROBE_FRESH, f"OK: last pass completed {age:.1f}s ago, max age {max_age_s:g}s{extra}", age
    )


async def probe(
    settings: ProbeSettings,
    database_url: str | None,
    max_age_s: float,
    *,
    timeout_s: float | None = None,
    instance: str | None = None,
    max_lag_s: float | None = None,
) -> ProbeResult:
    """Reads the newest heartbeat of ``instance`` (default ``daemon.instance``: with several daemons
    on one database, each is probed on its own) and judges it; every failure to read becomes code 2,
    never a raise.

    The whole probe is bounded by ``timeout_s`` (default: the database connect timeout plus one
    statement timeout), so a hung database makes it say "cannot tell" instead of hanging cron.
    """
    from sigil.store import HeartbeatStore, open_database, require_current

    cfg = settings.database
    bound = timeout_s if timeout_s is not None else cfg.connect_timeout_s + cfg.command_timeout_s

    async def read() -> ProbeResult:
        db = await open_database(database_url, cfg, min_size=1, max_size=1)
        try:
            await require_current(db)
            hb = await HeartbeatStore(db).latest(instance or settings.instance)
        finally:
            await db.close()
        now = datetime.now(UTC)
        if hb is None:
            return judge(None, max_age_s, now)
        detail = (
            f"{hb.instance}: {hb.symbols_scanned} symbols, {hb.candles_decided} candles decided,"
            f" {hb.errors} errors, {hb.host} pid {hb.pid}"
        )
        lag = hb.lag()
        return judge(
            hb.finished_at,
            max_age_s,
            now,
            detail,
            lag_s=None if lag is None else lag.total_seconds(),
            max_lag_s=max_lag_s,
        )

    try:
        return await asyncio.wait_for(read(), timeout=bound)
    except TimeoutError:
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: no answer from the database within {bound:g}s")
    except (DatabaseUnavailable, MigrationError, ConfigError) as e:
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {e}")
    except Exception as e:  # anything else still means "cannot tell", which is what a monitor needs
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {type(e).__name__}: {e}")
