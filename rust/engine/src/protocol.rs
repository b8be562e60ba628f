//! The three-party protocols (DESIGN.md layer 4): replicated sharing over
//! Z_2^64 as in ABY3 (Mohassel & Rindal 2018, section 3 and 5.1). Every
//! function runs on one party, on that party's shares; the runtime runs the
//! three parties in lockstep. No function here knows which device or which
//! transport it runs on.
//!
//! Party i holds the pair (x_i, x_{i+1}) of x = x_0 + x_1 + x_2 and the PRG
//! keys (k_i, k_{i+1}); key k_j is therefore held by parties j and j-1.
//!
//! Costs per element (rounds / ring elements sent by each party), asserted by
//! the tests against this table:
//!
//! | protocol          | rounds | sent per party                          |
//! |-------------------|--------|-----------------------------------------|
//! | share (from src)  | 1      | src: 1 to each of the two others; others 0 |
//! | reveal (to all)   | 1      | 1                                       |
//! | reveal (to one)   | 1      | the target's previous party: 1; others 0 |
//! | mul/matmul/conv   | 2      | 1 (output size), truncation fused in    |
//! | mul by integer    | 0      | 0                                       |
//! | truncate / divide | 2      | 1                                       |
//!
//! A share from an owner cannot cost one element in total: both other
//! parties hold the one component that depends on the secret, so the owner
//! sends it to each of them (DESIGN.md's "1 / 1 (owner)" is per link).

use crate::device::{Conv2dGeom, Device};
use crate::error::Result;
use crate::net::{Comm, Peer};
use crate::prg::Prg;
use crate::ring;

/// One party's replicated share of a tensor: `a` = x_i, `b` = x_{i+1}.
#[derive(Clone, Debug, Default)]
pub struct AShare {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
}

impl AShare {
    pub fn len(&self) -> usize {
        self.a.len()
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
    /// Apply a local (linear, message-free) map to both components.
    pub fn map(&self, f: impl Fn(&[u64]) -> Vec<u64>) -> AShare {
        AShare {
            a: f(&self.a),
            b: f(&self.b),
        }
    }
}

/// A party's context: rank, transport with counters, PRG keys, device.
pub struct Party {
    pub rank: usize,
    pub comm: Comm,
    /// PRG under k_i (shared with the previous party).
    own: Prg,
    /// PRG under k_{i+1} (shared with the next party).
    next: Prg,
    pub dev: Box<dyn Device>,
    pub frac_bits: u32,
}

impl Party {
    /// Key set-up (DESIGN.md "Correlated randomness"): party i sends its key
    /// k_i to party i-1 and receives k_{i+1} from party i+1. One round.
    pub fn setup(
        rank: usize,
        mut comm: Comm,
        key: [u8; 16],
        dev: Box<dyn Device>,
        frac_bits: u32,
    ) -> Result<Party> {
        comm.begin_op("setup");
        let words = vec![
            u64::from_le_bytes(key[..8].try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(key[8..].try_into().unwrap_or([0; 8])),
        ];
        let got = comm.round(vec![(Peer::Prev, words)], &[Peer::Next])?;
        let mut k_next = [0u8; 16];
        if got[0].len() != 2 {
            return Err(crate::EngineError::Peer(
                "malformed key from next party".into(),
            ));
        }
        k_next[..8].copy_from_slice(&got[0][0].to_le_bytes());
        k_next[8..].copy_from_slice(&got[0][1].to_le_bytes());
        Ok(Party {
            rank,
            comm,
            own: Prg::new(key),
            next: Prg::new(k_next),
            dev,
            frac_bits,
        })
    }

    pub(crate) fn prg_own(&mut self) -> &mut Prg {
        &mut self.own
    }

    pub(crate) fn prg_next(&mut self) -> &mut Prg {
        &mut self.next
    }

    /// The reshare of a 3-out-of-3 sharing into a replicated one, no
    /// truncation: send z_i to the previous party. One round, one element.
    pub fn reshare(&mut self, z: Vec<u64>) -> Result<AShare> {
        let n = z.len();
        let mut got = self
            .comm
            .round(vec![(Peer::Prev, z.clone())], &[Peer::Next])?;
        let b = take_checked(&mut got, n)?;
        Ok(AShare { a: z, b })
    }

    /// Elementwise product without truncation (one operand an integer, e.g.
    /// a bit): one round, one element.
    pub fn mul_int(&mut self, x: &AShare, y: &AShare) -> Result<AShare> {
        let z = self.local_product(x, y);
        self.reshare(z)
    }

    pub fn scale(&self) -> u64 {
        1u64 << self.frac_bits
    }

    /// A 3-out-of-3 sharing of zero: F(k_i) - F(k_{i+1}); no messages.
    pub fn zero_share(&mut self, n: usize) -> Vec<u64> {
        let mut z = self.own.gen(n);
        let r = self.next.gen(n);
        ring::sub_into(&mut z, &r);
        z
    }

    /// Share a ring vector owned by party `src` (`plain` is Some only there).
    /// The two components the owner shares with one neighbour each come from
    /// the PRG; the third, x - x_src - x_{src+1}, is sent to both others.
    pub fn share(&mut self, src: usize, plain: Option<&[u64]>, n: usize) -> Result<AShare> {
        let me = self.rank;
        if me == src {
            let x =
                plain.ok_or_else(|| crate::EngineError::Internal("owner without data".into()))?;
            let a = self.own.gen(n);
            let b = self.next.gen(n);
            let mut c = x.to_vec();
            ring::sub_into(&mut c, &a);
            ring::sub_into(&mut c, &b);
            self.comm
                .round(vec![(Peer::Next, c.clone()), (Peer::Prev, c)], &[])?;
            Ok(AShare { a, b })
        } else if me == (src + 1) % 3 {
            let a = self.own.gen(n);
            let mut got = self.comm.round(vec![], &[Peer::Prev])?;
            let b = take_checked(&mut got, n)?;
            Ok(AShare { a, b })
        } else {
            let b = self.next.gen(n);
            let mut got = self.comm.round(vec![], &[Peer::Next])?;
            let a = take_checked(&mut got, n)?;
            Ok(AShare { a, b })
        }
    }

    /// Open to every party: each sends x_i to the next party, which misses it.
    pub fn reveal(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let mut got = self
            .comm
            .round(vec![(Peer::Next, x.a.clone())], &[Peer::Prev])?;
        let c = take_checked(&mut got, x.len())?;
        let mut s = ring::add(&x.a, &x.b);
        ring::add_into(&mut s, &c);
        Ok(s)
    }

    /// Open to party `to` only; the others get None.
    pub fn reveal_to(&mut self, x: &AShare, to: usize) -> Result<Option<Vec<u64>>> {
        let me = self.rank;
        if me == to {
            let mut got = self.comm.round(vec![], &[Peer::Prev])?;
            let c = take_checked(&mut got, x.len())?;
            let mut s = ring::add(&x.a, &x.b);
            ring::add_into(&mut s, &c);
            Ok(Some(s))
        } else if (me + 1) % 3 == to {
            self.comm.round(vec![(Peer::Next, x.a.clone())], &[])?;
            Ok(None)
        } else {
            self.comm.round(vec![], &[])?;
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
    /// Error: each party's floor loses a remainder; with z_0 uniform the two
    /// remainders sum to d on average, so floor(z_0/d) + floor((z_1+z_2)/d)
    /// is v/d - 1 on average. P0 adds one unit to t_0 to cancel that bias:
    /// the result is within (-1, +1] units of 2^-f of v/d and unbiased, which
    /// matters when thousands of truncated values are summed (gradients).
    /// If |v| < 2^k, the 2-out-of-2 sum wraps and the element is garbage with
    /// probability below 2^(k+1-64) per element (as in SecureML / ABY3). With
    /// f = 16 and values below 2^15 in magnitude (k = 47 after a product)
    /// that is below 2^-16 per element; keep values small or lower f.
    pub fn reshare_divide(&mut self, mut z: Vec<u64>, d: u64) -> Result<AShare> {
        let n = z.len();
        match self.rank {
            0 => {
                ring::div_floor(&mut z, d);
                z.iter_mut().for_each(|v| *v = v.wrapping_add(1));
                self.comm.round(vec![(Peer::Prev, z.clone())], &[])?;
                let mut got = self.comm.round(vec![], &[Peer::Next])?;
                let t1 = take_checked(&mut got, n)?;
                Ok(AShare { a: z, b: t1 })
            }
            1 => {
                let mut got = self.comm.round(vec![], &[Peer::Next])?;
                let z2 = take_checked(&mut got, n)?;
                ring::add_into(&mut z, &z2);
                ring::div_floor(&mut z, d);
                let r = self.next.gen(n);
                ring::sub_into(&mut z, &r);
                self.comm.round(vec![(Peer::Prev, z.clone())], &[])?;
                Ok(AShare { a: z, b: r })
            }
            _ => {
                let mut got = self.comm.round(vec![(Peer::Prev, z)], &[Peer::Next])?;
                let t0 = take_checked(&mut got, n)?;
                let r = self.own.gen(n);
                self.comm.round(vec![], &[])?;
                Ok(AShare { a: r, b: t0 })
            }
        }
    }

    /// Divide a replicated sharing by a positive public integer (truncation
    /// by f bits when d = 2^f). Party i's first component already forms a
    /// 3-out-of-3 sharing whose messages below reveal nothing new (each
    /// receiver already holds the component it is sent), so no mask is added.
    pub fn divide(&mut self, x: &AShare, d: u64) -> Result<AShare> {
        self.reshare_divide(x.a.clone(), d)
    }

    pub fn truncate(&mut self, x: &AShare) -> Result<AShare> {
        let d = self.scale();
        self.divide(x, d)
    }

    /// Local step of a product: x_i y_i + x_i y_{i+1} + x_{i+1} y_i plus a
    /// zero share, a 3-out-of-3 sharing of x y.
    fn local_product(&mut self, x: &AShare, y: &AShare) -> Vec<u64> {
        let mut z = self.zero_share(x.len());
        for (j, zj) in z.iter_mut().enumerate() {
            let t = x.a[j]
                .wrapping_mul(y.a[j].wrapping_add(y.b[j]))
                .wrapping_add(x.b[j].wrapping_mul(y.a[j]));
            *zj = zj.wrapping_add(t);
        }
        z
    }

    /// Elementwise product of two fixed-point sharings, truncated.
    pub fn mul(&mut self, x: &AShare, y: &AShare) -> Result<AShare> {
        let z = self.local_product(x, y);
        let d = self.scale();
        self.reshare_divide(z, d)
    }

    /// Batched matrix product [batch, m, k] x [batch, k, n] of sharings,
    /// truncated: two ring GEMMs per party, x_i (y_i + y_{i+1}) + x_{i+1} y_i.
    pub fn matmul(
        &mut self,
        x: &AShare,
        y: &AShare,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<AShare> {
        let mut z = self.zero_share(batch * m * n);
        let ysum = ring::add(&y.a, &y.b);
        for bi in 0..batch {
            let xa = &x.a[bi * m * k..(bi + 1) * m * k];
            let xb = &x.b[bi * m * k..(bi + 1) * m * k];
            let ya = &y.a[bi * k * n..(bi + 1) * k * n];
            let ys = &ysum[bi * k * n..(bi + 1) * k * n];
            let zc = &mut z[bi * m * n..(bi + 1) * m * n];
            self.dev.gemm(m, k, n, xa, ys, zc, true);
            self.dev.gemm(m, k, n, xb, ya, zc, true);
        }
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
        let dev = &self.dev;
        let prod = |s: &[u64]| {
            let mut out = vec![0u64; batch * m * n];
            for bi in 0..batch {
                let (l, r) = if public_left {
                    (
                        &p[bi * m * k..(bi + 1) * m * k],
                        &s[bi * k * n..(bi + 1) * k * n],
                    )
                } else {
                    (
                        &s[bi * m * k..(bi + 1) * m * k],
                        &p[bi * k * n..(bi + 1) * k * n],
                    )
                };
                dev.gemm(m, k, n, l, r, &mut out[bi * m * n..(bi + 1) * m * n], false);
            }
            out
        };
        let y = x.map(prod);
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
        let wsum = ring::add(&w.a, &w.b);
        let mut z = self.conv_sum(&[(&wsum, &x.a), (&w.a, &x.b)], g, out_ch, groups);
        let zs = self.zero_share(z.len());
        ring::add_into(&mut z, &zs);
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
        let a = self.conv_sum(&[(w, &x.a)], g, out_ch, groups);
        let b = self.conv_sum(&[(w, &x.b)], g, out_ch, groups);
        self.truncate(&AShare { a, b })
    }

    /// sum_t conv(input_t, weight_t) over the ring, per group: im2col of each
    /// input, one GEMM per term into the same output. Output NCHW.
    fn conv_sum(
        &self,
        terms: &[(&[u64], &[u64])],
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let l = g.n * oh * ow;
        let cg = g.c / groups;
        let og = out_ch / groups;
        let kk = cg * g.kh * g.kw;
        // GEMM output is [O, N*OH*OW]; permuted to NCHW at the end.
        let mut y = vec![0u64; out_ch * l];
        for gi in 0..groups {
            let yc = &mut y[gi * og * l..(gi + 1) * og * l];
            for (w, x) in terms {
                let cols = self.dev.im2col(x, g, gi * cg, cg);
                self.dev.gemm(
                    og,
                    kk,
                    l,
                    &w[gi * og * kk..(gi + 1) * og * kk],
                    &cols,
                    yc,
                    true,
                );
            }
        }
        // [O, N, OH*OW] -> [N, O, OH*OW]
        self.dev
            .gather(&y, &[g.n, out_ch, oh * ow], 0, &[oh * ow, l, 1])
    }

    /// Average pooling (count_include_pad): window sums, then division by the
    /// window size with the truncation protocol.
    pub fn avg_pool2d(&mut self, x: &AShare, g: &Conv2dGeom) -> Result<AShare> {
        let s = x.map(|v| self.dev.window_sum(v, g));
        self.divide(&s, (g.kh * g.kw) as u64)
    }
}

/// The last received message, which must hold exactly n words.
pub(crate) fn take_checked(got: &mut Vec<Vec<u64>>, n: usize) -> Result<Vec<u64>> {
    let v = got.pop().unwrap_or_default();
    if v.len() != n {
        return Err(crate::EngineError::Peer(format!(
            "message of {} elements where {n} were expected",
            v.len()
        )));
    }
    Ok(v)
}

/// Local (message-free) operations on one party's share.
pub mod local {
    use super::AShare;
    use crate::ring;

    pub fn add(x: &AShare, y: &AShare) -> AShare {
        AShare {
            a: ring::add(&x.a, &y.a),
            b: ring::add(&x.b, &y.b),
        }
    }
    pub fn sub(x: &AShare, y: &AShare) -> AShare {
        AShare {
            a: ring::sub(&x.a, &y.a),
            b: ring::sub(&x.b, &y.b),
        }
    }
    pub fn neg(x: &AShare) -> AShare {
        AShare {
            a: ring::neg(&x.a),
            b: ring::neg(&x.b),
        }
    }
    /// Add a public ring vector: it becomes part of component x_0, which
    /// party 0 holds first and party 2 holds second.
    pub fn add_public(rank: usize, x: &AShare, p: &[u64]) -> AShare {
        match rank {
            0 => AShare {
                a: ring::add(&x.a, p),
                b: x.b.clone(),
            },
            2 => AShare {
                a: x.a.clone(),
                b: ring::add(&x.b, p),
            },
            _ => x.clone(),
        }
    }

    /// Party `rank`'s share of public ring values: they form component x_0
    /// (the placement `add_public` relies on too).
    pub fn public(rank: usize, e: &[u64]) -> AShare {
        let z = vec![0u64; e.len()];
        match rank {
            0 => AShare {
                a: e.to_vec(),
                b: z,
            },
            1 => AShare { a: z.clone(), b: z },
            _ => AShare {
                a: z,
                b: e.to_vec(),
            },
        }
    }

    /// Multiply by public ring integers (no truncation).
    pub fn mul_public(x: &AShare, p: &[u64]) -> AShare {
        AShare {
            a: ring::mul(&x.a, p),
            b: ring::mul(&x.b, p),
        }
    }
}
