"""The dead-man probe: is the newest scanner heartbeat younger than ``max_age``?

Heartbeats are written only after a pass completes, so a fresh one proves progress. The probe runs
outside the daemon (cron, a systemd timer, a monitor) and reads the database only.

:func:`probe_now` is what ``sigil probe`` runs: it reads over :mod:`sigil.store.wire` (no asyncio, no
asyncpg to import) when that client can make the connection as asyncpg would, and otherwise, or when
the server refuses anything, through :func:`probe` on asyncpg, which words every refusal as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sigil.config_digest import ProbeSettings
from sigil.errors import ConfigError, DatabaseUnavailable, MigrationError

if TYPE_CHECKING:
    from sigil.store.heartbeats import Heartbeat

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


def verdict(
    hb: Heartbeat | None, max_age_s: float, now: datetime, max_lag_s: float | None = None
) -> ProbeResult:
    """The verdict for the newest heartbeat ``hb`` (None: no pass has completed), with its detail."""
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


def _bound(settings: ProbeSettings, timeout_s: float | None) -> float:
    """The whole probe's time limit: the database connect timeout plus one statement timeout."""
    cfg = settings.database
    return timeout_s if timeout_s is not None else cfg.connect_timeout_s + cfg.command_timeout_s


def _no_answer(bound: float) -> ProbeResult:
    return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: no answer from the database within {bound:g}s")


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
    on one database, each is probed on its own) through asyncpg and judges it; every failure to read
    becomes code 2, never a raise.

    The whole probe is bounded by ``timeout_s`` (default: the database connect timeout plus one
    statement timeout), so a hung database makes it say "cannot tell" instead of hanging cron.
    """
    import asyncio  # here, not at the top: the probe's usual path (probe_now over the wire) has none

    from sigil.store import HeartbeatStore, open_database, require_current

    bound = _bound(settings, timeout_s)

    async def read() -> ProbeResult:
        db = await open_database(database_url, settings.database, min_size=1, max_size=1)
        try:
            await require_current(db)
            hb = await HeartbeatStore(db).latest(instance or settings.instance)
        finally:
            await db.close()
        return verdict(hb, max_age_s, datetime.now(UTC), max_lag_s)

    try:
        return await asyncio.wait_for(read(), timeout=bound)
    except TimeoutError:
        return _no_answer(bound)
    except (DatabaseUnavailable, MigrationError, ConfigError) as e:
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {e}")
    except Exception as e:  # anything else still means "cannot tell", which is what a monitor needs
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {type(e).__name__}: {e}")


def probe_now(
    settings: ProbeSettings,
    database_url: str | None,
    max_age_s: float,
    *,
    timeout_s: float | None = None,
    instance: str | None = None,
    max_lag_s: float | None = None,
) -> ProbeResult:
    """:func:`probe` as ``sigil probe`` runs it, synchronously: over :mod:`sigil.store.wire` when it
    can, else (and after any refusal it meets) through :func:`probe` in the time that is left. The
    same verdict either way; a server that does not answer in time is "cannot tell" at once, without
    waiting for it a second time."""
    from sigil.store.target import resolve_target

    bound = _bound(settings, timeout_s)
    start = time.monotonic()
    try:
        target = resolve_target(database_url, settings.database)
    except ConfigError as e:
        return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {e}")
    if target.url is not None:
        from sigil.store.wire import WireTimeout

        try:
            return _probe_wire(target.url, settings, max_age_s, start, bound, instance, max_lag_s)
        except WireTimeout as e:
            if not e.connecting:
                return _no_answer(bound)
            wait = min(settings.database.connect_timeout_s, bound)
            return ProbeResult(
                PROBE_UNKNOWN,
                f"UNKNOWN: cannot connect to {target.describe()}: database unavailable"
                f" (no answer within {wait:g}s)",
            )
        except MigrationError as e:
            return ProbeResult(PROBE_UNKNOWN, f"UNKNOWN: {e}")
        except Exception:
            pass
    import asyncio

    left = max(bound - (time.monotonic() - start), 0.0)
    return asyncio.run(
        probe(settings, database_url, max_age_s, timeout_s=left, instance=instance, max_lag_s=max_lag_s)
    )


def _probe_wire(
    url: str,
    settings: ProbeSettings,
    max_age_s: float,
    start: float,
    bound: float,
    instance: str | None,
    max_lag_s: float | None,
) -> ProbeResult:
    from sigil.store.heartbeats import latest_heartbeat_wire
    from sigil.store.migrate import require_current_wire
    from sigil.store.target import SERVER_SETTINGS
    from sigil.store.wire import WireConnection, WireParams

    params = WireParams.from_url(url)
    connect_by = start + min(settings.database.connect_timeout_s, bound)
    with WireConnection.open(params, connect_by, SERVER_SETTINGS) as conn:
        conn.deadline = start + bound
        require_current_wire(conn)
        hb = latest_heartbeat_wire(conn, instance or settings.instance)
    return verdict(hb, max_age_s, datetime.now(UTC), max_lag_s)
