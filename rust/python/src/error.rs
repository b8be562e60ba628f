//! The Python exceptions of the engine: one class per `EngineError` variant,
//! every one a subclass of `CryptGPUError` (a RuntimeError) and also of the
//! builtin that callers already catch (`except ValueError` keeps catching a
//! shape mismatch). pyo3's `create_exception!` takes a single base, so the
//! classes are made at first use with `type(name, bases, dict)` and kept in
//! a `GILOnceCell`: the module attributes and `to_py` share the same objects.
//!
//! `call` is the boundary every engine call goes through: it releases the
//! GIL, turns a panic into `InternalError` and an `EngineError` into its
//! class.

use cryptgpu_engine::EngineError;
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The module the classes report (`__module__`), so that they pickle.
const MODULE: &str = "cryptgpu._native";

/// The engine error kinds, in `EngineError`'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shape,
    Encoding,
    Invalid,
    Peer,
    Unavailable,
    OutOfMemory,
    Internal,
}

/// The builtin exception a kind's class also derives from, besides
/// `CryptGPUError`.
#[derive(Clone, Copy)]
enum Builtin {
    /// Only `CryptGPUError`, which is already a RuntimeError.
    Runtime,
    Value,
    Memory,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Shape,
        Kind::Encoding,
        Kind::Invalid,
        Kind::Peer,
        Kind::Unavailable,
        Kind::OutOfMemory,
        Kind::Internal,
    ];

    /// The kind of an engine error; a new variant fails to compile here.
    pub fn of(e: &EngineError) -> Kind {
        match e {
            EngineError::Shape(_) => Kind::Shape,
            EngineError::Encoding(_) => Kind::Encoding,
            EngineError::Invalid(_) => Kind::Invalid,
            EngineError::Peer(_) => Kind::Peer,
            EngineError::Unavailable(_) => Kind::Unavailable,
            EngineError::OutOfMemory(_) => Kind::OutOfMemory,
            EngineError::Internal(_) => Kind::Internal,
        }
    }

    /// Class name, builtin base and docstring.
    fn spec(self) -> (&'static str, Builtin, &'static str) {
        match self {
            Kind::Shape => (
                "ShapeError",
                Builtin::Value,
                "Operand shapes do not fit the operation.",
            ),
            Kind::Encoding => (
                "EncodingError",
                Builtin::Value,
                "A value cannot be encoded in fixed point (NaN, inf or out of range).",
            ),
            Kind::Invalid => (
                "InvalidArgumentError",
                Builtin::Value,
                "An argument is out of range (party index, stride, address, key, ...).",
            ),
            Kind::Peer => (
                "PeerError",
                Builtin::Runtime,
                "A party failed, closed its link or timed out.",
            ),
            Kind::Unavailable => (
                "UnavailableError",
                Builtin::Runtime,
                "A device or system library the call needs is missing (CUDA, NVRTC), \
                 or a kernel failed to compile.",
            ),
            Kind::OutOfMemory => (
                "OutOfMemoryError",
                Builtin::Memory,
                "A device could not allocate a buffer (host or GPU memory).",
            ),
            Kind::Internal => (
                "InternalError",
                Builtin::Runtime,
                "A bug in the engine; please report it.",
            ),
        }
    }
}

struct Classes {
    base: Py<PyType>,
    kinds: Vec<Py<PyType>>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

/// `type(name, bases, {"__module__": MODULE, "__doc__": doc})`.
fn new_class(
    py: Python<'_>,
    name: &str,
    bases: Bound<'_, PyTuple>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let dict = PyDict::new(py);
    dict.set_item("__module__", MODULE)?;
    dict.set_item("__doc__", doc)?;
    let class = py.get_type::<PyType>().call1((name, bases, dict))?;
    Ok(class.downcast_into::<PyType>()?.unbind())
}

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let runtime = py.get_type::<PyRuntimeError>();
        let base = new_class(
            py,
            "CryptGPUError",
            PyTuple::new(py, [runtime])?,
            "Base class of cryptgpu engine errors (a RuntimeError).",
        )?;
        let kinds = Kind::ALL
            .iter()
            .map(|k| {
                let (name, builtin, doc) = k.spec();
                let b = base.bind(py).clone();
                let bases = match builtin {
                    Builtin::Runtime => PyTuple::new(py, [b])?,
                    Builtin::Value => PyTuple::new(py, [b, py.get_type::<PyValueError>()])?,
                    Builtin::Memory => PyTuple::new(py, [b, py.get_type::<PyMemoryError>()])?,
                };
                new_class(py, name, bases, doc)
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Classes { base, kinds })
    })
}

/// A Python exception of `kind` with message `msg`.
pub fn new_err(kind: Kind, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::with_gil(|py| match classes(py) {
        Ok(c) => PyErr::from_type(c.kinds[kind as usize].bind(py).clone(), msg),
        Err(e) => e,
    })
}

/// An engine error as its Python exception; the message keeps the engine's
/// prefix ("shape error: ...").
pub fn to_py(e: EngineError) -> PyErr {
    new_err(Kind::of(&e), e.to_string())
}

/// A bad argument caught in the binding: InvalidArgumentError (a ValueError).
pub fn invalid(msg: impl Into<String>) -> PyErr {
    new_err(Kind::Invalid, msg)
}

/// Buffers that do not fit the shapes given: ShapeError (a ValueError).
pub fn shape(msg: impl Into<String>) -> PyErr {
    new_err(Kind::Shape, msg)
}

thread_local! {
    /// A signal handler's exception (KeyboardInterrupt) raised while this
    /// thread waited on the network inside the engine, to re-raise when
    /// the engine call returns.
    static SIGNALLED: std::cell::RefCell<Option<PyErr>> = const { std::cell::RefCell::new(None) };
}

/// The engine's interrupt check (`net::set_interrupt_check`): run Python's
/// signal handlers (they run only on the main thread; elsewhere this is a
/// no-op). A handler that raises (Ctrl-C's KeyboardInterrupt) ends the
/// wait; its exception is kept for `call` to raise.
fn python_signalled() -> bool {
    Python::with_gil(|py| match py.check_signals() {
        Ok(()) => false,
        Err(e) => {
            SIGNALLED.with(|s| *s.borrow_mut() = Some(e));
            true
        }
    })
}

/// Install the interrupt check (at module import).
pub fn install_interrupt_check() {
    cryptgpu_engine::net::set_interrupt_check(python_signalled);
}

/// Run engine work without the GIL; a panic becomes InternalError, and an
/// engine error caused by a signal handler's exception (Ctrl-C while a
/// party waited on the network) raises that exception.
pub fn call<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> cryptgpu_engine::Result<T> + Send,
) -> PyResult<T> {
    SIGNALLED.with(|s| s.borrow_mut().take());
    py.allow_threads(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|_| {
            new_err(
                Kind::Internal,
                "the engine panicked; the session may be unusable",
            )
        })?
        .map_err(|e| {
            SIGNALLED
                .with(|s| s.borrow_mut().take())
                .unwrap_or_else(|| to_py(e))
        })
}

/// Add `CryptGPUError` and one class per kind to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    m.add("CryptGPUError", c.base.bind(py))?;
    for (k, class) in Kind::ALL.iter().zip(&c.kinds) {
        m.add(k.spec().0, class.bind(py))?;
    }
    Ok(())
}
