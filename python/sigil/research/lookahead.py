"""Look-ahead check: every decision of a replay is one the engine makes without the candles after it.

A replay is free of look-ahead when each of its decisions — an open, a close — at the close time
``T`` of a candle would be the same if the data ended at ``T``. Decisions on one symbol depend on
other symbols through the balance, ``max_open`` and the guard, so "the data ends at ``T``" means the
whole universe cut at ``T``: every symbol's candles whose close time is ``<= T``. Two independent
forms of that check run, each against the full replay (:func:`sigil.research.replay.replay_series`,
what ``sigil replay`` reports):

1. **Streaming, every decision.** A fresh :class:`sigil._core.Engine` (the daemon's stateful
   engine) is fed the candles one at a time in the replay's order (close time, then symbol name),
   carrying out each intent with the same paper fills. When it decides at ``T`` it has been given no
   candle closing after ``T``: it cannot see the future, because the future has not been passed to
   it. The engine is deterministic, so its state at ``T`` is what a replay of the universe cut at
   ``T`` builds, and its decision at ``T`` is that cut replay's decision. Every open and close of the
   full replay must equal the streaming engine's (time, symbol, variant, action, fill price, and
   ``stop_pct`` and ATR of an open or the reason of a close, bit for bit), and the streaming engine
   must make no decision the full replay did not. One pass over the data checks every decision.
2. **Cut replays, a sample of decision times.** For each cut time ``T`` (every distinct time at
   which the full replay decided, or a seeded sample of ``cuts`` of them when there are more),
   the batch replay itself runs on the universe cut at ``T``, and all its decisions — those at ``T``,
   right after the cut, and every earlier one — must equal the full replay's decisions up to ``T``.
   This is the check exactly as stated, through the code path ``sigil replay`` uses, and it does not
   trust the streaming driver: a bug the streaming engine and the batch replay shared, or one in
   how this module drives the engine, would not hide a look-ahead from it.

What is not covered: the candle files are read and validated before either form (reading only
parses; nothing is computed over a whole file), and decisions the engine does not carry out (skipped
breakouts) are compared only through their effect — a skip that became an open, or the reverse,
is a difference.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sigil import _core
from sigil.config import Config
from sigil.data.candles import CandleSeries
from sigil.research.decisions import (
    CLOSE,
    OPEN,
    Decision,
    Difference,
    counts_by_variant,
    decisions_of,
    first_difference,
    running_counts,
)
from sigil.research.replay import ReplayResult, replay_series

#: Cut replays run by default: every decision time of a small data set, a sample of a large one.
DEFAULT_CUTS = 100

Replay = Callable[[Sequence[CandleSeries], Config], ReplayResult]


@dataclass(frozen=True)
class CutFinding:
    """The first decision a run with less data disagrees on, and which run that was."""

    form: str
    #: The cut time (ms) of a cut replay; None for the streaming form.
    cut: int | None
    difference: Difference


@dataclass(frozen=True)
class LookaheadReport:
    """What the check compared, per variant, and the first difference of each form (if any)."""

    variants: tuple[str, ...]
    candles: int
    symbols: int
    #: (entries, exits) per variant checked by the streaming form: every decision of the full run.
    streamed: list[tuple[int, int]]
    #: Distinct decision times of the full run, and the cut times replayed.
    decision_times: int
    cut_times: tuple[int, ...]
    #: (entries, exits) per variant at the cut times themselves, and up to them (all compared).
    at_cuts: list[tuple[int, int]]
    up_to_cuts: list[tuple[int, int]]
    findings: tuple[CutFinding, ...]

    @property
    def clean(self) -> bool:
        """True when no decision changed."""
        return not self.findings

    def first(self) -> CutFinding | None:
        """The earliest difference over both forms."""
        return min(self.findings, key=lambda f: f.difference.decision.key, default=None)


def streaming_decisions(series: Sequence[CandleSeries], config: Config) -> list[Decision]:
    """Every decision of a :class:`sigil._core.Engine` fed the candles one at a time, in the
    replay's order (close time, symbol name), each intent carried out with paper fills."""
    params = [v.engine_params() for v in config.variants]
    engine = _core.Engine(params)
    by_name = sorted(series, key=lambda s: s.symbol)
    ids = [engine.add_symbol(s.symbol, s.timeframe_ms) for s in by_name]
    lengths = np.array([len(s) for s in by_name], dtype=np.int64)
    close = np.concatenate([s.time + s.timeframe_ms for s in by_name] or [np.zeros(0, np.int64)])
    rank = np.repeat(np.arange(len(by_name)), lengths)
    index = np.concatenate([np.arange(n) for n in lengths] or [np.zeros(0, np.int64)])
    order = np.lexsort((rank, close))
    rows = [list(zip(s.time.tolist(), s.open.tolist(), s.high.tolist(), s.low.tolist(), s.close.tolist(),
                     s.volume.tolist(), strict=True)) for s in by_name]  # fmt: skip
    costs = [(p["stake"], p["fee_rate"], p["slippage"]) for p in params]
    out: list[Decision] = []
    for k, i in zip(rank[order].tolist(), index[order].tolist(), strict=True):
        sid, name = ids[k], by_name[k].symbol
        for c in engine.exits(sid, *rows[k][i]):
            pos = engine.position(c.variant, sid)
            assert pos is not None, "the engine closes only what it holds"
            _, fee_rate, slippage = costs[c.variant]
            fill, gross, fee, _ = _core.sell_fill(c.price, pos.qty, fee_rate, slippage)
            t = engine.apply_close(c.variant, sid, c.time, fill, gross, fee, c.reason)
            out.append(Decision(c.time, name, CLOSE, c.variant, t.exit_price, t.exit_reason.value))
        for o in engine.signals(sid):
            if isinstance(o, _core.OpenIntent):
                stake, fee_rate, slippage = costs[o.variant]
                fill, qty, fee, _ = _core.buy_fill(o.price, stake, fee_rate, slippage)
                p = engine.apply_open(o.variant, sid, o.time, fill, qty, fee, stake, o.stop_pct, o.atr)
                out.append(
                    Decision(o.time, name, OPEN, o.variant, p.entry_price, "", p.stop_pct, p.atr_at_entry)
                )
    out.sort()
    return out


def cut_at(series: Sequence[CandleSeries], cut: int) -> list[CandleSeries]:
    """The universe as it was at ``cut`` (ms): each symbol's candles whose close time is ``<= cut``."""
    out = []
    for s in series:
        n = int(np.searchsorted(s.time + s.timeframe_ms, cut, side="right"))
        out.append(
            CandleSeries(s.symbol, s.timeframe_ms, s.time[:n], s.open[:n], s.high[:n], s.low[:n],
                         s.close[:n], s.volume[:n], s.source)
        )  # fmt: skip
    return out


def choose_cuts(times: Sequence[int], cuts: int, seed: int) -> tuple[int, ...]:
    """Every time when there are at most ``cuts``, else a sample of ``cuts`` drawn with ``seed``; sorted."""
    distinct = sorted(set(times))
    if len(distinct) <= cuts:
        return tuple(distinct)
    pick = np.random.default_rng(seed).choice(len(distinct), size=cuts, replace=False)
    return tuple(distinct[int(k)] for k in sorted(pick.tolist()))


def check_lookahead(
    series: Sequence[CandleSeries],
    config: Config,
    cuts: int = DEFAULT_CUTS,
    seed: int = 0,
    replay: Replay = replay_series,
) -> LookaheadReport:
    """Runs both forms against ``replay(series, config)`` (the full run). ``replay`` is also what the
    cut replays run; a caller passes another only to show that the check catches a replay that sees
    the future."""
    if cuts < 0:
        raise ValueError(f"--cuts must be >= 0 (got {cuts})")
    names = tuple(v.name for v in config.variants)
    full = decisions_of(replay(series, config))
    findings: list[CutFinding] = []
    diff = first_difference(full, streaming_decisions(series, config))
    if diff is not None:
        findings.append(CutFinding("streaming", None, diff))

    cut_times = choose_cuts([d.time for d in full], cuts, seed)
    running = running_counts(full, len(names))
    at: list[Decision] = []
    up_counts = [(0, 0)] * len(names)
    for cut in cut_times:
        n = bisect_right(full, cut, key=lambda d: d.time)
        want = full[:n]
        got = decisions_of(replay(cut_at(series, cut), config))
        at.extend(d for d in want if d.time == cut)
        up_counts = [(a + e, b + x) for (a, b), (e, x) in zip(up_counts, running[n], strict=True)]
        diff = first_difference(want, got)
        if diff is not None:
            findings.append(CutFinding("cut replay", cut, diff))
            break
    return LookaheadReport(
        variants=names,
        candles=sum(len(s) for s in series),
        symbols=len(series),
        streamed=counts_by_variant(full, len(names)),
        decision_times=len({d.time for d in full}),
        cut_times=cut_times,
        at_cuts=counts_by_variant(at, len(names)),
        up_to_cuts=up_counts,
        findings=tuple(findings),
    )
