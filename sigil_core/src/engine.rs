//! `Engine`: the stateful decision step the daemon drives, candle by candle and price by price.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::value_error;
use crate::replay::variant_params;
use sigil_engine::engine::{Engine, Intent, Position};
use sigil_engine::fills::{BuyFill, SellFill};
use sigil_engine::stops::{ExitReason, StopState};
use sigil_engine::Candle;

/// The decision step over all variants and symbols. Methods return intents as tuples:
/// `("close", variant, symbol, time_ms, price, reason)`,
/// `("open", variant, symbol, time_ms, price, stop_pct, atr)`,
/// `("skip", variant, symbol, time_ms, reason)`.
#[pyclass(name = "Engine", module = "sigil._core")]
struct PyEngine {
    inner: Engine,
    buf: Vec<Intent>,
}

fn intent_tuple<'py>(py: Python<'py>, i: &Intent) -> PyResult<Bound<'py, PyTuple>> {
    match *i {
        Intent::Close { variant, symbol, time, price, reason } => {
            ("close", variant, symbol, time, price, reason.as_str()).into_pyobject(py)
        }
        Intent::Open { variant, symbol, time, price, stop_pct, atr } => {
            ("open", variant, symbol, time, price, stop_pct, atr).into_pyobject(py)
        }
        Intent::Skip { variant, symbol, time, reason } => {
            ("skip", variant, symbol, time, reason.as_str()).into_pyobject(py)
        }
    }
}

fn position_dict<'py>(py: Python<'py>, p: &Position) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("variant", p.variant)?;
    d.set_item("symbol", p.symbol)?;
    d.set_item("entry_time", p.entry_time)?;
    d.set_item("entry_price", p.entry_price)?;
    d.set_item("qty", p.qty)?;
    d.set_item("stake", p.stake)?;
    d.set_item("entry_fee", p.entry_fee)?;
    d.set_item("stop_pct", p.stop_pct)?;
    d.set_item("atr_at_entry", p.atr_at_entry)?;
    d.set_item("hard_stop_price", p.stop.hard_stop_price)?;
    d.set_item("highest", p.stop.highest)?;
    d.set_item("trail_active", p.stop.trail_active)?;
    d.set_item("trail_stop", if p.stop.trail_stop.is_finite() { Some(p.stop.trail_stop) } else { None })?;
    d.set_item("stop_price", p.stop.level().0)?;
    d.set_item("bars_held", p.bars_held)?;
    Ok(d)
}

fn reason(s: &str) -> PyResult<ExitReason> {
    ExitReason::parse(s).ok_or_else(|| PyValueError::new_err(format!("unknown exit reason {s:?}")))
}

impl PyEngine {
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let out = self.buf.iter().map(|i| intent_tuple(py, i)).collect();
        self.buf.clear();
        out
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    fn new(variants: Vec<Bound<'_, PyDict>>) -> PyResult<Self> {
        let params = variants.iter().map(variant_params).collect::<PyResult<Vec<_>>>()?;
        Ok(Self { inner: Engine::new(params).map_err(value_error)?, buf: Vec::with_capacity(64) })
    }

    /// Variant names in id order.
    #[getter]
    fn variants(&self) -> Vec<String> {
        self.inner.params().iter().map(|p| p.name.clone()).collect()
    }

    /// Adds a symbol (idempotent) with its timeframe in ms; returns its id.
    fn add_symbol(&mut self, name: &str, tf_ms: i64) -> PyResult<u32> {
        self.inner.add_symbol(name, tf_ms).map_err(value_error)
    }

    /// The id of a symbol already added, or None.
    fn symbol_id(&self, name: &str) -> Option<u32> {
        self.inner.guard().symbol_id(name)
    }

    /// Steps 1–2 of a closed candle (ATR, exits): the `close` intents to carry out before `signals`.
    #[allow(clippy::too_many_arguments)]
    fn exits<'py>(
        &mut self,
        py: Python<'py>,
        symbol: u32,
        open_time: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let c = Candle { open_time, open, high, low, close, volume };
        c.validate(0).map_err(value_error)?;
        self.buf.clear();
        self.inner.exits(symbol, &c, &mut self.buf).map_err(value_error)?;
        self.drain(py)
    }

    /// Steps 3–4 for the candle last given to `exits`: `open` and `skip` intents.
    fn signals<'py>(&mut self, py: Python<'py>, symbol: u32) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.buf.clear();
        self.inner.signals(symbol, &mut self.buf).map_err(value_error)?;
        self.drain(py)
    }

    /// A live price between closes: stops checked, trails raised; `close` intents.
    fn on_price<'py>(
        &mut self,
        py: Python<'py>,
        symbol: u32,
        time: i64,
        price: f64,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.buf.clear();
        self.inner.on_price(symbol, time, price, &mut self.buf).map_err(value_error)?;
        self.drain(py)
    }

    /// Records a carried-out open (fill from `buy_fill`): claims the guard, debits the balance.
    #[allow(clippy::too_many_arguments)]
    fn apply_open<'py>(
        &mut self,
        py: Python<'py>,
        variant: u32,
        symbol: u32,
        time: i64,
        fill_price: f64,
        qty: f64,
        fee: f64,
        stake: f64,
        stop_pct: f64,
        atr: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let fill = BuyFill { price: fill_price, stake, qty, fee, cost: stake + fee };
        let p = self.inner.apply_open(variant, symbol, time, &fill, stop_pct, atr).map_err(value_error)?;
        position_dict(py, &p)
    }

    /// Records a carried-out close (fill from `sell_fill`): releases the guard, credits the balance.
    /// Returns the trade with `pnl` and `fees`.
    #[allow(clippy::too_many_arguments)]
    fn apply_close<'py>(
        &mut self,
        py: Python<'py>,
        variant: u32,
        symbol: u32,
        time: i64,
        fill_price: f64,
        gross: f64,
        fee: f64,
        exit_reason: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let fill = SellFill { price: fill_price, gross, fee, proceeds: gross - fee };
        let t = self
            .inner
            .apply_close(variant, symbol, time, &fill, reason(exit_reason)?)
            .map_err(value_error)?;
        let d = position_dict(py, &t.position)?;
        d.set_item("exit_time", t.exit_time)?;
        d.set_item("exit_price", t.exit_price)?;
        d.set_item("exit_reason", t.reason.as_str())?;
        d.set_item("pnl", t.pnl)?;
        d.set_item("fees", t.fees)?;
        Ok(d)
    }

    /// Puts back a position the database holds, with its trail state and protection end.
    #[pyo3(signature = (variant, symbol, entry_time, entry_price, qty, stake, entry_fee, stop_pct, atr_at_entry,
                        highest, trail_active, trail_stop, bars_held, protected_until = None))]
    #[allow(clippy::too_many_arguments)]
    fn restore_position(
        &mut self,
        variant: u32,
        symbol: u32,
        entry_time: i64,
        entry_price: f64,
        qty: f64,
        stake: f64,
        entry_fee: f64,
        stop_pct: f64,
        atr_at_entry: f64,
        highest: f64,
        trail_active: bool,
        trail_stop: Option<f64>,
        bars_held: u32,
        protected_until: Option<i64>,
    ) -> PyResult<()> {
        let mut stop = StopState::new(entry_price, stop_pct);
        stop.highest = highest.max(entry_price);
        stop.trail_active = trail_active;
        stop.trail_stop = trail_stop.unwrap_or(f64::NEG_INFINITY);
        let pos = Position {
            variant,
            symbol,
            entry_time,
            entry_price,
            qty,
            stake,
            entry_fee,
            stop_pct,
            atr_at_entry,
            stop,
            bars_held,
        };
        self.inner.restore_position(pos, protected_until).map_err(value_error)
    }

    /// Sets the guard state of (variant, symbol) as the database has it.
    #[pyo3(signature = (variant, symbol, open, protected_until = None))]
    fn set_guard(
        &mut self,
        variant: u32,
        symbol: u32,
        open: bool,
        protected_until: Option<i64>,
    ) -> PyResult<()> {
        self.inner.set_guard(variant, symbol, open, protected_until).map_err(value_error)
    }

    /// Why (variant, symbol) may not signal at `now_ms`: "open", "cooldown", or None.
    fn blocked(&self, variant: u32, symbol: u32, now_ms: i64) -> PyResult<Option<&'static str>> {
        let r = self.inner.guard().can_signal(variant, symbol, now_ms).map_err(value_error)?;
        Ok(r.err().map(|b| match b {
            sigil_engine::Blocked::Open => "open",
            sigil_engine::Blocked::Cooldown { .. } => "cooldown",
        }))
    }

    /// Sets a variant's balance (the database is the authority).
    fn set_balance(&mut self, variant: u32, balance: f64) -> PyResult<()> {
        self.inner.set_balance(variant, balance).map_err(value_error)
    }

    /// A variant's cash balance.
    fn balance(&self, variant: u32) -> PyResult<f64> {
        self.check_variant(variant)?;
        Ok(self.inner.balance(variant))
    }

    /// Balance plus open positions at their symbol's last close.
    fn equity(&self, variant: u32) -> PyResult<f64> {
        self.check_variant(variant)?;
        Ok(self.inner.equity(variant))
    }

    /// The open position of (variant, symbol) as a dict, or None.
    fn position<'py>(
        &self,
        py: Python<'py>,
        variant: u32,
        symbol: u32,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.check_variant(variant)?;
        self.inner.position(variant, symbol).map(|p| position_dict(py, p)).transpose()
    }

    /// Symbol ids with an open position for a variant.
    fn open_symbols(&self, variant: u32) -> PyResult<Vec<u32>> {
        self.check_variant(variant)?;
        Ok(self.inner.open_symbols(variant).to_vec())
    }

    /// Current ATR of (variant, symbol); NaN until ready.
    fn atr(&self, variant: u32, symbol: u32) -> f64 {
        self.inner.atr(variant, symbol)
    }
}

impl PyEngine {
    fn check_variant(&self, v: u32) -> PyResult<()> {
        if (v as usize) < self.inner.params().len() {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!("unknown variant id {v}")))
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()
}
