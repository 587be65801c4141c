"""Helpers for the exchange tests (imported by the tests and by conftest.py): real candle files,
the simulator as a subprocess, a plain ccxt binance pointed at a simulator, test client settings."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt

from sigil.config import ExchangeConfig

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data"
SHARED_UNIVERSE = REPO.parent / "shared" / "data" / "universe-1h"
#: Files of the shared universe the fidelity tests read (a spread of price scales and listing dates);
#: the bundled files stand in when ../shared is absent.
SAMPLE_NAMES = ("BTC", "PEPE", "1000SATS", "DOGS", "EURI", "ZRO", "XVG")
CLI = "import sys; from sigil.cli import main; sys.exit(main(sys.argv[1:]))"
LISTENING = re.compile(r"exchange-sim listening on (http://127\.0\.0\.1:\d+)")


def universe_dir() -> Path:
    """The 109-pair universe when ../shared/data is there, else the bundled files."""
    return SHARED_UNIVERSE if SHARED_UNIVERSE.is_dir() else BUNDLED


def sample_files() -> list[Path]:
    """Several real 1h files of different price scales (bundled data when ../shared is absent)."""
    if SHARED_UNIVERSE.is_dir():
        files = [SHARED_UNIVERSE / f"{n}_USDT-1h.feather" for n in SAMPLE_NAMES]
        return [f for f in files if f.exists()]
    return sorted(BUNDLED.glob("*.feather"))


def fast_config(**overrides: Any) -> ExchangeConfig:
    """Client settings for tests: the real rate limiter, but short backoffs and timeouts."""
    values: dict[str, Any] = {
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 2.0,
        "history_candles": 48,
        "universe_refresh_s": 3600.0,
    }
    values.update(overrides)
    return ExchangeConfig(**values)


def plain_binance(url: str, **config: Any) -> Any:
    """A plain ccxt ``binance`` (no Sigil code) with every API URL pointed at ``url``, as a user would."""
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}, **config})
    for key, value in ex.urls["api"].items():
        if isinstance(value, str):
            ex.urls["api"][key] = re.sub(r"^https://[^/]+", url, value)
    return ex


class SimProcess:
    """``sigil exchange-sim`` run as a subprocess; ``url`` once it listens. Its stdout and stderr are
    drained by threads into ``output`` / ``errors`` (a full pipe would block the simulator)."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "exchange-sim", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.output: list[str] = []
        self.errors: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.output, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.errors, False), daemon=True).start()
        self.url = self._wait_listening(timeout=60.0)

    def _drain(self, stream: Any, into: list[str], signal: bool) -> None:
        for line in stream:
            into.append(line)
            if signal:
                self._lines.put(line)
        if signal:
            self._lines.put(None)

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            m = LISTENING.search(line)
            if m:
                return m.group(1)
        self.stop()
        raise RuntimeError(f"exchange-sim did not start: {''.join(self.output)} {''.join(self.errors)}")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def clean_env() -> dict[str, str]:
    """The environment without any SIGIL_ variable (so a developer's own settings do not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")}
