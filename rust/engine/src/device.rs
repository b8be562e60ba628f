//! Where shares are computed (DESIGN.md layer 2). Protocol code calls only
//! this trait, never a concrete device. Buffers are host `Vec<u64>` for now;
//! the CUDA device (a later issue) adds a device buffer type behind the same
//! calls.

use crate::gemm;
use crate::ring::numel;
use rayon::prelude::*;

/// Geometry of a 2-D convolution or pooling window over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Conv2dGeom {
    pub fn out_hw(&self) -> (usize, usize) {
        let oh =
            (self.h + 2 * self.padding.0 - self.dilation.0 * (self.kh - 1) - 1) / self.stride.0 + 1;
        let ow =
            (self.w + 2 * self.padding.1 - self.dilation.1 * (self.kw - 1) - 1) / self.stride.1 + 1;
        (oh, ow)
    }
    /// True when the (dilated) window fits in the padded input.
    pub fn fits(&self) -> bool {
        self.kh > 0
            && self.kw > 0
            && self.stride.0 > 0
            && self.stride.1 > 0
            && self.dilation.0 > 0
            && self.dilation.1 > 0
            && self.h + 2 * self.padding.0 > self.dilation.0 * (self.kh - 1)
            && self.w + 2 * self.padding.1 > self.dilation.1 * (self.kw - 1)
    }
}

pub trait Device: Send + Sync {
    fn name(&self) -> &'static str;
    /// C (+)= A B over Z_2^64, row-major.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[u64],
        b: &[u64],
        c: &mut [u64],
        accumulate: bool,
    );
    /// im2col of channels [c0, c0 + cg) of an NCHW tensor: rows are
    /// (channel, ky, kx), columns are (image, oy, ox); zero padding.
    fn im2col(&self, x: &[u64], g: &Conv2dGeom, c0: usize, cg: usize) -> Vec<u64>;
    /// The adjoint of `im2col` over all channels: scatter-add columns
    /// [(c, ky, kx), (n, oy, ox)] back into an NCHW tensor (padding dropped).
    fn col2im(&self, cols: &[u64], g: &Conv2dGeom) -> Vec<u64>;
    /// Sum over each pooling window (zero padding), NCHW -> N C OH OW.
    fn window_sum(&self, x: &[u64], g: &Conv2dGeom) -> Vec<u64>;
    /// out[i] = src[offset + sum_d idx_d * strides[d]] over `shape`: every
    /// view op (permute, expand, slice with step) is one gather.
    fn gather(&self, src: &[u64], shape: &[usize], offset: usize, strides: &[usize]) -> Vec<u64>;
}

pub struct Cpu;

impl Device for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn gemm(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[u64],
        b: &[u64],
        c: &mut [u64],
        accumulate: bool,
    ) {
        gemm::gemm(m, k, n, a, b, c, accumulate)
    }

    fn im2col(&self, x: &[u64], g: &Conv2dGeom, c0: usize, cg: usize) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let ncols = g.n * oh * ow;
        let rows = cg * g.kh * g.kw;
        let mut out = vec![0u64; rows * ncols];
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(ncols).enumerate().for_each(|(r, row)| {
            let c = c0 + r / (g.kh * g.kw);
            let ky = (r / g.kw) % g.kh;
            let kx = r % g.kw;
            for img in 0..g.n {
                let plane = &x[(img * g.c + c) * g.h * g.w..(img * g.c + c + 1) * g.h * g.w];
                for oy in 0..oh {
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    let dst = &mut row[(img * oh + oy) * ow..(img * oh + oy + 1) * ow];
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix =
                            (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        if ix >= 0 && ix < g.w as isize {
                            *d = src[ix as usize];
                        }
                    }
                }
            }
        });
        out
    }

    fn col2im(&self, cols: &[u64], g: &Conv2dGeom) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let ncols = g.n * oh * ow;
        let mut out = vec![0u64; g.n * g.c * g.h * g.w];
        if out.is_empty() || ncols == 0 {
            return out;
        }
        // One task per (image, channel) plane: its rows are disjoint.
        out.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(p, plane)| {
                let (img, c) = (p / g.c, p % g.c);
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let row = &cols[((c * g.kh + ky) * g.kw + kx) * ncols..][..ncols];
                        for oy in 0..oh {
                            let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize
                                - g.padding.0 as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for ox in 0..ow {
                                let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if ix >= 0 && ix < g.w as isize {
                                    let d = &mut plane[iy as usize * g.w + ix as usize];
                                    *d = d.wrapping_add(row[(img * oh + oy) * ow + ox]);
                                }
                            }
                        }
                    }
                }
            });
        out
    }

    fn window_sum(&self, x: &[u64], g: &Conv2dGeom) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let mut out = vec![0u64; g.n * g.c * oh * ow];
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(p, o)| {
            let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0u64;
                    for ky in 0..g.kh {
                        let iy =
                            (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        for kx in 0..g.kw {
                            let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize
                                - g.padding.1 as isize;
                            if ix >= 0 && ix < g.w as isize {
                                s = s.wrapping_add(plane[iy as usize * g.w + ix as usize]);
                            }
                        }
                    }
                    o[oy * ow + ox] = s;
                }
            }
        });
        out
    }

    fn gather(&self, src: &[u64], shape: &[usize], offset: usize, st: &[usize]) -> Vec<u64> {
        let n = numel(shape);
        let nd = shape.len();
        if n == 0 {
            return Vec::new();
        }
        if nd == 0 {
            return vec![src[offset]];
        }
        let inner = shape[nd - 1];
        let inner_st = st[nd - 1];
        let outer = &shape[..nd - 1];
        let mut out = vec![0u64; n];
        // Tasks of whole rows; inside a task an odometer over the outer dims
        // moves the base offset by one stride per row (no div/mod per row).
        let rows_per_task = (1 << 14) / inner.max(1) + 1;
        out.par_chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(|(t, o)| {
                let mut idx = vec![0usize; outer.len()];
                let mut rem = t * rows_per_task;
                for d in (0..outer.len()).rev() {
                    idx[d] = rem % outer[d];
                    rem /= outer[d];
                }
                let mut base = offset + idx.iter().zip(st).map(|(i, s)| i * s).sum::<usize>();
                for row in o.chunks_mut(inner) {
                    if inner_st == 1 {
                        row.copy_from_slice(&src[base..base + inner]);
                    } else {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = src[base + j * inner_st];
                        }
                    }
                    for d in (0..outer.len()).rev() {
                        idx[d] += 1;
                        base += st[d];
                        if idx[d] < outer[d] {
                            break;
                        }
                        base -= st[d] * outer[d];
                        idx[d] = 0;
                    }
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_permutes() {
        // 2x3 -> transpose 3x2
        let x: Vec<u64> = (0..6).collect();
        let t = Cpu.gather(&x, &[3, 2], 0, &[1, 3]);
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        let e = Cpu.gather(&[7], &[2, 2], 0, &[0, 0]);
        assert_eq!(e, vec![7; 4]);
        // A 3-d strided view with a step and an offset, against the definition.
        let x: Vec<u64> = (0..1000).collect();
        let (shape, st, off) = ([3usize, 4, 5], [200usize, 30, 2], 7usize);
        let g = Cpu.gather(&x, &shape, off, &st);
        let mut want = Vec::new();
        for i in 0..3 {
            for j in 0..4 {
                for k in 0..5 {
                    want.push(x[off + i * 200 + j * 30 + k * 2]);
                }
            }
        }
        assert_eq!(g, want);
        // Many short rows cross task boundaries.
        let big: Vec<u64> = (0..(40000 * 3) as u64).collect();
        let t = Cpu.gather(&big, &[3, 40000], 0, &[1, 3]);
        assert_eq!(t[40000], 1);
        assert_eq!(t[3 * 40000 - 1], big[3 * 39999 + 2]);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> over the ring.
        let g = Conv2dGeom {
            n: 2,
            c: 3,
            h: 5,
            w: 4,
            kh: 3,
            kw: 2,
            stride: (2, 1),
            padding: (1, 1),
            dilation: (1, 2),
        };
        let x: Vec<u64> = (0..2 * 3 * 5 * 4).map(|i| (i * 7 + 3) as u64).collect();
        let cols = Cpu.im2col(&x, &g, 0, 3);
        let y: Vec<u64> = (0..cols.len()).map(|i| (i * 13 + 1) as u64).collect();
        let back = Cpu.col2im(&y, &g);
        let dot = |a: &[u64], b: &[u64]| {
            a.iter()
                .zip(b)
                .fold(0u64, |s, (p, q)| s.wrapping_add(p.wrapping_mul(*q)))
        };
        assert_eq!(dot(&cols, &y), dot(&x, &back));
    }

    #[test]
    fn im2col_identity_kernel() {
        let g = Conv2dGeom {
            n: 1,
            c: 1,
            h: 2,
            w: 2,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        assert_eq!(Cpu.im2col(&[1, 2, 3, 4], &g, 0, 1), vec![1, 2, 3, 4]);
    }
}
