"""ccxt's exchange class as Sigil uses it: every HTTP request counted, the Retry-After of a failed
response kept on its exception, and every API URL pointable at another host (a simulator, a proxy)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sigil.errors import ConfigError
from sigil.exchange.ccxt_deferred import async_ccxt

# ccxt with only the exchange that is used loaded (sigil.exchange.ccxt_deferred).
ccxt = async_ccxt()


class RequestCounter(Protocol):
    """Where the exchange class counts the HTTP requests it sends (the client's stats)."""

    requests: int


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); None without one."""
    if not headers:
        return None
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


@functools.cache
def exchange_class(exchange_id: str) -> type[Any]:
    """ccxt's class for ``exchange_id`` with two hooks: count requests (in ``sigil_stats``, when set),
    keep Retry-After on errors (as ``sigil_retry_after`` on the exception)."""
    base = getattr(ccxt, exchange_id, None)
    if not (isinstance(base, type) and issubclass(base, ccxt.Exchange)):
        raise ConfigError(f"exchange.id: {exchange_id!r} is not an exchange ccxt knows")

    class _Exchange(base):  # type: ignore[valid-type,misc]
        sigil_stats: RequestCounter | None = None

        async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            if self.sigil_stats is not None:
                self.sigil_stats.requests += 1
            return await super().fetch(url, method, headers, body)

        def handle_errors(
            self,
            code: int,
            reason: str,
            url: str,
            method: str,
            headers: Any,
            body: Any,
            response: Any,
            request_headers: Any,
            request_body: Any,
        ) -> Any:
            # ccxt raises from here (exchange-specific codes) or right after, from the HTTP status;
            # either way only here are the response headers still at hand, so the HTTP-status check
            # is run here too, and the Retry-After rides on the exception.
            try:
                result = super().handle_errors(
                    code, reason, url, method, headers, body, response, request_headers, request_body
                )
                if isinstance(code, int) and code >= 400:
                    self.handle_http_status_code(code, reason, url, method, body)
                return result
            except ccxt.BaseError as e:
                e.sigil_retry_after = retry_after(headers)
                raise

    _Exchange.__name__ = _Exchange.__qualname__ = f"Sigil{base.__name__}"
    return _Exchange


def point_urls(api: Any, base_url: str) -> Any:
    """Every URL in a ccxt ``urls['api']`` tree with its scheme and host replaced by ``base_url``'s
    (paths are kept, after ``base_url``'s own path): the way to put a simulator or proxy in front."""
    target = urlsplit(base_url)
    prefix = target.path.rstrip("/")
    if isinstance(api, str):
        parts = urlsplit(api)
        return urlunsplit((target.scheme, target.netloc, prefix + parts.path, parts.query, parts.fragment))
    if isinstance(api, dict):
        return {k: point_urls(v, base_url) for k, v in api.items()}
    if isinstance(api, list):
        return [point_urls(v, base_url) for v in api]
    return api
