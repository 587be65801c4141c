//! The per-variant decision step: closed candles (and live prices) in, intents out.
//!
//! The engine never fills an order itself. It returns [`Intent`]s; the driver (replay in memory, or
//! the daemon through the database and the broker) carries them out and reports back with
//! [`Engine::apply_open`] / [`Engine::apply_close`]. A candle close is two calls, in this order:
//! [`Engine::exits`] (ATR update, stops) then, once the closes are applied, [`Engine::signals`].

use crate::candle::Candle;
use crate::error::EngineError;
use crate::features::{Candidates, Features};
use crate::fills::{round_trip, BuyFill, SellFill};
use crate::guard::{Blocked, GuardTable};
use crate::stops::{hard_stop_pct, ExitReason, StopState};
pub use crate::variant::VariantParams;
use std::sync::Arc;

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
    /// Candles given to `exits` so far (`last` is number `seen - 1`).
    seen: u32,
    /// `signals` has not yet run for `last`.
    pending_signal: bool,
}

/// The decision step for all variants over all symbols.
#[derive(Debug, Clone)]
pub struct Engine {
    params: Vec<VariantParams>,
    guard: GuardTable,
    symbols: Vec<SymbolState>,
    /// ATRs and breakout windows per symbol, shared by the variants with the same period and lookback.
    features: Features,
    /// Symbol-major: (v, s) at `s * variants + v`.
    cells: Vec<Cell>,
    /// Per symbol, the variants holding it, ascending (the order a close's intents come in).
    held: Vec<Vec<u32>>,
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
        let features = Features::new(&params);
        Ok(Self {
            params,
            guard,
            symbols: Vec::new(),
            features,
            cells: Vec::new(),
            held: Vec::new(),
            accounts,
        })
    }

    /// Takes the breakout windows' levels from candidates found ahead over whole series (replay)
    /// instead of sliding windows per candle; before any symbol is added.
    pub fn use_candidates(&mut self, found: Arc<Candidates>) -> Result<(), EngineError> {
        self.features.use_candidates(found)
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
            self.features.add_symbol()?;
            self.symbols.push(SymbolState { tf_ms, last: None, seen: 0, pending_signal: false });
            self.held.push(Vec::new());
            let empty = Cell { position: None, stop_at_close: StopState::new(1.0, 0.0) };
            self.cells.extend(std::iter::repeat_n(empty, self.params.len()));
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
    /// Each held position's stop is tested by [`StopState::on_close`]: the candle's open and low
    /// against the stop as it stood at the previous close, then the high may raise the trail.
    pub fn exits(&mut self, s: u32, c: &Candle, out: &mut Vec<Intent>) -> Result<(), EngineError> {
        self.check_ids(0, s)?;
        let sym = &mut self.symbols[s as usize];
        if let Some(last) = sym.last {
            if c.open_time <= last.open_time {
                return Err(EngineError::Unsorted { index: 0 });
            }
        }
        sym.last = Some(*c);
        sym.seen += 1;
        sym.pending_signal = true;
        let close_time = c.open_time + sym.tf_ms;
        self.features.update_atr(s, c.high, c.low, c.close);
        let nv = self.params.len();
        for &vid in &self.held[s as usize] {
            let v = vid as usize;
            let p = &self.params[v];
            let cell = &mut self.cells[s as usize * nv + v];
            let Some(pos) = cell.position.as_mut() else {
                continue;
            };
            let atr_prev = self.features.atr_prev(v, s);
            let hit = pos.stop.on_close(&mut cell.stop_at_close, c.open, c.high, c.low, atr_prev, p.trail);
            pos.bars_held += 1;
            let (price, reason) = match hit {
                Some(h) => (h.price, h.reason),
                None if p.time_stop_candles > 0 && pos.bars_held >= p.time_stop_candles => {
                    (c.close, ExitReason::TimeStop)
                }
                None => continue,
            };
            out.push(Intent::Close { variant: vid, symbol: s, time: close_time, price, reason });
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
        // Most candles break out of no window: then no variant needs to be looked at.
        let candidates = self.features.judge(s, sym.seen - 1, c.close);
        for v in (0..self.params.len()).filter(|_| candidates) {
            let p = &self.params[v];
            let Some(levels) = self.features.levels(v) else {
                continue;
            };
            let atr = self.features.atr(v, s);
            if !(atr.is_finite() && p.breakout.fires(levels, c.close, c.volume, atr)) {
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
        self.features.push(s, c.high, c.volume);
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
        for &vid in &self.held[s as usize] {
            let v = vid as usize;
            let p = &self.params[v];
            let cell = &mut self.cells[s as usize * nv + v];
            let atr = self.features.atr(v, s);
            let Some(pos) = cell.position.as_mut() else {
                continue;
            };
            if let Some(h) = pos.stop.on_price(price, atr, p.trail) {
                out.push(Intent::Close { variant: vid, symbol: s, time, price: h.price, reason: h.reason });
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
        self.hold(v, s);
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
        self.held[s as usize].retain(|&x| x != v);
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
            self.hold(pos.variant, pos.symbol);
        }
        Ok(())
    }

    /// Adds `v` to the holders of `s`, keeping them ascending.
    fn hold(&mut self, v: u32, s: u32) {
        let held = &mut self.held[s as usize];
        if let Err(at) = held.binary_search(&v) {
            held.insert(at, v);
        }
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
        self.features.atr(v as usize, s)
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
