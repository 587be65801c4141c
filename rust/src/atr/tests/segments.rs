//! The segmented scan of long series and the helper thread that shares it.

use super::*;

/// Length of a series whose scan is split in segments on every kernel (with `extra` bars more).
fn split_len(period: usize, extra: usize) -> usize {
    period + 1 + SPLIT_MIN_BARS.max(SPLIT_MIN_BARS_WIDE) + extra
}

#[test]
fn segmented_scan_matches_plain() {
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
fn segmented_scan_carries_through_zero_true_ranges() {
    // Flat prices from before a segment boundary to well after it: the segment starts with
    // thousands of zero true ranges, where the whole value is the carried-in part.
    let period = 14;
    // Long enough to be split, and to hold a fourth segment.
    let n = split_len(period, 0).max(period + 1 + 4 * SEGMENT_BARS);
    let (mut h, mut l, mut c) = series(n);
    let split = period + 1 + 3 * SEGMENT_BARS;
    let flat = c[split - 50];
    for i in split - 50..split + 3000 {
        (h[i], l[i], c[i]) = (flat, flat, flat);
    }
    let want = plain(&h, &l, &c, period);
    assert!(want[split + 2000] > 0.0 && want[split + 2000] < 1e-50);
    assert_close(&atr(&h, &l, &c, period).unwrap(), &want, 1e-13, "flat across the split");
}

#[test]
fn segmented_scan_checks_every_segment() {
    let period = 14;
    let n = split_len(period, 5);
    let (h0, l0, c0) = series(n);
    let split = period + 1 + SEGMENT_BARS;
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
fn concurrent_callers_share_the_helper_safely() {
    // Several threads at once: one gets the helper, the others run alone; all results exact.
    let (rows, cols) = (24, 5000);
    let n = split_len(14, 1).max(rows * cols);
    let (h, l, c) = series(n);
    let (hm, lm, cm) = (&h[..rows * cols], &l[..rows * cols], &c[..rows * cols]);
    let want = atr_many(hm, lm, cm, rows, cols, 14).unwrap();
    let one = atr(&h[..n], &l[..n], &c[..n], 14).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (h, l, c, want, one) = (&h, &l, &c, &want, &one);
            let (hm, lm, cm) = (hm, lm, cm);
            s.spawn(move || {
                for _ in 0..20 {
                    if t % 2 == 0 {
                        let got = atr_many(hm, lm, cm, rows, cols, 14).unwrap();
                        assert!(got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()));
                    } else {
                        let got = atr(&h[..n], &l[..n], &c[..n], 14).unwrap();
                        assert!(got.iter().zip(one).all(|(a, b)| a.to_bits() == b.to_bits()));
                    }
                }
            });
        }
    });
}

#[test]
fn each_kernel_splits_from_its_own_length() {
    // One bar short of its split length a series is scanned in one piece: bit for bit the
    // kernel's own scan from the seed. From that length on it is split (and agrees to ulps).
    let period = 14;
    let (h, l, c) = series(split_len(period, 1));
    for k in kernels() {
        for m in [k.split_min_bars() - 1, k.split_min_bars()] {
            let n = period + 1 + m;
            let (h, l, c) = (&h[..n], &l[..n], &c[..n]);
            let (got, ok) = run_vec(h, l, c, period, k);
            assert!(ok);
            let seed = (1..=period).map(|i| true_range(h[i], l[i], c[i - 1])).sum::<f64>() / period as f64;
            let mut whole = vec![MaybeUninit::uninit(); m];
            let cols = Columns { high: h, low: l, close: c };
            k.scan_either(cols, period + 1, seed, &Block::new(period), &mut whole, false);
            // SAFETY: the scan stores into every element.
            let whole: Vec<f64> = whole.into_iter().map(|v| unsafe { v.assume_init() }).collect();
            let tail = &got[period + 1..];
            if m < k.split_min_bars() {
                let same = tail.iter().zip(&whole).all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{k:?}: {m} bars were split");
            } else {
                assert_close(tail, &whole, 1e-13, &format!("{k:?} split at {m}"));
            }
        }
    }
}
