//! Paper fills: slippage and taker fee, the same arithmetic for replay and the daemon's broker.

/// Fee and slippage of a variant, as fractions (0.001 = 0.1 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub fee_rate: f64,
    pub slippage: f64,
}

/// A market buy of `stake` quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuyFill {
    pub price: f64,
    /// The quote amount put at risk (before the fee).
    pub stake: f64,
    pub qty: f64,
    pub fee: f64,
    /// What the account pays: stake + fee.
    pub cost: f64,
}

/// A market sell of `qty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SellFill {
    pub price: f64,
    pub gross: f64,
    pub fee: f64,
    /// What the account receives: gross - fee.
    pub proceeds: f64,
}

impl Costs {
    /// The account balance a buy of `stake` needs: exactly what [`Costs::buy`] debits
    /// (`stake + fee`), so a balance that passes the test never goes below zero.
    #[inline]
    pub fn required(&self, stake: f64) -> f64 {
        stake + stake * self.fee_rate
    }

    /// Buy `stake` quote at reference price `price` (pays slippage up).
    #[inline]
    pub fn buy(&self, price: f64, stake: f64) -> BuyFill {
        let fill = price * (1.0 + self.slippage);
        let fee = stake * self.fee_rate;
        BuyFill { price: fill, stake, qty: stake / fill, fee, cost: stake + fee }
    }

    /// Sell `qty` at reference price `price` (pays slippage down).
    #[inline]
    pub fn sell(&self, price: f64, qty: f64) -> SellFill {
        let fill = price * (1.0 - self.slippage);
        let gross = qty * fill;
        let fee = gross * self.fee_rate;
        SellFill { price: fill, gross, fee, proceeds: gross - fee }
    }
}

/// A round trip's P&L and fees: proceeds (`gross − exit_fee`) minus cost (`stake + entry_fee`), and
/// `entry_fee + exit_fee`. The one P&L rule: the engine's closed trades and the database's rows.
#[inline]
pub fn round_trip(stake: f64, entry_fee: f64, gross: f64, exit_fee: f64) -> (f64, f64) {
    ((gross - exit_fee) - (stake + entry_fee), entry_fee + exit_fee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_costs_fees_and_slippage() {
        let c = Costs { fee_rate: 0.001, slippage: 0.0005 };
        let b = c.buy(2.0, 100.0);
        assert!((b.price - 2.001).abs() < 1e-12);
        assert!((b.cost - 100.1).abs() < 1e-12);
        let s = c.sell(2.0, b.qty);
        let pnl = s.proceeds - b.cost;
        // Flat price: lose two fees and two slippages.
        assert!(pnl < 0.0 && pnl > -0.35);
    }
}
