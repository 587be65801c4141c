//! Paper fill arithmetic, shared by replay and the daemon's paper broker.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sigil_engine::fills::Costs;

fn costs(fee_rate: f64, slippage: f64) -> PyResult<Costs> {
    for (name, v) in [("fee_rate", fee_rate), ("slippage", slippage)] {
        if !(v.is_finite() && (0.0..0.5).contains(&v)) {
            return Err(PyValueError::new_err(format!("{name} must be in [0, 0.5), got {v}")));
        }
    }
    Ok(Costs { fee_rate, slippage })
}

fn positive(name: &str, v: f64) -> PyResult<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("{name} must be a finite number > 0, got {v}")))
    }
}

/// Market buy of `stake` quote at reference `price`: `(fill_price, qty, fee, cost)`.
#[pyfunction]
fn buy_fill(price: f64, stake: f64, fee_rate: f64, slippage: f64) -> PyResult<(f64, f64, f64, f64)> {
    positive("price", price)?;
    positive("stake", stake)?;
    let f = costs(fee_rate, slippage)?.buy(price, stake);
    Ok((f.price, f.qty, f.fee, f.cost))
}

/// Market sell of `qty` at reference `price`: `(fill_price, gross, fee, proceeds)`.
#[pyfunction]
fn sell_fill(price: f64, qty: f64, fee_rate: f64, slippage: f64) -> PyResult<(f64, f64, f64, f64)> {
    positive("price", price)?;
    positive("qty", qty)?;
    let f = costs(fee_rate, slippage)?.sell(price, qty);
    Ok((f.price, f.gross, f.fee, f.proceeds))
}

/// The balance a buy of `stake` needs at `fee_rate`: exactly what the buy debits (stake + fee).
/// The one "enough balance" test: the engine's signals, the brokers and the store all use it.
#[pyfunction]
fn open_cost(stake: f64, fee_rate: f64) -> PyResult<f64> {
    positive("stake", stake)?;
    Ok(costs(fee_rate, 0.0)?.required(stake))
}

/// A round trip's `(pnl, fees)`: `(gross − exit_fee) − (stake + entry_fee)` and
/// `entry_fee + exit_fee`, the engine's P&L rule (the store records exactly this).
#[pyfunction]
fn round_trip(stake: f64, entry_fee: f64, gross: f64, exit_fee: f64) -> (f64, f64) {
    sigil_engine::fills::round_trip(stake, entry_fee, gross, exit_fee)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(round_trip, m)?)?;
    m.add_function(wrap_pyfunction!(open_cost, m)?)?;
    m.add_function(wrap_pyfunction!(buy_fill, m)?)?;
    m.add_function(wrap_pyfunction!(sell_fill, m)?)?;
    Ok(())
}
