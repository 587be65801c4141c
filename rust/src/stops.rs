//! Exits: the ATR-relative hard stop (fix G) and the ATR trailing stop.

/// Smallest hard stop, as a fraction of the entry price.
pub const STOP_FLOOR_PCT: f64 = 0.03;
/// Largest hard stop, as a fraction of the entry price.
pub const STOP_CAP_PCT: f64 = 0.06;

/// `min(cap, max(floor, k * atr_pct))`: the hard stop distance, frozen at entry.
#[inline]
pub fn hard_stop_pct(atr_pct: f64, k: f64, floor: f64, cap: f64) -> f64 {
    let raw = k * atr_pct;
    let lifted = if raw > floor { raw } else { floor };
    if lifted < cap {
        lifted
    } else {
        cap
    }
}

/// The hard stop's price level: `entry_price × (1 − stop_pct)`, frozen at entry.
#[inline]
pub fn hard_stop_price(entry_price: f64, stop_pct: f64) -> f64 {
    entry_price * (1.0 - stop_pct)
}

/// Why a position closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    HardStop,
    AtrTrail,
    TimeStop,
    /// Sold at the market because the operator asked (never decided by the engine).
    Manual,
}

impl ExitReason {
    /// Every reason, in the order of their codes (`reason as usize`).
    pub const ALL: [ExitReason; 4] = [Self::HardStop, Self::AtrTrail, Self::TimeStop, Self::Manual];

    /// The name stored in the database and written to reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardStop => "hard_stop",
            Self::AtrTrail => "atr_trail",
            Self::TimeStop => "time_stop",
            Self::Manual => "manual",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hard_stop" => Some(Self::HardStop),
            "atr_trail" => Some(Self::AtrTrail),
            "time_stop" => Some(Self::TimeStop),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// Trail parameters of a variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrailParams {
    /// The trail activates once the highest price is this many ATRs above entry.
    pub activation: f64,
    /// Distance of the trail below the highest price, in ATRs.
    pub trail_mult: f64,
}

/// The stop state of one open position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopState {
    pub entry_price: f64,
    pub hard_stop_price: f64,
    pub highest: f64,
    pub trail_active: bool,
    pub trail_stop: f64,
}

/// A stop that was hit: the reference fill price and the reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopHit {
    pub price: f64,
    pub reason: ExitReason,
}

impl StopState {
    /// A fresh position: only the hard stop at `entry_price * (1 - stop_pct)`.
    pub fn new(entry_price: f64, stop_pct: f64) -> Self {
        Self {
            entry_price,
            hard_stop_price: hard_stop_price(entry_price, stop_pct),
            highest: entry_price,
            trail_active: false,
            trail_stop: f64::NEG_INFINITY,
        }
    }

    /// The level that closes the position now, and the reason it would give.
    #[inline]
    pub fn level(&self) -> (f64, ExitReason) {
        if self.trail_active && self.trail_stop > self.hard_stop_price {
            (self.trail_stop, ExitReason::AtrTrail)
        } else {
            (self.hard_stop_price, ExitReason::HardStop)
        }
    }

    /// Raises the highest price and the trail (never lowers either) with the ATR known now.
    #[inline]
    pub fn raise(&mut self, price: f64, atr: f64, p: TrailParams) {
        if price > self.highest {
            self.highest = price;
        }
        if !self.trail_active && self.highest >= self.entry_price + p.activation * atr {
            self.trail_active = true;
        }
        if self.trail_active {
            let candidate = self.highest - p.trail_mult * atr;
            if candidate > self.trail_stop {
                self.trail_stop = candidate;
            }
        }
    }

    /// One closed candle against the stop, in the conservative order: gap at the open, then the low
    /// against the stop as it stood, and only then the high may raise the trail.
    #[inline]
    pub fn on_candle(
        &mut self,
        open: f64,
        high: f64,
        low: f64,
        atr_prev: f64,
        p: TrailParams,
    ) -> Option<StopHit> {
        let (level, reason) = self.level();
        if open <= level {
            return Some(StopHit { price: open, reason });
        }
        if low <= level {
            return Some(StopHit { price: level, reason });
        }
        self.raise(high, atr_prev, p);
        None
    }

    /// A candle close of the symbol of an open position whose stop is `self`; `at_close` is the
    /// stop as it stood at the symbol's previous close (or at the open), and becomes `self` after.
    ///
    /// The candle's open and low are tested against the stop as it stood at the previous close,
    /// then its high may raise the trail (the conservative order). When live prices raised the stop
    /// since then (the daemon's exit pass, replay's detail), the prices they brought were tested
    /// against the stop as it rose; the candle's open came before those raises and its low may have
    /// too, so testing them against the raised stop would sell at a price from before the raise.
    #[inline]
    pub fn on_close(
        &mut self,
        at_close: &mut StopState,
        open: f64,
        high: f64,
        low: f64,
        atr_prev: f64,
        p: TrailParams,
    ) -> Option<StopHit> {
        let hit = if *self == *at_close {
            self.on_candle(open, high, low, atr_prev, p)
        } else {
            let mut start = *at_close;
            let hit = start.on_candle(open, high, low, atr_prev, p);
            if hit.is_none() {
                self.raise(high, atr_prev, p);
            }
            hit
        };
        *at_close = *self;
        hit
    }

    /// One live price between candle closes: exit at the price if at or below the stop, else raise.
    #[inline]
    pub fn on_price(&mut self, price: f64, atr: f64, p: TrailParams) -> Option<StopHit> {
        let (level, reason) = self.level();
        if price <= level {
            return Some(StopHit { price, reason });
        }
        self.raise(price, atr, p);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: TrailParams = TrailParams { activation: 1.0, trail_mult: 2.0 };

    #[test]
    fn stop_formula_clamps() {
        assert_eq!(hard_stop_pct(0.01, 1.5, STOP_FLOOR_PCT, STOP_CAP_PCT), 0.03);
        assert!((hard_stop_pct(0.03, 1.5, 0.03, 0.06) - 0.045).abs() < 1e-15);
        assert_eq!(hard_stop_pct(0.05, 2.5, 0.03, 0.06), 0.06);
        assert_eq!(hard_stop_pct(0.02, 0.0, 0.03, 0.03), 0.03);
    }

    #[test]
    fn gap_fills_at_open_and_low_before_high() {
        let mut s = StopState::new(100.0, 0.05);
        // Opens below the stop: filled at the open, not at the stop.
        assert_eq!(
            s.on_candle(90.0, 101.0, 89.0, 2.0, P),
            Some(StopHit { price: 90.0, reason: ExitReason::HardStop })
        );
        // Low touches the stop although the high would have activated the trail: hard stop.
        let mut s = StopState::new(100.0, 0.05);
        assert_eq!(
            s.on_candle(100.0, 110.0, 95.0, 2.0, P),
            Some(StopHit { price: 95.0, reason: ExitReason::HardStop })
        );
    }

    #[test]
    fn trail_activates_and_exits() {
        let mut s = StopState::new(100.0, 0.05);
        assert_eq!(s.on_candle(100.0, 101.0, 99.0, 2.0, P), None);
        assert!(!s.trail_active);
        assert_eq!(s.on_candle(101.0, 106.0, 100.0, 2.0, P), None);
        assert!(s.trail_active);
        assert_eq!(s.trail_stop, 102.0);
        assert_eq!(
            s.on_candle(105.0, 105.5, 101.0, 2.0, P),
            Some(StopHit { price: 102.0, reason: ExitReason::AtrTrail })
        );
    }

    proptest! {
        #[test]
        fn stop_pct_within_bounds(atr in 0.0f64..1.0, k in 0.0f64..10.0) {
            let s = hard_stop_pct(atr, k, STOP_FLOOR_PCT, STOP_CAP_PCT);
            prop_assert!((STOP_FLOOR_PCT..=STOP_CAP_PCT).contains(&s));
        }

        #[test]
        fn trail_never_moves_down(moves in proptest::collection::vec((0.9f64..1.1, 0.001f64..0.05), 1..200)) {
            let mut s = StopState::new(100.0, 0.06);
            let mut price = 100.0;
            let mut last_level = s.level().0;
            for (m, atr_pct) in moves {
                price *= m;
                if s.on_price(price, price * atr_pct, P).is_some() { break; }
                let level = s.level().0;
                prop_assert!(level >= last_level);
                last_level = level;
            }
        }
    }
}
