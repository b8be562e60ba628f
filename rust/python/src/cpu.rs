//! The CPU device (the engine's `device::cpu` and `prg`), raw, for
//! benchmarks and for checking the CUDA kernels against it.

use crate::error::{call, invalid, shape};
use crate::tensor::{u64_bytes, words};
use cryptgpu_engine::device::cpu::gemm;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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
        return Err(shape("ring_gemm: buffer sizes do not match m, k, n"));
    }
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
        .map_err(|_| invalid("key must be 16 bytes"))?;
    let v = cryptgpu_engine::prg::Prg::at(key, counter).gen(n);
    Ok(u64_bytes(py, &v))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gemm_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(ring_gemm, m)?)?;
    m.add_function(wrap_pyfunction!(prg_words, m)?)
}
