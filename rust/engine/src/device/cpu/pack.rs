//! Packing the ring GEMM's operands into the microkernel's panel layouts:
//! B into NR-wide panels per KC-deep block, A into MR-row panels (with the
//! 32-bit-swapped copies the AVX2 kernel broadcasts).

use super::gemm::{at, Block, Term};

/// Pack one block of B into NR-wide panels: for each panel, kc rows of NR
/// words (zero past column n). Every word is written, so the buffer needs
/// no clearing.
pub(super) fn pack_b<const NR: usize>(t: &Term, k: usize, n: usize, blk: &Block, dst: &mut [u64]) {
    if !t.b_trans {
        return pack_b_rows::<NR>(t, n, blk, dst);
    }
    let npanels = n.div_ceil(NR);
    for p in 0..npanels {
        let j0 = p * NR;
        let w = (n - j0).min(NR);
        let d = &mut dst[p * blk.kc * NR..(p + 1) * blk.kc * NR];
        // B stored n x k: panel column jj is row j0 + jj, read along k.
        for jj in 0..NR {
            if jj < w {
                let base = (j0 + jj) * k + blk.k0;
                let col = d.iter_mut().skip(jj).step_by(NR);
                // The source count decided once per column, not per word.
                match t.b {
                    [b0] => {
                        for (o, v) in col.zip(&b0[base..base + blk.kc]) {
                            *o = *v;
                        }
                    }
                    [b0, b1] => {
                        let (s0, s1) = (&b0[base..base + blk.kc], &b1[base..base + blk.kc]);
                        for ((o, x), y) in col.zip(s0).zip(s1) {
                            *o = x.wrapping_add(*y);
                        }
                    }
                    _ => {
                        for (kk, o) in col.take(blk.kc).enumerate() {
                            *o = at(t.b, base + kk);
                        }
                    }
                }
            } else {
                for kk in 0..blk.kc {
                    d[kk * NR + jj] = 0;
                }
            }
        }
    }
}

/// Panels packed side by side from row-major B: each of B's rows is read
/// along GROUP panels' width at a time. Packing one panel at a time read
/// B down a column of 8-word pieces at a stride of n words (often a power
/// of two, so every piece fell in one L1 set): 18% of a 64-channel 3x3
/// convolution's time went to that copy.
const GROUP: usize = 8;

fn pack_b_rows<const NR: usize>(t: &Term, n: usize, blk: &Block, dst: &mut [u64]) {
    let npanels = n.div_ceil(NR);
    for pg in (0..npanels).step_by(GROUP) {
        let pe = (pg + GROUP).min(npanels);
        for kk in 0..blk.kc {
            let rowbase = (blk.k0 + kk) * n;
            for p in pg..pe {
                let j0 = p * NR;
                let w = (n - j0).min(NR);
                let base = rowbase + j0;
                let at0 = p * blk.kc * NR + kk * NR;
                let row = &mut dst[at0..at0 + NR];
                match t.b {
                    [b0] if w == NR => row.copy_from_slice(&b0[base..base + NR]),
                    [b0, b1] if w == NR => {
                        let (s0, s1) = (&b0[base..base + NR], &b1[base..base + NR]);
                        for ((r, x), y) in row.iter_mut().zip(s0).zip(s1) {
                            *r = x.wrapping_add(*y);
                        }
                    }
                    _ => {
                        for (jj, r) in row.iter_mut().enumerate() {
                            *r = if jj < w { at(t.b, base + jj) } else { 0 };
                        }
                    }
                }
            }
        }
    }
}

/// Pack rows [i0, i0+mc) x cols [k0, k0+kc) of A into MR-row panels: for each
/// k, the MR values of the panel, then (when AW = 2 MR) the same values with
/// their 32-bit halves swapped, which the AVX2 kernel broadcasts straight
/// from memory.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_a<const MR: usize, const AW: usize>(
    a: &[&[u64]],
    k: usize,
    i0: usize,
    mc: usize,
    k0: usize,
    kc: usize,
    out: &mut [u64],
) {
    for p in 0..mc.div_ceil(MR) {
        let r0 = i0 + p * MR;
        let h = (mc - p * MR).min(MR);
        let dst = &mut out[p * kc * AW..(p + 1) * kc * AW];
        // The panel's rows as slices of length kc, one per source (the
        // source count is decided here, once, not per word); rows past the
        // end of A are zero.
        fn row(src: &[u64], r: usize, h: usize, at: usize, kc: usize) -> &[u64] {
            if r < h {
                &src[at..at + kc]
            } else {
                &[]
            }
        }
        let row = |src, r| row(src, r, h, (r0 + r) * k + k0, kc);
        let mut put = |r: usize, kk: usize, v: u64| {
            dst[kk * AW + r] = v;
            if AW == 2 * MR {
                dst[kk * AW + MR + r] = v.rotate_left(32);
            }
        };
        match a {
            [a0] => {
                for r in 0..MR {
                    let x = row(a0, r);
                    for kk in 0..kc {
                        put(r, kk, x.get(kk).copied().unwrap_or(0));
                    }
                }
            }
            [a0, a1] => {
                for r in 0..MR {
                    let (x, y) = (row(a0, r), row(a1, r));
                    for kk in 0..kc {
                        let v = match (x.get(kk), y.get(kk)) {
                            (Some(u), Some(w)) => u.wrapping_add(*w),
                            _ => 0,
                        };
                        put(r, kk, v);
                    }
                }
            }
            _ => {
                for kk in 0..kc {
                    for r in 0..MR {
                        let v = if r < h {
                            at(a, (r0 + r) * k + k0 + kk)
                        } else {
                            0
                        };
                        put(r, kk, v);
                    }
                }
            }
        }
    }
}
