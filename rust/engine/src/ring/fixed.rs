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

/// Every value encoded as `encode_one` does (same words, same errors), in
/// one vectorisable pass: the scale and the limit computed once, and
/// round-half-away-from-zero as trunc(t + copysign(0.5 - 2^-54, t)), the
/// form compilers use for `round` (exact for every f64: the constant is
/// the largest double below 1/2, so t + it never reaches the next integer
/// unless t's fraction is at least 1/2). `f64::round` is a libm call on
/// the baseline x86_64 target, and it and the per-value `powi` were most
/// of the time of adding a public tensor.
pub fn encode(values: &[f64], frac_bits: u32) -> Result<Vec<u64>> {
    let lim = max_abs(frac_bits);
    if let Some(&bad) = values.iter().find(|v| !v.is_finite() || v.abs() >= lim) {
        // encode_one refuses it, with the message a caller expects.
        return encode_one(bad, frac_bits).map(|_| Vec::new());
    }
    let s = scale(frac_bits);
    const HALF_DOWN: f64 = 0.499_999_999_999_999_94;
    Ok(values
        .iter()
        .map(|&v| {
            let t = v * s;
            (t + HALF_DOWN.copysign(t)) as i64 as u64
        })
        .collect())
}

pub fn decode(values: &[u64], frac_bits: u32) -> Vec<f64> {
    let s = 1.0 / scale(frac_bits);
    values.iter().map(|&v| (v as i64) as f64 * s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_encoding_matches_one_at_a_time() {
        let f = 16;
        let ulp_below_half = 0.5 - 2f64.powi(-54);
        let mut vals = vec![0.0, -0.0, 1.0, -1.0, 2f64.powi(30), -(2f64.powi(30))];
        // Halfway cases and their neighbours, in units of 2^-f, at several
        // magnitudes (ties round away from zero).
        for k in [0.0, 1.0, 2.0, 3.0, 1e6, 2f64.powi(40), 2f64.powi(46) - 1.0] {
            for frac in [0.5, ulp_below_half, 0.5 + 1e-9, 0.25, 0.75] {
                let t = k + frac;
                vals.push(t / scale(f));
                vals.push(-t / scale(f));
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push((x as i64 as f64) / 2f64.powi(33 + (x % 30) as i32));
        }
        let one: Vec<u64> = vals.iter().map(|&v| encode_one(v, f).unwrap()).collect();
        assert_eq!(encode(&vals, f).unwrap(), one);
        for bad in [f64::NAN, f64::INFINITY, -max_abs(f), max_abs(f)] {
            let mut v = vals.clone();
            v.insert(7, bad);
            let err = encode(&v, f).unwrap_err().to_string();
            assert_eq!(err, encode_one(bad, f).unwrap_err().to_string());
        }
    }
}
