"""The checks of ``sigil doctor``: is everything a daemon needs in place, before starting one?

Each check gives one :class:`Check`: a verdict (``ok``, ``warn``, ``FAIL``) and why. In order: the
config is valid; the database is reachable and migrated; the embedded server's data directory is
writable and has room; the exchange answers, and its clock agrees with this machine's; the API keys
are in the environment when ``--live`` would need them (never shown); the health port is free; the
heartbeat of each instance is fresh. Only ``FAIL`` makes the doctor exit 1: a ``warn`` is worth
knowing but stops nothing (a simulator's clock, say, is far from this machine's on purpose).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sigil.config import Config, api_token, load_config
from sigil.daemon.http_address import is_loopback, port_in_use
from sigil.errors import ExchangeRejected, ExchangeUnavailable, LiveKeysMissing, SigilError
from sigil.exchange.redaction import public_url

if TYPE_CHECKING:
    from sigil.store.heartbeats import Heartbeat
    from sigil.store.instances import Holder

Verdict = Literal["ok", "warn", "FAIL"]

#: Free space under which the embedded server's disk is a failure, and a warning.
DISK_FAIL_BYTES = 100 * 2**20
DISK_WARN_BYTES = 1 * 2**30
#: Clock skew against the exchange worth a warning; live trading fails beyond the second bound
#: (signed requests outside the exchange's receive window are refused).
SKEW_WARN_S = 1.0
SKEW_LIVE_FAIL_S = 5.0
#: How long the doctor waits for the exchange, and for a daemon's /health, per attempt.
EXCHANGE_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        """``verdict  name  detail``, aligned."""
        return f"{self.verdict:<5} {self.name:<16} {self.detail}"


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, "FAIL", detail)


def _warn(name: str, detail: str) -> Check:
    return Check(name, "warn", detail)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


async def run_checks(
    config_dir: str | None,
    database_url: str | None,
    exchange_url: str | None,
    live: bool,
) -> AsyncIterator[Check]:
    """Every check in order (see the module docstring); stops after a config that cannot be loaded."""
    try:
        config = load_config(config_dir)
    except (SigilError, ValueError, OSError) as e:
        yield _fail("config", str(e))
        return
    daemon = config.settings.daemon
    yield _ok(
        "config",
        f"{config.source}: {len(config.variants)} variants ({', '.join(v.name for v in config.variants)}),"
        f" instance {daemon.instance}",
    )
    async for check in _database_checks(config, database_url):
        yield check
    for check in await _exchange_checks(config, exchange_url, live):
        yield check
    yield _keys_check(config, live)
    yield await asyncio.to_thread(_port_check, daemon.health_host, daemon.health_port)


# -- the database, its data directory, the heartbeats -------------------------------------------------


async def _database_checks(config: Config, database_url: str | None) -> AsyncIterator[Check]:
    from sigil.store import Database, HeartbeatStore, resolve_target, schema_status
    from sigil.store.instances import all_instances

    try:
        target = resolve_target(database_url, config.settings.database)
    except SigilError as e:
        yield _fail("database", str(e))
        yield _warn("heartbeats", "not checked: no database")
        return
    if target.embedded:
        yield _data_dir_check(target.pgdata)
    try:
        db = await Database.open(target, config.settings.database, min_size=1, max_size=2)
    except SigilError as e:
        where = target.describe()
        yield _fail("database", str(e) if where in str(e) else f"{where}: {e}")
        yield _warn("heartbeats", "not checked: no database")
        return
    try:
        status = await schema_status(db)
        where = target.describe()
        if status.current:
            yield _ok("database", f"{where}: reachable, schema at version {status.version} (current)")
        elif status.changed or status.unknown:
            what = "changed since applied" if status.changed else "from a newer release"
            yield _fail("database", f"{where}: schema at version {status.version} has migrations {what}")
        else:
            yield _fail(
                "database",
                f"{where}: schema at version {status.version}, {len(status.pending)} migration(s) "
                "pending: run sigil migrate",
            )
        if status.version == 0:
            yield _warn("heartbeats", "not checked: no schema")
            return
        beats = await HeartbeatStore(db).latest_per_instance()
        instances = {h.instance: (h, live) for h, live in await all_instances(db)}
        for check in _heartbeat_checks(config, beats, instances):
            yield check
    except SigilError as e:
        yield _fail("database", f"{target.describe()}: {e}")
    finally:
        await db.close()


def _data_dir_check(pgdata: Path) -> Check:
    """The embedded server's data directory: writable (or creatable), and the free space of its disk."""
    name = "data directory"
    existing = pgdata
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return _fail(name, f"{pgdata}: {existing} is not writable")
    free = shutil.disk_usage(existing).free
    state = "exists" if pgdata.exists() else "will be created"
    detail = f"{pgdata} ({state}): writable, {free / 2**30:.1f} GiB free"
    if free < DISK_FAIL_BYTES:
        return _fail(name, detail + f" (under {DISK_FAIL_BYTES // 2**20} MiB)")
    if free < DISK_WARN_BYTES:
        return _warn(name, detail + " (under 1 GiB)")
    return _ok(name, detail)


def _heartbeat_checks(
    config: Config, beats: Mapping[str, Heartbeat], instances: Mapping[str, tuple[Holder, bool]]
) -> list[Check]:
    """One line per instance: the age of its last heartbeat; FAIL when it runs and is stale."""
    max_age = config.settings.daemon.heartbeat_max_age_s
    names = sorted(set(beats) | set(instances))
    if not names:
        return [_ok("heartbeats", "no daemon has run on this database yet")]
    now = datetime.now(UTC)
    out: list[Check] = []
    for name in names:
        hb = beats.get(name)
        holder, running = instances.get(name, (None, False))
        who = f"running, pid {holder.pid} on {holder.host}" if running and holder else "not running"
        label = f"heartbeat {name}"
        if hb is None:
            out.append(_ok(label, f"no pass completed yet ({who})"))
            continue
        age = (now - hb.finished_at).total_seconds()
        detail = f"last pass {_age(age)} ago ({who}; stale after {max_age:g}s)"
        out.append(_fail(label, detail) if running and age > max_age else _ok(label, detail))
    return out


# -- the exchange and its clock, the keys ---------------------------------------------------------------


async def _exchange_checks(config: Config, exchange_url: str | None, live: bool) -> list[Check]:
    from sigil.exchange.ccxt_client import ExchangeClient
    from sigil.exchange.settings import resolve_exchange

    cfg = config.settings.exchange
    # One retry and a short timeout: the doctor says "unreachable" in seconds, not after the daemon's
    # patient back-off.
    quick = cfg.model_copy(update={"retries": 1, "timeout_s": min(cfg.timeout_s, EXCHANGE_TIMEOUT_S)})
    try:
        settings = resolve_exchange(quick, url=exchange_url)
    except SigilError as e:
        return [_fail("exchange", str(e)), _warn("clock", "not checked: no exchange")]
    where = f"{cfg.id} at {public_url(settings.url) or 'its own URL'}"
    client = ExchangeClient(settings)
    try:
        before = time.time()
        server_ms = await client.server_time()
        after = time.time()
    except (ExchangeUnavailable, ExchangeRejected) as e:
        return [_fail("exchange", f"{where}: {e}"), _warn("clock", "not checked: no exchange")]
    finally:
        await client.close()
    rtt = after - before
    skew = server_ms / 1000 - (before + after) / 2
    checks = [_ok("exchange", f"{where}: reachable ({rtt * 1000:.0f} ms)")]
    side = "ahead of" if skew > 0 else "behind"
    detail = f"the exchange's clock is {_age(abs(skew))} {side} this machine's"
    if abs(skew) <= SKEW_WARN_S:
        checks.append(_ok("clock", f"{detail} ({skew * 1000:+.0f} ms)"))
    elif live and abs(skew) > SKEW_LIVE_FAIL_S:
        checks.append(_fail("clock", f"{detail}: signed orders would be refused; sync this machine's clock"))
    else:
        checks.append(_warn("clock", f"{detail} (a simulator's clock, or this machine's needs syncing)"))
    return checks


def _keys_check(config: Config, live: bool) -> Check:
    from sigil.exchange.settings import ENV_API_KEY, ENV_API_SECRET, resolve_exchange

    try:
        resolve_exchange(config.settings.exchange, live=True)
        found = True
    except LiveKeysMissing:
        found = False
    if live:
        if found:
            return _ok("keys", f"{ENV_API_KEY} and {ENV_API_SECRET} are set (not shown)")
        return _fail("keys", f"--live needs {ENV_API_KEY} and {ENV_API_SECRET} in the environment")
    state = "set" if found else "not set"
    return _ok("keys", f"paper trading needs none ({ENV_API_KEY}/{ENV_API_SECRET} {state})")


# -- the health port ------------------------------------------------------------------------------------


def _port_check(host: str, port: int) -> Check:
    name = "health port"
    if not is_loopback(host) and api_token() is None:
        return _fail(name, f"daemon.health_host {host!r} is not loopback and SIGIL_API_TOKEN is not set")
    if port == 0:
        return _ok(name, "0: any free port at start-up")
    error = port_in_use(host, port)
    if error is None:
        return _ok(name, f"{host}:{port} is free")
    daemon = _daemon_on(host, port)
    if daemon is not None:
        return _warn(name, f"{host}:{port} is in use by a running daemon ({daemon})")
    return _fail(
        name, f"{host}:{port} is in use ({error.strerror}): change --health-port or daemon.health_port"
    )


def _daemon_on(host: str, port: int) -> str | None:
    """Which daemon answers /health on the port, if one does (a wildcard address is asked on loopback)."""
    ask = host if is_loopback(host) else "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://{ask}:{port}/health", timeout=HEALTH_TIMEOUT_S) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 = a stale daemon: still a daemon
        try:
            doc = json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "instance" not in doc:
        return None
    return f"instance {doc['instance']}, pid {doc.get('pid')}, status {doc.get('status')}"
