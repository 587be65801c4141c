//! `sigil._core`: thin PyO3 bindings over `sigil-engine`. Numpy in without copying, the GIL
//! released while the engine computes, typed values across the boundary (intents, positions,
//! trades, reasons) and `EngineError` (a `ValueError`) naming the field and index of every refusal.
//! The only `unsafe` code is `atr_fast` (the fast `Atr.update`).
#![deny(unsafe_code)]

use pyo3::prelude::*;

mod atr;
mod atr_fast;
mod candles;
mod engine;
mod errors;
mod feather;
mod fills;
mod guard;
mod intents;
mod params;
mod reasons;
mod replay;
mod stops;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    reasons::register(m)?;
    intents::register(m)?;
    atr::register(m)?;
    candles::register(m)?;
    engine::register(m)?;
    feather::register(m)?;
    fills::register(m)?;
    guard::register(m)?;
    replay::register(m)?;
    stops::register(m)?;
    Ok(())
}
