//! A variant's posture: every parameter its decisions read, and the checks that refuse the
//! values that cannot work.

use crate::breakout::BreakoutParams;
use crate::error::EngineError;
use crate::fills::Costs;
use crate::stops::TrailParams;

/// Everything one variant's posture decides (config/variants/*.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantParams {
    pub name: String,
    pub stop_k: f64,
    pub stop_floor: f64,
    pub stop_cap: f64,
    pub breakout: BreakoutParams,
    pub max_open: usize,
    pub cooldown_candles: u32,
    pub stake: f64,
    pub starting_balance: f64,
    pub costs: Costs,
    pub atr_period: usize,
    pub trail: TrailParams,
    /// 0 = off.
    pub time_stop_candles: u32,
}

impl VariantParams {
    /// Rejects values that cannot work (the config layer reports them with file and field first).
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |name, reason: &str| Err(EngineError::InvalidParam { name, reason: reason.into() });
        if self.name.is_empty() {
            return bad("name", "empty variant name");
        }
        if !(self.stop_k.is_finite() && self.stop_k >= 0.0) {
            return bad("stop_k", "must be a finite number >= 0");
        }
        if !(self.stop_floor > 0.0 && self.stop_floor <= self.stop_cap && self.stop_cap < 1.0) {
            return bad("stop_floor", "need 0 < floor <= cap < 1");
        }
        self.breakout.validate()?;
        if self.max_open == 0 {
            return bad("max_open", "must be at least 1");
        }
        if !(self.stake.is_finite() && self.stake > 0.0) {
            return bad("stake", "must be a finite number > 0");
        }
        if !(self.starting_balance.is_finite() && self.starting_balance >= 0.0) {
            return bad("starting_balance", "must be a finite number >= 0");
        }
        let c = self.costs;
        if !(c.fee_rate.is_finite() && (0.0..0.5).contains(&c.fee_rate)) {
            return bad("fee_rate", "must be in [0, 0.5)");
        }
        if !(c.slippage.is_finite() && (0.0..0.5).contains(&c.slippage)) {
            return bad("slippage", "must be in [0, 0.5)");
        }
        if self.atr_period == 0 {
            return bad("atr_period", "must be at least 1");
        }
        if !(self.trail.activation.is_finite() && self.trail.activation >= 0.0) {
            return bad("trail_activation", "must be a finite number >= 0");
        }
        if !(self.trail.trail_mult.is_finite() && self.trail.trail_mult > 0.0) {
            return bad("trail_mult", "must be a finite number > 0");
        }
        Ok(())
    }
}
