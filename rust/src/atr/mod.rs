//! Wilder's Average True Range, TA-Lib compatible (see `docs/HLD.md`).
//!
//! Three forms: the streaming [`Atr`] (O(1) update, no allocation), [`atr`] over one series and
//! [`atr_many`] over many series at once (rows = symbols). Outputs before index `period` are NaN.
//!
//! # Arithmetic
//!
//! The streaming form is the reference arithmetic: one `a·k1 + tr·k2` per candle (two roundings,
//! no fused multiply-add), which replay and the pure-Python oracle reproduce bit for bit.
//! [`atr_into_plain`] is the same arithmetic over a whole series.
//!
//! The batch forms ([`atr_into`], [`atr`], [`atr_many`]) compute the same recurrence faster and
//! agree with it to a few ulps (≈ 1e-15 relative), not bit for bit. A one-multiply-add-per-bar
//! loop is bound by the latency of that multiply-add, so they break the dependency chain: with
//! `b_i = k2·TR_i` the recurrence is `a_i = k1·a_{i-1} + b_i`, and over a block of `w` bars
//! (four or eight) after `a_t`
//!
//! ```text
//! a_{t+j} = k1^j·a_t + p_j,    p_j = Σ_{m=1..j} k1^(j-m)·b_{t+m}    (j = 1..w)
//! ```
//!
//! The partial sums `p` do not depend on `a_t`, so they are computed side by side (log2 w
//! shift-and-multiply-add steps over a vector of `w` bars); only `a_{t+w} = k1^w·a_t + p_w`
//! stays on the loop-carried chain, one multiply-add per block instead of one per bar.
//! The true range, the validity checks and the scan are one pass over the input, so each bar is
//! read once and written once whatever the series length; a series too long for the caches is
//! written with streaming (non-temporal) stores, which skip reading the output's lines into the
//! cache before overwriting them and leave the cache to the input (see [`batch`]).
//!
//! On x86-64 the vector kernel (AVX-512 in blocks of eight bars, else AVX2 + FMA in blocks of
//! four) is chosen at run time, since the wheel is built for generic x86-64; on other CPUs a
//! portable kernel runs four-bar blocks with plain multiplies and adds (fused when the target has
//! FMA at compile time).
//!
//! The batch forms may use a second core, never depend on it: a long series is scanned in two
//! halves (the second from an ATR of 0, then the first half's last value carried into it), and
//! [`atr_many`]'s rows in small tasks; the calling thread and a long-lived helper thread claim
//! them from one counter, so a busy other core only means the caller does all of them (see
//! `helper`). How the work is cut depends on the input alone, so the result is the same bit for
//! bit whichever thread ran what. [`atr_many`] runs the kernel row by row: each row's chain is
//! already broken inside the row, so symbols need no SIMD lanes of their own, and each row is
//! bit for bit what [`atr`] returns for it.
//!

mod batch;
mod helper;
mod many;
mod stream;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

use std::mem::MaybeUninit;

use crate::candle::check_price;
use crate::error::EngineError;

use batch::{run, Kernel};
pub use many::atr_many;
pub use stream::Atr;

/// The ATR period Sigil uses unless configured otherwise.
pub const DEFAULT_PERIOD: usize = 14;

/// Wilder's smoothing constants `(k1, k2) = ((n-1)/n, 1/n)`, one division each.
#[inline]
pub fn smoothing(period: usize) -> (f64, f64) {
    let n = period as f64;
    ((n - 1.0) / n, 1.0 / n)
}

fn check_period(period: usize) -> Result<(), EngineError> {
    if period == 0 {
        return Err(EngineError::InvalidParam { name: "period", reason: "must be at least 1".into() });
    }
    Ok(())
}

/// `max(high, prev_close) - min(low, prev_close)`.
#[inline(always)]
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let hi = if high > prev_close { high } else { prev_close };
    let lo = if low < prev_close { low } else { prev_close };
    hi - lo
}

/// One bar passes: finite positive prices and `high >= low` (NaN fails every comparison).
#[inline(always)]
fn bar_ok(high: f64, low: f64, close: f64) -> bool {
    (high.is_finite() & low.is_finite() & close.is_finite()) & (low > 0.0) & (close > 0.0) & (high >= low)
}

/// The true range of a bar together with the validity of `high`, `low` and `prev_close`, read off
/// the same max and min: with `hi = max(high, prev_close)` and `lo = min(low, prev_close)`,
/// `high >= low && lo > 0 && hi < inf` holds exactly when all three prices are finite and
/// positive and `high >= low`. (`high >= low` rules out a NaN high or low; a NaN `prev_close`
/// makes `hi` NaN; then `hi < inf` bounds high and prev_close, `lo > 0` bounds low and
/// prev_close, and `low <= high` makes low finite.) The vector kernels use the same comparisons.
#[inline(always)]
fn true_range_checked(high: f64, low: f64, prev_close: f64) -> (f64, bool) {
    let hi = if high > prev_close { high } else { prev_close };
    let lo = if low < prev_close { low } else { prev_close };
    (hi - lo, (high >= low) & (lo > 0.0) & (hi < f64::INFINITY))
}

/// Validates one series for ATR: equal lengths, finite positive prices, `high >= low`.
pub fn validate_hlc(high: &[f64], low: &[f64], close: &[f64]) -> Result<(), EngineError> {
    let n = high.len();
    if low.len() != n {
        return Err(EngineError::LengthMismatch { expected: n, field: "low", got: low.len() });
    }
    if close.len() != n {
        return Err(EngineError::LengthMismatch { expected: n, field: "close", got: close.len() });
    }
    // One cheap branch-free pass decides; only a bad series pays for finding the index.
    let mut ok = true;
    for i in 0..n {
        ok &= bar_ok(high[i], low[i], close[i]);
    }
    if ok {
        return Ok(());
    }
    first_error(high, low, close)
}

/// The error for the first bad bar of equal-length columns, in the order index, then high, low,
/// close, then `high < low`.
fn first_error(high: &[f64], low: &[f64], close: &[f64]) -> Result<(), EngineError> {
    for i in 0..close.len() {
        check_price("high", high[i], i)?;
        check_price("low", low[i], i)?;
        check_price("close", close[i], i)?;
        if high[i] < low[i] {
            return Err(EngineError::OutOfRange { what: "high < low", index: i });
        }
    }
    Ok(())
}

/// ATR over one series into `out` with the streaming arithmetic: bit for bit what [`Atr`] returns
/// candle by candle. Expects a validated series (see [`validate_hlc`]).
///
/// # Panics
/// When `low`, `close` or `out` is not as long as `high`.
pub fn atr_into_plain(high: &[f64], low: &[f64], close: &[f64], period: usize, out: &mut [f64]) {
    check_lengths(high, low, close, out.len());
    let n = close.len();
    let warm = period.min(n);
    out[..warm].fill(f64::NAN);
    if n <= period {
        return;
    }
    let mut sum = 0.0;
    for i in 1..=period {
        sum += true_range(high[i], low[i], close[i - 1]);
    }
    let (k1, k2) = smoothing(period);
    let mut a = sum / period as f64;
    out[period] = a;
    for i in period + 1..n {
        a = a * k1 + true_range(high[i], low[i], close[i - 1]) * k2;
        out[i] = a;
    }
}

/// ATR over one validated series into `out` (same length), on the fastest kernel this machine
/// runs. Agrees with [`atr_into_plain`] to a few ulps.
///
/// # Panics
/// When `low`, `close` or `out` is not as long as `high`.
pub fn atr_into(high: &[f64], low: &[f64], close: &[f64], period: usize, out: &mut [f64]) {
    check_lengths(high, low, close, out.len());
    if period == 0 {
        // No ATR has period 0 (`atr` refuses it); unchecked callers get NaN, never a panic.
        out.fill(f64::NAN);
        return;
    }
    // SAFETY: `MaybeUninit<f64>` has the layout of `f64`, and the kernels only ever store
    // initialised `f64` values, so `out` stays fully initialised.
    let out = unsafe { &mut *(out as *mut [f64] as *mut [MaybeUninit<f64>]) };
    // A validated series passes; the flag only matters to the checking callers.
    let _valid = run(high, low, close, period, out, Kernel::best(), batch::streams(close.len()));
}

/// ATR over one series; validates first.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>, EngineError> {
    check_period(period)?;
    let n = high.len();
    for (field, a) in [("low", low), ("close", close)] {
        if a.len() != n {
            return Err(EngineError::LengthMismatch { expected: n, field, got: a.len() });
        }
    }
    let mut out = Vec::with_capacity(n);
    // The checks run inside the kernel's single pass; a series that fails them is then scanned
    // again for its first bad index, and its output dropped.
    let spare = &mut out.spare_capacity_mut()[..n];
    if !run(high, low, close, period, spare, Kernel::best(), batch::streams(n)) {
        first_error(high, low, close)?;
    }
    // SAFETY: `run` stores a value into every element of `out[..n]` (NaN warm-up, seed, scan).
    unsafe { out.set_len(n) };
    Ok(out)
}

fn check_lengths(high: &[f64], low: &[f64], close: &[f64], out: usize) {
    let n = high.len();
    assert!(
        low.len() == n && close.len() == n && out == n,
        "ATR columns differ in length: high {n}, low {}, close {}, out {out}",
        low.len(),
        close.len()
    );
}
