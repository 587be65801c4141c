"""``/health`` (JSON, 503 when stale) and ``/metrics`` (Prometheus text) on a loopback port, and the
routes other modules add (the dashboard, :mod:`sigil.daemon.dashboard`; the control endpoints,
:mod:`sigil.daemon.api`).

``/health`` and ``/metrics`` only read: they call back into the daemon for a snapshot on each
request and never touch the database or the exchange, so a scrape cannot slow a pass down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
#: The server's address is logged at start-up even when the daemon logs warnings only (``--quiet``):
#: with ``--health-port 0`` it is the one way to learn where the dashboard is.
address_log = logging.getLogger(f"{__name__}.address")
address_log.setLevel(logging.INFO)

#: ``Content-Type`` of the Prometheus text exposition format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
MetricsFn = Callable[[], str]
#: Adds routes to the server's application before it starts.
Routes = Callable[[web.Application], None]


class HealthServer:
    """An aiohttp server with ``/health``, ``/metrics`` and what ``routes`` add. ``health()`` returns
    (healthy, document)."""

    def __init__(
        self, host: str, port: int, health: HealthFn, metrics: MetricsFn, routes: Sequence[Routes] = ()
    ) -> None:
        self.host = host
        self.port = port
        self._health = health
        self._metrics = metrics
        self._routes = tuple(routes)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listens; returns the bound port (useful with port 0). Raises OSError when the port is taken."""
        app = web.Application()
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        for add in self._routes:
            add(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health on http://%s:%d/health and /metrics", self.host, self.port)
        if self._routes:
            address_log.info("dashboard: http://%s:%d/", self.host, self.port)
        return self.port

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stops listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_health(self, _request: web.Request) -> web.Response:
        try:
            healthy, doc = self._health()
        except Exception as e:  # a broken snapshot is itself unhealthy, and must still answer
            log.exception("health snapshot failed")
            healthy, doc = False, {"status": "error", "error": f"{type(e).__name__}: {e}"}
        return web.json_response(doc, status=200 if healthy else 503)

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        body = self._metrics()
        return web.Response(body=body.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})
