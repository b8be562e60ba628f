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

use crate::device::{Buf, Conv2dGeom, Device, Op1, Op2};
use crate::error::Result;
use crate::net::{Comm, Peer};
use crate::prg::Prg;
use std::sync::Arc;

/// One party's replicated share of a tensor: `a` = x_i, `b` = x_{i+1}, both
/// buffers of the party's device.
#[derive(Clone, Debug, Default)]
pub struct AShare {
    pub a: Buf,
    pub b: Buf,
}

impl AShare {
    pub fn len(&self) -> usize {
        self.a.len()
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
    /// Apply a local (linear, message-free) map to both components.
    pub fn map(&self, f: impl Fn(&Buf) -> Buf) -> AShare {
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
    pub dev: Arc<dyn Device>,
    pub frac_bits: u32,
}

impl Party {
    /// Key set-up (DESIGN.md "Correlated randomness"): party i sends its key
    /// k_i to party i-1 and receives k_{i+1} from party i+1. One round.
    pub fn setup(
        rank: usize,
        mut comm: Comm,
        key: [u8; 16],
        dev: Arc<dyn Device>,
        frac_bits: u32,
    ) -> Result<Party> {
        comm.begin_op("setup");
        let words = vec![
            u64::from_le_bytes(key[..8].try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(key[8..].try_into().unwrap_or([0; 8])),
        ];
        let got = comm.round(vec![(Peer::Prev, Buf::Host(words))], &[Peer::Next])?;
        let got: Vec<u64> = got
            .into_iter()
            .next()
            .map(Buf::into_vec)
            .unwrap_or_default();
        let mut k_next = [0u8; 16];
        if got.len() != 2 {
            return Err(crate::EngineError::Peer(
                "malformed key from next party".into(),
            ));
        }
        k_next[..8].copy_from_slice(&got[0].to_le_bytes());
        k_next[8..].copy_from_slice(&got[1].to_le_bytes());
        Ok(Party {
            rank,
            comm,
            own: Prg::new(key),
            next: Prg::new(k_next),
            dev,
            frac_bits,
        })
    }

    /// One communication round on device buffers: what is received is
    /// adopted by this party's device, and each message must hold exactly
    /// the given number of elements.
    pub(crate) fn round(
        &mut self,
        sends: Vec<(Peer, Buf)>,
        recvs: &[(Peer, usize)],
    ) -> Result<Vec<Buf>> {
        let peers: Vec<Peer> = recvs.iter().map(|r| r.0).collect();
        let got = self.comm.round(sends, &peers)?;
        got.into_iter()
            .zip(recvs)
            .map(|(b, &(_, n))| {
                if b.len() != n {
                    return Err(crate::EngineError::Peer(format!(
                        "message of {} elements where {n} were expected",
                        b.len()
                    )));
                }
                Ok(self.dev.adopt(b))
            })
            .collect()
    }

    /// A round that receives one message of n elements.
    pub(crate) fn round1(&mut self, sends: Vec<(Peer, Buf)>, from: Peer, n: usize) -> Result<Buf> {
        let mut v = self.round(sends, &[(from, n)])?;
        v.pop()
            .ok_or_else(|| crate::EngineError::Internal("no message".into()))
    }

    /// Fresh words from the PRG under k_i / k_{i+1}, on the device.
    pub(crate) fn rand_own(&mut self, n: usize) -> Buf {
        self.dev.prg(&mut self.own, n)
    }

    pub(crate) fn rand_next(&mut self, n: usize) -> Buf {
        self.dev.prg(&mut self.next, n)
    }

    /// The reshare of a 3-out-of-3 sharing into a replicated one, no
    /// truncation: send z_i to the previous party. One round, one element.
    pub fn reshare(&mut self, z: Buf) -> Result<AShare> {
        let n = z.len();
        let b = self.round1(vec![(Peer::Prev, z.clone())], Peer::Next, n)?;
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
    pub fn zero_share(&mut self, n: usize) -> Buf {
        let mut z = self.rand_own(n);
        let r = self.rand_next(n);
        self.dev.map2_into(Op2::Sub, &mut z, &r);
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
            let a = self.rand_own(n);
            let b = self.rand_next(n);
            let mut c = self.dev.upload(x.to_vec());
            self.dev.map2_into(Op2::Sub, &mut c, &a);
            self.dev.map2_into(Op2::Sub, &mut c, &b);
            self.round(vec![(Peer::Next, c.clone()), (Peer::Prev, c)], &[])?;
            Ok(AShare { a, b })
        } else if me == (src + 1) % 3 {
            let a = self.rand_own(n);
            let b = self.round1(vec![], Peer::Prev, n)?;
            Ok(AShare { a, b })
        } else {
            let b = self.rand_next(n);
            let a = self.round1(vec![], Peer::Next, n)?;
            Ok(AShare { a, b })
        }
    }

    /// x_i + x_{i+1} + c on the device, to the host.
    fn open_with(&self, x: &AShare, c: &Buf) -> Vec<u64> {
        let mut s = self.dev.map2(Op2::Add, &x.a, &x.b);
        self.dev.map2_into(Op2::Add, &mut s, c);
        s.into_vec()
    }

    /// Open to every party: each sends x_i to the next party, which misses it.
    pub fn reveal(&mut self, x: &AShare) -> Result<Vec<u64>> {
        let c = self.round1(vec![(Peer::Next, x.a.clone())], Peer::Prev, x.len())?;
        Ok(self.open_with(x, &c))
    }

    /// Open to party `to` only; the others get None.
    pub fn reveal_to(&mut self, x: &AShare, to: usize) -> Result<Option<Vec<u64>>> {
        let me = self.rank;
        if me == to {
            let c = self.round1(vec![], Peer::Prev, x.len())?;
            Ok(Some(self.open_with(x, &c)))
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
    /// Error: each party's floor loses a remainder; with z_0 uniform the two
    /// remainders sum to d on average, so floor(z_0/d) + floor((z_1+z_2)/d)
    /// is v/d - 1 on average. P0 adds one unit to t_0 to cancel that bias:
    /// the result is within (-1, +1] units of 2^-f of v/d and unbiased, which
    /// matters when thousands of truncated values are summed (gradients).
    /// If |v| < 2^k, the 2-out-of-2 sum wraps and the element is garbage with
    /// probability below 2^(k+1-64) per element (as in SecureML / ABY3). With
    /// f = 16 and values below 2^15 in magnitude (k = 47 after a product)
    /// that is below 2^-16 per element; keep values small or lower f.
    pub fn reshare_divide(&mut self, z: Buf, d: u64) -> Result<AShare> {
        let n = z.len();
        let dev = self.dev.clone();
        match self.rank {
            0 => {
                let mut t0 = z;
                dev.map1_into(Op1::DivFloor(d), &mut t0);
                dev.map1_into(Op1::AddScalar(1), &mut t0);
                self.round(vec![(Peer::Prev, t0.clone())], &[])?;
                let t1 = self.round1(vec![], Peer::Next, n)?;
                Ok(AShare { a: t0, b: t1 })
            }
            1 => {
                let z2 = self.round1(vec![], Peer::Next, n)?;
                let mut s = z;
                dev.map2_into(Op2::Add, &mut s, &z2);
                dev.map1_into(Op1::DivFloor(d), &mut s);
                let r = self.rand_next(n);
                dev.map2_into(Op2::Sub, &mut s, &r);
                self.round(vec![(Peer::Prev, s.clone())], &[])?;
                Ok(AShare { a: s, b: r })
            }
            _ => {
                let t0 = self.round1(vec![(Peer::Prev, z)], Peer::Next, n)?;
                let r = self.rand_own(n);
                self.round(vec![], &[])?;
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
    fn local_product(&mut self, x: &AShare, y: &AShare) -> Buf {
        let z = self.zero_share(x.len());
        self.dev.mul_local(&x.a, &x.b, &y.a, &y.b, z)
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
        let dev = self.dev.clone();
        let ysum = dev.map2(Op2::Add, &y.a, &y.b);
        for bi in 0..batch {
            let (xo, yo, zo) = (bi * m * k, bi * k * n, bi * m * n);
            dev.gemm(m, k, n, (&x.a, xo), (&ysum, yo), (&mut z, zo), true);
            dev.gemm(m, k, n, (&x.b, xo), (&y.a, yo), (&mut z, zo), true);
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
        let dev = self.dev.clone();
        let p = dev.upload(p.to_vec());
        let prod = |s: &Buf| {
            let mut out = dev.zeros(batch * m * n);
            for bi in 0..batch {
                let (xo, yo, zo) = (bi * m * k, bi * k * n, bi * m * n);
                let (l, r) = if public_left {
                    ((&p, xo), (s, yo))
                } else {
                    ((s, xo), (&p, yo))
                };
                dev.gemm(m, k, n, l, r, (&mut out, zo), false);
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
        let wsum = self.dev.map2(Op2::Add, &w.a, &w.b);
        let mut z = self.conv_sum(&[(&wsum, &x.a), (&w.a, &x.b)], g, out_ch, groups);
        let zs = self.zero_share(z.len());
        self.dev.map2_into(Op2::Add, &mut z, &zs);
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
        let w = self.dev.upload(w.to_vec());
        let a = self.conv_sum(&[(&w, &x.a)], g, out_ch, groups);
        let b = self.conv_sum(&[(&w, &x.b)], g, out_ch, groups);
        self.truncate(&AShare { a, b })
    }

    /// sum_t conv(input_t, weight_t) over the ring, per group: im2col of each
    /// input, one GEMM per term into the same output. Output NCHW.
    fn conv_sum(
        &self,
        terms: &[(&Buf, &Buf)],
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Buf {
        let (oh, ow) = g.out_hw();
        let l = g.n * oh * ow;
        let cg = g.c / groups;
        let og = out_ch / groups;
        let kk = cg * g.kh * g.kw;
        // GEMM output is [O, N*OH*OW]; permuted to NCHW at the end.
        let mut y = self.dev.zeros(out_ch * l);
        for gi in 0..groups {
            for (w, x) in terms {
                let cols = self.dev.im2col(x, g, gi * cg, cg);
                self.dev.gemm(
                    og,
                    kk,
                    l,
                    (w, gi * og * kk),
                    (&cols, 0),
                    (&mut y, gi * og * l),
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

/// Local (message-free) operations on one party's share, on its device.
pub mod local {
    use super::AShare;
    use crate::device::{Buf, Device, Op1, Op2};

    pub fn add(dev: &dyn Device, x: &AShare, y: &AShare) -> AShare {
        AShare {
            a: dev.map2(Op2::Add, &x.a, &y.a),
            b: dev.map2(Op2::Add, &x.b, &y.b),
        }
    }
    pub fn sub(dev: &dyn Device, x: &AShare, y: &AShare) -> AShare {
        AShare {
            a: dev.map2(Op2::Sub, &x.a, &y.a),
            b: dev.map2(Op2::Sub, &x.b, &y.b),
        }
    }
    pub fn neg(dev: &dyn Device, x: &AShare) -> AShare {
        x.map(|v| dev.map1(Op1::Neg, v))
    }
    /// Add a public ring vector: it becomes part of component x_0, which
    /// party 0 holds first and party 2 holds second.
    pub fn add_public(dev: &dyn Device, rank: usize, x: &AShare, p: &Buf) -> AShare {
        match rank {
            0 => AShare {
                a: dev.map2(Op2::Add, &x.a, p),
                b: x.b.clone(),
            },
            2 => AShare {
                a: x.a.clone(),
                b: dev.map2(Op2::Add, &x.b, p),
            },
            _ => x.clone(),
        }
    }

    /// Party `rank`'s share of public ring values: they form component x_0
    /// (the placement `add_public` relies on too).
    pub fn public(dev: &dyn Device, rank: usize, e: &[u64]) -> AShare {
        let n = e.len();
        match rank {
            0 => AShare {
                a: dev.upload(e.to_vec()),
                b: dev.zeros(n),
            },
            1 => AShare {
                a: dev.zeros(n),
                b: dev.zeros(n),
            },
            _ => AShare {
                a: dev.zeros(n),
                b: dev.upload(e.to_vec()),
            },
        }
    }

    /// Multiply by public ring integers (no truncation).
    pub fn mul_public(dev: &dyn Device, x: &AShare, p: &Buf) -> AShare {
        AShare {
            a: dev.map2(Op2::Mul, &x.a, p),
            b: dev.map2(Op2::Mul, &x.b, p),
        }
    }
}
