"""Settings resolution and live-mode key hygiene: keys only from the environment, a clear error
without them, and never in anything the process writes."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from sigil.errors import ConfigError, LiveKeysMissing
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.ccxt_hooks import point_urls
from sigil.exchange.redaction import public_url
from sigil.exchange.settings import resolve_exchange
from tests.support import live_session
from tests.support.exchange import clean_env, fast_config

#: Run as its own process (``python tests/support/live_session.py URL``).
SESSION = Path(live_session.__file__)
KEY = "SiGiLkEy7f3a9c2e51d84b6aZZTESTKEYxx"
SECRET = "SiGiLsEcReT0b1c2d3e4f5a6b7c8d9ZZTESTSECRETxx"


def test_url_comes_from_flag_then_env_then_config() -> None:
    cfg = fast_config(url="http://config.example:1")
    env = {"SIGIL_EXCHANGE_URL": "http://env.example:2/"}
    s = resolve_exchange(cfg, url="http://flag.example:3", environ=env)
    assert (s.url, s.url_source) == ("http://flag.example:3", "--exchange-url")
    s = resolve_exchange(cfg, environ=env)
    assert (s.url, s.url_source) == ("http://env.example:2", "SIGIL_EXCHANGE_URL")
    assert resolve_exchange(cfg, environ={}).url_source == "exchange.url"
    assert resolve_exchange(fast_config(), environ={}).url is None
    with pytest.raises(ConfigError, match="SIGIL_EXCHANGE_URL: not an http"):
        resolve_exchange(cfg, environ={"SIGIL_EXCHANGE_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="--exchange-url: bad port"):
        resolve_exchange(cfg, url="http://h:99999", environ={})


def test_every_api_url_is_pointed_at_the_override() -> None:
    api = {"public": "https://api.binance.com/api/v3", "fapi": {"v1": "https://fapi.binance.com/fapi/v1"}}
    assert point_urls(api, "http://127.0.0.1:9/proxy") == {
        "public": "http://127.0.0.1:9/proxy/api/v3",
        "fapi": {"v1": "http://127.0.0.1:9/proxy/fapi/v1"},
    }
    assert public_url("http://user:pw@host:5/x?q=1") == "http://host:5/x"


async def test_the_client_uses_the_resolved_url_for_every_api() -> None:
    async with ExchangeClient.from_config(fast_config(), url="http://127.0.0.1:1", environ={}) as client:
        urls = client.exchange.urls["api"]
        assert all(u.startswith("http://127.0.0.1:1/") for u in urls.values() if isinstance(u, str))
        assert client.exchange.enableRateLimit and client.exchange.timeout == 2000


def test_live_without_keys_is_a_clear_error() -> None:
    with pytest.raises(LiveKeysMissing, match="set SIGIL_API_KEY and SIGIL_API_SECRET"):
        resolve_exchange(fast_config(), live=True, environ={})
    with pytest.raises(LiveKeysMissing, match=r"set SIGIL_API_SECRET$"):
        resolve_exchange(fast_config(), live=True, environ={"SIGIL_API_KEY": KEY})
    # keys in the environment do nothing unless live mode is asked for
    assert (
        resolve_exchange(
            fast_config(), environ={"SIGIL_API_KEY": KEY, "SIGIL_API_SECRET": SECRET}
        ).credentials
        is None
    )


async def test_keys_stay_out_of_repr_logs_and_health(caplog) -> None:
    env = {"SIGIL_API_KEY": KEY, "SIGIL_API_SECRET": SECRET}
    settings = resolve_exchange(fast_config(), url="http://127.0.0.1:1", live=True, environ=env)
    assert settings.credentials is not None and settings.credentials.reveal() == (KEY, SECRET)
    caplog.set_level(logging.DEBUG)
    async with ExchangeClient(settings) as client:
        logging.getLogger("sigil.exchange.wire").debug("headers %s", {"X-MBX-APIKEY": KEY})
        text = " ".join(
            [repr(settings), str(settings.credentials), repr(client), str(client.health()), caplog.text]
        )
        assert "**********" in caplog.text
    assert KEY not in text and SECRET not in text


async def test_a_live_session_writes_neither_key_nor_secret(start_sim, bundled_series, caplog) -> None:
    """A whole live session in its own process, everything logged at DEBUG (ccxt's request lines
    with their headers too), errors provoked: grep all it wrote, and the simulator's log too."""
    caplog.set_level(logging.DEBUG)
    btc = [s for s in bundled_series if s.symbol == "BTC/USDT"]
    sim = await start_sim(btc, start_ms=int(btc[0].time[1000]))
    env = clean_env() | {"SIGIL_API_KEY": KEY, "SIGIL_API_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SESSION), str(sim.url), env=env, stdout=PIPE, stderr=PIPE
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=120)
    out, err = out_b.decode(), err_b.decode()
    everything = out + err + caplog.text
    assert proc.returncode == 0, err[-3000:]
    assert "bought:" in out and "sold:" in out and "health:" in out
    assert "X-MBX-APIKEY" in err  # ccxt's DEBUG request lines were written (redacted)
    assert out.count("error:") == 3 and "Traceback" in err
    assert sim.stats.requests["order"] >= 2  # the keys were really used
    for secret in (KEY, SECRET, KEY[:16], SECRET[-16:]):
        assert secret not in everything


def test_a_live_session_without_keys_exits_2_with_one_line() -> None:
    run = subprocess.run(
        [sys.executable, str(SESSION), "http://127.0.0.1:9"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("sigil:")]
    assert lines == ["sigil: error: live trading needs the exchange API key pair in the environment: "
                     "set SIGIL_API_KEY and SIGIL_API_SECRET"]  # fmt: skip
