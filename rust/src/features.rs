//! The per-symbol indicators the variants share: one ATR per distinct ATR period and one breakout
//! window per distinct lookback, each updated once per candle however many variants read it.
//!
//! A variant's ATR and window depend on its period and lookback only, never on its thresholds or
//! its positions, so sharing them changes no decision: every variant reads the same values, computed
//! by the same arithmetic, as it would from state of its own (`tests` below replay both ways). What it
//! saves is the per-candle work of a search replaying dozens of postures in one pass.

use std::sync::Arc;

use crate::atr::Atr;
use crate::breakout::{Levels, Window};
use crate::candle::Candle;
use crate::engine::VariantParams;
use crate::error::EngineError;

#[derive(Debug, Clone)]
struct AtrSlot {
    atr: Atr,
    /// The value before the last update (the stops of a close use the ATR of the candles before it).
    prev: f64,
}

/// Shared indicator state of every symbol, and which slot each variant reads.
#[derive(Debug, Clone)]
pub struct Features {
    periods: Vec<usize>,
    lookbacks: Vec<usize>,
    /// Per variant: index into `periods`.
    atr_of: Vec<usize>,
    /// Per variant: index into `lookbacks`.
    window_of: Vec<usize>,
    /// Per window: the smallest breakout buffer of the variants reading it. A close at or below
    /// the highest high × (1 + that) breaks out for none of them, which decides most candles at once.
    min_buffer: Vec<f64>,
    /// Symbol-major: symbol `s`, period `k` at `s * periods + k`.
    atrs: Vec<AtrSlot>,
    /// Where the windows' levels come from.
    source: Source,
    /// Symbols added.
    symbols: usize,
    /// Per window, the levels of the candle being judged ([`Features::judge`]); `None` where the
    /// window is not full or no variant of it can break out.
    judged: Vec<Option<Levels>>,
}

/// The distinct values of `key` over `params` (first-seen order), and each variant's index into them.
fn distinct<T: PartialEq + Copy>(
    params: &[VariantParams],
    key: impl Fn(&VariantParams) -> T,
) -> (Vec<T>, Vec<usize>) {
    let mut values: Vec<T> = Vec::new();
    let index = params
        .iter()
        .map(|p| {
            let x = key(p);
            values.iter().position(|&y| y == x).unwrap_or_else(|| {
                values.push(x);
                values.len() - 1
            })
        })
        .collect();
    (values, index)
}

impl Features {
    /// The slots for these (validated) variants; no symbol yet.
    pub fn new(params: &[VariantParams]) -> Self {
        let (periods, atr_of) = distinct(params, |p| p.atr_period);
        let (lookbacks, window_of) = distinct(params, |p| p.breakout.lookback);
        let mut min_buffer = vec![f64::INFINITY; lookbacks.len()];
        for (p, &w) in params.iter().zip(&window_of) {
            min_buffer[w] = min_buffer[w].min(p.breakout.buffer);
        }
        Self {
            judged: vec![None; lookbacks.len()],
            periods,
            lookbacks,
            atr_of,
            window_of,
            min_buffer,
            atrs: Vec::new(),
            source: Source::Streaming(Vec::new()),
            symbols: 0,
        }
    }

    /// Reads the windows' levels from `found` (which must hold this engine's lookbacks and the
    /// symbols in id order, found over exactly the candles it will be given) instead of keeping
    /// windows: before any symbol is added.
    pub fn use_candidates(&mut self, found: Arc<Candidates>) -> Result<(), EngineError> {
        let bad = |reason: String| Err(EngineError::InvalidParam { name: "candidates", reason });
        if self.symbols > 0 {
            return bad("set after symbols were added".into());
        }
        let mut window_of_list = vec![None; found.lookbacks.len()];
        for (w, &l) in self.lookbacks.iter().enumerate() {
            let Some(k) = found.lookbacks.iter().position(|&x| x == l) else {
                return bad(format!("no candidates for lookback {l}"));
            };
            if found.min_buffer[k] > self.min_buffer[w] {
                return bad(format!("candidates for lookback {l} found with a larger buffer"));
            }
            window_of_list[k] = Some(w as u32);
        }
        self.source = Source::Found { found, window_of_list, cursor: Vec::new() };
        Ok(())
    }

    /// Adds the next symbol's slots.
    pub fn add_symbol(&mut self) -> Result<(), EngineError> {
        if let Source::Found { found, .. } = &self.source {
            if self.symbols == found.symbols {
                return Err(EngineError::InvalidParam {
                    name: "candidates",
                    reason: format!("found for {} symbols only", found.symbols),
                });
            }
        }
        let atrs = self.periods.iter().map(|&period| Ok(AtrSlot { atr: Atr::new(period)?, prev: f64::NAN }));
        let atrs = atrs.collect::<Result<Vec<_>, EngineError>>()?;
        self.atrs.extend(atrs);
        match &mut self.source {
            Source::Streaming(windows) => windows.extend(self.lookbacks.iter().map(|&l| Window::new(l))),
            Source::Found { cursor, .. } => cursor.push(0),
        }
        self.symbols += 1;
        Ok(())
    }

    /// ATR slots per symbol (distinct periods).
    pub fn atr_slots(&self) -> usize {
        self.periods.len()
    }

    /// Window slots per symbol (distinct lookbacks).
    pub fn window_slots(&self) -> usize {
        self.lookbacks.len()
    }

    /// Every ATR of symbol `s` over a closed candle.
    #[inline]
    pub fn update_atr(&mut self, s: u32, high: f64, low: f64, close: f64) {
        let n = self.periods.len();
        for slot in &mut self.atrs[s as usize * n..(s as usize + 1) * n] {
            slot.prev = slot.atr.value();
            slot.atr.update_unchecked(high, low, close);
        }
    }

    /// Variant `v`'s ATR of symbol `s`, including its last candle (NaN until ready).
    #[inline]
    pub fn atr(&self, v: usize, s: u32) -> f64 {
        self.atrs[s as usize * self.periods.len() + self.atr_of[v]].atr.value()
    }

    /// Variant `v`'s ATR of symbol `s` before its last candle.
    #[inline]
    pub fn atr_prev(&self, v: usize, s: u32) -> f64 {
        self.atrs[s as usize * self.periods.len() + self.atr_of[v]].prev
    }

    /// Reads the windows of symbol `s` for its candle number `index` (from 0), closing at `close`,
    /// before they slide over it; false when no variant can break out on it (then
    /// [`Features::levels`] is `None` for all).
    #[inline]
    pub fn judge(&mut self, s: u32, index: u32, close: f64) -> bool {
        let n = self.lookbacks.len();
        let at = s as usize * n;
        let mut any = false;
        match &mut self.source {
            Source::Streaming(windows) => {
                for (w, window) in windows[at..at + n].iter().enumerate() {
                    let levels = window.levels().filter(|l| close > l.highest * (1.0 + self.min_buffer[w]));
                    any |= levels.is_some();
                    self.judged[w] = levels;
                }
            }
            Source::Found { found, window_of_list, cursor } => {
                let entries = &found.entries[s as usize];
                let cur = &mut cursor[s as usize];
                while entries.get(*cur).is_some_and(|e| e.index < index) {
                    *cur += 1;
                }
                if entries.get(*cur).is_some_and(|e| e.index == index) {
                    self.judged.fill(None);
                    while let Some(e) = entries.get(*cur).filter(|e| e.index == index) {
                        if let Some(w) = window_of_list[e.lookback as usize] {
                            self.judged[w as usize] = Some(e.levels);
                            any = true;
                        }
                        *cur += 1;
                    }
                }
            }
        }
        any
    }

    /// The levels variant `v` judges the candle of the last [`Features::judge`] against.
    #[inline]
    pub fn levels(&self, v: usize) -> Option<Levels> {
        self.judged[self.window_of[v]]
    }

    /// Slides every window of symbol `s` over a closed candle.
    #[inline]
    pub fn push(&mut self, s: u32, high: f64, volume: f64) {
        if let Source::Streaming(windows) = &mut self.source {
            let n = self.lookbacks.len();
            for window in &mut windows[s as usize * n..(s as usize + 1) * n] {
                window.push(high, volume);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    /// Windows kept per symbol, slid by every candle (the daemon: candles arrive one at a time).
    /// Symbol-major: symbol `s`, lookback `w` at `s * lookbacks + w`.
    Streaming(Vec<Window>),
    /// Levels found ahead over whole series (replay), read in candle order: `window_of_list[k]` is
    /// the engine's window of `found`'s lookback `k` (if it has one), `cursor[s]` the next entry of
    /// symbol `s` to read.
    Found { found: Arc<Candidates>, window_of_list: Vec<Option<u32>>, cursor: Vec<usize> },
}

/// The breakout candidates of whole series, found ahead of a replay.
///
/// For each (symbol, lookback): the candles, by index in the symbol's series, whose close is above
/// the window's highest high × (1 + the smallest buffer of the variants with that lookback), with
/// the window's levels. The windows are the same [`Window`]s the streaming engine slides, run over
/// one symbol's candles at a time (a few kilobytes of state, in cache, instead of every symbol's
/// windows touched at every close time), once per replay rather than once per group of variants,
/// and symbols can be found side by side ([`Candidates::find_symbol`] is per symbol).
#[derive(Debug, Clone)]
pub struct Candidates {
    lookbacks: Vec<usize>,
    min_buffer: Vec<f64>,
    symbols: usize,
    /// Per symbol id, its candidates by candle index (one stream per symbol: a replay reads it
    /// sequentially, one comparison per candle that is no candidate).
    entries: Vec<Vec<Candidate>>,
}

/// A candle that may break out of the window of one lookback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The candle's index in its series.
    pub index: u32,
    /// Index of the lookback in [`Candidates::lookbacks_of`]'s list.
    pub lookback: u32,
    /// The window's levels before the candle.
    pub levels: Levels,
}

impl Candidates {
    /// The distinct lookbacks of `params` and the smallest buffer of each.
    pub fn lookbacks_of(params: &[VariantParams]) -> (Vec<usize>, Vec<f64>) {
        let f = Features::new(params);
        (f.lookbacks, f.min_buffer)
    }

    /// One symbol's candidates for these lookbacks and buffers.
    ///
    /// The same levels a [`Window`] per lookback gives, found for all lookbacks in one pass: the
    /// volume sums run the window's own sequence of additions and subtractions (so the means are
    /// the streaming engine's to the bit), and the highest highs come from one backward scan per
    /// candle, shared by the lookbacks in increasing order and stopped at the first high that the
    /// close does not clear, which for most candles is the previous one.
    pub fn find_symbol(lookbacks: &[usize], min_buffer: &[f64], candles: &[Candle]) -> Vec<Candidate> {
        let k = lookbacks.len();
        let mut found = Vec::new();
        let mut by_len: Vec<usize> = (0..k).collect();
        by_len.sort_by_key(|&j| lookbacks[j]);
        let floor = min_buffer.iter().copied().fold(f64::INFINITY, f64::min);
        let mut vsum = vec![0.0f64; k];
        for (i, c) in candles.iter().enumerate() {
            // Scaling by (1 + b) is monotonic, so the close clears the highest high × (1 + b) exactly
            // when it clears every high × (1 + b): the scan may stop at the first one it does not.
            let mut highest = f64::NEG_INFINITY;
            let mut depth = 0;
            'lookbacks: for &j in &by_len {
                let l = lookbacks[j];
                if l > i {
                    break;
                }
                while depth < l {
                    highest = highest.max(candles[i - 1 - depth].high);
                    depth += 1;
                    if c.close <= highest * (1.0 + floor) {
                        break 'lookbacks;
                    }
                }
                if c.close > highest * (1.0 + min_buffer[j]) {
                    let levels = Levels { highest, mean_volume: vsum[j] / l as f64 };
                    found.push(Candidate { index: i as u32, lookback: j as u32, levels });
                }
            }
            // The window's slide: add the entering volume, then subtract the one leaving.
            for (sum, &l) in vsum.iter_mut().zip(lookbacks) {
                *sum += c.volume;
                if i >= l {
                    *sum -= candles[i - l].volume;
                }
            }
        }
        found
    }

    /// The candidates of every symbol, in id order (each from [`Candidates::find_symbol`] with the
    /// same lookbacks and buffers).
    pub fn new(lookbacks: Vec<usize>, min_buffer: Vec<f64>, per_symbol: Vec<Vec<Candidate>>) -> Self {
        Self { lookbacks, min_buffer, symbols: per_symbol.len(), entries: per_symbol }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candles(rows: &[(f64, f64, f64)]) -> Vec<Candle> {
        rows.iter()
            .enumerate()
            .map(|(i, &(high, close, volume))| Candle {
                open_time: i as i64,
                open: close,
                high: high.max(close),
                low: close.min(high) * 0.9,
                close,
                volume,
            })
            .collect()
    }

    proptest! {
        /// One pass over all lookbacks finds exactly what a streaming window per lookback sees, to the bit.
        #[test]
        fn candidates_equal_streaming_windows(
            rows in proptest::collection::vec((1.0f64..2.0, 1.0f64..2.0, 0.0f64..1e6), 0..400),
            lookbacks in proptest::collection::vec(1usize..40, 1..6),
            buffers in proptest::collection::vec(prop_oneof![Just(0.0), 0.0f64..0.05], 6),
        ) {
            let cs = candles(&rows);
            let buffers = &buffers[..lookbacks.len()];
            let found = Candidates::find_symbol(&lookbacks, buffers, &cs);
            prop_assert!(found.windows(2).all(|w| w[0].index <= w[1].index), "in candle order");
            for (j, &l) in lookbacks.iter().enumerate() {
                let mut window = Window::new(l);
                let mut want = Vec::new();
                for (i, c) in cs.iter().enumerate() {
                    if let Some(levels) = window.levels() {
                        if c.close > levels.highest * (1.0 + buffers[j]) {
                            want.push((i as u32, levels));
                        }
                    }
                    window.push(c.high, c.volume);
                }
                let got: Vec<(u32, Levels)> =
                    found.iter().filter(|c| c.lookback == j as u32).map(|c| (c.index, c.levels)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
