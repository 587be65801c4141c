"""Live books reconciled: the exchange account's balance of each asset against the open positions.

A ``--live`` daemon checks at its first breakout pass and then at the first pass ``daemon.reconcile_
interval_s`` after the last check, inside the pass (so no order of its own is in flight). For every
base asset that the database holds or that the account holds with a market in the quote currency, the
difference is the account's total minus the open positions' quantities, minus what an operator last
accepted (``sigil ack-drift``). It drifts when it exceeds ``daemon.reconcile_tolerance`` of the held
quantity and is worth more than ``daemon.reconcile_dust_quote`` (a sell is rounded down to a lot, so a
little dust is normal). An asset with a reservation whose fill is not recorded yet is not judged until
the pass settles it.

A drift pauses the instance's opens (a pause by ``reconcile``; exits go on) until a check finds the
books agreeing again or an operator acknowledges. Orders named ``sigil-o<id>`` / ``sigil-c<id>`` that
the exchange knows and the database does not (no such position, or one cancelled as never executed)
are reported once each, never adopted. Everything shows in ``/health`` (:meth:`Reconciler.describe`),
``/metrics`` and the events (kind ``reconcile``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sigil.config import Config
from sigil.daemon.metrics import DaemonMetrics, LabelValues
from sigil.errors import ExchangeRejected, ExchangeUnavailable
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.store.db import Database
from sigil.store.reconcile import ReconcileStore

log = logging.getLogger("sigil.daemon.reconcile")

#: A client order id of Sigil's (see :func:`sigil.daemon.execution.client_order_id`).
SIGIL_ORDER = re.compile(r"^sigil-([oc])([0-9]+)$")


@dataclass(frozen=True, slots=True)
class AssetBooks:
    """One asset's two sides and their difference (after the accepted offset)."""

    exchange: float
    database: float
    accepted: float
    difference: float
    drift: bool
    #: A reservation of this asset awaits its fill: not judged until it is settled.
    settling: bool = False

    def to_json(self) -> dict[str, Any]:
        """The /health and event form."""
        return asdict(self)


class Reconciler:
    """Checks a live daemon's books against the exchange account; see the module docstring."""

    def __init__(self, config: Config, db: Database, client: ExchangeClient, metrics: DaemonMetrics) -> None:
        self.settings = config.settings.daemon
        self.quote = config.settings.exchange.quote
        self.stablecoins = frozenset(config.settings.exchange.stablecoins)
        self.instance = self.settings.instance
        self.client = client
        self.store = ReconcileStore(db)
        self.books: dict[str, AssetBooks] = {}
        #: Orders named ``sigil-…`` the exchange knows and the database does not: name → symbol.
        self.unknown_orders: dict[str, str] = {}
        self.drift = False
        self.checked_at: float | None = None
        self.error: str | None = None
        self._last: float | None = None
        r = metrics.registry
        self.checks = r.counter(
            "sigil_reconcile_checks_total",
            "Live books checked against the exchange account, by outcome (agree, drift, error).",
            ("outcome",),
        )
        r.gauge(
            "sigil_reconcile_difference",
            "Exchange balance minus the open positions' quantity (minus what was acknowledged), per asset.",
            ("asset",),
            fn=self._differences,
        )
        r.gauge(
            "sigil_reconcile_unknown_orders",
            "Orders named sigil-… that the exchange knows and the database does not.",
            fn=lambda: {(): float(len(self.unknown_orders))},
        )

    def _differences(self) -> dict[LabelValues, float]:
        return {(asset,): b.difference for asset, b in self.books.items()}

    def due(self) -> bool:
        """True at the first pass and once ``daemon.reconcile_interval_s`` has passed since the last check."""
        return self._last is None or time.monotonic() - self._last >= self.settings.reconcile_interval_s

    async def check_if_due(self) -> None:
        """:meth:`check` when :meth:`due`."""
        if self.due():
            await self.check()

    async def check(self) -> None:
        """Compares the books, then pauses or resumes opens and records what changed. An exchange that
        cannot answer leaves the last verdict in force (and says so in /health)."""
        self._last = time.monotonic()
        # The pause before the accepted offsets: an acknowledgement landing between the two reads then
        # looks like books that agree again (harmless), never like a new drift.
        paused = await self.store.drift_paused(self.instance)
        try:
            await self.client.load_markets()
            totals = await self.client.account_totals()
            books = await self._compare(totals)
            unknown = await self._unknown_orders(sorted({f"{a}/{self.quote}" for a in books}))
        except (ExchangeUnavailable, ExchangeRejected) as e:
            self.error = str(e)
            self.checks.inc("error")
            log.warning("reconcile: the exchange account could not be read: %s", e)
            return
        self.error = None
        self.books = books
        self.checked_at = time.time()
        drifting = {a: b for a, b in books.items() if b.drift}
        detail = {
            "assets": {a: b.to_json() for a, b in books.items()},
            "raw": {a: b.exchange - b.database for a, b in books.items()},
        }
        if drifting and not paused:
            await self.store.enter_drift(self.instance, detail)
            log.error(
                "reconcile: the exchange account and the database disagree on %s; no new opens until"
                " they agree or `sigil ack-drift --instance %s`",
                ", ".join(f"{a} by {b.difference:g}" for a, b in sorted(drifting.items())),
                self.instance,
            )
        elif not drifting and paused and not any(b.settling for b in books.values()):
            await self.store.leave_drift(self.instance, detail)
            log.info("reconcile: the exchange account and the database agree again; opens resume")
        self.drift = bool(drifting)
        self.checks.inc("drift" if drifting else "agree")
        for name, (symbol, order) in unknown.items():
            if name not in self.unknown_orders:
                await self.store.unknown_order(self.instance, symbol, name, order)
                log.error(
                    "reconcile: the exchange holds order %s (%s) the database does not know", name, symbol
                )
            self.unknown_orders[name] = symbol

    async def _compare(self, totals: Mapping[str, float]) -> dict[str, AssetBooks]:
        held: dict[str, float] = {}
        by_symbol, reserved = await self.store.held_by_symbol()
        for symbol, qty in by_symbol.items():
            base = symbol.split("/")[0]
            held[base] = held.get(base, 0.0) + qty
        settling = {symbol.split("/")[0] for symbol in reserved}
        markets = self.client.exchange.markets or {}
        assets = (
            set(held)
            | settling
            | {
                a
                for a, v in totals.items()
                if v > 0 and a != self.quote and a not in self.stablecoins and f"{a}/{self.quote}" in markets
            }
        )
        accepted = await self.store.accepted(self.instance)
        books = {}
        for asset in sorted(assets):
            exchange, database = totals.get(asset, 0.0), held.get(asset, 0.0)
            offset = accepted.get(asset, 0.0)
            difference = exchange - database - offset
            drift = asset not in settling and abs(difference) > self.settings.reconcile_tolerance * database
            if drift and self.settings.reconcile_dust_quote > 0:
                # Only a difference past the relative tolerance is priced (one ticker per asset).
                price = await self.client.last_price(f"{asset}/{self.quote}")
                drift = abs(difference) * price > self.settings.reconcile_dust_quote
            books[asset] = AssetBooks(exchange, database, offset, difference, drift, asset in settling)
        return books

    async def _unknown_orders(self, symbols: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Orders named ``sigil-…`` on ``symbols`` whose positions the database does not know."""
        named: dict[str, tuple[str, int, dict[str, Any]]] = {}
        for symbol in symbols:
            for order in await self.client.orders(symbol):
                m = SIGIL_ORDER.match(str(order.get("clientOrderId") or ""))
                if m is not None:
                    brief = {k: order.get(k) for k in ("id", "side", "status", "filled", "cost", "timestamp")}
                    named[m.group(0)] = (symbol, int(m.group(2)), brief)
        known = await self.store.known_positions(pid for _, pid, _ in named.values())
        return {name: (sym, brief) for name, (sym, pid, brief) in named.items() if pid not in known}

    def describe(self) -> dict[str, Any]:
        """The ``reconcile`` block of /health."""
        return {
            "drift": self.drift,
            "checked_at": None if self.checked_at is None else round(self.checked_at, 3),
            "interval_s": self.settings.reconcile_interval_s,
            "error": self.error,
            "assets": {a: b.to_json() for a, b in self.books.items()},
            "unknown_orders": dict(sorted(self.unknown_orders.items())),
        }
