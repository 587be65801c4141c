//! Builders shared by the integration tests (`engine_step.rs`, `replay_run.rs`) and the replay
//! benchmark (`benches/replay.rs`, through `#[path]`): a variant, candles of a random walk, a seeded
//! number stream, and a symbol's candles as the owned columns a [`Series`] borrows.

// Each test crate and the benchmark use a different part of this module.
#![allow(dead_code)]

use sigil_engine::breakout::BreakoutParams;
use sigil_engine::engine::VariantParams;
use sigil_engine::fills::Costs;
use sigil_engine::replay::Series;
use sigil_engine::stops::TrailParams;
use sigil_engine::Candle;

/// One hour in ms.
pub const HOUR: i64 = 3_600_000;
/// The shipped fees and slippage: 0.1 % a side, 5 bps.
pub const COSTS: Costs = Costs { fee_rate: 0.001, slippage: 0.0005 };

/// The shipped `moderate` posture under `name`: ATR(14) stop of 1.5 ATR clamped to [3 %, 6 %], a
/// 20-candle breakout on 2.5x volume, 5 open at most, a cooldown of 8 candles, no time stop.
pub fn variant(name: &str) -> VariantParams {
    VariantParams {
        name: name.into(),
        stop_k: 1.5,
        stop_floor: 0.03,
        stop_cap: 0.06,
        breakout: BreakoutParams {
            lookback: 20,
            volume_mult: 2.5,
            buffer: 0.0,
            atr_min_pct: 0.005,
            atr_max_pct: 0.10,
        },
        max_open: 5,
        cooldown_candles: 8,
        stake: 100.0,
        starting_balance: 1000.0,
        costs: COSTS,
        atr_period: 14,
        trail: TrailParams { activation: 1.0, trail_mult: 2.0 },
        time_stop_candles: 0,
    }
}

/// A candle of a walk: the close moves by `ret` from `open`, the wicks reach `up` above and `down`
/// below the body (valid by construction).
pub fn walk_candle(open_time: i64, open: f64, ret: f64, up: f64, down: f64, volume: f64) -> Candle {
    let close = open * (1.0 + ret);
    Candle {
        open_time,
        open,
        high: open.max(close) * (1.0 + up),
        low: open.min(close) * (1.0 - down),
        close,
        volume,
    }
}

/// xorshift64: a seeded stream of numbers in [0, 1) (53 bits each), the same on every machine.
pub struct XorShift(u64);

impl XorShift {
    /// A stream from `seed` (made odd: the state must never be zero).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next number in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One symbol's candles as owned columns (a [`Series`] borrows them).
#[derive(Debug, Clone)]
pub struct Columns {
    pub symbol: String,
    pub tf_ms: i64,
    pub time: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl Columns {
    pub fn new(symbol: &str, tf_ms: i64) -> Self {
        Self {
            symbol: symbol.into(),
            tf_ms,
            time: vec![],
            open: vec![],
            high: vec![],
            low: vec![],
            close: vec![],
            volume: vec![],
        }
    }

    pub fn push(&mut self, c: Candle) {
        self.time.push(c.open_time);
        self.open.push(c.open);
        self.high.push(c.high);
        self.low.push(c.low);
        self.close.push(c.close);
        self.volume.push(c.volume);
    }

    pub fn series(&self) -> Series<'_> {
        Series {
            symbol: &self.symbol,
            tf_ms: self.tf_ms,
            time: &self.time,
            open: &self.open,
            high: &self.high,
            low: &self.low,
            close: &self.close,
            volume: &self.volume,
        }
    }

    pub fn candle(&self, i: usize) -> Candle {
        Candle {
            open_time: self.time[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
        }
    }
}
