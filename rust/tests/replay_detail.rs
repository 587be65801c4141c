//! Replay with lower-timeframe detail: prices between closes through `Engine::on_price` (the daemon's
//! exit pass), then the close through `Engine::exits`, which tests the candle's open and low against
//! the stop as it stood at the previous close.

mod common;

use common::{variant, walk_candle, Columns, XorShift, HOUR};
use sigil_engine::engine::{Engine, Intent, Position};
use sigil_engine::replay::{replay, replay_detailed};
use sigil_engine::stops::{ExitReason, StopState};
use sigil_engine::{Candle, EngineError};

const HALF: i64 = HOUR / 2;

fn candle(open_time: i64, open: f64, high: f64, low: f64, close: f64) -> Candle {
    Candle { open_time, open, high, low, close, volume: 1.0 }
}

/// An engine with ATR(1) = 2 on symbol 0 and a position entered at 100 (hard stop at 95).
fn held() -> Engine {
    let mut v = variant("v");
    v.atr_period = 1;
    let mut e = Engine::new(vec![v]).unwrap();
    e.add_symbol("A/USDT", HOUR).unwrap();
    let mut out = Vec::new();
    for c in [candle(0, 100.0, 100.0, 100.0, 100.0), candle(HOUR, 100.0, 101.0, 99.0, 100.0)] {
        e.exits(0, &c, &mut out).unwrap();
        e.signals(0, &mut out).unwrap();
    }
    assert_eq!(e.atr(0, 0), 2.0);
    let pos = Position {
        variant: 0,
        symbol: 0,
        entry_time: 2 * HOUR,
        entry_price: 100.0,
        qty: 1.0,
        stake: 100.0,
        entry_fee: 0.0,
        stop_pct: 0.05,
        atr_at_entry: 2.0,
        stop: StopState::new(100.0, 0.05),
        bars_held: 0,
    };
    e.restore_position(pos, None).unwrap();
    e
}

#[test]
fn after_prices_raised_the_trail_the_close_tests_its_open_and_low_against_the_stop_of_before() {
    // The first half rallies to 106 (trail active at 106 - 2 x 2 = 102), the second half stays above.
    let first = candle(2 * HOUR, 100.0, 106.0, 100.0, 104.0);
    let main = candle(2 * HOUR, 100.0, 106.0, 100.0, 104.0);
    let mut out = Vec::new();
    let mut e = held();
    let untouched = e.clone();
    for p in [first.open, first.low, first.high, first.close] {
        e.on_price(0, first.open_time + HALF, p, &mut out).unwrap();
    }
    assert!(out.is_empty());
    assert_eq!(e.position(0, 0).unwrap().stop.trail_stop, 102.0);
    // The candle's open (100) came before the rally: not a sale at 100 under the trail of 102.
    e.exits(0, &main, &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    let pos = e.position(0, 0).unwrap();
    assert_eq!((pos.stop.trail_stop, pos.stop.highest), (102.0, 106.0));
    // The same as a close without prices in between would leave it.
    let mut plain = untouched;
    plain.exits(0, &main, &mut out).unwrap();
    assert_eq!(plain.position(0, 0).unwrap().stop, pos.stop);
    // The next candle is tested against the raised trail.
    e.exits(0, &candle(3 * HOUR, 104.0, 104.5, 101.0, 103.0), &mut out).unwrap();
    assert!(matches!(out[..], [Intent::Close { price: 102.0, reason: ExitReason::AtrTrail, .. }]));
}

#[test]
fn a_low_under_the_stop_of_before_still_exits_at_the_close() {
    let mut e = held();
    let mut out = Vec::new();
    for p in [100.0, 100.0, 106.0, 104.0] {
        e.on_price(0, 2 * HOUR + HALF, p, &mut out).unwrap();
    }
    e.exits(0, &candle(2 * HOUR, 100.0, 106.0, 94.0, 99.0), &mut out).unwrap();
    assert!(matches!(out[..], [Intent::Close { price: 95.0, reason: ExitReason::HardStop, .. }]));
}

#[test]
fn a_detail_low_below_the_stop_sells_at_that_price_then() {
    let mut e = held();
    let mut out = Vec::new();
    let dip = candle(2 * HOUR, 100.0, 100.5, 94.0, 99.0);
    for p in [dip.open, dip.low, dip.high, dip.close] {
        e.on_price(0, dip.open_time + HALF, p, &mut out).unwrap();
    }
    assert_eq!(
        out,
        vec![Intent::Close {
            variant: 0,
            symbol: 0,
            time: 2 * HOUR + HALF,
            price: 94.0,
            reason: ExitReason::HardStop
        }]
    );
}

/// A walk of `n` hourly candles with volume bursts, and its half-hour detail: each hour split at a
/// point between its low and high (valid: both halves inside the hour's range).
fn walk(seed: u64, n: usize) -> (Columns, Columns) {
    let mut rng = XorShift::new(seed);
    let mut main = Columns::new("A/USDT", HOUR);
    let mut detail = Columns::new("A/USDT", HALF);
    let mut price = 10.0;
    for i in 0..n as i64 {
        let (r, u, d, v, m) =
            (rng.next_f64() - 0.48, rng.next_f64(), rng.next_f64(), rng.next_f64(), rng.next_f64());
        let c =
            walk_candle(i * HOUR, price, 0.04 * r, 0.01 * u, 0.01 * d, if v > 0.9 { 9000.0 } else { 1000.0 });
        let mid = c.low + m * (c.high - c.low);
        let (h1, l1) = if m > 0.5 { (c.high, c.open.min(mid)) } else { (c.open.max(mid), c.low) };
        detail.push(Candle { open_time: i * HOUR, open: c.open, high: h1, low: l1, close: mid, volume: 1.0 });
        detail.push(Candle {
            open_time: i * HOUR + HALF,
            open: mid,
            high: if m > 0.5 { mid.max(c.close) } else { c.high },
            low: if m > 0.5 { c.low } else { mid.min(c.close) },
            close: c.close,
            volume: 1.0,
        });
        price = c.close;
        main.push(c);
    }
    (main, detail)
}

#[test]
fn detail_changes_exits_and_incomplete_detail_is_replayed_as_without() {
    let (main, detail) = walk(0x9E37_79B9_7F4A_7C15, 3000);
    let params = vec![variant("v")];
    let plain = replay(params.clone(), &[main.series()], 0, |_, _| {}).unwrap();
    let with = replay_detailed(params.clone(), &[main.series()], &[detail.series()], 0, |_, _| {}).unwrap();
    assert!(plain.trades.len() > 20);
    assert_eq!(with.detail_candles, 3000);
    assert_eq!(with.undetailed, vec![0]);
    assert_ne!(format!("{:?}", plain.trades), format!("{:?}", with.trades));
    // Detail times one ms off never line up with a candle: every candle is replayed as without.
    let mut shifted = detail.clone();
    shifted.time.iter_mut().for_each(|t| *t += 1);
    let off = replay_detailed(params, &[main.series()], &[shifted.series()], 0, |_, _| {}).unwrap();
    assert_eq!(off.undetailed, vec![3000]);
    assert_eq!(off.detail_candles, 0);
    assert_eq!(format!("{:?}", plain.trades), format!("{:?}", off.trades));
    assert_eq!(format!("{:?}", plain.equity), format!("{:?}", off.equity));
}

#[test]
fn detail_must_name_a_main_symbol_and_divide_its_timeframe() {
    let (main, detail) = walk(7, 50);
    let p = vec![variant("v")];
    let mut other = detail.clone();
    other.symbol = "B/USDT".into();
    let err =
        |d: &Columns| replay_detailed(p.clone(), &[main.series()], &[d.series()], 0, |_, _| {}).unwrap_err();
    assert!(matches!(err(&other), EngineError::InvalidParam { name: "detail", .. }), "{:?}", err(&other));
    let mut coarse = detail.clone();
    coarse.tf_ms = 2 * HOUR;
    assert!(err(&coarse).to_string().contains("does not divide"), "{}", err(&coarse));
    let mut odd = detail;
    odd.tf_ms = 7 * 60_000;
    assert!(err(&odd).to_string().contains("does not divide"));
}
