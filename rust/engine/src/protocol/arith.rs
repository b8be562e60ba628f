//! Arithmetic protocols on replicated shares (ABY3 sections 3 and 5.1):
//! sharing and opening, truncation, products, matrix products and
//! convolution. Costs are in the table of `protocol`.

use super::{AShare, Party};
use crate::device::{Buf, MatDims, Op1, Op2};
use crate::error::Result;
use crate::net::Peer;
use crate::ring::Conv2dGeom;

impl Party {
    /// Elementwise product without truncation (one operand an integer, e.g.
    /// a bit): one round, one element.
    pub fn mul_int(&mut self, x: &AShare, y: &AShare) -> Result<AShare> {
        let z = self.local_product(x, y)?;
        self.reshare(z)
    }

    /// Share a ring vector owned by party `src` (`plain` is Some only there).
    /// The two components the owner shares with one neighbour each come from
    /// the PRG; the third, x - x_src - x_{src+1}, is sent to both others.
    pub fn share(&mut self, src: usize, plain: Option<&[u64]>, n: usize) -> Result<AShare> {
        let me = self.rank;
        if me == src {
            let x =
                plain.ok_or_else(|| crate::EngineError::Internal("owner without data".into()))?;
            let a = self.rand_own(n)?;
            let b = self.rand_next(n)?;
            let mut c = self.dev.upload(x.to_vec())?;
            self.dev.map2_into(Op2::Sub, &mut c, &a)?;
            self.dev.map2_into(Op2::Sub, &mut c, &b)?;
            self.round(vec![(Peer::Next, c.clone()), (Peer::Prev, c)], &[])?;
            Ok(AShare { a, b })
        } else if me == (src + 1) % 3 {
            let a = self.rand_own(n)?;
            let b = self.round1(vec![], Peer::Prev, n)?;
            Ok(AShare { a, b })
        } else {
            let b = self.rand_next(n)?;
            let a = self.round1(vec![], Peer::Next, n)?;
            Ok(AShare { a, b })
        }
    }

    /// x_i + x_{i+1} + c on the device, to the host.
    fn open_with(&self, x: &AShare, c: &Buf) -> Result<Vec<u64>> {
        let mut s = self.dev.map2(Op2::Add, &x.a, &x.b)?;
        self.dev.map2_into(Op2::Add, &mut s, c)?;
        s.into_vec()
    }

    /// Open to every party: each sends x_i to the next party, which misses it.
    pub fn reveal(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let c = self.round1(vec![(Peer::Next, x.a.clone())], Peer::Prev, x.len())?;
        self.open_with(x, &c)
    }

    /// Open to party `to` only; the others get None.
    pub fn reveal_to(&mut self, x: &AShare, to: usize) -> Result<Option<Vec<u64>>> {
        let me = self.rank;
        if me == to {
            let c = self.round1(vec![], Peer::Prev, x.len())?;
            Ok(Some(self.open_with(x, &c)?))
        } else if (me + 1) % 3 == to {
            self.round(vec![(Peer::Next, x.a.clone())], &[])?;
            Ok(None)
        } else {
            self.round(vec![], &[])?;
            Ok(None)
        }
    }

    /// From a 3-out-of-3 sharing z (z_0 + z_1 + z_2 = v) to a replicated
    /// sharing of floor(v / d): ABY3's share truncation (section 5.1.1,
    /// "Pi_trunc1") generalised from 2^f to any positive divisor d, fused
    /// with the reshare that a product needs anyway.
    ///
    /// P0 and P1 hold a 2-out-of-2 sharing (z_0, z_1 + z_2) after P2 sends z_2
    /// to P1; each divides its part locally (signed floor); P1 and P2 mask
    /// P1's part with r = F(k_2). Result: t_0 = z_0 / d, t_1 = (z_1 + z_2) / d
    /// - r, t_2 = r.
    ///
    /// Round 1: P0 sends t_0 to P2; P2 sends z_2 to P1. Round 2: P1 sends t_1
    /// to P0. Two rounds, one element per party.
    ///
    /// Error: P0 divides rounding up (ceiling), P1 rounding down. With
    /// v = Q d + r and z_0 = q d + r0, the sum of the two quotients is Q + 1
    /// when 0 < r0 <= r and Q otherwise: with z_0 uniform that is Q + 1 with
    /// probability r / d, so the result is v / d on average for every d
    /// (stochastic rounding), within (-1, +1) units of 2^-f, which matters
    /// when thousands of truncated values are summed (gradients). When the
    /// shares are not random (all zero after a product by a public 0, a
    /// public value), r0 = 0 and the result is floor(v / d): exactly 0 for 0.
    /// (Floor on both sides plus one unit, the usual correction, is
    /// unbiased only on average over r0 and off by 1/d units in general,
    /// and turns the zero sharing of 0 into one unit.)
    /// If |v| < 2^k, the 2-out-of-2 sum wraps and the element is garbage with
    /// probability below 2^(k+1-64) per element (as in SecureML / ABY3). With
    /// f = 16 and values below 2^15 in magnitude (k = 47 after a product)
    /// that is below 2^-16 per element; keep values small or lower f.
    pub fn reshare_divide(&mut self, z: Buf, d: u64) -> Result<AShare> {
        if self.exact_trunc {
            return self.divide_exact(super::trunc::Input::Sum(z), d);
        }
        let n = z.len();
        let dev = self.dev.clone();
        match self.rank {
            0 => {
                let mut t0 = z;
                self.div_ceil_into(&mut t0, d)?;
                self.round(vec![(Peer::Prev, t0.clone())], &[])?;
                let t1 = self.round1(vec![], Peer::Next, n)?;
                Ok(AShare { a: t0, b: t1 })
            }
            1 => {
                let z2 = self.round1(vec![], Peer::Next, n)?;
                let mut s = z;
                dev.map2_into(Op2::Add, &mut s, &z2)?;
                dev.map1_into(Op1::DivFloor(d), &mut s)?;
                let r = self.rand_next(n)?;
                dev.map2_into(Op2::Sub, &mut s, &r)?;
                self.round(vec![(Peer::Prev, s.clone())], &[])?;
                Ok(AShare { a: s, b: r })
            }
            _ => {
                let t0 = self.round1(vec![(Peer::Prev, z)], Peer::Next, n)?;
                let r = self.rand_own(n)?;
                self.round(vec![], &[])?;
                Ok(AShare { a: r, b: t0 })
            }
        }
    }

    /// Signed ceiling division by d in place: -floor(-z / d), P0's side of
    /// a truncation (the module's error analysis).
    pub(super) fn div_ceil_into(&self, z: &mut Buf, d: u64) -> Result<()> {
        self.dev.map1_into(Op1::Neg, z)?;
        self.dev.map1_into(Op1::DivFloor(d), z)?;
        self.dev.map1_into(Op1::Neg, z)
    }

    /// [`Party::divide`] by the exact protocol whatever the session's mode:
    /// for a product by a public factor encoded with extra fractional bits,
    /// whose ring value is larger than a product of two encoded values by
    /// 2^extra, so that the probabilistic protocol's failure chance grows
    /// with the input instead of the product (x * 1e-5 at x = 1e8 failed in
    /// 0.7% of elements).
    pub fn divide_exact_always(&mut self, x: &AShare, d: u64) -> Result<AShare> {
        self.divide_exact(super::trunc::Input::Rep(x), d)
    }

    /// [`Party::divide_fresh`] by the exact protocol whatever the session's
    /// mode: a plaintext factor 1/k below 1/4 taken as the division by k,
    /// whose input, not its result, sets the probabilistic protocol's
    /// failure chance (as for [`Party::divide_exact_always`]).
    pub fn divide_exact_always_fresh(&mut self, x: &AShare, d: u64) -> Result<AShare> {
        self.divide_exact(super::trunc::Input::RepFresh(x), d)
    }

    /// Divide a replicated sharing by a positive public integer (truncation
    /// by f bits when d = 2^f). Party i's first component already forms a
    /// 3-out-of-3 sharing whose messages below reveal nothing new (each
    /// receiver already holds the component it is sent), so no mask is added.
    pub fn divide(&mut self, x: &AShare, d: u64) -> Result<AShare> {
        if self.exact_trunc {
            return self.divide_exact(super::trunc::Input::Rep(x), d);
        }
        self.reshare_divide(x.a.clone(), d)
    }

    /// As [`Party::divide`], with the sharing's split re-randomised first
    /// (a zero sharing, or a common draw of P0 and P1 in the exact
    /// protocol; no extra messages): elements with equal shares (a value
    /// broadcast by `expand`) then round independently, each unbiased,
    /// instead of all the same way.
    pub fn divide_fresh(&mut self, x: &AShare, d: u64) -> Result<AShare> {
        if self.exact_trunc {
            return self.divide_exact(super::trunc::Input::RepFresh(x), d);
        }
        let mut z = self.zero_share(x.len())?;
        self.dev.map2_into(Op2::Add, &mut z, &x.a)?;
        self.reshare_divide(z, d)
    }

    pub fn truncate(&mut self, x: &AShare) -> Result<AShare> {
        let d = self.scale();
        self.divide(x, d)
    }

    /// Local step of a product: x_i y_i + x_i y_{i+1} + x_{i+1} y_i plus a
    /// zero share, a 3-out-of-3 sharing of x y.
    fn local_product(&mut self, x: &AShare, y: &AShare) -> Result<Buf> {
        let z = self.zero_share(x.len())?;
        self.dev.mul_local(&x.a, &x.b, &y.a, &y.b, z)
    }

    /// Elementwise product of two fixed-point sharings, truncated.
    pub fn mul(&mut self, x: &AShare, y: &AShare) -> Result<AShare> {
        self.mul_fused(x, y, 0, None)
    }

    /// x y / 2^shift + k w (w a sharing, k a public ring integer: with w
    /// at scale 2^f, k = c 2^(f + shift) adds c w), truncated once: k w
    /// joins the 3-out-of-3 product (party i adds k times its first
    /// component) before the reshare, so the whole costs one product's
    /// rounds and bytes (GELU's x^2 / 16, and its x / 2 inside the last
    /// Horner step).
    pub fn mul_fused(
        &mut self,
        x: &AShare,
        y: &AShare,
        shift: u32,
        plus: Option<(&AShare, u64)>,
    ) -> Result<AShare> {
        let mut z = self.local_product(x, y)?;
        if let Some((w, k)) = plus {
            let dev = self.dev.clone();
            let kw = dev.map2(Op2::Mul, &w.a, &dev.upload(vec![k; w.len()])?)?;
            dev.map2_into(Op2::Add, &mut z, &kw)?;
        }
        let d = self.scale() << shift;
        self.reshare_divide(z, d)
    }

    /// Batched matrix product [batch, m, k] x [batch, k, n] of sharings
    /// (y stored [batch, n, k] when `dims.y_trans`), truncated: per party
    /// x_i (y_i + y_{i+1}) + x_{i+1} y_i, one fused local step.
    pub fn matmul(&mut self, x: &AShare, y: &AShare, dims: MatDims) -> Result<AShare> {
        let mut z = self.zero_share(dims.batch * dims.m * dims.n)?;
        self.dev
            .matmul_local((&x.a, &x.b), (&y.a, &y.b), dims, &mut z)?;
        let d = self.scale();
        self.reshare_divide(z, d)
    }

    /// Product of a sharing with a public fixed-point matrix; `public_left`
    /// puts the public operand on the left. Local products, then truncation.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_public(
        &mut self,
        x: &AShare,
        p: &[u64],
        public_left: bool,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<AShare> {
        let dev = self.dev.clone();
        let p = dev.upload(p.to_vec())?;
        let prod = |s: &Buf| {
            let mut out = dev.zeros(batch * m * n)?;
            for bi in 0..batch {
                let (xo, yo, zo) = (bi * m * k, bi * k * n, bi * m * n);
                let (l, r) = if public_left {
                    ((&p, xo), (s, yo))
                } else {
                    ((s, xo), (&p, yo))
                };
                dev.gemm(m, k, n, l, r, (&mut out, zo), false)?;
            }
            Ok(out)
        };
        let y = x.map(prod)?;
        self.truncate(&y)
    }

    /// 2-D convolution of a sharing with a shared weight [O, C/g, kh, kw],
    /// truncated. im2col on both input components, then the same two GEMMs as
    /// `matmul` per group. Output NCHW.
    pub fn conv2d(
        &mut self,
        x: &AShare,
        w: &AShare,
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<AShare> {
        let mut z = self
            .dev
            .conv_local((&x.a, &x.b), (&w.a, &w.b), g, out_ch, groups)?;
        let zs = self.zero_share(z.len())?;
        self.dev.map2_into(Op2::Add, &mut z, &zs)?;
        let d = self.scale();
        self.reshare_divide(z, d)
    }

    /// Convolution with a public (plaintext, encoded) weight, truncated.
    pub fn conv2d_public(
        &mut self,
        x: &AShare,
        w: &[u64],
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<AShare> {
        let w = self.dev.upload(w.to_vec())?;
        let a = self.dev.conv_terms(&[(&w, &x.a)], g, out_ch, groups)?;
        let b = self.dev.conv_terms(&[(&w, &x.b)], g, out_ch, groups)?;
        self.truncate(&AShare { a, b })
    }

    /// Average pooling (count_include_pad): window sums, then division by the
    /// window size with the truncation protocol.
    pub fn avg_pool2d(&mut self, x: &AShare, g: &Conv2dGeom) -> Result<AShare> {
        let s = x.map(|v| self.dev.window_sum(v, g))?;
        self.divide(&s, (g.kh * g.kw) as u64)
    }

    /// Backward of average pooling: G / (kh kw) by the truncation protocol
    /// (2 rounds, G's size sent; none for a 1x1 window), then every window's
    /// value spread back over its inputs: col2im of the value repeated kh kw
    /// times (local).
    pub fn avg_pool2d_backward(&mut self, gy: &AShare, g: &Conv2dGeom) -> Result<AShare> {
        let kk = g.kh * g.kw;
        let d = if kk == 1 {
            gy.clone()
        } else {
            self.divide(gy, kk as u64)?
        };
        let (oh, ow) = g.out_hw();
        let p = oh * ow;
        let dev = self.dev.clone();
        // cols [(c, k), (n, q)] = d[n, c, q] for every window slot k.
        d.map(|v| {
            let cols = dev.gather(v, &[g.c, kk, g.n, p], 0, &[p, 0, g.c * p, 1])?;
            dev.col2im(&cols, g)
        })
    }
}
