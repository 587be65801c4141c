//! Errors are values: every way the engine refuses input, each naming what was wrong and where.

use std::fmt;

/// Why the engine refused its input.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// A price or volume is NaN or infinite.
    NonFinite { field: &'static str, index: usize },
    /// A price is zero or negative (or a volume negative).
    NonPositive { field: &'static str, index: usize },
    /// `high < low` (or open/close outside [low, high]).
    OutOfRange { what: &'static str, index: usize },
    /// Input arrays of different lengths.
    LengthMismatch { expected: usize, field: &'static str, got: usize },
    /// Candle times not strictly increasing.
    Unsorted { index: usize },
    /// A parameter outside its domain.
    InvalidParam { name: &'static str, reason: String },
    /// An unknown id (variant or symbol).
    Unknown { what: &'static str, id: usize },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonFinite { field, index } => write!(f, "{field}[{index}] is not finite"),
            Self::NonPositive { field, index } => write!(f, "{field}[{index}] is not positive"),
            Self::OutOfRange { what, index } => write!(f, "{what} at index {index}"),
            Self::LengthMismatch { expected, field, got } => {
                write!(f, "{field} has length {got}, expected {expected}")
            }
            Self::Unsorted { index } => {
                write!(f, "candle times not strictly increasing at index {index}")
            }
            Self::InvalidParam { name, reason } => write!(f, "invalid {name}: {reason}"),
            Self::Unknown { what, id } => write!(f, "unknown {what} id {id}"),
        }
    }
}

impl std::error::Error for EngineError {}
