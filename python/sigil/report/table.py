"""The variant table: closed trades, exit-reason shares and dollars, net P&L, balance.

Same shape as the table at the top of docs (DESIGN) so a replay, a daemon report and the original
analysis read side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class Row(Protocol):
    """What a table row needs; :class:`~sigil.research.replay.VariantMetrics` provides it."""

    @property
    def closed_trades(self) -> int:
        """Closed trades."""
        ...

    @property
    def net_pnl(self) -> float:
        """Net P&L of the closed trades."""
        ...

    @property
    def balance(self) -> float:
        """Cash balance."""
        ...

    @property
    def equity(self) -> float:
        """Balance plus open positions at their last price."""
        ...

    @property
    def open_positions(self) -> int:
        """Positions still open."""
        ...

    @property
    def by_reason(self) -> dict[str, tuple[int, float]]:
        """(count, P&L) of the closed trades per exit reason."""
        ...

    def share(self, reason: str) -> float:
        """The share of closed trades that exited for ``reason``."""
        ...


def money(x: float) -> str:
    """``+$9.50`` / ``−$22.18`` (a real minus sign, as in the design table)."""
    sign = "+" if x >= 0 else "−"
    return f"{sign}${abs(x):,.2f}"


def _exit(m: Row, reason: str) -> str:
    return f"{m.share(reason) * 100:.0f}% / {money(m.by_reason[reason][1])}"


def variant_table(metrics: Mapping[str, Row]) -> str:
    """Renders the variant table as aligned text."""
    head = (
        "variant",
        "closed trades",
        "atr_trail exits",
        "hard_stop exits",
        "net P&L",
        "balance",
        "equity",
        "open",
    )
    rows = [
        (
            name,
            str(m.closed_trades),
            _exit(m, "atr_trail"),
            _exit(m, "hard_stop"),
            money(m.net_pnl),
            f"${m.balance:,.2f}",
            f"${m.equity:,.2f}",
            str(m.open_positions),
        )
        for name, m in metrics.items()
    ]
    return aligned(head, rows)


def aligned(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A header, a rule and the rows as text: the first column left-aligned, the others right."""
    table = [tuple(head), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    return "\n".join([line(table[0]), "  ".join("-" * w for w in widths), *(line(r) for r in table[1:])])
