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
- Every candle is validated (:mod:`sigil.exchange.candle_rows`); a bad one is dropped, counted by
  reason and logged, never returned.
- A pass fetches only candles newer than the last one it returned for that symbol, and sends no
  request at all for a symbol whose next candle has not closed yet.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigil.config import ExchangeConfig
from sigil.data.timeframes import timeframe_ms
from sigil.errors import ConfigError, ExchangeRejected, ExchangeUnavailable
from sigil.exchange.candle_history import CandleHistory
from sigil.exchange.candle_rows import Candle, CandleRows
from sigil.exchange.ccxt_deferred import async_ccxt
from sigil.exchange.ccxt_hooks import exchange_class, point_urls
from sigil.exchange.redaction import Redactor, public_url
from sigil.exchange.settings import ExchangeSettings, resolve_exchange

# ccxt with only the exchange that is used loaded (sigil.exchange.ccxt_deferred).
ccxt = async_ccxt()

__all__ = ["MAX_CANDLES_PER_REQUEST", "Candle", "ExchangeClient", "ExchangeStats", "PassResult"]

log = logging.getLogger("sigil.exchange")
#: ccxt's own debug lines (every request and response, headers included) go to this logger, which
#: carries a redacting filter in live mode.
wire_log = logging.getLogger("sigil.exchange.wire")

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
    #: New closed candles per symbol, oldest first (empty: nothing new or all dropped). Packed as
    #: they arrive: a first pass holds ``history_candles`` of every symbol at once.
    candles: dict[str, Sequence[Candle]]
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
        self._rows = CandleRows(cfg.id, self.timeframe_ms, self.stats)
        #: See :meth:`start_at`.
        self._start_ms: int | None = None
        self._redact: Redactor | None = None
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
            self._redact = Redactor((key, secret))
        self.exchange: Any = exchange_class(cfg.id)(ccxt_config)
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

    # ----- the account (live mode)

    async def account_totals(self) -> dict[str, float]:
        """The account's total balance (free and locked) of every asset it holds."""
        bal = await self.call("fetch_balance", "fetch_balance")
        totals = bal.get("total") if isinstance(bal, dict) else None
        return {
            str(asset): float(v)
            for asset, v in (totals or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }

    async def orders(self, symbol: str) -> list[dict[str, Any]]:
        """The orders of ``symbol`` the exchange knows (ccxt's unified orders, open and closed)."""
        found = await self.call(f"fetch_orders {symbol}", "fetch_orders", symbol)
        return [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []

    # ----- candles

    @property
    def _last(self) -> dict[str, int]:
        """Open time of the newest candle returned, by symbol (where the next request starts)."""
        return self._rows.last

    def last_candle_time(self, symbol: str) -> int | None:
        """Open time of the newest closed candle returned for ``symbol``; None before the first."""
        return self._last.get(symbol)

    def forget(self, symbol: str) -> None:
        """Drops ``symbol``'s cache (it left the universe); a later pass starts it from scratch."""
        self._rows.forget(symbol)

    def start_at(self, ms: int | None) -> None:
        """The first request for a symbol starts no later than open time ``ms`` (a daemon resuming
        from a point further back than ``history_candles``: every candle since is fetched)."""
        self._start_ms = ms

    def _plan(self, symbol: str, now: int) -> tuple[int, int] | None:
        """(since, limit) of the request that gets ``symbol``'s new closed candles; None = none closed."""
        tf = self.timeframe_ms
        current = now - now % tf  # open time of the candle in progress
        first_needed = current - self.config.history_candles * tf
        last = self._last.get(symbol)
        if last is not None:
            # Every candle since the last one, however long the gap: none is ever skipped.
            since = last + tf
        elif self._start_ms is not None:
            since = min(first_needed, self._start_ms)
        else:
            since = first_needed
        if since >= current:
            return None
        # +1: the candle in progress comes along; asking for exactly the closed ones would let an
        # exchange that counts differently cut the newest closed candle off.
        return since, min(MAX_CANDLES_PER_REQUEST, (current - since) // tf + 1)

    def _accept(self, symbol: str, rows: Sequence[Sequence[Any]], now: int) -> tuple[list[Candle], bool]:
        """The closed, valid, new candles of one response, and whether it stopped at a malformed one."""
        return self._rows.accept(symbol, rows, now)

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
        candles: dict[str, Sequence[Candle]] = {}
        failed: dict[str, str] = {}
        up_to_date: list[str] = []

        behind: list[str] = []

        async def one(symbol: str, since: int, limit: int) -> None:
            got = CandleHistory()
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
        # The cursors move as each symbol's answer is accepted, but its candles reach the caller only
        # with the whole result: a fetch cancelled (a lost lease, a job timeout) or failed half-way
        # puts every cursor back, so the next fetch asks for those candles again instead of losing them.
        cursors = {s: self._rows.last.get(s) for s in names}
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for s, last in cursors.items():
                if last is None:
                    self._rows.last.pop(s, None)
                else:
                    self._rows.last[s] = last
            raise
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
