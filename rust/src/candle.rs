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
