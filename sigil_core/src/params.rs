//! A variant's posture from the dict the config layer builds (`Variant.engine_params()`), checked
//! by the engine's own rules; a missing or mistyped key names the variant parameter.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sigil_engine::breakout::BreakoutParams;
use sigil_engine::engine::VariantParams;
use sigil_engine::fills::Costs;
use sigil_engine::stops::TrailParams;

use crate::errors::engine_error_in;

/// Reads one key of a variant dict, naming the variant and the key when missing or mistyped.
fn field<'py, T>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    let v =
        d.get_item(key)?.ok_or_else(|| PyKeyError::new_err(format!("variant parameter {key:?} missing")))?;
    v.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        PyValueError::new_err(format!("variant parameter {key:?}: {e}"))
    })
}

/// A variant from the dict the config layer produces (`VariantConfig.engine_params()`).
pub fn variant_params(d: &Bound<'_, PyDict>) -> PyResult<VariantParams> {
    let p = VariantParams {
        name: field(d, "name")?,
        stop_k: field(d, "stop_k")?,
        stop_floor: field(d, "stop_floor")?,
        stop_cap: field(d, "stop_cap")?,
        breakout: BreakoutParams {
            lookback: field(d, "lookback")?,
            volume_mult: field(d, "volume_mult")?,
            buffer: field(d, "breakout_buffer")?,
            atr_min_pct: field(d, "atr_min_pct")?,
            atr_max_pct: field(d, "atr_max_pct")?,
        },
        max_open: field(d, "max_open")?,
        cooldown_candles: field(d, "cooldown_candles")?,
        stake: field(d, "stake")?,
        starting_balance: field(d, "starting_balance")?,
        costs: Costs { fee_rate: field(d, "fee_rate")?, slippage: field(d, "slippage")? },
        atr_period: field(d, "atr_period")?,
        trail: TrailParams { activation: field(d, "trail_activation")?, trail_mult: field(d, "trail_mult")? },
        time_stop_candles: field(d, "time_stop_candles")?,
    };
    p.validate().map_err(|e| engine_error_in(&format!("variant {:?}", p.name), e))?;
    Ok(p)
}
