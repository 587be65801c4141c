//! Candle validation, one rule for every reader: the file loader checks whole columns with
//! `check_candles`, the exchange client each row with `check_candle`; both get the engine's verdict.

use std::borrow::Cow;

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use sigil_engine::{first_problem, Candle, CandleProblem};

use crate::errors::engine_error;

/// The first rule a candle (row) breaks: `index` (row, from 0), `code` (the short kind exchange
/// counters use: `not_finite`, `not_positive`, `negative_volume`, `high_below_low`,
/// `outside_range`, `duplicate`, `out_of_order`), `field` and a one-line `message`.
#[pyclass(name = "CandleProblem", module = "sigil._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyCandleProblem {
    index: usize,
    code: &'static str,
    field: &'static str,
    message: String,
}

impl PyCandleProblem {
    fn new(index: usize, p: CandleProblem) -> Self {
        Self { index, code: p.code(), field: p.field(), message: p.message() }
    }
}

#[pymethods]
impl PyCandleProblem {
    fn __repr__(&self) -> String {
        format!("CandleProblem(index={}, code={:?}, message={:?})", self.index, self.code, self.message)
    }
}

fn cow<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().to_vec()),
    }
}

/// The first bad row of a series (prices finite and > 0, volume finite and >= 0,
/// low <= open, close <= high, open times strictly increasing), or None.
#[pyfunction]
fn check_candles<'py>(
    py: Python<'py>,
    time: PyReadonlyArray1<'py, i64>,
    open: PyReadonlyArray1<'py, f64>,
    high: PyReadonlyArray1<'py, f64>,
    low: PyReadonlyArray1<'py, f64>,
    close: PyReadonlyArray1<'py, f64>,
    volume: PyReadonlyArray1<'py, f64>,
) -> PyResult<Option<PyCandleProblem>> {
    let (t, o, h, l, c, v) = (cow(&time), cow(&open), cow(&high), cow(&low), cow(&close), cow(&volume));
    let found = py.detach(|| first_problem(&t, &o, &h, &l, &c, &v)).map_err(engine_error)?;
    Ok(found.map(|(i, p)| PyCandleProblem::new(i, p)))
}

/// What is wrong with one candle's values (the row rules of `check_candles`), or None.
#[pyfunction]
fn check_candle(open: f64, high: f64, low: f64, close: f64, volume: f64) -> Option<PyCandleProblem> {
    let c = Candle { open_time: 0, open, high, low, close, volume };
    c.problem().map(|p| PyCandleProblem::new(0, p))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCandleProblem>()?;
    m.add_function(wrap_pyfunction!(check_candles, m)?)?;
    m.add_function(wrap_pyfunction!(check_candle, m)?)
}
