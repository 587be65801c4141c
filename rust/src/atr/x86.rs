//! The block scans in x86-64 vectors, four bars an AVX2 vector and eight an AVX-512 one (both
//! [`super::batch::Kernel::scan`]'s contract), and the streaming copy of the `batch` module.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::batch::{Block, Columns};
use super::true_range_checked;

/// One bar the scalar way, fused as in the vector lanes: the ATR after bar `i` from `a`, and
/// whether the bar passed the checks.
#[inline(always)]
fn step(cols: Columns<'_>, i: usize, a: f64, k: &Block) -> (f64, bool) {
    let (tr, ok) = true_range_checked(cols.high[i], cols.low[i], cols.close[i - 1]);
    (k.k1.mul_add(a, tr * k.k2), ok)
}

/// Four bars an AVX2 vector with FMA; callers make sure the CPU has both.
#[target_feature(enable = "avx2,fma")]
pub(super) fn scan_avx2(
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
    let mut i = start;
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
        let bar_ok = _mm256_and_pd(
            _mm256_cmp_pd::<_CMP_GE_OQ>(h, l),
            _mm256_and_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(lo, zero), _mm256_cmp_pd::<_CMP_LT_OQ>(hi, inf)),
        );
        valid = _mm256_and_pd(valid, bar_ok);
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
        let v;
        (a, v) = step(cols, i, a, k);
        ok &= v;
        out[i - start].write(a);
        i += 1;
    }
    (a, ok)
}

/// Eight bars an AVX-512 vector; callers make sure the CPU has AVX-512F and FMA. Three shift
/// steps (by one, two and four bars) give the partial sums of the block.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn scan_avx512(
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
    let mut i = start;
    let k2 = _mm512_set1_pd(k.k2);
    // Shift by s lanes (lanes below s take lane 0, then get a zero factor and drop out).
    let s1 = _mm512_setr_epi64(0, 0, 1, 2, 3, 4, 5, 6);
    let s2 = _mm512_setr_epi64(0, 0, 0, 1, 2, 3, 4, 5);
    let s4 = _mm512_setr_epi64(0, 0, 0, 0, 0, 1, 2, 3);
    let last = _mm512_set1_epi64(7);
    let (k1, k1_2, k1_4) = (k.k1, k.k1_2, k.k1_4);
    let m1 = _mm512_setr_pd(0.0, k1, k1, k1, k1, k1, k1, k1);
    let m2 = _mm512_setr_pd(0.0, 0.0, k1_2, k1_2, k1_2, k1_2, k1_2, k1_2);
    let m4 = _mm512_setr_pd(0.0, 0.0, 0.0, 0.0, k1_4, k1_4, k1_4, k1_4);
    let p = &k.pow;
    let pow = _mm512_setr_pd(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);
    let zero = _mm512_setzero_pd();
    let inf = _mm512_set1_pd(f64::INFINITY);
    let mut valid: __mmask8 = 0xff;
    let (hp, lp, cp) = (high.as_ptr(), low.as_ptr(), close.as_ptr());
    let op = out.as_mut_ptr().cast::<f64>();
    while i + 8 <= n {
        // SAFETY: 1 <= start <= i and i + 8 <= n, so bars i..i+8 of high and low, bars
        // i-1..i+7 of close and elements i-start..i-start+8 of out (length n - start) are
        // in bounds.
        let (h, l, pc) = unsafe {
            (_mm512_loadu_pd(hp.add(i)), _mm512_loadu_pd(lp.add(i)), _mm512_loadu_pd(cp.add(i - 1)))
        };
        // The same selects and comparisons as `true_range_checked`, NaN included (as in AVX2).
        let hi = _mm512_max_pd(h, pc);
        let lo = _mm512_min_pd(l, pc);
        let bar_ok = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(h, l);
        let bar_ok = _mm512_mask_cmp_pd_mask::<_CMP_GT_OQ>(bar_ok, lo, zero);
        valid &= _mm512_mask_cmp_pd_mask::<_CMP_LT_OQ>(bar_ok, hi, inf);
        let b = _mm512_mul_pd(_mm512_sub_pd(hi, lo), k2);
        let q = _mm512_fmadd_pd(_mm512_permutexvar_pd(s1, b), m1, b);
        let q = _mm512_fmadd_pd(_mm512_permutexvar_pd(s2, q), m2, q);
        let p = _mm512_fmadd_pd(_mm512_permutexvar_pd(s4, q), m4, q);
        let o = _mm512_fmadd_pd(pow, _mm512_set1_pd(a), p);
        // SAFETY: as for the loads; `MaybeUninit<f64>` has the layout of `f64`.
        unsafe { _mm512_storeu_pd(op.add(i - start), o) };
        // The only loop-carried step, a_{t+8} = k1⁸·a_t + p_8: the same fused operation as
        // lane 7 of `o`, so the carried value is the stored one.
        let p8 = _mm512_cvtsd_f64(_mm512_permutexvar_pd(last, p));
        a = k.pow[7].mul_add(a, p8);
        i += 8;
    }
    let mut ok = valid == 0xff;
    while i < n {
        let v;
        (a, v) = step(cols, i, a, k);
        ok &= v;
        out[i - start].write(a);
        i += 1;
    }
    (a, ok)
}

/// Bytes of a cache line, and `f64`s in one.
const LINE: usize = 64;
pub(super) const LINE_F64: usize = LINE / size_of::<f64>();

/// The largest `m <= len` at which `dst[m]` starts a cache line (`len` itself when none of
/// `dst[1..=len]` does; then `len` is under a line).
pub(super) fn line_end(dst: &[MaybeUninit<f64>], len: usize) -> usize {
    let past = (dst.as_ptr() as usize + len * size_of::<f64>()) % LINE / size_of::<f64>();
    if past < len {
        len - past
    } else {
        len
    }
}

/// Copies `src` into `dst` (same length) with streaming stores on every whole cache line of
/// `dst`, two 32-byte stores back to back, and plain stores before the first and after the
/// last; callers make sure the CPU has AVX.
#[target_feature(enable = "avx")]
pub(super) fn stream_copy(src: &[MaybeUninit<f64>], dst: &mut [MaybeUninit<f64>]) {
    assert_eq!(src.len(), dst.len());
    let n = dst.len();
    let misaligned = dst.as_ptr() as usize % LINE;
    let head = if misaligned == 0 { 0 } else { ((LINE - misaligned) / size_of::<f64>()).min(n) };
    dst[..head].copy_from_slice(&src[..head]);
    let mut i = head;
    let (sp, dp) = (src.as_ptr().cast::<f64>(), dst.as_mut_ptr().cast::<f64>());
    while i + LINE_F64 <= n {
        // SAFETY: i + 8 <= n for both slices; `dst.add(i)` is 64-byte aligned (`dst` is 8-byte
        // aligned, `head` reached the boundary and i moves by 8); `MaybeUninit<f64>` has the
        // layout of `f64` and `src` is initialised by the caller.
        unsafe {
            _mm256_stream_pd(dp.add(i), _mm256_loadu_pd(sp.add(i)));
            _mm256_stream_pd(dp.add(i + 4), _mm256_loadu_pd(sp.add(i + 4)));
        }
        i += LINE_F64;
    }
    dst[i..].copy_from_slice(&src[i..]);
}

/// Orders the streaming stores before every later store (they are weakly ordered), so the
/// output is complete before it is handed on.
#[inline]
pub(super) fn stream_fence() {
    // SAFETY: SSE is part of x86-64.
    unsafe { _mm_sfence() };
}
