//! `atr`, `atr_many` and the streaming `Atr`.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::borrow::Cow;

use crate::atr_fast::{self, AtrCell};
use crate::errors::engine_error;
use sigil_engine::atr as engine;

/// Below this many bars the GIL stays held: releasing and re-taking it would cost more than a
/// noticeable share of the ATR itself.
const DETACH_MIN_BARS: usize = 1 << 14;

/// A borrowed slice when the array is contiguous, else one copy.
fn slice<'a>(a: &'a PyReadonlyArray1<'_, f64>) -> Cow<'a, [f64]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().to_vec()),
    }
}

/// Row-major bars of a 2-D array: borrowed when C-contiguous, else one copy. (`as_slice` also
/// accepts a Fortran-ordered array, whose memory is column-major: that one is copied too.)
fn slice2<'a>(a: &'a PyReadonlyArray2<'_, f64>) -> Cow<'a, [f64]> {
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() => Cow::Borrowed(s),
        _ => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

/// Runs `f` with the GIL released when the input is large enough for that to pay.
fn maybe_detached<T: Send>(py: Python<'_>, bars: usize, f: impl FnOnce() -> T + Send) -> T {
    if bars >= DETACH_MIN_BARS {
        py.detach(f)
    } else {
        f()
    }
}

/// ATR over one series; NaN for the first `period` values.
#[pyfunction]
#[pyo3(signature = (high, low, close, period = 14))]
fn atr<'py>(
    py: Python<'py>,
    high: PyReadonlyArray1<'py, f64>,
    low: PyReadonlyArray1<'py, f64>,
    close: PyReadonlyArray1<'py, f64>,
    period: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (h, l, c) = (slice(&high), slice(&low), slice(&close));
    let out = maybe_detached(py, c.len(), || engine::atr(&h, &l, &c, period)).map_err(engine_error)?;
    Ok(out.into_pyarray(py))
}

/// ATR over many series at once: 2-D arrays, one row per symbol.
#[pyfunction]
#[pyo3(signature = (high, low, close, period = 14))]
fn atr_many<'py>(
    py: Python<'py>,
    high: PyReadonlyArray2<'py, f64>,
    low: PyReadonlyArray2<'py, f64>,
    close: PyReadonlyArray2<'py, f64>,
    period: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let shape = high.shape().to_vec();
    for (name, a) in [("low", &low), ("close", &close)] {
        if a.shape() != shape.as_slice() {
            return Err(PyValueError::new_err(format!(
                "{name} has shape {:?}, expected {:?}",
                a.shape(),
                shape
            )));
        }
    }
    let (rows, cols) = (shape[0], shape[1]);
    let (h, l, c) = (slice2(&high), slice2(&low), slice2(&close));
    let out = maybe_detached(py, c.len(), || engine::atr_many(&h, &l, &c, rows, cols, period))
        .map_err(engine_error)?;
    let arr = out.into_pyarray(py);
    arr.reshape([rows, cols])
}

/// Streaming ATR: `update(high, low, close)` returns the new value (NaN until ready).
///
/// `frozen`, with the engine's `Atr` in an [`AtrCell`]: a call takes no borrow flag (an atomic
/// read-modify-write per call) and works on the engine struct in place.
#[pyclass(name = "Atr", module = "sigil._core", frozen)]
pub struct PyAtr {
    inner: AtrCell,
}

impl PyAtr {
    /// Runs `f` on the engine's `Atr`, inside the object's critical section (see [`AtrCell`]).
    #[inline(always)]
    pub fn with<R>(slf: &Bound<'_, Self>, f: impl FnOnce(&mut engine::Atr) -> R) -> R {
        slf.get().inner.with(slf.as_any(), f)
    }
}

#[pymethods]
impl PyAtr {
    #[new]
    #[pyo3(signature = (period = 14))]
    fn new(period: usize) -> PyResult<Self> {
        let atr = engine::Atr::new(period).map_err(engine_error)?;
        Ok(Self { inner: AtrCell::new(atr) })
    }

    /// Current value (NaN until ready).
    #[getter]
    fn value(slf: &Bound<'_, Self>) -> f64 {
        Self::with(slf, |a| a.value())
    }

    /// True once `period + 1` candles have been seen.
    #[getter]
    fn ready(slf: &Bound<'_, Self>) -> bool {
        Self::with(slf, |a| a.ready())
    }

    /// The period.
    #[getter]
    fn period(slf: &Bound<'_, Self>) -> usize {
        Self::with(slf, |a| a.period())
    }

    /// Feeds one candle; returns the new value (NaN until ready). ValueError on a non-finite or
    /// non-positive price or high < low. (The safe fallback: the fast path replaces it at import.)
    fn update(slf: &Bound<'_, Self>, high: f64, low: f64, close: f64) -> PyResult<f64> {
        Self::with(slf, |a| a.update(high, low, close)).map_err(engine_error)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        Self::with(slf, |a| format!("Atr(period={}, value={})", a.period(), a.value()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(atr, m)?)?;
    m.add_function(wrap_pyfunction!(atr_many, m)?)?;
    m.add_class::<PyAtr>()?;
    atr_fast::install_update(m.py());
    Ok(())
}
