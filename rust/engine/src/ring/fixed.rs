//! Fixed-point encoding (DESIGN.md "Threat model and sharing"): a real r
//! is stored as round(r * 2^f) in two's complement.

use crate::error::{EngineError, Result};

/// Largest |r| accepted by `encode`: 2^(63 - 2f), so that the product of an
/// encoded value with any encoded value of magnitude at most 1 (2f fractional
/// bits before truncation) still fits in a signed 64-bit word. At f = 16 this
/// is 2^31; at f = 20, 2^23.
pub fn max_abs(frac_bits: u32) -> f64 {
    (2f64).powi(63 - 2 * frac_bits as i32)
}

pub fn scale(frac_bits: u32) -> f64 {
    (2f64).powi(frac_bits as i32)
}

pub fn encode_one(v: f64, frac_bits: u32) -> Result<u64> {
    if !v.is_finite() {
        return Err(EngineError::Encoding(format!(
            "cannot encode non-finite value {v}"
        )));
    }
    let lim = max_abs(frac_bits);
    if v.abs() >= lim {
        return Err(EngineError::Encoding(format!(
            "value {v:e} is outside the representable range (-{lim}, {lim}) for {frac_bits} fractional bits"
        )));
    }
    Ok((v * scale(frac_bits)).round() as i64 as u64)
}

pub fn encode(values: &[f64], frac_bits: u32) -> Result<Vec<u64>> {
    values.iter().map(|&v| encode_one(v, frac_bits)).collect()
}

pub fn decode(values: &[u64], frac_bits: u32) -> Vec<f64> {
    let s = 1.0 / scale(frac_bits);
    values.iter().map(|&v| (v as i64) as f64 * s).collect()
}
