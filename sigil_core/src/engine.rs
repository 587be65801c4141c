//! `Engine`: the stateful decision step the daemon drives, candle by candle and price by price.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{engine_error, invalid};
use crate::intents::{close_intent, intent_object, CloseIntent, PyClosedTrade, PyPosition};
use crate::params::variant_params;
use crate::reasons::{PyExitReason, PySkipReason};
use sigil_engine::engine::{Engine, Intent, Position};
use sigil_engine::fills::{BuyFill, SellFill};
use sigil_engine::stops::StopState;
use sigil_engine::{Blocked, Candle};

/// The decision step over all variants and symbols. `exits` and `on_price` return `CloseIntent`s,
/// `signals` returns `OpenIntent`s and `SkipIntent`s; positions and closed trades are typed values.
#[pyclass(name = "Engine", module = "sigil._core")]
struct PyEngine {
    inner: Engine,
    buf: Vec<Intent>,
}

impl PyEngine {
    /// The buffered intents as Python objects (opens and skips).
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let out = self.buf.iter().map(|i| intent_object(py, i)).collect();
        self.buf.clear();
        out
    }

    /// The buffered `close` intents.
    fn drain_closes(&mut self) -> Vec<CloseIntent> {
        let out = self.buf.iter().filter_map(close_intent).collect();
        self.buf.clear();
        out
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    fn new(variants: Vec<Bound<'_, PyDict>>) -> PyResult<Self> {
        let params = variants.iter().map(variant_params).collect::<PyResult<Vec<_>>>()?;
        Ok(Self { inner: Engine::new(params).map_err(engine_error)?, buf: Vec::with_capacity(64) })
    }

    /// Variant names in id order.
    #[getter]
    fn variants(&self) -> Vec<String> {
        self.inner.params().iter().map(|p| p.name.clone()).collect()
    }

    /// Adds a symbol (idempotent) with its timeframe in ms; returns its id.
    fn add_symbol(&mut self, name: &str, tf_ms: i64) -> PyResult<u32> {
        self.inner.add_symbol(name, tf_ms).map_err(engine_error)
    }

    /// The id of a symbol already added, or None.
    fn symbol_id(&self, name: &str) -> Option<u32> {
        self.inner.guard().symbol_id(name)
    }

    /// Steps 1–2 of a closed candle (ATR, exits): the `close` intents to carry out before `signals`.
    #[allow(clippy::too_many_arguments)]
    fn exits(
        &mut self,
        symbol: u32,
        open_time: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> PyResult<Vec<CloseIntent>> {
        let c = Candle { open_time, open, high, low, close, volume };
        c.validate(0).map_err(engine_error)?;
        self.buf.clear();
        self.inner.exits(symbol, &c, &mut self.buf).map_err(engine_error)?;
        Ok(self.drain_closes())
    }

    /// Steps 3–4 for the candle last given to `exits`: `open` and `skip` intents.
    fn signals<'py>(&mut self, py: Python<'py>, symbol: u32) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.buf.clear();
        self.inner.signals(symbol, &mut self.buf).map_err(engine_error)?;
        self.drain(py)
    }

    /// A live price between closes: stops checked, trails raised; `close` intents.
    fn on_price(&mut self, symbol: u32, time: i64, price: f64) -> PyResult<Vec<CloseIntent>> {
        self.buf.clear();
        self.inner.on_price(symbol, time, price, &mut self.buf).map_err(engine_error)?;
        Ok(self.drain_closes())
    }

    /// Records a carried-out open (fill from `buy_fill`): claims the guard, debits the balance.
    #[allow(clippy::too_many_arguments)]
    fn apply_open(
        &mut self,
        variant: u32,
        symbol: u32,
        time: i64,
        fill_price: f64,
        qty: f64,
        fee: f64,
        stake: f64,
        stop_pct: f64,
        atr: f64,
    ) -> PyResult<PyPosition> {
        let fill = BuyFill { price: fill_price, stake, qty, fee, cost: stake + fee };
        let p = self.inner.apply_open(variant, symbol, time, &fill, stop_pct, atr).map_err(engine_error)?;
        Ok((&p).into())
    }

    /// Records a carried-out close (fill from `sell_fill`): releases the guard, credits the balance.
    /// Returns the closed trade with its P&L and fees.
    #[allow(clippy::too_many_arguments)]
    fn apply_close(
        &mut self,
        variant: u32,
        symbol: u32,
        time: i64,
        fill_price: f64,
        gross: f64,
        fee: f64,
        exit_reason: PyExitReason,
    ) -> PyResult<PyClosedTrade> {
        let fill = SellFill { price: fill_price, gross, fee, proceeds: gross - fee };
        let t =
            self.inner.apply_close(variant, symbol, time, &fill, exit_reason.into()).map_err(engine_error)?;
        Ok((&t).into())
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
        self.inner.restore_position(pos, protected_until).map_err(engine_error)
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
        self.inner.set_guard(variant, symbol, open, protected_until).map_err(engine_error)
    }

    /// `(open, protected_until_ms or None)` of (variant, symbol) in the engine's guard.
    fn guard_state(&self, variant: u32, symbol: u32) -> PyResult<(bool, Option<i64>)> {
        self.inner.guard().get(variant, symbol).map_err(engine_error)
    }

    /// Why (variant, symbol) may not signal at `now_ms` (`OPEN`, `COOLDOWN`), or None.
    fn blocked(&self, variant: u32, symbol: u32, now_ms: i64) -> PyResult<Option<PySkipReason>> {
        let r = self.inner.guard().can_signal(variant, symbol, now_ms).map_err(engine_error)?;
        Ok(r.err().map(|b| match b {
            Blocked::Open => PySkipReason::Open,
            Blocked::Cooldown { .. } => PySkipReason::Cooldown,
        }))
    }

    /// Sets a variant's balance (the database is the authority).
    fn set_balance(&mut self, variant: u32, balance: f64) -> PyResult<()> {
        self.inner.set_balance(variant, balance).map_err(engine_error)
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

    /// The open position of (variant, symbol), or None.
    fn position(&self, variant: u32, symbol: u32) -> PyResult<Option<PyPosition>> {
        self.check_variant(variant)?;
        Ok(self.inner.position(variant, symbol).map(PyPosition::from))
    }

    /// Symbol ids with an open position for a variant.
    fn open_symbols(&self, variant: u32) -> PyResult<Vec<u32>> {
        self.check_variant(variant)?;
        Ok(self.inner.open_symbols(variant).to_vec())
    }
}

impl PyEngine {
    fn check_variant(&self, v: u32) -> PyResult<()> {
        if (v as usize) < self.inner.params().len() {
            Ok(())
        } else {
            Err(invalid("variant", format!("unknown variant id {v}")))
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()
}
