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
        match self.problem() {
            None => Ok(()),
            Some(p) => Err(p.error(index)),
        }
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

/// The first rule a candle row breaks, in the order [`Candle::validate`] checks them (then the time
/// order of a series). One vocabulary for every reader of candles: files, the exchange, the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleProblem {
    /// A price or the volume is NaN or infinite.
    NotFinite(&'static str),
    /// A price is zero or negative.
    NotPositive(&'static str),
    NegativeVolume,
    HighBelowLow,
    OpenOutsideRange,
    CloseOutsideRange,
    /// The same open time as the candle before it.
    DuplicateTime,
    /// An open time before the candle before it.
    OutOfOrder,
}

impl CandleProblem {
    /// The short name exchange counters and logs use (open and close outside the range are one kind).
    pub fn code(self) -> &'static str {
        match self {
            Self::NotFinite(_) => "not_finite",
            Self::NotPositive(_) => "not_positive",
            Self::NegativeVolume => "negative_volume",
            Self::HighBelowLow => "high_below_low",
            Self::OpenOutsideRange | Self::CloseOutsideRange => "outside_range",
            Self::DuplicateTime => "duplicate",
            Self::OutOfOrder => "out_of_order",
        }
    }

    /// The field the problem is in.
    pub fn field(self) -> &'static str {
        match self {
            Self::NotFinite(f) | Self::NotPositive(f) => f,
            Self::NegativeVolume => "volume",
            Self::OpenOutsideRange => "open",
            Self::CloseOutsideRange => "close",
            Self::HighBelowLow => "high",
            Self::DuplicateTime | Self::OutOfOrder => "time",
        }
    }

    /// One line for a person: `open is not finite`, `high < low`, `candle times out of order` …
    pub fn message(self) -> String {
        match self {
            Self::NotFinite(f) => format!("{f} is not finite"),
            Self::NotPositive(f) => format!("{f} is not positive"),
            Self::NegativeVolume => "volume is negative".into(),
            Self::HighBelowLow => "high < low".into(),
            Self::OpenOutsideRange => "open outside [low, high]".into(),
            Self::CloseOutsideRange => "close outside [low, high]".into(),
            Self::DuplicateTime => "duplicate candle time".into(),
            Self::OutOfOrder => "candle times out of order".into(),
        }
    }

    /// The engine error for this problem at row `index`.
    pub fn error(self, index: usize) -> EngineError {
        match self {
            Self::NotFinite(field) => EngineError::NonFinite { field, index },
            Self::NotPositive(field) => EngineError::NonPositive { field, index },
            Self::NegativeVolume => EngineError::NonPositive { field: "volume", index },
            Self::HighBelowLow => EngineError::OutOfRange { what: "high < low", index },
            Self::OpenOutsideRange => EngineError::OutOfRange { what: "open outside [low, high]", index },
            Self::CloseOutsideRange => EngineError::OutOfRange { what: "close outside [low, high]", index },
            Self::DuplicateTime | Self::OutOfOrder => EngineError::Unsorted { index },
        }
    }
}

impl Candle {
    /// The first rule this candle breaks, or None (the checks of [`Candle::validate`], in its order).
    pub fn problem(&self) -> Option<CandleProblem> {
        for (field, v) in [("open", self.open), ("high", self.high), ("low", self.low), ("close", self.close)]
        {
            if !v.is_finite() {
                return Some(CandleProblem::NotFinite(field));
            }
            if v <= 0.0 {
                return Some(CandleProblem::NotPositive(field));
            }
        }
        if !self.volume.is_finite() {
            return Some(CandleProblem::NotFinite("volume"));
        }
        if self.volume < 0.0 {
            return Some(CandleProblem::NegativeVolume);
        }
        if self.high < self.low {
            return Some(CandleProblem::HighBelowLow);
        }
        if self.open < self.low || self.open > self.high {
            return Some(CandleProblem::OpenOutsideRange);
        }
        if self.close < self.low || self.close > self.high {
            return Some(CandleProblem::CloseOutsideRange);
        }
        None
    }
}

/// The first bad row of a candle series given as columns, and what is wrong with it: the row rules
/// of [`Candle::problem`], then strictly increasing open times. Columns of unequal length are an error.
/// Branch-free over valid rows ([`Candle::is_valid`]); the culprit is looked for only when one fails.
pub fn first_problem(
    time: &[i64],
    open: &[f64],
    high: &[f64],
    low: &[f64],
    close: &[f64],
    volume: &[f64],
) -> Result<Option<(usize, CandleProblem)>, EngineError> {
    let n = time.len();
    for (field, col) in [("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)] {
        if col.len() != n {
            return Err(EngineError::LengthMismatch { expected: n, field, got: col.len() });
        }
    }
    for i in 0..n {
        let c = Candle {
            open_time: time[i],
            open: open[i],
            high: high[i],
            low: low[i],
            close: close[i],
            volume: volume[i],
        };
        if !c.is_valid() {
            if let Some(p) = c.problem() {
                return Ok(Some((i, p)));
            }
        }
        if i > 0 && time[i] <= time[i - 1] {
            let p =
                if time[i] == time[i - 1] { CandleProblem::DuplicateTime } else { CandleProblem::OutOfOrder };
            return Ok(Some((i, p)));
        }
    }
    Ok(None)
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
    fn first_problem_finds_the_first_bad_row_and_time_order() {
        let t = [0, 1, 2, 2];
        let ok = [1.0; 4];
        assert_eq!(first_problem(&t[..3], &ok[..3], &ok[..3], &ok[..3], &ok[..3], &ok[..3]), Ok(None));
        assert_eq!(first_problem(&t, &ok, &ok, &ok, &ok, &ok), Ok(Some((3, CandleProblem::DuplicateTime))));
        let low = [1.0, 1.0, 0.5, 2.0];
        assert_eq!(first_problem(&t, &ok, &ok, &low, &ok, &ok), Ok(Some((3, CandleProblem::HighBelowLow))));
        let back = [0, 5, 3];
        assert_eq!(
            first_problem(&back, &ok[..3], &ok[..3], &ok[..3], &ok[..3], &ok[..3]),
            Ok(Some((2, CandleProblem::OutOfOrder)))
        );
        assert!(matches!(
            first_problem(&t, &ok[..3], &ok, &ok, &ok, &ok),
            Err(EngineError::LengthMismatch { field: "open", .. })
        ));
        assert_eq!(CandleProblem::NegativeVolume.message(), "volume is negative");
        assert_eq!(CandleProblem::OpenOutsideRange.code(), CandleProblem::CloseOutsideRange.code());
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
