//! `sigil._core`: thin PyO3 bindings over `sigil-engine`. Numpy in without copying, the GIL
//! released while the engine computes, `ValueError` for every engine error.

use pyo3::prelude::*;

mod atr;
mod engine;
mod errors;
mod fills;
mod guard;
mod replay;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    atr::register(m)?;
    engine::register(m)?;
    fills::register(m)?;
    guard::register(m)?;
    replay::register(m)?;
    Ok(())
}
