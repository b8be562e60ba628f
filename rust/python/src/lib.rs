//! `cryptgpu._native`: a thin PyO3 layer over the engine, one file per
//! engine area it binds:
//!
//! - `error`: one exception class per engine error, and `call`, which runs
//!   engine work without the GIL and maps its errors and panics;
//! - `session`: the `Session` class (the engine's runtime) and its set-up;
//! - `ops`: its Python methods, lifecycle and operations (arithmetic,
//!   layout, nonlinear), in the one `#[pymethods]` block pyo3 allows;
//! - `tensor`: the `Tensor` handle and the bytes/tuples that cross with it;
//! - `net`: the TCP/ZeroMQ links of a multi-process party;
//! - `keys`: X25519 link keys;
//! - `modes`: the native `__exit__` of the package's mode managers;
//! - `cpu`, `cuda`: the devices, raw, for benchmarks and kernel checks.

mod cpu;
mod cuda;
mod error;
mod keys;
mod modes;
mod net;
mod ops;
mod session;
mod tensor;

use pyo3::prelude::*;

// Protocols allocate and drop many multi-megabyte buffers per call; glibc
// returns them to the OS and faults them back in, mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(m)?;
    error::install_interrupt_check();
    session::register(m)?;
    keys::register(m)?;
    modes::register(m)?;
    cpu::register(m)?;
    cuda::register(m)?;
    Ok(())
}
