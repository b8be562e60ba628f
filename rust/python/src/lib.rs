//! `cryptgpu._native`: a thin PyO3 layer over the engine's local runtime.
//! Tensors cross as little-endian f64 `bytes` (abi3 has no buffer protocol
//! before 3.11); every call releases the GIL, catches panics, and maps each
//! engine error to its own exception class.

use cryptgpu_engine::device::cpu::gemm;
use cryptgpu_engine::runtime::{Config, Session as EngSession, Tensor as EngTensor};
use cryptgpu_engine::EngineError;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

// Protocols allocate and drop many multi-megabyte buffers per call; glibc
// returns them to the OS and faults them back in, mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    _native,
    CryptGPUError,
    PyRuntimeError,
    "Base class of cryptgpu engine errors."
);
create_exception!(
    _native,
    ShapeError,
    PyValueError,
    "Operand shapes do not fit the operation."
);
create_exception!(
    _native,
    EncodingError,
    PyValueError,
    "A value cannot be encoded in fixed point (NaN, inf or out of range)."
);
create_exception!(
    _native,
    PeerError,
    CryptGPUError,
    "A party failed, closed its link or timed out."
);
create_exception!(
    _native,
    InternalError,
    CryptGPUError,
    "A bug in the engine; please report it."
);

fn to_py(e: EngineError) -> PyErr {
    let msg = e.to_string();
    match e {
        EngineError::Shape(_) => ShapeError::new_err(msg),
        EngineError::Encoding(_) => EncodingError::new_err(msg),
        EngineError::Invalid(_) => PyValueError::new_err(msg),
        EngineError::Peer(_) => PeerError::new_err(msg),
        EngineError::Internal(_) => InternalError::new_err(msg),
        EngineError::Unavailable(_) => PyRuntimeError::new_err(msg),
        EngineError::OutOfMemory(_) => pyo3::exceptions::PyMemoryError::new_err(msg),
    }
}

/// A window as Python passes it: (kernel, stride, padding, dilation).
type Win = (
    (usize, usize),
    (usize, usize),
    (usize, usize),
    (usize, usize),
);

fn win((kernel, stride, padding, dilation): Win) -> cryptgpu_engine::runtime::Window {
    cryptgpu_engine::runtime::Window {
        kernel,
        stride,
        padding,
        dilation,
    }
}

/// "cpu" or "cuda" as the engine's device kind.
fn device_kind(device: &str) -> PyResult<cryptgpu_engine::runtime::DeviceKind> {
    match device {
        "cpu" => Ok(cryptgpu_engine::runtime::DeviceKind::Cpu),
        "cuda" => Ok(cryptgpu_engine::runtime::DeviceKind::Cuda),
        other => Err(PyValueError::new_err(format!(
            "unknown device {other:?}; expected \"cpu\" or \"cuda\""
        ))),
    }
}

/// Run engine work without the GIL; a panic becomes InternalError.
fn call<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> cryptgpu_engine::Result<T> + Send,
) -> PyResult<T> {
    py.allow_threads(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|_| InternalError::new_err("the engine panicked; the session may be unusable"))?
        .map_err(to_py)
}

fn f64s(b: &[u8]) -> PyResult<Vec<f64>> {
    if !b.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(
            "float64 buffer length is not a multiple of 8",
        ));
    }
    Ok(b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

fn bytes_of<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    PyBytes::new(py, &out)
}

fn u64_bytes<'py>(py: Python<'py>, v: &[u64]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    PyBytes::new(py, &out)
}

/// Opaque handle to a secret-shared tensor (the three parties' shares).
#[pyclass(frozen, module = "cryptgpu._native")]
struct Tensor(EngTensor);

#[pymethods]
impl Tensor {
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.0.shape.clone()
    }
    #[getter]
    fn session_id(&self) -> u64 {
        self.0.session
    }
}

/// A local three-party session: three party threads in this process.
#[pyclass(frozen, module = "cryptgpu._native")]
struct Session(Arc<EngSession>);

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (precision_bits=16, seed=None, timeout_s=60.0, device="cpu"))]
    fn new(
        py: Python<'_>,
        precision_bits: u32,
        seed: Option<u64>,
        timeout_s: f64,
        device: &str,
    ) -> PyResult<Self> {
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(PyValueError::new_err(
                "timeout_s must be a positive number of seconds",
            ));
        }
        let cfg = Config {
            frac_bits: precision_bits,
            seed,
            timeout: Duration::from_secs_f64(timeout_s),
            device: device_kind(device)?,
        };
        Ok(Session(Arc::new(call(py, || EngSession::new(cfg))?)))
    }

    /// One party of a multi-process session: listens on `bind` (default
    /// `peers[rank]`) and connects to its two neighbours over `transport`,
    /// "zmq" (ZeroMQ, the default) or "tcp" (plain TCP streams).
    #[staticmethod]
    #[pyo3(signature = (rank, peers, transport="zmq", bind=None, precision_bits=16, seed=None, timeout_s=60.0, key=None, pubkeys=None, device="cpu"))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        rank: usize,
        peers: Vec<String>,
        transport: &str,
        bind: Option<String>,
        precision_bits: u32,
        seed: Option<u64>,
        timeout_s: f64,
        key: Option<String>,
        pubkeys: Option<Vec<String>>,
        device: &str,
    ) -> PyResult<Self> {
        use std::net::ToSocketAddrs;
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(PyValueError::new_err(
                "timeout_s must be a positive number of seconds",
            ));
        }
        if peers.len() != 3 {
            return Err(PyValueError::new_err(format!(
                "need 3 peer addresses, got {}",
                peers.len()
            )));
        }
        let resolve = |p: &String| {
            p.to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| {
                    PyValueError::new_err(format!("cannot resolve peer address {p:?} (host:port)"))
                })
        };
        let mut addrs = Vec::new();
        for p in &peers {
            addrs.push(resolve(p)?);
        }
        let bind = bind.as_ref().map(resolve).transpose()?;
        if transport != "zmq" && transport != "tcp" {
            return Err(PyValueError::new_err(format!(
                "unknown transport {transport:?}; expected \"zmq\" or \"tcp\""
            )));
        }
        if transport == "tcp" && bind.is_some() {
            return Err(PyValueError::new_err(
                "a separate bind address needs the zmq transport",
            ));
        }
        let addrs = [addrs[0], addrs[1], addrs[2]];
        let timeout = Duration::from_secs_f64(timeout_s);
        let cfg = Config {
            frac_bits: precision_bits,
            seed,
            timeout,
            device: device_kind(device)?,
        };
        let keys = match (key, pubkeys) {
            (Some(k), Some(ps)) => {
                if ps.len() != 3 {
                    return Err(PyValueError::new_err(format!(
                        "need 3 public keys, got {}",
                        ps.len()
                    )));
                }
                Some(cryptgpu_engine::net::noise::LinkKeys {
                    private: hex32(&k, "private key")?,
                    publics: [
                        hex32(&ps[0], "public key 0")?,
                        hex32(&ps[1], "public key 1")?,
                        hex32(&ps[2], "public key 2")?,
                    ],
                })
            }
            (None, None) => None,
            _ => {
                return Err(PyValueError::new_err(
                    "give both key and pubkeys, or neither",
                ))
            }
        };
        let s = call(py, || {
            let t: Box<dyn cryptgpu_engine::net::Transport> = if transport == "tcp" {
                Box::new(cryptgpu_engine::net::tcp::TcpTransport::connect(
                    rank,
                    &addrs,
                    timeout,
                    keys.as_ref(),
                )?)
            } else {
                Box::new(cryptgpu_engine::net::zmq::ZmqTransport::connect(
                    rank,
                    &addrs,
                    bind,
                    timeout,
                    keys.as_ref(),
                )?)
            };
            EngSession::single(cfg, rank, t)
        })?;
        Ok(Session(Arc::new(s)))
    }

    /// End the session: close this process's links (the ZeroMQ transport
    /// exchanges BYE with its neighbours so no last message is lost).
    fn close(&self, py: Python<'_>) {
        let s = self.0.clone();
        py.allow_threads(move || s.close());
    }

    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    /// The ranks this session hosts ([0, 1, 2] locally, [r] in SPMD).
    #[getter]
    fn ranks(&self) -> Vec<usize> {
        self.0.ranks().to_vec()
    }
    #[getter]
    fn precision_bits(&self) -> u32 {
        self.0.frac_bits
    }

    fn share(
        &self,
        py: Python<'_>,
        data: &[u8],
        shape: Vec<usize>,
        src: usize,
    ) -> PyResult<Tensor> {
        let v = f64s(data)?;
        let s = &self.0;
        Ok(Tensor(call(py, || s.share_f64(&v, shape, src))?))
    }

    fn reveal<'py>(&self, py: Python<'py>, x: &Tensor) -> PyResult<Bound<'py, PyBytes>> {
        let s = &self.0;
        let v = call(py, || s.reveal_f64(&x.0))?;
        Ok(bytes_of(py, &v))
    }

    /// Reveal to party `dst`; None in a process that does not host it.
    fn reveal_to<'py>(
        &self,
        py: Python<'py>,
        x: &Tensor,
        dst: usize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let s = &self.0;
        let v = call(py, || s.reveal_to_f64(&x.0, dst))?;
        Ok(v.map(|v| bytes_of(py, &v)))
    }

    /// One party's two share components as raw ring words (u64 bytes).
    fn party_share<'py>(
        &self,
        py: Python<'py>,
        x: &Tensor,
        party: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let s = &self.0;
        let (a, b) = call(py, || s.party_share(&x.0, party))?;
        Ok((u64_bytes(py, &a), u64_bytes(py, &b)))
    }

    fn add(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.add(&x.0, &y.0))?))
    }
    fn sub(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.sub(&x.0, &y.0))?))
    }
    fn neg(&self, py: Python<'_>, x: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.neg(&x.0))?))
    }
    fn mul(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.mul(&x.0, &y.0))?))
    }
    fn add_public(&self, py: Python<'_>, x: &Tensor, p: &[u8]) -> PyResult<Tensor> {
        let v = f64s(p)?;
        let s = &self.0;
        Ok(Tensor(call(py, || s.add_public(&x.0, &v))?))
    }
    fn mul_public(&self, py: Python<'_>, x: &Tensor, p: &[u8]) -> PyResult<Tensor> {
        let v = f64s(p)?;
        let s = &self.0;
        Ok(Tensor(call(py, || s.mul_public(&x.0, &v))?))
    }
    fn mul_public_int(&self, py: Python<'_>, x: &Tensor, p: Vec<i64>) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.mul_public_int(&x.0, &p))?))
    }
    fn div_public_int(&self, py: Python<'_>, x: &Tensor, d: u64) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.div_public_int(&x.0, d))?))
    }
    fn matmul(&self, py: Python<'_>, x: &Tensor, y: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.matmul(&x.0, &y.0))?))
    }
    fn matmul_public(
        &self,
        py: Python<'_>,
        x: &Tensor,
        p: &[u8],
        pshape: Vec<usize>,
        public_left: bool,
    ) -> PyResult<Tensor> {
        let v = f64s(p)?;
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.matmul_public(&x.0, &v, &pshape, public_left)
        })?))
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: &Tensor,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.conv2d(&x.0, &w.0, stride, padding, dilation, groups)
        })?))
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d_public(
        &self,
        py: Python<'_>,
        x: &Tensor,
        w: &[u8],
        wshape: Vec<usize>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> PyResult<Tensor> {
        let v = f64s(w)?;
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.conv2d_public(&x.0, &v, &wshape, stride, padding, dilation, groups)
        })?))
    }
    fn avg_pool2d(
        &self,
        py: Python<'_>,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.avg_pool2d(&x.0, kernel, stride, padding)
        })?))
    }
    fn gather(
        &self,
        py: Python<'_>,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        strides: Vec<usize>,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.gather(&x.0, shape, offset, &strides)
        })?))
    }
    fn scatter(
        &self,
        py: Python<'_>,
        x: &Tensor,
        shape: Vec<usize>,
        offset: usize,
        strides: Vec<usize>,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.scatter(&x.0, shape, offset, &strides)
        })?))
    }
    fn reshape(&self, py: Python<'_>, x: &Tensor, shape: Vec<usize>) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.reshape(&x.0, shape))?))
    }
    fn cat(&self, py: Python<'_>, xs: Vec<PyRef<'_, Tensor>>, dim: usize) -> PyResult<Tensor> {
        let ts: Vec<EngTensor> = xs.iter().map(|t| t.0.clone()).collect();
        let s = &self.0;
        Ok(Tensor(call(py, || {
            let refs: Vec<&EngTensor> = ts.iter().collect();
            s.cat(&refs, dim)
        })?))
    }
    fn pad(&self, py: Python<'_>, x: &Tensor, pads: Vec<(usize, usize)>) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.pad(&x.0, &pads))?))
    }
    #[pyo3(signature = (x, dims, keepdim=false))]
    fn sum(&self, py: Python<'_>, x: &Tensor, dims: Vec<usize>, keepdim: bool) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.sum(&x.0, &dims, keepdim))?))
    }

    /// msb(x) * v (v = None: the 0/1 indicator x < 0), counted under `label`.
    #[pyo3(signature = (x, v=None, label="msb"))]
    fn msb_inject(
        &self,
        py: Python<'_>,
        x: &Tensor,
        v: Option<&Tensor>,
        label: &str,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        let vv = v.map(|t| t.0.clone());
        Ok(Tensor(call(py, || s.msb_inject(&x.0, vv.as_ref(), label))?))
    }
    fn relu(&self, py: Python<'_>, x: &Tensor) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.relu(&x.0))?))
    }
    fn public_tensor(&self, py: Python<'_>, data: &[u8], shape: Vec<usize>) -> PyResult<Tensor> {
        let v = f64s(data)?;
        let s = &self.0;
        Ok(Tensor(call(py, || s.public_tensor(&v, shape))?))
    }
    /// `window` is (kernel, stride, padding, dilation), each (h, w).
    fn pool_windows(&self, py: Python<'_>, x: &Tensor, window: Win) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.pool_windows(&x.0, &win(window)))?))
    }

    fn pool_scatter(
        &self,
        py: Python<'_>,
        w: &Tensor,
        input_shape: Vec<usize>,
        window: Win,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.pool_scatter(&w.0, &input_shape, &win(window))
        })?))
    }
    fn im2col(&self, py: Python<'_>, x: &Tensor, window: Win) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || s.im2col(&x.0, &win(window)))?))
    }
    fn col2im(
        &self,
        py: Python<'_>,
        cols: &Tensor,
        input_shape: Vec<usize>,
        window: Win,
    ) -> PyResult<Tensor> {
        let s = &self.0;
        Ok(Tensor(call(py, || {
            s.col2im(&cols.0, &input_shape, &win(window))
        })?))
    }

    /// Per-party counters: a list of three dicts {op: {calls, rounds, messages, bytes}}.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let s = &self.0;
        let st = call(py, || s.stats())?;
        st.into_iter()
            .map(|m| {
                let d = PyDict::new(py);
                for (k, v) in m {
                    let e = PyDict::new(py);
                    e.set_item("calls", v.calls)?;
                    e.set_item("rounds", v.rounds)?;
                    e.set_item("messages", v.messages)?;
                    e.set_item("bytes", v.bytes)?;
                    d.set_item(k, e)?;
                }
                Ok(d)
            })
            .collect()
    }

    fn reset_stats(&self, py: Python<'_>) -> PyResult<()> {
        let s = &self.0;
        call(py, || s.reset_stats())
    }
}

fn hex32(s: &str, what: &str) -> PyResult<[u8; 32]> {
    let s = s.trim();
    let bad = || PyValueError::new_err(format!("{what} must be 64 hex digits"));
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A fresh X25519 key pair for encrypted links, as (private, public) hex.
#[pyfunction]
fn generate_keypair() -> PyResult<(String, String)> {
    let (a, b) = cryptgpu_engine::net::noise::generate_keypair().map_err(to_py)?;
    let hex = |k: &[u8; 32]| k.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok((hex(&a), hex(&b)))
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
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(PyValueError::new_err(
            "timeout_s must be a positive number of seconds",
        ));
    }
    let cfg = Config {
        frac_bits: precision_bits,
        seed,
        timeout: Duration::from_secs_f64(timeout_s),
        device: device_kind(device)?,
    };
    let ss = call(py, || EngSession::spmd_local(cfg))?;
    Ok(ss.into_iter().map(|s| Session(Arc::new(s))).collect())
}

/// The ring GEMM microkernel this CPU uses ("avx512", "avx2" or "scalar").
#[pyfunction]
fn gemm_kernel() -> &'static str {
    gemm::detect().name()
}

/// Raw ring GEMM for benchmarks: A (m x k) and B (k x n) as u64 bytes.
#[pyfunction]
fn ring_gemm<'py>(
    py: Python<'py>,
    m: usize,
    k: usize,
    n: usize,
    a: &[u8],
    b: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    if a.len() != m * k * 8 || b.len() != k * n * 8 {
        return Err(ShapeError::new_err(
            "ring_gemm: buffer sizes do not match m, k, n",
        ));
    }
    let words = |x: &[u8]| -> Vec<u64> {
        x.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    };
    let (av, bv) = (words(a), words(b));
    let c = call(py, || {
        let mut c = vec![0u64; m * n];
        gemm::gemm(m, k, n, &av, &bv, &mut c, false);
        Ok(c)
    })?;
    Ok(u64_bytes(py, &c))
}

/// `n` words of the CPU device's AES-CTR stream for a 16-byte `key` from
/// block `counter`, for checking the CUDA PRG kernel against it.
#[pyfunction]
fn prg_words<'py>(
    py: Python<'py>,
    key: &[u8],
    counter: u128,
    n: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let key: [u8; 16] = key
        .try_into()
        .map_err(|_| PyValueError::new_err("key must be 16 bytes"))?;
    let v = cryptgpu_engine::prg::Prg::at(key, counter).gen(n);
    Ok(u64_bytes(py, &v))
}

/// The CUDA kernel files embedded in the engine: [(file name, source)].
#[pyfunction]
fn cuda_kernel_sources() -> Vec<(&'static str, &'static str)> {
    cryptgpu_engine::device::cuda::KERNEL_SOURCES.to_vec()
}

/// Compile every embedded kernel with NVRTC for `arch`: [(file, PTX bytes)].
#[pyfunction]
#[pyo3(signature = (arch="compute_90"))]
fn cuda_compile_kernels(py: Python<'_>, arch: &str) -> PyResult<Vec<(String, usize)>> {
    let arch = static_arch(arch)?;
    call(py, || cryptgpu_engine::device::cuda::compile_all(arch))
}

/// An NVRTC architecture name the engine accepts.
fn static_arch(arch: &str) -> PyResult<&'static str> {
    match arch {
        "compute_70" => Ok("compute_70"),
        "compute_80" => Ok("compute_80"),
        "compute_86" => Ok("compute_86"),
        "compute_89" => Ok("compute_89"),
        "compute_90" => Ok("compute_90"),
        other => Err(PyValueError::new_err(format!(
            "unsupported arch {other:?}; use compute_70, 80, 86, 89 or 90"
        ))),
    }
}

/// Number of CUDA GPUs the driver reports (0 without driver or GPU).
#[pyfunction]
fn cuda_device_count(py: Python<'_>) -> usize {
    py.allow_threads(cryptgpu_engine::device::cuda::device_count)
}

/// Ring GEMM on CUDA GPU `ordinal`, for benchmarks and checks: A (m x k),
/// B (k x n) as u64 bytes. `path` is "f64" (16-bit limbs in cuBLAS DGEMM),
/// "int8" (8-bit limbs in int8 GEMMs with int32 accumulation) or "auto"
/// (the faster, timed at first use of the shape). RuntimeError without a
/// GPU, ValueError for another path.
#[pyfunction]
#[pyo3(signature = (m, k, n, a, b, ordinal=0, path="auto"))]
#[allow(clippy::too_many_arguments)]
fn cuda_ring_gemm<'py>(
    py: Python<'py>,
    m: usize,
    k: usize,
    n: usize,
    a: &[u8],
    b: &[u8],
    ordinal: usize,
    path: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    if a.len() != m * k * 8 || b.len() != k * n * 8 {
        return Err(ShapeError::new_err(
            "cuda_ring_gemm: buffer sizes do not match m, k, n",
        ));
    }
    let path = gemm_path_arg(path)?;
    let words = |x: &[u8]| -> Vec<u64> {
        x.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    };
    let (av, bv) = (words(a), words(b));
    let c = call(py, || {
        let dev = cryptgpu_engine::device::cuda::Cuda::new(ordinal)?;
        dev.gemm_host(path, m, k, n, &av, &bv)
    })?;
    Ok(u64_bytes(py, &c))
}

/// Seconds per ring GEMM on GPU `ordinal` with operands resident in GPU
/// memory (no copies timed), and the path that ran ("f64" or "int8"); for
/// benchmarks/gpu_gemm.py. RuntimeError without a GPU.
#[pyfunction]
#[pyo3(signature = (m, k, n, path="auto", reps=5, ordinal=0))]
fn cuda_time_ring_gemm(
    py: Python<'_>,
    m: usize,
    k: usize,
    n: usize,
    path: &str,
    reps: usize,
    ordinal: usize,
) -> PyResult<(f64, &'static str)> {
    let path = gemm_path_arg(path)?;
    let (t, p) = call(py, || {
        let dev = cryptgpu_engine::device::cuda::Cuda::new(ordinal)?;
        dev.time_gemm(path, m, k, n, reps)
    })?;
    Ok((t, gemm_path_name(p)))
}

fn gemm_path_arg(path: &str) -> PyResult<Option<cryptgpu_engine::device::cuda::GemmPath>> {
    use cryptgpu_engine::device::cuda::GemmPath;
    match path {
        "auto" => Ok(None),
        "f64" => Ok(Some(GemmPath::F64Limb16)),
        "int8" => Ok(Some(GemmPath::I8Limb8)),
        other => Err(PyValueError::new_err(format!(
            "path must be auto, f64 or int8, got {other:?}"
        ))),
    }
}

fn gemm_path_name(p: cryptgpu_engine::device::cuda::GemmPath) -> &'static str {
    match p {
        cryptgpu_engine::device::cuda::GemmPath::F64Limb16 => "f64",
        cryptgpu_engine::device::cuda::GemmPath::I8Limb8 => "int8",
    }
}

/// Peak bytes of GPU memory the engine has had allocated on GPU `ordinal`
/// (its stream-ordered allocations), optionally restarting the count.
#[pyfunction]
#[pyo3(signature = (ordinal=0, reset=false))]
fn cuda_memory_peak(py: Python<'_>, ordinal: usize, reset: bool) -> PyResult<u64> {
    call(py, || {
        cryptgpu_engine::device::cuda::memory_peak(ordinal, reset)
    })
}

/// PTX of kernel file `name` compiled by NVRTC for `arch` (tests).
#[pyfunction]
#[pyo3(signature = (name, arch="compute_90"))]
fn cuda_ptx(py: Python<'_>, name: &str, arch: &str) -> PyResult<String> {
    let arch = static_arch(arch)?;
    call(py, || cryptgpu_engine::device::cuda::ptx(name, arch))
}

/// (file, kernel, parameter kinds) of every kernel the CUDA device launches.
#[pyfunction]
fn cuda_kernel_signatures() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    cryptgpu_engine::device::cuda::Kernel::ALL
        .iter()
        .map(|k| (k.file(), k.name(), k.params().to_vec()))
        .collect()
}

/// GPU of each party for `gpus` GPUs (None for none).
#[pyfunction]
fn cuda_device_map(gpus: usize) -> Option<[usize; 3]> {
    cryptgpu_engine::device::cuda::device_map(gpus)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Session>()?;
    m.add_class::<Tensor>()?;
    m.add_function(wrap_pyfunction!(gemm_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(spmd_local_sessions, m)?)?;
    m.add_function(wrap_pyfunction!(generate_keypair, m)?)?;
    m.add_function(wrap_pyfunction!(ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(prg_words, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_kernel_sources, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device_map, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_compile_kernels, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device_count, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_time_ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_memory_peak, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_ptx, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_kernel_signatures, m)?)?;
    m.add("CryptGPUError", py.get_type::<CryptGPUError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("EncodingError", py.get_type::<EncodingError>())?;
    m.add("PeerError", py.get_type::<PeerError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
