"""Paper accounts, one per variant: balance (cash) and equity (marked to market by the daemon)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sigil.errors import UnknownVariant
from sigil.store import _checks
from sigil.store.db import Connection, Database


class HasStartingBalance(Protocol):
    """What :meth:`AccountStore.ensure` needs of a variant (``sigil.config.Variant`` has both)."""

    @property
    def name(self) -> str:
        """The variant's name."""
        ...

    @property
    def starting_balance(self) -> float:
        """The balance its account starts with."""
        ...


@dataclass(frozen=True, slots=True)
class Account:
    """A row of ``variant_accounts``."""

    variant: str
    starting_balance: float
    balance: float
    equity: float
    equity_at: datetime | None
    updated_at: datetime
    #: The balance as of ``equity_at`` (the last completed pass), to the bit; None before the first.
    balance_mark: float | None = None


_COLUMNS = "variant_id, starting_balance, balance, equity, equity_at, updated_at, balance_mark"


def _account(r: Any) -> Account:
    return Account(
        r["variant_id"],
        r["starting_balance"],
        r["balance"],
        r["equity"],
        r["equity_at"],
        r["updated_at"],
        r["balance_mark"],
    )


class AccountStore:
    """Reads and writes ``variant_accounts``. Debits and credits happen inside the position transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, variants: Iterable[HasStartingBalance]) -> list[str]:
        """Creates the missing accounts at their starting balance; existing ones are left as they are.

        Returns the names of the accounts created.
        """
        created: list[str] = []
        async with self._db.transaction("create accounts") as conn:
            for v in variants:
                name = _checks.name("variant", v.name, UnknownVariant)
                start = _checks.non_negative(f"{name}: starting_balance", v.starting_balance)
                if await _insert_missing(conn, name, start):
                    created.append(name)
        return created

    async def get(self, variant: str) -> Account:
        """The variant's account; :class:`UnknownVariant` when it has none."""
        async with self._db.connection("read account") as conn:
            r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM variant_accounts WHERE variant_id = $1", variant)
        if r is None:
            raise UnknownVariant(f"unknown variant {variant!r}: it has no account")
        return _account(r)

    async def all(self) -> list[Account]:
        """Every account, by variant name."""
        async with self._db.connection("read accounts") as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM variant_accounts ORDER BY variant_id")
        return [_account(r) for r in rows]

    async def mark_equity(self, variant: str, equity: float, at: datetime) -> None:
        """Stores the variant's equity (balance + open positions at the last price) as of ``at``."""
        value = _checks.non_negative("equity", equity)
        at = _checks.utc("at", at)
        async with self._db.connection("mark equity") as conn:
            status = await conn.execute(
                "UPDATE variant_accounts SET equity = $2, equity_at = $3, updated_at = now()"
                " WHERE variant_id = $1",
                variant,
                value,
                at,
            )
        if status.endswith(" 0"):
            raise UnknownVariant(f"unknown variant {variant!r}: it has no account")

    async def mark_pass(self, equities: Mapping[str, float], at: datetime) -> None:
        """The end of a completed pass, for every variant in ``equities`` at once (one transaction):
        equity, ``equity_at = at`` (the resume point) and ``balance_mark`` (the balance now). A crash
        can never leave some variants marked at one point and some at another."""
        values = {name: _checks.non_negative("equity", e) for name, e in equities.items()}
        at = _checks.utc("at", at)
        async with self._db.transaction("mark pass") as conn:
            for variant, value in values.items():
                status = await conn.execute(
                    "UPDATE variant_accounts SET equity = $2, equity_at = $3, balance_mark = balance,"
                    " updated_at = now() WHERE variant_id = $1",
                    variant,
                    value,
                    at,
                )
                if status.endswith(" 0"):
                    raise UnknownVariant(f"unknown variant {variant!r}: it has no account")

    async def lock_balance(self, conn: Connection, variant: str) -> float:
        """The balance, with the account row locked until the transaction ends (serialises one variant's
        opens, so ``max_open`` and the balance cannot be overrun by two opens at once)."""
        balance: float | None = await conn.fetchval(
            "SELECT balance FROM variant_accounts WHERE variant_id = $1 FOR UPDATE", variant
        )
        if balance is None:
            raise UnknownVariant(f"unknown variant {variant!r}: it has no account (run `sigil migrate`)")
        return balance

    async def debit(self, conn: Connection, variant: str, amount: float) -> float:
        """Takes ``amount`` from the balance (in the caller's transaction); returns the new balance."""
        return await _add(conn, variant, -amount)

    async def credit(self, conn: Connection, variant: str, amount: float) -> float:
        """Adds ``amount`` to the balance (in the caller's transaction); returns the new balance."""
        return await _add(conn, variant, amount)


async def _insert_missing(conn: Connection, variant: str, starting_balance: float) -> bool:
    status = await conn.execute(
        "INSERT INTO variant_accounts (variant_id, starting_balance, balance, equity)"
        " VALUES ($1, $2, $2, $2) ON CONFLICT (variant_id) DO NOTHING",
        variant,
        starting_balance,
    )
    return bool(status.endswith(" 1"))


async def _add(conn: Connection, variant: str, amount: float) -> float:
    balance: float | None = await conn.fetchval(
        "UPDATE variant_accounts SET balance = balance + $2, updated_at = now() WHERE variant_id = $1"
        " RETURNING balance",
        variant,
        amount,
    )
    if balance is None:
        raise UnknownVariant(f"unknown variant {variant!r}: it has no account")
    return balance
