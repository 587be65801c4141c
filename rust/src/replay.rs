//! Deterministic replay: many symbols merged in time order through every variant, with paper fills.
//!
//! Same input, same output, bit for bit: the merge order is (close time, symbol name) and every
//! decision goes through the same [`Engine`] the daemon uses.

use crate::candle::Candle;
use crate::engine::{ClosedTrade, Engine, Intent, Position, SkipReason, VariantParams};
use crate::error::EngineError;
use crate::features::Candidates;
pub use crate::series::{Packed, Series};
use std::sync::Arc;

/// Counts of one variant's run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantCounts {
    /// Opens carried out.
    pub opens: u64,
    /// Skipped breakouts by reason, in [`SkipReason::ALL`] order.
    pub skips: [u64; 4],
}

/// Everything a replay produced.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    /// Symbol names by engine id.
    pub symbols: Vec<String>,
    pub trades: Vec<ClosedTrade>,
    pub open_positions: Vec<Position>,
    pub counts: Vec<VariantCounts>,
    pub balances: Vec<f64>,
    /// Equity sampled after every distinct close time: `equity[v][j]` at `equity_time[j]`.
    pub equity_time: Vec<i64>,
    pub equity: Vec<Vec<f64>>,
    pub candles: u64,
    /// Detail candles that moved prices between closes (see [`replay_detailed`]).
    pub detail_candles: u64,
    /// Per symbol id: candles of a symbol that has a detail series whose detail was incomplete (a
    /// gap or misaligned times), so they were replayed as without detail.
    pub undetailed: Vec<u64>,
}

/// Runs every variant over every series. `progress(done, total)` is called every `progress_every`
/// candles (and at the end).
///
/// Variants share nothing but the candles (each has its own balance, guard and positions), so they
/// run in parallel, one group per core; the trades are then put back in the order a single engine
/// would have produced them: (exit time, symbol, variant).
pub fn replay(
    params: Vec<VariantParams>,
    series: &[Series<'_>],
    progress_every: u64,
    progress: impl FnMut(u64, u64),
) -> Result<ReplayResult, EngineError> {
    replay_detailed(params, series, &[], progress_every, progress)
}

/// [`replay`] with lower-timeframe `detail` series (at most one per symbol, named like its main
/// series, with a timeframe that divides the main one) moving prices between closes as the daemon's
/// exit pass does: through [`Engine::on_price`], the function the daemon calls with tickers.
///
/// For a main candle opening at `T`, its detail is the `k = tf / tf_detail` candles opening at
/// `T, T + tf_detail, …`. Each but the last goes through `on_price` as the path open, low, high,
/// close — the conservative order for a long position: the adverse price first, so a stop is hit
/// before a new high raises the trail. Where the path falls through an open position's stop, that
/// stop's level is a price of its own (what a daemon polling often enough sells at; the candle
/// rule also fills at the level), so a stop sells at its level, and at the open after a gap. An
/// exit there is booked at the close time of the detail candle it happened in (the first moment a
/// driver at that resolution knows of it). The last detail candle, which closes with the main
/// candle, is left to the main close, decided by [`Engine::exits`] as in the daemon (its open and
/// low against the stop as it stood at the previous close). A main candle whose detail is
/// incomplete is replayed as without detail (counted in `undetailed`); so are symbols without a
/// detail series, bit for bit.
/// Detail moves prices for every symbol closing at a time before any of them decides its close, as
/// the exit pass runs over every held symbol between two breakout passes.
pub fn replay_detailed(
    params: Vec<VariantParams>,
    series: &[Series<'_>],
    detail: &[Series<'_>],
    progress_every: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayResult, EngineError> {
    // Validates every variant, and the names as a set, before any work.
    Engine::new(params.clone())?;
    // Ids in name order, so the merge's tie-break (close time, symbol id) is by name.
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by(|&a, &b| series[a].symbol.cmp(series[b].symbol));
    for w in order.windows(2) {
        if series[w[0]].symbol == series[w[1]].symbol {
            return Err(EngineError::InvalidParam {
                name: "series",
                reason: format!("symbol {} given twice", series[w[0]].symbol),
            });
        }
    }
    // Validation and packing are per symbol: split across the cores, results kept in id order.
    let packed = per_symbol(&order, |i| {
        let s = &series[i];
        s.pack()
            .map_err(|e| EngineError::InvalidParam { name: "series", reason: format!("{}: {e}", s.symbol) })
    });
    let by_id = packed.into_iter().collect::<Result<Vec<Packed<'_>>, EngineError>>()?;
    let detail_by_id = pack_detail(series, &order, detail)?;
    // The breakout windows depend on the lookback only: found once per symbol and lookback, for
    // every group of variants.
    let (lookbacks, min_buffer) = Candidates::lookbacks_of(&params);
    let ids: Vec<usize> = (0..by_id.len()).collect();
    let found = per_symbol(&ids, |id| Candidates::find_symbol(&lookbacks, &min_buffer, &by_id[id].candles));
    let found = Arc::new(Candidates::new(lookbacks, min_buffer, found));

    let nv = params.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, nv.max(1));
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); threads];
    for v in 0..nv {
        groups[v % threads].push(v);
    }
    let group_params = |g: &[usize]| -> Vec<VariantParams> { g.iter().map(|&v| params[v].clone()).collect() };
    let parts: Vec<Result<ReplayResult, EngineError>> = std::thread::scope(|scope| {
        let by_id = &by_id;
        let handles: Vec<_> = groups[1..]
            .iter()
            .map(|g| {
                let p = group_params(g);
                let detail = &detail_by_id;
                let found = Arc::clone(&found);
                scope.spawn(move || run_group(p, found, by_id, detail, 0, |_, _| {}))
            })
            .collect();
        let mut parts = vec![run_group(
            group_params(&groups[0]),
            Arc::clone(&found),
            by_id,
            &detail_by_id,
            progress_every,
            &mut progress,
        )];
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        parts
    });

    let mut result = ReplayResult {
        symbols: by_id.iter().map(|s| s.symbol.to_owned()).collect(),
        trades: Vec::new(),
        open_positions: Vec::new(),
        counts: vec![VariantCounts::default(); nv],
        balances: vec![0.0; nv],
        equity_time: Vec::new(),
        equity: vec![Vec::new(); nv],
        candles: 0,
        detail_candles: 0,
        undetailed: Vec::new(),
    };
    for (g, part) in groups.iter().zip(parts) {
        let part = part?;
        let global = |local: u32| g[local as usize] as u32;
        result.candles = part.candles;
        result.detail_candles = part.detail_candles;
        result.undetailed = part.undetailed;
        result.equity_time = part.equity_time;
        for mut t in part.trades {
            t.position.variant = global(t.position.variant);
            result.trades.push(t);
        }
        for mut p in part.open_positions {
            p.variant = global(p.variant);
            result.open_positions.push(p);
        }
        for (local, &v) in g.iter().enumerate() {
            result.counts[v] = part.counts[local].clone();
            result.balances[v] = part.balances[local];
        }
        for (local, curve) in part.equity.into_iter().enumerate() {
            result.equity[g[local]] = curve;
        }
    }
    // A single engine closes in (exit time, symbol, variant) order; a stable sort restores it.
    result.trades.sort_by_key(|t| (t.exit_time, t.position.symbol, t.position.variant));
    result.open_positions.sort_by_key(|p| p.variant);
    progress(result.candles, by_id.iter().map(|s| s.len() as u64).sum());
    Ok(result)
}

/// `f` of every id in `ids`, the ids split across the cores, results in `ids`' order.
fn per_symbol<T: Send>(ids: &[usize], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let chunk = ids.len().div_ceil(cores).max(1);
    let run = |part: &[usize]| -> Vec<T> { part.iter().map(|&i| f(i)).collect() };
    std::thread::scope(|scope| {
        let handles: Vec<_> = ids.chunks(chunk).skip(1).map(|part| scope.spawn(|| run(part))).collect();
        let mut all = run(ids.chunks(chunk).next().unwrap_or(&[]));
        for h in handles {
            all.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        all
    })
}

/// The detail series packed and put at their main series' ids (`None` where a symbol has none).
fn pack_detail<'a>(
    series: &[Series<'_>],
    order: &[usize],
    detail: &'a [Series<'a>],
) -> Result<Vec<Option<Packed<'a>>>, EngineError> {
    let bad = |reason: String| EngineError::InvalidParam { name: "detail", reason };
    let mut by_id: Vec<Option<Packed<'a>>> = vec![None; order.len()];
    for d in detail {
        let id = order
            .iter()
            .position(|&i| series[i].symbol == d.symbol)
            .ok_or_else(|| bad(format!("{}: no main series for this symbol", d.symbol)))?;
        let tf = series[order[id]].tf_ms;
        if d.tf_ms <= 0 || d.tf_ms >= tf || tf % d.tf_ms != 0 {
            return Err(bad(format!(
                "{}: a detail timeframe of {} ms does not divide the main {} ms into smaller candles",
                d.symbol, d.tf_ms, tf
            )));
        }
        if by_id[id].is_some() {
            return Err(bad(format!("{}: detail given twice", d.symbol)));
        }
        by_id[id] = Some(d.pack().map_err(|e| bad(format!("{} detail: {e}", d.symbol)))?);
    }
    Ok(by_id)
}

/// One engine (a group of variants) over the validated series, in id order.
fn run_group(
    params: Vec<VariantParams>,
    found: Arc<Candidates>,
    by_id: &[Packed<'_>],
    detail: &[Option<Packed<'_>>],
    progress_every: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayResult, EngineError> {
    let mut engine = Engine::new(params)?;
    engine.use_candidates(found)?;
    let nv = engine.params().len();
    for s in by_id {
        engine.add_symbol(s.symbol, s.tf_ms)?;
    }
    let total: u64 = by_id.iter().map(|s| s.len() as u64).sum();
    // Merge by (close time, symbol id): at each distinct close time, one scan over the symbols in
    // id (= name) order takes every candle that closes then and finds the next close time. Aligned
    // universes cost O(1) per candle; no heap, and each symbol's columns are read sequentially.
    let mut cursor = vec![0usize; by_id.len()];
    let mut next: Vec<i64> =
        by_id.iter().map(|s| s.candles.first().map_or(i64::MAX, |c| c.open_time + s.tf_ms)).collect();

    let mut result = ReplayResult {
        symbols: by_id.iter().map(|s| s.symbol.to_owned()).collect(),
        trades: Vec::new(),
        open_positions: Vec::new(),
        counts: vec![VariantCounts::default(); nv],
        balances: Vec::new(),
        equity_time: Vec::new(),
        equity: vec![Vec::new(); nv],
        candles: 0,
        detail_candles: 0,
        undetailed: vec![0; by_id.len()],
    };
    let mut intents = Vec::with_capacity(4 * nv);
    let has_detail = detail.iter().any(Option::is_some);
    let mut detail_cursor = vec![0usize; by_id.len()];
    let mut now = next.iter().copied().min().unwrap_or(i64::MAX);
    while now != i64::MAX {
        if has_detail {
            for (id, s) in by_id.iter().enumerate() {
                if next[id] == now {
                    if let Some(d) = &detail[id] {
                        let c = &s.candles[cursor[id]];
                        between_closes(
                            &mut engine,
                            id as u32,
                            c,
                            s.tf_ms,
                            d,
                            &mut detail_cursor[id],
                            &mut intents,
                            &mut result,
                        )?;
                    }
                }
            }
        }
        let mut upcoming = i64::MAX;
        for (id, s) in by_id.iter().enumerate() {
            if next[id] == now {
                let i = cursor[id];
                cursor[id] = i + 1;
                next[id] = s.candles.get(i + 1).map_or(i64::MAX, |c| c.open_time + s.tf_ms);
                s.prefetch(i + 2);
                step(&mut engine, id as u32, &s.candles[i], &mut intents, &mut result)?;
                if progress_every > 0 && result.candles.is_multiple_of(progress_every) {
                    progress(result.candles, total);
                }
            }
            upcoming = upcoming.min(next[id]);
        }
        sample_equity(&engine, &mut result, now);
        now = upcoming;
    }
    for v in 0..nv as u32 {
        for &s in engine.open_symbols(v) {
            if let Some(p) = engine.position(v, s) {
                result.open_positions.push(*p);
            }
        }
        result.balances.push(engine.balance(v));
    }
    Ok(result)
}

/// The detail of main candle `c` before its close (see [`replay_detailed`]): every detail candle
/// but the last through [`Engine::on_price`], closes carried out; nothing when it is incomplete.
#[allow(clippy::too_many_arguments)]
fn between_closes(
    engine: &mut Engine,
    id: u32,
    c: &Candle,
    tf_ms: i64,
    d: &Packed<'_>,
    cursor: &mut usize,
    intents: &mut Vec<Intent>,
    result: &mut ReplayResult,
) -> Result<(), EngineError> {
    while d.candles.get(*cursor).is_some_and(|x| x.open_time < c.open_time) {
        *cursor += 1;
    }
    let k = (tf_ms / d.tf_ms) as usize;
    let part = d.candles.get(*cursor..*cursor + k);
    let complete = part
        .is_some_and(|p| p.iter().enumerate().all(|(j, x)| x.open_time == c.open_time + j as i64 * d.tf_ms));
    let Some(part) = part.filter(|_| complete) else {
        result.undetailed[id as usize] += 1;
        return Ok(());
    };
    *cursor += k;
    result.detail_candles += k as u64 - 1;
    let nv = engine.params().len() as u32;
    let mut levels: Vec<f64> = Vec::with_capacity(nv as usize);
    for x in &part[..k - 1] {
        let time = x.open_time + d.tf_ms;
        let mut at = x.open;
        for (i, price) in [x.open, x.low, x.high, x.close].into_iter().enumerate() {
            // Falling from `at` to `price`, the path passes every stop in between: each is a price of
            // its own, so a stop sells at its level, not at the candle's low. (A jump to the open
            // passes nothing: a gap fills at the open.)
            levels.clear();
            if i > 0 && price < at {
                levels.extend(
                    (0..nv)
                        .filter_map(|v| engine.position(v, id))
                        .map(|p| p.stop.level().0)
                        .filter(|&l| price < l && l < at),
                );
                levels.sort_by(|a, b| b.total_cmp(a));
                levels.dedup();
            }
            for &p in levels.iter().chain(std::iter::once(&price)) {
                intents.clear();
                engine.on_price(id, time, p, intents)?;
                apply_closes(engine, intents, result)?;
            }
            at = price;
        }
    }
    Ok(())
}

/// Carries out the `Close` intents (paper fills) and records the trades.
fn apply_closes(
    engine: &mut Engine,
    intents: &[Intent],
    result: &mut ReplayResult,
) -> Result<(), EngineError> {
    for intent in intents {
        if let Intent::Close { variant, symbol, time, price, reason } = *intent {
            let p = &engine.params()[variant as usize];
            let qty = engine.position(variant, symbol).map_or(0.0, |x| x.qty);
            let fill = p.costs.sell(price, qty);
            let trade = engine.apply_close(variant, symbol, time, &fill, reason)?;
            result.trades.push(trade);
        }
    }
    Ok(())
}

/// One candle close of one symbol: exits carried out, then signals carried out (paper fills).
fn step(
    engine: &mut Engine,
    id: u32,
    candle: &Candle,
    intents: &mut Vec<Intent>,
    result: &mut ReplayResult,
) -> Result<(), EngineError> {
    intents.clear();
    engine.exits(id, candle, intents)?;
    apply_closes(engine, intents, result)?;
    intents.clear();
    engine.signals(id, intents)?;
    for intent in intents.iter() {
        match *intent {
            Intent::Open { variant, symbol, time, price, stop_pct, atr } => {
                let p = &engine.params()[variant as usize];
                let fill = p.costs.buy(price, p.stake);
                engine.apply_open(variant, symbol, time, &fill, stop_pct, atr)?;
                result.counts[variant as usize].opens += 1;
            }
            Intent::Skip { variant, reason, .. } => {
                let k = SkipReason::ALL.iter().position(|&r| r == reason).unwrap_or(0);
                result.counts[variant as usize].skips[k] += 1;
            }
            Intent::Close { .. } => {}
        }
    }
    result.candles += 1;
    Ok(())
}

fn sample_equity(engine: &Engine, result: &mut ReplayResult, time: i64) {
    result.equity_time.push(time);
    for (v, curve) in result.equity.iter_mut().enumerate() {
        curve.push(engine.equity(v as u32));
    }
}
