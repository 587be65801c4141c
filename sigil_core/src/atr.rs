//! `atr`, `atr_many` and the streaming `Atr`.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::borrow::Cow;

use crate::errors::value_error;
use sigil_engine::atr as engine;

/// A borrowed slice when the array is contiguous, else one copy.
fn slice<'a>(a: &'a PyReadonlyArray1<'_, f64>) -> Cow<'a, [f64]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().to_vec()),
    }
}

fn slice2<'a>(a: &'a PyReadonlyArray2<'_, f64>) -> Cow<'a, [f64]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
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
    let out = py
        .detach(|| engine::atr(&h, &l, &c, period))
        .map_err(value_error)?;
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
    let out = py
        .detach(|| engine::atr_many(&h, &l, &c, rows, cols, period))
        .map_err(value_error)?;
    let arr = out.into_pyarray(py);
    arr.reshape([rows, cols])
}

/// Streaming ATR: `update(high, low, close)` returns the new value (NaN until ready).
#[pyclass(name = "Atr", module = "sigil._core")]
struct PyAtr {
    inner: engine::Atr,
}

#[pymethods]
impl PyAtr {
    #[new]
    #[pyo3(signature = (period = 14))]
    fn new(period: usize) -> PyResult<Self> {
        Ok(Self {
            inner: engine::Atr::new(period).map_err(value_error)?,
        })
    }

    /// Feeds one candle; ValueError on a non-finite or non-positive price or high < low.
    fn update(&mut self, high: f64, low: f64, close: f64) -> PyResult<f64> {
        self.inner.update(high, low, close).map_err(value_error)
    }

    /// Current value (NaN until ready).
    #[getter]
    fn value(&self) -> f64 {
        self.inner.value()
    }

    /// True once `period + 1` candles have been seen.
    #[getter]
    fn ready(&self) -> bool {
        self.inner.ready()
    }

    /// The period.
    #[getter]
    fn period(&self) -> usize {
        self.inner.period()
    }

    fn __repr__(&self) -> String {
        format!(
            "Atr(period={}, value={})",
            self.inner.period(),
            self.inner.value()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(atr, m)?)?;
    m.add_function(wrap_pyfunction!(atr_many, m)?)?;
    m.add_class::<PyAtr>()?;
    m.add_function(wrap_pyfunction!(hard_stop_pct, m)?)?;
    Ok(())
}

/// `min(cap, max(floor, k * atr_pct))`: the hard-stop distance (fix G).
#[pyfunction]
#[pyo3(signature = (atr_pct, k, floor = 0.03, cap = 0.06))]
fn hard_stop_pct(atr_pct: f64, k: f64, floor: f64, cap: f64) -> PyResult<f64> {
    for (name, v) in [
        ("atr_pct", atr_pct),
        ("k", k),
        ("floor", floor),
        ("cap", cap),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(PyValueError::new_err(format!(
                "{name} must be a finite number >= 0, got {v}"
            )));
        }
    }
    if cap < floor {
        return Err(PyValueError::new_err(format!(
            "cap ({cap}) is below floor ({floor})"
        )));
    }
    Ok(sigil_engine::hard_stop_pct(atr_pct, k, floor, cap))
}
