//! Engine errors become Python `ValueError`s carrying the engine's message.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;
use sigil_engine::EngineError;

/// Maps an engine error to `ValueError`.
pub fn value_error(e: EngineError) -> PyErr {
    PyValueError::new_err(e.to_string())
}
