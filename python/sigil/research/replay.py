"""Replay: candle files through every variant in the Rust engine, and what came out of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from sigil import _core
from sigil.data.candles import CandleSeries, load_universe
from sigil.report.metrics import SKIP_REASONS, TradeTally, tally
from sigil.report.performance import ClosedTrades, Performance, max_drawdown, performance
from sigil.times import iso_z


class ReplayVariant(Protocol):
    """What a replay reads of one variant (:class:`~sigil.config.Variant`,
    :class:`~sigil.config_digest.VariantSettings`)."""

    @property
    def name(self) -> str:
        """The variant's name, as the results are keyed."""
        ...

    @property
    def starting_balance(self) -> float:
        """The paper balance its metrics start from."""
        ...

    def engine_params(self) -> dict[str, Any]:
        """The dict ``sigil._core`` takes for the variant."""
        ...


class ReplayConfig(Protocol):
    """What a replay reads of a configuration: a validated :class:`~sigil.config.Config`, or the
    :class:`~sigil.config_digest.ReplaySettings` digested from one (which needs no pydantic)."""

    @property
    def variants(self) -> Sequence[ReplayVariant]:
        """The variants, in the order their results are reported."""
        ...

    def variant(self, name: str) -> ReplayVariant:
        """The variant called ``name``."""
        ...


class Trade(NamedTuple):
    """One closed trade. ``entry_time`` is the close time of the signal candle (ms UTC)."""

    variant: str
    symbol: str
    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    qty: float
    stake: float
    stop_pct: float
    atr_at_entry: float
    exit_reason: str
    pnl: float
    fees: float

    def to_json(self) -> dict[str, Any]:
        """JSON shape of ``--json``: times in ISO 8601 UTC."""
        d = self._asdict()
        d["entry_time"] = iso_z(self.entry_time)
        d["exit_time"] = iso_z(self.exit_time)
        return d


class OpenPosition(NamedTuple):
    """A position still open when the data ended."""

    variant: str
    symbol: str
    entry_time: int
    entry_price: float
    qty: float
    stake: float
    stop_pct: float
    atr_at_entry: float
    stop_price: float
    trail_active: bool

    def to_json(self) -> dict[str, Any]:
        """JSON shape of ``--json``."""
        d = self._asdict()
        d["entry_time"] = iso_z(self.entry_time)
        return d


@dataclass(frozen=True)
class VariantMetrics(TradeTally):
    """What one variant did over the replay: its trade tally, skips, balances and drawdown."""

    skips: dict[str, int]
    opens: int
    open_positions: int
    starting_balance: float
    balance: float
    equity: float
    max_drawdown: float

    def to_json(self) -> dict[str, Any]:
        """JSON shape of ``--json``'s ``variants`` entries."""
        return {
            **self.tally_json(),
            "skips": self.skips,
            "opens": self.opens,
            "open_positions": self.open_positions,
            "starting_balance": self.starting_balance,
            "balance": self.balance,
            "equity": self.equity,
            "max_drawdown": self.max_drawdown,
        }


@dataclass(frozen=True)
class ReplayResult:
    """Trades, open positions, metrics and equity curves of a replay, per variant in config order.

    ``trades`` and ``open_positions`` are built from the engine's columns on first use: a caller
    that only wants the metrics does not pay for thousands of trade objects.
    """

    variants: tuple[str, ...]
    metrics: dict[str, VariantMetrics]
    equity_time: npt.NDArray[np.int64]
    equity: dict[str, npt.NDArray[np.float64]]
    candles: int
    symbols: tuple[str, ...]
    #: The engine's columns (numpy arrays); ``exit_reason`` holds codes into ``exit_reasons``.
    trade_columns: dict[str, Any] = field(repr=False)
    open_columns: dict[str, Any] = field(repr=False)
    exit_reasons: tuple[str, ...] = ()
    #: Lower-timeframe candles that moved prices between closes (``replay_series(detail=...)``).
    detail_candles: int = 0
    #: Per symbol with detail: its candles whose detail was incomplete, replayed as without.
    undetailed: dict[str, int] = field(default_factory=dict)

    @cached_property
    def trades(self) -> list[Trade]:
        """Every closed trade, in the order the engine closed them (exit time, symbol, variant)."""
        names, symbols, t = self.variants, self.symbols, _lists(self.trade_columns)
        reasons = [self.exit_reasons[k] for k in t["exit_reason"]]
        return [
            Trade(names[v], symbols[s], et, xt, ep, xp, q, st, sp, a, r, pnl, f)
            for v, s, et, xt, ep, xp, q, st, sp, a, r, pnl, f in zip(
                t["variant"], t["symbol"], t["entry_time"], t["exit_time"], t["entry_price"],
                t["exit_price"], t["qty"], t["stake"], t["stop_pct"], t["atr_at_entry"], reasons,
                t["pnl"], t["fees"],
                strict=True,
            )
        ]  # fmt: skip

    @cached_property
    def open_positions(self) -> list[OpenPosition]:
        """Positions still open when the data ended, by variant then opening order."""
        names, symbols, o = self.variants, self.symbols, _lists(self.open_columns)
        return [
            OpenPosition(names[v], symbols[s], et, ep, q, st, sp, a, stop, bool(active))
            for v, s, et, ep, q, st, sp, a, stop, active in zip(
                o["variant"], o["symbol"], o["entry_time"], o["entry_price"], o["qty"], o["stake"],
                o["stop_pct"], o["atr_at_entry"], o["stop_price"], o["trail_active"],
                strict=True,
            )
        ]  # fmt: skip

    @cached_property
    def performance(self) -> dict[str, Performance]:
        """Per variant, the figures of :mod:`sigil.report.performance` (computed on first use: they
        need pandas and scipy, which a caller of the balances alone does not)."""
        t, o = self.trade_columns, self.open_columns
        out: dict[str, Performance] = {}
        for k, name in enumerate(self.variants):
            mine = np.asarray(t["variant"]) == k
            out[name] = performance(
                self.metrics[name].starting_balance,
                self.equity_time,
                self.equity[name],
                ClosedTrades.from_columns(self.symbols, {c: np.asarray(t[c])[mine] for c in _TRADE_FIGURES}),
                np.asarray(o["entry_time"])[np.asarray(o["variant"]) == k],
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """The document ``sigil replay --json`` writes: each variant's metrics and its figures."""
        return {
            "variants": {
                name: {**m.to_json(), **self.performance[name].to_json()} for name, m in self.metrics.items()
            },
            "trades": [t.to_json() for t in self.trades],
            "open_positions": [p.to_json() for p in self.open_positions],
            "candles": self.candles,
            "symbols": list(self.symbols),
        }


#: The trade columns :class:`~sigil.report.performance.ClosedTrades` reads.
_TRADE_FIGURES = ("symbol", "entry_time", "exit_time", "pnl", "fees", "stake", "stop_pct")


def _lists(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """Whole columns to Python lists (per-element numpy indexing costs ~100x more)."""
    return {k: v.tolist() if hasattr(v, "tolist") else list(v) for k, v in columns.items()}


def _result(
    raw: dict[str, Any], config: ReplayConfig, detailed: frozenset[str] = frozenset()
) -> ReplayResult:
    names: list[str] = raw["variants"]
    symbols: list[str] = raw["symbols"]
    t, o = raw["trades"], raw["open_positions"]
    equity = {name: np.asarray(raw["equity"][k]) for k, name in enumerate(names)}
    tallies = tally(names, t["variant"], t["exit_reason"], raw["exit_reasons"], t["pnl"], t["fees"])
    still_open = np.bincount(o["variant"], minlength=len(names))
    metrics: dict[str, VariantMetrics] = {}
    for k, name in enumerate(names):
        counts = raw["counts"][k]
        curve = equity[name]
        metrics[name] = VariantMetrics(
            **tallies[name].__dict__,
            skips={r: int(counts[f"skip_{r}"]) for r in SKIP_REASONS},
            opens=int(counts["opens"]),
            open_positions=int(still_open[k]),
            starting_balance=config.variant(name).starting_balance,
            balance=float(raw["balances"][k]),
            equity=float(curve[-1]) if curve.size else float(raw["balances"][k]),
            max_drawdown=max_drawdown(curve),
        )
    return ReplayResult(
        variants=tuple(names),
        metrics=metrics,
        equity_time=np.asarray(raw["equity_time"]),
        equity=equity,
        candles=int(raw["candles"]),
        symbols=tuple(symbols),
        trade_columns=t,
        open_columns=o,
        exit_reasons=tuple(raw["exit_reasons"]),
        detail_candles=int(raw.get("detail_candles", 0)),
        undetailed={
            sym: int(n) for sym, n in zip(symbols, raw.get("undetailed", ()), strict=False) if sym in detailed
        },
    )


def replay_series(
    series: Sequence[CandleSeries],
    config: ReplayConfig,
    progress: Callable[[int, int], object] | None = None,
    detail: Sequence[CandleSeries] = (),
) -> ReplayResult:
    """Replays already-loaded candle series through ``config``'s variants (a
    :class:`~sigil.config.Config` or the :class:`~sigil.config_digest.ReplaySettings` of one: the
    same variants replay the same, bit for bit).

    ``detail``: lower-timeframe candles of some of the symbols (:func:`sigil.data.candles.load_detail`).
    Between two closes of a symbol they move its prices through the engine's ``on_price``, the call the
    daemon's exit pass makes with tickers: each detail candle as open, low, high, close (for a long
    position the adverse price first, so a stop is hit before a new high raises the trail). An exit
    there is booked at the close time of the detail candle it happened in, filled at the price that
    hit the stop, as the daemon fills at the ticker; the last detail candle of each candle, which
    closes with it, is decided by the candle's close. Symbols without detail replay as without it,
    bit for bit.
    """
    raw = _core.replay(
        [s.engine_tuple() for s in series],
        [v.engine_params() for v in config.variants],
        progress,
        [d.engine_tuple() for d in detail] or None,
    )
    return _result(raw, config, frozenset(d.symbol for d in detail))


def replay(
    data: str | Path | Iterable[str | Path],
    config_dir: str | Path | None = None,
    extra_variants: Iterable[str | Path] = (),
    progress: Callable[[int, int], object] | None = None,
) -> ReplayResult:
    """Replays candle files (paths or folders) through the configured variants.

    Deterministic: the same files and config give the same result, bit for bit.
    Raises :class:`~sigil.errors.DataError` or :class:`~sigil.errors.ConfigError` on bad input.
    """
    from sigil.config import load_config  # here: sigil replay's digest path has no use for pydantic

    paths = [data] if isinstance(data, str | Path) else list(data)
    config = load_config(config_dir, tuple(extra_variants))
    return replay_series(load_universe(paths), config, progress)


def detail_summary(tf: str, result: ReplayResult, without: Sequence[str]) -> str:
    """One line for a replay with ``--detail TF``: how many symbols had detail, how many detail
    candles moved prices, which symbols had no detail file and how many candles lacked detail."""
    have = len(result.symbols) - len(without)
    line = f"Detail {tf}: {have} of {len(result.symbols)} symbols, {result.detail_candles:,} {tf} candles"
    gaps = sum(result.undetailed.values())
    if gaps:
        line += f"; {gaps:,} candles with incomplete {tf} detail replayed without"
    if without:
        shown = ", ".join(sorted(without)[:10]) + (
            f" and {len(without) - 10} more" if len(without) > 10 else ""
        )
        line += f"; no {tf} detail for {shown}"
    return line
