//! Non-linear protocols composed of the sign bit (`msb`) and bit injection
//! (protocol/binary.rs): ReLU with the derivative mask that training keeps,
//! and the max/argmax tournament (CryptGPU section IV-B; the pairwise
//! comparisons of a level batched into one sign-bit circuit).
//!
//! Costs per party: a ReLU is one msb and one injection of 1 value per
//! element (2 with the mask), 10 rounds; a tournament over k values is
//! ceil(log2 k) levels of 10 rounds each, injecting 1 value per pair (1 + k
//! with a one-hot argmax, 1 + 2^(L+1) at level L when k is a power of two,
//! or when k > 64, padded to one).

use super::{local, AShare, Party};
use crate::error::Result;

/// A strided view of a share: (shape, offset, strides) per component.
type View<'a> = (&'a [usize], usize, &'a [usize]);

/// Rows longer than this take the argmax tournament padded to a power of
/// two (k log k one-hot values) instead of identity one-hots (k^2).
const WIDE_ARGMAX: usize = 64;

/// The padding of a wide argmax tournament, as a ring value: -2^61, below
/// every value an encoded input holds from f = 2 fractional bits on (|x| <
/// 2^(63 - f) in the ring: 2^47 at f = 16), every difference with one still
/// inside the comparison's range. At f = 1 the padded path is not taken.
const TOURNAMENT_PAD: u64 = (-(1i64 << 61)) as u64;

impl Party {
    /// Both components of `s` through one strided gather.
    fn view(&self, s: &AShare, (shape, off, st): View<'_>) -> Result<AShare> {
        s.map(|v| self.dev.gather(v, shape, off, st))
    }

    /// A new share of `n` elements holding each part at its view (the parts'
    /// views together cover every element once).
    fn place(&self, n: usize, parts: &[(&AShare, View<'_>)]) -> Result<AShare> {
        let mut out = AShare {
            a: self.dev.zeros(n)?,
            b: self.dev.zeros(n)?,
        };
        for (s, (shape, off, st)) in parts {
            self.dev.scatter(&s.a, &mut out.a, shape, *off, st)?;
            self.dev.scatter(&s.b, &mut out.b, shape, *off, st)?;
        }
        Ok(out)
    }

    /// A sharing of the public fixed-point value `v` repeated n times.
    fn public_fill(&self, n: usize, v: u64) -> Result<AShare> {
        local::public(&*self.dev, self.rank, &vec![v; n])
    }

    /// 1 - s for a sharing of fixed-point 0/1 values (no messages).
    fn one_minus(&self, s: &AShare) -> Result<AShare> {
        let one = self.public_fill(s.len(), self.scale())?;
        local::sub(&*self.dev, &one, s)
    }

    /// One tournament level's comparisons: the first of each pair of the
    /// `cur` candidates per row (a), the differences d = a - b, and msb(d).
    fn pair_up(&mut self, x: &AShare, rows: usize, cur: usize) -> Result<(AShare, AShare, AShare)> {
        let h = cur / 2;
        let a = self.view(x, (&[rows, h], 0, &[cur, 2]))?;
        let b = self.view(x, (&[rows, h], 1, &[cur, 2]))?;
        let d = local::sub(&*self.dev, &a, &b)?;
        let c = self.msb(&d)?;
        Ok((a, d, c))
    }

    /// max(x, 0) = x - c x with c = [x <= 0]. With `mask`, the derivative
    /// [x > 0] = 1 - c is injected in the same call ([x, 1] per element:
    /// same rounds, one more ring element per element) and returned for the
    /// backward pass.
    pub fn relu(&mut self, x: &AShare, mask: bool) -> Result<(AShare, Option<AShare>)> {
        let n = x.len();
        // c = msb(x - 1 unit): the same output as msb(x) (both give 0 at
        // x = 0) and torch's derivative at 0, which is 0 (msb(x) gave 1).
        let c = self.msb_plus(x, u64::MAX)?;
        if !mask {
            let m = self.bit_inject(&c, x, n, 1)?;
            return Ok((local::sub(&*self.dev, x, &m)?, None));
        }
        let one = self.public_fill(n, self.scale())?;
        let v = self.place(2 * n, &[(x, (&[n], 0, &[2])), (&one, (&[n], 1, &[2]))])?;
        let m = self.bit_inject(&c, &v, n, 2)?;
        let m0 = self.view(&m, (&[n], 0, &[2]))?;
        let m1 = self.view(&m, (&[n], 1, &[2]))?;
        let out = local::sub(&*self.dev, x, &m0)?;
        Ok((out, Some(local::sub(&*self.dev, &one, &m1)?)))
    }

    /// Maximum over the last axis of a [rows, k] sharing by a tournament of
    /// pairwise comparisons; ties go to the first index, as in torch. With
    /// `want_arg` also the one-hot argmax ([rows, k], fixed-point 0/1).
    pub fn tournament(
        &mut self,
        x: &AShare,
        rows: usize,
        k: usize,
        want_arg: bool,
    ) -> Result<(AShare, Option<AShare>)> {
        if want_arg && k >= 2 && k.is_power_of_two() {
            let (v, oh) = self.tournament_pow2(x, rows, k)?;
            return Ok((v, Some(oh)));
        }
        if want_arg && k > WIDE_ARGMAX && self.scale() >= 4 {
            // The identity one-hots below cost k^2 values per row (19 GB for
            // one row of 20,000: the session ran out of memory mid-protocol).
            // Padded with public values below any encodable one to the next
            // power of two, the block one-hots cost k log k (and at most
            // twice the comparisons); the pads never win and are cut off.
            let k2 = k.next_power_of_two();
            let pad = self.public_fill(rows * (k2 - k), TOURNAMENT_PAD)?;
            let xp = self.place(
                rows * k2,
                &[
                    (x, (&[rows, k], 0, &[k2, 1])),
                    (&pad, (&[rows, k2 - k], k, &[k2, 1])),
                ],
            )?;
            let (v, oh) = self.tournament_pow2(&xp, rows, k2)?;
            let oh = self.view(&oh, (&[rows, k], 0, &[k2, 1]))?;
            return Ok((v, Some(oh)));
        }
        let kk = k;
        // oh: [rows, cur, kk], the one-hot of each candidate's index.
        let mut oh = if want_arg {
            let mut eye = vec![0u64; rows * kk * kk];
            for r in 0..rows {
                for i in 0..kk {
                    eye[(r * kk + i) * kk + i] = self.scale();
                }
            }
            Some(local::public(&*self.dev, self.rank, &eye)?)
        } else {
            None
        };
        let (mut x, mut cur) = (x.clone(), k);
        while cur > 1 {
            let h = cur / 2;
            let (a, d, c) = self.pair_up(&x, rows, cur)?;
            let (mut win, mut ohw) = match &oh {
                Some(o) => {
                    let sel = |j0: usize| (vec![rows, h, kk], j0 * kk, vec![cur * kk, 2 * kk, 1]);
                    let (sa, sb) = (sel(0), sel(1));
                    let oa = self.view(o, (&sa.0, sa.1, &sa.2))?;
                    let ob = self.view(o, (&sb.0, sb.1, &sb.2))?;
                    let od = local::sub(&*self.dev, &oa, &ob)?;
                    let w = 1 + kk;
                    let v = self.place(
                        rows * h * w,
                        &[
                            (&d, (&[rows * h], 0, &[w])),
                            (&od, (&[rows * h, kk], 1, &[w, 1])),
                        ],
                    )?;
                    let m = self.bit_inject(&c, &v, rows * h, w)?;
                    let m0 = self.view(&m, (&[rows * h], 0, &[w]))?;
                    let mo = self.view(&m, (&[rows * h, kk], 1, &[w, 1]))?;
                    (
                        local::sub(&*self.dev, &a, &m0)?,
                        Some(local::sub(&*self.dev, &oa, &mo)?),
                    )
                }
                None => {
                    let m = self.bit_inject(&c, &d, rows * h, 1)?;
                    (local::sub(&*self.dev, &a, &m)?, None)
                }
            };
            if cur % 2 == 1 {
                // The odd candidate out moves up unchanged.
                let n1 = h + 1;
                let last = self.view(&x, (&[rows], cur - 1, &[cur]))?;
                win = self.place(
                    rows * n1,
                    &[
                        (&win, (&[rows, h], 0, &[n1, 1])),
                        (&last, (&[rows], h, &[n1])),
                    ],
                )?;
                if let (Some(w), Some(o)) = (&ohw, &oh) {
                    let lo = self.view(o, (&[rows, kk], (cur - 1) * kk, &[cur * kk, 1]))?;
                    ohw = Some(self.place(
                        rows * n1 * kk,
                        &[
                            (w, (&[rows, h * kk], 0, &[n1 * kk, 1])),
                            (&lo, (&[rows, kk], h * kk, &[n1 * kk, 1])),
                        ],
                    )?);
                }
            }
            x = win;
            oh = ohw;
            cur -= h;
        }
        Ok((x, oh))
    }

    /// The tournament with argmax for k = 2^n (max-pool windows 2x2, 4x4):
    /// each candidate carries a one-hot over only the slots it covers, so a
    /// level injects 1 + 2 * 2^L values per pair instead of 1 + k.
    fn tournament_pow2(&mut self, x: &AShare, rows: usize, k: usize) -> Result<(AShare, AShare)> {
        let (mut x, mut cur, mut size) = (x.clone(), k, 1usize);
        // oh: [rows, cur, size], the one-hot of each candidate within its block.
        let mut oh: Option<AShare> = None;
        while cur > 1 {
            let h = cur / 2;
            let (a, d, c) = self.pair_up(&x, rows, cur)?;
            let n = rows * h;
            let (m, w) = match &oh {
                None => {
                    let one = self.public_fill(n, self.scale())?;
                    let v = self.place(2 * n, &[(&d, (&[n], 0, &[2])), (&one, (&[n], 1, &[2]))])?;
                    (self.bit_inject(&c, &v, n, 2)?, 2)
                }
                Some(o) => {
                    let w = 1 + 2 * size;
                    let oa = self.view(o, (&[n, size], 0, &[2 * size, 1]))?;
                    let ob = self.view(o, (&[n, size], size, &[2 * size, 1]))?;
                    let v = self.place(
                        n * w,
                        &[
                            (&d, (&[n], 0, &[w])),
                            (&oa, (&[n, size], 1, &[w, 1])),
                            (&ob, (&[n, size], 1 + size, &[w, 1])),
                        ],
                    )?;
                    (self.bit_inject(&c, &v, n, w)?, w)
                }
            };
            let m0 = self.view(&m, (&[n], 0, &[w]))?;
            oh = Some(match &oh {
                None => {
                    // [1 - msb, msb]: slot 0 (a) wins unless a < b.
                    let msb = self.view(&m, (&[n], 1, &[2]))?;
                    let first = self.one_minus(&msb)?;
                    self.place(2 * n, &[(&first, (&[n], 0, &[2])), (&msb, (&[n], 1, &[2]))])?
                }
                Some(o) => {
                    let oa = self.view(o, (&[n, size], 0, &[2 * size, 1]))?;
                    let ma = self.view(&m, (&[n, size], 1, &[w, 1]))?;
                    let mb = self.view(&m, (&[n, size], 1 + size, &[w, 1]))?;
                    let left = local::sub(&*self.dev, &oa, &ma)?;
                    self.place(
                        n * 2 * size,
                        &[
                            (&left, (&[n, size], 0, &[2 * size, 1])),
                            (&mb, (&[n, size], size, &[2 * size, 1])),
                        ],
                    )?
                }
            });
            x = local::sub(&*self.dev, &a, &m0)?;
            cur = h;
            size *= 2;
        }
        let oh = match oh {
            Some(o) => o,
            None => self.public_fill(rows, self.scale())?,
        };
        Ok((x, oh))
    }

    /// The sum of one random integer below `bound` from each party, as a
    /// sharing: the joint coin (each party shares its own draw, so no party
    /// chooses the result). Three sharing rounds, one element each.
    pub fn coin_share(&mut self, mine: u64) -> Result<AShare> {
        let mut total: Option<AShare> = None;
        for src in 0..3 {
            let plain = [mine];
            let s = self.share(src, (self.rank == src).then_some(&plain[..]), 1)?;
            total = Some(match total {
                None => s,
                Some(t) => local::add(&*self.dev, &t, &s)?,
            });
        }
        let dev = self.dev.clone();
        total.map_or_else(
            || {
                Ok(AShare {
                    a: dev.zeros(1)?,
                    b: dev.zeros(1)?,
                })
            },
            Ok,
        )
    }
}
