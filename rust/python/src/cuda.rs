//! The CUDA device (the engine's `device::cuda`): detection, the embedded
//! kernels and NVRTC, and raw ring GEMMs for benchmarks. Without a driver or
//! GPU the calls raise UnavailableError (a RuntimeError).

use crate::error::{call, invalid, shape};
use crate::tensor::{u64_bytes, words};
use cryptgpu_engine::device::cuda::{self, Cuda, GemmPath, Kernel};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The CUDA kernel files embedded in the engine: [(file name, source)].
#[pyfunction]
fn cuda_kernel_sources() -> Vec<(&'static str, &'static str)> {
    cuda::KERNEL_SOURCES.to_vec()
}

/// Compile every embedded kernel with NVRTC for `arch`: [(file, PTX bytes)].
#[pyfunction]
#[pyo3(signature = (arch="compute_90"))]
fn cuda_compile_kernels(py: Python<'_>, arch: &str) -> PyResult<Vec<(String, usize)>> {
    let arch = static_arch(arch)?;
    call(py, || cuda::compile_all(arch))
}

/// An NVRTC architecture name the engine accepts.
fn static_arch(arch: &str) -> PyResult<&'static str> {
    match arch {
        "compute_70" => Ok("compute_70"),
        "compute_80" => Ok("compute_80"),
        "compute_86" => Ok("compute_86"),
        "compute_89" => Ok("compute_89"),
        "compute_90" => Ok("compute_90"),
        other => Err(invalid(format!(
            "unsupported arch {other:?}; use compute_70, 80, 86, 89 or 90"
        ))),
    }
}

/// Number of CUDA GPUs the driver reports (0 without driver or GPU).
#[pyfunction]
fn cuda_device_count(py: Python<'_>) -> usize {
    py.allow_threads(cuda::device_count)
}

/// Ring GEMM on CUDA GPU `ordinal`, for benchmarks and checks: A (m x k),
/// B (k x n) as u64 bytes. `path` is "f64" (16-bit limbs in cuBLAS DGEMM),
/// "int8" (8-bit limbs in int8 GEMMs with int32 accumulation) or "auto"
/// (the faster, timed at first use of the shape). UnavailableError without
/// a GPU, InvalidArgumentError for another path.
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
        return Err(shape("cuda_ring_gemm: buffer sizes do not match m, k, n"));
    }
    let path = gemm_path_arg(path)?;
    let (av, bv) = (words(a), words(b));
    let c = call(py, || {
        let dev = Cuda::new(ordinal)?;
        dev.gemm_host(path, m, k, n, &av, &bv)
    })?;
    Ok(u64_bytes(py, &c))
}

/// Seconds per ring GEMM on GPU `ordinal` with operands resident in GPU
/// memory (no copies timed), and the path that ran ("f64" or "int8"); for
/// benchmarks/gpu_gemm.py. UnavailableError without a GPU.
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
        let dev = Cuda::new(ordinal)?;
        dev.time_gemm(path, m, k, n, reps)
    })?;
    Ok((t, gemm_path_name(p)))
}

fn gemm_path_arg(path: &str) -> PyResult<Option<GemmPath>> {
    match path {
        "auto" => Ok(None),
        "f64" => Ok(Some(GemmPath::F64Limb16)),
        "int8" => Ok(Some(GemmPath::I8Limb8)),
        other => Err(invalid(format!(
            "path must be auto, f64 or int8, got {other:?}"
        ))),
    }
}

fn gemm_path_name(p: GemmPath) -> &'static str {
    match p {
        GemmPath::F64Limb16 => "f64",
        GemmPath::I8Limb8 => "int8",
    }
}

/// Peak bytes of GPU memory the engine has had allocated on GPU `ordinal`
/// (its stream-ordered allocations), optionally restarting the count.
#[pyfunction]
#[pyo3(signature = (ordinal=0, reset=false))]
fn cuda_memory_peak(py: Python<'_>, ordinal: usize, reset: bool) -> PyResult<u64> {
    call(py, || cuda::memory_peak(ordinal, reset))
}

/// PTX of kernel file `name` compiled by NVRTC for `arch` (tests).
#[pyfunction]
#[pyo3(signature = (name, arch="compute_90"))]
fn cuda_ptx(py: Python<'_>, name: &str, arch: &str) -> PyResult<String> {
    let arch = static_arch(arch)?;
    call(py, || cuda::ptx(name, arch))
}

/// (file, kernel, parameter kinds) of every kernel the CUDA device launches.
#[pyfunction]
fn cuda_kernel_signatures() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    Kernel::ALL
        .iter()
        .map(|k| (k.file(), k.name(), k.params().to_vec()))
        .collect()
}

/// GPU of each party for `gpus` GPUs (None for none).
#[pyfunction]
fn cuda_device_map(gpus: usize) -> Option<[usize; 3]> {
    cuda::device_map(gpus)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cuda_kernel_sources, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device_map, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_compile_kernels, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device_count, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_time_ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_memory_peak, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_ptx, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_kernel_signatures, m)?)
}
