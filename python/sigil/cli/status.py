"""``sigil status [--config DIR] [--database-url URL] [--json]``: what the database holds now.

Open positions, active cooldowns, balance and equity per variant, and the age of the last scanner
heartbeat. Exit 0; 1 when the database cannot be reached, 2 when it is not migrated (or bad input).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sigil.cli.database import add_database_args, with_database
from sigil.config import Config
from sigil.store import (
    AccountStore,
    Database,
    HeartbeatStore,
    PositionStore,
    SymbolProtectionStore,
    require_current,
)


def add_parser(sub: Any) -> None:
    """Registers ``status``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="open positions, cooldowns, balances and the last heartbeat",
        description="Show open positions, active cooldowns, balance and equity per variant, "
        "and the age of the last scanner heartbeat.",
    )
    add_database_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Reads the state and prints it."""

    async def body(config: Config, db: Database) -> int:
        schema = await require_current(db)
        now = datetime.now(UTC)
        positions = PositionStore(db)
        order = {v.name: i for i, v in enumerate(config.variants)}
        accounts = sorted(
            await AccountStore(db).all(), key=lambda a: (order.get(a.variant, len(order)), a.variant)
        )
        realised = await positions.realised()
        open_positions = await positions.open_positions()
        cooldowns = await SymbolProtectionStore(db).active(now)
        heartbeat = await HeartbeatStore(db).latest()
        server = await db.server_version()
        state: dict[str, Any] = {
            "database": db.describe(),
            "server_version": server,
            "schema_version": schema.version,
            "now": _iso(now),
            "heartbeat": None
            if heartbeat is None
            else {
                "finished_at": _iso(heartbeat.finished_at),
                "age_s": round(heartbeat.age(now).total_seconds(), 3),
                "duration_s": heartbeat.duration.total_seconds(),
                "symbols_scanned": heartbeat.symbols_scanned,
                "signals": heartbeat.signals,
                "opens": heartbeat.opens,
                "closes": heartbeat.closes,
                "errors": heartbeat.errors,
                "host": heartbeat.host,
                "pid": heartbeat.pid,
            },
            "variants": {
                a.variant: {
                    "balance": a.balance,
                    "equity": a.equity,
                    "equity_at": None if a.equity_at is None else _iso(a.equity_at),
                    "open": sum(1 for p in open_positions if p.variant == a.variant),
                    "closed": realised.get(a.variant, (0, 0.0))[0],
                    "realised_pnl": realised.get(a.variant, (0, 0.0))[1],
                }
                for a in accounts
            },
            "open_positions": [
                {
                    "id": p.id,
                    "variant": p.variant,
                    "symbol": p.symbol,
                    "opened_at": _iso(p.opened_at),
                    "entry_price": p.entry_price,
                    "qty": p.qty,
                    "stake": p.stake,
                    "stop_pct": p.stop_pct,
                    "stop_price": p.stop_price,
                    "trail_active": p.trail_active,
                    "trail_stop": p.trail_stop,
                    "fill": p.fill,
                    "entry_order_id": p.entry_order_id,
                }
                for p in open_positions
            ],
            "cooldowns": [
                {
                    "variant": c.variant,
                    "symbol": c.symbol,
                    "until": _iso(c.protected_until),
                    "reason": c.reason,
                }
                for c in cooldowns
            ],
        }
        if args.json:
            print(json.dumps(state, indent=1))
        else:
            print(_render(state, now))
        return 0

    return with_database(args, body)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ago(seconds: float) -> str:
    s = int(abs(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d"] if d else []
    if h or d:
        parts.append(f"{h}h")
    if not d:
        parts.append(f"{m}m" if h or m else f"{s}s")
    return " ".join(parts)


def _render(state: dict[str, Any], now: datetime) -> str:
    lines = [
        f"database   {state['database']} · PostgreSQL {state['server_version']}"
        f" · schema {state['schema_version']}"
    ]
    hb = state["heartbeat"]
    if hb is None:
        lines.append("heartbeat  none yet: no scanner pass has completed")
    else:
        lines.append(
            f"heartbeat  last pass finished {hb['finished_at']} ({_ago(hb['age_s'])} ago): "
            f"{hb['symbols_scanned']} symbols, {hb['signals']} signals, {hb['opens']} opens, "
            f"{hb['closes']} closes, {hb['errors']} errors in {hb['duration_s']:.1f} s"
        )
    lines.append("")
    variants = state["variants"]
    if not variants:
        lines.append("variants   none: run `sigil migrate` to create the accounts")
    else:
        lines.append(
            f"{'variant':<14}{'balance':>12}{'equity':>12}{'open':>6}{'closed':>8}{'realised P&L':>14}"
        )
        for name, v in variants.items():
            lines.append(
                f"{name:<14}{v['balance']:>12.2f}{v['equity']:>12.2f}{v['open']:>6}{v['closed']:>8}"
                f"{v['realised_pnl']:>14.2f}"
            )
    lines.append("")
    opens = state["open_positions"]
    lines.append(f"open positions ({len(opens)})")
    for p in opens:
        lines.append(
            f"  #{p['id']:<6} {p['variant']:<12} {p['symbol']:<16} opened {p['opened_at']}  "
            f"entry {p['entry_price']:.6g}  qty {p['qty']:.6g}  "
            f"stop {p['stop_price']:.6g} ({p['stop_pct']:.1%})"
            + ("  RESERVED: order sent, fill not recorded yet" if p["fill"] == "reserved" else "")
        )
    cooldowns = state["cooldowns"]
    lines.append(f"cooldowns ({len(cooldowns)} active)")
    for c in cooldowns:
        until = datetime.fromisoformat(c["until"])
        left = (until - now) / timedelta(seconds=1)
        lines.append(f"  {c['variant']:<12} {c['symbol']:<16} until {c['until']} (in {_ago(left)})")
    return "\n".join(lines)
