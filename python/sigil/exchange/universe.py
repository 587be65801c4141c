"""The universe: which symbols the scanner watches.

Active spot markets quoted in ``exchange.quote``, minus stablecoin bases and leveraged tokens, whose
24h quote volume is inside [``min_quote_volume``, ``max_quote_volume``], the ``max_symbols`` most
traded first. It is rebuilt every ``universe_refresh_s`` of EXCHANGE time (market time: listings and
volumes move with the market, and the simulator runs that clock faster), and a failed refresh keeps
the last good universe.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sigil.config import ExchangeConfig
from sigil.exchange.ccxt_client import ExchangeClient

log = logging.getLogger("sigil.exchange.universe")

#: Why a market of the right quote is not in the universe.
EXCLUDED_INACTIVE = "inactive"
EXCLUDED_NOT_SPOT = "not_spot"
EXCLUDED_STABLECOIN = "stablecoin"
EXCLUDED_LEVERAGED = "leveraged"
EXCLUDED_NO_VOLUME = "no_volume"
EXCLUDED_VOLUME_LOW = "volume_low"
EXCLUDED_VOLUME_HIGH = "volume_high"
EXCLUDED_MAX_SYMBOLS = "max_symbols"
#: Chosen, but another daemon instance's shard (``daemon.shard``, see :mod:`sigil.daemon.share`).
EXCLUDED_SHARD = "shard"


def is_leveraged(base: str, listed_bases: Iterable[str], suffixes: Iterable[str]) -> bool:
    """True when ``base`` is another listed base plus a leveraged-token suffix (BTCUP, ETHBEAR, XRP3L).

    Asking for the underlying to be listed keeps real coins that merely end in those letters
    (JUP, SYRUP) in.
    """
    bases = listed_bases if isinstance(listed_bases, set | frozenset) else set(listed_bases)
    for suffix in suffixes:
        if len(base) > len(suffix) and base.endswith(suffix) and base[: -len(suffix)] in bases:
            return True
    return False


def quote_volume(ticker: Mapping[str, Any] | None) -> float | None:
    """A ticker's 24h quote volume (base volume × last when the exchange gives no quote volume)."""
    if not ticker:
        return None
    qv = ticker.get("quoteVolume")
    if isinstance(qv, int | float) and math.isfinite(qv):
        return float(qv)
    bv, last = ticker.get("baseVolume"), ticker.get("last")
    if isinstance(bv, int | float) and isinstance(last, int | float) and math.isfinite(bv * last):
        return float(bv * last)
    return None


@dataclass(frozen=True)
class UniverseSelection:
    """The outcome of one refresh."""

    #: Chosen symbols, most traded first.
    symbols: tuple[str, ...]
    #: Markets of the right quote left out, with the reason (one of the EXCLUDED_* names).
    excluded: dict[str, str]
    #: 24h quote volume of every chosen symbol.
    volumes: dict[str, float]
    #: Exchange time of the refresh (ms).
    server_time: int


def select(
    markets: Mapping[str, Mapping[str, Any]],
    tickers: Mapping[str, Mapping[str, Any]],
    config: ExchangeConfig,
    server_time: int = 0,
    keep: Callable[[str], bool] | None = None,
) -> UniverseSelection:
    """The universe rules applied to ccxt markets and tickers (pure; :class:`Universe` fetches them).

    ``keep`` (an instance's shard) is applied last, to the ``max_symbols`` chosen, so that the shards
    of one universe add up to it.
    """
    bases = {str(m.get("base")) for m in markets.values()}
    stable = {s.upper() for s in config.stablecoins}
    excluded: dict[str, str] = {}
    ranked: list[tuple[float, str]] = []
    for symbol, m in markets.items():
        if m.get("quote") != config.quote:
            continue
        base = str(m.get("base"))
        reason = None
        if not m.get("spot", False):
            reason = EXCLUDED_NOT_SPOT
        elif m.get("active") is False:  # None = the exchange does not say: take it as active
            reason = EXCLUDED_INACTIVE
        elif base.upper() in stable:
            reason = EXCLUDED_STABLECOIN
        elif is_leveraged(base, bases, config.leveraged_suffixes):
            reason = EXCLUDED_LEVERAGED
        else:
            qv = quote_volume(tickers.get(symbol))
            if qv is None:
                reason = EXCLUDED_NO_VOLUME
            elif qv < config.min_quote_volume:
                reason = EXCLUDED_VOLUME_LOW
            elif config.max_quote_volume is not None and qv > config.max_quote_volume:
                reason = EXCLUDED_VOLUME_HIGH
            else:
                ranked.append((qv, symbol))
        if reason is not None:
            excluded[symbol] = reason
    ranked.sort(key=lambda x: (-x[0], x[1]))
    for _, symbol in ranked[config.max_symbols :]:
        excluded[symbol] = EXCLUDED_MAX_SYMBOLS
    chosen = ranked[: config.max_symbols]
    if keep is not None:
        excluded.update((s, EXCLUDED_SHARD) for _, s in chosen if not keep(s))
        chosen = [(v, s) for v, s in chosen if keep(s)]
    return UniverseSelection(
        symbols=tuple(s for _, s in chosen),
        excluded=excluded,
        volumes={s: v for v, s in chosen},
        server_time=server_time,
    )


class Universe:
    """The current universe of one exchange client, refreshed on its own interval."""

    def __init__(
        self,
        client: ExchangeClient,
        config: ExchangeConfig | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.client = client
        self.config = config or client.config
        #: Only the symbols this is true of are watched (an instance's shard); None = all.
        self.keep = keep
        self._selection: UniverseSelection | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols to scan (empty before the first refresh)."""
        return self._selection.symbols if self._selection else ()

    @property
    def selection(self) -> UniverseSelection | None:
        """The last successful refresh, with the reasons for what was left out."""
        return self._selection

    def due(self, now_ms: int) -> bool:
        """True when the universe is older than ``universe_refresh_s`` at exchange time ``now_ms``."""
        if self._selection is None:
            return True
        return now_ms - self._selection.server_time >= self.config.universe_refresh_s * 1000.0

    async def refresh(self) -> UniverseSelection:
        """Reloads markets and tickers and selects again. On failure the previous universe stays and
        the error (ExchangeUnavailable / ExchangeRejected) propagates."""
        now = await self.client.server_time()
        markets = await self.client.load_markets(reload=True)
        tickers = await self.client.fetch_tickers()
        sel = select(markets, tickers, self.config, now, self.keep)
        old = set(self.symbols)
        new = set(sel.symbols)
        for gone in sorted(old - new):
            self.client.forget(gone)
        if old != new:
            log.info(
                "universe: %d symbols (+%d, -%d); %d left out",
                len(new),
                len(new - old),
                len(old - new),
                len(sel.excluded),
            )
        self._selection = sel
        return sel

    async def refresh_if_due(self, now_ms: int | None = None) -> bool:
        """Refreshes when :meth:`due` (at ``now_ms``, default: ask the exchange); True if it did."""
        if now_ms is None and self._selection is not None:
            now_ms = await self.client.server_time()
        if now_ms is not None and not self.due(now_ms):
            return False
        await self.refresh()
        return True
