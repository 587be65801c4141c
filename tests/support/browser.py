"""A page (``file://`` or ``http://127.0.0.1:PORT``) loaded in headless Chromium (Debian's ``chromium``),
driven over the Chrome DevTools protocol on 127.0.0.1: what the console and the page reported as
errors, every URL the page requested, counts of elements by CSS selector, values of JavaScript
expressions evaluated in the page, its rendered DOM, and a full-page PNG screenshot.

The browser is kept off the network: host names other than 127.0.0.1 do not resolve and any other
address goes through a proxy on a closed loopback port, so a page that tries to fetch from outside
fails (and the request is listed in :attr:`PageReport.requests`).

    report = load_page(path.as_uri(), selectors=["svg path.series"], screenshot=tmp / "page.png")
    assert report.console_errors == []

A test that needs the browser calls :func:`require_chromium` first: it is skipped, with the reason
printed, only when no Chromium can be found (``make browser`` installs it when run as root).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

#: Where to look, in order: $SIGIL_CHROMIUM, then these names on PATH.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags that keep the browser headless, quiet and off the network (see the module docstring).
FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--allow-file-access-from-files",
)
INSTALL_HINT = "install Debian's chromium (apt-get install -y chromium, or `make browser` as root)"


def chromium_path() -> str | None:
    """The Chromium executable, or None when there is none."""
    env = os.environ.get("SIGIL_CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((p for name in CANDIDATES if (p := shutil.which(name))), None)


def require_chromium() -> str:
    """The Chromium executable; skips the calling test, saying why, when there is none."""
    path = chromium_path()
    if path is None:
        env = os.environ.get("SIGIL_CHROMIUM")
        where = f"$SIGIL_CHROMIUM={env}" if env else f"on PATH ({', '.join(CANDIDATES)})"
        reason = f"headless Chromium not found {where}: {INSTALL_HINT}"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


@dataclass
class PageReport:
    """What loading a page showed."""

    url: str
    #: Uncaught exceptions, ``console.error``/``console.assert`` calls, and errors the browser logged
    #: for the page (a resource that failed to load, a blocked request…), one line each.
    console_errors: list[str] = field(default_factory=list)
    #: Every URL the page requested, the page itself first.
    requests: list[str] = field(default_factory=list)
    #: ``document.querySelectorAll(selector).length`` per selector asked for.
    counts: dict[str, int] = field(default_factory=dict)
    #: The value of each expression asked for (JSON values).
    values: dict[str, Any] = field(default_factory=dict)
    #: ``document.documentElement.outerHTML`` after the load (and after ``wait_for``).
    dom: str = ""
    screenshot: Path | None = None


class _DevTools:
    """A minimal DevTools protocol client: numbered commands and recorded events over one websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                self.events.append(data)
                self._changed.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the browser closed the DevTools connection"))

    async def send(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": dict(params or {})}
        if session:
            msg["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        await self.ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"DevTools {method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_event(self, method: str, session: str | None, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e.get("method") == method and (session is None or e.get("sessionId") == session):
                    return e
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} from the browser within {timeout:.0f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


def _error_lines(events: Sequence[dict[str, Any]], session: str) -> list[str]:
    out: list[str] = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "exception")
            out.append(f"uncaught: {text} ({d.get('url', '')}:{d.get('lineNumber', 0) + 1})")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(
                f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}".rstrip()
            )
    return out


class Browser:
    """One headless Chromium for one or more page loads: ``async with Browser() as b: await b.load(url)``."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900) -> None:
        self.executable = executable or require_chromium()
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="sigil-chromium-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._cdp: _DevTools | None = None
        self.stderr_path = Path(self._profile.name) / "stderr.log"

    async def __aenter__(self) -> Browser:
        with self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}",
                 f"--window-size={self.width},{self.height}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip
        try:
            port_file = Path(self._profile.name) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.stderr_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"chromium did not open its DevTools port: {tail}")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            self._http = aiohttp.ClientSession()
            ws = await self._http.ws_connect(f"ws://127.0.0.1:{int(port)}{path}", max_msg_size=0)
            self._cdp = _DevTools(ws)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._cdp is not None:
            with contextlib.suppress(Exception):
                await self._cdp.send("Browser.close", timeout=5)
            await self._cdp.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._profile.cleanup()

    async def load(
        self,
        url: str,
        *,
        selectors: Sequence[str] = (),
        expressions: Mapping[str, str] | None = None,
        wait_for: str | None = None,
        screenshot: str | Path | None = None,
        full_page: bool = False,
        timeout: float = 30,
    ) -> PageReport:
        """Opens ``url`` in a new tab and waits for its load event (then until the JavaScript
        expression ``wait_for`` is truthy, when given, polling for at most ``timeout``). The
        screenshot is of the window, or of the whole page with ``full_page``."""
        assert self._cdp is not None, "use Browser as an async context manager"
        cdp = self._cdp
        target = await cdp.send("Target.createTarget", {"url": "about:blank"})
        session = (
            await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        )["sessionId"]
        report = PageReport(url)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                await cdp.send(f"{domain}.enable", session=session)
            await cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            start = len(cdp.events)
            nav = await cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
            if nav.get("errorText"):
                raise RuntimeError(f"{url}: {nav['errorText']}")
            await cdp.wait_event("Page.loadEventFired", session, timeout)
            if wait_for is not None:
                deadline = time.monotonic() + timeout
                while not await self._eval(session, f"Boolean({wait_for})"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url}: {wait_for} not true within {timeout:.0f} s")
                    await asyncio.sleep(0.1)
            for sel in selectors:
                report.counts[sel] = int(
                    await self._eval(session, f"document.querySelectorAll({json.dumps(sel)}).length")
                )
            for name, expr in (expressions or {}).items():
                report.values[name] = await self._eval(session, expr)
            report.dom = str(await self._eval(session, "document.documentElement.outerHTML"))
            if screenshot is not None:
                params: dict[str, Any] = {"format": "png"}
                if full_page:
                    size = (await cdp.send("Page.getLayoutMetrics", session=session))["cssContentSize"]
                    params["captureBeyondViewport"] = True
                    params["clip"] = {
                        "x": 0,
                        "y": 0,
                        "width": size["width"],
                        "height": size["height"],
                        "scale": 1,
                    }
                shot = await cdp.send("Page.captureScreenshot", params, session=session, timeout=timeout)
                report.screenshot = Path(screenshot)
                report.screenshot.write_bytes(base64.b64decode(shot["data"]))
            events = cdp.events[start:]
            report.console_errors = _error_lines(events, session)
            report.requests = [
                e["params"]["request"]["url"]
                for e in events
                if e.get("sessionId") == session and e.get("method") == "Network.requestWillBeSent"
            ]
        finally:
            with contextlib.suppress(Exception):
                await cdp.send("Target.closeTarget", {"targetId": target["targetId"]}, timeout=5)
        return report

    async def _eval(self, session: str, expression: str) -> Any:
        assert self._cdp is not None
        r = await self._cdp.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"in the page, {expression}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")


def load_page(url: str, **kwargs: Any) -> PageReport:
    """:meth:`Browser.load` in a browser of its own (for a test that loads one page)."""

    async def run() -> PageReport:
        async with Browser() as b:
            return await b.load(url, **kwargs)

    return asyncio.run(run())
