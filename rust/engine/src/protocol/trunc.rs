//! Exact truncation: division of a sharing by a public d with no wrap
//! failures, in the same two rounds as the probabilistic protocol of
//! `arith` (ABY3's share truncation).
//!
//! Why the probabilistic protocol fails. P0 and P1 hold a 2-out-of-2
//! sharing (S0, S1) of v and divide their halves locally. When the signed
//! sum S0 + S1 over the integers is v +- 2^64 (the halves wrap), the result
//! is off by 2^64 / d: garbage, with probability about |v| / 2^63.
//!
//! The fix counts the wrap. Shift the value by a public bias B = 2^62 (a
//! multiple of d below it when d does not divide 2^62) (P0
//! adds it to its half), so that x = v + B lies in [0, 2^63) for |v| < B:
//! x's top bit is 0. Write a = msb(S1), b = msb(S0). Over the integers,
//! x = S0s + S1s + (a + b - c) 2^64 with S0s, S1s the halves read as signed
//! words and c the carry out of the unsigned sum; and because x's top bit is
//! 0, c = a OR b (a sum of two words with top bits a, b and a zero top bit
//! carries exactly when one of them is set). So a + b - c = a AND b, and
//!
//!   floor(x / d) = floor(S0s / d) + floor(S1s / d) + K a b + e,
//!   K = 2^64 / d, e in {0, 1} (the carry of the two remainders),
//!
//! the same local divisions as before plus one correction K a b: the
//! product of a bit P1 knows from the start and a bit P0 knows after it has
//! its half. (This "wrap with a known top bit" is the observation behind
//! the truncation of SecureNN/Cheetah-style protocols; the way the product
//! a b is shared below, with no extra round, is ours.)
//!
//! Sharing a b in two rounds, with A = -a and Bn = -b (0 or -1 in the ring,
//! so that A Bn = a b):
//!
//! Round 1. P1 sends a' = A + nu to P0 (nu from the key k_2 of P1 and P2,
//!   unknown to P0). For a product, P2 sends its 3-out-of-3 part z_2 to P0,
//!   whose half is then S0 = z_0 + z_2 + B; P1's half is z_1. For a
//!   replicated input, P0 holds x_0 + x_1 and P1 holds x_2: no message.
//! Locally. a b = A Bn = a' Bn - nu Bn. P0 knows a' Bn. For nu Bn, P0 masks
//!   Bn with alpha (key k_0, shared with P2) and gamma (key k_1, shared with
//!   P1): w = Bn + alpha + gamma, so nu Bn = nu w - nu alpha - nu gamma, and
//!   P2 knows nu alpha, P1 knows nu gamma. Each party i forms its part U_i
//!   of a 3-out-of-3 sharing:
//!     U_0 = ceil(S0s / d) - B / d + K a' Bn,
//!     U_1 = floor(S1s / d) + K nu gamma,
//!     U_2 = K nu alpha,
//!   (P0 rounds up and P1 down: stochastic rounding, v / d on average when
//!   S0 is random and exactly floor(v / d) when it is not, as in `arith`).
//! Round 2. The reshare of U (each sends U_i plus a zero share to the
//!   previous party), and P0 sends w to P1 and P2, who both hold the
//!   component x_2 and subtract K nu w from it.
//!
//! Views: P0 sees a' (masked by nu) and z_2 (masked by the product's zero
//! share); P1 sees w masked by alpha, P2 sees w masked by gamma; the
//! reshare is masked by a fresh zero share. Nothing depends on the secret.
//!
//! Cost per element: 2 rounds; P0 sends 3 ring elements (its reshare part
//! and w twice), P1 2 (a' and its part), P2 2 for a product (z_2 and its
//! part) and 1 for a replicated input. The probabilistic protocol sends 1.
//!
//! Result: within (-1, +1) units of x / d - B / d = v / d and v / d on
//! average for d a power of two (as the probabilistic protocol when it does
//! not fail). For another d, K = 2^64 / d is rounded, and the correction
//! K a b, applied to the quarter of elements whose halves wrap, would be
//! off by K - 2^64 / d units each time: a bias of up to 0.125 units
//! (-0.083 for d = 3, +0.053 for d = 9, +0.096 for d = 1000, measured
//! until 2026-12-06, which an average pool's backward summed over its
//! windows and a conv's weight gradient over every position). P0 therefore
//! adds, where its half's top bit b is set, a random skew whose mean
//! cancels that bias ([`Skew`]; its coins come from the key k_0, which P2
//! draws alike to keep in step, no message; a trivial sharing of zero, all
//! halves zero, still divides to zero; divisors from 2^32 keep the rounded
//! K, without skew): v / d on average, within 2 units. It is exact for every |v| < 2^62 - 3d, which
//! at f fractional bits covers products up to 2^(62 - 2f) in magnitude
//! (2^30 at f = 16, against the encoding limit 2^(63 - 2f)).

use super::{AShare, Party};
use crate::device::{Buf, Op1, Op2};
use crate::error::Result;
use crate::net::Peer;

/// The bias that makes the shifted value's top bit known (zero): 2^62, or
/// for a divisor d that does not divide it the largest multiple of d below
/// it, one multiple lower where P0 adds a [`Skew`] (room for its positive
/// side; the exact range shrinks by as much on the negative side), so that
/// subtracting bias / d afterwards is exact (a rounded 2^62 / d would leave
/// up to half a unit of bias in every result).
fn bias(d: u64) -> u64 {
    let m = (1u64 << 62) / d * d;
    if skewed(d) {
        m - d
    } else {
        m
    }
}

/// Whether P0 skews its half for d: K = 2^64 / d is not whole (d not a
/// power of two), and d is below 2^32 (a divisor that large gives results
/// of at most 2^30 units, and 2^62 / d leaves no room for the skew; such
/// divisors keep the rounded K's bias, as before 2026-12-06).
fn skewed(d: u64) -> bool {
    !d.is_power_of_two() && d < 1 << 32
}

/// What P0 adds to its half besides the bias when K = 2^64 / d is rounded:
/// the wrap correction K a b is then off by eps / d = K - 2^64 / d units
/// whenever a b = 1, which happens with probability (x + 1) / 2^64 for the
/// shifted value x (P0's half uniform), about a quarter. P0 knows b, and
/// given b = 1 (probability 1/2), a = 1 with probability 2 (x + 1) / 2^64;
/// adding mu to x where b = 1 moves the mean result by mu / (2 d), so
/// mu = -2 eps (B + 1) / 2^64 cancels that bias up to eps v / (d 2^64) (v
/// the unshifted value; 2^-30 units for |v| < 2^32). Where b = 0 nothing is
/// added, so halves that do not wrap (a sharing of zero: S0 = B) divide as
/// before. mu is not whole: `base` plus one with probability `frac` /
/// 2^64, from fresh randomness independent of the secret.
struct Skew {
    base: u64,
    frac: u64,
}

fn skew(d: u64) -> Option<Skew> {
    if !skewed(d) {
        return None;
    }
    let eps = i128::from(ratio(64, d)) * i128::from(d) - (1i128 << 64);
    let num = -2 * eps * (i128::from(bias(d)) + 1);
    Some(Skew {
        base: num.div_euclid(1i128 << 64) as i64 as u64,
        frac: num.rem_euclid(1i128 << 64) as u64,
    })
}

/// What is being divided.
pub(super) enum Input<'a> {
    /// A 3-out-of-3 sharing (this party's part), as after a local product.
    Sum(Buf),
    /// A replicated sharing.
    Rep(&'a AShare),
    /// A replicated sharing whose split between P0 and P1 is re-randomised
    /// first (a common PRG draw of theirs, no message), so that elements
    /// holding equal shares (a broadcast value) round independently.
    RepFresh(&'a AShare),
}

/// round(num / d) for num = 2^e as u128, in the ring.
fn ratio(pow2: u32, d: u64) -> u64 {
    let num = 1u128 << pow2;
    let d = d as u128;
    ((num + d / 2) / d) as u64
}

impl Party {
    /// -msb(s) for each element: 0, or -1 (all ones) when the top bit is set.
    fn neg_msb(&self, s: &Buf) -> Result<Buf> {
        let mut m = self.dev.map1(Op1::DivFloor(1 << 62), s)?;
        self.dev.map1_into(Op1::DivFloor(2), &mut m)?;
        Ok(m)
    }

    /// A buffer of n copies of c on this party's device.
    fn constant(&self, c: u64, n: usize) -> Result<Buf> {
        let mut b = self.dev.zeros(n)?;
        self.dev.map1_into(Op1::AddScalar(c), &mut b)?;
        Ok(b)
    }

    /// k * x, elementwise (no scalar multiply in the device's unary ops:
    /// a buffer of k's, built once per truncation and party).
    fn scaled(&self, k: u64, x: &Buf) -> Result<Buf> {
        let mut p = self.constant(k, x.len())?;
        self.dev.map2_into(Op2::Mul, &mut p, x)?;
        Ok(p)
    }

    /// The exact division of `input` by d (module doc): a replicated
    /// sharing of v / d, 2 rounds.
    pub(super) fn divide_exact(&mut self, input: Input<'_>, d: u64) -> Result<AShare> {
        let n = match &input {
            Input::Sum(z) => z.len(),
            Input::Rep(x) | Input::RepFresh(x) => x.len(),
        };
        let dev = self.dev.clone();
        let k = ratio(64, d);
        let zeta = self.zero_share(n)?;
        match self.rank {
            0 => {
                // Round 1: a' from P1; z_2 from P2 for a product.
                let (mut s0, a1) = match input {
                    Input::Sum(z) => {
                        let mut got = self.round(vec![], &[(Peer::Next, n), (Peer::Prev, n)])?;
                        let z2 = got.pop().unwrap_or_default();
                        let a1 = got.pop().unwrap_or_default();
                        (dev.map2(Op2::Add, &z, &z2)?, a1)
                    }
                    Input::Rep(x) => {
                        let a1 = self.round1(vec![], Peer::Next, n)?;
                        (dev.map2(Op2::Add, &x.a, &x.b)?, a1)
                    }
                    Input::RepFresh(x) => {
                        // r under k_1, which P1 draws as rand_own (below)
                        let r = self.rand_next(n)?;
                        let a1 = self.round1(vec![], Peer::Next, n)?;
                        let mut s = dev.map2(Op2::Add, &x.a, &x.b)?;
                        dev.map2_into(Op2::Add, &mut s, &r)?;
                        (s, a1)
                    }
                };
                let alpha = self.rand_own(n)?;
                let gamma = self.rand_next(n)?;
                dev.map1_into(Op1::AddScalar(bias(d)), &mut s0)?;
                if let Some(sk) = skew(d) {
                    // -1 with probability frac / 2^64: the sign of a uniform
                    // value in [-2^62, 2^62) plus 2^62 - frac / 2
                    let mut y = self.rand_own(n)?;
                    dev.map1_into(Op1::DivFloor(2), &mut y)?;
                    dev.map1_into(Op1::AddScalar((1 << 62) - (sk.frac >> 1)), &mut y)?;
                    let mut step = self.neg_msb(&y)?;
                    dev.map1_into(Op1::AddScalar(sk.base.wrapping_neg()), &mut step)?;
                    // -b (-base - coin) = b (base + coin), added where b = 1
                    dev.map2_into(Op2::Mul, &mut step, &self.neg_msb(&s0)?)?;
                    dev.map2_into(Op2::Add, &mut s0, &step)?;
                }
                let bn = self.neg_msb(&s0)?;
                let mut w = dev.map2(Op2::Add, &bn, &alpha)?;
                dev.map2_into(Op2::Add, &mut w, &gamma)?;
                let mut u0 = s0;
                self.div_ceil_into(&mut u0, d)?;
                let offset = 0u64.wrapping_sub(bias(d) / d);
                dev.map1_into(Op1::AddScalar(offset), &mut u0)?;
                let mut corr = self.scaled(k, &a1)?;
                dev.map2_into(Op2::Mul, &mut corr, &bn)?;
                dev.map2_into(Op2::Add, &mut u0, &corr)?;
                dev.map2_into(Op2::Add, &mut u0, &zeta)?;
                // Round 2: U_0 and w to P2 (one message), w to P1; U_1 back.
                let to_prev = dev.concat(&[(&u0, 0, n), (&w, 0, n)])?;
                let u1 =
                    self.round1(vec![(Peer::Prev, to_prev), (Peer::Next, w)], Peer::Next, n)?;
                Ok(AShare { a: u0, b: u1 })
            }
            1 => {
                let s1 = match input {
                    Input::Sum(z) => z,
                    Input::Rep(x) => x.b.clone(),
                    Input::RepFresh(x) => {
                        let r = self.rand_own(n)?; // P0's rand_next above
                        dev.map2(Op2::Sub, &x.b, &r)?
                    }
                };
                let nu = self.rand_next(n)?;
                let gamma = self.rand_own(n)?;
                let mut a1 = self.neg_msb(&s1)?;
                dev.map2_into(Op2::Add, &mut a1, &nu)?;
                self.round(vec![(Peer::Prev, a1)], &[])?;
                let mut u1 = s1;
                dev.map1_into(Op1::DivFloor(d), &mut u1)?;
                // K nu, used twice: with gamma now and with w after round 2.
                let knu = self.scaled(k, &nu)?;
                dev.map2_into(Op2::Add, &mut u1, &dev.map2(Op2::Mul, &knu, &gamma)?)?;
                dev.map2_into(Op2::Add, &mut u1, &zeta)?;
                let mut got = self.round(
                    vec![(Peer::Prev, u1.clone())],
                    &[(Peer::Next, n), (Peer::Prev, n)],
                )?;
                let w = got.pop().unwrap_or_default();
                let mut x2 = got.pop().unwrap_or_default();
                dev.map2_into(Op2::Sub, &mut x2, &dev.map2(Op2::Mul, &knu, &w)?)?;
                Ok(AShare { a: u1, b: x2 })
            }
            _ => {
                let nu = self.rand_own(n)?;
                let alpha = self.rand_next(n)?;
                if skew(d).is_some() {
                    self.rand_next(n)?; // P0's coins for its skew: keeps k_0's streams in step
                }
                match input {
                    Input::Sum(z) => self.round(vec![(Peer::Next, z)], &[])?,
                    Input::Rep(_) | Input::RepFresh(_) => self.round(vec![], &[])?,
                };
                let knu = self.scaled(k, &nu)?;
                let mut u2 = dev.map2(Op2::Mul, &knu, &alpha)?;
                dev.map2_into(Op2::Add, &mut u2, &zeta)?;
                let got = self.round1(vec![(Peer::Prev, u2.clone())], Peer::Next, 2 * n)?;
                let u0 = dev.concat(&[(&got, 0, n)])?;
                let w = dev.concat(&[(&got, n, n)])?;
                let mut x2 = u2;
                dev.map2_into(Op2::Sub, &mut x2, &dev.map2(Op2::Mul, &knu, &w)?)?;
                Ok(AShare { a: x2, b: u0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bias, ratio, skew};

    #[test]
    fn the_bias_is_a_multiple_of_the_divisor_below_2_62() {
        assert_eq!(bias(1 << 16), 1 << 62);
        for d in [3u64, 7, 1000, (1 << 31) + 1] {
            assert_eq!(bias(d) % d, 0);
            // one multiple of d lower: room for the skew (at most d / 4 + 1)
            assert!(bias(d) < (1 << 62) - d && bias(d) >= (1 << 62) - 2 * d);
        }
        // no skew from 2^32 (the largest multiple of d, as before; for d
        // in (2^61, 2^62) one multiple lower would be 0)
        for d in [(1u64 << 40) + 1, (1 << 61) + 1, 3 << 60] {
            assert!(skew(d).is_none());
            assert_eq!(bias(d) % d, 0);
            assert!(bias(d) <= 1 << 62 && bias(d) > (1 << 62) - d);
        }
    }

    #[test]
    fn the_skew_cancels_the_rounded_ratio() {
        // mean skew mu = base + frac / 2^64 must equal -2 eps (B + 1) / 2^64,
        // eps = K d - 2^64: for d = 3, K is rounded down (eps = -1), so mu
        // is 2 (B + 1) / 2^64, just under a half.
        assert!(skew(1 << 16).is_none());
        let sk = skew(3).unwrap();
        assert_eq!(sk.base, 0);
        assert_eq!(sk.frac, 2 * (bias(3) + 1));
        // d = 9: 2^64 mod 9 = 7, K rounded up (eps = 2): mu = -4 (B + 1) /
        // 2^64, just above -1: base -1 (all ones) and a fraction near 1
        let sk = skew(9).unwrap();
        assert_eq!(sk.base, u64::MAX);
        let mu = (-4 * (i128::from(bias(9)) + 1)).rem_euclid(1i128 << 64);
        assert_eq!(i128::from(sk.frac), mu);
        for d in [3u64, 6, 7, 9, 10, 25, 96, 1000, 1_000_003] {
            let sk = skew(d).unwrap();
            let eps = i128::from(ratio(64, d)) * i128::from(d) - (1i128 << 64);
            let mu = (i128::from(sk.base as i64) << 64) + i128::from(sk.frac);
            assert_eq!(mu, -2 * eps * (i128::from(bias(d)) + 1), "d = {d}");
            // |mu| < d / 4 + 1: with B it stays below 2^62 - d
            assert!(mu.abs() < (i128::from(d) / 4 + 1) << 64, "d = {d}");
        }
    }

    #[test]
    fn ratios_are_rounded_quotients() {
        assert_eq!(ratio(64, 1 << 16), 1 << 48);
        assert_eq!(ratio(62, 1 << 16), 1 << 46);
        assert_eq!(ratio(64, 1), 0); // 2^64 = 0 in the ring
        assert_eq!(ratio(64, 3), 6148914691236517205); // round(2^64 / 3)
    }
}
