"""How the simulator answers like Binance when a request is wrong: error bodies and parameter parsing."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


def error(status: int, code: int, msg: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A Binance error body (``{"code": …, "msg": …}``) with an HTTP status."""
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def int_param(q: Mapping[str, str], name: str) -> int | None:
    """Query parameter ``name`` as an integer; None when absent or empty, :class:`BadParam` when not one."""
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit():
        raise BadParam(name)
    return int(raw)


class BadParam(Exception):
    """A query parameter Binance would refuse (answered 400, code -1100, naming it)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
