"""``sigil replay --detail TF``: lower-timeframe candles move prices between closes through the
engine's ``on_price``, the call the daemon's exit pass makes with tickers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from sigil import _core
from sigil.cli import main
from sigil.config import load_config
from sigil.data.candles import CandleSeries, load_detail, load_universe
from sigil.research.replay import ReplayResult, replay_series

REPO = Path(__file__).resolve().parents[1]
HOUR = 3_600_000
FIVE = 300_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SLIPPAGE = 0.0005  # the shipped default (config/sigil.yaml)


def daemon_drive(
    series: Sequence[CandleSeries], detail: Sequence[CandleSeries], params: list[dict]
) -> list[tuple[int, str, int, int, float, str, float]]:
    """What a daemon with an exit pass does, through the Python-facing engine it uses: at each close
    time, first every held symbol's prices since the last close through ``on_price`` (the exit pass
    polling often: each detail candle but the one closing with the candle, as the path open, low,
    high, close at its close time, with every stop the path falls through as a price of its own),
    then for each symbol ``exits`` with the closed candle and ``signals`` (the breakout pass).
    Closes and opens are carried out with paper fills as the daemon's paper broker does. Written
    apart from the Rust replay on purpose: the two agreeing is the parity claim."""
    engine = _core.Engine(params)
    by_name = sorted(series, key=lambda s: s.symbol)
    ids = {s.symbol: engine.add_symbol(s.symbol, s.timeframe_ms) for s in by_name}
    lower = {d.symbol: d for d in detail}
    trades: list[tuple[int, str, int, int, float, str, float]] = []

    def close(name: str, intents: list[_core.CloseIntent]) -> None:
        for c in intents:
            p, pos = params[c.variant], engine.position(c.variant, c.symbol)
            assert pos is not None
            fill, gross, fee, _ = _core.sell_fill(c.price, pos.qty, p["fee_rate"], p["slippage"])
            tr = engine.apply_close(c.variant, c.symbol, c.time, fill, gross, fee, c.reason)
            trades.append(
                (c.variant, name, tr.position.entry_time, tr.exit_time, fill, c.reason.value, tr.pnl)
            )

    closes = sorted({int(t) + s.timeframe_ms for s in by_name for t in s.time})
    index = {s.symbol: {int(t) + s.timeframe_ms: i for i, t in enumerate(s.time)} for s in by_name}
    for now in closes:
        due = [(s, index[s.symbol][now]) for s in by_name if now in index[s.symbol]]
        for s, i in due:
            d = lower.get(s.symbol)
            if d is None:
                continue
            start = int(s.time[i])
            k = s.timeframe_ms // d.timeframe_ms
            j = int(np.searchsorted(d.time, start))
            part = d.time[j : j + k]
            if len(part) < k or not np.array_equal(part, start + d.timeframe_ms * np.arange(k)):
                continue  # incomplete detail: this candle as without
            sid = ids[s.symbol]
            if all(engine.position(v, sid) is None for v in range(len(params))):
                continue  # nothing held: the exit pass has nothing to check
            for m in range(j, j + k - 1):
                t = int(d.time[m]) + d.timeframe_ms
                path = [float(d.open[m]), float(d.low[m]), float(d.high[m]), float(d.close[m])]
                for n, price in enumerate(path):
                    at = path[n - 1] if n else price
                    stops = (pos.stop_price for v in range(len(params)) if (pos := engine.position(v, sid)))
                    for level in sorted({x for x in stops if price < x < at}, reverse=True):
                        close(s.symbol, engine.on_price(sid, t, level))  # the fall passes this stop
                    close(s.symbol, engine.on_price(sid, t, price))
        for s, i in due:
            sid = ids[s.symbol]
            row = (int(s.time[i]), s.open[i], s.high[i], s.low[i], s.close[i], s.volume[i])
            close(s.symbol, engine.exits(sid, *row))
            for intent in engine.signals(sid):
                if isinstance(intent, _core.OpenIntent):
                    p = params[intent.variant]
                    fill, qty, fee, _ = _core.buy_fill(intent.price, p["stake"], p["fee_rate"], p["slippage"])
                    engine.apply_open(
                        intent.variant, intent.symbol, intent.time, fill, qty, fee, p["stake"],
                        intent.stop_pct, intent.atr,
                    )  # fmt: skip
    trades.sort(key=lambda t: (t[3], t[1], t[0]))
    return trades


def _write(path: Path, rows: list[tuple[int, float, float, float, float, float]]) -> None:
    path.write_text(json.dumps([list(r) for r in rows]))


def hand_made(folder: Path, hour_31: list[tuple[float, float, float, float]]) -> tuple[Path, int]:
    """``HND_USDT-1h.json``: 30 quiet hours (ATR 2), a breakout at hour 30 (every shipped variant
    opens at its close, 103), then hour 31 as the twelve 5m candles ``hour_31`` (open, high, low,
    close) and quiet hours under it; ``HND_USDT-5m.json`` beside it. Returns the folder and the
    open time of hour 31."""
    folder.mkdir(exist_ok=True)
    quiet = (100.0, 101.0, 99.0, 100.0)
    hours = [quiet] * 30 + [(100.0, 103.5, 99.5, 103.0)]
    fives: list[list[tuple[float, float, float, float]]] = [[quiet] * 12 for _ in hours]
    o, c = hour_31[0][0], hour_31[-1][3]
    hours.append((o, max(x[1] for x in hour_31), min(x[2] for x in hour_31), c))
    fives.append(hour_31)
    after = (c, c + 0.5, c - 1.0, c)
    hours += [after] * 6
    fives += [[after] * 12 for _ in range(6)]
    main = [(T0 + i * HOUR, *h, 10_000.0 if i == 30 else 1_000.0) for i, h in enumerate(hours)]
    lower = [
        (T0 + i * HOUR + j * FIVE, *x, 100.0) for i, twelve in enumerate(fives) for j, x in enumerate(twelve)
    ]
    _write(folder / "HND_USDT-1h.json", main)
    _write(folder / "HND_USDT-5m.json", lower)
    return folder, T0 + 31 * HOUR


def _replay(folder: Path, detail: bool) -> list[tuple[str, str, int, float, float, float]]:
    series = load_universe([folder], "5m")
    lower, without = load_detail(series, "5m") if detail else ([], [])
    assert without == []
    r = replay_series(series, load_config(), detail=lower)
    return [
        (t.variant, t.exit_reason, t.exit_time, t.exit_price, t.entry_price, t.stop_pct) for t in r.trades
    ]


def test_a_detail_low_hits_the_stop_before_the_close(tmp_path: Path) -> None:
    """The fourth 5m candle of the hour falls to 97, under every variant's stop: with detail each
    sells at its stop when that candle closes (20 minutes into the hour); without, at the close."""
    steady = (103.0, 103.5, 102.5, 103.0)
    hour_31 = [steady] * 3 + [(103.0, 103.0, 97.0, 98.0)] + [(98.0, 99.0, 97.5, 98.5)] * 8
    folder, t31 = hand_made(tmp_path / "d", hour_31)
    with_detail, without = _replay(folder, True), _replay(folder, False)
    assert len(with_detail) == len(without) == 4  # every shipped variant opened once and exited
    for (v, reason, time, price, entry, stop_pct), plain in zip(with_detail, without, strict=True):
        level = entry * (1 - stop_pct)
        assert (reason, time) == ("hard_stop", t31 + 4 * FIVE), v
        assert price == pytest.approx(level * (1 - SLIPPAGE), rel=1e-12), v
        assert plain == (v, "hard_stop", t31 + HOUR, price, entry, stop_pct), "the same stop, at the close"


def test_a_rally_then_a_fall_inside_the_hour_exits_at_the_trail(tmp_path: Path) -> None:
    """Up to 107 in ten minutes (the trail activates at 107 - 2 ATR), then down through it: with
    detail the trail sells at its level in the hour; without, the hour shows a low above the stop
    and a high that raises the trail, and the next hour's open, under the trail, sells."""
    hour_31 = [
        (103.0, 105.0, 103.0, 105.0),
        (105.0, 107.0, 105.0, 107.0),
        (107.0, 107.0, 104.0, 104.0),
        (104.0, 104.0, 102.0, 102.0),
    ] + [(102.0, 102.5, 101.0, 101.5)] * 8
    folder, t31 = hand_made(tmp_path / "d", hour_31)
    atr = (2.0 * 13 + 4.0) / 14  # ATR(14) after the breakout hour
    trail = 107.0 - 2.0 * atr
    for v, reason, time, price, _, _ in _replay(folder, True):
        assert (reason, time) == ("atr_trail", t31 + 4 * FIVE), v
        assert price == pytest.approx(trail * (1 - SLIPPAGE), rel=1e-12), v
    for v, reason, time, price, _, _ in _replay(folder, False):
        assert (reason, time) == ("atr_trail", t31 + 2 * HOUR), v
        assert price == pytest.approx(101.5 * (1 - SLIPPAGE), rel=1e-12), "the next hour's open"


def head(s: CandleSeries, n: int) -> CandleSeries:
    """The first ``n`` candles of ``s``."""
    cols = (s.time, s.open, s.high, s.low, s.close, s.volume)
    return CandleSeries(s.symbol, s.timeframe_ms, *(c[:n] for c in cols), s.source)


def split(s: CandleSeries, k: int, seed: int) -> CandleSeries:
    """``s`` cut into ``k`` candles each, named ``s.symbol``: a seeded path from each open to its
    close that touches its low and its high, so the pieces cover exactly the candle's range."""
    rng = np.random.default_rng(seed)
    n = len(s)
    path = np.empty((n, k + 1))
    path[:, 0], path[:, k] = s.open, s.close
    path[:, 1:k] = s.low[:, None] + rng.random((n, k - 1)) * (s.high - s.low)[:, None]
    at = rng.permuted(np.tile(np.arange(1, k), (n, 1)), axis=1)[:, :2]
    path[np.arange(n), at[:, 0]], path[np.arange(n), at[:, 1]] = s.low, s.high
    o, c = path[:, :-1], path[:, 1:]
    tf = s.timeframe_ms // k
    return CandleSeries(
        s.symbol, tf, (s.time[:, None] + tf * np.arange(k)).ravel(), o.ravel(),
        np.maximum(o, c).ravel(), np.minimum(o, c).ravel(), c.ravel(), np.full(n * k, 1.0), s.source,
    )  # fmt: skip


def test_replay_with_detail_equals_a_daemon_driving_on_price() -> None:
    """The Rust replay's detail path against a daemon-like loop over the Python-facing engine (the
    exit pass's ``on_price``, then the breakout pass's ``exits`` and ``signals``): the same trades,
    to the last bit, on two bundled symbols cut into 5m pieces; one more symbol has no detail."""
    files = [REPO / "data" / f"{p}_USDT-1h.feather" for p in ("TST", "NFP", "WIF")]
    series = [head(s, 700) for s in load_universe(files)]
    detail = [split(s, 12, seed) for seed, s in enumerate(series[:2])]
    config = load_config()
    params = [v.engine_params() for v in config.variants]
    r = replay_series(series, config, detail=detail)
    got = [
        (config.variants.index(config.variant(t.variant)), t.symbol, t.entry_time, t.exit_time, t.exit_price,
         t.exit_reason, t.pnl)
        for t in r.trades
    ]  # fmt: skip
    assert got == daemon_drive(series, detail, params)
    plain = replay_series(series, config)
    assert r.detail_candles == sum(len(s) * 11 for s in series[:2]) and len(got) > 50
    assert sum(t.exit_time % HOUR != 0 for t in r.trades) > 10, "some exits fall between two closes"
    assert {t.symbol for t in r.trades} == {s.symbol for s in series}, "every symbol trades"
    assert r.trades != plain.trades


def same(a: ReplayResult, b: ReplayResult) -> bool:
    """Bit for bit: trades, open positions, metrics and equity curves."""
    curves = all(np.array_equal(a.equity[k], b.equity[k]) for k in a.variants)
    return (a.trades, a.open_positions, a.metrics) == (b.trades, b.open_positions, b.metrics) and curves


def test_no_detail_is_todays_replay_bit_for_bit() -> None:
    series = load_universe([REPO / "data"])
    config = load_config()
    today = replay_series(series, config)
    assert same(replay_series(series, config, detail=()), today) and len(today.trades) > 100
    # Detail that never lines up with a candle (times 1 ms off) changes nothing either.
    off = split(series[0], 4, 0)
    off = CandleSeries(off.symbol, off.timeframe_ms, off.time + 1, off.open, off.high, off.low, off.close,
                       off.volume, off.source)  # fmt: skip
    shifted = replay_series(series, config, detail=[off])
    assert same(shifted, today)
    assert shifted.undetailed == {off.symbol: len(series[0])} and shifted.detail_candles == 0


def write_feather(path: Path, s: CandleSeries) -> None:
    """``s`` as freqtrade writes it."""
    cols = {"date": pa.array(s.time, type=pa.timestamp("ms", tz="UTC"))}
    cols.update({c: getattr(s, c) for c in ("open", "high", "low", "close", "volume")})
    feather.write_feather(pa.table(cols), path)


def test_cli_detail_says_which_symbols_had_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--detail 5m`` reads the 5m file beside a 1h one, and the summary names the symbol without."""
    data = tmp_path / "data"
    data.mkdir()
    tst, nfp = (
        head(s, 400) for s in load_universe([REPO / "data" / f"{p}_USDT-1h.feather" for p in ("TST", "NFP")])
    )
    write_feather(data / "TST_USDT-1h.feather", tst)
    write_feather(data / "NFP_USDT-1h.feather", nfp)
    write_feather(data / "TST_USDT-5m.feather", split(head(tst, 200), 12, 1))
    assert main(["replay", "--data", str(data), "--quiet", "--detail", "5m"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"Detail 5m: 1 of 2 symbols, {200 * 11:,} 5m candles; "
        "200 candles with incomplete 5m detail replayed without; no 5m detail for NFP/USDT"
    )
    out = tmp_path / "o.json"
    assert main(["replay", "--data", str(data), "--quiet", "--detail", "7x", "--json", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sigil replay: error: not a timeframe: '7x' (expected e.g. 5m, 1h, 1d; at most 52w)"
    ]
    assert not out.exists()
