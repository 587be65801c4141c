//! The engine's vocabulary of reasons, exported once: `ExitReason` (why a position closed) and
//! `SkipReason` (why a breakout opened nothing). Python imports these instead of declaring them
//! again; `value` is the name stored in the database and written to reports.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sigil_engine::engine::SkipReason;
use sigil_engine::stops::ExitReason;

/// Why a position closed.
#[pyclass(name = "ExitReason", module = "sigil._core", eq, eq_int, frozen, hash, from_py_object)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyExitReason {
    #[pyo3(name = "HARD_STOP")]
    HardStop,
    #[pyo3(name = "ATR_TRAIL")]
    AtrTrail,
    #[pyo3(name = "TIME_STOP")]
    TimeStop,
    #[pyo3(name = "MANUAL")]
    Manual,
}

impl From<ExitReason> for PyExitReason {
    fn from(r: ExitReason) -> Self {
        match r {
            ExitReason::HardStop => Self::HardStop,
            ExitReason::AtrTrail => Self::AtrTrail,
            ExitReason::TimeStop => Self::TimeStop,
            ExitReason::Manual => Self::Manual,
        }
    }
}

impl From<PyExitReason> for ExitReason {
    fn from(r: PyExitReason) -> Self {
        match r {
            PyExitReason::HardStop => Self::HardStop,
            PyExitReason::AtrTrail => Self::AtrTrail,
            PyExitReason::TimeStop => Self::TimeStop,
            PyExitReason::Manual => Self::Manual,
        }
    }
}

/// The order reports list exits in: the trail's winners first, then the stops, then the operator's.
const EXIT_REPORT_ORDER: [ExitReason; 4] =
    [ExitReason::AtrTrail, ExitReason::HardStop, ExitReason::TimeStop, ExitReason::Manual];

impl PyExitReason {
    /// The stored name (Rust side).
    pub fn value_str(self) -> &'static str {
        ExitReason::from(self).as_str()
    }
}

#[pymethods]
impl PyExitReason {
    /// The stored name: `hard_stop`, `atr_trail`, `time_stop`, `manual`.
    #[getter]
    fn value(&self) -> &'static str {
        self.value_str()
    }

    /// The integer code replay's trade columns carry (an index into `ExitReason.all()`).
    #[getter]
    fn code(&self) -> usize {
        let r = ExitReason::from(*self);
        ExitReason::ALL.iter().position(|&x| x == r).unwrap_or(0)
    }

    /// The reason stored under `name`; ValueError for any other name.
    #[staticmethod]
    fn parse(name: &str) -> PyResult<Self> {
        ExitReason::parse(name)
            .map(Self::from)
            .ok_or_else(|| PyValueError::new_err(format!("unknown exit reason {name:?}")))
    }

    /// Every reason, in code order.
    #[staticmethod]
    fn all() -> Vec<Self> {
        ExitReason::ALL.iter().map(|&r| r.into()).collect()
    }

    /// Every reason, in the order reports list them.
    #[staticmethod]
    fn report_order() -> Vec<Self> {
        EXIT_REPORT_ORDER.iter().map(|&r| r.into()).collect()
    }

    fn __str__(&self) -> &'static str {
        self.value_str()
    }
}

/// Why a breakout produced no open.
#[pyclass(name = "SkipReason", module = "sigil._core", eq, eq_int, frozen, hash)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PySkipReason {
    #[pyo3(name = "OPEN")]
    Open,
    #[pyo3(name = "COOLDOWN")]
    Cooldown,
    #[pyo3(name = "MAX_OPEN")]
    MaxOpen,
    #[pyo3(name = "BALANCE")]
    Balance,
}

impl From<SkipReason> for PySkipReason {
    fn from(r: SkipReason) -> Self {
        match r {
            SkipReason::Open => Self::Open,
            SkipReason::Cooldown => Self::Cooldown,
            SkipReason::MaxOpen => Self::MaxOpen,
            SkipReason::Balance => Self::Balance,
        }
    }
}

impl From<PySkipReason> for SkipReason {
    fn from(r: PySkipReason) -> Self {
        match r {
            PySkipReason::Open => Self::Open,
            PySkipReason::Cooldown => Self::Cooldown,
            PySkipReason::MaxOpen => Self::MaxOpen,
            PySkipReason::Balance => Self::Balance,
        }
    }
}

impl PySkipReason {
    /// The stored name (Rust side).
    pub fn value_str(self) -> &'static str {
        SkipReason::from(self).as_str()
    }
}

#[pymethods]
impl PySkipReason {
    /// The stored name: `open`, `cooldown`, `max_open`, `balance`.
    #[getter]
    fn value(&self) -> &'static str {
        self.value_str()
    }

    /// The reason stored under `name`; ValueError for any other name.
    #[staticmethod]
    fn parse(name: &str) -> PyResult<Self> {
        SkipReason::ALL
            .iter()
            .find(|r| r.as_str() == name)
            .map(|&r| r.into())
            .ok_or_else(|| PyValueError::new_err(format!("unknown skip reason {name:?}")))
    }

    /// Every reason, in the engine's (and the reports') order.
    #[staticmethod]
    fn all() -> Vec<Self> {
        SkipReason::ALL.iter().map(|&r| r.into()).collect()
    }

    fn __str__(&self) -> &'static str {
        self.value_str()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExitReason>()?;
    m.add_class::<PySkipReason>()
}
