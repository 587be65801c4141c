"""Notification receivers on 127.0.0.1 for the tests: one that records every JSON webhook it gets
(apprise's ``json://`` scheme), and one that accepts connections and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web


class JsonReceiver:
    """Records every POSTed JSON body (with its path) and answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        """Listens on a free port of 127.0.0.1; returns it."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self.port

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append((request.path, json.loads(await request.read())))
        return web.json_response({"ok": True})

    def titled(self, word: str) -> list[dict[str, Any]]:
        """The bodies whose title starts with ``word`` and a space."""
        return [b for _, b in self.posts if str(b.get("title", "")).startswith(word + " ")]

    async def stop(self) -> None:
        """Stops listening."""
        if self._runner is not None:
            await self._runner.cleanup()


class SilentReceiver:
    """Accepts every connection, reads what it is sent, never answers (a hung webhook)."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> int:
        """Listens on a free port of 127.0.0.1; returns it."""
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    async def stop(self) -> None:
        """Closes every connection and stops listening."""
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def body_fields(body: dict[str, Any]) -> dict[str, str]:
    """The ``field: value`` lines of a notice's message."""
    out: dict[str, str] = {}
    for line in str(body.get("message", "")).splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out
