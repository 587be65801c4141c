"""Assembling a daemon process: configuration, the exchange asked first, the database, the instance
lease, the scanner, notifications and the HTTP routes, handed to a :class:`~sigil.daemon.app.Daemon`
that runs them; :func:`serve` is what ``sigil daemon`` calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sigil.config import Config
from sigil.daemon.app import Daemon, RunLimits
from sigil.daemon.health import HealthFn, Routes
from sigil.daemon.metrics import DaemonMetrics
from sigil.daemon.passes import PassReport
from sigil.daemon.systemd import SystemdNotifier

if TYPE_CHECKING:
    from sigil.daemon.scanner import Scanner
    from sigil.exchange.ccxt_client import ExchangeClient
    from sigil.exchange.settings import ExchangeSettings
    from sigil.notify.sender import NotificationSender
    from sigil.store import Database

log = logging.getLogger(__name__)

#: Run until stopped.
NO_LIMITS = RunLimits()


async def serve(
    config: Config,
    *,
    database_url: str | None = None,
    exchange_url: str | None = None,
    limits: RunLimits = NO_LIMITS,
    until_ms: int | None = None,
    on_pass: Callable[[Scanner, PassReport], None] | None = None,
    health_port: int | None = -1,
    handle_signals: bool = True,
    live: bool = False,
    standby: bool = False,
) -> int:
    """``sigil daemon``: builds the exchange client and asks the exchange for its clock, then opens
    the database, runs the scanner under a :class:`Daemon` until it stops, and closes everything in
    reverse order. Returns the exit status.

    ``live`` sends real orders with the API keys from the environment (``--live``); it raises
    :class:`~sigil.errors.LiveKeysMissing` before anything starts when a key is missing.

    One process per instance: the instance's lease is taken before anything is written; held by
    another process (or a share that overlaps a live instance's), :class:`~sigil.errors.InstanceHeld`
    (exit 4), unless ``standby`` (``--standby``): then it waits for the lease. A lease lost to
    another process stops the daemon with exit 1 (see :mod:`sigil.daemon.lease`).

    Raises :class:`~sigil.errors.DatabaseUnavailable`, :class:`~sigil.errors.SchemaNotReady` or
    :class:`~sigil.errors.ExchangeUnavailable` when start-up cannot complete; an exchange that
    cannot be reached raises before anything is written to the database.

    Checked before anything starts (:class:`~sigil.errors.ConfigError`, exit 2): the health port is
    free (:mod:`sigil.daemon.http_address`), a non-loopback ``daemon.health_host`` has an API token,
    every notification URL is one apprise accepts. Notices go out through a
    :class:`~sigil.notify.sender.NotificationSender` when ``notify.urls`` / ``SIGIL_NOTIFY_URLS``
    name any; its queues get ``notify.flush_s`` to empty at the stop.
    """
    from sigil.config import api_token, notify_urls
    from sigil.daemon.http_address import check_http_address
    from sigil.exchange.settings import resolve_exchange

    settings = config.settings
    metrics = DaemonMetrics()
    port = settings.daemon.health_port if health_port == -1 else health_port
    # Before anything starts: a port taken by another daemon, or an unguarded public address, is exit 2.
    check_http_address(settings.daemon.health_host, port, api_token())
    exchange = resolve_exchange(settings.exchange, url=exchange_url, live=live)
    urls = notify_urls(settings.notify)
    notifications: NotificationSender | None = None
    if urls:
        from sigil.notify.sender import sender_for

        notifications = sender_for(urls, settings.notify, metrics)
    try:
        return await _serve(
            config, exchange, metrics, notifications, database_url, limits, until_ms, on_pass, port,
            handle_signals, live, standby,
        )  # fmt: skip
    finally:
        if notifications is not None:
            # The "stopped" notice is queued last: the queues get notify.flush_s to empty.
            await asyncio.to_thread(notifications.close)


async def _serve(
    config: Config,
    exchange: ExchangeSettings,
    metrics: DaemonMetrics,
    notifications: NotificationSender | None,
    database_url: str | None,
    limits: RunLimits,
    until_ms: int | None,
    on_pass: Callable[[Scanner, PassReport], None] | None,
    health_port: int | None,
    handle_signals: bool,
    live: bool,
    standby: bool,
) -> int:
    """:func:`serve` once its checks have passed and its notification sender runs."""
    from sigil.daemon.lease import InstanceLease
    from sigil.daemon.scanner import Scanner
    from sigil.errors import EXIT_UNAVAILABLE
    from sigil.exchange.ccxt_client import ExchangeClient
    from sigil.store import open_database

    settings = config.settings
    notify = None if notifications is None else notifications.send
    client = ExchangeClient(exchange)
    try:
        # The exchange first: unreachable at start-up is ExchangeUnavailable (exit 1) before the
        # database is even opened, so no account, event, job row or heartbeat is written.
        await _reach_exchange(client)
        db = await open_database(database_url, settings.database)
        lease = InstanceLease.of(db, config)
        try:
            # Before anything is written: held elsewhere is InstanceHeld (exit 4); --standby waits.
            await lease.take(standby=standby)
            scanner = Scanner(
                config, db, client, metrics=metrics, until_ms=until_ms, on_pass=on_pass, notify=notify
            )
            await scanner.start()
            try:
                daemon = Daemon(
                    settings.daemon,
                    lease.guard(scanner),
                    database_url=db.url,
                    metrics=metrics,
                    notifier=SystemdNotifier.from_env(),
                    limits=limits,
                    health_port=health_port,
                    handle_signals=handle_signals,
                    extra_health=lambda: {**scanner.describe(), "lease": lease.describe()},
                    routes=operator_routes(db, config, lambda: daemon.health()),
                    notifications=notifications,
                    mode="live" if live else "paper",
                )
                lease.on_lost(lambda why: daemon.request_stop(why, EXIT_UNAVAILABLE))
                log.info(
                    "database: %s; exchange: %r; %s",
                    db.describe(),
                    client,
                    "LIVE: real orders" if live else "paper trading",
                )
                return await daemon.run()
            finally:
                await scanner.close()
        finally:
            await lease.release()
            await db.close()
    finally:
        await client.close()


async def _reach_exchange(client: ExchangeClient) -> None:
    """Asks the exchange for its clock (with the client's retries); ExchangeUnavailable names it."""
    from sigil.errors import ExchangeUnavailable

    try:
        await client.server_time()
    except ExchangeUnavailable as e:
        raise ExchangeUnavailable(f"cannot reach the exchange at start-up: {e}", e.retry_after_s) from e


def operator_routes(db: Database, config: Config, health: HealthFn) -> list[Routes]:
    """The operator's routes on the health server: the dashboard (``GET /``, ``GET /api/state``) and
    the control endpoints (on only with ``SIGIL_API_TOKEN``)."""
    from sigil.config import api_token
    from sigil.daemon.api import ControlApi
    from sigil.daemon.dashboard import Dashboard

    names = [v.name for v in config.variants]
    return [Dashboard(db, config, health).install, ControlApi(db, api_token(), names).install]
