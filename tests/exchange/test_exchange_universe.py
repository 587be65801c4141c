"""The universe: rules on ccxt markets and tickers, then against the simulator."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sigil.data.candles import load_universe
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import Faults
from sigil.exchange.universe import Universe, is_leveraged, quote_volume, select
from tests.support.data import BUNDLED
from tests.support.exchange import fast_config

HOUR = 3_600_000


def market(symbol: str, *, spot: bool = True, active: bool | None = True) -> dict[str, Any]:
    base, quote = symbol.split("/")
    return {"symbol": symbol, "base": base, "quote": quote, "spot": spot, "active": active}


def test_rules_on_ccxt_shapes() -> None:
    names = [
        "BTC/USDT", "ETH/USDT", "BTCUP/USDT", "ETHBEAR/USDT", "JUP/USDT", "USDC/USDT", "EURI/USDT",
        "DEAD/USDT", "TINY/USDT", "HUGE/USDT", "ETH/BTC", "NOTICK/USDT", "XRP/USDT", "XRP3L/USDT",
    ]  # fmt: skip
    markets = {n: market(n) for n in names}
    markets["DEAD/USDT"]["active"] = False
    markets["PERP/USDT:USDT"] = {**market("PERP/USDT"), "spot": False}
    markets["NONE/USDT"] = market("NONE/USDT", active=None)  # the exchange does not say: active
    vol = {"BTC/USDT": 9e8, "ETH/USDT": 5e8, "JUP/USDT": 2e6, "TINY/USDT": 10.0, "HUGE/USDT": 1e12}
    vol |= {"XRP/USDT": 7e7, "NONE/USDT": 3e6, "BTCUP/USDT": 1e7, "USDC/USDT": 1e9, "ETH/BTC": 1e9}
    tickers: dict[str, Any] = {s: {"symbol": s, "quoteVolume": v} for s, v in vol.items()}
    tickers["XRP3L/USDT"] = {"quoteVolume": None, "baseVolume": 1000.0, "last": 2.0}
    cfg = fast_config(min_quote_volume=1e6, max_quote_volume=1e10, max_symbols=4)
    sel = select(markets, tickers, cfg, server_time=123)
    assert sel.symbols == ("BTC/USDT", "ETH/USDT", "XRP/USDT", "NONE/USDT")  # most traded first
    assert sel.excluded == {
        "BTCUP/USDT": "leveraged",
        "ETHBEAR/USDT": "leveraged",
        "XRP3L/USDT": "leveraged",
        "USDC/USDT": "stablecoin",
        "EURI/USDT": "stablecoin",
        "DEAD/USDT": "inactive",
        "PERP/USDT:USDT": "not_spot",
        "TINY/USDT": "volume_low",
        "HUGE/USDT": "volume_high",
        "NOTICK/USDT": "no_volume",
        "JUP/USDT": "max_symbols",  # JUP is not "J" + UP: kept by the rules, cut by max_symbols
    }
    assert sel.volumes["BTC/USDT"] == 9e8 and sel.server_time == 123


def test_leveraged_needs_the_underlying_listed() -> None:
    bases = {"BTC", "JUP", "SYRUP", "ETH"}
    suffixes = ("UP", "DOWN", "BULL", "BEAR", "3L")
    assert is_leveraged("BTCUP", bases, suffixes) and is_leveraged("ETHBULL", bases, suffixes)
    assert not is_leveraged("JUP", bases, suffixes) and not is_leveraged("SYRUP", bases, suffixes)
    assert not is_leveraged("UP", bases | {""}, suffixes)


def test_quote_volume_falls_back_to_base_volume_times_last() -> None:
    assert quote_volume({"quoteVolume": 5.0}) == 5.0
    assert quote_volume({"quoteVolume": None, "baseVolume": 3.0, "last": 2.0}) == 6.0
    assert quote_volume({"quoteVolume": float("nan")}) is None
    assert quote_volume(None) is None


@pytest.fixture
def universe_files(tmp_path: Path) -> Path:
    """Bundled real files plus renamed copies posing as a leveraged token and a stablecoin."""
    for name in ("BTC", "DOGE", "PEPE", "SUI", "WIF"):
        shutil.copy(BUNDLED / f"{name}_USDT-1h.feather", tmp_path)
    shutil.copy(BUNDLED / "DOGE_USDT-1h.feather", tmp_path / "BTCUP_USDT-1h.feather")
    shutil.copy(BUNDLED / "PEPE_USDT-1h.feather", tmp_path / "FDUSD_USDT-1h.feather")
    return tmp_path


async def test_universe_against_the_simulator(start_sim, universe_files: Path) -> None:
    series = load_universe([universe_files])
    start = max(int(s.time[200]) for s in series)
    sim = await start_sim(series, start_ms=start, faults=Faults(vanish=("SUI/USDT",), vanish_after=1))
    # volumes from the simulator's 24h tickers: keep the 3 most traded of what the rules allow
    cfg = fast_config(max_symbols=3, universe_refresh_s=6 * 3600)
    async with ExchangeClient.from_config(cfg, url=sim.url, environ={}) as client:
        universe = Universe(client)
        assert universe.symbols == () and universe.due(0)
        sel = await universe.refresh()
        assert sel.excluded["BTCUP/USDT"] == "leveraged" and sel.excluded["FDUSD/USDT"] == "stablecoin"
        assert len(sel.symbols) == 3 and "SUI/USDT" in sel.symbols + tuple(sel.excluded)
        ranked = list(sel.volumes.values())
        assert ranked == sorted(ranked, reverse=True)
        tickers = await client.fetch_tickers()
        assert all(sel.volumes[s] == tickers[s]["quoteVolume"] for s in sel.symbols)
        # refreshed on its own interval, in exchange time
        assert not await universe.refresh_if_due(start + 5 * HOUR)
        sim.clock.advance(6 * HOUR)
        assert await universe.refresh_if_due()
        # SUI was delisted after the first exchangeInfo: gone from the markets and the universe
        assert universe.selection is not None and "SUI/USDT" not in universe.selection.excluded
        assert "SUI/USDT" not in universe.symbols
        assert "SUI/USDT" not in await client.load_markets()
        r = await client.fetch_new_candles(["SUI/USDT", *universe.symbols])
        assert r.failed == {"SUI/USDT": "BadSymbol"}  # asked for anyway: refused, counted, no crash


async def test_a_failed_refresh_keeps_the_last_universe(start_sim, universe_files: Path) -> None:
    series = load_universe([universe_files])
    sim = await start_sim(series, start_ms=max(int(s.time[200]) for s in series))
    async with ExchangeClient.from_config(fast_config(retries=1), url=sim.url, environ={}) as client:
        universe = Universe(client)
        first = await universe.refresh()
        sim.faults = Faults(rate_5xx=1.0)
        with pytest.raises(Exception, match=r"ExchangeNotAvailable|RequestTimeout"):
            await universe.refresh()
        assert universe.selection is first and universe.symbols == first.symbols
