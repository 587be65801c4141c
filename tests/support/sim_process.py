"""``sigil exchange-sim`` as a subprocess, for the suites and benchmarks that need a separate process
(the exchange tests, the daemon and exchange benchmarks)."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Runs the ``sigil`` command line in a fresh interpreter (no console script needed).
CLI = "import sys; from sigil.cli import main; sys.exit(main(sys.argv[1:]))"
LISTENING = re.compile(r"exchange-sim listening on (http://127\.0\.0\.1:\d+)")


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

    @classmethod
    def frozen(cls, data: Path, start_ms: int, latency_ms: int = 0) -> SimProcess:
        """A simulator of the candle files in ``data`` on any free port, its clock frozen at ``start_ms``
        (moved by :func:`sim_clock`), ``latency_ms`` added to every call."""
        args = ["--data", str(data), "--port", "0", "--speed", "0", "--start", str(start_ms)]
        return cls([*args, "--latency-ms", str(latency_ms)])

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


def sim_clock(url: str, **body: Any) -> dict[str, Any]:
    """POSTs ``body`` (``now_ms``, ``advance_ms``, ``speed``) to the simulator's ``/sim/clock``."""
    req = urllib.request.Request(
        f"{url}/sim/clock", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out
