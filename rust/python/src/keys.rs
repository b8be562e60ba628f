//! Link keys (the engine's `net::noise`): X25519 key pairs as hex strings.

use crate::error::{invalid, to_py};
use cryptgpu_engine::net::noise;
use pyo3::prelude::*;

/// 64 hex digits as 32 bytes; `what` names the argument in the error.
pub fn unhex32(s: &str, what: &str) -> PyResult<[u8; 32]> {
    let s = s.trim();
    let bad = || invalid(format!("{what} must be 64 hex digits"));
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
    let (a, b) = noise::generate_keypair().map_err(to_py)?;
    Ok((noise::hex(&a), noise::hex(&b)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(generate_keypair, m)?)
}
