//! Replay throughput on a synthetic universe (the real-data figure comes from `make bench`'s
//! pytest-benchmark run over `../shared/data/universe-1h`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{walk_candle, Columns, XorShift, HOUR};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sigil_engine::engine::VariantParams;
use sigil_engine::replay::{replay, Series};

fn variant(
    name: &str,
    k: f64,
    lookback: usize,
    volume_mult: f64,
    max_open: usize,
    cooldown: u32,
) -> VariantParams {
    let mut p = common::variant(name);
    p.stop_k = k;
    p.breakout.lookback = lookback;
    p.breakout.volume_mult = volume_mult;
    p.max_open = max_open;
    p.cooldown_candles = cooldown;
    p
}

fn bench_replay(cr: &mut Criterion) {
    let symbols = 100usize;
    let bars = 5_000usize;
    let mut rng = XorShift::new(0x2545_F491_4F6C_DD1D);
    let mut cols: Vec<Columns> = Vec::new();
    for s in 0..symbols {
        let mut c = Columns::new(&format!("S{s}/USDT"), HOUR);
        let mut p = 1.0 + s as f64;
        for i in 0..bars {
            let r = rng.next_f64() - 0.5;
            let candle =
                walk_candle(i as i64 * HOUR, p, 0.03 * r, 0.005, 0.005, 1000.0 * (1.0 + 4.0 * r.abs()));
            p = candle.close;
            c.push(candle);
        }
        cols.push(c);
    }
    let series: Vec<Series<'_>> = cols.iter().map(Columns::series).collect();
    let variants = vec![
        variant("baseline", 1.5, 24, 3.0, 3, 12),
        variant("moderate", 1.5, 20, 2.5, 5, 8),
        variant("aggressive", 2.5, 16, 2.0, 8, 6),
        variant("unhinged", 2.5, 12, 1.5, 12, 4),
    ];
    let mut g = cr.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements((symbols * bars * variants.len()) as u64));
    g.bench_function("100x5000x4", |b| b.iter(|| replay(variants.clone(), &series, 0, |_, _| {}).unwrap()));
    // A search's batch: 64 postures over the same candles, lookbacks and multiples drawn from
    // `sigil optimize`'s default space (17 lookbacks, so windows are shared).
    let batch: Vec<VariantParams> = (0..64)
        .map(|i| {
            let mut r = |n: u64| (rng.next_f64() * n as f64) as usize;
            let mut p = variant(
                &format!("p{i}"),
                0.5 + 0.25 * r(15) as f64,
                8 + 4 * r(17),
                1.0 + 0.25 * r(17) as f64,
                1 + r(12),
                4 * r(13) as u32,
            );
            p.trail.trail_mult = 0.5 + 0.25 * r(19) as f64;
            p
        })
        .collect();
    g.throughput(Throughput::Elements((symbols * bars * batch.len()) as u64));
    g.bench_function("100x5000x64", |b| b.iter(|| replay(batch.clone(), &series, 0, |_, _| {}).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
