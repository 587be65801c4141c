//! ATR throughput: batch over one series, many series at once, and the streaming update, each
//! next to the `kand` crate's ATR (a pure-Rust TA-Lib port) on the same input.
//!
//! Sigil's entries:
//! - `atr_into`: the batch kernel on a validated series into a reused buffer (what `kand::atr`
//!   does too, minus validation);
//! - `atr`: validation, allocation and kernel, what `sigil.atr` runs under Python;
//! - `atr_into_plain`: the streaming arithmetic over the series (one dependent multiply-add chain
//!   per bar), the baseline the batch kernels are measured against.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sigil_engine::atr::{atr, atr_into, atr_into_plain, atr_many, Atr};
use std::hint::black_box;
use std::time::Duration;

const PERIOD: usize = 14;

/// A random walk with a 2% high-low range: `n` bars of high, low, close.
fn series(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut p = 100.0f64;
    let (mut h, mut l, mut c) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let r = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        p *= 1.0 + 0.02 * r;
        h.push(p * 1.01);
        l.push(p * 0.99);
        c.push(p);
    }
    (h, l, c)
}

fn bench_batch(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("atr_batch");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for n in [10_000usize, 100_000, 1_000_000] {
        let (h, l, c) = series(n);
        let mut out = vec![0.0; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("sigil atr_into", n), &n, |b, _| {
            b.iter(|| atr_into(black_box(&h), black_box(&l), black_box(&c), PERIOD, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("sigil atr", n), &n, |b, _| {
            b.iter(|| atr(black_box(&h), black_box(&l), black_box(&c), PERIOD).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("sigil atr_into_plain", n), &n, |b, _| {
            b.iter(|| atr_into_plain(black_box(&h), black_box(&l), black_box(&c), PERIOD, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("kand atr", n), &n, |b, _| {
            b.iter(|| {
                kand::ohlcv::atr::atr(black_box(&h), black_box(&l), black_box(&c), PERIOD, &mut out).unwrap()
            })
        });
    }
    g.finish();
}

fn bench_many(cr: &mut Criterion) {
    let (rows, cols) = (500usize, 1_000usize);
    let (h, l, c) = series(rows * cols);
    let mut g = cr.benchmark_group("atr_many");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements((rows * cols) as u64));
    let id = format!("{rows}x{cols}");
    g.bench_function(BenchmarkId::new("sigil atr_many", &id), |b| {
        b.iter(|| atr_many(black_box(&h), black_box(&l), black_box(&c), rows, cols, PERIOD).unwrap())
    });
    let mut out = vec![0.0; rows * cols];
    g.bench_function(BenchmarkId::new("sigil atr_into per row", &id), |b| {
        b.iter(|| {
            for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                let s = r * cols..(r + 1) * cols;
                atr_into(&h[s.clone()], &l[s.clone()], &c[s], PERIOD, o);
            }
        })
    });
    g.bench_function(BenchmarkId::new("kand atr per row", &id), |b| {
        b.iter(|| {
            for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                let s = r * cols..(r + 1) * cols;
                kand::ohlcv::atr::atr(&h[s.clone()], &l[s.clone()], &c[s], PERIOD, o).unwrap();
            }
        })
    });
    g.finish();
}

fn bench_stream(cr: &mut Criterion) {
    let (h, l, c) = series(100_000);
    let mut g = cr.benchmark_group("atr_stream");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(h.len() as u64));
    g.bench_function("sigil update_unchecked/100k", |b| {
        b.iter(|| {
            let mut a = Atr::new(PERIOD).unwrap();
            for i in 0..h.len() {
                black_box(a.update_unchecked(h[i], l[i], c[i]));
            }
        })
    });
    g.bench_function("sigil update/100k", |b| {
        b.iter(|| {
            let mut a = Atr::new(PERIOD).unwrap();
            for i in 0..h.len() {
                black_box(a.update(h[i], l[i], c[i]).unwrap());
            }
        })
    });
    g.bench_function("kand atr_inc/100k", |b| {
        b.iter(|| {
            // Seeded with the first value, as a caller of `atr_inc` has to.
            let mut a = 1.0;
            for i in 1..h.len() {
                a = kand::ohlcv::atr::atr_inc(h[i], l[i], c[i - 1], a, PERIOD).unwrap();
                black_box(a);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_batch, bench_many, bench_stream);
criterion_main!(benches);
