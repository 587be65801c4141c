"""The daemon's state-changing HTTP endpoints: pause, resume, and a manual exit of one position.

``POST /api/pause`` and ``POST /api/resume`` (optional JSON body or query: ``instance``, ``variant``;
default every instance and every variant) and ``POST /api/positions/{id}/exit`` write the same
control table as ``sigil pause | resume | exit`` (:mod:`sigil.store.control`): the daemon carries
them out at its next pass, whichever host it runs on, and a pause outlives a restart.

Every request needs ``Authorization: Bearer <token>`` with the token from ``SIGIL_API_TOKEN``
(compared in constant time). Without a configured token the endpoints are off (404); a missing or
wrong token is 401 and writes nothing. Each action is an audit event naming ``api <remote address>``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from sigil.errors import DatabaseUnavailable, PositionNotOpen
from sigil.store.control import ALL, ControlStore
from sigil.store.db import Database

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requester(request: web.Request) -> str:
    """Who asked, for the audit log: ``api`` and the remote address."""
    return f"api {request.remote or 'unknown'}"


class ControlApi:
    """The control endpoints over ``db``; ``token`` None turns them off (404). A pause or resume
    naming a variant outside ``variants`` (when given) is refused (400)."""

    def __init__(self, db: Database, token: str | None, variants: Collection[str] | None = None) -> None:
        self._control = ControlStore(db)
        self._token = token.encode() if token else None
        self._variants = None if variants is None else frozenset(variants)

    def install(self, app: web.Application) -> None:
        """Adds the routes to ``app``."""
        app.router.add_post("/api/pause", self._guarded(self._pause))
        app.router.add_post("/api/resume", self._guarded(self._resume))
        app.router.add_post("/api/positions/{id}/exit", self._guarded(self._exit))

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self._token is None:
                return _error(404, "the control endpoints are off: SIGIL_API_TOKEN is not set")
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # compare_digest takes as long for a wrong token as for a right one of the same length.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
                log.warning("refused %s %s from %s: bad token", request.method, request.path, request.remote)
                return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except ValueError as e:
                return _error(400, str(e))
            except DatabaseUnavailable as e:
                return _error(503, f"nothing written: {e}")

        return guarded

    async def _scope(self, request: web.Request) -> tuple[str, str]:
        instance, variant = await _scope(request)
        if self._variants is not None and variant != ALL and variant not in self._variants:
            raise ValueError(f"unknown variant {variant!r} (configured: {', '.join(sorted(self._variants))})")
        return instance, variant

    async def _pause(self, request: web.Request) -> web.Response:
        instance, variant = await self._scope(request)
        added = await self._control.pause(by=requester(request), instance=instance, variant=variant)
        return await self._pauses(202 if added else 200)

    async def _resume(self, request: web.Request) -> web.Response:
        instance, variant = await self._scope(request)
        lifted = await self._control.resume(by=requester(request), instance=instance, variant=variant)
        return await self._pauses(200, lifted=lifted)

    async def _pauses(self, status: int, **extra: Any) -> web.Response:
        pauses = [
            {"instance": p.instance, "variant": p.variant, "since": p.since.isoformat(), "by": p.by}
            for p in await self._control.pauses()
        ]
        return web.json_response({"pauses": pauses, **extra}, status=status)

    async def _exit(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit() or int(raw) <= 0:
            raise ValueError(f"a position id is a positive integer, got {raw!r}")
        position_id = int(raw)
        try:
            request_id = await self._control.request_exit(position_id, by=requester(request))
        except PositionNotOpen as e:
            return _error(404, str(e))
        # Accepted: the daemon that holds the position sells it at its next pass.
        return web.json_response({"request": request_id, "position_id": position_id}, status=202)


async def _scope(request: web.Request) -> tuple[str, str]:
    """(instance, variant) from the JSON body or the query string; every one when not given."""
    body: dict[str, Any] = {}
    if request.can_read_body:
        text = await request.text()
        if text.strip():
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"the body is not JSON: {e}") from None
            if not isinstance(parsed, dict):
                raise ValueError("the body must be a JSON object with instance and/or variant")
            unknown = sorted(set(parsed) - {"instance", "variant"})
            if unknown:
                raise ValueError(f"unknown field {unknown[0]!r} (known: instance, variant)")
            body = parsed
    out = []
    for key in ("instance", "variant"):
        value = body.get(key, request.query.get(key, ALL))
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        out.append(value)
    return out[0], out[1]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
