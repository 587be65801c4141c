//! Sigil's engine: pure Rust, no I/O, no Python.
//!
//! The same decision step ([`engine::Engine`]) drives live paper trading (through the PyO3 bindings)
//! and deterministic replay ([`replay`]). The rules are written down in `docs/HLD.md`.

pub mod atr;
pub mod breakout;
pub mod candle;
pub mod engine;
pub mod error;
pub mod features;
pub mod fills;
pub mod guard;
mod hint;
pub mod replay;
pub mod series;
pub mod stops;
pub mod variant;

pub use atr::{atr, atr_many, Atr};
pub use candle::{first_problem, Candle, CandleProblem};
pub use engine::{Engine, Intent, SkipReason, VariantParams};
pub use error::EngineError;
pub use guard::{Blocked, GuardTable};
pub use stops::{hard_stop_pct, hard_stop_price, ExitReason, STOP_CAP_PCT, STOP_FLOOR_PCT};
