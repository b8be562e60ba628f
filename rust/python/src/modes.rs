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

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

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
            let entry = entry?;
            let entry = entry.downcast::<PyTuple>()?;
            match entry.len() {
                3 => entry
                    .get_item(0)?
                    .setattr(entry.get_item(1)?.downcast()?, entry.get_item(2)?)?,
                2 => {
                    entry.get_item(0)?.call1((entry.get_item(1)?,))?;
                }
                n => {
                    return Err(PyTypeError::new_err(format!(
                        "RestoreOnExit: an entry of _restore has {n} items, not 2 or 3"
                    )))
                }
            }
        }
        Ok(false)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RestoreOnExit>()
}
