//! `GuardTable`: the pre-signal guard and cooldowns, by interned ids.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sigil_engine::guard::{Blocked, GuardTable};

use crate::errors::engine_error;

/// Per (variant, symbol): free, open, or protected until a time (ms UTC).
#[pyclass(name = "GuardTable", module = "sigil._core")]
struct PyGuardTable {
    inner: GuardTable,
}

fn reason(b: Blocked) -> &'static str {
    match b {
        Blocked::Open => "open",
        Blocked::Cooldown { .. } => "cooldown",
    }
}

#[pymethods]
impl PyGuardTable {
    #[new]
    fn new(variants: Vec<String>) -> PyResult<Self> {
        Ok(Self { inner: GuardTable::new(&variants).map_err(engine_error)? })
    }

    /// Id of a variant name; ValueError when unknown.
    fn variant_id(&self, name: &str) -> PyResult<u32> {
        self.inner.variant_id(name).ok_or_else(|| PyValueError::new_err(format!("unknown variant {name:?}")))
    }

    /// Id of a symbol, interning it on first use.
    fn symbol_id(&mut self, name: &str) -> PyResult<u32> {
        self.inner.intern_symbol(name).map_err(engine_error)
    }

    /// The pre-signal guard: True when (variant, symbol) may signal at `now_ms`.
    fn can_signal(&self, variant: u32, symbol: u32, now_ms: i64) -> PyResult<bool> {
        Ok(self.inner.can_signal(variant, symbol, now_ms).map_err(engine_error)?.is_ok())
    }

    /// Why (variant, symbol) may not signal at `now_ms`: "open", "cooldown", or None.
    fn blocked(&self, variant: u32, symbol: u32, now_ms: i64) -> PyResult<Option<&'static str>> {
        Ok(self.inner.can_signal(variant, symbol, now_ms).map_err(engine_error)?.err().map(reason))
    }

    /// Marks open at `open_time_ms` and protects until `open_time_ms + cooldown_ms`.
    /// Returns False (and changes nothing) when the guard refuses.
    fn claim(&mut self, variant: u32, symbol: u32, open_time_ms: i64, cooldown_ms: i64) -> PyResult<bool> {
        Ok(self.inner.claim(variant, symbol, open_time_ms, cooldown_ms).map_err(engine_error)?.is_ok())
    }

    /// Marks closed; the cooldown stays.
    fn release(&mut self, variant: u32, symbol: u32) -> PyResult<()> {
        self.inner.release(variant, symbol).map_err(engine_error)
    }

    /// Sets the state as the database has it.
    #[pyo3(signature = (variant, symbol, open, protected_until_ms = None))]
    fn set(
        &mut self,
        variant: u32,
        symbol: u32,
        open: bool,
        protected_until_ms: Option<i64>,
    ) -> PyResult<()> {
        self.inner.set(variant, symbol, open, protected_until_ms).map_err(engine_error)
    }

    /// `(open, protected_until_ms or None)`.
    fn get(&self, variant: u32, symbol: u32) -> PyResult<(bool, Option<i64>)> {
        self.inner.get(variant, symbol).map_err(engine_error)
    }

    /// Variant names in id order.
    #[getter]
    fn variants(&self) -> Vec<String> {
        (0..self.inner.variant_count() as u32).map(|i| self.inner.variant_name(i).to_owned()).collect()
    }

    fn __len__(&self) -> usize {
        self.inner.symbol_count()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGuardTable>()
}
