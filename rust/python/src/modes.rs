//! `RestoreOnExit`: the native `__exit__` of the package's mode managers
//! (`no_grad`, `set_grad_enabled`, the inside of a recorded operation,
//! training work, products-only steps).
//!
//! CPython runs a pending signal handler (Ctrl-C's `KeyboardInterrupt`) at
//! the start of every Python function. A manager whose `__exit__` is Python
//! code can therefore be interrupted before it restores anything, and the
//! mode it set (recording off, say) stays for good. A native `__exit__`
//! runs no bytecode: nothing can come between the `with` block's end and
//! the restore. A Python subclass's `__enter__` records what to put back
//! in `self._restore` before it changes anything, as a sequence of
//! `(target, name, value)` (set the attribute) or `(function, argument)`
//! (call a native function, such as torch's grad-mode switch).

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// Base class whose `__exit__` puts back what `self._restore` names,
/// without running Python code (see the module documentation).
#[pyclass(subclass, module = "cryptgpu._native")]
pub struct RestoreOnExit;

#[pymethods]
impl RestoreOnExit {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        RestoreOnExit
    }

    /// Put back what `__enter__` recorded in `self._restore` (in order);
    /// never suppresses an exception. A manager never entered restores
    /// nothing.
    #[pyo3(signature = (*_exc))]
    fn __exit__(slf: &Bound<'_, Self>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let Ok(restore) = slf.getattr("_restore") else {
            return Ok(false);
        };
        for entry in restore.try_iter()? {
            put_back(&entry?)?;
        }
        Ok(false)
    }

    /// Apply what `self._enter` names (in order), having recorded in
    /// `self._restore` what `__exit__` puts back (in reverse order). A
    /// manager without `_enter` changes nothing here. Should a change
    /// fail, those made are put back before the error is raised (no
    /// `__exit__` runs after a failed `__enter__`).
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let enter = match slf.getattr("_enter") {
            Ok(enter) => enter,
            Err(e) if e.is_instance_of::<PyAttributeError>(py) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut steps = Vec::new();
        let mut restore = Vec::new();
        for entry in enter.try_iter()? {
            let entry = entry?.downcast_into::<PyTuple>()?;
            if entry.len() != 3 {
                return Err(PyTypeError::new_err(format!(
                    "RestoreOnExit: an entry of _enter has {} items, not 3",
                    entry.len()
                )));
            }
            let (a, b) = (entry.get_item(0)?, entry.get_item(1)?);
            let back = match b.downcast::<PyString>() {
                Ok(name) => {
                    let was = a.getattr(name)?;
                    PyTuple::new(py, [a, b, was])?
                }
                Err(_) => {
                    let was = b.call0()?;
                    PyTuple::new(py, [a, was])?
                }
            };
            restore.push(back);
            steps.push(entry);
        }
        let back: Vec<_> = restore.iter().rev().cloned().collect();
        slf.setattr("_restore", PyTuple::new(py, &back)?)?;
        for (i, step) in steps.iter().enumerate() {
            let (a, b, value) = (step.get_item(0)?, step.get_item(1)?, step.get_item(2)?);
            let done = match b.downcast::<PyString>() {
                Ok(name) => a.setattr(name, value),
                Err(_) => a.call1((value,)).map(drop),
            };
            if let Err(e) = done {
                for entry in restore[..=i].iter().rev() {
                    let _ = put_back(entry.as_any());
                }
                slf.setattr("_restore", PyTuple::empty(py))?;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Put back one entry of `_restore`: `(target, name, value)` or
/// `(function, argument)`.
fn put_back(entry: &Bound<'_, PyAny>) -> PyResult<()> {
    let entry = entry.downcast::<PyTuple>()?;
    match entry.len() {
        3 => entry.get_item(0)?.setattr(
            entry.get_item(1)?.downcast::<PyString>()?,
            entry.get_item(2)?,
        ),
        2 => entry.get_item(0)?.call1((entry.get_item(1)?,)).map(drop),
        n => Err(PyTypeError::new_err(format!(
            "RestoreOnExit: an entry of _restore has {n} items, not 2 or 3"
        ))),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RestoreOnExit>()
}
