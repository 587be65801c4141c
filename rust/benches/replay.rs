//! Replay throughput on a synthetic universe (the real-data figure comes from `make bench`'s
//! pytest-benchmark run over `../shared/data/universe-1h`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sigil_engine::breakout::BreakoutParams;
use sigil_engine::engine::VariantParams;
use sigil_engine::fills::Costs;
use sigil_engine::replay::{replay, Series};
use sigil_engine::stops::TrailParams;

fn variant(
    name: &str,
    k: f64,
    lookback: usize,
    volume_mult: f64,
    max_open: usize,
    cooldown: u32,
) -> VariantParams {
    VariantParams {
        name: name.into(),
        stop_k: k,
        stop_floor: 0.03,
        stop_cap: 0.06,
        breakout: BreakoutParams {
            lookback,
            volume_mult,
            buffer: 0.0,
            atr_min_pct: 0.005,
            atr_max_pct: 0.10,
        },
        max_open,
        cooldown_candles: cooldown,
        stake: 100.0,
        starting_balance: 1000.0,
        costs: Costs { fee_rate: 0.001, slippage: 0.0005 },
        atr_period: 14,
        trail: TrailParams { activation: 1.0, trail_mult: 2.0 },
        time_stop_candles: 0,
    }
}

fn bench_replay(cr: &mut Criterion) {
    let symbols = 100usize;
    let bars = 5_000usize;
    let mut cols: Vec<(String, Vec<i64>, [Vec<f64>; 5])> = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for s in 0..symbols {
        let mut p = 1.0 + s as f64;
        let mut o = [vec![], vec![], vec![], vec![], vec![]];
        let mut t = vec![];
        for i in 0..bars {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let open = p;
            p *= 1.0 + 0.03 * r;
            t.push(i as i64 * 3_600_000);
            o[0].push(open);
            o[1].push(open.max(p) * 1.005);
            o[2].push(open.min(p) * 0.995);
            o[3].push(p);
            o[4].push(1000.0 * (1.0 + 4.0 * r.abs()));
        }
        cols.push((format!("S{s}/USDT"), t, o));
    }
    let series: Vec<Series<'_>> = cols
        .iter()
        .map(|(n, t, o)| Series {
            symbol: n,
            tf_ms: 3_600_000,
            time: t,
            open: &o[0],
            high: &o[1],
            low: &o[2],
            close: &o[3],
            volume: &o[4],
        })
        .collect();
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
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
