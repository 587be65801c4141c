//! The one `unsafe` corner of the binding: `Atr.update` as a raw CPython FASTCALL method, and the
//! cell that lets a frozen `Atr` be updated in place.
//!
//! Why: `Atr.update` is the call a live feed makes per candle, and PyO3's generic argument handling
//! (argument description, a copy of the argument vector, one more trampoline) costs more than the
//! update itself (see the Atr.update benchmarks against kand and talipp). Everything here keeps
//! the safe method's Python signature and errors; when the fast method cannot be installed the
//! safe `#[pymethods]` `update` in `atr.rs` stays in place.
#![allow(unsafe_code)]

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::types::{PyString, PyTuple};
use std::cell::UnsafeCell;
use std::ffi::CStr;

use crate::atr::PyAtr;
use crate::errors::engine_error;
use sigil_engine::atr as engine;

/// The engine's `Atr`, reached only through [`AtrCell::with`].
pub struct AtrCell(UnsafeCell<engine::Atr>);

// SAFETY: the `Atr` inside is only reached through `AtrCell::with`, which holds the object's
// critical section for the whole access: the GIL on GIL-enabled interpreters, the object's own
// lock on free-threaded ones. The closures it runs never call into Python (so the section is
// never suspended) and never re-enter `with`, so each `&mut` is the only reference while it
// lives.
unsafe impl Sync for AtrCell {}

impl AtrCell {
    /// A cell holding `atr`.
    pub fn new(atr: engine::Atr) -> Self {
        Self(UnsafeCell::new(atr))
    }

    /// Runs `f` on the `Atr`, inside `owner`'s critical section (`owner` is the Python object that
    /// holds this cell).
    #[inline(always)]
    pub fn with<R>(&self, owner: &Bound<'_, PyAny>, f: impl FnOnce(&mut engine::Atr) -> R) -> R {
        with_critical_section(owner, || {
            // SAFETY: see `AtrCell`; `f` is plain Rust that does not call into Python.
            f(unsafe { &mut *self.0.get() })
        })
    }
}

// `Atr.update` is the one call a live feed makes per candle, so it is a plain CPython
// `METH_FASTCALL | METH_KEYWORDS` method rather than a `#[pymethods]` one: the generic argument
// description, the copy of the argument vector and the extra trampoline cost more than the
// update itself. It keeps the same Python signature (positional or keyword `high, low, close`),
// the same errors (TypeError for a bad argument, ValueError for a bad price).

/// The docstring, led by the signature `inspect` reads.
const UPDATE_DOC: &CStr = c"update($self, high, low, close)
--

Feeds one candle; returns the new value (NaN until ready). ValueError on a non-finite or
non-positive price or high < low.";

const UPDATE_PARAMS: [&str; 3] = ["high", "low", "close"];

/// CPython's entry point for `Atr.update`.
///
/// # Safety
/// Called by CPython only, through the method descriptor made in [`install_update`]: with the
/// thread attached, `slf` an object of the descriptor's type, `args` holding `nargs` positional
/// values followed by one value per name in `kwnames` (a tuple of str, or NULL), all borrowed.
unsafe extern "C" fn atr_update(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython runs methods with the thread attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // A panic must not unwind into CPython; it becomes a PanicException, as in PyO3's own methods.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's guarantees are `update`'s.
        unsafe { update(py, slf, args, nargs, kwnames) }
    }));
    let value = match result {
        Ok(r) => r,
        Err(payload) => Err(panic_error(payload.as_ref())),
    };
    match value {
        // SAFETY: a new reference, or NULL with an exception set.
        Ok(v) => unsafe { ffi::PyFloat_FromDouble(v) },
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Binds the arguments, converts them to floats and feeds the candle.
///
/// # Safety
/// As for [`atr_update`].
#[inline]
unsafe fn update(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<f64> {
    let nargs = usize::try_from(nargs).unwrap_or(0);
    let [high, low, close] = if kwnames.is_null() && nargs == 3 {
        // SAFETY: `args` holds three live objects.
        unsafe { [*args, *args.add(1), *args.add(2)] }
    } else if kwnames.is_null() {
        return Err(arity_error(nargs));
    } else {
        // SAFETY: a non-NULL `kwnames` is a tuple of str.
        let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
        // SAFETY: `args` holds the positional values followed by one value per keyword name.
        let values = unsafe { std::slice::from_raw_parts(args, nargs + names.len()) };
        bind_keywords(nargs, values, &names)?
    };
    // SAFETY (all three): live objects borrowed for the call.
    let high = unsafe { float_arg(py, high, 0)? };
    let low = unsafe { float_arg(py, low, 1)? };
    let close = unsafe { float_arg(py, close, 2)? };
    // SAFETY: `slf` is live, and an `Atr`: the method descriptor checks the type of `self`
    // before calling (CPython refuses `Atr.update(other_object, ...)` with a TypeError).
    let atr = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<PyAtr>() };
    PyAtr::with(&atr, |a| a.update(high, low, close)).map_err(engine_error)
}

/// `high, low, close` from positional values and keyword names, as Python binds them.
#[cold]
fn bind_keywords(
    nargs: usize,
    values: &[*mut ffi::PyObject],
    names: &Bound<'_, PyTuple>,
) -> PyResult<[*mut ffi::PyObject; 3]> {
    if nargs > 3 {
        return Err(arity_error(nargs));
    }
    let mut slots = [std::ptr::null_mut(); 3];
    slots[..nargs].copy_from_slice(&values[..nargs]);
    for (name, &value) in names.iter().zip(&values[nargs..]) {
        let name = name.cast_into::<PyString>()?;
        let name = name.to_str()?;
        let Some(k) = UPDATE_PARAMS.iter().position(|p| *p == name) else {
            return Err(PyTypeError::new_err(format!(
                "Atr.update() got an unexpected keyword argument '{name}'"
            )));
        };
        if !slots[k].is_null() {
            return Err(PyTypeError::new_err(format!(
                "Atr.update() got multiple values for argument '{name}'"
            )));
        }
        slots[k] = value;
    }
    if let Some(k) = slots.iter().position(|p| p.is_null()) {
        return Err(PyTypeError::new_err(format!(
            "Atr.update() missing required argument '{}'",
            UPDATE_PARAMS[k]
        )));
    }
    Ok(slots)
}

/// Argument `param` (an index into [`UPDATE_PARAMS`]) as a float: anything with `__float__` or
/// `__index__`, as PyO3's `f64` takes.
///
/// # Safety
/// `obj` is a live object borrowed for the call.
#[inline(always)]
unsafe fn float_arg(py: Python<'_>, obj: *mut ffi::PyObject, param: usize) -> PyResult<f64> {
    // SAFETY: `obj` is live. -1.0 is also what a failed conversion returns, so only then is the
    // error indicator consulted.
    let v = unsafe { ffi::PyFloat_AsDouble(obj) };
    if v == -1.0 {
        if let Some(e) = PyErr::take(py) {
            return Err(argument_error(py, e, param));
        }
    }
    Ok(v)
}

#[cold]
fn argument_error(py: Python<'_>, e: PyErr, param: usize) -> PyErr {
    let err = PyTypeError::new_err(format!("argument '{}': {}", UPDATE_PARAMS[param], e.value(py)));
    err.set_cause(py, Some(e));
    err
}

#[cold]
fn arity_error(nargs: usize) -> PyErr {
    PyTypeError::new_err(format!("Atr.update() takes 3 arguments (high, low, close), {nargs} given"))
}

#[cold]
fn panic_error(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let msg = if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic from Rust code".to_string()
    };
    PanicException::new_err((msg,))
}

/// Puts `atr_update` on the `Atr` type as its `update` method, replacing the safe one; if that
/// fails, the safe method stays (slower, same behaviour).
pub fn install_update(py: Python<'_>) {
    if let Err(e) = try_install_update(py) {
        e.print(py);
    }
}

fn try_install_update(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<PyAtr>();
    // CPython keeps a pointer to the definition for as long as the method exists: for the life
    // of the process, once per module initialisation.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"update".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: atr_update },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: UPDATE_DOC.as_ptr(),
    }));
    // SAFETY: `ty` is a live type object and `def` outlives it; the call returns a new
    // reference, or NULL with an exception set.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr("update", descr)
}
