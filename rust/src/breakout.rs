//! The breakout detector: close above the highest high of the previous `lookback` candles, on
//! volume, inside an ATR band. O(1) amortised per candle: a monotonic deque keeps the rolling
//! maximum, a running sum keeps the volume mean. The window ([`Window`]) and the rule
//! ([`BreakoutParams::fires`]) are apart, so variants with one lookback share a window.

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

/// The reference levels a candle is judged against: the previous `lookback` candles' highest high
/// and mean volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub highest: f64,
    pub mean_volume: f64,
}

impl BreakoutParams {
    /// The rule: does a candle closing at `close` on `volume`, with `atr` (including this candle),
    /// break out of `levels`?
    #[inline]
    pub fn fires(&self, levels: Levels, close: f64, volume: f64, atr: f64) -> bool {
        let atr_pct = atr / close;
        close > levels.highest * (1.0 + self.buffer)
            && volume >= self.volume_mult * levels.mean_volume
            && atr_pct >= self.atr_min_pct
            && atr_pct <= self.atr_max_pct
    }
}

/// The rolling window of one symbol's last `lookback` candles: highest high and volume sum.
///
/// It depends on the lookback only, so every variant with the same lookback can share one per
/// symbol (the engine does); the thresholds of the rule are the variant's.
#[derive(Debug, Clone)]
pub struct Window {
    lookback: usize,
    seq: u64,
    /// The monotonic deque of the rolling maximum: (sequence number, high), highs strictly
    /// decreasing from front to back, in a fixed power-of-two ring (no growth checks on the hot path).
    maxq: Box<[(u64, f64)]>,
    mask: usize,
    head: usize,
    len: usize,
    /// The last `lookback` volumes, oldest at `vpos` once full.
    vols: Box<[f64]>,
    vpos: usize,
    vfilled: usize,
    vsum: f64,
}

impl Window {
    /// An empty window (`lookback` >= 1); buffers are sized once here, never again.
    pub fn new(lookback: usize) -> Self {
        let cap = (lookback + 1).next_power_of_two();
        Self {
            lookback,
            seq: 0,
            maxq: vec![(0, 0.0); cap].into_boxed_slice(),
            mask: cap - 1,
            head: 0,
            len: 0,
            vols: vec![0.0; lookback.max(1)].into_boxed_slice(),
            vpos: 0,
            vfilled: 0,
            vsum: 0.0,
        }
    }

    /// The window's length in candles.
    pub fn lookback(&self) -> usize {
        self.lookback
    }

    /// The levels of the window, once it is full.
    #[inline]
    pub fn levels(&self) -> Option<Levels> {
        (self.vfilled == self.lookback)
            .then(|| Levels { highest: self.front().1, mean_volume: self.vsum / self.lookback as f64 })
    }

    #[inline(always)]
    fn front(&self) -> (u64, f64) {
        self.maxq[self.head & self.mask]
    }

    #[inline(always)]
    fn back(&self) -> (u64, f64) {
        self.maxq[(self.head + self.len - 1) & self.mask]
    }

    /// Slides the window over a closed candle.
    #[inline]
    pub fn push(&mut self, high: f64, volume: f64) {
        let l = self.lookback;
        let seq = self.seq;
        self.seq += 1;
        while self.len > 0 && self.back().1 <= high {
            self.len -= 1;
        }
        self.maxq[(self.head + self.len) & self.mask] = (seq, high);
        self.len += 1;
        if self.front().0 + l as u64 <= seq {
            self.head = (self.head + 1) & self.mask;
            self.len -= 1;
        }
        // Same arithmetic as the spec: add the entering volume, then subtract the one leaving.
        self.vsum += volume;
        if self.vfilled < l {
            self.vols[self.vfilled] = volume;
            self.vfilled += 1;
        } else {
            self.vsum -= self.vols[self.vpos];
            self.vols[self.vpos] = volume;
            self.vpos = if self.vpos + 1 == l { 0 } else { self.vpos + 1 };
        }
    }
}

/// Streaming breakout state of one (variant, symbol): its rule over a window of its own.
#[derive(Debug, Clone)]
pub struct Breakout {
    p: BreakoutParams,
    window: Window,
}

impl Breakout {
    /// An empty detector.
    pub fn new(p: BreakoutParams) -> Self {
        Self { p, window: Window::new(p.lookback) }
    }

    /// The highest high of the window, if it is full.
    pub fn highest(&self) -> Option<f64> {
        self.window.levels().map(|l| l.highest)
    }

    /// Judges a closed candle against the previous `lookback` candles, then slides the window.
    /// `atr` is the ATR including this candle (NaN when not ready: no signal).
    #[inline]
    pub fn step(&mut self, high: f64, close: f64, volume: f64, atr: f64) -> bool {
        let signal = match self.window.levels() {
            Some(levels) if atr.is_finite() => self.p.fires(levels, close, volume, atr),
            _ => false,
        };
        self.window.push(high, volume);
        signal
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
