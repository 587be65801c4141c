//! ATR throughput: batch over one series and many series, and the streaming update.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sigil_engine::atr::{atr_into, Atr};
use std::hint::black_box;

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
    for n in [10_000usize, 100_000, 1_000_000] {
        let (h, l, c) = series(n);
        let mut out = vec![0.0; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| atr_into(black_box(&h), black_box(&l), black_box(&c), 14, &mut out))
        });
    }
    g.finish();
}

fn bench_stream(cr: &mut Criterion) {
    let (h, l, c) = series(100_000);
    let mut g = cr.benchmark_group("atr_stream");
    g.throughput(Throughput::Elements(h.len() as u64));
    g.bench_function("update_unchecked_100k", |b| {
        b.iter(|| {
            let mut a = Atr::new(14).unwrap();
            for i in 0..h.len() {
                black_box(a.update_unchecked(h[i], l[i], c[i]));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_batch, bench_stream);
criterion_main!(benches);
