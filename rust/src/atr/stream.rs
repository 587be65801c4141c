//! The streaming form: one candle at a time, the reference arithmetic.

use super::{check_period, smoothing, true_range};
use crate::candle::check_price;
use crate::error::EngineError;

/// Streaming ATR: feed candles one at a time.
#[derive(Debug, Clone)]
pub struct Atr {
    period: usize,
    k1: f64,
    k2: f64,
    prev_close: f64,
    seen: usize,
    sum: f64,
    value: f64,
}

impl Atr {
    /// A new, empty ATR of `period` (>= 1).
    pub fn new(period: usize) -> Result<Self, EngineError> {
        check_period(period)?;
        let (k1, k2) = smoothing(period);
        Ok(Self { period, k1, k2, prev_close: f64::NAN, seen: 0, sum: 0.0, value: f64::NAN })
    }

    /// The period this ATR was built with.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Current value (NaN until `ready`).
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// True once `period + 1` candles have been seen.
    #[inline]
    pub fn ready(&self) -> bool {
        self.seen > self.period
    }

    /// Feeds one candle after validating it; returns the new value (NaN until ready).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Result<f64, EngineError> {
        let index = self.seen;
        check_price("high", high, index)?;
        check_price("low", low, index)?;
        check_price("close", close, index)?;
        if high < low {
            return Err(EngineError::OutOfRange { what: "high < low", index });
        }
        Ok(self.update_unchecked(high, low, close))
    }

    /// Feeds one already-validated candle.
    #[inline]
    pub fn update_unchecked(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let seen = self.seen;
        self.seen = seen + 1;
        if seen == 0 {
            self.prev_close = close;
            return f64::NAN;
        }
        let tr = true_range(high, low, self.prev_close);
        self.prev_close = close;
        if seen < self.period {
            self.sum += tr;
        } else if seen == self.period {
            self.sum += tr;
            self.value = self.sum / self.period as f64;
        } else {
            self.value = self.value * self.k1 + tr * self.k2;
        }
        self.value
    }
}
