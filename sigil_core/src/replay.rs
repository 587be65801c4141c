//! `replay(series, variants, progress=None)`: the deterministic replay, GIL released while it runs.

use std::borrow::Cow;

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::engine_error;
use crate::params::variant_params;
use sigil_engine::engine::SkipReason;
use sigil_engine::replay::{replay_detailed as run_replay, Series};
use sigil_engine::stops::ExitReason;

type SeriesArgs<'py> = (
    String,
    i64,
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
);

fn cow<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().to_vec()),
    }
}

/// The columns of the tuples, borrowed where they are contiguous.
type Columns<'a> = (Vec<[Cow<'a, [f64]>; 5]>, Vec<Cow<'a, [i64]>>);

fn columns<'a>(series: &'a [SeriesArgs<'_>]) -> Columns<'a> {
    let cols = series.iter().map(|s| [cow(&s.3), cow(&s.4), cow(&s.5), cow(&s.6), cow(&s.7)]).collect();
    (cols, series.iter().map(|s| cow(&s.2)).collect())
}

fn views<'a>(series: &'a [SeriesArgs<'_>], cols: &'a Columns<'a>) -> Vec<Series<'a>> {
    series
        .iter()
        .zip(&cols.0)
        .zip(&cols.1)
        .map(|((s, c), t)| Series {
            symbol: &s.0,
            tf_ms: s.1,
            time: t,
            open: &c[0],
            high: &c[1],
            low: &c[2],
            close: &c[3],
            volume: &c[4],
        })
        .collect()
}

/// Replays `series` (tuples `(symbol, tf_ms, time_ms, open, high, low, close, volume)`) through
/// `variants` (dicts). `progress(done, total)` is called now and then with the GIL held.
/// `detail`: lower-timeframe series of some of the symbols, in the same tuples, moving prices
/// between closes through the engine's `on_price` (the engine's `replay_detailed`).
#[pyfunction]
#[pyo3(signature = (series, variants, progress = None, detail = None))]
fn replay<'py>(
    py: Python<'py>,
    series: Vec<SeriesArgs<'py>>,
    variants: Vec<Bound<'py, PyDict>>,
    progress: Option<Bound<'py, PyAny>>,
    detail: Option<Vec<SeriesArgs<'py>>>,
) -> PyResult<Bound<'py, PyDict>> {
    let params = variants.iter().map(variant_params).collect::<PyResult<Vec<_>>>()?;
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let detail = detail.unwrap_or_default();
    let main_cols = columns(&series);
    let detail_cols = columns(&detail);
    let views_main = views(&series, &main_cols);
    let views_detail = views(&detail, &detail_cols);
    let times = &main_cols.1;
    let total: u64 = times.iter().map(|t| t.len() as u64).sum();
    let every = (total / 100).max(10_000);
    let progress = progress.map(|p| p.unbind());
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        run_replay(params, &views_main, &views_detail, every, |done, total| {
            if let Some(cb) = &progress {
                Python::attach(|py| {
                    if callback_error.is_none() {
                        if let Err(e) = cb.call1(py, (done, total)) {
                            callback_error = Some(e);
                        }
                    }
                });
            }
        })
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    let r = result.map_err(engine_error)?;

    let out = PyDict::new(py);
    out.set_item("variants", names)?;
    out.set_item("symbols", r.symbols.clone())?;
    out.set_item("candles", r.candles)?;
    out.set_item("detail_candles", r.detail_candles)?;
    out.set_item("undetailed", r.undetailed.clone())?;
    out.set_item("balances", r.balances.clone())?;

    let t = &r.trades;
    let trades = PyDict::new(py);
    let col_i = |f: &dyn Fn(usize) -> i64| (0..t.len()).map(f).collect::<Vec<i64>>();
    let col_f = |f: &dyn Fn(usize) -> f64| (0..t.len()).map(f).collect::<Vec<f64>>();
    trades.set_item("variant", col_i(&|i| t[i].position.variant as i64).into_pyarray(py))?;
    trades.set_item("symbol", col_i(&|i| t[i].position.symbol as i64).into_pyarray(py))?;
    trades.set_item("entry_time", col_i(&|i| t[i].position.entry_time).into_pyarray(py))?;
    trades.set_item("exit_time", col_i(&|i| t[i].exit_time).into_pyarray(py))?;
    trades.set_item("entry_price", col_f(&|i| t[i].position.entry_price).into_pyarray(py))?;
    trades.set_item("exit_price", col_f(&|i| t[i].exit_price).into_pyarray(py))?;
    trades.set_item("qty", col_f(&|i| t[i].position.qty).into_pyarray(py))?;
    trades.set_item("stake", col_f(&|i| t[i].position.stake).into_pyarray(py))?;
    trades.set_item("stop_pct", col_f(&|i| t[i].position.stop_pct).into_pyarray(py))?;
    trades.set_item("atr_at_entry", col_f(&|i| t[i].position.atr_at_entry).into_pyarray(py))?;
    trades.set_item("pnl", col_f(&|i| t[i].pnl).into_pyarray(py))?;
    trades.set_item("fees", col_f(&|i| t[i].fees).into_pyarray(py))?;
    // Codes into `exit_reasons`: one integer column instead of thousands of Python strings.
    let code = |r: ExitReason| ExitReason::ALL.iter().position(|&x| x == r).unwrap_or(0) as i64;
    trades.set_item("exit_reason", col_i(&|i| code(t[i].reason)).into_pyarray(py))?;
    out.set_item("trades", trades)?;

    let o = &r.open_positions;
    let open = PyDict::new(py);
    let oi = |f: &dyn Fn(usize) -> i64| (0..o.len()).map(f).collect::<Vec<i64>>();
    let of = |f: &dyn Fn(usize) -> f64| (0..o.len()).map(f).collect::<Vec<f64>>();
    open.set_item("variant", oi(&|i| o[i].variant as i64).into_pyarray(py))?;
    open.set_item("symbol", oi(&|i| o[i].symbol as i64).into_pyarray(py))?;
    open.set_item("entry_time", oi(&|i| o[i].entry_time).into_pyarray(py))?;
    open.set_item("entry_price", of(&|i| o[i].entry_price).into_pyarray(py))?;
    open.set_item("qty", of(&|i| o[i].qty).into_pyarray(py))?;
    open.set_item("stake", of(&|i| o[i].stake).into_pyarray(py))?;
    open.set_item("entry_fee", of(&|i| o[i].entry_fee).into_pyarray(py))?;
    open.set_item("stop_pct", of(&|i| o[i].stop_pct).into_pyarray(py))?;
    open.set_item("atr_at_entry", of(&|i| o[i].atr_at_entry).into_pyarray(py))?;
    open.set_item("stop_price", of(&|i| o[i].stop.level().0).into_pyarray(py))?;
    open.set_item("highest", of(&|i| o[i].stop.highest).into_pyarray(py))?;
    open.set_item("trail_active", PyList::new(py, o.iter().map(|x| x.stop.trail_active))?)?;
    out.set_item("open_positions", open)?;

    let counts = PyList::empty(py);
    for c in &r.counts {
        let d = PyDict::new(py);
        d.set_item("opens", c.opens)?;
        for (k, reason) in SkipReason::ALL.iter().enumerate() {
            d.set_item(format!("skip_{}", reason.as_str()), c.skips[k])?;
        }
        counts.append(d)?;
    }
    out.set_item("counts", counts)?;
    out.set_item("equity_time", r.equity_time.clone().into_pyarray(py))?;
    let curves = PyList::empty(py);
    for e in &r.equity {
        curves.append(e.clone().into_pyarray(py))?;
    }
    out.set_item("equity", curves)?;
    out.set_item("exit_reasons", ExitReason::ALL.map(|r| r.as_str()).to_vec())?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(replay, m)?)
}
