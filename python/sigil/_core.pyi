"""Type stubs for the Rust extension module ``sigil._core`` (checked by ``mypy.stubtest``)."""

from collections.abc import Callable
from typing import Any, ClassVar, TypeAlias, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "STOP_CAP_PCT",
    "STOP_FLOOR_PCT",
    "Atr",
    "CandleProblem",
    "CloseIntent",
    "ClosedTrade",
    "Engine",
    "EngineError",
    "ExitReason",
    "GuardTable",
    "OpenIntent",
    "Position",
    "SkipIntent",
    "SkipReason",
    "__version__",
    "atr",
    "atr_many",
    "buy_fill",
    "check_candle",
    "check_candles",
    "feather_columns",
    "hard_stop_pct",
    "hard_stop_price",
    "open_cost",
    "replay",
    "round_trip",
    "sell_fill",
]

#: Smallest hard stop, as a fraction of the entry price (the engine's default floor).
STOP_FLOOR_PCT: float
#: Largest hard stop, as a fraction of the entry price (the engine's default cap).
STOP_CAP_PCT: float

class EngineError(ValueError):
    """The engine refused its input; ``field`` and ``index`` say where, when the engine knew."""

    field: str | None
    index: int | None

@final
class ExitReason:
    """Why a position closed; ``value`` is the stored name."""

    HARD_STOP: ClassVar[ExitReason]
    ATR_TRAIL: ClassVar[ExitReason]
    TIME_STOP: ClassVar[ExitReason]
    #: Sold at the market because the operator asked (``sigil exit``); never decided by the engine.
    MANUAL: ClassVar[ExitReason]
    @property
    def value(self) -> str: ...
    @property
    def code(self) -> int: ...
    @staticmethod
    def parse(name: str) -> ExitReason: ...
    @staticmethod
    def all() -> list[ExitReason]: ...
    @staticmethod
    def report_order() -> list[ExitReason]: ...
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class SkipReason:
    """Why a breakout opened nothing; ``value`` is the stored name."""

    OPEN: ClassVar[SkipReason]
    COOLDOWN: ClassVar[SkipReason]
    MAX_OPEN: ClassVar[SkipReason]
    BALANCE: ClassVar[SkipReason]
    @property
    def value(self) -> str: ...
    @staticmethod
    def parse(name: str) -> SkipReason: ...
    @staticmethod
    def all() -> list[SkipReason]: ...
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

class _Intent:
    """What every intent names: the variant and symbol ids, and the market time (ms UTC)."""

    @property
    def variant(self) -> int: ...
    @property
    def symbol(self) -> int: ...
    @property
    def time(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class OpenIntent(_Intent):
    """Buy the variant's stake at reference ``price``."""

    @property
    def price(self) -> float: ...
    @property
    def stop_pct(self) -> float: ...
    @property
    def atr(self) -> float: ...

@final
class CloseIntent(_Intent):
    """Sell the whole position at reference ``price``, for ``reason``."""

    @property
    def price(self) -> float: ...
    @property
    def reason(self) -> ExitReason: ...

@final
class SkipIntent(_Intent):
    """A breakout that was not taken, and why."""

    @property
    def reason(self) -> SkipReason: ...

@final
class Position:
    """An open position as the engine holds it."""

    @property
    def variant(self) -> int: ...
    @property
    def symbol(self) -> int: ...
    @property
    def entry_time(self) -> int: ...
    @property
    def entry_price(self) -> float: ...
    @property
    def qty(self) -> float: ...
    @property
    def stake(self) -> float: ...
    @property
    def entry_fee(self) -> float: ...
    @property
    def stop_pct(self) -> float: ...
    @property
    def atr_at_entry(self) -> float: ...
    @property
    def hard_stop_price(self) -> float: ...
    @property
    def highest(self) -> float: ...
    @property
    def trail_active(self) -> bool: ...
    @property
    def trail_stop(self) -> float | None: ...
    @property
    def stop_price(self) -> float: ...
    @property
    def bars_held(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class ClosedTrade:
    """A trade the engine closed: the position, the exit, its P&L and fees."""

    @property
    def position(self) -> Position: ...
    @property
    def exit_time(self) -> int: ...
    @property
    def exit_price(self) -> float: ...
    @property
    def exit_reason(self) -> ExitReason: ...
    @property
    def pnl(self) -> float: ...
    @property
    def fees(self) -> float: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class CandleProblem:
    """The first rule a candle breaks: row ``index``, short ``code``, ``field``, ``message``."""

    @property
    def index(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def message(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

def feather_columns(data: bytes) -> list[tuple[str, str, npt.NDArray[Any]]] | None:
    """The columns of a feather (Arrow IPC) file's bytes as ``(name, type, values)``, type
    ``"double"``, ``"int64"`` or ``"timestamp[s|ms|us|ns]"``; None unless the file is in the plain
    candle layout (no nulls, no other types, uncompressed or LZ4)."""

def check_candles(
    time: npt.NDArray[np.int64],
    open: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
) -> CandleProblem | None: ...
def check_candle(
    open: float, high: float, low: float, close: float, volume: float
) -> CandleProblem | None: ...
def atr(
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    period: int = 14,
) -> npt.NDArray[np.float64]: ...
def atr_many(
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    period: int = 14,
) -> npt.NDArray[np.float64]: ...
def hard_stop_pct(atr_pct: float, k: float, floor: float = ..., cap: float = ...) -> float: ...
def hard_stop_price(entry_price: float, stop_pct: float) -> float: ...
def buy_fill(
    price: float, stake: float, fee_rate: float, slippage: float
) -> tuple[float, float, float, float]: ...
def open_cost(stake: float, fee_rate: float) -> float: ...
def round_trip(stake: float, entry_fee: float, gross: float, exit_fee: float) -> tuple[float, float]: ...
def sell_fill(
    price: float, qty: float, fee_rate: float, slippage: float
) -> tuple[float, float, float, float]: ...

#: One symbol's candles as the engine takes them: (symbol, timeframe ms, open time, open, high, low,
#: close, volume).
_Series: TypeAlias = tuple[
    str,
    int,
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]

def replay(
    series: list[_Series],
    variants: list[dict[str, Any]],
    progress: Callable[[int, int], object] | None = None,
    detail: list[_Series] | None = None,
) -> dict[str, Any]: ...

@final
class Atr:
    def __new__(cls, period: int = 14) -> Atr: ...
    def update(self, high: float, low: float, close: float) -> float: ...
    @property
    def value(self) -> float: ...
    @property
    def ready(self) -> bool: ...
    @property
    def period(self) -> int: ...

@final
class GuardTable:
    def __new__(cls, variants: list[str]) -> GuardTable: ...
    def variant_id(self, name: str) -> int: ...
    def symbol_id(self, name: str) -> int: ...
    def can_signal(self, variant: int, symbol: int, now_ms: int) -> bool: ...
    def blocked(self, variant: int, symbol: int, now_ms: int) -> str | None: ...
    def claim(self, variant: int, symbol: int, open_time_ms: int, cooldown_ms: int) -> bool: ...
    def release(self, variant: int, symbol: int) -> None: ...
    def set(self, variant: int, symbol: int, open: bool, protected_until_ms: int | None = None) -> None: ...
    def get(self, variant: int, symbol: int) -> tuple[bool, int | None]: ...
    @property
    def variants(self) -> list[str]: ...
    def __len__(self) -> int: ...

@final
class Engine:
    def __new__(cls, variants: list[dict[str, Any]]) -> Engine: ...
    @property
    def variants(self) -> list[str]: ...
    def add_symbol(self, name: str, tf_ms: int) -> int: ...
    def symbol_id(self, name: str) -> int | None: ...
    def exits(
        self, symbol: int, open_time: int, open: float, high: float, low: float, close: float, volume: float
    ) -> list[CloseIntent]: ...
    def signals(self, symbol: int) -> list[OpenIntent | SkipIntent]: ...
    def on_price(self, symbol: int, time: int, price: float) -> list[CloseIntent]: ...
    def apply_open(
        self,
        variant: int,
        symbol: int,
        time: int,
        fill_price: float,
        qty: float,
        fee: float,
        stake: float,
        stop_pct: float,
        atr: float,
    ) -> Position: ...
    def apply_close(
        self,
        variant: int,
        symbol: int,
        time: int,
        fill_price: float,
        gross: float,
        fee: float,
        exit_reason: ExitReason,
    ) -> ClosedTrade: ...
    def restore_position(
        self,
        variant: int,
        symbol: int,
        entry_time: int,
        entry_price: float,
        qty: float,
        stake: float,
        entry_fee: float,
        stop_pct: float,
        atr_at_entry: float,
        highest: float,
        trail_active: bool,
        trail_stop: float | None,
        bars_held: int,
        protected_until: int | None = None,
    ) -> None: ...
    def set_guard(
        self, variant: int, symbol: int, open: bool, protected_until: int | None = None
    ) -> None: ...
    def guard_state(self, variant: int, symbol: int) -> tuple[bool, int | None]: ...
    def blocked(self, variant: int, symbol: int, now_ms: int) -> SkipReason | None: ...
    def set_balance(self, variant: int, balance: float) -> None: ...
    def balance(self, variant: int) -> float: ...
    def equity(self, variant: int) -> float: ...
    def position(self, variant: int, symbol: int) -> Position | None: ...
    def open_symbols(self, variant: int) -> list[int]: ...
