//! The hard stop (fix G): `hard_stop_pct`, `hard_stop_price` and the default floor and cap, exported from the engine
//! so that Python never writes the numbers again.

use pyo3::prelude::*;
use sigil_engine::{STOP_CAP_PCT, STOP_FLOOR_PCT};

use crate::errors::invalid;

/// `min(cap, max(floor, k * atr_pct))`: the hard-stop distance, frozen at entry.
#[pyfunction]
#[pyo3(signature = (atr_pct, k, floor = STOP_FLOOR_PCT, cap = STOP_CAP_PCT))]
fn hard_stop_pct(atr_pct: f64, k: f64, floor: f64, cap: f64) -> PyResult<f64> {
    for (name, v) in [("atr_pct", atr_pct), ("k", k), ("floor", floor), ("cap", cap)] {
        if !v.is_finite() || v < 0.0 {
            return Err(invalid(name, format!("{name} must be a finite number >= 0, got {v}")));
        }
    }
    if cap < floor {
        return Err(invalid("cap", format!("cap ({cap}) is below floor ({floor})")));
    }
    Ok(sigil_engine::hard_stop_pct(atr_pct, k, floor, cap))
}

/// `entry_price × (1 − stop_pct)`: the hard stop's price level, frozen at entry (the level the
/// engine tests the lows against, and the one the database records).
#[pyfunction]
fn hard_stop_price(entry_price: f64, stop_pct: f64) -> f64 {
    sigil_engine::hard_stop_price(entry_price, stop_pct)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("STOP_FLOOR_PCT", STOP_FLOOR_PCT)?;
    m.add("STOP_CAP_PCT", STOP_CAP_PCT)?;
    m.add_function(wrap_pyfunction!(hard_stop_pct, m)?)?;
    m.add_function(wrap_pyfunction!(hard_stop_price, m)?)
}
