//! The decision step ([`Engine`]) driven by hand on synthetic candles, one rule of `docs/HLD.md`
//! ("Decision rules") per test: the breakout and its hard stop, the guard and the cooldown, the
//! variant's limits, the exits in their conservative order, the time stop, and the errors.
//!
//! Expected values are computed here from the spec's formulas (an ATR written out in
//! [`wilder_atr`], the fills through [`COSTS`]), not read back from the engine.

mod common;

use common::{walk_candle, COSTS, HOUR as TF}; // TF: the timeframe of every symbol here
use proptest::prelude::*;
use sigil_engine::engine::{ClosedTrade, Engine, Intent, Position, SkipReason, VariantParams};
use sigil_engine::stops::{hard_stop_pct, ExitReason};
use sigil_engine::{Candle, EngineError};

/// The shipped defaults with a short breakout window, so a scenario needs few candles.
fn variant(name: &str) -> VariantParams {
    let mut p = common::variant(name);
    p.breakout.lookback = 5;
    p.breakout.volume_mult = 2.0;
    p.cooldown_candles = 3;
    p
}

/// A variant that signals on every candle of [`stair`] from its fourth candle on and never exits
/// by a stop: lookback 3, no volume test, ATR(2), a 50 % hard stop, a trail that never activates.
fn stair_variant(name: &str) -> VariantParams {
    let mut p = variant(name);
    p.breakout.lookback = 3;
    p.breakout.volume_mult = 0.0;
    p.atr_period = 2;
    p.stop_floor = 0.5;
    p.stop_cap = 0.5;
    p.trail.activation = 1e9;
    p.cooldown_candles = 4;
    p
}

fn candle(i: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
    Candle { open_time: i * TF, open, high, low, close, volume }
}

/// Candle `i` of a staircase: each closes at its high, one above the previous high (a breakout
/// once the window is full); true range 1.5 throughout.
fn stair(i: i64) -> Candle {
    let base = 100.0 + i as f64;
    candle(i, base, base + 1.0, base - 0.5, base + 1.0, 100.0)
}

/// A quiet candle: true range 3 around 100 (ATR/close 3 %), volume 100.
fn flat(i: i64) -> Candle {
    candle(i, 100.0, 101.5, 98.5, 100.0, 100.0)
}

/// The spike that breaks out of twenty [`flat`] candles: close 110 above the highs of 101.5, ten
/// times their volume.
fn spike(i: i64) -> Candle {
    candle(i, 100.0, 111.0, 100.0, 110.0, 1000.0)
}

/// Wilder's ATR as `docs/HLD.md` writes it: the mean of the first `n` true ranges, then
/// `atr * (n-1)/n + tr * 1/n`; NaN before index `n`.
fn wilder_atr(candles: &[Candle], n: usize) -> Vec<f64> {
    let (k1, k2) = ((n as f64 - 1.0) / n as f64, 1.0 / n as f64);
    let mut out = vec![f64::NAN; candles.len()];
    let mut sum = 0.0;
    for i in 1..candles.len() {
        let (c, prev) = (candles[i], candles[i - 1].close);
        let tr = c.high.max(prev) - c.low.min(prev);
        if i < n {
            sum += tr;
        } else if i == n {
            sum += tr;
            out[i] = sum / n as f64;
        } else {
            out[i] = out[i - 1] * k1 + tr * k2;
        }
    }
    out
}

/// What one candle close produced.
#[derive(Debug, Default)]
struct Step {
    closes: Vec<Intent>,
    trades: Vec<ClosedTrade>,
    signals: Vec<Intent>,
}

/// One candle close as replay carries it out: the exits, each applied with a paper fill, then the
/// signals. Opens are returned, not applied: the test decides.
fn close_candle(e: &mut Engine, s: u32, c: &Candle) -> Step {
    let mut step = Step::default();
    e.exits(s, c, &mut step.closes).unwrap();
    for intent in &step.closes {
        step.trades.push(apply_close(e, intent));
    }
    e.signals(s, &mut step.signals).unwrap();
    step
}

/// [`close_candle`], then every open applied.
fn close_candle_and_open(e: &mut Engine, s: u32, c: &Candle) -> Step {
    let step = close_candle(e, s, c);
    for intent in &step.signals {
        if matches!(intent, Intent::Open { .. }) {
            apply_open(e, intent);
        }
    }
    step
}

fn apply_open(e: &mut Engine, intent: &Intent) -> Position {
    let Intent::Open { variant, symbol, time, price, stop_pct, atr } = *intent else {
        panic!("not an open: {intent:?}");
    };
    let p = &e.params()[variant as usize];
    let fill = p.costs.buy(price, p.stake);
    e.apply_open(variant, symbol, time, &fill, stop_pct, atr).unwrap()
}

fn apply_close(e: &mut Engine, intent: &Intent) -> ClosedTrade {
    let Intent::Close { variant, symbol, time, price, reason } = *intent else {
        panic!("not a close: {intent:?}");
    };
    let qty = e.position(variant, symbol).expect("closing an open position").qty;
    let fill = e.params()[variant as usize].costs.sell(price, qty);
    e.apply_close(variant, symbol, time, &fill, reason).unwrap()
}

fn skip(variant: u32, symbol: u32, time: i64, reason: SkipReason) -> Intent {
    Intent::Skip { variant, symbol, time, reason }
}

fn close(variant: u32, symbol: u32, time: i64, price: f64, reason: ExitReason) -> Intent {
    Intent::Close { variant, symbol, time, price, reason }
}

/// An engine over `params` with one symbol, `TST/USDT`; returns it and the symbol's id.
fn one_symbol(params: Vec<VariantParams>) -> (Engine, u32) {
    let mut e = Engine::new(params).unwrap();
    let s = e.add_symbol("TST/USDT", TF).unwrap();
    (e, s)
}

/// An engine over `params` with one symbol, fed twenty [`flat`] candles (no signal) and the
/// [`spike`]; returns it, the symbol id and the candles so far.
fn after_spike(params: Vec<VariantParams>) -> (Engine, u32, Vec<Candle>, Step) {
    let (mut e, s) = one_symbol(params);
    let mut candles = Vec::new();
    for i in 0..20 {
        let c = flat(i);
        let step = close_candle(&mut e, s, &c);
        assert!(step.closes.is_empty() && step.signals.is_empty(), "candle {i}: {step:?}");
        candles.push(c);
    }
    candles.push(spike(20));
    let step = close_candle(&mut e, s, &candles[20]);
    (e, s, candles, step)
}

#[test]
fn breakout_opens_with_the_clamped_atr_stop() {
    let mut floor = variant("floor");
    floor.stop_k = 0.0;
    let mid = variant("mid");
    let mut cap = variant("cap");
    cap.stop_k = 5.0;
    let mut calm = variant("calm");
    calm.breakout.atr_max_pct = 0.02;
    let mut thin = variant("thin");
    thin.breakout.volume_mult = 20.0;
    let mut buffered = variant("buffered");
    buffered.breakout.buffer = 0.1;
    let (_, s, candles, step) = after_spike(vec![floor, mid, cap, calm, thin, buffered]);

    let atr = wilder_atr(&candles, 14)[20];
    let atr_pct = atr / 110.0;
    assert!(atr_pct > 0.03 / 1.5 && atr_pct < 0.06 / 1.5, "the mid variant's stop is unclamped");
    let open =
        |variant, stop_pct| Intent::Open { variant, symbol: s, time: 21 * TF, price: 110.0, stop_pct, atr };
    // Variants in config order; "calm" (ATR/close above its band), "thin" (volume below 20x the
    // mean) and "buffered" (close not 10 % above the highest high) see no breakout at all.
    assert_eq!(
        step.signals,
        vec![open(0, 0.03), open(1, hard_stop_pct(atr_pct, 1.5, 0.03, 0.06)), open(2, 0.06)]
    );
    let Intent::Open { stop_pct, .. } = step.signals[1] else { unreachable!() };
    assert_eq!(stop_pct, 1.5 * atr_pct);
}

#[test]
fn breakout_needs_a_full_window_and_a_ready_atr() {
    // ATR(14) is ready at the fifteenth candle; the window of 3 is full at the fourth.
    let mut p = stair_variant("v");
    p.atr_period = 14;
    let (mut e, s) = one_symbol(vec![p]);
    let first = (0..30).find(|&i| !close_candle_and_open(&mut e, s, &stair(i)).signals.is_empty());
    assert_eq!(first, Some(14));

    let (mut e, s) = one_symbol(vec![stair_variant("v")]);
    let first = (0..30).find(|&i| !close_candle_and_open(&mut e, s, &stair(i)).signals.is_empty());
    assert_eq!(first, Some(3));
}

#[test]
fn apply_open_claims_the_guard_and_debits_the_account() {
    let (mut e, s, _, step) = after_spike(vec![variant("v")]);
    let pos = apply_open(&mut e, &step.signals[0]);
    let Intent::Open { stop_pct, atr, .. } = step.signals[0] else { unreachable!() };
    let fill = COSTS.buy(110.0, 100.0);

    assert_eq!(pos.entry_time, 21 * TF);
    assert_eq!(pos.entry_price, 110.0 * (1.0 + 0.0005));
    assert_eq!((pos.qty, pos.stake, pos.entry_fee), (fill.qty, 100.0, fill.fee));
    assert_eq!((pos.stop_pct, pos.atr_at_entry, pos.bars_held), (stop_pct, atr, 0));
    assert_eq!(pos.stop.hard_stop_price, pos.entry_price * (1.0 - stop_pct));
    assert_eq!(e.position(0, s), Some(&pos));
    assert_eq!(e.open_symbols(0), &[s]);
    // The cooldown runs from the open: 3 candles of 1 h after the signal candle's close.
    assert_eq!(e.guard().get(0, s).unwrap(), (true, Some(24 * TF)));
    assert_eq!(e.balance(0), 1000.0 - (100.0 + 100.0 * 0.001));
    // Equity marks the position at its symbol's last close.
    assert_eq!(e.equity(0), e.balance(0) + pos.qty * 110.0);
}

#[test]
fn guard_skips_open_then_cooldown_until_it_ends() {
    let mut p = stair_variant("v");
    p.time_stop_candles = 3;
    let (mut e, s) = one_symbol(vec![p]);
    for i in 0..3 {
        assert!(close_candle_and_open(&mut e, s, &stair(i)).signals.is_empty());
    }
    let step = close_candle_and_open(&mut e, s, &stair(3));
    assert!(matches!(step.signals[..], [Intent::Open { time, .. }] if time == 4 * TF));
    // Protected until 4 candles after the open at 4 h.
    assert_eq!(e.guard().get(0, s).unwrap(), (true, Some(8 * TF)));

    for i in 4..6 {
        let step = close_candle_and_open(&mut e, s, &stair(i));
        assert_eq!(step.signals, vec![skip(0, s, (i + 1) * TF, SkipReason::Open)]);
    }
    // Held three candles: the time stop sells at the close, and the breakout of the same candle is
    // still inside the cooldown that started at the open.
    let step = close_candle_and_open(&mut e, s, &stair(6));
    assert_eq!(step.closes, vec![close(0, s, 7 * TF, 107.0, ExitReason::TimeStop)]);
    assert_eq!(step.signals, vec![skip(0, s, 7 * TF, SkipReason::Cooldown)]);
    assert_eq!(e.guard().get(0, s).unwrap(), (false, Some(8 * TF)), "a close leaves the cooldown");
    // The cooldown ends at 8 h exactly: the candle closing then opens again.
    let step = close_candle_and_open(&mut e, s, &stair(7));
    assert!(matches!(step.signals[..], [Intent::Open { time, .. }] if time == 8 * TF));
    assert_eq!(e.guard().get(0, s).unwrap(), (true, Some(12 * TF)));
}

#[test]
fn cooldown_zero_reopens_on_the_closing_candle() {
    let mut p = stair_variant("v");
    p.time_stop_candles = 1;
    p.cooldown_candles = 0;
    let (mut e, s) = one_symbol(vec![p]);
    for i in 0..4 {
        close_candle_and_open(&mut e, s, &stair(i));
    }
    let step = close_candle_and_open(&mut e, s, &stair(4));
    assert!(matches!(step.closes[..], [Intent::Close { reason: ExitReason::TimeStop, .. }]));
    assert!(matches!(step.signals[..], [Intent::Open { time, .. }] if time == 5 * TF));
    assert_eq!(step.trades[0].exit_time, step.trades[0].position.entry_time + TF);
}

#[test]
fn max_open_is_checked_before_the_balance() {
    let mut two = stair_variant("two");
    two.max_open = 2;
    let mut poor = stair_variant("poor");
    poor.starting_balance = 150.0;
    let mut one_poor = stair_variant("one_poor");
    one_poor.max_open = 1;
    one_poor.starting_balance = 150.0;
    let mut e = Engine::new(vec![two, poor, one_poor]).unwrap();
    let ids: Vec<u32> = ["A/USDT", "B/USDT", "C/USDT"].iter().map(|n| e.add_symbol(n, TF).unwrap()).collect();
    for i in 0..3 {
        for &s in &ids {
            close_candle_and_open(&mut e, s, &stair(i));
        }
    }
    let t = 4 * TF;
    let steps: Vec<Step> = ids.iter().map(|&s| close_candle_and_open(&mut e, s, &stair(3))).collect();
    assert!(matches!(steps[0].signals[..], [Intent::Open { .. }, Intent::Open { .. }, Intent::Open { .. }]));
    assert!(matches!(steps[1].signals[0], Intent::Open { variant: 0, .. }));
    assert_eq!(
        steps[1].signals[1..],
        [skip(1, ids[1], t, SkipReason::Balance), skip(2, ids[1], t, SkipReason::MaxOpen)]
    );
    assert_eq!(
        steps[2].signals,
        vec![
            skip(0, ids[2], t, SkipReason::MaxOpen),
            skip(1, ids[2], t, SkipReason::Balance),
            skip(2, ids[2], t, SkipReason::MaxOpen),
        ]
    );
    assert_eq!(e.open_symbols(0), &ids[..2]);
    assert_eq!(e.open_symbols(1), &ids[..1]);
    // The guard comes first: an open (variant, symbol) is skipped as open, not as max_open.
    let step = close_candle_and_open(&mut e, ids[0], &stair(4));
    assert_eq!(step.signals[0], skip(0, ids[0], 5 * TF, SkipReason::Open));
}

#[test]
fn a_balance_of_exactly_stake_plus_fee_opens() {
    let mut p = stair_variant("v");
    p.starting_balance = COSTS.required(100.0);
    let (mut e, s) = one_symbol(vec![p]);
    for i in 0..3 {
        close_candle_and_open(&mut e, s, &stair(i));
    }
    assert!(matches!(close_candle_and_open(&mut e, s, &stair(3)).signals[..], [Intent::Open { .. }]));
    assert_eq!(e.balance(0), COSTS.required(100.0) - COSTS.buy(104.0, 100.0).cost);
    assert!(e.balance(0) >= 0.0);
}

/// The balance test (`Costs::required`) and the debit (`BuyFill::cost`) are one expression, so a
/// balance of exactly `required` opens and leaves zero, never a negative balance (as two
/// expressions did for stake 10 at the 0.1 % fee: -1.8e-15), and the database's `CHECK (balance >= 0)`
/// never refuses what the engine decided.
#[test]
fn a_balance_that_passes_the_test_never_goes_negative() {
    let mut p = stair_variant("v");
    p.stake = 10.0;
    p.starting_balance = COSTS.required(10.0);
    assert_eq!(COSTS.required(10.0), COSTS.buy(1.0, 10.0).cost);
    let (mut e, s) = one_symbol(vec![p]);
    for i in 0..3 {
        close_candle_and_open(&mut e, s, &stair(i));
    }
    assert!(matches!(close_candle_and_open(&mut e, s, &stair(3)).signals[..], [Intent::Open { .. }]));
    assert!(e.balance(0) >= 0.0, "balance {:e} after an open the balance test allowed", e.balance(0));
}

#[test]
fn hard_stop_sells_at_the_stop_price() {
    let (mut e, s, _, step) = after_spike(vec![variant("v")]);
    let pos = apply_open(&mut e, &step.signals[0]);
    let stop = pos.stop.hard_stop_price;
    assert!(stop > 100.0 && stop < 108.0);
    // Opens above the stop, trades through it.
    let step = close_candle(&mut e, s, &candle(21, 108.0, 109.0, 100.0, 101.0, 100.0));
    assert_eq!(step.closes, vec![close(0, s, 22 * TF, stop, ExitReason::HardStop)]);
    let t = step.trades[0];
    let sell = COSTS.sell(stop, pos.qty);
    assert_eq!((t.exit_time, t.exit_price, t.reason), (22 * TF, stop * (1.0 - 0.0005), ExitReason::HardStop));
    assert_eq!(t.pnl, sell.proceeds - (pos.stake + pos.entry_fee));
    assert_eq!(t.fees, pos.entry_fee + sell.fee);
    assert_eq!(t.position, Position { bars_held: 1, ..pos });
    assert_eq!(e.position(0, s), None);
    assert!(e.open_symbols(0).is_empty());
    assert_eq!(e.balance(0), 1000.0 - (100.0 + 100.0 * 0.001) + sell.proceeds);
    assert_eq!(e.guard().get(0, s).unwrap(), (false, Some(24 * TF)));

    // A low exactly at the stop is a hit too.
    let (mut e, s, _, step) = after_spike(vec![variant("v")]);
    apply_open(&mut e, &step.signals[0]);
    let step = close_candle(&mut e, s, &candle(21, 108.0, 109.0, stop, 108.0, 100.0));
    assert!(matches!(step.closes[..], [Intent::Close { price, .. }] if price == stop));
}

#[test]
fn a_gap_below_the_stop_sells_at_the_open() {
    let (mut e, s, _, step) = after_spike(vec![variant("v")]);
    let pos = apply_open(&mut e, &step.signals[0]);
    assert!(pos.stop.hard_stop_price > 100.0);
    let step = close_candle(&mut e, s, &candle(21, 100.0, 101.0, 99.0, 100.5, 100.0));
    assert_eq!(step.closes, vec![close(0, s, 22 * TF, 100.0, ExitReason::HardStop)]);
}

#[test]
fn trail_activates_after_activation_atrs_and_only_moves_up() {
    let (mut e, s, mut candles, step) = after_spike(vec![variant("v")]);
    let pos = apply_open(&mut e, &step.signals[0]);
    let entry = pos.entry_price;
    let feed = |e: &mut Engine, candles: &mut Vec<Candle>, c: Candle| {
        candles.push(c);
        let step = close_candle(e, s, &c);
        assert!(step.closes.is_empty(), "{step:?}");
        *e.position(0, s).unwrap()
    };

    // The trail is judged with the ATR known before the candle (atr_prev): a high just short of
    // entry + 1 ATR leaves it off.
    let atr_prev = wilder_atr(&candles, 14)[20];
    let short = entry + atr_prev - 0.01;
    let p = feed(&mut e, &mut candles, candle(21, 110.0, short, 109.0, 110.0, 100.0));
    assert!(!p.stop.trail_active);
    assert_eq!(p.stop.highest, short);
    assert_eq!(p.stop.level(), (pos.stop.hard_stop_price, ExitReason::HardStop));

    // Reaching entry + 1 ATR turns it on, at the highest price less 2 ATR.
    let atr_prev = wilder_atr(&candles, 14)[21];
    let high = entry + atr_prev;
    let p = feed(&mut e, &mut candles, candle(22, 110.0, high, 109.0, 111.0, 100.0));
    assert!(p.stop.trail_active);
    assert_eq!(p.stop.highest, high);
    assert_eq!(p.stop.trail_stop, high - 2.0 * atr_prev);
    assert_eq!(p.stop.level(), (p.stop.trail_stop, ExitReason::AtrTrail));

    // A wide candle that stays above the trail raises the ATR; with the ATR larger and no new high,
    // the candidate trail is lower, and the trail stays where it was.
    let trail = p.stop.trail_stop;
    let p = feed(&mut e, &mut candles, candle(23, 111.0, high - 0.1, trail + 0.1, 111.0, 100.0));
    let atr = wilder_atr(&candles, 14);
    assert!(atr[22] > atr[21]);
    assert_eq!((p.stop.highest, p.stop.trail_stop), (high, trail));
    let p = feed(&mut e, &mut candles, candle(24, 111.0, high - 0.1, trail + 0.1, 111.0, 100.0));
    assert!(high - 2.0 * atr[23] < trail);
    assert_eq!((p.stop.highest, p.stop.trail_stop), (high, trail));

    // A new high raises it again.
    let p = feed(&mut e, &mut candles, candle(25, 111.0, high + 5.0, 110.0, 115.0, 100.0));
    let atr = wilder_atr(&candles, 14);
    assert_eq!(p.stop.trail_stop, high + 5.0 - 2.0 * atr[24]);
    assert!(p.stop.trail_stop > trail);

    // Through the trail: sold at the trail, reason atr_trail.
    let level = p.stop.trail_stop;
    let step = close_candle(&mut e, s, &candle(26, 114.0, 114.0, level - 1.0, 113.0, 100.0));
    assert_eq!(step.closes, vec![close(0, s, 27 * TF, level, ExitReason::AtrTrail)]);
}

#[test]
fn the_low_is_tested_before_the_high_raises_the_trail() {
    let (e0, s, candles, step) = after_spike(vec![variant("v")]);
    let mut e = e0.clone();
    let pos = apply_open(&mut e, &step.signals[0]);
    let e_open = e.clone();

    // One candle reaches the trail's activation and trades through the hard stop: the hard stop,
    // as it stood before the candle, is hit.
    let step = close_candle(&mut e, s, &candle(21, 108.0, 130.0, 100.0, 120.0, 100.0));
    assert_eq!(step.closes, vec![close(0, s, 22 * TF, pos.stop.hard_stop_price, ExitReason::HardStop)]);

    // A low above the stop as it stood, but below the trail this candle's high sets: no exit on this
    // candle; the raised trail is tested from the next one on.
    let mut e = e_open;
    let atr_prev = wilder_atr(&candles, 14)[20];
    let (high, low) = (130.0, 120.0);
    assert!(high - 2.0 * atr_prev > low && low > pos.stop.hard_stop_price);
    let step = close_candle(&mut e, s, &candle(21, 121.0, high, low, 125.0, 100.0));
    assert!(step.closes.is_empty());
    let trail = e.position(0, s).unwrap().stop.trail_stop;
    assert_eq!(trail, high - 2.0 * atr_prev);
    let step = close_candle(&mut e, s, &candle(22, 126.0, 127.0, low, 125.0, 100.0));
    assert!(matches!(
        step.closes[..],
        [Intent::Close { price, reason: ExitReason::AtrTrail, .. }] if price == trail
    ));
}

#[test]
fn a_trail_gap_sells_at_the_open_as_atr_trail() {
    let (mut e, s, _, step) = after_spike(vec![variant("v")]);
    apply_open(&mut e, &step.signals[0]);
    close_candle(&mut e, s, &candle(21, 121.0, 130.0, 120.0, 125.0, 100.0));
    let trail = e.position(0, s).unwrap().stop.trail_stop;
    let open = trail - 2.0;
    let step = close_candle(&mut e, s, &candle(22, open, open + 1.0, open - 1.0, open, 100.0));
    assert!(matches!(
        step.closes[..],
        [Intent::Close { price, reason: ExitReason::AtrTrail, .. }] if price == open
    ));
}

#[test]
fn time_stop_sells_at_the_close_after_n_candles() {
    let mut p = variant("v");
    p.time_stop_candles = 2;
    let (mut e, s, _, step) = after_spike(vec![p]);
    apply_open(&mut e, &step.signals[0]);
    assert!(close_candle(&mut e, s, &candle(21, 110.0, 111.0, 109.0, 110.5, 100.0)).closes.is_empty());
    assert_eq!(e.position(0, s).unwrap().bars_held, 1);
    let step = close_candle(&mut e, s, &candle(22, 110.0, 111.0, 109.0, 109.5, 100.0));
    assert_eq!(step.closes, vec![close(0, s, 23 * TF, 109.5, ExitReason::TimeStop)]);
    assert_eq!(step.trades[0].position.bars_held, 2);
}

#[test]
fn a_stop_wins_over_the_time_stop_on_the_same_candle() {
    let mut p = variant("v");
    p.time_stop_candles = 1;
    let (mut e, s, _, step) = after_spike(vec![p]);
    let pos = apply_open(&mut e, &step.signals[0]);
    let step = close_candle(&mut e, s, &candle(21, 108.0, 109.0, 100.0, 101.0, 100.0));
    assert!(matches!(
        step.closes[..],
        [Intent::Close { price, reason: ExitReason::HardStop, .. }] if price == pos.stop.hard_stop_price
    ));
}

#[test]
fn live_prices_exit_at_the_price_and_raise_with_the_current_atr() {
    let (mut e, s, candles, step) = after_spike(vec![variant("v")]);
    let pos = apply_open(&mut e, &step.signals[0]);
    let atr = wilder_atr(&candles, 14)[20];
    let mut out = Vec::new();
    let price = pos.entry_price + atr + 1.0;
    e.on_price(s, 21 * TF + 60_000, price, &mut out).unwrap();
    assert!(out.is_empty());
    let stop = e.position(0, s).unwrap().stop;
    assert!(stop.trail_active);
    assert_eq!(stop.trail_stop, price - 2.0 * atr);
    let below = stop.trail_stop - 0.5;
    e.on_price(s, 21 * TF + 120_000, below, &mut out).unwrap();
    assert_eq!(out, vec![close(0, s, 21 * TF + 120_000, below, ExitReason::AtrTrail)]);
    assert_eq!(
        e.on_price(s, 0, f64::NAN, &mut out),
        Err(EngineError::NonFinite { field: "price", index: 0 })
    );
    assert_eq!(e.on_price(s, 0, 0.0, &mut out), Err(EngineError::NonPositive { field: "price", index: 0 }));
}

#[test]
fn errors_for_unsorted_candles_and_unknown_ids() {
    let (mut e, s) = one_symbol(vec![variant("a"), variant("b")]);
    assert_eq!(e.add_symbol("TST/USDT", 2 * TF), Ok(s), "same name, same id");
    let mut out = Vec::new();

    // Unknown ids.
    assert_eq!(e.exits(7, &flat(0), &mut out), Err(EngineError::Unknown { what: "symbol", id: 7 }));
    assert_eq!(e.signals(7, &mut out), Err(EngineError::Unknown { what: "symbol", id: 7 }));
    assert_eq!(e.on_price(7, 0, 1.0, &mut out), Err(EngineError::Unknown { what: "symbol", id: 7 }));
    let fill = COSTS.buy(100.0, 100.0);
    assert_eq!(e.apply_open(2, s, 0, &fill, 0.03, 1.0), Err(EngineError::Unknown { what: "variant", id: 2 }));
    assert_eq!(e.apply_open(0, 3, 0, &fill, 0.03, 1.0), Err(EngineError::Unknown { what: "symbol", id: 3 }));
    let sell = COSTS.sell(100.0, 1.0);
    assert_eq!(
        e.apply_close(2, s, 0, &sell, ExitReason::HardStop),
        Err(EngineError::Unknown { what: "variant", id: 2 })
    );
    assert_eq!(e.set_balance(2, 1.0), Err(EngineError::Unknown { what: "variant", id: 2 }));
    assert!(matches!(e.set_guard(0, 9, false, None), Err(EngineError::Unknown { what: "symbol", id: 9 })));
    assert!(matches!(
        e.apply_close(0, s, 0, &sell, ExitReason::HardStop),
        Err(EngineError::InvalidParam { name: "close", .. })
    ));

    // Signals only once per candle, and only after its exits.
    assert!(matches!(e.signals(s, &mut out), Err(EngineError::InvalidParam { name: "signals", .. })));
    e.exits(s, &flat(5), &mut out).unwrap();
    e.signals(s, &mut out).unwrap();
    assert!(matches!(e.signals(s, &mut out), Err(EngineError::InvalidParam { name: "signals", .. })));

    // A candle at or before the last one is refused and changes nothing.
    assert_eq!(e.exits(s, &flat(5), &mut out), Err(EngineError::Unsorted { index: 0 }));
    assert_eq!(e.exits(s, &flat(4), &mut out), Err(EngineError::Unsorted { index: 0 }));
    assert!(matches!(e.signals(s, &mut out), Err(EngineError::InvalidParam { name: "signals", .. })));
    e.exits(s, &flat(6), &mut out).unwrap();
    e.signals(s, &mut out).unwrap();
    assert!(out.is_empty());

    // A second open of the same (variant, symbol) is refused and debits nothing.
    e.apply_open(0, s, 7 * TF, &fill, 0.03, 1.0).unwrap();
    let balance = e.balance(0);
    assert!(matches!(
        e.apply_open(0, s, 8 * TF, &fill, 0.03, 1.0),
        Err(EngineError::InvalidParam { name: "open", .. })
    ));
    assert_eq!(e.balance(0), balance);
    assert_eq!(e.open_symbols(0), &[s]);
}

/// `position` (and `atr`) index the cell table as `symbol * variants + variant` without checking
/// the variant: variant `n` of symbol 0 reads variant 0 of symbol 1.
#[test]
fn an_unknown_variant_has_no_position() {
    let mut e = Engine::new(vec![stair_variant("a"), stair_variant("b")]).unwrap();
    let a = e.add_symbol("A/USDT", TF).unwrap();
    let b = e.add_symbol("B/USDT", TF).unwrap();
    e.apply_open(0, b, 0, &COSTS.buy(100.0, 100.0), 0.5, 1.0).unwrap();
    assert!(e.position(0, b).is_some());
    assert_eq!(e.position(2, a), None, "variant 2 does not exist");
}

#[test]
fn errors_for_bad_parameters() {
    assert!(matches!(Engine::new(vec![]), Err(EngineError::InvalidParam { name: "variants", .. })));
    assert!(matches!(
        Engine::new(vec![variant("a"), variant("a")]),
        Err(EngineError::InvalidParam { name: "variants", .. })
    ));
    let mut e = Engine::new(vec![variant("a")]).unwrap();
    assert!(matches!(e.add_symbol("X/USDT", 0), Err(EngineError::InvalidParam { name: "timeframe", .. })));
    assert!(matches!(e.add_symbol("", TF), Err(EngineError::InvalidParam { name: "symbol", .. })));

    type Breaks = fn(&mut VariantParams);
    let cases: [(&str, Breaks); 12] = [
        ("name", |p| p.name.clear()),
        ("stop_k", |p| p.stop_k = -1.0),
        ("stop_floor", |p| p.stop_floor = 0.07),
        ("stop_floor", |p| p.stop_cap = 1.0),
        ("lookback", |p| p.breakout.lookback = 0),
        ("atr_min_pct", |p| p.breakout.atr_min_pct = 0.2),
        ("max_open", |p| p.max_open = 0),
        ("stake", |p| p.stake = 0.0),
        ("starting_balance", |p| p.starting_balance = f64::NAN),
        ("fee_rate", |p| p.costs.fee_rate = 0.5),
        ("atr_period", |p| p.atr_period = 0),
        ("trail_mult", |p| p.trail.trail_mult = 0.0),
    ];
    for (field, break_it) in cases {
        let mut p = variant("a");
        break_it(&mut p);
        assert!(
            matches!(Engine::new(vec![p]), Err(EngineError::InvalidParam { name, .. }) if name == field),
            "{field}"
        );
    }
}

/// Candles of a random walk, valid by construction: per candle a return and the two wicks.
fn walk(start: f64, steps: &[(f64, f64, f64)]) -> Vec<Candle> {
    let mut price = start;
    let mut out = Vec::with_capacity(steps.len());
    for (i, &(ret, up, down)) in steps.iter().enumerate() {
        let c = walk_candle(i as i64 * TF, price, ret, up, down, 100.0);
        price = c.close;
        out.push(c);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over any path, the highest price and the stop level never move down while the position is
    /// open, and an exit is always at or below the level it was tested against.
    #[test]
    fn stops_never_move_down(steps in proptest::collection::vec((-0.05f64..0.06, 0.0f64..0.03, 0.0f64..0.03), 1..120)) {
        let (mut e, s, _, step) = after_spike(vec![variant("v")]);
        apply_open(&mut e, &step.signals[0]);
        let mut last = *e.position(0, s).unwrap();
        for (i, c) in walk(110.0, &steps).into_iter().enumerate() {
            let c = Candle { open_time: (21 + i as i64) * TF, ..c };
            let mut closes = Vec::new();
            e.exits(s, &c, &mut closes).unwrap();
            if let [Intent::Close { price, reason, .. }] = closes[..] {
                let (level, why) = last.stop.level();
                prop_assert_eq!(reason, why);
                prop_assert!(price <= level);
                prop_assert!(price == c.open || price == level);
                break;
            }
            prop_assert!(closes.is_empty());
            let now = *e.position(0, s).unwrap();
            prop_assert!(now.stop.highest >= last.stop.highest);
            prop_assert!(now.stop.trail_stop >= last.stop.trail_stop);
            prop_assert!(now.stop.level().0 >= last.stop.level().0);
            prop_assert_eq!(now.stop.hard_stop_price, last.stop.hard_stop_price);
            last = now;
            e.signals(s, &mut closes).unwrap();
        }
    }
}
