"""``sigil download`` against the simulator: files equal to the simulator's source files candle for
candle, incremental runs that send only the requests they need, ``--prepend``, malformed candles left
out and reported, a download killed mid-file, unknown pairs, bad input (exit 2 before any request) and
the issue's "done when": download then replay prints the table of the source files."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.feather as feather
import pytest

from sigil.cli import main
from sigil.data.candles import CandleSeries, load_universe, read_candles
from sigil.data.download import Downloader, file_name, find_gaps
from sigil.errors import ExchangeUnavailable
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.sim import Faults
from tests.support.data import BUNDLED, REPO
from tests.support.exchange import clean_env, fast_config
from tests.support.sim_process import CLI

HOUR = 3_600_000
SINCE = 1_704_067_200_000  # 2024-01-01


def by_symbol(series: list[CandleSeries], *names: str) -> list[CandleSeries]:
    return [s for s in series if s.symbol.split("/")[0] in names]


def end_of(series: list[CandleSeries]) -> int:
    """The simulated time at which every candle of ``series`` has just closed."""
    return max(int(s.time[-1]) + s.timeframe_ms for s in series)


def client_for(url: str, **overrides: Any) -> ExchangeClient:
    return ExchangeClient.from_config(fast_config(rate_limit_ms=1, **overrides), url=url, environ=clean_env())


def same_candles(path: Path, source: CandleSeries, lo: int = 0, hi: int | None = None) -> None:
    got = read_candles(path)
    hi = len(source) if hi is None else hi
    for col in ("time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(got, col), getattr(source, col)[lo:hi]), col


async def download(url: str, folder: Path, pairs: list[str], **kwargs: Any) -> Any:
    kwargs.setdefault("since_ms", SINCE)
    async with client_for(url) as client:
        return await Downloader(client, folder, ["1h"], **kwargs).run(pairs)


async def test_downloaded_files_equal_the_source_files(start_sim, bundled_series, tmp_path) -> None:
    sim = await start_sim(bundled_series, start_ms=end_of(bundled_series))
    result = await download(sim.url, tmp_path, [s.symbol for s in bundled_series])
    for s in bundled_series:
        path = tmp_path / file_name(s.symbol, "1h")
        same_candles(path, s)
        table = feather.read_table(path)
        assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
        assert str(table.schema.field("date").type) == "timestamp[ns, tz=UTC]"
        assert all(str(table.schema.field(c).type) == "double" for c in table.column_names[1:])
    assert result.candles == sum(len(s) for s in bundled_series)
    # Paginated: as few klines requests as 1000-candle pages allow.
    pages = sum(-(-len(s) // 1000) for s in bundled_series)
    assert sim.stats.requests["klines"] == pages
    assert result.requests == sim.stats.total()
    assert not list(tmp_path.glob(".*"))  # no temporary file left


async def test_a_second_run_asks_only_for_the_candles_after_the_last_stored(
    start_sim, bundled_series, tmp_path
) -> None:
    tst = by_symbol(bundled_series, "TST")
    s = tst[0]
    cut = 2500
    sim = await start_sim(tst, start_ms=int(s.time[cut - 1]) + HOUR)
    # The candle in progress at the simulator's clock (index ``cut``) is served partial: not stored.
    first = await download(sim.url, tmp_path, ["TST/USDT"])
    path = tmp_path / "TST_USDT-1h.feather"
    same_candles(path, s, 0, cut)
    assert first.files[0].new == cut

    sim.clock.set(end_of(tst))
    before = sim.stats.requests["klines"]
    second = await download(sim.url, tmp_path, ["TST/USDT"])
    assert second.files[0].new == len(s) - cut
    assert sim.stats.requests["klines"] - before == 1  # 593 candles: one page
    same_candles(path, s)

    before = sim.stats.requests["klines"]
    third = await download(sim.url, tmp_path, ["TST/USDT"])
    assert third.files[0].up_to_date and third.files[0].new == 0
    assert sim.stats.requests["klines"] == before  # nothing closed since: no klines request at all


async def test_prepend_extends_history_backwards(start_sim, bundled_series, tmp_path) -> None:
    tst = by_symbol(bundled_series, "TST")
    s = tst[0]
    sim = await start_sim(tst, start_ms=end_of(tst))
    mid = 1800
    await download(sim.url, tmp_path, ["TST/USDT"], since_ms=int(s.time[mid]))
    path = tmp_path / "TST_USDT-1h.feather"
    same_candles(path, s, mid)
    before = sim.stats.requests["klines"]
    result = await download(sim.url, tmp_path, ["TST/USDT"], prepend=True)
    assert result.files[0].new == mid
    assert sim.stats.requests["klines"] - before == 2  # 1800 candles before the first stored
    same_candles(path, s)


async def test_malformed_candles_are_reported_and_not_stored(start_sim, bundled_series, tmp_path) -> None:
    nfp = by_symbol(bundled_series, "NFP")
    faults = Faults(
        seed=3, rate_malformed=1.0, malformed_kinds=("nan", "high_low"), endpoints=frozenset({"klines"})
    )
    sim = await start_sim(nfp, start_ms=end_of(nfp), faults=faults)
    result = await download(sim.url, tmp_path, ["NFP/USDT"])
    f = result.files[0]
    pages = -(-len(nfp[0]) // 1000)
    assert len(f.bad) == pages  # every answer (and its second try) had one bad candle
    stored = read_candles(f.path)  # and the file passes the candle rules
    bad_times = {t for t, _ in f.bad}
    assert not bad_times & set(stored.time.tolist())
    assert len(stored) == len(nfp[0]) - len(bad_times)
    # Each bad candle inside the stored range left a hole, and the gaps name it.
    missing = {t for g in f.gaps for t in range(g.start, g.end + 1, HOUR)}
    assert missing == {t for t in bad_times if stored.time[0] < t < stored.time[-1]}


def test_gaps_are_missing_open_times_inside_the_range() -> None:
    t = np.array([0, 1, 2, 5, 6, 9], dtype=np.int64) * HOUR
    gaps = find_gaps(t, HOUR)
    assert [(g.start // HOUR, g.end // HOUR, g.missing) for g in gaps] == [(3, 4, 2), (7, 8, 2)]


async def test_an_unreachable_exchange_is_exchange_unavailable(tmp_path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}", retries=1) as client:
        with pytest.raises(ExchangeUnavailable):
            await Downloader(client, tmp_path, ["1h"], days=3).run(["TST/USDT"])
    assert not list(tmp_path.iterdir())


# ----- the command line, as a subprocess (the simulator serves in this test's event loop)


def download_args(folder: Path, pairs: list[str], url: str) -> tuple[str, ...]:
    """``sigil download`` of ``pairs`` at 1h since 2024-01-01 from the simulator at ``url``."""
    return (
        "download",
        "--data",
        str(folder),
        "--pairs",
        *pairs,
        "--timeframe",
        "1h",
        "--since",
        "2024-01-01",
        "--exchange-url",
        url,
    )


async def sigil(*args: str, kill_when: Any = None) -> tuple[int, str, str]:
    """Runs ``sigil ARGS`` in a fresh interpreter; ``kill_when()`` true → SIGKILL it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), "PYTHONPATH": str(REPO / "python")},
    )
    if kill_when is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while proc.returncode is None and loop.time() < deadline and not kill_when():
            await asyncio.sleep(0.002)
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_download_killed_mid_file_leaves_complete_files(start_sim, bundled_series, tmp_path) -> None:
    series = by_symbol(bundled_series, "BTC", "DOGE", "PEPE", "SUI")
    slow = Faults(latency_ms=100, latency_jitter_ms=200, endpoints=frozenset({"klines"}))
    sim = await start_sim(series, start_ms=end_of(series), faults=slow)
    pairs = [s.symbol for s in series]
    args = download_args(tmp_path, pairs, sim.url)

    def writing() -> bool:  # a temporary file is being written (or a file was just renamed into place)
        return any(tmp_path.glob(".*.tmp")) or any(tmp_path.glob("*.feather"))

    seen = sim.stats.requests["klines"]
    kills = [writing, lambda: sim.stats.requests["klines"] >= seen + 30]
    for kill_when in kills:
        code, _, _ = await sigil(*args, kill_when=kill_when)
        assert code == -signal.SIGKILL
        for f in tmp_path.glob("*.feather"):
            read_candles(f)  # every file there is whole and valid
    sim.faults = Faults()
    code, _, err = await sigil(*args, "--quiet")
    assert code == 0, err
    for s in series:
        same_candles(tmp_path / file_name(s.symbol, "1h"), s)
    assert not list(tmp_path.glob(".*"))  # temporary files of the killed runs are gone


async def test_an_unknown_pair_is_one_line_and_exit_2_when_nothing_was_fetched(
    start_sim, bundled_series, tmp_path
) -> None:
    tst = by_symbol(bundled_series, "TST")
    sim = await start_sim(tst, start_ms=end_of(tst))
    base = (
        "download",
        "--data",
        str(tmp_path),
        "--timeframe",
        "1h",
        "--days",
        "2",
        "--exchange-url",
        sim.url,
        "--quiet",
    )
    code, out, err = await sigil(*base, "--pairs", "NOPE/USDT", "TST/USDT")
    assert code == 0, err
    assert [ln for ln in err.splitlines() if "NOPE/USDT" in ln] == [
        "sigil download: NOPE/USDT: binance does not list NOPE/USDT"
    ]
    assert "Downloaded 1 of 2 pairs: 48 new candles" in out
    code, out, err = await sigil(*base, "--pairs", "NOPE/USDT")
    assert code == 2
    assert err.strip().splitlines()[-1] == "sigil download: error: nothing could be fetched"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--timeframe", "7x", "--days", "2"], "not a timeframe"),
        (["--timeframe", "7m", "--days", "2"], "binance has no '7m' candles"),
        (["--timeframe", "1h", "--days", "2", "--since", "2024-01-01"], "not allowed with argument"),
        (["--timeframe", "1h"], "one of the arguments --days --since is required"),
        (["--timeframe", "1h", "--since", "yesterday"], "not a time"),
        (
            ["--timeframe", "1h", "--since", "2024-02-01", "--until", "2024-01-01"],
            "--until must be after --since",
        ),
        (["--timeframe", "1h", "--days", "0"], "must be a whole number >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_request(args, says, tmp_path, capsys) -> None:
    # The URL is a closed port: a request would fail with exit 1, not 2.
    argv = [
        "download",
        "--data",
        str(tmp_path / "d"),
        "--pairs",
        "TST/USDT",
        "--exchange-url",
        "http://127.0.0.1:9",
        *args,
    ]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if ln.startswith("sigil download: error: ")]
    assert len(errors) == 1 and says in errors[0], err
    assert not (tmp_path / "d").exists()


def test_a_data_path_that_is_a_file_is_bad_input(tmp_path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    code = main(["download", "--data", str(f), "--pairs", "TST/USDT", "--timeframe", "1h", "--days", "1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"sigil download: error: {f}: not a folder"


async def test_download_then_replay_prints_the_table_of_the_source_files(
    start_sim, bundled_series, tmp_path
) -> None:
    sim = await start_sim(bundled_series, start_ms=end_of(bundled_series))
    pairs = [s.symbol for s in bundled_series]
    code, out, err = await sigil(*download_args(tmp_path, pairs, sim.url))
    assert code == 0, err
    assert f"Downloaded {len(pairs)} of {len(pairs)} pairs" in out
    assert "download" in err  # the progress bar
    assert len(load_universe([tmp_path])) == len(pairs)
    code_a, want, err_a = await sigil("replay", "--data", str(BUNDLED), "--quiet")
    code_b, got, err_b = await sigil("replay", "--data", str(tmp_path), "--quiet")
    assert code_a == code_b == 0, (err_a, err_b)
    assert got == want


async def test_universe_downloads_the_scanners_universe(start_sim, bundled_series, tmp_path, capsys) -> None:
    series = by_symbol(bundled_series, "TST", "NFP")
    # The simulator lists a symbol as trading until its file's last candle closes.
    sim = await start_sim(series, start_ms=end_of(series) - HOUR)
    argv = ["download", "--data", str(tmp_path), "--universe", "--timeframe", "1h", "--days", "3"]
    code = await asyncio.to_thread(main, [*argv, "--exchange-url", sim.url, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Downloaded 2 of 2 pairs: 144 new candles, 0 gap(s), 0 bad candle(s)" in out
    for s in series:
        same_candles(tmp_path / file_name(s.symbol, "1h"), s, len(s) - 73, len(s) - 1)
