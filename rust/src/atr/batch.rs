//! The batch kernels: the warm-up, the seed and the block scan over one series (the arithmetic
//! is described in the parent module), and the choice of kernel at run time.
//!
//! # Streaming stores
//!
//! A plain store to a line that is not in the cache first reads the line (to own it), so writing
//! the output of a long series costs a read and a write of it, and the output then evicts the
//! input from the last-level cache. From [`STREAM_MIN_BARS`] bars on, the vector kernels write
//! with non-temporal stores instead: the output goes to memory without being read, and the input
//! keeps the cache (one core then scans a 1M-bar series ≈ 25 % faster). Below that the output
//! fits the caches, where a caller reads it back fastest: plain stores. Streaming stores need
//! aligned addresses, so the kernel writes a small buffer that the aligned stores then copy
//! (see [`Kernel::scan_streamed`]): the blocks of the scan stay anchored at the series' start,
//! and the result does not depend on where the output happens to be allocated.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use super::helper::for_each_task;
use super::{bar_ok, smoothing, true_range, true_range_checked};

/// From this many bars on, the output is written with streaming stores: input and output
/// (32 bytes a bar) are then several times the per-core L2 and a good part of a shared L3.
pub(super) const STREAM_MIN_BARS: usize = 1 << 18;

/// Bars a streamed scan computes into its L1 buffer at a time (4 KiB): a multiple of every
/// kernel's block.
#[cfg(target_arch = "x86_64")]
const STREAM_CHUNK: usize = 512;

/// Whether a series of `n` bars is written with streaming stores.
#[inline]
pub(super) fn streams(n: usize) -> bool {
    n >= STREAM_MIN_BARS
}

/// A batch kernel: how the scan after the seed is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Four-bar blocks in portable Rust, multiply then add (two roundings).
    Portable,
    /// Four-bar blocks in portable Rust with fused multiply-adds (targets with FMA built in).
    PortableFused,
    /// Four-bar blocks in AVX2 vectors with FMA; only when the CPU has both.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// Eight-bar blocks in AVX-512 vectors; only when the CPU has AVX-512F and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// Scans bars `start..` (`start >= 1`) of the columns from `a`, the ATR at bar `start - 1`,
    /// into `out` (bar `start + j` at `out[j]`). Returns the ATR at the last bar and whether bars `start..`
    /// passed the checks of [`true_range_checked`].
    #[inline]
    pub(super) fn scan(
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
            // SAFETY (both): `Kernel::Avx2Fma` and `Kernel::Avx512` are only chosen (by `best`,
            // or by tests that check first) when the CPU has the features their kernels are
            // compiled for.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { super::x86::scan_avx2(cols, start, a, k, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { super::x86::scan_avx512(cols, start, a, k, out) },
        }
    }

    /// Fewest bars after the warm-up from which a scan on this kernel is split in segments.
    pub(super) fn split_min_bars(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => SPLIT_MIN_BARS_WIDE,
            _ => SPLIT_MIN_BARS,
        }
    }

    /// [`Kernel::scan_streamed`] when `stream`, else [`Kernel::scan`].
    #[inline]
    pub(super) fn scan_either(
        self,
        cols: Columns<'_>,
        start: usize,
        a: f64,
        k: &Block,
        out: &mut [MaybeUninit<f64>],
        stream: bool,
    ) -> (f64, bool) {
        if stream {
            self.scan_streamed(cols, start, a, k, out)
        } else {
            self.scan(cols, start, a, k, out)
        }
    }

    /// [`Kernel::scan`] with the output written by streaming stores: the kernel scans
    /// [`STREAM_CHUNK`] bars at a time into a buffer that stays in L1, which is then copied out.
    /// The chunks are whole blocks of every kernel, so the blocks, and the result bit for bit,
    /// are those of one `scan` whatever the output's alignment. Each copy ends on a cache line of
    /// `out` (the bars past it wait in the buffer for the next chunk's copy), so every line is
    /// streamed whole by one copy: a line streamed in part, its other part stored a chunk later,
    /// made a 1M-bar scan up to 1.5× slower for half of the outputs' alignments (2-core Zen 4).
    /// The portable kernels (no streaming stores) scan straight into `out`.
    pub(super) fn scan_streamed(
        self,
        cols: Columns<'_>,
        start: usize,
        a: f64,
        k: &Block,
        out: &mut [MaybeUninit<f64>],
    ) -> (f64, bool) {
        #[cfg(target_arch = "x86_64")]
        if matches!(self, Kernel::Avx2Fma | Kernel::Avx512) {
            use super::x86::{line_end, stream_copy, LINE_F64};
            let n = cols.close.len();
            let mut a = a;
            let mut buf = [MaybeUninit::<f64>::uninit(); STREAM_CHUNK + LINE_F64];
            // `buf[..held]`: bars scanned and not yet copied, fewer than a line's worth.
            let mut held = 0;
            let mut ok = true;
            let mut i = start;
            while i < n {
                let end = n.min(i + STREAM_CHUNK);
                let part =
                    Columns { high: &cols.high[..end], low: &cols.low[..end], close: &cols.close[..end] };
                let part_ok;
                (a, part_ok) = self.scan(part, i, a, k, &mut buf[held..held + end - i]);
                ok &= part_ok;
                let ready = held + end - i;
                let dst = &mut out[i - start - held..];
                let take = if end == n { ready } else { line_end(dst, ready) };
                // SAFETY: the AVX2 and AVX-512 kernels run only on CPUs with AVX; `buf[..ready]`
                // was written in full.
                unsafe { stream_copy(&buf[..take], &mut dst[..take]) };
                buf.copy_within(take..ready, 0);
                held = ready - take;
                i = end;
            }
            super::x86::stream_fence();
            return (a, ok);
        }
        self.scan(cols, start, a, k, out)
    }

    /// The fastest kernel this CPU runs (the feature tests are cached by `std`).
    pub(super) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("fma") {
                return Kernel::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Kernel::Avx2Fma;
            }
        }
        if cfg!(target_feature = "fma") {
            Kernel::PortableFused
        } else {
            Kernel::Portable
        }
    }

    /// Every kernel this machine can run.
    #[cfg(test)]
    pub(super) fn all() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable, Kernel::PortableFused];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                k.push(Kernel::Avx2Fma);
            }
            if has!("avx512f") && has!("fma") {
                k.push(Kernel::Avx512);
            }
        }
        k
    }
}

/// The price columns of one series, of equal length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns<'a> {
    pub(super) high: &'a [f64],
    pub(super) low: &'a [f64],
    pub(super) close: &'a [f64],
}

/// Constants of the block scans.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    pub(super) k1: f64,
    pub(super) k2: f64,
    /// `k1²` and `k1⁴`, the factors of the second and third shift steps.
    pub(super) k1_2: f64,
    pub(super) k1_4: f64,
    /// `k1, k1², …, k1⁸`: how much of `a_t` reaches each bar of a block.
    pub(super) pow: [f64; 8],
}

impl Block {
    pub(super) fn new(period: usize) -> Self {
        let (k1, k2) = smoothing(period);
        let k1_2 = k1 * k1;
        let k1_4 = k1_2 * k1_2;
        let k1_3 = k1_2 * k1;
        let pow = [k1, k1_2, k1_3, k1_4, k1_4 * k1, k1_4 * k1_2, k1_4 * k1_3, k1_4 * k1_4];
        Self { k1, k2, k1_2, k1_4, pow }
    }
}

/// The whole batch computation into `out` (every element is written): the NaN warm-up, the seed
/// (the mean of the first `period` true ranges, summed left to right, exactly as [`super::Atr`]
/// does), then the scan on `kernel`, with streaming stores when `stream`. Returns whether every
/// bar passed the checks of [`super::validate_hlc`]. `period` must be at least 1 and the columns
/// of equal length.
pub(super) fn run(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    period: usize,
    out: &mut [MaybeUninit<f64>],
    kernel: Kernel,
    stream: bool,
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
    let cols = Columns { high, low, close };
    let out = &mut out[start..];
    if n - start >= kernel.split_min_bars() {
        return ok & scan_in_segments(kernel, cols, start, seed, &block, out, stream);
    }
    ok & kernel.scan_either(cols, start, seed, &block, out, stream).1
}

/// A series at least this long after its warm-up is scanned in segments, which the helper
/// thread can share (see the `helper` module): from here on (two segments, 2 MiB of prices,
/// past a core's L2) one core alone waits on the caches and memory, and a second brings its own.
/// At 100k bars on a 2-core Zen 3 (AVX2) this took a call from 120 µs to 90 µs, in criterion
/// runs of the two builds taken in turn; it was 2¹⁹ before. The AVX-512 kernel waits longer
/// ([`SPLIT_MIN_BARS_WIDE`]).
pub(super) const SPLIT_MIN_BARS: usize = 1 << 16;

/// [`SPLIT_MIN_BARS`] of the AVX-512 kernel. Sharing a call costs the caller the helper's
/// wake-up (tens of microseconds on a cloud host's idle virtual CPU) and, when the helper wakes
/// late, a wait for the segment it took; that only pays once the call is long against it. At
/// twice the AVX2 kernel's speed one core does 100k bars in about 45 µs, and on a 2-core Zen 4
/// (AVX-512) `sigil.atr` took 0.31–0.48× TA-Lib's time unsplit against 0.40–0.71× split at
/// 100k bars, 0.37–0.46× against 0.47–0.59× at 150k, and 0.39–0.41× against 0.24–0.34× at 200k
/// (medians of 200 calls, runs of the two settings taken in turn).
pub(super) const SPLIT_MIN_BARS_WIDE: usize = 3 << 16;

/// Bars a segment of a split scan: a task of some 30 µs, so that a caller waiting for the one
/// segment the helper is in the middle of never waits long.
pub(super) const SEGMENT_BARS: usize = 1 << 16;

/// A segment's output and whether its bars passed the checks.
type Segment<'a> = Mutex<(&'a mut [MaybeUninit<f64>], bool)>;

/// Scans bars `start..` in segments of [`SEGMENT_BARS`]: the first from `seed`, every other as
/// if the ATR before it were 0, on this thread and the helper (when free) at once; then each
/// segment's last value, in order, is carried into the next (see [`carry_into`]). The segments
/// are the same whichever thread runs them, so the result is too. Returns whether the bars
/// passed the checks.
fn scan_in_segments(
    kernel: Kernel,
    cols: Columns<'_>,
    start: usize,
    seed: f64,
    k: &Block,
    out: &mut [MaybeUninit<f64>],
    stream: bool,
) -> bool {
    // Each segment is taken by one task only: the locks are never contended.
    let segments: Vec<Segment<'_>> = out.chunks_mut(SEGMENT_BARS).map(|o| Mutex::new((o, false))).collect();
    for_each_task(segments.len(), &|t| {
        let mut segment = segments[t].lock().unwrap_or_else(|e| e.into_inner());
        let (o, ok) = &mut *segment;
        let first = start + t * SEGMENT_BARS;
        let end = first + o.len();
        let part = Columns { high: &cols.high[..end], low: &cols.low[..end], close: &cols.close[..end] };
        let from = if t == 0 { seed } else { 0.0 };
        *ok = kernel.scan_either(part, first, from, k, o, stream).1;
    });
    let mut ok = true;
    let mut last = f64::NAN;
    for (t, segment) in segments.into_iter().enumerate() {
        let (o, segment_ok) = segment.into_inner().unwrap_or_else(|e| e.into_inner());
        ok &= segment_ok;
        if t > 0 {
            carry_into(o, last, k.k1);
        }
        // SAFETY: the kernel stored every element of the segment (segments are never empty).
        last = unsafe { o[o.len() - 1].assume_init_read() };
    }
    ok
}

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
