//! One closed candle and the validation every candle passes before the engine sees it.

use crate::error::EngineError;

/// A closed candle. `open_time` is UTC milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    pub open_time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl Candle {
    /// Checks the candle rules of `docs/HLD.md`; `index` names the row in the error.
    pub fn validate(&self, index: usize) -> Result<(), EngineError> {
        for (field, v) in [("open", self.open), ("high", self.high), ("low", self.low), ("close", self.close)]
        {
            check_price(field, v, index)?;
        }
        if !self.volume.is_finite() {
            return Err(EngineError::NonFinite { field: "volume", index });
        }
        if self.volume < 0.0 {
            return Err(EngineError::NonPositive { field: "volume", index });
        }
        if self.high < self.low {
            return Err(EngineError::OutOfRange { what: "high < low", index });
        }
        if self.open < self.low || self.open > self.high {
            return Err(EngineError::OutOfRange { what: "open outside [low, high]", index });
        }
        if self.close < self.low || self.close > self.high {
            return Err(EngineError::OutOfRange { what: "close outside [low, high]", index });
        }
        Ok(())
    }
}

impl Candle {
    /// `validate(_).is_ok()`, without branches: prices finite and positive, volume finite and
    /// non-negative, low <= open, close <= high (every comparison with a NaN is false). Lets a
    /// loop over many candles vectorise and look for the culprit only when something is wrong.
    #[inline(always)]
    pub fn is_valid(&self) -> bool {
        (self.low > 0.0)
            & (self.high < f64::INFINITY)
            & (self.low <= self.open)
            & (self.open <= self.high)
            & (self.low <= self.close)
            & (self.close <= self.high)
            & (self.volume >= 0.0)
            & (self.volume < f64::INFINITY)
    }
}

/// A price must be finite and strictly positive.
#[inline]
pub fn check_price(field: &'static str, v: f64, index: usize) -> Result<(), EngineError> {
    if !v.is_finite() {
        Err(EngineError::NonFinite { field, index })
    } else if v <= 0.0 {
        Err(EngineError::NonPositive { field, index })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(o: f64, h: f64, l: f64, cl: f64, v: f64) -> Candle {
        Candle { open_time: 0, open: o, high: h, low: l, close: cl, volume: v }
    }

    #[test]
    fn is_valid_agrees_with_validate() {
        let values = [f64::NAN, f64::NEG_INFINITY, -1.0, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0, f64::INFINITY];
        let mut n = 0;
        for &o in &values {
            for &h in &values {
                for &l in &values {
                    for &cl in &values {
                        for &v in &[f64::NAN, -1.0, 0.0, 3.0, f64::INFINITY] {
                            let x = c(o, h, l, cl, v);
                            assert_eq!(x.is_valid(), x.validate(0).is_ok(), "{x:?}");
                            n += usize::from(x.is_valid());
                        }
                    }
                }
            }
        }
        assert!(n > 0);
    }

    #[test]
    fn accepts_valid_and_names_bad_fields() {
        assert!(c(1.0, 2.0, 0.5, 1.5, 0.0).validate(0).is_ok());
        assert_eq!(
            c(f64::NAN, 2.0, 0.5, 1.5, 1.0).validate(3),
            Err(EngineError::NonFinite { field: "open", index: 3 })
        );
        assert_eq!(
            c(1.0, 2.0, -0.5, 1.5, 1.0).validate(4),
            Err(EngineError::NonPositive { field: "low", index: 4 })
        );
        assert!(matches!(c(1.0, 0.9, 1.1, 1.0, 1.0).validate(0), Err(EngineError::OutOfRange { .. })));
        assert!(matches!(c(1.0, 2.0, 0.5, 2.5, 1.0).validate(0), Err(EngineError::OutOfRange { .. })));
        assert!(matches!(c(1.0, 2.0, 0.5, 1.5, -1.0).validate(0), Err(EngineError::NonPositive { .. })));
    }
}
