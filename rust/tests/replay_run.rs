//! Replay as a whole: deterministic (same input, same output, bit for bit), equal to driving one
//! [`Engine`] step by step over the merged candles, and keeping its books on any valid input.
//!
//! "Bit for bit" is checked on `{:?}` renderings: Rust prints every `f64` with the shortest digits
//! that read back to the same bits, so two renderings are equal exactly when the values are.

mod common;

use common::{variant, walk_candle, Columns, XorShift, HOUR};
use proptest::prelude::*;
use sigil_engine::breakout::BreakoutParams;
use sigil_engine::engine::{ClosedTrade, Engine, Intent, Position, SkipReason, VariantParams};
use sigil_engine::fills::Costs;
use sigil_engine::replay::{replay, ReplayResult, Series, VariantCounts};
use sigil_engine::stops::{ExitReason, TrailParams};
use sigil_engine::{Candle, EngineError};

/// A seeded random walk with volume bursts; candles at `first`, `first + 1`, … times `tf_ms`, minus
/// every index in `gaps`.
fn synthetic(
    symbol: &str,
    tf_ms: i64,
    seed: u64,
    first: i64,
    n: usize,
    gaps: std::ops::Range<i64>,
) -> Columns {
    let mut rng = XorShift::new(seed);
    let mut next = move || rng.next_f64();
    let mut cols = Columns::new(symbol, tf_ms);
    let mut price = 1.0 + (seed % 97) as f64;
    for i in first..first + n as i64 {
        let (r, u, d, v) = (next() - 0.48, next(), next(), next());
        if gaps.contains(&i) {
            continue;
        }
        let burst = if v > 0.9 { 10.0 * v } else { 1.0 + v };
        let c = walk_candle(i * tf_ms, price, 0.04 * r, 0.01 * u, 0.01 * d, 1000.0 * burst);
        price = c.close;
        cols.push(c);
    }
    cols
}

/// Four postures that between them give every exit and every skip reason on [`universe`].
fn variants() -> Vec<VariantParams> {
    let mut baseline = variant("baseline");
    baseline.breakout.lookback = 24;
    baseline.breakout.volume_mult = 3.0;
    baseline.max_open = 3;
    baseline.cooldown_candles = 12;
    let mut single = variant("single");
    single.stop_k = 2.5;
    single.breakout.lookback = 12;
    single.breakout.volume_mult = 1.5;
    single.max_open = 1;
    single.cooldown_candles = 48;
    let mut poor = variant("poor");
    poor.starting_balance = 250.0;
    poor.stake = 150.0;
    poor.breakout.lookback = 16;
    poor.breakout.volume_mult = 1.5;
    poor.cooldown_candles = 0;
    let mut timed = variant("timed");
    timed.time_stop_candles = 10;
    timed.breakout.volume_mult = 1.5;
    vec![baseline, single, poor, timed]
}

/// Three symbols, given out of name order: two hourly ones that start and end at different times
/// (one with a gap), and a two-hourly one.
fn universe() -> Vec<Columns> {
    vec![
        synthetic("ZED/USDT", HOUR, 0x9E37_79B9_7F4A_7C15, 0, 1500, 700..760),
        synthetic("ALP/USDT", HOUR, 0x2545_F491_4F6C_DD1D, 200, 1100, 0..0),
        synthetic("MID/USDT", 2 * HOUR, 0xD1B5_4A32_D192_ED03, 40, 700, 0..0),
    ]
}

fn run(params: Vec<VariantParams>, cols: &[Columns]) -> Result<ReplayResult, EngineError> {
    let series: Vec<Series<'_>> = cols.iter().map(Columns::series).collect();
    replay(params, &series, 0, |_, _| {})
}

/// What driving one [`Engine`] by hand gives, in [`ReplayResult`]'s terms.
#[derive(Debug)]
struct Driven {
    symbols: Vec<String>,
    trades: Vec<ClosedTrade>,
    open_positions: Vec<Position>,
    counts: Vec<VariantCounts>,
    balances: Vec<f64>,
    equity_time: Vec<i64>,
    equity: Vec<Vec<f64>>,
    candles: u64,
    /// The smallest balance any variant had after any open.
    min_balance: f64,
}

/// One engine, symbols added in name order, candles merged by (close time, symbol name); at each
/// close, the exits carried out with paper fills, then the signals; equity after each close time.
/// Asserts on the way that an open never lands on an open (variant, symbol).
fn drive(params: Vec<VariantParams>, cols: &[Columns]) -> Driven {
    let nv = params.len();
    let mut e = Engine::new(params).unwrap();
    let mut by_name: Vec<&Columns> = cols.iter().collect();
    by_name.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    let ids: Vec<u32> = by_name.iter().map(|c| e.add_symbol(&c.symbol, c.tf_ms).unwrap()).collect();
    let mut stream: Vec<(i64, u32, Candle)> = Vec::new();
    for (c, &id) in by_name.iter().zip(&ids) {
        stream.extend((0..c.time.len()).map(|i| (c.time[i] + c.tf_ms, id, c.candle(i))));
    }
    stream.sort_by_key(|&(close_time, id, _)| (close_time, id));

    let mut d = Driven {
        symbols: by_name.iter().map(|c| c.symbol.clone()).collect(),
        trades: vec![],
        open_positions: vec![],
        counts: vec![VariantCounts::default(); nv],
        balances: vec![],
        equity_time: vec![],
        equity: vec![vec![]; nv],
        candles: 0,
        min_balance: f64::INFINITY,
    };
    let mut intents = Vec::new();
    for (k, &(close_time, s, candle)) in stream.iter().enumerate() {
        intents.clear();
        e.exits(s, &candle, &mut intents).unwrap();
        for intent in &intents {
            let Intent::Close { variant, symbol, time, price, reason } = *intent else {
                panic!("exits gave {intent:?}");
            };
            let qty = e.position(variant, symbol).unwrap().qty;
            let fill = e.params()[variant as usize].costs.sell(price, qty);
            d.trades.push(e.apply_close(variant, symbol, time, &fill, reason).unwrap());
        }
        intents.clear();
        e.signals(s, &mut intents).unwrap();
        for intent in &intents {
            match *intent {
                Intent::Open { variant, symbol, time, price, stop_pct, atr } => {
                    assert!(e.position(variant, symbol).is_none(), "open on an open pair: {intent:?}");
                    let p = &e.params()[variant as usize];
                    let fill = p.costs.buy(price, p.stake);
                    e.apply_open(variant, symbol, time, &fill, stop_pct, atr).unwrap();
                    d.counts[variant as usize].opens += 1;
                    d.min_balance = d.min_balance.min(e.balance(variant));
                }
                Intent::Skip { variant, reason, .. } => {
                    let r = SkipReason::ALL.iter().position(|&x| x == reason).unwrap();
                    d.counts[variant as usize].skips[r] += 1;
                }
                Intent::Close { .. } => panic!("signals gave {intent:?}"),
            }
        }
        d.candles += 1;
        if stream.get(k + 1).is_none_or(|next| next.0 != close_time) {
            d.equity_time.push(close_time);
            for (v, curve) in d.equity.iter_mut().enumerate() {
                curve.push(e.equity(v as u32));
            }
        }
    }
    for v in 0..nv as u32 {
        d.open_positions.extend(e.open_symbols(v).iter().map(|&s| *e.position(v, s).unwrap()));
        d.balances.push(e.balance(v));
    }
    d
}

/// Replay and the hand-driven engine agree on everything, to the bit.
fn assert_same(r: &ReplayResult, d: &Driven) {
    assert_eq!(r.symbols, d.symbols);
    assert_eq!(r.candles, d.candles);
    assert_eq!(r.counts, d.counts);
    assert_eq!(r.equity_time, d.equity_time);
    assert_eq!(format!("{:?}", r.trades), format!("{:?}", d.trades));
    assert_eq!(format!("{:?}", r.open_positions), format!("{:?}", d.open_positions));
    assert_eq!(format!("{:?}", r.balances), format!("{:?}", d.balances));
    assert_eq!(format!("{:?}", r.equity), format!("{:?}", d.equity));
}

#[test]
fn the_universe_gives_every_exit_and_skip_reason() {
    let r = run(variants(), &universe()).unwrap();
    assert_eq!(r.symbols, ["ALP/USDT", "MID/USDT", "ZED/USDT"]);
    assert_eq!(r.candles, 1500 - 60 + 1100 + 700);
    // Every reason the engine decides itself (a manual exit is the operator's, never a replay's).
    for reason in ExitReason::ALL.into_iter().filter(|&r| r != ExitReason::Manual) {
        assert!(r.trades.iter().any(|t| t.reason == reason), "no {reason:?} exit");
    }
    for (k, reason) in SkipReason::ALL.iter().enumerate() {
        assert!(r.counts.iter().any(|c| c.skips[k] > 0), "no {reason:?} skip");
    }
    for v in 0..4 {
        assert!(r.trades.iter().filter(|t| t.position.variant == v).count() >= 5, "variant {v}");
    }
    assert!(r.trades.iter().any(|t| t.position.symbol == 1), "the two-hourly symbol trades");
}

#[test]
fn replay_is_deterministic() {
    let cols = universe();
    let a = run(variants(), &cols).unwrap();
    let b = run(variants(), &cols).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    // The order the series come in does not matter: ids, merge and tie-breaks are by name.
    let mut reversed = cols.clone();
    reversed.reverse();
    let c = run(variants(), &reversed).unwrap();
    assert_eq!(format!("{a:?}"), format!("{c:?}"));
}

#[test]
fn replay_equals_the_engine_driven_step_by_step() {
    let cols = universe();
    let r = run(variants(), &cols).unwrap();
    let d = drive(variants(), &cols);
    assert!(!r.trades.is_empty() && !r.open_positions.is_empty());
    assert_same(&r, &d);
    // Every distinct close time once, in order.
    assert!(r.equity_time.windows(2).all(|w| w[0] < w[1]));
    // One variant alone decides as it does beside the others.
    for v in 0..4 {
        let alone = run(vec![variants()[v].clone()], &cols).unwrap();
        let mine: Vec<ClosedTrade> =
            r.trades.iter().filter(|t| t.position.variant == v as u32).copied().collect();
        let mut theirs = alone.trades.clone();
        for t in &mut theirs {
            t.position.variant = v as u32;
        }
        assert_eq!(format!("{mine:?}"), format!("{theirs:?}"), "variant {v}");
        assert_eq!(alone.balances[0].to_bits(), r.balances[v].to_bits());
    }
}

#[test]
fn simultaneous_closes_are_taken_in_symbol_name_order() {
    // Two identical hourly symbols: every decision happens on both at the same close time, and the
    // one named first takes the last open slot.
    let a = synthetic("AAA/USDT", HOUR, 7, 0, 800, 0..0);
    let mut b = a.clone();
    b.symbol = "BBB/USDT".into();
    // No cooldown, so AAA/USDT is either open or free: never skipped for its cooldown while
    // BBB/USDT finds the slot empty.
    let mut p = variant("one");
    p.max_open = 1;
    p.cooldown_candles = 0;
    p.breakout.volume_mult = 1.5;
    let r = run(vec![p.clone()], &[b.clone(), a.clone()]).unwrap();
    assert!(!r.trades.is_empty());
    assert!(r.trades.iter().all(|t| t.position.symbol == 0), "AAA/USDT always first");
    // Every breakout of AAA/USDT (opened, or skipped as open) is one of BBB/USDT skipped as max_open.
    let c = &r.counts[0];
    assert_eq!((c.skips[1], c.skips[3]), (0, 0));
    assert_eq!(c.skips[2], c.opens + c.skips[0]);
    assert_same(&r, &drive(vec![p], &[b, a]));
}

#[test]
fn progress_is_reported_every_n_candles_and_at_the_end() {
    let cols = universe();
    let series: Vec<Series<'_>> = cols.iter().map(Columns::series).collect();
    let mut calls = Vec::new();
    let r = replay(variants(), &series, 500, |done, total| calls.push((done, total))).unwrap();
    let total = r.candles;
    assert_eq!(calls.last(), Some(&(total, total)));
    let (last, every) = calls.split_last().unwrap();
    assert_eq!(every.len() as u64, total / 500);
    assert!(
        every.iter().enumerate().all(|(i, &(d, t))| d == 500 * (i as u64 + 1) && t == total),
        "{calls:?}"
    );
    assert_eq!(*last, (total, total));
}

#[test]
fn empty_inputs_give_empty_books() {
    let r = run(variants(), &[]).unwrap();
    assert!(r.trades.is_empty() && r.open_positions.is_empty() && r.equity_time.is_empty());
    assert_eq!(r.balances, [1000.0, 1000.0, 250.0, 1000.0]);
    assert_eq!(r.candles, 0);
    let r = run(variants(), &[Columns::new("NIL/USDT", HOUR)]).unwrap();
    assert_eq!(r.symbols, ["NIL/USDT"]);
    assert_eq!(r.candles, 0);
}

#[test]
fn bad_series_are_refused_with_the_symbol_and_the_index() {
    let ok = synthetic("OK/USDT", HOUR, 3, 0, 50, 0..0);
    let message = |cols: &[Columns]| match run(variants(), cols) {
        Err(EngineError::InvalidParam { name: "series", reason }) => reason,
        other => panic!("expected a series error, got {other:?}"),
    };

    let mut unsorted = synthetic("BAD/USDT", HOUR, 5, 0, 50, 0..0);
    unsorted.time[7] = unsorted.time[6];
    assert_eq!(message(&[ok.clone(), unsorted]), "BAD/USDT: candle times not strictly increasing at index 7");

    let mut high_low = synthetic("BAD/USDT", HOUR, 5, 0, 50, 0..0);
    high_low.high[3] = high_low.low[3] * 0.5;
    assert_eq!(message(&[high_low, ok.clone()]), "BAD/USDT: high < low at index 3");

    let mut nan = synthetic("BAD/USDT", HOUR, 5, 0, 50, 0..0);
    nan.close[9] = f64::NAN;
    assert_eq!(message(&[nan]), "BAD/USDT: close[9] is not finite");

    let mut short = synthetic("BAD/USDT", HOUR, 5, 0, 50, 0..0);
    short.volume.pop();
    assert_eq!(message(&[short]), "BAD/USDT: volume has length 49, expected 50");

    let twice = message(&[ok.clone(), ok.clone()]);
    assert!(twice.contains("OK/USDT given twice"), "{twice}");

    let mut bad = variant("bad");
    bad.max_open = 0;
    assert!(matches!(
        replay(vec![bad], &[ok.series()], 0, |_, _| {}),
        Err(EngineError::InvalidParam { name: "max_open", .. })
    ));
    assert!(matches!(
        replay(vec![variant("a"), variant("a")], &[ok.series()], 0, |_, _| {}),
        Err(EngineError::InvalidParam { name: "variants", .. })
    ));
}

// ------------------------------------------------------------------------------------------------
// Properties over random valid candle series and random postures.
// ------------------------------------------------------------------------------------------------

/// A random posture, kept inside what the engine accepts.
fn any_variant(name: &'static str) -> impl Strategy<Value = VariantParams> {
    (
        (0.0f64..4.0, 0.01f64..0.05, 0.0f64..0.05, 2usize..20, 0.0f64..2.5, 0.0f64..0.01),
        (1usize..5, 0u32..10, 20.0f64..400.0, 0.0f64..1500.0, 0.0f64..0.01, 0.0f64..0.01),
        (2usize..20, 0.0f64..2.0, 0.5f64..3.0, prop_oneof![Just(0u32), 1u32..20]),
    )
        .prop_map(move |(a, b, c)| {
            let (stop_k, stop_floor, cap_extra, lookback, volume_mult, buffer) = a;
            let (max_open, cooldown_candles, stake, starting_balance, fee_rate, slippage) = b;
            let (atr_period, activation, trail_mult, time_stop_candles) = c;
            VariantParams {
                name: name.into(),
                stop_k,
                stop_floor,
                stop_cap: stop_floor + cap_extra,
                breakout: BreakoutParams {
                    lookback,
                    volume_mult,
                    buffer,
                    atr_min_pct: 0.0,
                    atr_max_pct: 1.0,
                },
                max_open,
                cooldown_candles,
                stake,
                starting_balance,
                costs: Costs { fee_rate, slippage },
                atr_period,
                trail: TrailParams { activation, trail_mult },
                time_stop_candles,
            }
        })
}

/// One random walk: (return, upper wick, lower wick, volume) per candle.
fn any_walk() -> impl Strategy<Value = Vec<(f64, f64, f64, f64)>> {
    proptest::collection::vec(
        (
            -0.05f64..0.055,
            0.0f64..0.03,
            0.0f64..0.03,
            prop_oneof![3 => Just(100.0f64), 1 => 100.0f64..2000.0],
        ),
        20..250,
    )
}

/// One to three symbols, each starting at its own hour, hourly or two-hourly.
fn any_universe() -> impl Strategy<Value = Vec<Columns>> {
    proptest::collection::vec((any_walk(), 0i64..40, 1i64..3, 0.5f64..50.0), 1..4).prop_map(|walks| {
        walks
            .into_iter()
            .enumerate()
            .map(|(k, (steps, first, hours, start))| {
                let mut cols = Columns::new(["A/USDT", "B/USDT", "C/USDT"][k], hours * HOUR);
                let mut price = start;
                for (i, (ret, up, down, volume)) in steps.into_iter().enumerate() {
                    let c = walk_candle((first + i as i64) * hours * HOUR, price, ret, up, down, volume);
                    price = c.close;
                    cols.push(c);
                }
                cols
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn replay_keeps_its_books(
        params in (any_variant("a"), any_variant("b"), any_variant("c")).prop_map(|(a, b, c)| vec![a, b, c]),
        cols in any_universe(),
    ) {
        let r = run(params.clone(), &cols).unwrap();
        let d = drive(params.clone(), &cols);
        assert_same(&r, &d);
        prop_assert!(d.min_balance >= 0.0, "a balance went below zero: {}", d.min_balance);

        for (v, p) in params.iter().enumerate() {
            let v = v as u32;
            let trades: Vec<&ClosedTrade> = r.trades.iter().filter(|t| t.position.variant == v).collect();
            let open: Vec<&Position> = r.open_positions.iter().filter(|x| x.variant == v).collect();

            // Cash: the starting balance, plus every closed trade's P&L, less what the open
            // positions cost (stake + entry fee).
            let pnl: f64 = trades.iter().map(|t| t.pnl).sum();
            let held: f64 = open.iter().map(|x| x.stake + x.entry_fee).sum();
            let want = p.starting_balance + pnl - held;
            let scale = p.starting_balance
                + trades.iter().map(|t| t.pnl.abs() + t.position.stake).sum::<f64>()
                + held;
            let got = r.balances[v as usize];
            prop_assert!((got - want).abs() <= 1e-9 * scale.max(1.0), "variant {v}: {got} vs {want}");

            for t in &trades {
                let x = &t.position;
                prop_assert!(t.exit_time > x.entry_time, "{t:?}");
                // P&L is what the sell brought in less what the buy cost, in the spec's order.
                let gross = x.qty * t.exit_price;
                let exit_fee = gross * p.costs.fee_rate;
                prop_assert_eq!(t.pnl.to_bits(), ((gross - exit_fee) - (x.stake + x.entry_fee)).to_bits());
                prop_assert_eq!(t.fees.to_bits(), (x.entry_fee + exit_fee).to_bits());
                prop_assert_eq!(x.stake, p.stake);
            }

            // No (variant, symbol) holds two positions at once: per pair, each entry comes at or
            // after the previous exit, and an open position after the last exit.
            for s in 0..r.symbols.len() as u32 {
                let mut spans: Vec<(i64, i64)> = trades
                    .iter()
                    .filter(|t| t.position.symbol == s)
                    .map(|t| (t.position.entry_time, t.exit_time))
                    .collect();
                let still: Vec<&&Position> = open.iter().filter(|x| x.symbol == s).collect();
                prop_assert!(still.len() <= 1);
                spans.extend(still.iter().map(|x| (x.entry_time, i64::MAX)));
                spans.sort_unstable();
                prop_assert!(spans.windows(2).all(|w| w[1].0 >= w[0].1), "{spans:?}");
            }

            // At most max_open at once.
            let spans: Vec<(i64, i64)> = trades
                .iter()
                .map(|t| (t.position.entry_time, t.exit_time))
                .chain(open.iter().map(|x| (x.entry_time, i64::MAX)))
                .collect();
            for &(t, _) in &spans {
                let n = spans.iter().filter(|&&(a, b)| a <= t && t < b).count();
                prop_assert!(n <= p.max_open, "variant {v}: {n} open at {t}");
            }

            prop_assert_eq!(r.counts[v as usize].opens as usize, trades.len() + open.len());
        }
    }

    /// Variants with one lookback and one ATR period share their windows and ATRs (found ahead in
    /// replay, slid per candle in the driven engine): each still decides exactly as it does alone.
    #[test]
    fn shared_windows_decide_as_each_variant_alone(
        params in (any_variant("a"), any_variant("b"), any_variant("c")).prop_map(|(a, mut b, mut c)| {
            b.breakout.lookback = a.breakout.lookback;
            b.atr_period = a.atr_period;
            c.atr_period = a.atr_period;
            vec![a, b, c]
        }),
        cols in any_universe(),
    ) {
        let together = run(params.clone(), &cols).unwrap();
        assert_same(&together, &drive(params.clone(), &cols));
        for (v, p) in params.iter().enumerate() {
            let alone = run(vec![p.clone()], &cols).unwrap();
            let mut theirs = alone.trades.clone();
            for t in &mut theirs {
                t.position.variant = v as u32;
            }
            let mine: Vec<ClosedTrade> =
                together.trades.iter().filter(|t| t.position.variant == v as u32).copied().collect();
            prop_assert_eq!(format!("{mine:?}"), format!("{theirs:?}"));
            prop_assert_eq!(alone.balances[0].to_bits(), together.balances[v].to_bits());
            prop_assert_eq!(&alone.counts[0], &together.counts[v]);
        }
    }

    #[test]
    fn replay_is_deterministic_on_any_input(
        params in (any_variant("a"), any_variant("b")).prop_map(|(a, b)| vec![a, b]),
        cols in any_universe(),
    ) {
        let a = run(params.clone(), &cols).unwrap();
        let b = run(params, &cols).unwrap();
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
