//! The guard table (fix H): per (variant, symbol), free, open, or protected until a time.
//!
//! `can_signal` is the pre-signal guard; `claim` marks a position open AND starts the cooldown at the
//! open time; `release` marks the close and leaves the cooldown as it is. Variant and symbol names are
//! interned once; every check after that is an index into one flat table.

use std::collections::HashMap;

use crate::error::EngineError;

/// Why the guard refused a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// A position is open on this (variant, symbol).
    Open,
    /// The cooldown from the last open runs until this time (ms).
    Cooldown { until: i64 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    open: bool,
    /// Protected while `now < protected_until` (ms; i64::MIN = never protected).
    protected_until: i64,
}

/// Interned (variant, symbol) guard state.
#[derive(Debug, Clone, Default)]
pub struct GuardTable {
    variants: Vec<String>,
    variant_ids: HashMap<String, u32>,
    symbols: Vec<String>,
    symbol_ids: HashMap<String, u32>,
    /// Symbol-major: slot of (v, s) at `s * variants + v`, so a new symbol appends.
    slots: Vec<Slot>,
}

impl GuardTable {
    /// A table for these variants (names unique, at least one).
    pub fn new<S: AsRef<str>>(variants: &[S]) -> Result<Self, EngineError> {
        if variants.is_empty() {
            return Err(EngineError::InvalidParam {
                name: "variants",
                reason: "at least one is needed".into(),
            });
        }
        let mut t = Self::default();
        for v in variants {
            let v = v.as_ref();
            if v.is_empty() || t.variant_ids.contains_key(v) {
                return Err(EngineError::InvalidParam {
                    name: "variants",
                    reason: format!("variant name {v:?} is empty or repeated"),
                });
            }
            t.variant_ids.insert(v.to_owned(), t.variants.len() as u32);
            t.variants.push(v.to_owned());
        }
        Ok(t)
    }

    /// Number of variants.
    pub fn variant_count(&self) -> usize {
        self.variants.len()
    }

    /// Number of interned symbols.
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// Id of a variant name.
    pub fn variant_id(&self, name: &str) -> Option<u32> {
        self.variant_ids.get(name).copied()
    }

    /// Id of a symbol, if interned.
    pub fn symbol_id(&self, name: &str) -> Option<u32> {
        self.symbol_ids.get(name).copied()
    }

    /// Name of a variant id.
    pub fn variant_name(&self, id: u32) -> &str {
        &self.variants[id as usize]
    }

    /// Name of a symbol id.
    pub fn symbol_name(&self, id: u32) -> &str {
        &self.symbols[id as usize]
    }

    /// The id of `name`, interning it (allocates only the first time a symbol is seen).
    pub fn intern_symbol(&mut self, name: &str) -> Result<u32, EngineError> {
        if let Some(&id) = self.symbol_ids.get(name) {
            return Ok(id);
        }
        if name.is_empty() {
            return Err(EngineError::InvalidParam { name: "symbol", reason: "empty symbol name".into() });
        }
        let id = self.symbols.len() as u32;
        self.symbols.push(name.to_owned());
        self.symbol_ids.insert(name.to_owned(), id);
        self.slots
            .resize(self.slots.len() + self.variants.len(), Slot { open: false, protected_until: i64::MIN });
        Ok(id)
    }

    #[inline]
    fn index(&self, v: u32, s: u32) -> Result<usize, EngineError> {
        if v as usize >= self.variants.len() {
            return Err(EngineError::Unknown { what: "variant", id: v as usize });
        }
        if s as usize >= self.symbols.len() {
            return Err(EngineError::Unknown { what: "symbol", id: s as usize });
        }
        Ok(s as usize * self.variants.len() + v as usize)
    }

    /// The pre-signal guard: may (v, s) produce a signal at `now` (ms)?
    #[inline]
    pub fn can_signal(&self, v: u32, s: u32, now: i64) -> Result<Result<(), Blocked>, EngineError> {
        let slot = self.slots[self.index(v, s)?];
        Ok(if slot.open {
            Err(Blocked::Open)
        } else if now < slot.protected_until {
            Err(Blocked::Cooldown { until: slot.protected_until })
        } else {
            Ok(())
        })
    }

    /// Marks (v, s) open at `open_time` and protects it until `open_time + cooldown_ms`.
    /// Refused (and nothing changes) when the guard would not let it signal at `open_time`.
    pub fn claim(
        &mut self,
        v: u32,
        s: u32,
        open_time: i64,
        cooldown_ms: i64,
    ) -> Result<Result<(), Blocked>, EngineError> {
        let i = self.index(v, s)?;
        if cooldown_ms < 0 {
            return Err(EngineError::InvalidParam {
                name: "cooldown_ms",
                reason: format!("{cooldown_ms} is negative"),
            });
        }
        if let Err(b) = self.can_signal(v, s, open_time)? {
            return Ok(Err(b));
        }
        let slot = &mut self.slots[i];
        slot.open = true;
        slot.protected_until = slot.protected_until.max(open_time.saturating_add(cooldown_ms));
        Ok(Ok(()))
    }

    /// Marks (v, s) closed; the cooldown stays.
    pub fn release(&mut self, v: u32, s: u32) -> Result<(), EngineError> {
        let i = self.index(v, s)?;
        self.slots[i].open = false;
        Ok(())
    }

    /// Sets the state of (v, s) as the database has it (start-up rebuild, another process's change).
    pub fn set(
        &mut self,
        v: u32,
        s: u32,
        open: bool,
        protected_until: Option<i64>,
    ) -> Result<(), EngineError> {
        let i = self.index(v, s)?;
        self.slots[i] = Slot { open, protected_until: protected_until.unwrap_or(i64::MIN) };
        Ok(())
    }

    /// Whether (v, s) is open, and its protection end if any.
    pub fn get(&self, v: u32, s: u32) -> Result<(bool, Option<i64>), EngineError> {
        let slot = self.slots[self.index(v, s)?];
        Ok((slot.open, (slot.protected_until != i64::MIN).then_some(slot.protected_until)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn claim_sets_cooldown_at_open() {
        let mut g = GuardTable::new(&["a", "b"]).unwrap();
        let s = g.intern_symbol("TST/USDT").unwrap();
        assert_eq!(g.can_signal(0, s, 0).unwrap(), Ok(()));
        assert_eq!(g.claim(0, s, 1000, 500).unwrap(), Ok(()));
        assert_eq!(g.can_signal(0, s, 1001).unwrap(), Err(Blocked::Open));
        assert_eq!(g.can_signal(1, s, 1001).unwrap(), Ok(()), "variants are independent");
        g.release(0, s).unwrap();
        assert_eq!(g.can_signal(0, s, 1200).unwrap(), Err(Blocked::Cooldown { until: 1500 }));
        assert_eq!(g.can_signal(0, s, 1500).unwrap(), Ok(()));
        assert!(g.can_signal(2, s, 0).is_err());
        assert!(GuardTable::new(&["a", "a"]).is_err());
        assert!(g.claim(1, s, 0, -1).is_err(), "a negative cooldown is refused");
    }

    proptest! {
        /// Whatever the sequence of claims and releases: never two opens on one (variant, symbol),
        /// never an open before the cooldown from the previous open has passed.
        #[test]
        fn never_double_open(ops in proptest::collection::vec((0u32..2, 0u32..3, any::<bool>(), 0i64..50), 1..300)) {
            let mut g = GuardTable::new(&["a", "b"]).unwrap();
            for s in ["X", "Y", "Z"] { g.intern_symbol(s).unwrap(); }
            let cooldown = 20;
            let mut now = 0i64;
            let mut open = std::collections::HashMap::new();
            let mut last_open: std::collections::HashMap<(u32, u32), i64> = Default::default();
            for (v, s, claim, dt) in ops {
                now += dt;
                if claim {
                    let ok = g.claim(v, s, now, cooldown).unwrap().is_ok();
                    let allowed = !open.get(&(v, s)).copied().unwrap_or(false)
                        && last_open.get(&(v, s)).is_none_or(|&t| now >= t + cooldown);
                    prop_assert_eq!(ok, allowed);
                    if ok { open.insert((v, s), true); last_open.insert((v, s), now); }
                } else {
                    g.release(v, s).unwrap();
                    open.insert((v, s), false);
                }
            }
        }
    }
}
