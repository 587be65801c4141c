//! Wilder's Average True Range, TA-Lib compatible (see `docs/HLD.md`).
//!
//! Three forms: the streaming [`Atr`] (O(1) update, no allocation), [`atr`] over one series and
//! [`atr_many`] over many series at once (rows = symbols). Outputs before index `period` are NaN.

use crate::candle::check_price;
use crate::error::EngineError;

/// The ATR period Sigil uses unless configured otherwise.
pub const DEFAULT_PERIOD: usize = 14;

/// Wilder's smoothing constants `(k1, k2) = ((n-1)/n, 1/n)`, one division each.
#[inline]
pub fn smoothing(period: usize) -> (f64, f64) {
    let n = period as f64;
    ((n - 1.0) / n, 1.0 / n)
}

fn check_period(period: usize) -> Result<(), EngineError> {
    if period == 0 {
        return Err(EngineError::InvalidParam { name: "period", reason: "must be at least 1".into() });
    }
    Ok(())
}

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

/// `max(high, prev_close) - min(low, prev_close)`.
#[inline(always)]
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let hi = if high > prev_close { high } else { prev_close };
    let lo = if low < prev_close { low } else { prev_close };
    hi - lo
}

/// Validates one series for ATR: equal lengths, finite positive prices, `high >= low`.
pub fn validate_hlc(high: &[f64], low: &[f64], close: &[f64]) -> Result<(), EngineError> {
    let n = high.len();
    if low.len() != n {
        return Err(EngineError::LengthMismatch { expected: n, field: "low", got: low.len() });
    }
    if close.len() != n {
        return Err(EngineError::LengthMismatch { expected: n, field: "close", got: close.len() });
    }
    // One cheap branch-free pass decides; only a bad series pays for finding the index.
    let mut ok = true;
    for i in 0..n {
        let (h, l, c) = (high[i], low[i], close[i]);
        ok &= (h.is_finite() & l.is_finite() & c.is_finite()) & (l > 0.0) & (c > 0.0) & (h >= l);
    }
    if ok {
        return Ok(());
    }
    for i in 0..n {
        check_price("high", high[i], i)?;
        check_price("low", low[i], i)?;
        check_price("close", close[i], i)?;
        if high[i] < low[i] {
            return Err(EngineError::OutOfRange { what: "high < low", index: i });
        }
    }
    Ok(())
}

/// ATR over one validated series into `out` (same length).
pub fn atr_into(high: &[f64], low: &[f64], close: &[f64], period: usize, out: &mut [f64]) {
    let n = close.len();
    let warm = period.min(n);
    out[..warm].fill(f64::NAN);
    if n <= period {
        return;
    }
    let mut sum = 0.0;
    for i in 1..=period {
        sum += true_range(high[i], low[i], close[i - 1]);
    }
    let (k1, k2) = smoothing(period);
    let mut a = sum / period as f64;
    out[period] = a;
    for i in period + 1..n {
        a = a * k1 + true_range(high[i], low[i], close[i - 1]) * k2;
        out[i] = a;
    }
}

/// ATR over one series; validates first.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>, EngineError> {
    check_period(period)?;
    validate_hlc(high, low, close)?;
    let mut out = vec![0.0; close.len()];
    atr_into(high, low, close, period, &mut out);
    Ok(out)
}

/// ATR over many series of equal length stored row-major (`rows` series of `cols` bars each).
/// Errors name the row and the index inside it.
pub fn atr_many(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    rows: usize,
    cols: usize,
    period: usize,
) -> Result<Vec<f64>, EngineError> {
    check_period(period)?;
    let total = rows * cols;
    for (field, a) in [("high", high), ("low", low), ("close", close)] {
        if a.len() != total {
            return Err(EngineError::LengthMismatch { expected: total, field, got: a.len() });
        }
    }
    let mut out = vec![0.0; total];
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        validate_hlc(&high[s.clone()], &low[s.clone()], &close[s.clone()]).map_err(|e| row_error(e, r))?;
        atr_into(&high[s.clone()], &low[s.clone()], &close[s.clone()], period, &mut out[s]);
    }
    Ok(out)
}

fn row_error(e: EngineError, row: usize) -> EngineError {
    match e {
        EngineError::NonFinite { field, index } => {
            EngineError::InvalidParam { name: field, reason: format!("row {row}, index {index}: not finite") }
        }
        EngineError::NonPositive { field, index } => {
            EngineError::InvalidParam { name: field, reason: format!("row {row}, index {index}: not positive") }
        }
        EngineError::OutOfRange { what, index } => {
            EngineError::InvalidParam { name: "high", reason: format!("row {row}, index {index}: {what}") }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut h = Vec::new();
        let mut l = Vec::new();
        let mut c = Vec::new();
        let mut p = 100.0f64;
        for i in 0..n {
            p *= 1.0 + 0.01 * ((i * 7919 % 13) as f64 - 6.0) / 6.0;
            h.push(p * 1.012);
            l.push(p * 0.991);
            c.push(p);
        }
        (h, l, c)
    }

    /// The textbook definition, computed the slow way.
    fn reference(h: &[f64], l: &[f64], c: &[f64], n: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; c.len()];
        if c.len() <= n {
            return out;
        }
        let tr: Vec<f64> =
            (1..c.len()).map(|i| h[i].max(c[i - 1]) - l[i].min(c[i - 1])).collect();
        let mut a = tr[..n].iter().sum::<f64>() / n as f64;
        out[n] = a;
        for i in n + 1..c.len() {
            a = (a * (n as f64 - 1.0) + tr[i - 1]) / n as f64;
            out[i] = a;
        }
        out
    }

    #[test]
    fn batch_matches_textbook_and_streaming() {
        let (h, l, c) = series(500);
        for period in [1, 2, 14, 50] {
            let b = atr(&h, &l, &c, period).unwrap();
            let r = reference(&h, &l, &c, period);
            let mut s = Atr::new(period).unwrap();
            for i in 0..c.len() {
                let v = s.update(h[i], l[i], c[i]).unwrap();
                if i < period {
                    assert!(b[i].is_nan() && v.is_nan() && r[i].is_nan());
                    assert!(!s.ready());
                } else {
                    assert!(((b[i] - r[i]) / r[i]).abs() < 1e-12, "period {period} i {i}");
                    assert_eq!(v.to_bits(), b[i].to_bits());
                    assert!(s.ready());
                }
            }
        }
    }

    #[test]
    fn short_series_is_all_nan() {
        let (h, l, c) = series(10);
        assert!(atr(&h, &l, &c, 14).unwrap().iter().all(|v| v.is_nan()));
        assert!(atr(&[], &[], &[], 14).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_index() {
        let (mut h, l, c) = series(30);
        h[17] = f64::NAN;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::NonFinite { field: "high", index: 17 }));
        h[17] = l[17] * 0.5;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::OutOfRange { what: "high < low", index: 17 }));
        let (h, l, mut c) = series(30);
        c[3] = 0.0;
        assert_eq!(atr(&h, &l, &c, 14), Err(EngineError::NonPositive { field: "close", index: 3 }));
        assert!(matches!(atr(&h, &l[..5], &c, 14), Err(EngineError::LengthMismatch { .. })));
        assert!(atr(&h, &l, &c, 0).is_err());
        let mut s = Atr::new(14).unwrap();
        assert!(s.update(1.0, 2.0, 1.5).is_err());
    }

    #[test]
    fn many_equals_rows() {
        let (h, l, c) = series(300);
        let rows = 3;
        let cols = 100;
        let m = atr_many(&h, &l, &c, rows, cols, 14).unwrap();
        for r in 0..rows {
            let s = r * cols..(r + 1) * cols;
            let one = atr(&h[s.clone()], &l[s.clone()], &c[s.clone()], 14).unwrap();
            for (a, b) in one.iter().zip(&m[s]) {
                assert!(a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-12 * a.abs());
            }
        }
    }
}
