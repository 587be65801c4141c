"""``sigil.replay``, the public replay entry point: determinism, the ``--json`` document, odd inputs."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import sigil
from sigil.config import load_config
from sigil.data import CandleSeries, load_universe
from sigil.errors import DataError
from sigil.research.replay import ReplayResult, replay_series
from tests.reference import ENGINE_STOP_PCT_RULE, differences
from tests.reference import replay as reference_replay

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
TRADE_FIELDS = {
    "variant",
    "symbol",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "stop_pct",
    "atr_at_entry",
    "exit_reason",
    "pnl",
    "fees",
}
ENTRY_FIELDS = TRADE_FIELDS - {"exit_time", "exit_price", "exit_reason", "pnl", "fees"}


def iso_to_ms(text: str) -> int:
    """``2024-01-01T01:00:00Z`` → ms since the epoch."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def sliced(s: CandleSeries, start: int, stop: int) -> CandleSeries:
    """Candles ``start:stop`` of a series."""
    cols = ("time", "open", "high", "low", "close", "volume")
    return dataclasses.replace(s, **{c: getattr(s, c)[start:stop] for c in cols})


def fingerprint(r: ReplayResult) -> tuple[str, bytes]:
    """Everything a replay returns, as JSON text and raw bytes of the equity curves."""
    curves = r.equity_time.tobytes() + b"".join(r.equity[v].tobytes() for v in r.variants)
    return json.dumps(r.to_json(), sort_keys=True), curves


def write_json_candles(path: Path, s: CandleSeries) -> Path:
    """Writes a series as a freqtrade JSON candle file."""
    rows = [
        [int(t), float(o), float(h), float(lo), float(c), float(v)]
        for t, o, h, lo, c, v in zip(s.time, s.open, s.high, s.low, s.close, s.volume, strict=True)
    ]
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def bundled_result(bundled_data: Path) -> ReplayResult:
    """One replay of the bundled data through the shipped config."""
    return sigil.replay(bundled_data)


def test_replay_is_deterministic(bundled_data: Path, bundled_result: ReplayResult) -> None:
    """Two runs over the same files give the same document and curves, bit for bit."""
    again = sigil.replay([bundled_data])
    assert fingerprint(again) == fingerprint(bundled_result)
    assert again.trades == bundled_result.trades


def test_replay_does_not_depend_on_the_order_files_are_given(
    bundled_data: Path, bundled_result: ReplayResult
) -> None:
    """Candles are merged by (close time, symbol): listing the files backwards changes no decision."""
    files = sorted(bundled_data.glob("*.feather"), reverse=True)
    backwards = sigil.replay(files)
    assert backwards.trades == bundled_result.trades
    assert fingerprint(backwards)[1] == fingerprint(bundled_result)[1]
    for name in bundled_result.variants:
        assert backwards.metrics[name] == bundled_result.metrics[name]


def test_json_document_shape(bundled_data: Path, bundled_result: ReplayResult) -> None:
    """``{"variants": {name: metrics}, "trades": [...], "open_positions": [...]}``: JSON, ISO UTC times."""
    doc = json.loads(json.dumps(bundled_result.to_json()))  # serialisable as is: no numpy scalars
    assert {"variants", "trades", "open_positions"} <= set(doc)
    assert list(doc["variants"]) == ["baseline", "moderate", "aggressive", "unhinged"]
    for metrics in doc["variants"].values():
        assert {"closed_trades", "balance", "equity", "skips", "opens"} <= set(metrics)
        assert set(metrics["skips"]) == {"open", "cooldown", "max_open", "balance"}
    assert len(doc["trades"]) == len(bundled_result.trades) > 0
    for trade, t in zip(doc["trades"], bundled_result.trades, strict=True):
        assert set(trade) >= TRADE_FIELDS
        for key in ("entry_time", "exit_time"):
            assert ISO_UTC.match(trade[key]), trade[key]
        assert iso_to_ms(trade["entry_time"]) == t.entry_time
        assert iso_to_ms(trade["exit_time"]) == t.exit_time
        assert trade["exit_reason"] in {"hard_stop", "atr_trail", "time_stop"}


def test_entry_time_is_the_signal_candle_close(bundled_data: Path, bundled_result: ReplayResult) -> None:
    """``entry_time`` = close time of the signal candle, and the entry fills at its close (+ slippage)."""
    series = {s.symbol: s for s in load_universe([bundled_data])}
    config = load_config()
    for t in bundled_result.trades:
        s = series[t.symbol]
        (i,) = np.flatnonzero(s.time == t.entry_time - s.timeframe_ms)
        assert t.entry_price == float(s.close[i]) * (1 + config.variant(t.variant).slippage)


def test_open_positions_in_the_json_document(bundled_data: Path) -> None:
    """Positions still open when the data ends are listed with the entry fields of a trade."""
    btc = load_universe([bundled_data / "BTC_USDT-1h.feather"])[0]
    # The first cut of the data (every 50 candles) that leaves positions open.
    result = next(
        r
        for r in (replay_series([sliced(btc, 0, n)], load_config()) for n in range(500, len(btc), 50))
        if r.open_positions
    )
    doc = json.loads(json.dumps(result.to_json()))
    assert len(doc["open_positions"]) == len(result.open_positions) > 0
    for p in doc["open_positions"]:
        assert set(p) >= ENTRY_FIELDS
        assert ISO_UTC.match(p["entry_time"])
    assert {v: m["open_positions"] for v, m in doc["variants"].items()} == {
        v: sum(p.variant == v for p in result.open_positions) for v in result.variants
    }


def test_symbols_starting_and_ending_at_different_times(bundled_data: Path) -> None:
    """Overlapping spans: a late starter, and an early finisher whose data ends with positions open.

    Trades stay inside their symbol's span, the stranded positions stay open (valued at their last
    close) to the end, the equity curve covers the union of close times, and the engine agrees with the
    reference.
    """
    full = {s.symbol: s for s in load_universe([bundled_data])}
    series = [
        sliced(full["BTC/USDT"], 0, 2970),  # ends early, in the middle of a trade
        sliced(full["DOGE/USDT"], 1500, 6002),  # starts late
        sliced(full["PEPE/USDT"], 800, 2200),  # inside both
        full["TST/USDT"],  # another year
    ]
    config = load_config()
    result = replay_series(series, config)
    ref = reference_replay(
        series, [v.engine_params() for v in config.variants], stop_pct_rule=ENGINE_STOP_PCT_RULE
    )
    assert not differences(result, ref)
    spans = {s.symbol: (int(s.time[0]) + s.timeframe_ms, int(s.time[-1]) + s.timeframe_ms) for s in series}
    for t in result.trades:
        first, last = spans[t.symbol]
        assert first <= t.entry_time < t.exit_time <= last
    assert {t.symbol for t in result.trades} == set(spans)
    stranded = [p for p in result.open_positions if p.symbol == "BTC/USDT"]
    assert stranded and all(p.entry_time <= spans["BTC/USDT"][1] for p in stranded)
    closes = set().union(*({int(x) + s.timeframe_ms for x in s.time} for s in series))
    assert result.equity_time.tolist() == sorted(closes)


def test_one_candle_symbols_change_nothing(tmp_path: Path, bundled_data: Path) -> None:
    """A symbol with a single candle trades nothing and changes no other decision (a file with no
    candles is bad input: tests/test_data_errors.py)."""
    tst = bundled_data / "TST_USDT-1h.feather"
    shutil.copy(tst, tmp_path / tst.name)
    one = load_universe([bundled_data / "NFP_USDT-1h.feather"])[0]
    write_json_candles(tmp_path / "ONE_USDT-1h.json", sliced(one, 0, 1))
    alone, together = sigil.replay(tst), sigil.replay(tmp_path)
    assert set(together.symbols) == {"TST/USDT", "ONE/USDT"}
    assert together.candles == alone.candles + 1
    assert together.trades == alone.trades and len(alone.trades) > 0
    for name in alone.variants:
        a, b = alone.metrics[name], together.metrics[name]
        assert (a.balance, a.skips, a.opens) == (b.balance, b.skips, b.opens)


def test_only_tiny_symbols(tmp_path: Path, bundled_data: Path) -> None:
    """Fewer candles than any window: no trades, balances untouched, a valid document."""
    one = load_universe([bundled_data / "NFP_USDT-1h.feather"])[0]
    write_json_candles(tmp_path / "ONE_USDT-1h.json", sliced(one, 0, 1))
    write_json_candles(tmp_path / "FEW_USDT-1h.json", sliced(one, 0, 5))
    result = sigil.replay(tmp_path)
    assert result.trades == [] and result.open_positions == []
    assert all(m.balance == m.starting_balance == m.equity for m in result.metrics.values())
    assert json.loads(json.dumps(result.to_json()))["trades"] == []


def test_duplicate_symbol_is_a_value_error(tmp_path: Path, bundled_data: Path) -> None:
    """One symbol twice, as two files or as two series, is refused with ValueError."""
    tst = load_universe([bundled_data / "TST_USDT-1h.feather"])[0]
    with pytest.raises(ValueError, match="TST/USDT"):
        replay_series([tst, tst], load_config())
    shutil.copy(bundled_data / "TST_USDT-1h.feather", tmp_path / "TST_USDT-1h.feather")
    write_json_candles(tmp_path / "TST_USDT-1h.json", sliced(tst, 0, 100))
    with pytest.raises(ValueError, match="TST/USDT") as err:
        sigil.replay(tmp_path)
    assert isinstance(err.value, DataError)
