"""Type stubs for the Rust extension module ``sigil._core`` (checked by ``mypy.stubtest``)."""

from collections.abc import Callable
from typing import Any, TypeAlias, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "Atr",
    "Engine",
    "GuardTable",
    "__version__",
    "atr",
    "atr_many",
    "buy_fill",
    "hard_stop_pct",
    "replay",
    "sell_fill",
]

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
def hard_stop_pct(atr_pct: float, k: float, floor: float = 0.03, cap: float = 0.06) -> float: ...
def buy_fill(
    price: float, stake: float, fee_rate: float, slippage: float
) -> tuple[float, float, float, float]: ...
def sell_fill(
    price: float, qty: float, fee_rate: float, slippage: float
) -> tuple[float, float, float, float]: ...
def replay(
    series: list[
        tuple[
            str,
            int,
            npt.NDArray[np.int64],
            npt.NDArray[np.float64],
            npt.NDArray[np.float64],
            npt.NDArray[np.float64],
            npt.NDArray[np.float64],
            npt.NDArray[np.float64],
        ]
    ],
    variants: list[dict[str, Any]],
    progress: Callable[[int, int], object] | None = None,
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

_Intent: TypeAlias = tuple[Any, ...]

@final
class Engine:
    def __new__(cls, variants: list[dict[str, Any]]) -> Engine: ...
    @property
    def variants(self) -> list[str]: ...
    def add_symbol(self, name: str, tf_ms: int) -> int: ...
    def symbol_id(self, name: str) -> int | None: ...
    def exits(
        self, symbol: int, open_time: int, open: float, high: float, low: float, close: float, volume: float
    ) -> list[_Intent]: ...
    def signals(self, symbol: int) -> list[_Intent]: ...
    def on_price(self, symbol: int, time: int, price: float) -> list[_Intent]: ...
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
    ) -> dict[str, Any]: ...
    def apply_close(
        self,
        variant: int,
        symbol: int,
        time: int,
        fill_price: float,
        gross: float,
        fee: float,
        exit_reason: str,
    ) -> dict[str, Any]: ...
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
    def blocked(self, variant: int, symbol: int, now_ms: int) -> str | None: ...
    def set_balance(self, variant: int, balance: float) -> None: ...
    def balance(self, variant: int) -> float: ...
    def equity(self, variant: int) -> float: ...
    def position(self, variant: int, symbol: int) -> dict[str, Any] | None: ...
    def open_symbols(self, variant: int) -> list[int]: ...
    def atr(self, variant: int, symbol: int) -> float: ...
