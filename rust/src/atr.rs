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
//! `b_i = k2·TR_i` the recurrence is `a_i = k1·a_{i-1} + b_i`, and over a block of four bars
//! after `a_t`
//!
//! ```text
//! a_{t+j} = k1^j·a_t + p_j,    p_j = Σ_{m=1..j} k1^(j-m)·b_{t+m}    (j = 1..4)
//! ```
//!
//! The partial sums `p` do not depend on `a_t`, so they are computed side by side (two
//! shift-and-multiply-add steps over a vector of four bars); only `a_{t+4} = k1^4·a_t + p_4`
//! stays on the loop-carried chain, one multiply-add per four bars instead of one per bar.
//! The true range, the validity checks and the scan are one pass over the input, so each bar is
//! read once and written once whatever the series length.
//!
//! On x86-64 the vector kernel (AVX2 + FMA) is chosen at run time, since the wheel is built for
//! generic x86-64; on other CPUs a portable kernel runs the same blocks with plain multiplies and
//! adds (fused when the target has FMA at compile time).
//!
//! [`atr_many`] runs the same kernel row by row: each row's chain is already broken inside the row,
//! so symbols need no SIMD lanes of their own. Large inputs are split by rows across cores.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use crate::candle::check_price;
use crate::error::EngineError;

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

/// Streaming ATR: feed candles one at a time.
#[derive(Debug, Clone)]
pub struct Atr {
    period: usize,
    k1: f64,
    k2: f64,
    prev_close: f64,
    seen: usize,
    sum: f64,
    value: f64,
}

impl Atr {
    /// A new, empty ATR of `period` (>= 1).
    pub fn new(period: usize) -> Result<Self, EngineError> {
        check_period(period)?;
        let (k1, k2) = smoothing(period);
        Ok(Self { period, k1, k2, prev_close: f64::NAN, seen: 0, sum: 0.0, value: f64::NAN })
    }

    /// The period this ATR was built with.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Current value (NaN until `ready`).
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// True once `period + 1` candles have been seen.
    #[inline]
    pub fn ready(&self) -> bool {
        self.seen > self.period
    }

    /// Feeds one candle after validating it; returns the new value (NaN until ready).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Result<f64, EngineError> {
        let index = self.seen;
        check_price("high", high, index)?;
        check_price("low", low, index)?;
        check_price("close", close, index)?;
        if high < low {
            return Err(EngineError::OutOfRange { what: "high < low", index });
        }
        Ok(self.update_unchecked(high, low, close))
    }

    /// Feeds one already-validated candle.
    #[inline]
    pub fn update_unchecked(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let seen = self.seen;
        self.seen = seen + 1;
        if seen == 0 {
            self.prev_close = close;
            return f64::NAN;
        }
        let tr = true_range(high, low, self.prev_close);
        self.prev_close = close;
        if seen < self.period {
            self.sum += tr;
        } else if seen == self.period {
            self.sum += tr;
            self.value = self.sum / self.period as f64;
        } else {
            self.value = self.value * self.k1 + tr * self.k2;
        }
        self.value
    }
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
/// prev_close, and `low <= high` makes low finite.) The vector kernel uses the same comparisons.
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
    let _valid = run(high, low, close, period, out, Kernel::best(), true);
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
    if !run(high, low, close, period, spare, Kernel::best(), true) {
        first_error(high, low, close)?;
    }
    // SAFETY: `run` stores a value into every element of `out[..n]` (NaN warm-up, seed, scan).
    unsafe { out.set_len(n) };
    Ok(out)
}

/// ATR over many series of equal length stored row-major (`rows` series of `cols` bars each).
/// Errors name the row and the index inside it. Large inputs are split by rows across cores.
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

/// Below this many bars a second thread costs more than it saves.
const PARALLEL_MIN_BARS: usize = 1 << 16;

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs every row of a row-major block (`cols` bars a row) into `out`; the first row whose bars
/// fail the checks, if any.
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
    let threads = cores().min(rows).min(close.len() / PARALLEL_MIN_BARS).max(1);
    let serial = |first: usize, out: &mut [MaybeUninit<f64>]| -> Option<usize> {
        let mut bad = None;
        for (k, o) in out.chunks_exact_mut(cols).enumerate() {
            let s = (first + k) * cols..(first + k + 1) * cols;
            // Rows are already spread over the cores: no second level of threads.
            let ok = run(&high[s.clone()], &low[s.clone()], &close[s], period, o, kernel, false);
            if !ok && bad.is_none() {
                bad = Some(first + k);
            }
        }
        bad
    };
    let serial = &serial;
    if threads == 1 {
        return serial(0, out);
    }
    // Contiguous row ranges, one a thread; the first bad row is the first one found in order.
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = out.chunks_mut(per * cols).enumerate();
        let (_, mine) = parts.next().expect("rows >= threads >= 2");
        let others: Vec<_> = parts.map(|(t, o)| scope.spawn(move || serial(t * per, o))).collect();
        let first = serial(0, mine);
        let rest = others.into_iter().map(|h| h.join().expect("ATR worker panicked"));
        first.into_iter().chain(rest.flatten()).min()
    })
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

fn check_lengths(high: &[f64], low: &[f64], close: &[f64], out: usize) {
    let n = high.len();
    assert!(
        low.len() == n && close.len() == n && out == n,
        "ATR columns differ in length: high {n}, low {}, close {}, out {out}",
        low.len(),
        close.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Batch kernels
// ---------------------------------------------------------------------------------------------

/// A batch kernel: how the scan after the seed is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Four-bar blocks in portable Rust, multiply then add (two roundings).
    Portable,
    /// Four-bar blocks in portable Rust with fused multiply-adds (targets with FMA built in).
    PortableFused,
    /// Four-bar blocks in AVX2 vectors with FMA; only when the CPU has both.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    /// Scans bars `start..` (`start >= 1`) of the columns from `a`, the ATR at bar `start - 1`,
    /// into `out` (bar `start + j` at `out[j]`). Returns the ATR at the last bar and whether bars
    /// `start..` passed the checks of [`true_range_checked`].
    #[inline]
    fn scan(
        self,
        cols: Columns<'_>,
        start: usize,
        a: f64,
        k: &Block,
        out: &mut [MaybeUninit<f64>],
    ) -> (f64, bool) {
        match self {
            Kernel::Portable => scan::<Separate>(cols, start, a, k, out),
            Kernel::PortableFused => scan::<Fused>(cols, start, a, k, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2Fma` is only chosen (by `best`, or by tests that check first)
            // when the CPU has AVX2 and FMA, which `x86::scan` is compiled for.
            Kernel::Avx2Fma => unsafe { x86::scan(cols, start, a, k, out) },
        }
    }

    /// The fastest kernel this CPU runs (the feature test is cached by `std`).
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Kernel::Avx2Fma;
            }
        }
        if cfg!(target_feature = "fma") {
            Kernel::PortableFused
        } else {
            Kernel::Portable
        }
    }
}

/// The price columns of one series, of equal length.
#[derive(Debug, Clone, Copy)]
struct Columns<'a> {
    high: &'a [f64],
    low: &'a [f64],
    close: &'a [f64],
}

/// Constants of the four-bar block scan.
#[derive(Debug, Clone, Copy)]
struct Block {
    k1: f64,
    k2: f64,
    /// `k1²`, the factor of the second shift step.
    k1_2: f64,
    /// `k1, k1², k1³, k1⁴`: how much of `a_t` reaches each bar of the block.
    pow: [f64; 4],
}

impl Block {
    fn new(period: usize) -> Self {
        let (k1, k2) = smoothing(period);
        let k1_2 = k1 * k1;
        Self { k1, k2, k1_2, pow: [k1, k1_2, k1_2 * k1, k1_2 * k1_2] }
    }
}

/// The whole batch computation into `out` (every element is written): the NaN warm-up, the seed
/// (the mean of the first `period` true ranges, summed left to right, exactly as [`Atr`] does),
/// then the scan on `kernel`, in two halves on two threads for a long series when `parallel`.
/// Returns whether every bar passed the checks of [`validate_hlc`]. `period` must be at least 1
/// and the columns of equal length.
fn run(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    period: usize,
    out: &mut [MaybeUninit<f64>],
    kernel: Kernel,
    parallel: bool,
) -> bool {
    let n = close.len();
    debug_assert!(period >= 1 && high.len() == n && low.len() == n && out.len() == n);
    let warm = period.min(n);
    for o in &mut out[..warm] {
        o.write(f64::NAN);
    }
    // Bars 0..=period are checked here; the kernels check high, low and the previous close of
    // every later bar, which leaves the last close.
    let head = n.min(period + 1);
    let mut ok = true;
    for i in 0..head {
        ok &= bar_ok(high[i], low[i], close[i]);
    }
    if n <= period {
        return ok;
    }
    ok &= close[n - 1].is_finite() & (close[n - 1] > 0.0);
    let mut sum = 0.0;
    for i in 1..=period {
        sum += true_range(high[i], low[i], close[i - 1]);
    }
    let seed = sum / period as f64;
    out[period].write(seed);
    let block = Block::new(period);
    let start = period + 1;
    if !(parallel && n - start >= PARALLEL_MIN_SERIES && cores() >= 2) {
        let (_, scan_ok) = kernel.scan(Columns { high, low, close }, start, seed, &block, &mut out[start..]);
        return ok & scan_ok;
    }
    // The second half is scanned as if the ATR before it were 0, at the same time as the first;
    // then the first half's last value is carried into it (see `carry_into`).
    let split = start + (n - start) / 2;
    let (first, second) = out.split_at_mut(split);
    let all = Columns { high, low, close };
    let (last, ok_first, ok_second) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| kernel.scan(all, split, 0.0, &block, second));
        let head = Columns { high: &high[..split], low: &low[..split], close: &close[..split] };
        let (last, ok_first) = kernel.scan(head, start, seed, &block, &mut first[start..]);
        let (_, ok_second) = worker.join().expect("ATR worker panicked");
        (last, ok_first, ok_second)
    });
    carry_into(second, last, block.k1);
    ok & ok_first & ok_second
}

/// A single series at least this long (after the warm-up) is scanned in two halves on two
/// threads. Shorter ones stay in cache, where one core keeps up; from here on the scan waits on
/// memory, and a second core brings its own share of bandwidth.
const PARALLEL_MIN_SERIES: usize = 1 << 19;

/// A segment scanned from an ATR of 0 gets the part of the real ATR `a` before it: `k1^(j+1)·a`
/// at its bar `j`. That term shrinks by `k1` a bar while the segment's own sum shrinks at most as
/// fast, so once the term is too small to change the sum it stays so: the loop stops there,
/// usually a few hundred bars in (later only for long stretches of zero true range).
fn carry_into(segment: &mut [MaybeUninit<f64>], a: f64, k1: f64) {
    // Below half an ulp of the sum with a wide margin.
    const NEGLIGIBLE: f64 = 1.0 / (1u64 << 60) as f64;
    let mut term = a * k1;
    for o in segment {
        // SAFETY: the kernel stored every element of the segment before this runs.
        let v = unsafe { o.assume_init_read() };
        if term <= v * NEGLIGIBLE {
            break;
        }
        o.write(v + term);
        term *= k1;
    }
}

/// `a·b + c`, fused or not.
trait MulAdd {
    fn mul_add(a: f64, b: f64, c: f64) -> f64;
}

/// Multiply, round, add, round: the generic x86-64 baseline, where `f64::mul_add` would be a
/// library call.
struct Separate;

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

/// One rounding: a single instruction on targets with FMA.
struct Fused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// The four-bar block scan in portable Rust; the contract of [`Kernel::scan`].
#[inline(always)]
fn scan<M: MulAdd>(
    cols: Columns<'_>,
    start: usize,
    mut a: f64,
    k: &Block,
    out: &mut [MaybeUninit<f64>],
) -> (f64, bool) {
    let Columns { high, low, close } = cols;
    let n = close.len();
    assert!(start >= 1 && high.len() == n && low.len() == n && out.len() == n - start.min(n));
    let mut ok = true;
    let mut i = start;
    while i + 4 <= n {
        let h: &[f64; 4] = high[i..i + 4].try_into().expect("4 bars");
        let l: &[f64; 4] = low[i..i + 4].try_into().expect("4 bars");
        let pc: &[f64; 4] = close[i - 1..i + 3].try_into().expect("4 bars");
        let mut b = [0.0; 4];
        for j in 0..4 {
            let (tr, valid) = true_range_checked(h[j], l[j], pc[j]);
            ok &= valid;
            b[j] = tr * k.k2;
        }
        // Shift by one bar, then by two: p_j = Σ_{m<=j} k1^(j-m)·b_m inside the block.
        let q =
            [b[0], M::mul_add(k.k1, b[0], b[1]), M::mul_add(k.k1, b[1], b[2]), M::mul_add(k.k1, b[2], b[3])];
        let p = [q[0], q[1], M::mul_add(k.k1_2, q[0], q[2]), M::mul_add(k.k1_2, q[1], q[3])];
        let o: &mut [MaybeUninit<f64>; 4] = (&mut out[i - start..i - start + 4]).try_into().expect("4 bars");
        for j in 0..4 {
            o[j].write(M::mul_add(k.pow[j], a, p[j]));
        }
        // The only loop-carried step: a_{t+4} = k1⁴·a_t + p_4.
        a = M::mul_add(k.pow[3], a, p[3]);
        i += 4;
    }
    while i < n {
        let (tr, valid) = true_range_checked(high[i], low[i], close[i - 1]);
        ok &= valid;
        a = M::mul_add(k.k1, a, tr * k.k2);
        out[i - start].write(a);
        i += 1;
    }
    (a, ok)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The four-bar block scan in AVX2 vectors with FMA.

    use super::{true_range_checked, Block, Columns};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// The contract of [`super::Kernel::scan`]; callers make sure the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scan(
        cols: Columns<'_>,
        start: usize,
        mut a: f64,
        k: &Block,
        out: &mut [MaybeUninit<f64>],
    ) -> (f64, bool) {
        let Columns { high, low, close } = cols;
        let n = close.len();
        // The raw loads and stores below rely on these.
        assert!(start >= 1 && high.len() == n && low.len() == n && out.len() == n - start.min(n));
        let k2 = _mm256_set1_pd(k.k2);
        // Lane 0 of each shift gets a zero factor, so the shifted-in value drops out.
        let m1 = _mm256_setr_pd(0.0, k.k1, k.k1, k.k1);
        let m2 = _mm256_setr_pd(0.0, 0.0, k.k1_2, k.k1_2);
        let pow = _mm256_setr_pd(k.pow[0], k.pow[1], k.pow[2], k.pow[3]);
        let zero = _mm256_setzero_pd();
        let inf = _mm256_set1_pd(f64::INFINITY);
        let mut valid = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
        let (hp, lp, cp) = (high.as_ptr(), low.as_ptr(), close.as_ptr());
        let op = out.as_mut_ptr().cast::<f64>();
        let mut i = start;
        while i + 4 <= n {
            // SAFETY: 1 <= start <= i and i + 4 <= n, so bars i..i+4 of high and low, bars
            // i-1..i+3 of close and elements i-start..i-start+4 of out (length n - start) are
            // in bounds.
            let (h, l, pc) = unsafe {
                (_mm256_loadu_pd(hp.add(i)), _mm256_loadu_pd(lp.add(i)), _mm256_loadu_pd(cp.add(i - 1)))
            };
            // maxpd/minpd return the second operand unless the first compares greater/less:
            // the same selects as `true_range_checked`, NaN included.
            let hi = _mm256_max_pd(h, pc);
            let lo = _mm256_min_pd(l, pc);
            let ok = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GE_OQ>(h, l),
                _mm256_and_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(lo, zero), _mm256_cmp_pd::<_CMP_LT_OQ>(hi, inf)),
            );
            valid = _mm256_and_pd(valid, ok);
            let b = _mm256_mul_pd(_mm256_sub_pd(hi, lo), k2);
            // [_, b0, b1, b2]·k1 + b, then [_, _, q0, q1]·k1² + q.
            let q = _mm256_fmadd_pd(_mm256_permute4x64_pd::<0b10_01_00_00>(b), m1, b);
            let p = _mm256_fmadd_pd(_mm256_permute4x64_pd::<0b01_00_00_00>(q), m2, q);
            let o = _mm256_fmadd_pd(pow, _mm256_set1_pd(a), p);
            // SAFETY: as for the loads; `MaybeUninit<f64>` has the layout of `f64`.
            unsafe { _mm256_storeu_pd(op.add(i - start), o) };
            // The only loop-carried step, a_{t+4} = k1⁴·a_t + p_4: the same fused operation as
            // lane 3 of `o`, so the carried value is the stored one.
            let p4 = _mm256_cvtsd_f64(_mm256_permute4x64_pd::<0b11_11_11_11>(p));
            a = k.pow[3].mul_add(a, p4);
            i += 4;
        }
        let mut ok = _mm256_movemask_pd(valid) == 0b1111;
        while i < n {
            let (tr, v) = true_range_checked(high[i], low[i], close[i - 1]);
            ok &= v;
            a = k.k1.mul_add(a, tr * k.k2);
            out[i - start].write(a);
            i += 1;
        }
        (a, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut h = Vec::new();
        let mut l = Vec::new();
        let mut c = Vec::new();
        let mut p = 100.0f64;
        for i in 0..n {
            p *= 1.0 + 0.01 * ((i * 7919 % 13) as f64 - 6.0) / 6.0;
            h.push(p * 1.012);
            l.push(p * 0.991);
            c.push(p);
        }
        (h, l, c)
    }

    /// The textbook definition, computed the slow way.
    fn reference(h: &[f64], l: &[f64], c: &[f64], n: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; c.len()];
        if c.len() <= n {
            return out;
        }
        let tr: Vec<f64> = (1..c.len()).map(|i| h[i].max(c[i - 1]) - l[i].min(c[i - 1])).collect();
        let mut a = tr[..n].iter().sum::<f64>() / n as f64;
        out[n] = a;
        for i in n + 1..c.len() {
            a = (a * (n as f64 - 1.0) + tr[i - 1]) / n as f64;
            out[i] = a;
        }
        out
    }

    /// Every kernel this machine can run.
    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable, Kernel::PortableFused];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            k.push(Kernel::Avx2Fma);
        }
        k
    }

    fn run_vec(h: &[f64], l: &[f64], c: &[f64], period: usize, k: Kernel) -> (Vec<f64>, bool) {
        let mut out = vec![MaybeUninit::uninit(); c.len()];
        let ok = run(h, l, c, period, &mut out, k, false);
        // SAFETY: `run` stores into every element.
        (out.into_iter().map(|v| unsafe { v.assume_init() }).collect(), ok)
    }

    fn plain(h: &[f64], l: &[f64], c: &[f64], period: usize) -> Vec<f64> {
        let mut out = vec![0.0; c.len()];
        atr_into_plain(h, l, c, period, &mut out);
        out
    }

    /// NaN where `want` is NaN, else within `tol` relative.
    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if w.is_nan() {
                assert!(g.is_nan(), "{what}: index {i}: {g} where NaN expected");
            } else {
                assert!((g - w).abs() <= tol * w.abs(), "{what}: index {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn batch_matches_textbook_and_streaming() {
        let (h, l, c) = series(500);
        for period in [1, 2, 14, 50] {
            let b = atr(&h, &l, &c, period).unwrap();
            let p = plain(&h, &l, &c, period);
            let r = reference(&h, &l, &c, period);
            let mut s = Atr::new(period).unwrap();
            for i in 0..c.len() {
                let v = s.update(h[i], l[i], c[i]).unwrap();
                if i < period {
                    assert!(b[i].is_nan() && v.is_nan() && r[i].is_nan() && p[i].is_nan());
                    assert!(!s.ready());
                } else {
                    assert!(((b[i] - r[i]) / r[i]).abs() < 1e-12, "period {period} i {i}");
                    assert!(((b[i] - v) / v).abs() < 1e-13, "period {period} i {i}");
                    // The plain batch path is the streaming arithmetic exactly.
                    assert_eq!(v.to_bits(), p[i].to_bits(), "period {period} i {i}");
                    assert!(s.ready());
                }
            }
        }
    }

    #[test]
    fn every_kernel_matches_plain_around_block_boundaries() {
        let (h, l, c) = series(300);
        for period in [1, 2, 3, 4, 5, 14, 30] {
            // 0..=period+2 bars, then lengths around the four-bar blocks and beyond.
            let lengths = (0..=period + 2).chain((period + 3..period + 40).chain([299, 300]));
            for n in lengths {
                let (h, l, c) = (&h[..n], &l[..n], &c[..n]);
                let want = plain(h, l, c, period);
                for k in kernels() {
                    let (got, ok) = run_vec(h, l, c, period, k);
                    assert!(ok, "{k:?} n {n} period {period}");
                    assert_close(&got, &want, 1e-13, &format!("{k:?} n {n} period {period}"));
                }
                let mut out = vec![-1.0; n];
                atr_into(h, l, c, period, &mut out);
                assert_close(&out, &want, 1e-13, &format!("atr_into n {n} period {period}"));
            }
        }
    }

    #[test]
    fn kernels_stay_close_over_long_series_and_long_periods() {
        let (h, l, c) = series(20_000);
        for period in [14, 200, 1000] {
            let want = plain(&h, &l, &c, period);
            for k in kernels() {
                let (got, ok) = run_vec(&h, &l, &c, period, k);
                assert!(ok);
                assert_close(&got, &want, 1e-12, &format!("{k:?} period {period}"));
            }
        }
    }

    /// Length of a series whose scan is split across two threads (with `extra` bars more).
    fn split_len(period: usize, extra: usize) -> usize {
        period + 1 + PARALLEL_MIN_SERIES + extra
    }

    #[test]
    fn two_thread_scan_matches_plain() {
        if cores() < 2 {
            return;
        }
        let (h, l, c) = series(split_len(1000, 3));
        for period in [1, 14, 1000] {
            for extra in [0, 3] {
                let n = split_len(period, extra);
                let (h, l, c) = (&h[..n], &l[..n], &c[..n]);
                let want = plain(h, l, c, period);
                // The kernels themselves are compared bar by bar elsewhere; here, the split.
                for k in [Kernel::Portable, Kernel::best()] {
                    let mut out = vec![MaybeUninit::uninit(); n];
                    assert!(run(h, l, c, period, &mut out, k, true));
                    // SAFETY: `run` stores into every element.
                    let got: Vec<f64> = out.into_iter().map(|v| unsafe { v.assume_init() }).collect();
                    assert_close(&got, &want, 1e-13, &format!("{k:?} n {n} period {period}"));
                }
                assert_close(&atr(h, l, c, period).unwrap(), &want, 1e-13, "atr");
            }
        }
    }

    #[test]
    fn two_thread_scan_carries_through_zero_true_ranges() {
        // Flat prices from before the split point to well after it: the second half starts
        // with thousands of zero true ranges, where the whole value is the carried-in part.
        let period = 14;
        let n = split_len(period, 0);
        let (mut h, mut l, mut c) = series(n);
        let split = period + 1 + (n - period - 1) / 2;
        let flat = c[split - 50];
        for i in split - 50..split + 3000 {
            (h[i], l[i], c[i]) = (flat, flat, flat);
        }
        let want = plain(&h, &l, &c, period);
        assert!(want[split + 2000] > 0.0 && want[split + 2000] < 1e-50);
        assert_close(&atr(&h, &l, &c, period).unwrap(), &want, 1e-13, "flat across the split");
    }

    #[test]
    fn two_thread_scan_checks_both_halves() {
        let period = 14;
        let n = split_len(period, 5);
        let (h0, l0, c0) = series(n);
        let split = period + 1 + (n - period - 1) / 2;
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        // One broken rule per case: high, low, close, high < low.
        let bad = [(nan, 1.0, 1.0), (2.0, inf, 1.0), (2.0, 1.0, -1.0), (1.0, 2.0, 1.5)];
        for at in [3, split - 1, split, split + 1, n - 1] {
            for &(bh, bl, bc) in &bad {
                let (mut h, mut l, mut c) = (h0.clone(), l0.clone(), c0.clone());
                (h[at], l[at], c[at]) = (bh, bl, bc);
                assert_eq!(atr(&h, &l, &c, period).map(|_| ()), validate_hlc(&h, &l, &c), "at {at}");
                assert!(validate_hlc(&h, &l, &c).is_err());
            }
        }
    }

    #[test]
    fn flat_prices_give_exact_zeros() {
        // Zero true ranges (a stablecoin, a halted market): every kernel keeps exact zeros.
        let n = 100;
        let (h, l, c) = (vec![1.0; n], vec![1.0; n], vec![1.0; n]);
        for k in kernels() {
            let (got, ok) = run_vec(&h, &l, &c, 14, k);
            assert!(ok);
            assert!(got[14..].iter().all(|&v| v == 0.0), "{k:?}");
        }
    }

    /// Prices that break one rule each, as (high, low, close) for one bar.
    fn bad_bars() -> Vec<(f64, f64, f64)> {
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        let mut v = Vec::new();
        for bad in [nan, inf, -inf, 0.0, -0.0, -1.0] {
            v.push((bad, 1.0, 1.0));
            v.push((2.0, bad, 1.0));
            v.push((2.0, 1.0, bad));
        }
        v.push((1.0, 2.0, 1.5)); // high < low
        v.push((inf, inf, 1.0));
        v.push((2.0, 1.0, 3.0)); // close above high is not an ATR error
        v
    }

    #[test]
    fn fused_checks_agree_with_validate_hlc_at_every_position() {
        let (h0, l0, c0) = series(23);
        for period in [1, 3, 14] {
            for n in [1, 2, period + 1, period + 2, 17, 23] {
                for at in 0..n {
                    for &(bh, bl, bc) in &bad_bars() {
                        let (mut h, mut l, mut c) = (h0[..n].to_vec(), l0[..n].to_vec(), c0[..n].to_vec());
                        (h[at], l[at], c[at]) = (bh, bl, bc);
                        let want = validate_hlc(&h, &l, &c);
                        for k in kernels() {
                            let (_, ok) = run_vec(&h, &l, &c, period, k);
                            assert_eq!(ok, want.is_ok(), "{k:?} n {n} at {at} {bh} {bl} {bc}");
                        }
                        match atr(&h, &l, &c, period) {
                            Ok(_) => assert!(want.is_ok()),
                            Err(e) => assert_eq!(Err(e), want),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn checked_true_range_is_the_price_rules() {
        let vals = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            -1.0,
            f64::MIN_POSITIVE,
            0.5,
            1.0,
            2.0,
            f64::MAX,
        ];
        for &h in &vals {
            for &l in &vals {
                for &pc in &vals {
                    let (tr, ok) = true_range_checked(h, l, pc);
                    assert_eq!(ok, bar_ok(h, l, pc), "{h} {l} {pc}");
                    if ok {
                        assert_eq!(tr.to_bits(), true_range(h, l, pc).to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn short_series_is_all_nan() {
        let (h, l, c) = series(10);
        assert!(atr(&h, &l, &c, 14).unwrap().iter().all(|v| v.is_nan()));
        assert!(atr(&[], &[], &[], 14).unwrap().is_empty());
        assert!(atr_many(&[], &[], &[], 0, 5, 14).unwrap().is_empty());
        assert!(atr_many(&[], &[], &[], 7, 0, 14).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_index() {
        let (mut h, l, c) = series(30);
        h[17] = f64::NAN;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::NonFinite { field: "high", index: 17 }));
        h[17] = l[17] * 0.5;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::OutOfRange { what: "high < low", index: 17 }));
        let (h, l, mut c) = series(30);
        c[3] = 0.0;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::NonPositive { field: "close", index: 3 }));
        assert!(matches!(atr(&h, &l[..5], &c, 14), Err(EngineError::LengthMismatch { .. })));
        assert!(atr(&h, &l, &c, 0).is_err());
        let mut s = Atr::new(14).unwrap();
        assert!(s.update(1.0, 2.0, 1.5).is_err());
    }

    #[test]
    #[should_panic(expected = "differ in length")]
    fn atr_into_rejects_short_output() {
        let (h, l, c) = series(30);
        atr_into(&h, &l, &c, 14, &mut [0.0; 29]);
    }

    #[test]
    fn many_equals_rows() {
        let (h, l, c) = series(300);
        let rows = 3;
        let cols = 100;
        let m = atr_many(&h, &l, &c, rows, cols, 14).unwrap();
        for r in 0..rows {
            let s = r * cols..(r + 1) * cols;
            let one = atr(&h[s.clone()], &l[s.clone()], &c[s.clone()], 14).unwrap();
            for (a, b) in one.iter().zip(&m[s]) {
                assert!(a.to_bits() == b.to_bits());
            }
        }
    }

    #[test]
    fn many_splits_across_threads_like_one_thread() {
        // Enough bars for the threaded split, with a row count that does not divide evenly.
        let (rows, cols) = (37, PARALLEL_MIN_BARS / 16 + 3);
        let (h, l, c) = series(rows * cols);
        let m = atr_many(&h, &l, &c, rows, cols, 14).unwrap();
        for r in 0..rows {
            let s = r * cols..(r + 1) * cols;
            let want = plain(&h[s.clone()], &l[s.clone()], &c[s.clone()], 14);
            assert_close(&m[s], &want, 1e-13, &format!("row {r}"));
        }
    }

    #[test]
    fn many_names_the_first_bad_row_and_index() {
        // Enough bars for two threads of 20 rows each.
        let (rows, cols) = (40, PARALLEL_MIN_BARS / 16 + 3);
        let (h, l0, c) = series(rows * cols);
        let err = |bad: &[(usize, usize, f64)]| {
            let mut l = l0.clone();
            for &(r, i, v) in bad {
                l[r * cols + i] = v;
            }
            atr_many(&h, &l, &c, rows, cols, 14).unwrap_err().to_string()
        };
        let inf = f64::INFINITY;
        // A bad row in each thread's range; two in the second thread's range; the very last bar.
        assert_eq!(err(&[(33, 5, -1.0), (5, 1000, inf)]), "invalid low: row 5, index 1000: not finite");
        assert_eq!(err(&[(33, 5, -1.0), (21, 1000, inf)]), "invalid low: row 21, index 1000: not finite");
        assert_eq!(err(&[(39, 4098, 0.0)]), "invalid low: row 39, index 4098: not positive");
        let (h, l, c) = series(12);
        let mut h2 = h.clone();
        h2[7] = 0.5 * l[7];
        let e = atr_many(&h2, &l, &c, 3, 4, 2).unwrap_err();
        assert_eq!(e.to_string(), "invalid high: row 1, index 3: high < low");
        assert!(matches!(atr_many(&h, &l, &c, 3, 5, 2), Err(EngineError::LengthMismatch { .. })));
        assert!(atr_many(&h, &l, &c, usize::MAX, 2, 2).is_err());
        assert!(atr_many(&h, &l, &c, 3, 4, 0).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn bars() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<f64>)> {
            prop::collection::vec((1e-6f64..1e6, 0.0f64..0.2, 0.0f64..1.0), 0..120).prop_map(|v| {
                let mut out = (Vec::new(), Vec::new(), Vec::new());
                for (p, spread, pos) in v {
                    let (hi, lo) = (p * (1.0 + spread), p);
                    out.0.push(hi);
                    out.1.push(lo);
                    out.2.push(lo + pos * (hi - lo));
                }
                out
            })
        }

        proptest! {
            #[test]
            fn kernels_match_plain((h, l, c) in bars(), period in 1usize..40) {
                let want = plain(&h, &l, &c, period);
                for k in kernels() {
                    let (got, ok) = run_vec(&h, &l, &c, period, k);
                    prop_assert!(ok);
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!(
                            (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-13 * w.abs(),
                            "{:?}: {} vs {}", k, g, w
                        );
                    }
                }
            }
        }
    }
}
