//! The ring Z_2^64 and fixed-point encoding (DESIGN.md "Threat model and
//! sharing"): a real r is stored as round(r * 2^f) in two's complement.

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
            "value {v} is outside the representable range (-{lim}, {lim}) for {frac_bits} fractional bits"
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

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

pub fn add_into(dst: &mut [u64], src: &[u64]) {
    dst.iter_mut()
        .zip(src)
        .for_each(|(d, s)| *d = d.wrapping_add(*s));
}

pub fn sub_into(dst: &mut [u64], src: &[u64]) {
    dst.iter_mut()
        .zip(src)
        .for_each(|(d, s)| *d = d.wrapping_sub(*s));
}

pub fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

pub fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect()
}

pub fn neg(a: &[u64]) -> Vec<u64> {
    a.iter().map(|x| x.wrapping_neg()).collect()
}

pub fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_mul(*y)).collect()
}

/// Signed floor division by a positive public divisor, the local step of the
/// ABY3 share truncation (a right shift by f when d = 2^f).
pub fn div_floor(a: &mut [u64], d: u64) {
    let d = d as i64;
    if d > 0 && (d & (d - 1)) == 0 {
        let s = d.trailing_zeros();
        a.iter_mut().for_each(|x| *x = ((*x as i64) >> s) as u64);
    } else {
        a.iter_mut()
            .for_each(|x| *x = (*x as i64).div_euclid(d) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip() {
        let v = [0.0, 1.5, -2.25, 1e6, -1e-5];
        let e = encode(&v, 16).unwrap();
        let d = decode(&e, 16);
        for (a, b) in v.iter().zip(d) {
            assert!((a - b).abs() <= 0.5 / 65536.0);
        }
    }

    #[test]
    fn encode_rejects_bad_values() {
        assert!(encode_one(f64::NAN, 16).is_err());
        assert!(encode_one(f64::INFINITY, 16).is_err());
        assert!(encode_one(2f64.powi(31), 16).is_err());
        assert!(encode_one(-(2f64.powi(31)), 16).is_err());
        assert!(encode_one(2f64.powi(30), 16).is_ok());
    }

    #[test]
    fn div_floor_is_signed_floor() {
        let mut a = vec![(-5i64) as u64, 5, 7, (-8i64) as u64];
        div_floor(&mut a, 4);
        assert_eq!(a, vec![(-2i64) as u64, 1, 1, (-2i64) as u64]);
        let mut b = vec![(-7i64) as u64, 7];
        div_floor(&mut b, 3);
        assert_eq!(b, vec![(-3i64) as u64, 2]);
    }
}
