//! Where shares are computed (DESIGN.md layer 2). Protocol code calls only
//! the `Device` trait, never a concrete device, and holds shares only as the
//! device's own buffers (`Buf`): host vectors for the CPU device, GPU memory
//! for the CUDA device.

use crate::gemm;

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

/// An element-wise binary operation on ring elements (`Xor`/`And` act on
/// the 64 bits of packed binary shares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op2 {
    Add,
    Sub,
    Mul,
    Xor,
    And,
}

/// An element-wise unary operation on ring elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op1 {
    Neg,
    AddScalar(u64),
    MulScalar(u64),
    /// Signed floor division by a positive public divisor (an arithmetic
    /// shift when it is a power of two): the local step of truncation.
    DivFloor(u64),
}

impl Op1 {
    fn apply_slice(self, v: &mut [u64]) {
        match self {
            Op1::Neg => v.iter_mut().for_each(|x| *x = x.wrapping_neg()),
            Op1::AddScalar(s) => v.iter_mut().for_each(|x| *x = x.wrapping_add(s)),
            Op1::MulScalar(s) => v.iter_mut().for_each(|x| *x = x.wrapping_mul(s)),
            Op1::DivFloor(d) => crate::ring::div_floor(v, d),
        }
    }
}

/// A buffer of ring elements owned by a device: host memory for the CPU
/// device, GPU memory for the CUDA device. Protocol code never looks inside:
/// it passes buffers to its party's device, which is what keeps shares
/// resident on the GPU from `share` to `reveal`.
pub enum Buf {
    Host(Vec<u64>),
    Cuda(crate::cuda::GpuBuf),
}

impl Buf {
    pub fn len(&self) -> usize {
        match self {
            Buf::Host(v) => v.len(),
            Buf::Cuda(g) => g.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The host words of a host buffer. Only the CPU device and tests call
    /// this; a GPU buffer here is a bug of the caller (it panics, and the
    /// runtime turns the panic into an InternalError).
    pub fn host(&self) -> &[u64] {
        match self {
            Buf::Host(v) => v,
            Buf::Cuda(_) => panic!("internal: a GPU buffer reached host code"),
        }
    }
    pub fn host_mut(&mut self) -> &mut Vec<u64> {
        match self {
            Buf::Host(v) => v,
            Buf::Cuda(_) => panic!("internal: a GPU buffer reached host code"),
        }
    }
    /// Copy to host memory, from wherever the buffer lives.
    pub fn to_vec(&self) -> Vec<u64> {
        match self {
            Buf::Host(v) => v.clone(),
            Buf::Cuda(g) => g.to_vec(),
        }
    }
    /// Host words, moving a host buffer and copying a GPU one.
    pub fn into_vec(self) -> Vec<u64> {
        match self {
            Buf::Host(v) => v,
            Buf::Cuda(g) => g.to_vec(),
        }
    }
}

impl From<Vec<u64>> for Buf {
    fn from(v: Vec<u64>) -> Self {
        Buf::Host(v)
    }
}

impl Clone for Buf {
    fn clone(&self) -> Self {
        match self {
            Buf::Host(v) => Buf::Host(v.clone()),
            Buf::Cuda(g) => Buf::Cuda(g.clone()),
        }
    }
}

impl Default for Buf {
    fn default() -> Self {
        Buf::Host(Vec::new())
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Buf::Host(v) => write!(f, "Host({} words)", v.len()),
            Buf::Cuda(g) => write!(f, "Cuda({} words)", g.len()),
        }
    }
}

/// Where shares are computed (DESIGN.md layer 2). Protocol code calls only
/// this trait, never a concrete device, and holds only the buffers it
/// returns. Ranges are (offset, length) in elements.
pub trait Device: Send + Sync {
    fn name(&self) -> &'static str;

    // ---- buffers
    /// A buffer of `v`'s words on this device.
    fn upload(&self, v: Vec<u64>) -> Buf;
    /// A buffer from anywhere (a message from another party) on this
    /// device: a no-op for buffers already here.
    fn adopt(&self, b: Buf) -> Buf;
    fn zeros(&self, n: usize) -> Buf;

    // ---- element-wise
    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Buf;
    /// dst = dst op src.
    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf);
    fn map1(&self, op: Op1, a: &Buf) -> Buf;
    /// x = op(x), in place where the device can.
    fn map1_into(&self, op: Op1, x: &mut Buf) {
        *x = self.map1(op, x);
    }
    /// `n` words of the stream of `prg` (the CPU's stream, bit for bit).
    fn prg(&self, prg: &mut crate::prg::Prg, n: usize) -> Buf;
    /// r + x0 (y0 + y1) + x1 y0: the local step of a replicated product.
    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf;
    /// r ^ (x0 & y0) ^ (x0 & y1) ^ (x1 & y0): the same for AND, over the
    /// first r.len() words of the (possibly longer) operands.
    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf;

    // ---- ranges
    /// The ranges concatenated, in order, into a new buffer.
    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Buf;
    /// dst[doff..doff+len] = src[soff..soff+len], or combined with `op`.
    fn update(
        &self,
        op: Option<Op2>,
        dst: &mut Buf,
        doff: usize,
        src: &Buf,
        soff: usize,
        len: usize,
    );

    // ---- bits
    /// Bit-slice n words into 64 planes of ceil(n/64) words (binary.rs).
    fn to_planes(&self, x: &Buf) -> Buf;
    fn unslice_planes(&self, planes: &Buf, n: usize) -> Buf;
    /// out[i] = bit (i / reps) of a packed plane, as 0 or 1; n * reps words.
    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Buf;

    // ---- linear algebra and data movement
    /// C[coff..] (+)= A[aoff..] B[boff..] over Z_2^64, row-major m x k x n.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: (&Buf, usize),
        b: (&Buf, usize),
        c: (&mut Buf, usize),
        accumulate: bool,
    );
    /// im2col of channels [c0, c0 + cg) of an NCHW tensor: rows are
    /// (channel, ky, kx), columns are (image, oy, ox); zero padding.
    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Buf;
    /// The adjoint of `im2col` over all channels: scatter-add columns
    /// [(c, ky, kx), (n, oy, ox)] back into an NCHW tensor (padding dropped).
    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Buf;
    /// Sum over each pooling window (zero padding), NCHW -> N C OH OW.
    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Buf;
    /// out[i] = src[offset + sum_d idx_d * strides[d]] over `shape`: every
    /// view op (permute, expand, slice with step) is one gather.
    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Buf;
    /// The inverse placement: dst[offset + sum_d idx_d * strides[d]] =
    /// src[i] (pad, cat). The view must not overlap itself.
    fn scatter(&self, src: &Buf, dst: &mut Buf, shape: &[usize], offset: usize, strides: &[usize]);
    /// out[j] = src[idx[j]].
    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Buf;
    /// out (n words, zero) with out[idx[j]] += src[j].
    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Buf;
    /// Sums over the middle axis of an [outer, len, inner] tensor.
    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Buf;
}

pub struct Cpu;

/// Run `body` with the op as a compile-time closure, so each loop is
/// specialised (no match per element).
macro_rules! with_op2 {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            Op2::Add => {
                let $f = |x: u64, y: u64| x.wrapping_add(y);
                $body
            }
            Op2::Sub => {
                let $f = |x: u64, y: u64| x.wrapping_sub(y);
                $body
            }
            Op2::Mul => {
                let $f = |x: u64, y: u64| x.wrapping_mul(y);
                $body
            }
            Op2::Xor => {
                let $f = |x: u64, y: u64| x ^ y;
                $body
            }
            Op2::And => {
                let $f = |x: u64, y: u64| x & y;
                $body
            }
        }
    };
}

fn zip_into(d: &mut [u64], s: &[u64], f: impl Fn(u64, u64) -> u64) {
    d.iter_mut().zip(s).for_each(|(x, y)| *x = f(*x, *y));
}

impl Device for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, v: Vec<u64>) -> Buf {
        Buf::Host(v)
    }

    fn adopt(&self, b: Buf) -> Buf {
        Buf::Host(b.into_vec())
    }

    fn zeros(&self, n: usize) -> Buf {
        Buf::Host(vec![0; n])
    }

    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Buf {
        let (a, b) = (a.host(), b.host());
        with_op2!(op, |f| Buf::Host(
            a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
        ))
    }

    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf) {
        let (d, s) = (dst.host_mut(), src.host());
        with_op2!(op, |f| zip_into(d, s, f))
    }

    fn map1(&self, op: Op1, a: &Buf) -> Buf {
        let mut v = a.host().to_vec();
        op.apply_slice(&mut v);
        Buf::Host(v)
    }

    fn map1_into(&self, op: Op1, x: &mut Buf) {
        op.apply_slice(x.host_mut());
    }

    fn prg(&self, prg: &mut crate::prg::Prg, n: usize) -> Buf {
        Buf::Host(prg.gen(n))
    }

    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf {
        let (x0, x1, y0, y1) = (x0.host(), x1.host(), y0.host(), y1.host());
        let mut z = r.into_vec();
        for (j, zj) in z.iter_mut().enumerate() {
            let t = x0[j]
                .wrapping_mul(y0[j].wrapping_add(y1[j]))
                .wrapping_add(x1[j].wrapping_mul(y0[j]));
            *zj = zj.wrapping_add(t);
        }
        Buf::Host(z)
    }

    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf {
        let (x0, x1, y0, y1) = (x0.host(), x1.host(), y0.host(), y1.host());
        let mut z = r.into_vec();
        for (j, zj) in z.iter_mut().enumerate() {
            *zj ^= (x0[j] & y0[j]) ^ (x0[j] & y1[j]) ^ (x1[j] & y0[j]);
        }
        Buf::Host(z)
    }

    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Buf {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.2).sum());
        for (b, off, len) in parts {
            out.extend_from_slice(&b.host()[*off..off + len]);
        }
        Buf::Host(out)
    }

    fn update(
        &self,
        op: Option<Op2>,
        dst: &mut Buf,
        doff: usize,
        src: &Buf,
        soff: usize,
        len: usize,
    ) {
        let d = &mut dst.host_mut()[doff..doff + len];
        let s = &src.host()[soff..soff + len];
        match op {
            None => d.copy_from_slice(s),
            Some(op) => with_op2!(op, |f| zip_into(d, s, f)),
        }
    }

    fn to_planes(&self, x: &Buf) -> Buf {
        Buf::Host(crate::binary::to_planes(x.host()))
    }

    fn unslice_planes(&self, planes: &Buf, n: usize) -> Buf {
        Buf::Host(crate::binary::from_planes(planes.host(), n))
    }

    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Buf {
        let p = plane.host();
        Buf::Host(
            (0..n * reps)
                .map(|i| crate::binary::bit(p, i / reps))
                .collect(),
        )
    }

    fn gemm(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: (&Buf, usize),
        b: (&Buf, usize),
        c: (&mut Buf, usize),
        accumulate: bool,
    ) {
        let (a, b) = (&a.0.host()[a.1..], &b.0.host()[b.1..]);
        let c = &mut c.0.host_mut()[c.1..];
        gemm::gemm(m, k, n, a, b, c, accumulate)
    }

    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Buf {
        Buf::Host(host::im2col(x.host(), g, c0, cg))
    }

    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Buf {
        Buf::Host(host::col2im(cols.host(), g))
    }

    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Buf {
        Buf::Host(host::window_sum(x.host(), g))
    }

    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Buf {
        Buf::Host(host::gather(src.host(), shape, offset, strides))
    }

    fn scatter(&self, src: &Buf, dst: &mut Buf, shape: &[usize], offset: usize, strides: &[usize]) {
        host::scatter(src.host(), dst.host_mut(), shape, offset, strides)
    }

    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Buf {
        let s = src.host();
        Buf::Host(idx.iter().map(|&i| s[i]).collect())
    }

    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Buf {
        let mut out = vec![0u64; n];
        for (v, &i) in src.host().iter().zip(idx) {
            out[i] = out[i].wrapping_add(*v);
        }
        Buf::Host(out)
    }

    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Buf {
        Buf::Host(host::sum_axis(x.host(), outer, len, inner))
    }
}

/// The CPU implementations on host slices (the CUDA device's fallbacks and
/// the tests' references use them too).
pub mod host {
    use super::Conv2dGeom;
    use crate::ring::numel;
    use rayon::prelude::*;

    /// The inverse placement of `gather` (no accumulation).
    pub fn scatter(src: &[u64], dst: &mut [u64], shape: &[usize], offset: usize, st: &[usize]) {
        let nd = shape.len();
        if numel(shape) == 0 {
            return;
        }
        let mut idx = vec![0usize; nd];
        let mut pos = offset;
        for v in src.iter().take(numel(shape)) {
            dst[pos] = *v;
            for d in (0..nd).rev() {
                idx[d] += 1;
                pos += st[d];
                if idx[d] < shape[d] {
                    break;
                }
                pos -= st[d] * shape[d];
                idx[d] = 0;
            }
        }
    }

    /// Sums over the middle axis of [outer, len, inner].
    pub fn sum_axis(x: &[u64], outer: usize, len: usize, inner: usize) -> Vec<u64> {
        let mut out = vec![0u64; outer * inner];
        if inner == 0 {
            return out;
        }
        out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
            for k in 0..len {
                let src = &x[(o * len + k) * inner..(o * len + k + 1) * inner];
                for (d, s) in row.iter_mut().zip(src) {
                    *d = d.wrapping_add(*s);
                }
            }
        });
        out
    }

    pub fn im2col(x: &[u64], g: &Conv2dGeom, c0: usize, cg: usize) -> Vec<u64> {
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

    pub fn col2im(cols: &[u64], g: &Conv2dGeom) -> Vec<u64> {
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

    pub fn window_sum(x: &[u64], g: &Conv2dGeom) -> Vec<u64> {
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

    pub fn gather(src: &[u64], shape: &[usize], offset: usize, st: &[usize]) -> Vec<u64> {
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
        let t = host::gather(&x, &[3, 2], 0, &[1, 3]);
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        let e = host::gather(&[7], &[2, 2], 0, &[0, 0]);
        assert_eq!(e, vec![7; 4]);
        // A 3-d strided view with a step and an offset, against the definition.
        let x: Vec<u64> = (0..1000).collect();
        let (shape, st, off) = ([3usize, 4, 5], [200usize, 30, 2], 7usize);
        let g = host::gather(&x, &shape, off, &st);
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
        let t = host::gather(&big, &[3, 40000], 0, &[1, 3]);
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
        let cols = host::im2col(&x, &g, 0, 3);
        let y: Vec<u64> = (0..cols.len()).map(|i| (i * 13 + 1) as u64).collect();
        let back = host::col2im(&y, &g);
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
        assert_eq!(host::im2col(&[1, 2, 3, 4], &g, 0, 1), vec![1, 2, 3, 4]);
    }

    #[test]
    fn scatter_inverts_gather_and_sum_axis_sums_the_middle() {
        let x: Vec<u64> = (1..=12).collect();
        let mut big = vec![0u64; 35];
        host::scatter(&x, &mut big, &[3, 4], 7 + 2, &[7, 1]);
        assert_eq!(host::gather(&big, &[3, 4], 9, &[7, 1]), x);
        assert_eq!(big.iter().sum::<u64>(), x.iter().sum::<u64>());
        // [2, 3, 2]: sums over the 3
        let y: Vec<u64> = (0..12).collect();
        assert_eq!(host::sum_axis(&y, 2, 3, 2), vec![6, 9, 24, 27]);
    }

    #[test]
    fn range_ops_and_bit_expansion() {
        let d = Cpu;
        let a = Buf::Host((0..10).collect());
        let b = Buf::Host((100..110).collect());
        let c = d.concat(&[(&a, 8, 2), (&b, 0, 3)]);
        assert_eq!(c.to_vec(), vec![8, 9, 100, 101, 102]);
        let mut e = a.clone();
        d.update(Some(Op2::Xor), &mut e, 1, &b, 2, 2);
        d.update(None, &mut e, 5, &b, 0, 1);
        assert_eq!(e.to_vec(), vec![0, 1 ^ 102, 2 ^ 103, 3, 4, 100, 6, 7, 8, 9]);
        let plane = Buf::Host(vec![0b1011]);
        assert_eq!(
            d.expand_bits(&plane, 4, 2).to_vec(),
            vec![1, 1, 1, 1, 0, 0, 1, 1]
        );
        let g = d.index_gather(&b, &[3, 3, 0]);
        assert_eq!(g.to_vec(), vec![103, 103, 100]);
        let s = d.index_scatter_add(&g, &[1, 1, 0], 2);
        assert_eq!(s.to_vec(), vec![100, 206]);
        assert_eq!(
            d.map1(Op1::DivFloor(4), &Buf::Host(vec![(-5i64) as u64, 5]))
                .to_vec(),
            vec![(-2i64) as u64, 1]
        );
    }

    /// Protocol code never reads a buffer on the host: that is what lets the
    /// CUDA device keep shares in GPU memory (a host read of a GPU buffer is
    /// an internal error at run time, which no CPU test would catch).
    #[test]
    fn protocol_code_never_reads_buffers_on_the_host() {
        for (name, src) in [
            ("protocol.rs", include_str!("protocol.rs")),
            ("binary.rs", include_str!("binary.rs")),
            ("runtime.rs", include_str!("runtime.rs")),
        ] {
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            for bad in [".host()", ".host_mut()"] {
                assert!(!code.contains(bad), "{name} uses {bad}");
            }
        }
    }
}
