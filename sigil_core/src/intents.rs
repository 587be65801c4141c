//! What crosses the engine boundary, typed: the intents the decision step returns, the positions
//! it holds and the trades it closes. Frozen values: the engine's state changes only through
//! `Engine.apply_open`, `apply_close`, `restore_position` and `set_guard`.

use pyo3::prelude::*;
use sigil_engine::engine::{ClosedTrade, Intent, Position};

use crate::reasons::{PyExitReason, PySkipReason};

/// Buy the variant's stake of `symbol` at reference `price`; `stop_pct` is the hard stop frozen at
/// entry and `atr` the signal candle's ATR.
#[pyclass(name = "OpenIntent", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct OpenIntent {
    variant: u32,
    symbol: u32,
    time: i64,
    price: f64,
    stop_pct: f64,
    atr: f64,
}

/// Sell the whole position of (variant, symbol) at reference `price`, for `reason`.
#[pyclass(name = "CloseIntent", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct CloseIntent {
    variant: u32,
    symbol: u32,
    time: i64,
    price: f64,
    reason: PyExitReason,
}

/// A breakout of (variant, symbol) that was not taken, and why.
#[pyclass(name = "SkipIntent", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct SkipIntent {
    variant: u32,
    symbol: u32,
    time: i64,
    reason: PySkipReason,
}

#[pymethods]
impl OpenIntent {
    fn __repr__(&self) -> String {
        format!(
            "OpenIntent(variant={}, symbol={}, time={}, price={}, stop_pct={}, atr={})",
            self.variant, self.symbol, self.time, self.price, self.stop_pct, self.atr
        )
    }
}

#[pymethods]
impl CloseIntent {
    fn __repr__(&self) -> String {
        format!(
            "CloseIntent(variant={}, symbol={}, time={}, price={}, reason={})",
            self.variant,
            self.symbol,
            self.time,
            self.price,
            self.reason.value_str()
        )
    }
}

#[pymethods]
impl SkipIntent {
    fn __repr__(&self) -> String {
        format!(
            "SkipIntent(variant={}, symbol={}, time={}, reason={})",
            self.variant,
            self.symbol,
            self.time,
            self.reason.value_str()
        )
    }
}

/// An intent as its Python object.
pub fn intent_object<'py>(py: Python<'py>, i: &Intent) -> PyResult<Bound<'py, PyAny>> {
    Ok(match *i {
        Intent::Close { variant, symbol, time, price, reason } => {
            Bound::new(py, CloseIntent { variant, symbol, time, price, reason: reason.into() })?.into_any()
        }
        Intent::Open { variant, symbol, time, price, stop_pct, atr } => {
            Bound::new(py, OpenIntent { variant, symbol, time, price, stop_pct, atr })?.into_any()
        }
        Intent::Skip { variant, symbol, time, reason } => {
            Bound::new(py, SkipIntent { variant, symbol, time, reason: reason.into() })?.into_any()
        }
    })
}

/// `close` intents only (what `exits` and `on_price` return).
pub fn close_intent(i: &Intent) -> Option<CloseIntent> {
    match *i {
        Intent::Close { variant, symbol, time, price, reason } => {
            Some(CloseIntent { variant, symbol, time, price, reason: reason.into() })
        }
        _ => None,
    }
}

/// An open position as the engine holds it.
#[pyclass(name = "Position", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyPosition {
    variant: u32,
    symbol: u32,
    /// Close time of the signal candle (ms UTC): when the entry filled.
    entry_time: i64,
    entry_price: f64,
    qty: f64,
    stake: f64,
    entry_fee: f64,
    stop_pct: f64,
    atr_at_entry: f64,
    /// `entry_price × (1 − stop_pct)`, frozen at entry.
    hard_stop_price: f64,
    /// Highest price since entry (the trail's anchor).
    highest: f64,
    trail_active: bool,
    /// None until the trail is active.
    trail_stop: Option<f64>,
    /// The level that closes the position now: the higher of the hard stop and the trail.
    stop_price: f64,
    /// Candles of its symbol closed since the entry.
    bars_held: u32,
}

impl From<&Position> for PyPosition {
    fn from(p: &Position) -> Self {
        Self {
            variant: p.variant,
            symbol: p.symbol,
            entry_time: p.entry_time,
            entry_price: p.entry_price,
            qty: p.qty,
            stake: p.stake,
            entry_fee: p.entry_fee,
            stop_pct: p.stop_pct,
            atr_at_entry: p.atr_at_entry,
            hard_stop_price: p.stop.hard_stop_price,
            highest: p.stop.highest,
            trail_active: p.stop.trail_active,
            trail_stop: p.stop.trail_stop.is_finite().then_some(p.stop.trail_stop),
            stop_price: p.stop.level().0,
            bars_held: p.bars_held,
        }
    }
}

#[pymethods]
impl PyPosition {
    fn __repr__(&self) -> String {
        format!(
            "Position(variant={}, symbol={}, entry_time={}, entry_price={}, qty={}, stop_price={})",
            self.variant, self.symbol, self.entry_time, self.entry_price, self.qty, self.stop_price
        )
    }
}

/// A trade the engine closed: the position as it was, the exit, and its one P&L
/// (proceeds − entry cost) and fees (entry + exit).
#[pyclass(name = "ClosedTrade", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyClosedTrade {
    position: PyPosition,
    exit_time: i64,
    exit_price: f64,
    exit_reason: PyExitReason,
    pnl: f64,
    fees: f64,
}

impl From<&ClosedTrade> for PyClosedTrade {
    fn from(t: &ClosedTrade) -> Self {
        Self {
            position: (&t.position).into(),
            exit_time: t.exit_time,
            exit_price: t.exit_price,
            exit_reason: t.reason.into(),
            pnl: t.pnl,
            fees: t.fees,
        }
    }
}

#[pymethods]
impl PyClosedTrade {
    fn __repr__(&self) -> String {
        format!(
            "ClosedTrade(variant={}, symbol={}, exit_time={}, exit_price={}, exit_reason={}, pnl={})",
            self.position.variant,
            self.position.symbol,
            self.exit_time,
            self.exit_price,
            self.exit_reason.value_str(),
            self.pnl
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OpenIntent>()?;
    m.add_class::<CloseIntent>()?;
    m.add_class::<SkipIntent>()?;
    m.add_class::<PyPosition>()?;
    m.add_class::<PyClosedTrade>()
}
