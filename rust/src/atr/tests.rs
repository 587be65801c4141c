//! Tests of the three forms, every kernel against the streaming arithmetic.

use super::batch::{
    run, Block, Columns, Kernel, SEGMENT_BARS, SPLIT_MIN_BARS, SPLIT_MIN_BARS_WIDE, STREAM_MIN_BARS,
};
use super::*;
use std::mem::MaybeUninit;

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

fn kernels() -> Vec<Kernel> {
    Kernel::all()
}

fn run_vec(h: &[f64], l: &[f64], c: &[f64], period: usize, k: Kernel) -> (Vec<f64>, bool) {
    run_at(h, l, c, period, k, false, 0)
}

/// `run` into a buffer `offset` elements into a fresh allocation (to move the output's
/// alignment), with streaming stores when `stream`.
fn run_at(
    h: &[f64],
    l: &[f64],
    c: &[f64],
    period: usize,
    k: Kernel,
    stream: bool,
    offset: usize,
) -> (Vec<f64>, bool) {
    let mut buf = vec![MaybeUninit::uninit(); c.len() + offset];
    let out = &mut buf[offset..];
    let ok = run(h, l, c, period, out, k, stream);
    // SAFETY: `run` stores into every element.
    (out.iter().map(|v| unsafe { v.assume_init() }).collect(), ok)
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

#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_kernel_is_the_fused_four_bar_blocks_bit_for_bit() {
    // The vector kernel must be the portable fused one, operation for operation (`test_wheel`
    // models it so): every length around its rounds of passes, and rounds split by the streamed
    // chunks and the segments of a long series.
    if !Kernel::all().contains(&Kernel::Avx2Fma) {
        return; // this CPU has no AVX2 and FMA
    }
    {
        let (h, l, c) = series(SPLIT_MIN_BARS + 3 * SEGMENT_BARS + 7);
        let lengths = (0..70).chain(250..270).chain(510..530).chain([5_001, 20_000]);
        for period in [1, 2, 3, 14] {
            for n in lengths.clone().chain([STREAM_MIN_BARS + 5, c.len()]) {
                let (h, l, c) = (&h[..n], &l[..n], &c[..n]);
                let want = run_vec(h, l, c, period, Kernel::PortableFused).0;
                for stream in [false, true] {
                    let (got, ok) = run_at(h, l, c, period, Kernel::Avx2Fma, stream, 1);
                    assert!(ok);
                    let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(same, "n {n} period {period} stream {stream}");
                }
            }
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

#[test]
fn streaming_stores_match_plain_at_every_alignment() {
    // Lengths below, at and across the streamed scan's chunks (512 bars), whose copies end on
    // the output's cache lines and carry the bars past the line into the next copy.
    let (h, l, c) = series(2100);
    let lengths = [0, 1, 64, 200, 1100, 1537, 2100];
    for period in [1, 3, 14] {
        let near = [1, 2, 9, 17, 513, 1024, 1031].map(|d| period + d);
        for n in lengths.into_iter().chain(near) {
            let (h, l, c) = (&h[..n], &l[..n], &c[..n]);
            let want = plain(h, l, c, period);
            for k in kernels() {
                let (unstreamed, _) = run_vec(h, l, c, period, k);
                for offset in 0..8 {
                    let (got, ok) = run_at(h, l, c, period, k, true, offset);
                    let what = format!("{k:?} n {n} period {period} offset {offset}");
                    assert!(ok, "{what}");
                    assert_close(&got, &want, 1e-13, &what);
                    // The same blocks wherever the output lies: the same bits as plain stores.
                    let same = got.iter().zip(&unstreamed).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{what}: streamed differs from unstreamed");
                }
            }
        }
    }
}

#[test]
fn long_series_stream_and_match_plain() {
    assert!(batch::streams(STREAM_MIN_BARS) && !batch::streams(STREAM_MIN_BARS - 1));
    let n = STREAM_MIN_BARS + 5;
    let (h, l, c) = series(n);
    for period in [1, 14, 1000] {
        let want = plain(&h, &l, &c, period);
        assert_close(&atr(&h, &l, &c, period).unwrap(), &want, 1e-12, &format!("atr period {period}"));
        let mut out = vec![-1.0; n];
        atr_into(&h, &l, &c, period, &mut out);
        assert_close(&out, &want, 1e-12, &format!("atr_into period {period}"));
    }
}

#[test]
fn long_series_checks_every_part() {
    let period = 14;
    let n = STREAM_MIN_BARS + 5;
    let (h0, l0, c0) = series(n);
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    // One broken rule per case: high, low, close, high < low.
    let bad = [(nan, 1.0, 1.0), (2.0, inf, 1.0), (2.0, 1.0, -1.0), (1.0, 2.0, 1.5)];
    // The seed, the scalar bars before the first aligned store, the vector blocks, the tail.
    for at in [3, period + 1, period + 2, period + 8, n / 2, n - 2, n - 1] {
        for &(bh, bl, bc) in &bad {
            let (mut h, mut l, mut c) = (h0.clone(), l0.clone(), c0.clone());
            (h[at], l[at], c[at]) = (bh, bl, bc);
            assert_eq!(atr(&h, &l, &c, period).map(|_| ()), validate_hlc(&h, &l, &c), "at {at}");
            assert!(validate_hlc(&h, &l, &c).is_err());
        }
    }
}

mod segments;

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
    // Short rows, and rows long enough for streaming stores (bit for bit `atr` either way).
    for (rows, cols) in [(3, 100), (2, STREAM_MIN_BARS + 3)] {
        let (h, l, c) = series(rows * cols);
        let m = atr_many(&h, &l, &c, rows, cols, 14).unwrap();
        for r in 0..rows {
            let s = r * cols..(r + 1) * cols;
            let one = atr(&h[s.clone()], &l[s.clone()], &c[s.clone()], 14).unwrap();
            for (a, b) in one.iter().zip(&m[s]) {
                assert!(a.to_bits() == b.to_bits(), "{rows}x{cols} row {r}");
            }
        }
    }
}

#[test]
fn many_matches_plain_over_many_rows() {
    // Rows of a length that moves each row's alignment.
    let (rows, cols) = (37, STREAM_MIN_BARS / 16 + 3);
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
    // Enough bars for streaming stores.
    let (rows, cols) = (40, STREAM_MIN_BARS / 16 + 3);
    let (h, l0, c) = series(rows * cols);
    let err = |bad: &[(usize, usize, f64)]| {
        let mut l = l0.clone();
        for &(r, i, v) in bad {
            l[r * cols + i] = v;
        }
        atr_many(&h, &l, &c, rows, cols, 14).unwrap_err().to_string()
    };
    let inf = f64::INFINITY;
    // Two bad rows, in either order; the very last bar.
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
