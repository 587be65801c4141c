"""The invariants a daemon's database must satisfy after any fault, each checked one way only.

:func:`tests.support.daemon_stack.book_problems` holds the SQL book (no (variant, symbol) open twice,
every cooldown from its open, every account equal to its starting balance plus P&L minus open stakes,
an event for every open and close); this module adds the rows no crash may leave half-written, the live
orders booked once, and the book against ``sigil replay``'s on the same candles. :func:`check` runs
the applicable ones and names each.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sigil.config import Config
from sigil.data.candles import CandleSeries
from sigil.research.replay import replay_series
from sigil.times import iso_z
from tests.support.daemon_stack import book_problems, rows

#: Names of the invariants, as the reliability report lists them.
BOOK = "SQL book (one open per pair, cooldowns, balances, events)"
HALF_WRITTEN = "no half-written row"
LIVE_ORDERS = "executed live orders booked once"
REPLAY = "book = replay"

Book = dict[tuple[str, str, str], tuple[Any, ...]]


def replay_book(series: Sequence[CandleSeries], cfg: Config) -> Book:
    """(variant, symbol, entry time) → (exit time, exit price, reason, pnl, fees) of replay's trades."""
    result = replay_series(list(series), cfg)
    return {
        (t.variant, t.symbol, iso_z(t.entry_time)): (
            iso_z(t.exit_time),
            t.exit_price,
            t.exit_reason,
            t.pnl,
            t.fees,
        )
        for t in result.trades
    }


def daemon_book(url: str) -> Book:
    """The same, from the database's closed positions (cancelled reservations are not trades)."""
    out = {}
    for r in rows(
        url,
        "SELECT variant_id, symbol, opened_at, closed_at, exit_price, exit_reason, pnl, fees"
        " FROM micro_positions WHERE status = 'closed' AND exit_reason <> 'order_failed'",
    ):
        key = (r["variant_id"], r["symbol"], r["opened_at"].strftime("%Y-%m-%dT%H:%M:%SZ"))
        out[key] = (
            r["closed_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            r["exit_price"],
            r["exit_reason"],
            r["pnl"],
            r["fees"],
        )
    return out


def differences(got: dict[Any, Any], want: dict[Any, Any]) -> list[str]:
    """Trades missing, extra, or different (P&L compared to the bit)."""
    out = [f"missing {k}: {want[k]}" for k in sorted(want.keys() - got.keys())]
    out += [f"extra {k}: {got[k]}" for k in sorted(got.keys() - want.keys())]
    out += [
        f"differs {k}: {got[k]} != {want[k]}" for k in sorted(got.keys() & want.keys()) if got[k] != want[k]
    ]
    return out


def replay_problems(url: str, series: Sequence[CandleSeries], cfg: Config) -> list[str]:
    """How the database's book differs from replay's over ``series``: trades (to the bit), each
    account's balance, the positions still open; [] when they are equal."""
    result = replay_series(list(series), cfg)
    problems = differences(daemon_book(url), replay_book(series, cfg))
    balances = {r["variant_id"]: r["balance"] for r in rows(url, "SELECT * FROM variant_accounts")}
    want = {n: m.balance for n, m in result.metrics.items()}
    if balances != want:
        problems.append(f"balances {balances} but replay ends with {want}")
    open_now = {
        (r["variant_id"], r["symbol"], iso_z(int(r["opened_at"].timestamp()) * 1000))
        for r in rows(url, "SELECT * FROM micro_positions WHERE status = 'open'")
    }
    open_want = {(p.variant, p.symbol, iso_z(p.entry_time)) for p in result.open_positions}
    if open_now != open_want:
        problems.append(f"open {sorted(open_now ^ open_want)[:5]} differ from replay's")
    if not want or not result.trades:
        problems.append("replay made no trade: the comparison proves nothing")
    return problems


def half_written(url: str, *, settled: bool = False) -> list[str]:
    """Rows no crash may leave: an open position with exit fields, a closed one without its exit, an
    exchange fill without its order id. ``settled``: no reservation may still wait for its order
    (true once a daemon has stopped cleanly after a pass)."""
    problems: list[str] = []
    for p in rows(url, "SELECT * FROM micro_positions ORDER BY id"):
        pid = f"#{p['id']}"
        if p["status"] == "open":
            if any(p[k] is not None for k in ("closed_at", "exit_price", "exit_reason", "pnl")):
                problems.append(f"{pid}: open with exit fields {p['closed_at']}, {p['exit_reason']}")
            if settled and p["fill"] == "reserved":
                problems.append(f"{pid}: a reservation still waiting for its order")
        else:
            if p["closed_at"] is None or p["exit_reason"] is None:
                problems.append(f"{pid}: closed without its close time or reason")
            elif p["exit_reason"] != "order_failed" and (
                p["exit_price"] is None or p["pnl"] is None or p["fees"] is None
            ):
                problems.append(f"{pid}: closed ({p['exit_reason']}) without its price, P&L or fees")
            elif p["closed_at"] < p["opened_at"]:
                problems.append(f"{pid}: closed before it opened")
        if p["fill"] == "exchange" and not p["entry_order_id"]:
            problems.append(f"{pid}: filled by the exchange without an order id")
        if p["fill"] == "exchange" and p["status"] == "closed" and not p["exit_order_id"]:
            problems.append(f"{pid}: sold on the exchange without an order id")
    for e in rows(url, "SELECT id, kind, position_id FROM events WHERE kind IN ('open', 'close', 'fill')"):
        if e["position_id"] is None:
            problems.append(f"event #{e['id']} ({e['kind']}) names no position")
    return problems


def live_order_problems(url: str, executed: Collection[str]) -> list[str]:
    """Every order the exchange executed (``executed``: its order ids) booked once, and only those."""
    filled = rows(url, "SELECT * FROM micro_positions WHERE fill = 'exchange'")
    booked = [p["entry_order_id"] for p in filled]
    booked += [p["exit_order_id"] for p in filled if p["status"] == "closed"]
    problems = [
        f"order {o} booked {booked.count(o)} times" for o in sorted(set(booked)) if booked.count(o) > 1
    ]
    problems += [f"order {o} executed but not booked" for o in sorted(set(executed) - set(booked))]
    problems += [f"order {o} booked but never executed" for o in sorted(set(booked) - set(executed))]
    if not executed:
        problems.append("the exchange executed no order: the check proves nothing")
    return problems


def check(
    url: str,
    cfg: Config,
    *,
    series: Sequence[CandleSeries] | None = None,
    executed: Collection[str] | None = None,
    settled: bool = False,
) -> dict[str, list[str]]:
    """Every applicable invariant → its problems ([] when it holds). The book is compared with
    replay's when ``series`` is given (the daemon ran to their end), the live orders when ``executed``
    is."""
    out = {BOOK: book_problems(url, cfg), HALF_WRITTEN: half_written(url, settled=settled)}
    if executed is not None:
        out[LIVE_ORDERS] = live_order_problems(url, executed)
    if series is not None:
        out[REPLAY] = replay_problems(url, series, cfg)
    return out


def failures(checked: dict[str, list[str]]) -> str:
    """The problems of :func:`check`'s answer, for an assertion message ('' when there are none)."""
    return "\n".join(f"{name}: {p}" for name, ps in checked.items() for p in ps[:10])
