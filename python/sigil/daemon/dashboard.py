"""The dashboard: ``GET /`` renders one page server-side, ``GET /api/state`` returns the same as JSON.

One function, :meth:`Dashboard.state`, builds the state from the database (the book of
:mod:`sigil.report.book`, the audit log, the pauses) and from the daemon's own ``/health`` document
(heartbeat, scheduler); the page is that state through a jinja2 template. The charts are inline SVG
(:mod:`sigil.report.charts`), the style is inline, and the page reloads itself every
:data:`REFRESH_S` seconds: it fetches nothing from the network.
"""

from __future__ import annotations

import html
import logging
import time
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigil.config import Config
from sigil.errors import DatabaseUnavailable
from sigil.store import EventStore, HeartbeatStore, Position
from sigil.store.control import ControlStore
from sigil.store.db import Database
from sigil.times import to_ms

if TYPE_CHECKING:
    import jinja2

    from sigil.daemon.health import HealthFn

log = logging.getLogger(__name__)

#: The page reloads itself this often (seconds).
REFRESH_S = 5
#: Closed trades and events the page lists, newest first.
LAST_TRADES = 15
LAST_EVENTS = 25


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _position(p: Position) -> dict[str, Any]:
    """An open position with its stop and trail levels."""
    from sigil.report.book import trade_json

    levels = {"stop_price": p.stop_price, "trail_highest": p.trail_highest, "trail_stop": p.trail_stop}
    return {**trade_json(p), **levels, "trail_active": p.trail_active, "fill": p.fill}


def _daemon(health: HealthFn | None) -> dict[str, Any] | None:
    """The part of the daemon's ``/health`` document the page shows (None outside a daemon)."""
    if health is None:
        return None
    healthy, doc = health()
    sched = doc.get("scheduler") or {}
    return {
        "healthy": healthy,
        "status": doc.get("status"),
        "uptime_s": doc.get("uptime_s"),
        "heartbeat_age_s": doc.get("heartbeat_age_s"),
        "heartbeat_max_age_s": doc.get("heartbeat_max_age_s"),
        "market_time": doc.get("market_time"),
        "passes": doc.get("passes", {}),
        "scheduler": {
            "state": sched.get("state"),
            "rearms": sched.get("rearms"),
            "jobs": {
                name: {"next_run": (job or {}).get("next_run_time")}
                for name, job in (sched.get("jobs") or {}).items()
            },
        },
    }


class Dashboard:
    """The two routes over ``db``; ``health`` is the daemon's ``/health`` snapshot (None: left out)."""

    def __init__(self, db: Database, config: Config, health: HealthFn | None = None) -> None:
        self._db = db
        self._config = config
        self._health = health

    def install(self, app: web.Application) -> None:
        """Adds ``GET /`` and ``GET /api/state`` to ``app``."""
        app.router.add_get("/", self._page)
        app.router.add_get("/api/state", self._state)

    async def state(self) -> dict[str, Any]:
        """Everything the page shows, JSON-ready: the daemon, pauses, variants with their equity
        curves, open positions with their stop and trail levels, the last trades and events, skips."""
        # The book and the charts need numpy (about 16 MB of a daemon's resident set): imported when
        # the page is first asked for, not by every daemon that serves it.
        from sigil.report.book import load_book, trade_json

        instance = self._config.settings.daemon.instance
        book = await load_book(self._db, self._config)
        events = EventStore(self._db)
        counts = await events.counts()
        recent = await events.recent(LAST_EVENTS)
        heartbeat = await HeartbeatStore(self._db).latest(instance)
        control = ControlStore(self._db)
        pauses = await control.pauses()
        axis, curves = book.equity_curves()
        times = [int(t) for t in axis]
        now = datetime.now(UTC)
        return {
            "generated_at": _iso(now),
            "instance": instance,
            "database": self._db.describe(),
            "daemon": _daemon(self._health),
            "heartbeat": None
            if heartbeat is None
            else {
                "finished_at": _iso(heartbeat.finished_at),
                "age_s": round(heartbeat.age(now).total_seconds(), 1),
                "symbols_scanned": heartbeat.symbols_scanned,
                "signals": heartbeat.signals,
                "opens": heartbeat.opens,
                "closes": heartbeat.closes,
                "errors": heartbeat.errors,
                "market_time": _iso(heartbeat.market_time),
            },
            "paused": [v for v in book.metrics if any(p.covers(instance, v) for p in pauses)],
            "pauses": [
                {"instance": p.instance, "variant": p.variant, "since": _iso(p.since), "by": p.by}
                for p in pauses
            ],
            "variants": {
                name: {
                    "starting_balance": m.starting_balance,
                    "balance": m.balance,
                    "equity": m.equity,
                    "open_positions": m.open_positions,
                    "closed_trades": m.closed_trades,
                    "wins": m.wins,
                    "net_pnl": m.net_pnl,
                }
                for name, m in book.metrics.items()
            },
            "equity": {n: {"time_ms": times, "equity": [float(x) for x in c]} for n, c in curves.items()},
            "open_positions": [_position(p) for p in book.open_positions],
            "trades": [trade_json(p) for p in sorted(book.trades, key=_closing, reverse=True)[:LAST_TRADES]],
            "events": [
                {
                    "id": e.id,
                    "at": _iso(e.at),
                    "kind": e.kind.value,
                    "variant": e.variant,
                    "symbol": e.symbol,
                    "reason": e.reason,
                    "position_id": e.position_id,
                }
                for e in recent
            ],
            "skips": {r: n for (kind, r), n in sorted(counts.items(), key=str) if kind == "skip" and r},
        }

    def render(self, state: dict[str, Any]) -> str:
        """The page of ``state``."""
        from sigil.report.charts import bar_chart_svg, line_chart_svg

        equity = {n: (e["time_ms"], e["equity"]) for n, e in state["equity"].items()}
        skips = state["skips"]
        charts = {
            "equity": line_chart_svg(equity, title="Equity per variant (USDT)", width=760),
            "skips": bar_chart_svg(
                list(skips), list(skips.values()), title="Skipped signals by reason", width=420, height=260
            ),
        }
        return _template().render(state=state, charts=charts, refresh_s=REFRESH_S)

    async def _page(self, _request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        try:
            body = self.render(await self.state())
        except DatabaseUnavailable as e:
            # The daemon outlives its database; so does its page, which says why it is empty.
            page = f"<!doctype html><meta http-equiv=refresh content={REFRESH_S}><p>{html.escape(str(e))}"
            return web.Response(text=page, status=503, content_type="text/html", charset="utf-8")
        log.debug("dashboard rendered in %.3fs", time.perf_counter() - t0)
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _state(self, _request: web.Request) -> web.Response:
        try:
            return web.json_response(await self.state())
        except DatabaseUnavailable as e:
            return web.json_response({"error": str(e)}, status=503)


def _closing(p: Position) -> tuple[int, int]:
    return (to_ms(p.closed_at) if p.closed_at is not None else 0, p.id)


@cache
def _template() -> jinja2.Template:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sigil.daemon", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # The charts are SVG this package drew (every label in them escaped): inserted as they are.
    env.filters["svg"] = Markup
    env.filters["money"] = lambda v: "-" if v is None else f"{v:,.2f}".replace("-", "−")
    env.filters["price"] = lambda v: "-" if v is None else f"{v:.6g}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.2%}"
    return env.get_template("dashboard.html.j2")
