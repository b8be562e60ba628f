//! Products by a public fixed-point factor whose entries need different
//! numbers of extra fractional bits (a per-feature scale such as
//! `tensor([1e-5, 1.0])`, or `(x - mean) / std` with std from 1e-2 to 1e3).
//!
//! One count of extra bits for the whole tensor, chosen from its largest
//! entry (as a uniform factor uses), left the small entries at 2^-f
//! absolute: `12345.678 * tensor([1e-5, 1.0])` gave 0.188 for 0.123 (until
//! 2026-12-07). Each entry p_i now gets its own e_i, the count that brings
//! |p_i| into [1/4, 1/2] (0 from 1/4 up), and, where the one-step path
//! would lose bits on some entry, the product is taken in two steps so
//! that no ring value grows past what the exact truncation covers:
//!
//! 1. w_i = x_i 2^(E - e_i), a local product by a power of two, with E the
//!    largest e_i but at most the smallest plus f - 1 (entries above that
//!    use E): |w_i| < 2^(63 - f) 2^(f - 1) = 2^62 for every x inside the
//!    encoding range.
//! 2. x'_i = w_i / 2^E by the exact truncation (the value x_i / 2^e_i at
//!    scale 2^f), within one unit of 2^-f, and exact where e_i = 0 (w_i is
//!    then a multiple of 2^E: P0's ceiling and P1's floor meet).
//! 3. x'_i P_i with P_i = round(p_i 2^(f + e_i)), divided by 2^f by the
//!    exact protocol too, as the one-step path for a factor below 1/4:
//!    the ring value is x p 2^(2f), a plain product's, which the
//!    probabilistic protocol fails near 2^30 (a quotient of
//!    `functions.divide`).
//!
//! Error: step 2's unit times |p_i 2^e_i| <= 1/2 (nothing where e_i = 0),
//! step 3's unit, and the factor's relative 2^-(f-1) (f - 1 significant
//! bits, as a uniform factor keeps): within 1.5 units of 2^-f plus
//! |x p| 2^-(f-1) for an entry whose e_i is not capped; a capped entry
//! (more than 2^(f-1) below the largest) keeps only the bits of
//! p_i 2^(f + E), 3e-9 next to 0.3 six units of 2^-31 (7% off). Cost: two truncations in one call, 4 rounds; a factor
//! whose entries share one e_i, or that the one-step path encodes exactly
//! where they do not, keeps the one-truncation path.

use super::history::Note;
use super::{Session, Tensor};
use crate::error::Result;
use crate::protocol::local;
use crate::ring;

/// The extra bits that bring |m| into [1/4, 1/2] (1/2 for a power of
/// two): 0 for 0, from 1/4 up, or
/// a value that is not finite (encode refuses that); at most 62 - 2f so
/// that the encoding stays inside its range.
pub(super) fn extra_one(m: f64, frac_bits: u32) -> u32 {
    let m = m.abs();
    if !(m > 0.0 && m < 0.25) {
        return 0;
    }
    let cap = 62u32.saturating_sub(2 * frac_bits);
    ((-m.log2()).floor() as u32 - 1).min(cap)
}

/// Extra fractional bits for a public factor p: the e that brings the
/// largest |p| into [1/4, 1/2) (0 from 1/4 up), at most 62 - 2f so that
/// the encoding stays inside its range. The encoded factor is then below
/// 2^(f-1), as 0.5 is at f bits, so for every x inside the encoding range
/// (|x| < 2^(63-2f)) the product stays below 2^62, where the exact
/// truncation is exact, and the probabilistic one fails no more often than
/// for x * 0.5. The factor keeps f - 1 significant bits.
pub(crate) fn extra_bits(p: &[f64], frac_bits: u32) -> u32 {
    let m = p.iter().fold(0f64, |m, v| m.max(v.abs()));
    extra_one(m, frac_bits)
}

/// Each entry's extra bits, capped at the smallest plus f - 1 (step 1 of
/// the module doc; a zero entry takes the cap, its product is 0), where
/// the one-step path would lose bits; None where it would not. That path
/// encodes every entry with the largest entry's count (the smallest): it
/// loses bits on an entry that wants more and that it does not encode
/// exactly (a power of two such as 2^-14, the range reductions' scalings,
/// is exact there, 4 units at f = 16).
pub(super) fn mixed_extra(p: &[f64], frac_bits: u32) -> Option<Vec<u32>> {
    let lo = extra_bits(p, frac_bits);
    let one_step = ring::scale(frac_bits + lo);
    let lossy = p.iter().any(|&v| {
        let t = v * one_step;
        t != t.round() && extra_one(v, frac_bits) > lo
    });
    if !lossy {
        return None;
    }
    let e: Vec<u32> = p.iter().map(|&v| extra_one(v, frac_bits)).collect();
    let top = e
        .iter()
        .copied()
        .max()?
        .min(lo + frac_bits.saturating_sub(1));
    Some(
        p.iter()
            .zip(e)
            .map(|(&v, ei)| if v == 0.0 { top } else { ei.min(top) })
            .collect(),
    )
}

impl Session {
    /// x * p for a factor of mixed magnitudes, `e` from [`mixed_extra`]
    /// (module doc): 4 rounds, counted as `mul`.
    pub(super) fn mul_public_mixed(&self, x: &Tensor, p: &[f64], e: &[u32]) -> Result<Tensor> {
        let f = self.frac_bits;
        ring::encode(p, f)?; // refuses what the one-step path refuses, alike
        let top = e.iter().copied().max().unwrap_or(0);
        let lift: Vec<u64> = e.iter().map(|&ei| 1u64 << (top - ei)).collect();
        let fac = p
            .iter()
            .zip(e)
            .map(|(&v, &ei)| ring::encode_one(v, f + ei))
            .collect::<Result<Vec<u64>>>()?;
        let bits: Vec<u64> = e.iter().map(|&ei| ei.into()).collect();
        let note = Note::op("mul_public_mixed").dims(&x.shape).words(&bits);
        self.note(note.words(&fac)); // each entry's bits too, as mul_public's
        let r = self.run("mul", |pt| {
            let d = pt.dev.clone();
            let w = local::mul_public(&*d, x.at(pt.rank)?, &d.upload(lift.clone())?)?;
            let xs = pt.divide_exact_always(&w, 1u64 << top)?;
            let z = local::mul_public(&*d, &xs, &d.upload(fac.clone())?)?;
            // exact always, as the one-step path for a factor below 1/4
            // (functions.divide's quotients up to 2^30 wrapped in a
            // quarter of their elements under the probabilistic one)
            pt.divide_exact_always(&z, 1u64 << f)
        })?;
        Ok(self.wrap(x.shape.clone(), r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_gets_its_own_extra_bits_capped_at_f_minus_one_above_the_smallest() {
        // one count for all: None (the one-truncation path), zeros ignored
        assert_eq!(mixed_extra(&[1e-3, 1.5e-3, 0.0], 16), None);
        assert_eq!(mixed_extra(&[0.3, 2.0, -7.0], 16), None);
        assert_eq!(mixed_extra(&[0.0, 0.0], 16), None);
        // powers of two the one-step path encodes exactly (2^-14 as 4 units)
        let pow2: Vec<f64> = (1..=14).map(|j| 2f64.powi(-j)).collect();
        assert_eq!(mixed_extra(&pow2, 16), None);
        assert_eq!(mixed_extra(&[0.5, 2f64.powi(-20)], 16), Some(vec![0, 15]));
        // 1e-5 in [1/4, 1/2) after 15 bits; 1.0 needs none
        assert_eq!(mixed_extra(&[1e-5, 1.0], 16), Some(vec![15, 0]));
        // 3e-9 would take 27: capped at 0 + 15; a zero takes the cap
        assert_eq!(mixed_extra(&[3e-9, 0.3, 0.0], 16), Some(vec![15, 0, 15]));
        assert_eq!(mixed_extra(&[1e-3, 1e-5], 16), Some(vec![8, 15]));
        for (v, e) in [(0.25, 0), (0.2, 1), (0.125, 2), (1e-5, 15)] {
            let s = v * 2f64.powi(e as i32);
            assert!(extra_one(v, 16) == e && (0.25..=0.5).contains(&s), "{v}");
        }
    }
}
