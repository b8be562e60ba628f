//! Binary sharing, comparison and bit injection (ABY3 sections 5.3-5.4,
//! with our own MSB circuit and bit injection; DESIGN.md "A2B / MSB").
//!
//! Binary shares are replicated XOR shares, bit-sliced: plane j of a tensor
//! holds bit j of 64 elements per word, so one AND round works on whole
//! tensors whatever their size.
//!
//! Costs per element, per party (`nw` = ceil(n / 64) words per plane):
//!
//! | protocol     | rounds | sent                                                 |
//! |--------------|--------|------------------------------------------------------|
//! | AND (planes) | 1      | one word per plane word                              |
//! | msb          | 8      | P0: 64 nw (input) + 181 nw (ANDs); P1, P2: 181 nw   |
//! | bit inject   | 2      | 2 ring elements per value (P0, P1, P2 alike)         |
//! | relu = x - inject(msb(x), x) | 10 | msb + inject                            |
//! | a2b (all 64 bits) | 8    | P0: 64 nw (input) + 643 nw (ANDs); P1, P2: 643 nw   |
//! | reveal (binary)   | 1    | one word per plane word                             |
//!
//! MSB: P0 knows y = x_0 + x_1 and shares it in binary (it sends one masked
//! copy to P2: 1 round); x_2 is known to P1 and P2 and needs no sharing. The
//! sign of x = y + x_2 is p_63 xor the carry into bit 63, and the carry is the
//! group generate of bits 0..62, computed by a binary tree of (G, P) merges:
//! 1 round for g_j = y_j & x2_j (63 planes), then 6 levels (63 -> 32 -> ... ->
//! 1 groups), 181 AND planes in all. Only the planes the top carry needs are
//! ever computed.

use crate::error::Result;
use crate::net::Peer;
use crate::protocol::{local, take_checked, AShare, Party};
use crate::ring;

/// Transpose a 64x64 bit matrix in place: bit c of word r moves to bit r of
/// word c (recursive block swaps, 6 steps of 32 word pairs).
pub fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32usize;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0usize;
        while k < 64 {
            // Swap the high j bits of word k (bits j..) with the low j bits
            // of word k + j.
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Bit-slice n words into 64 planes of nw words: plane j, word w, bit b =
/// bit j of element 64 w + b.
pub fn to_planes(x: &[u64]) -> Vec<u64> {
    let n = x.len();
    let nw = n.div_ceil(64);
    let mut out = vec![0u64; 64 * nw];
    for w in 0..nw {
        let mut blk = [0u64; 64];
        let hi = (n - w * 64).min(64);
        blk[..hi].copy_from_slice(&x[w * 64..w * 64 + hi]);
        transpose64(&mut blk);
        for (j, v) in blk.iter().enumerate() {
            out[j * nw + w] = *v;
        }
    }
    out
}

/// Inverse of `to_planes`: n words back from 64 planes of nw words.
pub fn from_planes(planes: &[u64], n: usize) -> Vec<u64> {
    let nw = n.div_ceil(64);
    let mut out = vec![0u64; n];
    for w in 0..nw {
        let mut blk = [0u64; 64];
        for (j, b) in blk.iter_mut().enumerate() {
            *b = planes[j * nw + w];
        }
        transpose64(&mut blk);
        let hi = (n - w * 64).min(64);
        out[w * 64..w * 64 + hi].copy_from_slice(&blk[..hi]);
    }
    out
}

fn plane_of(s: &AShare, j: usize, nw: usize) -> (&[u64], &[u64]) {
    (&s.a[j * nw..(j + 1) * nw], &s.b[j * nw..(j + 1) * nw])
}

/// Element e's bit from a packed plane, as 0 or 1.
#[inline]
pub fn bit(plane: &[u64], e: usize) -> u64 {
    (plane[e / 64] >> (e % 64)) & 1
}

fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

impl Party {
    /// A 3-out-of-3 XOR sharing of zero, no messages.
    pub fn zero_share_bits(&mut self, n: usize) -> Vec<u64> {
        let a = self.prg_own().gen(n);
        let b = self.prg_next().gen(n);
        xor(&a, &b)
    }

    /// AND of two replicated binary sharings (any packing): one round, one
    /// word per word.
    pub fn and(&mut self, x: &AShare, y: &AShare) -> Result<AShare> {
        let n = x.len();
        let mut z = self.zero_share_bits(n);
        for (j, zj) in z.iter_mut().enumerate() {
            *zj ^= (x.a[j] & y.a[j]) ^ (x.a[j] & y.b[j]) ^ (x.b[j] & y.a[j]);
        }
        let mut got = self
            .comm
            .round(vec![(Peer::Prev, z.clone())], &[Peer::Next])?;
        let b = take_checked(&mut got, n)?;
        Ok(AShare { a: z, b })
    }

    /// The binary input step shared by `msb` and `a2b`: [y]^B for y = x_0 +
    /// x_1 (P0 sends y ^ r to P2, r = F(k_1)) and [x_2]^B with components
    /// (0, 0, x_2), both as 64 planes. One round.
    fn binary_inputs(&mut self, x: &AShare) -> Result<(AShare, AShare)> {
        let n = x.len();
        let planes = 64 * n.div_ceil(64);
        let zeros = || vec![0u64; planes];
        Ok(match self.rank {
            0 => {
                let y: Vec<u64> =
                    x.a.iter()
                        .zip(&x.b)
                        .map(|(p, q)| p.wrapping_add(*q))
                        .collect();
                let r = self.prg_next().gen(planes);
                let c0 = xor(&to_planes(&y), &r);
                self.comm.round(vec![(Peer::Prev, c0.clone())], &[])?;
                (
                    AShare { a: c0, b: r },
                    AShare {
                        a: zeros(),
                        b: zeros(),
                    },
                )
            }
            1 => {
                let r = self.prg_own().gen(planes);
                self.comm.round(vec![], &[])?;
                (
                    AShare { a: r, b: zeros() },
                    AShare {
                        a: zeros(),
                        b: to_planes(&x.b),
                    },
                )
            }
            _ => {
                let mut got = self.comm.round(vec![], &[Peer::Next])?;
                let c0 = take_checked(&mut got, planes)?;
                (
                    AShare { a: zeros(), b: c0 },
                    AShare {
                        a: to_planes(&x.a),
                        b: zeros(),
                    },
                )
            }
        })
    }

    /// Full arithmetic-to-binary conversion: all 64 bits of x as replicated
    /// binary planes (64 nw words), by a Kogge-Stone adder of y and x_2:
    /// one round for the inputs, one for g = y & x_2, then 6 prefix levels.
    pub fn a2b(&mut self, x: &AShare) -> Result<AShare> {
        let nw = x.len().div_ceil(64);
        let (ys, xs) = self.binary_inputs(x)?;
        let p0 = AShare {
            a: xor(&ys.a, &xs.a),
            b: xor(&ys.b, &xs.b),
        };
        let mut g = self.and(&ys, &xs)?;
        let mut p = p0.clone();
        let mut shift = 1;
        while shift < 64 {
            // G_j ^= P_j & G_{j-shift} for j >= shift; P_j &= P_{j-shift} for
            // the j whose P a later level still reads (j >= 2 shift).
            let mut left = AShare::default();
            let mut right = AShare::default();
            for j in shift..64 {
                let (pa, pb) = plane_of(&p, j, nw);
                let (ga, gb) = plane_of(&g, j - shift, nw);
                left.a.extend_from_slice(pa);
                left.b.extend_from_slice(pb);
                right.a.extend_from_slice(ga);
                right.b.extend_from_slice(gb);
            }
            let np = 64_usize.saturating_sub(2 * shift);
            for j in 2 * shift..64 {
                let (pa, pb) = plane_of(&p, j, nw);
                let (qa, qb) = plane_of(&p, j - shift, nw);
                left.a.extend_from_slice(pa);
                left.b.extend_from_slice(pb);
                right.a.extend_from_slice(qa);
                right.b.extend_from_slice(qb);
            }
            let prod = self.and(&left, &right)?;
            let ng = 64 - shift;
            for (k, j) in (shift..64).enumerate() {
                for w in 0..nw {
                    g.a[j * nw + w] ^= prod.a[k * nw + w];
                    g.b[j * nw + w] ^= prod.b[k * nw + w];
                }
            }
            for (k, j) in (2 * shift..64).enumerate() {
                let o = (ng + k) * nw;
                p.a[j * nw..(j + 1) * nw].copy_from_slice(&prod.a[o..o + nw]);
                p.b[j * nw..(j + 1) * nw].copy_from_slice(&prod.b[o..o + nw]);
            }
            debug_assert_eq!(prod.a.len(), (ng + np) * nw);
            shift *= 2;
        }
        // sum_j = p0_j ^ carry_j, carry_j = G_{j-1} (the group generate of
        // bits below j), carry_0 = 0.
        let mut out = p0;
        for j in 1..64 {
            for w in 0..nw {
                out.a[j * nw + w] ^= g.a[(j - 1) * nw + w];
                out.b[j * nw + w] ^= g.b[(j - 1) * nw + w];
            }
        }
        Ok(out)
    }

    /// Open a replicated binary sharing to every party: one round.
    pub fn reveal_bits(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let mut got = self
            .comm
            .round(vec![(Peer::Next, x.a.clone())], &[Peer::Prev])?;
        let c = take_checked(&mut got, x.len())?;
        Ok(x.a
            .iter()
            .zip(&x.b)
            .zip(&c)
            .map(|((p, q), r)| p ^ q ^ r)
            .collect())
    }

    /// Sign bit of an arithmetic sharing, as a replicated binary sharing of
    /// one packed plane (nw words). 8 rounds (module table).
    pub fn msb(&mut self, x: &AShare) -> Result<AShare> {
        let nw = x.len().div_ceil(64);
        let (ys, xs) = self.binary_inputs(x)?;
        let plane = |s: &AShare, j: usize| AShare {
            a: s.a[j * nw..(j + 1) * nw].to_vec(),
            b: s.b[j * nw..(j + 1) * nw].to_vec(),
        };
        let pxor = |u: &AShare, v: &AShare| AShare {
            a: xor(&u.a, &v.a),
            b: xor(&u.b, &v.b),
        };
        // p_j = y_j ^ x2_j (local); g_j = y_j & x2_j for j < 63 (one round).
        let p: Vec<AShare> = (0..64)
            .map(|j| pxor(&plane(&ys, j), &plane(&xs, j)))
            .collect();
        let lo = AShare {
            a: ys.a[..63 * nw].to_vec(),
            b: ys.b[..63 * nw].to_vec(),
        };
        let lx = AShare {
            a: xs.a[..63 * nw].to_vec(),
            b: xs.b[..63 * nw].to_vec(),
        };
        let g = self.and(&lo, &lx)?;
        // Groups, lowest bits first: (G, P); the lowest group's P is never
        // needed (nothing carries into bit 0).
        let mut groups: Vec<(AShare, Option<AShare>)> = (0..63)
            .map(|j| (plane(&g, j), if j == 0 { None } else { Some(p[j].clone()) }))
            .collect();
        while groups.len() > 1 {
            // One AND round merges every adjacent pair (lo, hi):
            // G = G_hi ^ (P_hi & G_lo), P = P_hi & P_lo.
            let pairs = groups.len() / 2;
            let mut left = AShare::default();
            let mut right = AShare::default();
            for m in 0..pairs {
                let (glo, plo) = &groups[2 * m];
                let (_, phi) = &groups[2 * m + 1];
                let phi = phi
                    .as_ref()
                    .ok_or_else(|| crate::EngineError::Internal("missing P".into()))?;
                left.a.extend_from_slice(&phi.a);
                left.b.extend_from_slice(&phi.b);
                right.a.extend_from_slice(&glo.a);
                right.b.extend_from_slice(&glo.b);
                if let Some(plo) = plo {
                    left.a.extend_from_slice(&phi.a);
                    left.b.extend_from_slice(&phi.b);
                    right.a.extend_from_slice(&plo.a);
                    right.b.extend_from_slice(&plo.b);
                }
            }
            let prod = self.and(&left, &right)?;
            let mut next = Vec::with_capacity(groups.len().div_ceil(2));
            let mut off = 0;
            for m in 0..pairs {
                let take = |s: &AShare, o: usize| AShare {
                    a: s.a[o * nw..(o + 1) * nw].to_vec(),
                    b: s.b[o * nw..(o + 1) * nw].to_vec(),
                };
                let pg = take(&prod, off);
                off += 1;
                let newg = pxor(&groups[2 * m + 1].0, &pg);
                let newp = if groups[2 * m].1.is_some() {
                    let pp = take(&prod, off);
                    off += 1;
                    Some(pp)
                } else {
                    None
                };
                next.push((newg, newp));
            }
            if groups.len() % 2 == 1 {
                next.push(
                    groups
                        .pop()
                        .ok_or_else(|| crate::EngineError::Internal("empty".into()))?,
                );
            }
            groups = next;
        }
        let carry = &groups[0].0;
        Ok(pxor(&p[63], carry))
    }

    /// c * v for a replicated binary bit c (one packed plane) and arithmetic
    /// values v with `reps` values per bit (v.len() = reps * n, the values of
    /// element e at e*reps .. (e+1)*reps). Two rounds, two ring elements per
    /// value per party; no truncation (c is an integer).
    ///
    /// With u = c_0 ^ c_1 (known to P0) and c_2 (known to P1 and P2),
    /// c = u + c_2 - 2 u c_2, so c v = u (v - 2t) + t with t = c_2 v.
    /// Round 1: P0 shares u (sends u - F(k_1) to P2); P1 and P2 build the
    /// sharing of t = c_2 (v_0 + v_1 + v_2) with t_0 = F(k_0), t_1 = F(k_1)
    /// and t_2 = m_1 + m_2, exchanging m_1 = c_2 (v_1 + v_2) - t_1 and
    /// m_2 = c_2 v_0 - t_0. Round 2: one multiplication u * (v - 2t).
    pub fn bit_inject(&mut self, c: &AShare, v: &AShare, n: usize, reps: usize) -> Result<AShare> {
        let m = n * reps;
        let expand = |plane: &[u64]| -> Vec<u64> { (0..m).map(|i| bit(plane, i / reps)).collect() };
        let (ush, tsh) = match self.rank {
            0 => {
                let uplane = xor(&c.a, &c.b);
                let u = expand(&uplane);
                let u1 = self.prg_next().gen(m);
                let t1 = self.prg_next().gen(m);
                let t0 = self.prg_own().gen(m);
                let u0: Vec<u64> = u.iter().zip(&u1).map(|(a, b)| a.wrapping_sub(*b)).collect();
                self.comm.round(vec![(Peer::Prev, u0.clone())], &[])?;
                (AShare { a: u0, b: u1 }, AShare { a: t0, b: t1 })
            }
            1 => {
                let c2 = expand(&c.b);
                let u1 = self.prg_own().gen(m);
                let t1 = self.prg_own().gen(m);
                let m1: Vec<u64> = (0..m)
                    .map(|i| (c2[i] * v.a[i].wrapping_add(v.b[i])).wrapping_sub(t1[i]))
                    .collect();
                let mut got = self
                    .comm
                    .round(vec![(Peer::Next, m1.clone())], &[Peer::Next])?;
                let m2 = take_checked(&mut got, m)?;
                let t2 = ring::add(&m1, &m2);
                (
                    AShare {
                        a: u1,
                        b: vec![0; m],
                    },
                    AShare { a: t1, b: t2 },
                )
            }
            _ => {
                let c2 = expand(&c.a);
                let t0 = self.prg_next().gen(m);
                let m2: Vec<u64> = (0..m)
                    .map(|i| (c2[i] * v.b[i]).wrapping_sub(t0[i]))
                    .collect();
                let mut got = self
                    .comm
                    .round(vec![(Peer::Prev, m2.clone())], &[Peer::Next, Peer::Prev])?;
                let m1 = take_checked(&mut got, m)?;
                let u0 = take_checked(&mut got, m)?;
                let t2 = ring::add(&m1, &m2);
                (
                    AShare {
                        a: vec![0; m],
                        b: u0,
                    },
                    AShare { a: t2, b: t0 },
                )
            }
        };
        // w = u * (v - 2t), integer product: reshare without truncation.
        let y = local::sub(v, &local::add(&tsh, &tsh));
        let w = self.mul_int(&ush, &y)?;
        Ok(local::add(&w, &tsh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_planes_inverts_to_planes() {
        let x: Vec<u64> = (0..200u64)
            .map(|i| i.wrapping_mul(0xD6E8_FEB8_6659_FD93))
            .collect();
        assert_eq!(from_planes(&to_planes(&x), x.len()), x);
    }

    #[test]
    fn planes_hold_bit_j_of_each_element() {
        let x: Vec<u64> = (0..130u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let p = to_planes(&x);
        let nw = 3;
        for (e, v) in x.iter().enumerate() {
            for j in 0..64 {
                assert_eq!(
                    bit(&p[j * nw..(j + 1) * nw], e),
                    (v >> j) & 1,
                    "e {e} j {j}"
                );
            }
        }
    }
}
