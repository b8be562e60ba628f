//! The `Tensor` handle and the data that crosses with it: tensors travel as
//! little-endian f64 `bytes` (abi3 has no buffer protocol before 3.11), ring
//! words as little-endian u64 `bytes`, windows as tuples.

use crate::error::invalid;
use cryptgpu_engine::runtime::{Tensor as EngTensor, Window};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Opaque handle to a secret-shared tensor (the three parties' shares).
#[pyclass(frozen, module = "cryptgpu._native")]
pub struct Tensor(pub EngTensor);

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

/// A window as Python passes it: (kernel, stride, padding, dilation).
pub type Win = (
    (usize, usize),
    (usize, usize),
    (usize, usize),
    (usize, usize),
);

pub fn win((kernel, stride, padding, dilation): Win) -> Window {
    Window {
        kernel,
        stride,
        padding,
        dilation,
    }
}

/// Little-endian 8-byte words (`what`: their type, for the error) as
/// values, refusing a partial word.
fn le_words<T>(b: &[u8], what: &str, from: fn([u8; 8]) -> T) -> PyResult<Vec<T>> {
    if !b.len().is_multiple_of(8) {
        return Err(invalid(format!(
            "{what} buffer length is not a multiple of 8"
        )));
    }
    Ok(b.chunks_exact(8)
        .map(|c| from(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// Little-endian f64 bytes as values.
pub fn f64s(b: &[u8]) -> PyResult<Vec<f64>> {
    le_words(b, "float64", f64::from_le_bytes)
}

/// Little-endian i64 bytes (NumPy's "<i8").
pub fn i64s(b: &[u8]) -> PyResult<Vec<i64>> {
    le_words(b, "int64", i64::from_le_bytes)
}

/// Little-endian u64 bytes as ring words (a trailing partial word is dropped;
/// callers check the length against the shape first).
pub fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

pub fn bytes_of<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    PyBytes::new(py, &out)
}

pub fn u64_bytes<'py>(py: Python<'py>, v: &[u64]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    PyBytes::new(py, &out)
}
