//! One symbol's candles as replay takes them: columns in, validated rows out.

use crate::candle::Candle;
use crate::error::EngineError;
use crate::hint::prefetch;

/// One symbol's candles, columns of equal length, `time` = open times in ms, strictly increasing.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub symbol: &'a str,
    pub tf_ms: i64,
    pub time: &'a [i64],
    pub open: &'a [f64],
    pub high: &'a [f64],
    pub low: &'a [f64],
    pub close: &'a [f64],
    pub volume: &'a [f64],
}

impl Series<'_> {
    fn len(&self) -> usize {
        self.time.len()
    }

    fn candle(&self, i: usize) -> Candle {
        Candle {
            open_time: self.time[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
        }
    }

    /// Checks equal lengths, valid candles and strictly increasing times, and returns the candles as
    /// rows. Replay reads one candle of every symbol per close time; six column streams per symbol
    /// would be hundreds of interleaved streams (a TLB miss on nearly every read), one row stream per
    /// symbol is not.
    pub fn pack(&self) -> Result<Packed<'_>, EngineError> {
        let n = self.len();
        for (field, len) in [
            ("open", self.open.len()),
            ("high", self.high.len()),
            ("low", self.low.len()),
            ("close", self.close.len()),
            ("volume", self.volume.len()),
        ] {
            if len != n {
                return Err(EngineError::LengthMismatch { expected: n, field, got: len });
            }
        }
        let mut candles = Vec::with_capacity(n);
        let mut ok = true;
        let mut prev = i64::MIN;
        for i in 0..n {
            let c = self.candle(i);
            // Branch-free over the whole series; the first bad row is looked for only if there is one.
            ok &= c.is_valid() & (i == 0 || c.open_time > prev);
            prev = c.open_time;
            candles.push(c);
        }
        if !ok {
            for (i, c) in candles.iter().enumerate() {
                c.validate(i)?;
                if i > 0 && c.open_time <= candles[i - 1].open_time {
                    return Err(EngineError::Unsorted { index: i });
                }
            }
        }
        Ok(Packed { symbol: self.symbol, tf_ms: self.tf_ms, candles })
    }
}

/// One symbol's validated candles as rows.
#[derive(Debug, Clone)]
pub struct Packed<'a> {
    pub symbol: &'a str,
    pub tf_ms: i64,
    pub candles: Vec<Candle>,
}

impl Packed<'_> {
    /// Candles in the series.
    pub fn len(&self) -> usize {
        self.candles.len()
    }

    /// No candle at all.
    pub fn is_empty(&self) -> bool {
        self.candles.is_empty()
    }

    /// Asks for the cache lines of candle `i` ahead of time (a row may straddle two lines).
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        if let Some(c) = self.candles.get(i) {
            prefetch(c);
        }
    }
}
