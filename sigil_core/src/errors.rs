//! Engine errors reach Python as `sigil._core.EngineError`, a `ValueError` subclass (callers that
//! catch `ValueError` keep working) that carries what the engine knew: the field and the index.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sigil_engine::EngineError as Error;

create_exception!(
    _core,
    EngineError,
    PyValueError,
    "The engine refused its input. `field` names the column, parameter or id kind at fault and \
     `index` the row or id, where the engine knew them (else None)."
);

/// The field (column, parameter, id kind) and the index (row, id) an engine error names.
fn location(e: &Error) -> (Option<&'static str>, Option<usize>) {
    match *e {
        Error::NonFinite { field, index } | Error::NonPositive { field, index } => (Some(field), Some(index)),
        Error::OutOfRange { what, index } => (Some(what), Some(index)),
        Error::LengthMismatch { field, .. } => (Some(field), None),
        Error::Unsorted { index } => (Some("time"), Some(index)),
        Error::InvalidParam { name, .. } => (Some(name), None),
        Error::Unknown { what, id } => (Some(what), Some(id)),
    }
}

/// Maps an engine error to `EngineError` with its message, `field` and `index`.
pub fn engine_error(e: Error) -> PyErr {
    raise(e.to_string(), &e)
}

/// As [`engine_error`], the message led by `context` (e.g. which variant).
pub fn engine_error_in(context: &str, e: Error) -> PyErr {
    raise(format!("{context}: {e}"), &e)
}

fn raise(message: String, e: &Error) -> PyErr {
    let (field, index) = location(e);
    Python::attach(|py| {
        let err = EngineError::new_err(message);
        let value = err.value(py);
        // Setting attributes on a fresh exception instance cannot fail short of memory exhaustion;
        // the message alone still says everything then.
        let _ = value.setattr("field", field);
        let _ = value.setattr("index", index);
        err
    })
}

/// A `ValueError`-family error of the binding's own (bad arguments the engine never saw), with the
/// same attributes so a caller handles every refusal alike.
pub fn invalid(field: &'static str, message: String) -> PyErr {
    Python::attach(|py| {
        let err = EngineError::new_err(message);
        let value = err.value(py);
        let _ = value.setattr("field", field);
        let _ = value.setattr("index", py.None());
        err
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let ty = py.get_type::<EngineError>();
    // Class-level defaults: an instance made from Python (`EngineError("…")`) has them too.
    ty.setattr("field", py.None())?;
    ty.setattr("index", py.None())?;
    m.add("EngineError", ty)
}
