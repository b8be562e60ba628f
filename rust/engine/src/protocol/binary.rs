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

use crate::device::{concat_spans, Buf, Op1, Op2, Span};
use crate::error::Result;
use crate::net::Peer;
use crate::protocol::{local, AShare, Party};

impl Party {
    /// A 3-out-of-3 XOR sharing of zero, no messages.
    pub fn zero_share_bits(&mut self, n: usize) -> Result<Buf> {
        let mut a = self.rand_own(n)?;
        let b = self.rand_next(n)?;
        self.dev.map2_into(Op2::Xor, &mut a, &b)?;
        Ok(a)
    }

    fn xor(&self, u: &AShare, v: &AShare) -> Result<AShare> {
        Ok(AShare {
            a: self.dev.map2(Op2::Xor, &u.a, &v.a)?,
            b: self.dev.map2(Op2::Xor, &u.b, &v.b)?,
        })
    }

    /// The binary input step shared by `msb` and `a2b`: y = x_0 + x_1 is
    /// shared in binary by P0 (it sends y ^ r to P2, r = F(k_1)), and x_2
    /// is known to P1 and P2; returns p = y ^ x_2 (64 planes, local) and
    /// the replicated g = y & x_2 over its first `gn` words. Two rounds.
    ///
    /// As sharings, [y] = (y ^ r, r, 0) and [x_2] = (0, 0, x_2), so most
    /// components are zero: P0's share of g is its zero share alone, and
    /// P1's and P2's local AND term is the one product of their two
    /// nonzero components (written out, not multiplied by zero planes).
    /// `plus` is a public ring constant added to x first: P0 adds it to
    /// y, which it computes anyway (no copy of x on any party).
    fn binary_inputs(&mut self, x: &AShare, gn: usize, plus: u64) -> Result<(AShare, AShare)> {
        let n = x.len();
        let planes = 64 * n.div_ceil(64);
        let dev = self.dev.clone();
        let p = match self.rank {
            0 => {
                let mut y = dev.map2(Op2::Add, &x.a, &x.b)?;
                if plus != 0 {
                    dev.map1_into(Op1::AddScalar(plus), &mut y)?;
                }
                let r = self.rand_next(planes)?;
                let c0 = dev.map2(Op2::Xor, &dev.to_planes(&y)?, &r)?;
                self.round(vec![(Peer::Prev, c0.clone())], &[])?;
                AShare { a: c0, b: r }
            }
            1 => {
                let r = self.rand_own(planes)?;
                self.round(vec![], &[])?;
                AShare {
                    a: r,
                    b: dev.to_planes(&x.b)?,
                }
            }
            _ => {
                let c0 = self.round1(vec![], Peer::Next, planes)?;
                AShare {
                    a: dev.to_planes(&x.a)?,
                    b: c0,
                }
            }
        };
        let r = self.zero_share_bits(gn)?;
        // P1: r_y & x_2; P2: x_2 & (y ^ r_y); as and_local with each
        // operand's two components equal (a & b three times over is a & b).
        let z = match self.rank {
            0 => r,
            _ => dev.and_local(&p.a, &p.a, &p.b, &p.b, r)?,
        };
        Ok((p, self.reshare(z)?))
    }

    /// Full arithmetic-to-binary conversion: all 64 bits of x as replicated
    /// binary planes (64 nw words), by a Kogge-Stone adder of y and x_2:
    /// one round for the inputs, one for g = y & x_2, then 6 prefix levels.
    pub fn a2b(&mut self, x: &AShare) -> Result<AShare> {
        let nw = x.len().div_ceil(64);
        let (p0, mut g) = self.binary_inputs(x, 64 * nw, 0)?;
        let mut p = p0.clone();
        let dev = self.dev.clone();
        let mut shift = 1;
        while shift < 64 {
            // G_j ^= P_j & G_{j-shift} for j >= shift; P_j &= P_{j-shift} for
            // the j whose P a later level still reads (j >= 2 shift).
            let ng = 64 - shift;
            let np = 64_usize.saturating_sub(2 * shift);
            let prod = self.and_spans(
                &spans(&[(&p, shift, 1, ng), (&p, 2 * shift, 1, np)], nw),
                &spans(&[(&g, 0, 1, ng), (&p, shift, 1, np)], nw),
            )?;
            for (dst, src) in [(&mut g.a, &prod.a), (&mut g.b, &prod.b)] {
                dev.update(Some(Op2::Xor), dst, shift * nw, src, 0, ng * nw)?;
            }
            for (dst, src) in [(&mut p.a, &prod.a), (&mut p.b, &prod.b)] {
                dev.update(None, dst, 2 * shift * nw, src, ng * nw, np * nw)?;
            }
            shift *= 2;
        }
        // sum_j = p0_j ^ carry_j, carry_j = G_{j-1} (the group generate of
        // bits below j), carry_0 = 0.
        let mut out = p0;
        for (dst, src) in [(&mut out.a, &g.a), (&mut out.b, &g.b)] {
            dev.update(Some(Op2::Xor), dst, nw, src, 0, 63 * nw)?;
        }
        Ok(out)
    }

    /// Full A2B, opened: the n words the binary sharing reconstructs to (for
    /// tests and inspection; 8 rounds for the conversion, 1 to open).
    pub fn a2b_open(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let n = x.len();
        let bits = self.a2b(x)?;
        let planes = self.reveal_bits(&bits)?;
        let dev = self.dev.clone();
        dev.unslice_planes(&dev.upload(planes)?, n)?.into_vec()
    }

    /// Open a replicated binary sharing to every party: one round.
    pub fn reveal_bits(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let c = self.round1(vec![(Peer::Next, x.a.clone())], Peer::Prev, x.len())?;
        let mut s = self.dev.map2(Op2::Xor, &x.a, &x.b)?;
        self.dev.map2_into(Op2::Xor, &mut s, &c)?;
        s.into_vec()
    }

    /// Planes of plane stacks gathered into one sharing with one copy per
    /// component (`spans` says which).
    fn pick(&self, parts: &[(&AShare, usize, usize, usize)], nw: usize) -> Result<AShare> {
        let (a, b) = concat_spans(&*self.dev, &spans(parts, nw))?;
        Ok(AShare { a, b })
    }

    /// AND of two replicated binary sharings given as spans of other
    /// sharings (read in place where the device can): one round, one word
    /// per word (the XOR shares reshare as the arithmetic ones do).
    fn and_spans(&mut self, x: &[Span], y: &[Span]) -> Result<AShare> {
        let n = x.iter().map(|s| s.3).sum();
        let r = self.zero_share_bits(n)?;
        let z = self.dev.and_local_spans(x, y, r)?;
        self.reshare(z)
    }

    /// Sign bit of an arithmetic sharing, as a replicated binary sharing of
    /// one packed plane (nw words). 8 rounds (module table).
    pub fn msb(&mut self, x: &AShare) -> Result<AShare> {
        self.msb_plus(x, 0)
    }

    /// The sign bit of x + `plus` (a public ring constant), at msb's cost:
    /// ReLU's [x <= 0] is msb(x - 1 unit).
    pub fn msb_plus(&mut self, x: &AShare, plus: u64) -> Result<AShare> {
        let nw = x.len().div_ceil(64);
        // p_j = y_j ^ x2_j (local); g_j = y_j & x2_j for j < 63 (one round).
        let (p, mut gs) = self.binary_inputs(x, 63 * nw, plus)?;
        // Groups, lowest bits first, as two plane stacks: G of groups
        // 0..cnt, and P of groups 1..cnt, group k's P at plane k - 1 + poff
        // of `ps` (the lowest group's P is never needed: nothing carries into
        // bit 0). The first level reads P straight from p (poff = 1).
        let mut ps_next: Option<AShare> = None;
        let mut cnt = 63;
        while cnt > 1 {
            let (ps, poff) = match &ps_next {
                Some(s) => (s, 0),
                None => (&p, 1),
            };
            // One AND round merges every adjacent pair (lo, hi) = (2m, 2m+1):
            // G = G_hi ^ (P_hi & G_lo), and P = P_hi & P_lo for m >= 1.
            let pairs = cnt / 2;
            let odd = cnt % 2;
            let prod = self.and_spans(
                &spans(&[(ps, poff, 2, pairs), (ps, poff + 2, 2, pairs - 1)], nw),
                &spans(&[(&gs, 0, 2, pairs), (ps, poff + 1, 2, pairs - 1)], nw),
            )?;
            // The odd group out (cnt odd) moves up unchanged, its G and P
            // appended to the new stacks.
            let mut ng = self.pick(&[(&gs, 1, 2, pairs), (&gs, cnt - 1, 1, odd)], nw)?;
            for (dst, src) in [(&mut ng.a, &prod.a), (&mut ng.b, &prod.b)] {
                self.dev
                    .update(Some(Op2::Xor), dst, 0, src, 0, pairs * nw)?;
            }
            let np = self.pick(
                &[(&prod, pairs, 1, pairs - 1), (ps, poff + cnt - 2, 1, odd)],
                nw,
            )?;
            gs = ng;
            ps_next = Some(np);
            cnt = pairs + cnt % 2;
        }
        self.xor(&self.pick(&[(&p, 63, 1, 1)], nw)?, &gs)
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
        let dev = self.dev.clone();
        let expand = |plane: &Buf| dev.expand_bits(plane, n, reps);
        let (ush, tsh) = match self.rank {
            0 => {
                let mut u0 = expand(&dev.map2(Op2::Xor, &c.a, &c.b)?)?;
                let u1 = self.rand_next(m)?;
                let t1 = self.rand_next(m)?;
                let t0 = self.rand_own(m)?;
                dev.map2_into(Op2::Sub, &mut u0, &u1)?;
                self.round(vec![(Peer::Prev, u0.clone())], &[])?;
                (AShare { a: u0, b: u1 }, AShare { a: t0, b: t1 })
            }
            1 => {
                let c2 = expand(&c.b)?;
                let u1 = self.rand_own(m)?;
                let t1 = self.rand_own(m)?;
                let mut m1 = dev.map2(Op2::Add, &v.a, &v.b)?;
                dev.map2_into(Op2::Mul, &mut m1, &c2)?;
                dev.map2_into(Op2::Sub, &mut m1, &t1)?;
                let m2 = self.round1(vec![(Peer::Next, m1.clone())], Peer::Next, m)?;
                let t2 = dev.map2(Op2::Add, &m1, &m2)?;
                (
                    AShare {
                        a: u1,
                        b: dev.zeros(m)?,
                    },
                    AShare { a: t1, b: t2 },
                )
            }
            _ => {
                let c2 = expand(&c.a)?;
                let t0 = self.rand_next(m)?;
                let mut m2 = c2;
                dev.map2_into(Op2::Mul, &mut m2, &v.b)?;
                dev.map2_into(Op2::Sub, &mut m2, &t0)?;
                // u0 from party 0 (next), m1 from party 1 (previous).
                let mut got = self.round(
                    vec![(Peer::Prev, m2.clone())],
                    &[(Peer::Next, m), (Peer::Prev, m)],
                )?;
                let m1 = got.pop().unwrap_or_default();
                let u0 = got.pop().unwrap_or_default();
                let t2 = dev.map2(Op2::Add, &m1, &m2)?;
                (
                    AShare {
                        a: dev.zeros(m)?,
                        b: u0,
                    },
                    AShare { a: t2, b: t0 },
                )
            }
        };
        // w = u * (v - 2t), integer product: reshare without truncation.
        let d = &*dev;
        let mut y = local::add(d, &tsh, &tsh)?;
        for (yc, vc) in [(&mut y.a, &v.a), (&mut y.b, &v.b)] {
            d.map2_into(Op2::Sub, yc, vc)?;
            d.map1_into(Op1::Neg, yc)?;
        }
        let mut w = self.mul_int(&ush, &y)?;
        d.map2_into(Op2::Add, &mut w.a, &tsh.a)?;
        d.map2_into(Op2::Add, &mut w.b, &tsh.b)?;
        Ok(w)
    }
}

/// Planes of plane stacks as spans: for each (stack, first plane, step,
/// count), planes first, first + step, ... (count of them), in order (a
/// step of 1 is one span).
fn spans<'a>(parts: &[(&'a AShare, usize, usize, usize)], nw: usize) -> Vec<Span<'a>> {
    let mut v = Vec::new();
    for &(s, j0, step, count) in parts {
        if step == 1 {
            v.push((&s.a, &s.b, j0 * nw, count * nw));
        } else {
            v.extend((0..count).map(|k| (&s.a, &s.b, (j0 + k * step) * nw, nw)));
        }
    }
    v
}
