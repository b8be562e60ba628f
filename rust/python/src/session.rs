//! The `Session` class (the engine's `runtime`): the class, its
//! configuration from the Python arguments, the engine-call helper its
//! methods share, and the SPMD sessions joined in-process. Its Python
//! methods, lifecycle and operations, are in `ops` (one `#[pymethods]`
//! block per class); the links of a multi-process party are in `net`.

use crate::error::{call, invalid};
use crate::tensor::Tensor;
use cryptgpu_engine::runtime::{Config, DeviceKind, Session as EngSession, Tensor as EngTensor};
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// "cpu" or "cuda" as the engine's device kind.
fn device_kind(device: &str) -> PyResult<DeviceKind> {
    match device {
        "cpu" => Ok(DeviceKind::Cpu),
        "cuda" => Ok(DeviceKind::Cuda),
        other => Err(invalid(format!(
            "unknown device {other:?}; expected \"cpu\" or \"cuda\""
        ))),
    }
}

/// The longest wait a session takes (about 115 days).
const MAX_TIMEOUT_S: f64 = 1e7;

/// A session's configuration from the Python arguments.
pub fn config(
    precision_bits: u32,
    seed: Option<u64>,
    timeout_s: f64,
    device: &str,
) -> PyResult<Config> {
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(invalid("timeout_s must be a positive number of seconds"));
    }
    // A huge timeout means "never": capped where deadlines (now + timeout)
    // still fit an Instant (1e19 s panicked there, 1e300 s in Duration).
    Ok(Config {
        frac_bits: precision_bits,
        seed,
        timeout: Duration::from_secs_f64(timeout_s.min(MAX_TIMEOUT_S)),
        device: device_kind(device)?,
    })
}

/// A three-party session: the three party threads in this process, or one
/// party of a multi-process run.
#[pyclass(frozen, module = "cryptgpu._native")]
pub struct Session(pub Arc<EngSession>);

impl Session {
    /// Run an engine operation that makes a tensor, without the GIL (`call`).
    pub fn run(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&EngSession) -> cryptgpu_engine::Result<EngTensor> + Send,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || f(s))?))
    }
}

/// Three single-party sessions joined by in-process channels: drive each from
/// its own thread to run SPMD code (every party runs the same script).
#[pyfunction]
#[pyo3(signature = (precision_bits=16, seed=None, timeout_s=60.0, device="cpu"))]
fn spmd_local_sessions(
    py: Python<'_>,
    precision_bits: u32,
    seed: Option<u64>,
    timeout_s: f64,
    device: &str,
) -> PyResult<Vec<Session>> {
    let cfg = config(precision_bits, seed, timeout_s, device)?;
    let ss = call(py, || EngSession::spmd_local(cfg))?;
    Ok(ss.into_iter().map(|s| Session(Arc::new(s))).collect())
}

/// The exit status `exit_status_at_end` set (0: none).
static EXIT_STATUS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn on_exit(f: extern "C" fn(i32, *mut std::ffi::c_void), arg: *mut std::ffi::c_void) -> i32;
    fn _exit(code: i32) -> !;
}

/// Run by the C library's `exit` with the process's status: a status of
/// 0 becomes the one set; a script's own non-zero status (`sys.exit(3)`)
/// is kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn exit_with_status(status: i32, _: *mut std::ffi::c_void) {
    let code = EXIT_STATUS.load(std::sync::atomic::Ordering::Acquire);
    if status == 0 && code != 0 {
        // SAFETY: ends the process at once; the interpreter has finalised
        // (sys.stdout and sys.stderr are flushed) before `exit` runs this.
        unsafe { _exit(code) }
    }
}

/// Make the process's exit status `code` where it would be 0: a party that
/// learns at exit that the job failed on another party (its session's
/// close raised PeerError in an atexit handler, which cannot change the
/// exit status itself) ends with a non-zero status instead of 0. Takes
/// effect when the C library's `exit` runs, after the interpreter has
/// finalised (every atexit handler run, sys.stdout flushed). Linux
/// with glibc (its `on_exit`); elsewhere a no-op.
/// `code` 0 only registers the hook (at `init()`, early, so that the C
/// exit handlers registered later run before it ends the process; those
/// registered before, such as the libraries' loaded before `init()`, are
/// skipped when it does).
#[pyfunction]
fn exit_status_at_end(code: i32) {
    if code != 0 {
        EXIT_STATUS.store(code, std::sync::atomic::Ordering::Release);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static HOOKED: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a plain function that touches no Python state.
        HOOKED.call_once(|| unsafe {
            on_exit(exit_with_status, std::ptr::null_mut());
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Session>()?;
    m.add_class::<Tensor>()?;
    m.add_function(wrap_pyfunction!(exit_status_at_end, m)?)?;
    m.add_function(wrap_pyfunction!(spmd_local_sessions, m)?)
}
