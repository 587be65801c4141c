"""An instance's share of the work: which (variant, symbol) pairs one daemon instance trades.

A share is ``daemon.variants`` (a list of configured variant names; default all of them) times
``daemon.shard`` (``"i/N"``, default ``"0/1"``): the instance trades the variants of its list on the
symbols whose stable hash falls in its shard, ``crc32(UTF-8 symbol name, e.g. "DOGE/USDT") mod N == i``.
The hash is zlib's CRC-32, the same in every process, on every machine and in every release — never
Python's ``hash()``, which is randomized per process.

**The overlap rule.** Two shares overlap when some (variant, symbol) pair could be in both: they have a
variant in common AND their shards can hold a common symbol. Shards ``i/N`` and ``j/M`` can hold a
common symbol exactly when ``i ≡ j (mod gcd(N, M))`` (the Chinese remainder theorem: some hash is
``i`` mod N and ``j`` mod M). So ``0/2`` and ``1/2`` are disjoint, as are ``0/2`` and ``1/4``; equal N
with different i are always disjoint; ``0/2`` and ``0/3`` overlap (hash 0 is in both), and any shard
overlaps ``0/1``. The rule is sound (disjoint by the rule means no pair in common, whatever the symbols)
and needs nothing but the two shares.

Pure: no I/O, nothing from the rest of Sigil, so :mod:`sigil.config` can validate with it.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

if TYPE_CHECKING:
    from sigil.config import Config

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: The largest shard count accepted (a shard per symbol of the largest universe is far below it).
MAX_SHARDS = 65_536


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_V = TypeVar("_V", bound=_Named)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` as ``(i, N)``; ValueError (naming what is wrong) unless ``0 <= i < N`` and ``N >= 1``."""
    m = _SHARD.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected i/N such as 0/2 (shard i of N, counted from 0), got {text!r}")
    i, n = int(m[1]), int(m[2])
    if n < 1:
        raise ValueError(f"{text!r}: N must be at least 1")
    if n > MAX_SHARDS:
        raise ValueError(f"{text!r}: N must be at most {MAX_SHARDS}")
    if i >= n:
        raise ValueError(f"{text!r}: i must be below N (shards are numbered 0 to {n - 1})")
    return i, n


def symbol_hash(symbol: str) -> int:
    """The stable hash that places ``symbol`` in a shard (CRC-32 of its UTF-8 name, unsigned)."""
    return zlib.crc32(symbol.encode("utf-8"))


@dataclass(frozen=True)
class Share:
    """The variants (in config order) and the shard ``index``/``count`` of one instance."""

    variants: tuple[str, ...]
    index: int = 0
    count: int = 1

    @classmethod
    def of(cls, variants: Iterable[str], wanted: Sequence[str] | None, shard: str) -> Self:
        """The share of ``daemon.variants`` = ``wanted`` (None: all of ``variants``) and ``daemon.shard``."""
        index, count = parse_shard(shard)
        names = tuple(variants)
        if wanted is not None:
            keep = set(wanted)
            names = tuple(n for n in names if n in keep)
        return cls(names, index, count)

    @classmethod
    def of_config(cls, config: Config) -> Self:
        """The share ``config``'s ``daemon`` section gives its instance."""
        daemon = config.settings.daemon
        return cls.of((v.name for v in config.variants), daemon.variants, daemon.shard)

    @property
    def shard(self) -> str:
        """``"i/N"``."""
        return f"{self.index}/{self.count}"

    def owns_symbol(self, symbol: str) -> bool:
        """True when ``symbol`` is in this share's shard."""
        return self.count == 1 or symbol_hash(symbol) % self.count == self.index

    def owns(self, variant: str, symbol: str) -> bool:
        """True when the pair (``variant``, ``symbol``) is this share's to trade."""
        return variant in self.variants and self.owns_symbol(symbol)

    def pick(self, variants: Iterable[_V]) -> tuple[_V, ...]:
        """The items of ``variants`` (anything with a ``name``) that are this share's, in their order."""
        return tuple(v for v in variants if v.name in self.variants)

    def overlaps(self, other: Share) -> bool:
        """True when some (variant, symbol) pair could be in both shares (see the module docstring)."""
        if not set(self.variants) & set(other.variants):
            return False
        return (self.index - other.index) % math.gcd(self.count, other.count) == 0

    def describe(self) -> str:
        """``variants baseline, moderate; shard 0/2``."""
        return f"variants {', '.join(self.variants) or '(none)'}; shard {self.shard}"
