//! [`atr_many`]: many series of equal length at once, row by row on the batch kernel.

use std::mem::MaybeUninit;

use std::sync::atomic::{AtomicUsize, Ordering};

use super::batch::{run, streams, Kernel};
use super::helper::for_each_task;
use super::{check_period, first_error};
use crate::error::EngineError;

/// From this many bars on, the rows are shared with the helper thread (when its core is free):
/// below, waking it costs more than it saves.
const PARALLEL_MIN_BARS: usize = 1 << 16;

/// About how many bars one task of the shared rows holds: small enough that the caller, which
/// waits for the task the helper is in, never waits long; large enough that claiming a task
/// costs nothing next to it.
const TASK_BARS: usize = 1 << 13;

/// ATR over many series of equal length stored row-major (`rows` series of `cols` bars each).
/// Errors name the row and the index inside it.
pub fn atr_many(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    rows: usize,
    cols: usize,
    period: usize,
) -> Result<Vec<f64>, EngineError> {
    check_period(period)?;
    let total = rows.checked_mul(cols).ok_or_else(|| EngineError::InvalidParam {
        name: "rows",
        reason: format!("{rows} rows of {cols} bars overflow"),
    })?;
    for (field, a) in [("high", high), ("low", low), ("close", close)] {
        if a.len() != total {
            return Err(EngineError::LengthMismatch { expected: total, field, got: a.len() });
        }
    }
    let mut out = Vec::with_capacity(total);
    let spare = &mut out.spare_capacity_mut()[..total];
    let bad = many_rows(high, low, close, cols, period, spare);
    if let Some(r) = bad {
        let s = r * cols..(r + 1) * cols;
        first_error(&high[s.clone()], &low[s.clone()], &close[s]).map_err(|e| row_error(e, r))?;
    }
    // SAFETY: `many_rows` runs `run` over every row, which stores into every element of the row.
    unsafe { out.set_len(total) };
    Ok(out)
}

/// Runs every row of a row-major block (`cols` bars a row) into `out`; the first row whose bars
/// fail the checks, if any; large blocks are shared with the helper thread. A row is written with streaming stores when [`super::atr`] would
/// write it so on its own (the stores move the kernel's block boundaries, so this keeps every
/// row bit for bit what `atr` returns for it).
fn many_rows(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    cols: usize,
    period: usize,
    out: &mut [MaybeUninit<f64>],
) -> Option<usize> {
    if cols == 0 {
        return None;
    }
    let rows = close.len() / cols;
    let kernel = Kernel::best();
    let stream = streams(cols);
    // Rows `first..first + o.len() / cols` into `o`; the first bad one, if any.
    let rows_into = |first: usize, o: &mut [MaybeUninit<f64>]| -> Option<usize> {
        let mut bad = None;
        for (k, o) in o.chunks_exact_mut(cols).enumerate() {
            let s = (first + k) * cols..(first + k + 1) * cols;
            let ok = run(&high[s.clone()], &low[s.clone()], &close[s], period, o, kernel, stream);
            if !ok && bad.is_none() {
                bad = Some(first + k);
            }
        }
        bad
    };
    if close.len() < PARALLEL_MIN_BARS {
        return rows_into(0, out);
    }
    let per_task = (TASK_BARS / cols).max(1);
    let tasks = rows.div_ceil(per_task);
    let first_bad = AtomicUsize::new(usize::MAX);
    let shared = SharedOut(out.as_mut_ptr());
    for_each_task(tasks, &|t| {
        let first = t * per_task;
        let count = per_task.min(rows - first);
        // SAFETY: task `t` alone writes rows first..first + count, inside `out`, which outlives
        // `for_each_task`.
        let o = unsafe { shared.rows(first * cols, count * cols) };
        if let Some(r) = rows_into(first, o) {
            first_bad.fetch_min(r, Ordering::Relaxed);
        }
    });
    Some(first_bad.into_inner()).filter(|&r| r != usize::MAX)
}

/// The output of [`many_rows`], written by several tasks at disjoint rows.
struct SharedOut(*mut MaybeUninit<f64>);

// SAFETY: tasks write disjoint ranges only (see `SharedOut::rows`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// In bounds of the output, and no other live reference to any of them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, start: usize, len: usize) -> &mut [MaybeUninit<f64>] {
        // SAFETY: the caller's guarantees.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

fn row_error(e: EngineError, row: usize) -> EngineError {
    match e {
        EngineError::NonFinite { field, index } => {
            EngineError::InvalidParam { name: field, reason: format!("row {row}, index {index}: not finite") }
        }
        EngineError::NonPositive { field, index } => EngineError::InvalidParam {
            name: field,
            reason: format!("row {row}, index {index}: not positive"),
        },
        EngineError::OutOfRange { what, index } => {
            EngineError::InvalidParam { name: "high", reason: format!("row {row}, index {index}: {what}") }
        }
        other => other,
    }
}
