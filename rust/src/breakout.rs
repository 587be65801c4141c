//! The breakout detector: close above the highest high of the previous `lookback` candles, on
//! volume, inside an ATR band. O(1) amortised per candle: a monotonic deque keeps the rolling
//! maximum, a running sum keeps the volume mean.

use std::collections::VecDeque;

use crate::error::EngineError;

/// Breakout rule of one variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakoutParams {
    pub lookback: usize,
    pub volume_mult: f64,
    /// Close must exceed the highest high by this fraction.
    pub buffer: f64,
    pub atr_min_pct: f64,
    pub atr_max_pct: f64,
}

impl BreakoutParams {
    /// Rejects a lookback of zero, negative multiples and an empty ATR band.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |name, reason: &str| Err(EngineError::InvalidParam { name, reason: reason.into() });
        if self.lookback == 0 {
            return bad("lookback", "must be at least 1");
        }
        if !(self.volume_mult.is_finite() && self.volume_mult >= 0.0) {
            return bad("volume_mult", "must be a finite number >= 0");
        }
        if !(self.buffer.is_finite() && self.buffer >= 0.0) {
            return bad("breakout_buffer", "must be a finite number >= 0");
        }
        if !(self.atr_min_pct >= 0.0 && self.atr_min_pct <= self.atr_max_pct) {
            return bad("atr_min_pct", "must be >= 0 and <= atr_max_pct");
        }
        Ok(())
    }
}

/// Streaming breakout state of one (variant, symbol).
#[derive(Debug, Clone)]
pub struct Breakout {
    p: BreakoutParams,
    seq: u64,
    /// (sequence number, high), highs strictly decreasing from front to back.
    maxq: VecDeque<(u64, f64)>,
    vols: VecDeque<f64>,
    vsum: f64,
}

impl Breakout {
    /// An empty detector; buffers are sized once here, never again.
    pub fn new(p: BreakoutParams) -> Self {
        Self {
            p,
            seq: 0,
            maxq: VecDeque::with_capacity(p.lookback + 1),
            vols: VecDeque::with_capacity(p.lookback + 1),
            vsum: 0.0,
        }
    }

    /// The highest high of the window, if it is full.
    pub fn highest(&self) -> Option<f64> {
        (self.vols.len() == self.p.lookback).then(|| self.maxq.front().map_or(f64::NAN, |x| x.1))
    }

    /// Judges a closed candle against the previous `lookback` candles, then slides the window.
    /// `atr` is the ATR including this candle (NaN when not ready: no signal).
    #[inline]
    pub fn step(&mut self, high: f64, close: f64, volume: f64, atr: f64) -> bool {
        let l = self.p.lookback;
        let signal = if self.vols.len() == l && atr.is_finite() {
            let hh = self.maxq.front().map_or(f64::INFINITY, |x| x.1);
            let atr_pct = atr / close;
            close > hh * (1.0 + self.p.buffer)
                && volume >= self.p.volume_mult * (self.vsum / l as f64)
                && atr_pct >= self.p.atr_min_pct
                && atr_pct <= self.p.atr_max_pct
        } else {
            false
        };
        self.push(high, volume);
        signal
    }

    #[inline]
    fn push(&mut self, high: f64, volume: f64) {
        let l = self.p.lookback as u64;
        let seq = self.seq;
        self.seq += 1;
        while self.maxq.back().is_some_and(|&(_, h)| h <= high) {
            self.maxq.pop_back();
        }
        self.maxq.push_back((seq, high));
        while self.maxq.front().is_some_and(|&(s, _)| s + l <= seq) {
            self.maxq.pop_front();
        }
        self.vols.push_back(volume);
        self.vsum += volume;
        if self.vols.len() > self.p.lookback {
            let old = self.vols.pop_front().unwrap_or(0.0);
            self.vsum -= old;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(lookback: usize) -> BreakoutParams {
        BreakoutParams { lookback, volume_mult: 2.0, buffer: 0.0, atr_min_pct: 0.0, atr_max_pct: 1.0 }
    }

    #[test]
    fn fires_on_close_above_range_with_volume() {
        let mut d = Breakout::new(params(3));
        for _ in 0..3 {
            assert!(!d.step(10.0, 9.5, 100.0, 0.1));
        }
        assert!(!d.step(10.5, 10.4, 150.0, 0.1), "volume too low");
        // window now 10, 10, 10.5 with volumes 100, 100, 150 (mean 116.7)
        assert!(d.step(11.0, 10.6, 240.0, 0.1));
        assert!(!d.step(11.0, 10.6, 1e9, f64::NAN), "ATR not ready");
    }

    proptest! {
        #[test]
        fn rolling_max_equals_rescan(highs in proptest::collection::vec(1.0f64..100.0, 1..300), l in 1usize..30) {
            let mut d = Breakout::new(params(l));
            for (i, &h) in highs.iter().enumerate() {
                if i >= l {
                    let want = highs[i - l..i].iter().cloned().fold(f64::MIN, f64::max);
                    prop_assert_eq!(d.highest(), Some(want));
                } else {
                    prop_assert_eq!(d.highest(), None);
                }
                d.step(h, h, 1.0, 0.01);
            }
        }
    }
}
