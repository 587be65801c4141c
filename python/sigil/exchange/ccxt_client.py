"""The exchange client: ccxt's async client with retries, validation and an incremental candle cache.

One :class:`ExchangeClient` per exchange, created inside the daemon's event loop and closed with
``await client.close()`` (or ``async with``). What it promises:

- Requests go through ccxt's rate limiter (always on) and at most ``max_concurrency`` at a time.
- ``ccxt.NetworkError`` and its subclasses (timeouts, 5xx, 429/418 rate limiting, lost connections)
  are retried with exponential backoff and jitter, waiting at least what a Retry-After header asks;
  while such a wait runs, no request of this client goes out (rate limits are per IP). Other ccxt
  errors (``ExchangeError``: unknown symbol, bad request, refused order…) are not retried.
  Either way the failure is counted by its ccxt class in :attr:`ExchangeClient.stats`, and the caller
  gets :class:`~sigil.errors.ExchangeUnavailable` or :class:`~sigil.errors.ExchangeRejected`.
- Which candles are closed is decided by the EXCHANGE's clock (``fetch_time`` once per pass): a
  candle whose close time is after the server time is never returned.
- Every candle is validated; a bad one is dropped, counted by reason and logged, never returned.
- A pass fetches only candles newer than the last one it returned for that symbol, and sends no
  request at all for a symbol whose next candle has not closed yet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt
import numpy as np

from sigil.config import ExchangeConfig
from sigil.data.candles import CandleSeries, timeframe_ms
from sigil.errors import ConfigError, ExchangeRejected, ExchangeUnavailable
from sigil.exchange.settings import ExchangeSettings, resolve_exchange

log = logging.getLogger("sigil.exchange")
#: ccxt's own debug lines (every request and response, headers included) go to this logger, which
#: carries a redacting filter in live mode.
wire_log = logging.getLogger("sigil.exchange.wire")

#: A candle that stays malformed on this many consecutive passes is given up on (left as a gap);
#: before that the pass stops at it, so a transient fault costs one pass of delay, not a hole.
MAX_BAD_REPEATS = 3
#: The most candles any exchange returns for one klines request that Sigil relies on.
MAX_CANDLES_PER_REQUEST = 1000
#: How often ccxt's leaky-bucket rate limiter wakes up while requests queue (its default is 1 ms). The
#: refill is proportional to the time elapsed, so the rate and the burst size are unchanged; waking
#: 10× less often halves the client's CPU per request.
RATE_LIMIT_POLL_S = 0.01
#: Longest ccxt error text kept in Sigil's own messages (ccxt quotes whole HTML error pages).
MAX_ERROR_TEXT = 300

#: Options per exchange id. Binance: spot markets only (one request for load_markets), and no
#: sapi calls that would need keys or margin permissions.
_EXCHANGE_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
}


class Candle(NamedTuple):
    """One closed candle; ``time`` is its OPEN time in ms UTC."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass
class ExchangeStats:
    """Counters of one client, for logs, ``/metrics`` and tests."""

    #: HTTP requests sent (every attempt, retries included).
    requests: int = 0
    #: Attempts that were retried.
    retries: int = 0
    #: Every failed attempt, by ccxt exception class (RequestTimeout, RateLimitExceeded, BadSymbol…).
    errors: Counter[str] = field(default_factory=Counter)
    #: Calls that failed for good (retries exhausted, or not retryable), by ccxt exception class.
    gave_up: Counter[str] = field(default_factory=Counter)
    #: Candles dropped by validation, by reason (not_finite, high_below_low, duplicate…).
    dropped: Counter[str] = field(default_factory=Counter)
    #: Incomplete candles left out (expected on every pass; not an error).
    incomplete: int = 0

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "requests": self.requests,
            "retries": self.retries,
            "errors": dict(self.errors),
            "gave_up": dict(self.gave_up),
            "dropped": dict(self.dropped),
            "incomplete": self.incomplete,
        }


@dataclass(frozen=True)
class PassResult:
    """What one :meth:`ExchangeClient.fetch_new_candles` pass got."""

    #: The exchange's time when the pass started (ms); candles closed by then are in.
    server_time: int
    #: New closed candles per symbol, oldest first (an empty list: nothing new or all dropped).
    candles: dict[str, list[Candle]]
    #: Symbols whose fetch failed for good this pass, with the ccxt error class.
    failed: dict[str, str]
    #: Symbols that needed no request (their next candle has not closed yet).
    up_to_date: tuple[str, ...]
    #: HTTP requests this pass sent (retries included).
    requests: int
    #: Symbols whose candles stopped at a malformed one: the rest wait for the next pass.
    behind: tuple[str, ...] = ()

    @property
    def new_candles(self) -> int:
        """How many new candles the pass returned in all."""
        return sum(len(v) for v in self.candles.values())


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
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
def _exchange_class(exchange_id: str) -> type[Any]:
    """ccxt's class for ``exchange_id`` with two hooks: count requests, keep Retry-After on errors."""
    base = getattr(ccxt, exchange_id, None)
    if not (isinstance(base, type) and issubclass(base, ccxt.Exchange)):
        raise ConfigError(f"exchange.id: {exchange_id!r} is not an exchange ccxt knows")

    class _Exchange(base):  # type: ignore[valid-type,misc]
        sigil_stats: ExchangeStats | None = None

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
                e.sigil_retry_after = _retry_after(headers)
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


def public_url(url: str | None) -> str | None:
    """``url`` without any user:password part, for logs and health output."""
    if url is None:
        return None
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


class _Redact(logging.Filter):
    """Replaces secret strings in log records (ccxt logs request headers, API key included)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__("")
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "**********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

    def __repr__(self) -> str:
        return "<_Redact>"


def candle_problem(row: Sequence[Any]) -> str | None:
    """Why ``row`` ([time, open, high, low, close, volume]) is not a valid candle; None when it is."""
    if len(row) < 6 or any(x is None for x in row[:6]):
        return "missing"
    t, o, h, lo, c, v = row[:6]
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        return "bad_time"
    try:
        o, h, lo, c, v = float(o), float(h), float(lo), float(c), float(v)
    except (TypeError, ValueError):
        return "missing"
    if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
        return "not_finite"
    if min(o, h, lo, c) <= 0:
        return "not_positive"
    if v < 0:
        return "negative_volume"
    if h < lo:
        return "high_below_low"
    if not (lo <= o <= h and lo <= c <= h):
        return "outside_range"
    return None


class ExchangeClient:
    """The one ccxt client of an exchange, with Sigil's retry, validation and caching rules.

    Build it with :meth:`from_config` (resolves URL and keys) or from :class:`ExchangeSettings`.
    """

    def __init__(self, settings: ExchangeSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        cfg = self.config = settings.config
        self.id = cfg.id
        self.url = settings.url
        self.live = settings.live
        self.stats = ExchangeStats()
        self.timeframe = cfg.timeframe
        self.timeframe_ms = timeframe_ms(cfg.timeframe)
        self._rng = rng or random.Random()
        self._sem = asyncio.Semaphore(cfg.max_concurrency)
        self._gate_until = 0.0
        self._last: dict[str, int] = {}
        self._history: dict[str, deque[Candle]] = {}
        #: symbol → (open time of a malformed candle, passes it was malformed in, last such pass)
        self._bad: dict[str, tuple[int, int, int]] = {}
        self._redact: _Redact | None = None
        self._closed = False

        options: dict[str, Any] = {"defaultType": "spot", **_EXCHANGE_OPTIONS.get(cfg.id, {})}
        ccxt_config: dict[str, Any] = {
            "enableRateLimit": True,
            "tokenBucket": {"delay": RATE_LIMIT_POLL_S},
            "timeout": int(cfg.timeout_s * 1000),
            "options": options,
            "logger": wire_log,
            "verbose": False,
        }
        if cfg.rate_limit_ms is not None:
            ccxt_config["rateLimit"] = cfg.rate_limit_ms
        if settings.live:
            if settings.credentials is None:  # resolve_exchange never builds this; a hand-made one could
                raise ConfigError("live trading needs credentials (see sigil.exchange.settings)")
            key, secret = settings.credentials.reveal()
            ccxt_config["apiKey"], ccxt_config["secret"] = key, secret
            self._redact = _Redact((key, secret))
        self.exchange: Any = _exchange_class(cfg.id)(ccxt_config)
        self.exchange.sigil_stats = self.stats
        if self.timeframe not in (self.exchange.timeframes or {}):
            raise ConfigError(f"exchange.timeframe: {self.id} has no {self.timeframe!r} candles")
        if settings.url is not None:
            self.exchange.urls["api"] = point_urls(self.exchange.urls["api"], settings.url)
        if self._redact is not None:
            for logger in (wire_log, log):
                logger.addFilter(self._redact)

    @classmethod
    def from_config(
        cls,
        config: ExchangeConfig,
        *,
        url: str | None = None,
        live: bool = False,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> ExchangeClient:
        """Resolves URL and keys (:func:`~sigil.exchange.settings.resolve_exchange`) and builds the client."""
        return cls(resolve_exchange(config, url=url, live=live, environ=environ), rng=rng)

    def __repr__(self) -> str:
        return f"ExchangeClient(id={self.id!r}, url={public_url(self.url)!r}, live={self.live})"

    async def __aenter__(self) -> ExchangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes ccxt's HTTP session. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.exchange.close()
        finally:
            if self._redact is not None:
                for logger in (wire_log, log):
                    logger.removeFilter(self._redact)

    # ----- calls

    def redact(self, text: str) -> str:
        """``text`` without the API key or secret (a no-op outside live mode)."""
        return self._redact.redact(text) if self._redact is not None else text

    def _describe(self, e: BaseException) -> str:
        text = " ".join(str(e).split())
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "…"
        return self.redact(text)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so retries of many
        symbols that failed together spread out but none comes back at once."""
        cfg = self.config
        d = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0**attempt)
        return d / 2.0 + self._rng.uniform(0.0, d / 2.0)

    async def _wait_gate(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._gate_until - loop.time()) > 0:
            await asyncio.sleep(wait)

    async def call(self, what: str, method: str, *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """Calls ccxt's ``method`` under Sigil's retry rules (see the module docstring).

        ``retry=False`` for calls that must not be repeated blindly (placing an order: a timeout
        does not say whether it was executed). ``what`` names the call in errors and logs.
        """
        fn = getattr(self.exchange, method)
        cfg = self.config
        attempt = 0
        while True:
            await self._wait_gate()
            try:
                return await fn(*args, **kwargs)
            except ccxt.NetworkError as e:
                name = type(e).__name__
                self.stats.errors[name] += 1
                wait: float | None = getattr(e, "sigil_retry_after", None)
                if wait is not None:
                    if wait > cfg.retry_after_max_s:
                        self.stats.gave_up[name] += 1
                        raise ExchangeUnavailable(
                            f"{self.id}: {what}: {name}; the exchange asks to wait {wait:g} s", wait
                        ) from e
                    # Rate limits are per IP: hold every request of this client, not just this one.
                    loop = asyncio.get_running_loop()
                    self._gate_until = max(self._gate_until, loop.time() + wait)
                if not retry or attempt >= cfg.retries:
                    self.stats.gave_up[name] += 1
                    raise ExchangeUnavailable(
                        f"{self.id}: {what}: {name} after {attempt + 1} attempt(s): {self._describe(e)}", wait
                    ) from e
                delay = max(self._backoff(attempt), wait or 0.0)
                self.stats.retries += 1
                log.warning(
                    "%s: %s: %s, retry %d/%d in %.2f s", self.id, what, name, attempt + 1, cfg.retries, delay
                )
                await asyncio.sleep(delay)
                attempt += 1
            except ccxt.BaseError as e:
                name = type(e).__name__
                self.stats.errors[name] += 1
                self.stats.gave_up[name] += 1
                raise ExchangeRejected(f"{self.id}: {what}: {name}: {self._describe(e)}") from e

    # ----- markets, time, tickers

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        """ccxt's unified markets by symbol (``reload`` to ask the exchange again)."""
        markets: dict[str, dict[str, Any]] = await self.call("load_markets", "load_markets", reload)
        return markets

    async def server_time(self) -> int:
        """The exchange's clock, in ms since the epoch."""
        t = await self.call("fetch_time", "fetch_time")
        if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
            raise ExchangeRejected(f"{self.id}: fetch_time: not a time: {t!r}")
        return t

    async def fetch_tickers(self, symbols: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """ccxt's unified 24h tickers by symbol (all symbols when ``symbols`` is None)."""
        what = "fetch_tickers" if symbols is None else f"fetch_tickers ({len(symbols)} symbols)"
        tickers: dict[str, dict[str, Any]] = await self.call(
            what, "fetch_tickers", list(symbols) if symbols else None
        )
        return tickers

    async def last_price(self, symbol: str) -> float:
        """The last traded price of ``symbol``; ExchangeRejected when the exchange gives none."""
        ticker = await self.call(f"fetch_ticker {symbol}", "fetch_ticker", symbol)
        last = ticker.get("last") if isinstance(ticker, dict) else None
        if not isinstance(last, int | float) or not math.isfinite(last) or last <= 0:
            raise ExchangeRejected(f"{self.id}: fetch_ticker {symbol}: no valid last price ({last!r})")
        return float(last)

    # ----- candles

    def history(self, symbol: str) -> list[Candle]:
        """The closed candles kept for ``symbol`` (at most ``history_candles``), oldest first."""
        return list(self._history.get(symbol, ()))

    def history_series(self, symbol: str) -> CandleSeries:
        """:meth:`history` as a :class:`CandleSeries` (columns), e.g. to warm up indicators."""
        rows = self._history.get(symbol, ())
        arr = np.array([c[1:] for c in rows], dtype=np.float64).reshape(-1, 5)
        times = np.array([c[0] for c in rows], dtype=np.int64)
        o, h, lo, c, v = (np.ascontiguousarray(arr[:, k]) for k in range(5))
        return CandleSeries(symbol, self.timeframe_ms, times, o, h, lo, c, v, f"{self.id}:{symbol}")

    def last_candle_time(self, symbol: str) -> int | None:
        """Open time of the newest closed candle returned for ``symbol``; None before the first."""
        return self._last.get(symbol)

    def forget(self, symbol: str) -> None:
        """Drops ``symbol``'s cache (it left the universe); a later pass starts it from scratch."""
        self._last.pop(symbol, None)
        self._history.pop(symbol, None)
        self._bad.pop(symbol, None)

    def _plan(self, symbol: str, now: int) -> tuple[int, int] | None:
        """(since, limit) of the request that gets ``symbol``'s new closed candles; None = none closed."""
        tf = self.timeframe_ms
        current = now - now % tf  # open time of the candle in progress
        first_needed = current - self.config.history_candles * tf
        last = self._last.get(symbol)
        since = first_needed if last is None else max(last + tf, first_needed)
        if since >= current:
            return None
        # +1: the candle in progress comes along; asking for exactly the closed ones would let an
        # exchange that counts differently cut the newest closed candle off.
        return since, min(MAX_CANDLES_PER_REQUEST, (current - since) // tf + 1)

    def _accept(self, symbol: str, rows: Sequence[Sequence[Any]], now: int) -> tuple[list[Candle], bool]:
        """The closed, valid, new candles of one response, and whether it stopped at a malformed
        candle (to be asked for again). Updates the cache and the counters."""
        tf = self.timeframe_ms
        last = self._last.get(symbol)
        out: list[Candle] = []
        stopped = False
        for row in rows:
            t = row[0] if len(row) else None
            if isinstance(t, int) and t + tf > now:
                self.stats.incomplete += 1
                continue
            problem = candle_problem(row)
            if problem is None and last is not None and isinstance(t, int) and t <= last:
                problem = "duplicate" if t == last else "out_of_order"
            if problem is None:
                candle = Candle(int(row[0]), *(float(x) for x in row[1:6]))
                out.append(candle)
                last = candle.time
                continue
            self.stats.dropped[problem] += 1
            log.warning("%s: %s: dropped candle %s: %s", self.id, symbol, _iso(t), problem)
            if problem in ("duplicate", "out_of_order"):
                continue  # the candle for that time is already in
            if self._bad_again(symbol, t if isinstance(t, int) else -1, now):
                stopped = True
                break  # ask again from here: a transient fault then leaves no hole
        if out:
            self._last[symbol] = out[-1].time
            hist = self._history.setdefault(symbol, deque(maxlen=self.config.history_candles))
            hist.extend(out)
            bad = self._bad.get(symbol)
            if bad is not None and bad[0] < out[-1].time:
                del self._bad[symbol]
        return out, stopped

    def _bad_again(self, symbol: str, t: int, now: int) -> bool:
        """Records a malformed candle at ``t`` seen in the pass at ``now``. True = stop the response
        here and ask again; False = it was malformed in MAX_BAD_REPEATS passes in a row: the
        exchange's data is bad, skip it and leave a gap rather than stall the symbol for good."""
        seen_t, passes, last_pass = self._bad.get(symbol, (None, 0, None))
        if seen_t != t:
            passes, last_pass = 0, None
        if last_pass != now:
            passes += 1
        if passes < MAX_BAD_REPEATS:
            self._bad[symbol] = (t, passes, now)
            return True
        self._bad.pop(symbol, None)
        log.warning(
            "%s: %s: candle %s malformed in %d passes, left as a gap", self.id, symbol, _iso(t), passes
        )
        return False

    async def fetch_new_candles(self, symbols: Iterable[str], server_time: int | None = None) -> PassResult:
        """One pass: every symbol's candles closed since its last pass (history_candles on the first).

        ``server_time``: the exchange's time if the caller just asked for it (saves a request);
        candles that close after it wait for the next pass. A symbol whose fetch fails is reported in
        ``failed`` and left for the next pass; the pass itself fails (ExchangeUnavailable /
        ExchangeRejected) only when the markets or the server time cannot be had.
        """
        names = list(dict.fromkeys(symbols))
        before = self.stats.requests
        if not self.exchange.markets:
            await self.load_markets()  # once, here, rather than inside every symbol's first fetch
        now = await self.server_time() if server_time is None else server_time
        candles: dict[str, list[Candle]] = {}
        failed: dict[str, str] = {}
        up_to_date: list[str] = []

        behind: list[str] = []

        async def one(symbol: str, since: int, limit: int) -> None:
            got: list[Candle] = []
            cut_short = False
            async with self._sem:
                # A response that stopped at a malformed candle is asked for again once, at once:
                # a transient glitch then costs one request, not one pass of delay.
                for _ in range(2):
                    try:
                        rows = await self.call(
                            f"fetch_ohlcv {symbol}", "fetch_ohlcv", symbol, self.timeframe, since, limit
                        )
                    except (ExchangeUnavailable, ExchangeRejected) as e:
                        cause = e.__cause__
                        failed[symbol] = type(cause).__name__ if cause is not None else type(e).__name__
                        log.warning("%s", e)
                        break
                    more, stopped = self._accept(symbol, rows if isinstance(rows, list) else [], now)
                    got.extend(more)
                    plan = self._plan(symbol, now) if stopped else None
                    cut_short = plan is not None
                    if plan is None:
                        break
                    since, limit = plan
            if cut_short and symbol not in failed:
                behind.append(symbol)
            if got or symbol not in failed:
                candles[symbol] = got

        jobs = []
        for s in names:
            plan = self._plan(s, now)
            if plan is None:
                up_to_date.append(s)
                candles[s] = []
            else:
                jobs.append(one(s, *plan))
        await asyncio.gather(*jobs)
        return PassResult(
            server_time=now,
            candles={s: candles[s] for s in names if s in candles},
            failed=failed,
            up_to_date=tuple(up_to_date),
            requests=self.stats.requests - before,
            behind=tuple(behind),
        )

    def health(self) -> dict[str, Any]:
        """What ``/health`` may show about the exchange (never a key)."""
        return {
            "exchange": self.id,
            "url": public_url(self.url),
            "live": self.live,
            "symbols_cached": len(self._last),
            **self.stats.snapshot(),
        }


def _iso(t: object) -> str:
    if not isinstance(t, int):
        return repr(t)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t / 1000))
