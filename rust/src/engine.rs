//! The per-variant decision step: closed candles (and live prices) in, intents out.
//!
//! The engine never fills an order itself. It returns [`Intent`]s; the driver (replay in memory, or
//! the daemon through the database and the broker) carries them out and reports back with
//! [`Engine::apply_open`] / [`Engine::apply_close`]. A candle close is two calls, in this order:
//! [`Engine::exits`] (ATR update, stops) then, once the closes are applied, [`Engine::signals`].

use crate::atr::Atr;
use crate::breakout::{Breakout, BreakoutParams};
use crate::candle::Candle;
use crate::error::EngineError;
use crate::fills::{round_trip, BuyFill, Costs, SellFill};
use crate::guard::{Blocked, GuardTable};
use crate::stops::{hard_stop_pct, ExitReason, StopState, TrailParams};

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

/// Why a breakout produced no open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    Open,
    Cooldown,
    MaxOpen,
    Balance,
}

impl SkipReason {
    /// All reasons, in report order.
    pub const ALL: [SkipReason; 4] = [Self::Open, Self::Cooldown, Self::MaxOpen, Self::Balance];

    /// The name in events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cooldown => "cooldown",
            Self::MaxOpen => "max_open",
            Self::Balance => "balance",
        }
    }
}

/// What the engine wants done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intent {
    /// Sell the whole position at reference `price`.
    Close { variant: u32, symbol: u32, time: i64, price: f64, reason: ExitReason },
    /// Buy the variant's stake at reference `price`.
    Open { variant: u32, symbol: u32, time: i64, price: f64, stop_pct: f64, atr: f64 },
    /// A breakout that was not taken, and why.
    Skip { variant: u32, symbol: u32, time: i64, reason: SkipReason },
}

/// An open position as the engine tracks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub variant: u32,
    pub symbol: u32,
    pub entry_time: i64,
    pub entry_price: f64,
    pub qty: f64,
    pub stake: f64,
    pub entry_fee: f64,
    pub stop_pct: f64,
    pub atr_at_entry: f64,
    pub stop: StopState,
    /// Candles of its symbol closed since the entry.
    pub bars_held: u32,
}

/// A closed trade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosedTrade {
    pub position: Position,
    pub exit_time: i64,
    pub exit_price: f64,
    pub reason: ExitReason,
    pub pnl: f64,
    pub fees: f64,
}

#[derive(Debug, Clone)]
struct Cell {
    atr: Atr,
    atr_prev: f64,
    detector: Breakout,
    position: Option<Position>,
    /// The open position's stop as it stood at its symbol's last close (or at the open).
    stop_at_close: StopState,
}

#[derive(Debug, Clone)]
struct Account {
    balance: f64,
    open_symbols: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct SymbolState {
    tf_ms: i64,
    last: Option<Candle>,
    /// `signals` has not yet run for `last`.
    pending_signal: bool,
}

/// The decision step for all variants over all symbols.
#[derive(Debug, Clone)]
pub struct Engine {
    params: Vec<VariantParams>,
    guard: GuardTable,
    symbols: Vec<SymbolState>,
    /// Symbol-major: (v, s) at `s * variants + v`.
    cells: Vec<Cell>,
    accounts: Vec<Account>,
}

impl Engine {
    /// An engine for these variants (validated; names unique).
    pub fn new(params: Vec<VariantParams>) -> Result<Self, EngineError> {
        for p in &params {
            p.validate()?;
        }
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let guard = GuardTable::new(&names)?;
        let accounts = params
            .iter()
            .map(|p| Account { balance: p.starting_balance, open_symbols: Vec::with_capacity(p.max_open) })
            .collect();
        Ok(Self { params, guard, symbols: Vec::new(), cells: Vec::new(), accounts })
    }

    /// The variants, in order.
    pub fn params(&self) -> &[VariantParams] {
        &self.params
    }

    /// The guard table (read-only; the engine changes it through claims and releases).
    pub fn guard(&self) -> &GuardTable {
        &self.guard
    }

    /// Adds a symbol with its timeframe (ms) and returns its id; the same name returns the same id.
    pub fn add_symbol(&mut self, name: &str, tf_ms: i64) -> Result<u32, EngineError> {
        if tf_ms <= 0 {
            return Err(EngineError::InvalidParam {
                name: "timeframe",
                reason: format!("{tf_ms} ms for {name}"),
            });
        }
        let id = self.guard.intern_symbol(name)?;
        if id as usize == self.symbols.len() {
            self.symbols.push(SymbolState { tf_ms, last: None, pending_signal: false });
            for p in &self.params {
                self.cells.push(Cell {
                    atr: Atr::new(p.atr_period)?,
                    atr_prev: f64::NAN,
                    detector: Breakout::new(p.breakout),
                    position: None,
                    stop_at_close: StopState::new(1.0, 0.0),
                });
            }
        }
        Ok(id)
    }

    #[inline]
    fn cell_index(&self, v: u32, s: u32) -> usize {
        s as usize * self.params.len() + v as usize
    }

    fn check_ids(&self, v: u32, s: u32) -> Result<(), EngineError> {
        if v as usize >= self.params.len() {
            return Err(EngineError::Unknown { what: "variant", id: v as usize });
        }
        if s as usize >= self.symbols.len() {
            return Err(EngineError::Unknown { what: "symbol", id: s as usize });
        }
        Ok(())
    }

    /// Timeframe of a symbol in ms.
    pub fn timeframe(&self, s: u32) -> i64 {
        self.symbols[s as usize].tf_ms
    }

    /// Steps 1 and 2 of a candle close: ATR update and exits. Pushes `Close` intents.
    ///
    /// The candle's open and low are tested against the stop as it stood at the previous close,
    /// then its high may raise the trail (the conservative order). When [`Engine::on_price`] raised
    /// the stop since then (the daemon's exit pass, replay's detail), the prices it saw were tested
    /// against the stop as it rose; the candle's open came before those raises and its low may have
    /// too, so testing them against the raised stop would sell at a price from before the raise.
    pub fn exits(&mut self, s: u32, c: &Candle, out: &mut Vec<Intent>) -> Result<(), EngineError> {
        self.check_ids(0, s)?;
        let sym = &mut self.symbols[s as usize];
        if let Some(last) = sym.last {
            if c.open_time <= last.open_time {
                return Err(EngineError::Unsorted { index: 0 });
            }
        }
        sym.last = Some(*c);
        sym.pending_signal = true;
        let close_time = c.open_time + sym.tf_ms;
        let nv = self.params.len();
        for v in 0..nv {
            let p = &self.params[v];
            let cell = &mut self.cells[s as usize * nv + v];
            cell.atr_prev = cell.atr.value();
            cell.atr.update_unchecked(c.high, c.low, c.close);
            let Some(pos) = cell.position.as_mut() else {
                continue;
            };
            let hit = if pos.stop == cell.stop_at_close {
                pos.stop.on_candle(c.open, c.high, c.low, cell.atr_prev, p.trail)
            } else {
                let mut start = cell.stop_at_close;
                let hit = start.on_candle(c.open, c.high, c.low, cell.atr_prev, p.trail);
                if hit.is_none() {
                    pos.stop.raise(c.high, cell.atr_prev, p.trail);
                }
                hit
            };
            cell.stop_at_close = pos.stop;
            pos.bars_held += 1;
            let (price, reason) = match hit {
                Some(h) => (h.price, h.reason),
                None if p.time_stop_candles > 0 && pos.bars_held >= p.time_stop_candles => {
                    (c.close, ExitReason::TimeStop)
                }
                None => continue,
            };
            out.push(Intent::Close { variant: v as u32, symbol: s, time: close_time, price, reason });
        }
        Ok(())
    }

    /// Steps 3 and 4 of the candle last given to [`Engine::exits`]: breakout, guard, limits.
    /// Pushes `Open` and `Skip` intents. Call after the closes from `exits` are applied.
    pub fn signals(&mut self, s: u32, out: &mut Vec<Intent>) -> Result<(), EngineError> {
        self.check_ids(0, s)?;
        let sym = &mut self.symbols[s as usize];
        let Some(c) = sym.last.filter(|_| sym.pending_signal) else {
            return Err(EngineError::InvalidParam {
                name: "signals",
                reason: "no new candle since the last call".into(),
            });
        };
        sym.pending_signal = false;
        let close_time = c.open_time + sym.tf_ms;
        let nv = self.params.len();
        for v in 0..nv {
            let p = &self.params[v];
            let cell = &mut self.cells[s as usize * nv + v];
            let atr = cell.atr.value();
            if !cell.detector.step(c.high, c.close, c.volume, atr) {
                continue;
            }
            let vid = v as u32;
            let skip = match self.guard.can_signal(vid, s, close_time)? {
                Err(Blocked::Open) => Some(SkipReason::Open),
                Err(Blocked::Cooldown { .. }) => Some(SkipReason::Cooldown),
                Ok(()) if self.accounts[v].open_symbols.len() >= p.max_open => Some(SkipReason::MaxOpen),
                Ok(()) if self.accounts[v].balance < p.costs.required(p.stake) => Some(SkipReason::Balance),
                Ok(()) => None,
            };
            out.push(match skip {
                Some(reason) => Intent::Skip { variant: vid, symbol: s, time: close_time, reason },
                None => Intent::Open {
                    variant: vid,
                    symbol: s,
                    time: close_time,
                    price: c.close,
                    stop_pct: hard_stop_pct(atr / c.close, p.stop_k, p.stop_floor, p.stop_cap),
                    atr,
                },
            });
        }
        Ok(())
    }

    /// A live price between candle closes: stops checked, trails raised. Pushes `Close` intents.
    pub fn on_price(
        &mut self,
        s: u32,
        time: i64,
        price: f64,
        out: &mut Vec<Intent>,
    ) -> Result<(), EngineError> {
        self.check_ids(0, s)?;
        crate::candle::check_price("price", price, 0)?;
        let nv = self.params.len();
        for v in 0..nv {
            let p = &self.params[v];
            let cell = &mut self.cells[s as usize * nv + v];
            let atr = cell.atr.value();
            let Some(pos) = cell.position.as_mut() else {
                continue;
            };
            if let Some(h) = pos.stop.on_price(price, atr, p.trail) {
                out.push(Intent::Close {
                    variant: v as u32,
                    symbol: s,
                    time,
                    price: h.price,
                    reason: h.reason,
                });
            }
        }
        Ok(())
    }

    /// Records an open that was carried out: claims the guard (cooldown from `time`), debits the account.
    pub fn apply_open(
        &mut self,
        v: u32,
        s: u32,
        time: i64,
        fill: &BuyFill,
        stop_pct: f64,
        atr: f64,
    ) -> Result<Position, EngineError> {
        self.check_ids(v, s)?;
        let cooldown = self.params[v as usize].cooldown_candles as i64 * self.symbols[s as usize].tf_ms;
        let i = self.cell_index(v, s);
        if self.cells[i].position.is_some() {
            return Err(EngineError::InvalidParam { name: "open", reason: "already open".into() });
        }
        if let Err(b) = self.guard.claim(v, s, time, cooldown)? {
            // A driver whose guard follows a database (the daemon) has the open and its cooldown
            // in the guard already, from the open's commit: then there is nothing left to claim.
            let until = time.saturating_add(cooldown);
            if !matches!(self.guard.get(v, s)?, (true, Some(u)) if u >= until) {
                return Err(EngineError::InvalidParam {
                    name: "open",
                    reason: format!("guard refused: {b:?}"),
                });
            }
        }
        let pos = Position {
            variant: v,
            symbol: s,
            entry_time: time,
            entry_price: fill.price,
            qty: fill.qty,
            stake: fill.stake,
            entry_fee: fill.fee,
            stop_pct,
            atr_at_entry: atr,
            stop: StopState::new(fill.price, stop_pct),
            bars_held: 0,
        };
        self.cells[i].position = Some(pos);
        self.cells[i].stop_at_close = pos.stop;
        let acct = &mut self.accounts[v as usize];
        acct.balance -= fill.cost;
        acct.open_symbols.push(s);
        Ok(pos)
    }

    /// Records a close that was carried out: releases the guard (cooldown stays), credits the account.
    pub fn apply_close(
        &mut self,
        v: u32,
        s: u32,
        time: i64,
        fill: &SellFill,
        reason: ExitReason,
    ) -> Result<ClosedTrade, EngineError> {
        self.check_ids(v, s)?;
        let i = self.cell_index(v, s);
        let Some(pos) = self.cells[i].position.take() else {
            return Err(EngineError::InvalidParam { name: "close", reason: "no open position".into() });
        };
        self.guard.release(v, s)?;
        let acct = &mut self.accounts[v as usize];
        acct.balance += fill.proceeds;
        acct.open_symbols.retain(|&x| x != s);
        let (pnl, fees) = round_trip(pos.stake, pos.entry_fee, fill.gross, fill.fee);
        Ok(ClosedTrade { position: pos, exit_time: time, exit_price: fill.price, reason, pnl, fees })
    }

    /// Puts back a position the database holds (start-up, or another process opened it).
    pub fn restore_position(
        &mut self,
        pos: Position,
        protected_until: Option<i64>,
    ) -> Result<(), EngineError> {
        self.check_ids(pos.variant, pos.symbol)?;
        self.guard.set(pos.variant, pos.symbol, true, protected_until)?;
        let i = self.cell_index(pos.variant, pos.symbol);
        self.cells[i].stop_at_close = pos.stop;
        if self.cells[i].position.replace(pos).is_none() {
            self.accounts[pos.variant as usize].open_symbols.push(pos.symbol);
        }
        Ok(())
    }

    /// Sets the guard state of (v, s) from the database without touching positions.
    pub fn set_guard(
        &mut self,
        v: u32,
        s: u32,
        open: bool,
        protected_until: Option<i64>,
    ) -> Result<(), EngineError> {
        self.guard.set(v, s, open, protected_until)
    }

    /// Sets a variant's balance (the database is the authority).
    pub fn set_balance(&mut self, v: u32, balance: f64) -> Result<(), EngineError> {
        self.accounts
            .get_mut(v as usize)
            .ok_or(EngineError::Unknown { what: "variant", id: v as usize })?
            .balance = balance;
        Ok(())
    }

    /// A variant's cash balance.
    pub fn balance(&self, v: u32) -> f64 {
        self.accounts[v as usize].balance
    }

    /// The open position of (v, s), if any.
    pub fn position(&self, v: u32, s: u32) -> Option<&Position> {
        self.check_ids(v, s).ok()?;
        self.cells[self.cell_index(v, s)].position.as_ref()
    }

    /// Symbols with an open position for variant `v`, in the order they were opened.
    pub fn open_symbols(&self, v: u32) -> &[u32] {
        &self.accounts[v as usize].open_symbols
    }

    /// Current ATR of (v, s) (NaN until ready).
    pub fn atr(&self, v: u32, s: u32) -> f64 {
        if self.check_ids(v, s).is_err() {
            return f64::NAN;
        }
        self.cells[self.cell_index(v, s)].atr.value()
    }

    /// Balance plus open positions marked at their symbol's last close.
    pub fn equity(&self, v: u32) -> f64 {
        let acct = &self.accounts[v as usize];
        let mut e = acct.balance;
        for &s in &acct.open_symbols {
            if let Some(pos) = self.position(v, s) {
                let mark = self.symbols[s as usize].last.map_or(pos.entry_price, |c| c.close);
                e += pos.qty * mark;
            }
        }
        e
    }
}
