"""``sigil exchange-sim`` as a user runs it: starts, serves a plain ccxt binance, stops on SIGTERM;
bad input exits 2 with one line naming the problem."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from sigil.cli import main
from tests.support.data import BUNDLED, universe_dir
from tests.support.exchange import plain_binance
from tests.support.sim_process import CLI


async def test_it_starts_serves_and_stops(sim_process) -> None:
    sim = sim_process("--data", str(universe_dir()), "--port", "0", "--speed", "3600", "--seed", "1")
    assert sim.output[0].startswith("exchange-sim: ") and "symbols" in sim.output[0]
    ex = plain_binance(sim.url)
    try:
        markets = await ex.load_markets()
        assert "BTC/USDT" in markets
        t1 = await ex.fetch_time()
        candles = await ex.fetch_ohlcv("BTC/USDT", "1h", limit=5)
        assert len(candles) >= 1 and all(len(c) == 6 for c in candles)
        tickers = await ex.fetch_tickers()
        assert tickers["BTC/USDT"]["last"] > 0
        assert await ex.fetch_time() > t1  # 3600×: an hour of market time per second
    finally:
        await ex.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/sim/clock", json={"advance_ms": 86_400_000, "speed": 0}) as r:
            clock = await r.json()
        async with http.get(f"{sim.url}/sim/stats") as r:
            stats = await r.json()
    assert clock["speed"] == 0 and stats["now_ms"] == clock["now_ms"]
    assert stats["requests"]["klines"] == 1 and not stats["unknown"]
    assert sim.stop() == 0


def test_bad_data_exits_2_with_one_line() -> None:
    run = subprocess.run(
        [sys.executable, "-c", CLI, "exchange-sim", "--port", "0", "--data", "/no/such/dir"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "listening" not in run.stdout
    assert run.stderr.strip().splitlines() == ["sigil exchange-sim: error: /no/such/dir: file not found"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--data", str(BUNDLED / "README.md")], "unsupported file type"),
        (["--data", str(BUNDLED), "--malformed-kinds", "nan,bogus"], "malformed kinds must be among"),
        (["--data", str(BUNDLED), "--vanish", "NOPE/USDT"], "vanish: unknown symbol(s) NOPEUSDT"),
        (["--data", str(BUNDLED), "--fault-endpoints", "klines,depth"], "unknown endpoint(s) depth"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], problem: str, capsys) -> None:
    assert main(["exchange-sim", "--port", "0", *args]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigil exchange-sim: error: ") and problem in lines[0]
    assert "listening" not in out


@pytest.mark.parametrize(
    "args",
    [
        ["--fail-429", "1.5"],
        ["--speed", "-1"],
        ["--port", "70000"],
        ["--start", "yesterday"],
        ["--balance", "USDT"],
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["exchange-sim", "--data", str(BUNDLED), *args])
    assert e.value.code == 2 and "error: argument" in capsys.readouterr().err
