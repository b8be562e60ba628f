//! Where shares are computed (DESIGN.md layer 2). Protocol code calls only
//! the `Device` trait, never a concrete device, and holds shares only as the
//! device's own buffers (`Buf`): host vectors for the CPU device, GPU memory
//! for the CUDA device.

pub mod cpu;
pub mod cuda;

pub use cpu::Cpu;

use crate::error::{EngineError, Result};
pub use crate::ring::Conv2dGeom;
use std::sync::Arc;

/// Where the parties' shares are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// NVIDIA GPUs, placed by `cuda::device_map` (party i on GPU i with
    /// three or more, all on GPU 0 otherwise).
    Cuda,
}

/// Open the device party `rank` computes on (the only place a concrete
/// device is named above this layer).
pub fn open(kind: DeviceKind, rank: usize) -> Result<Arc<dyn Device>> {
    match kind {
        DeviceKind::Cpu => Ok(Arc::new(cpu::Cpu)),
        DeviceKind::Cuda => {
            let map = cuda::device_map(cuda::device_count()).ok_or_else(|| {
                EngineError::Unavailable(
                    "device cuda needs an NVIDIA GPU and its driver (libcuda); none was found"
                        .into(),
                )
            })?;
            Ok(Arc::new(cuda::Cuda::new(map[rank])?))
        }
    }
}

/// The shape of a batch of matrix products (`Device::matmul_local`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatDims {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The right operand is stored transposed, [batch, n, k].
    pub y_trans: bool,
}

impl MatDims {
    /// [batch, m, k] x [batch, k, n].
    pub fn new(batch: usize, m: usize, k: usize, n: usize) -> Self {
        MatDims {
            batch,
            m,
            k,
            n,
            y_trans: false,
        }
    }
}

/// An element-wise binary operation on ring elements (`Xor` acts on the 64
/// bits of packed binary shares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op2 {
    Add,
    Sub,
    Mul,
    Xor,
}

/// Words [off, off + len) of both components of a replicated sharing:
/// (component 0, component 1, off, len).
pub type Span<'a> = (&'a Buf, &'a Buf, usize, usize);

/// `Device::and_local_spans` by gathering the spans, then `and_local`
/// (the default, public so that the CPU's in-place version is tested
/// against it).
pub fn and_local_gathered<D: Device + ?Sized>(
    dev: &D,
    x: &[Span],
    y: &[Span],
    r: Buf,
) -> Result<Buf> {
    let (x0, x1) = concat_spans(dev, x)?;
    let (y0, y1) = concat_spans(dev, y)?;
    dev.and_local(&x0, &x1, &y0, &y1, r)
}

/// Both components of a sharing's spans, each concatenated into one buffer.
pub fn concat_spans<D: Device + ?Sized>(dev: &D, s: &[Span]) -> Result<(Buf, Buf)> {
    let first: Vec<(&Buf, usize, usize)> = s.iter().map(|&(a, _, o, l)| (a, o, l)).collect();
    let second: Vec<(&Buf, usize, usize)> = s.iter().map(|&(_, b, o, l)| (b, o, l)).collect();
    Ok((dev.concat(&first)?, dev.concat(&second)?))
}

/// An element-wise unary operation on ring elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op1 {
    Neg,
    AddScalar(u64),
    /// Signed floor division by a positive public divisor (an arithmetic
    /// shift when it is a power of two): the local step of truncation.
    DivFloor(u64),
}

/// A buffer of ring elements owned by a device: host memory for the CPU
/// device, GPU memory for the CUDA device. Protocol code never looks inside:
/// it passes buffers to its party's device, which is what keeps shares
/// resident on the GPU from `share` to `reveal`. Cloning is cheap and cannot
/// fail for a GPU buffer (the memory is shared, and copied on the device
/// only when a shared buffer is written).
#[derive(Clone)]
pub enum Buf {
    Host(Vec<u64>),
    Cuda(cuda::GpuBuf),
}

fn gpu_on_host() -> EngineError {
    EngineError::Internal("a GPU buffer reached host code".into())
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
    /// The host words of a host buffer (the CPU device's view); a GPU
    /// buffer here is an internal error of the caller.
    pub fn host(&self) -> Result<&[u64]> {
        match self {
            Buf::Host(v) => Ok(v),
            Buf::Cuda(_) => Err(gpu_on_host()),
        }
    }
    pub fn host_mut(&mut self) -> Result<&mut Vec<u64>> {
        match self {
            Buf::Host(v) => Ok(v),
            Buf::Cuda(_) => Err(gpu_on_host()),
        }
    }
    /// Copy to host memory, from wherever the buffer lives.
    pub fn to_vec(&self) -> Result<Vec<u64>> {
        match self {
            Buf::Host(v) => Ok(v.clone()),
            Buf::Cuda(g) => g.to_vec(),
        }
    }
    /// Host words, moving a host buffer and copying a GPU one.
    pub fn into_vec(self) -> Result<Vec<u64>> {
        match self {
            Buf::Host(v) => Ok(v),
            Buf::Cuda(g) => g.to_vec(),
        }
    }
}

impl From<Vec<u64>> for Buf {
    fn from(v: Vec<u64>) -> Self {
        Buf::Host(v)
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
/// returns. Ranges are (offset, length) in elements. Every method returns a
/// `Result`: an out-of-memory is `EngineError::OutOfMemory`, a failure of
/// the GPU or its libraries `Unavailable`, never a panic.
pub trait Device: Send + Sync {
    fn name(&self) -> &'static str;

    // ---- buffers
    /// A buffer of `v`'s words on this device.
    fn upload(&self, v: Vec<u64>) -> Result<Buf>;
    /// A buffer from anywhere (a message from another party) on this
    /// device: a no-op for buffers already here.
    fn adopt(&self, b: Buf) -> Result<Buf>;
    fn zeros(&self, n: usize) -> Result<Buf>;

    // ---- element-wise
    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Result<Buf>;
    /// dst = dst op src.
    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf) -> Result<()>;
    fn map1(&self, op: Op1, a: &Buf) -> Result<Buf>;
    /// x = op(x), in place where the device can.
    fn map1_into(&self, op: Op1, x: &mut Buf) -> Result<()> {
        *x = self.map1(op, x)?;
        Ok(())
    }
    /// `n` words of the stream of `prg` (the CPU's stream, bit for bit).
    fn prg(&self, prg: &mut crate::prg::Prg, n: usize) -> Result<Buf>;
    /// r + x0 (y0 + y1) + x1 y0: the local step of a replicated product.
    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf>;
    /// r ^ (x0 & y0) ^ (x0 & y1) ^ (x1 & y0): the same for AND, over the
    /// first r.len() words of the (possibly longer) operands.
    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf>;
    /// `and_local` of operands made of ranges of other sharings: x's i-th
    /// span pairs with y's i-th (one length), and r holds one word per word
    /// of them. This default gathers the spans first; the CPU reads them
    /// in place (the comparison's adder picks planes out of plane stacks).
    fn and_local_spans(&self, x: &[Span], y: &[Span], r: Buf) -> Result<Buf> {
        and_local_gathered(self, x, y, r)
    }

    // ---- ranges
    /// The ranges concatenated, in order, into a new buffer.
    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Result<Buf>;
    /// dst[doff..doff+len] = src[soff..soff+len], or combined with `op`.
    fn update(
        &self,
        op: Option<Op2>,
        dst: &mut Buf,
        doff: usize,
        src: &Buf,
        soff: usize,
        len: usize,
    ) -> Result<()>;

    // ---- bits
    /// Bit-slice n words into 64 planes of ceil(n/64) words (cpu/bits.rs).
    fn to_planes(&self, x: &Buf) -> Result<Buf>;
    fn unslice_planes(&self, planes: &Buf, n: usize) -> Result<Buf>;
    /// out[i] = bit (i / reps) of a packed plane, as 0 or 1; n * reps words.
    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Result<Buf>;

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
    ) -> Result<()>;
    /// z += x0 (y0 + y1) + x1 y0 for each of `batch` matrix products: x
    /// [batch, m, k]; y [batch, k, n], or [batch, n, k] when `y_trans`; z
    /// [batch, m, n]. The local step of a replicated matrix product. The
    /// default (`composed::matmul_local`) forms y0 + y1 (and the transposes)
    /// and runs two GEMMs per product; the CPU device fuses it all into one
    /// packing pass.
    fn matmul_local(
        &self,
        x: (&Buf, &Buf),
        y: (&Buf, &Buf),
        dims: MatDims,
        z: &mut Buf,
    ) -> Result<()> {
        composed::matmul_local(self, x, y, dims, z)
    }
    /// sum_t conv(input_t, weight_t) over the ring, NCHW out, per group:
    /// im2col of each input, one GEMM per term into the same output.
    fn conv_terms(
        &self,
        terms: &[(&Buf, &Buf)],
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<Buf> {
        composed::conv_terms(self, terms, g, out_ch, groups)
    }
    /// conv(x0, w0 + w1) + conv(x1, w0), NCHW: the local step of a
    /// convolution of two sharings (weight [O, C/g, kh, kw]).
    fn conv_local(
        &self,
        x: (&Buf, &Buf),
        w: (&Buf, &Buf),
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<Buf> {
        let wsum = self.map2(Op2::Add, w.0, w.1)?;
        self.conv_terms(&[(&wsum, x.0), (w.0, x.1)], g, out_ch, groups)
    }
    /// im2col of channels [c0, c0 + cg) of an NCHW tensor: rows are
    /// (channel, ky, kx), columns are (image, oy, ox); zero padding.
    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Result<Buf>;
    /// The adjoint of `im2col` over all channels: scatter-add columns
    /// [(c, ky, kx), (n, oy, ox)] back into an NCHW tensor (padding dropped).
    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Result<Buf>;
    /// Sum over each pooling window (zero padding), NCHW -> N C OH OW.
    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Result<Buf>;
    /// out[i] = src[offset + sum_d idx_d * strides[d]] over `shape`: every
    /// view op (permute, expand, slice with step) is one gather.
    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Result<Buf>;
    /// The inverse placement: dst[offset + sum_d idx_d * strides[d]] =
    /// src[i] (pad, cat). The view must not overlap itself.
    fn scatter(
        &self,
        src: &Buf,
        dst: &mut Buf,
        shape: &[usize],
        offset: usize,
        strides: &[usize],
    ) -> Result<()>;
    /// out[j] = src[idx[j]].
    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Result<Buf>;
    /// out (n words, zero) with out[idx[j]] += src[j].
    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Result<Buf>;
    /// Sums over the middle axis of an [outer, len, inner] tensor.
    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Result<Buf>;
}

/// Host-side checks a device makes before it reads or writes through
/// computed indices: the runtime validates every geometry and view before
/// any party starts, so a failure here is an engine bug, reported as
/// `Internal` instead of a GPU kernel reading past a buffer (or a CPU
/// slice panicking).
pub mod bounds {
    use super::Conv2dGeom;
    use crate::error::{EngineError, Result};

    fn bug<T>(what: &str, detail: String) -> Result<T> {
        Err(EngineError::Internal(format!("{what}: {detail}")))
    }

    /// At least `need` words (None: the size overflowed).
    pub fn words(what: &str, have: usize, need: Option<usize>) -> Result<()> {
        match need {
            Some(need) if need <= have => Ok(()),
            Some(need) => bug(what, format!("needs {need} words, the buffer has {have}")),
            None => bug(what, "its size overflows".into()),
        }
    }

    /// The view (shape, offset, strides) reads or writes inside `len` words.
    pub fn view(
        what: &str,
        shape: &[usize],
        offset: usize,
        st: &[usize],
        len: usize,
    ) -> Result<()> {
        crate::ring::shape::view_fits(shape, offset, st, len).or_else(|e| bug(what, e.to_string()))
    }

    /// An NCHW input of geometry `g` (channels [c0, c0 + cg) used) in `len`
    /// words; returns the output height and width.
    pub fn conv_input(
        what: &str,
        g: &Conv2dGeom,
        (c0, cg): (usize, usize),
        len: usize,
    ) -> Result<(usize, usize)> {
        let Some(hw) = g.checked_out_hw() else {
            return bug(what, format!("{g:?} does not fit"));
        };
        if c0.checked_add(cg).is_none_or(|c| c > g.c) {
            return bug(what, format!("channels {c0}+{cg} of {}", g.c));
        }
        let need = [g.n, g.c, g.h, g.w]
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b));
        words(what, len, need)?;
        Ok(hw)
    }

    /// Column matrices [c kh kw, n oh ow] of geometry `g` in `len` words.
    pub fn conv_cols(what: &str, g: &Conv2dGeom, len: usize) -> Result<()> {
        let Some((oh, ow)) = g.checked_out_hw() else {
            return bug(what, format!("{g:?} does not fit"));
        };
        let need = [g.c, g.kh, g.kw, g.n, oh, ow]
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b));
        words(what, len, need)
    }

    /// An [outer, mid, inner] tensor in `len` words.
    pub fn rows(what: &str, (outer, mid, inner): (usize, usize, usize), len: usize) -> Result<()> {
        let need = outer.checked_mul(mid).and_then(|x| x.checked_mul(inner));
        words(what, len, need)
    }
}

/// The trait's default products, composed from `map2`, `gather`, `im2col`
/// and `gemm` (the CUDA device runs these); public so that tests can run
/// them on the CPU device against its fused versions.
pub mod composed {
    use super::{Buf, Conv2dGeom, Device, MatDims, Op2};
    use crate::error::Result;

    pub fn matmul_local<D: Device + ?Sized>(
        dev: &D,
        x: (&Buf, &Buf),
        y: (&Buf, &Buf),
        dims: MatDims,
        z: &mut Buf,
    ) -> Result<()> {
        let MatDims {
            batch,
            m,
            k,
            n,
            y_trans,
        } = dims;
        let t = |b: &Buf| dev.gather(b, &[batch, k, n], 0, &[k * n, 1, k]);
        let t0;
        let (y0, ysum) = if y_trans {
            t0 = t(y.0)?;
            let mut s = t(y.1)?;
            dev.map2_into(Op2::Add, &mut s, &t0)?;
            (&t0, s)
        } else {
            (y.0, dev.map2(Op2::Add, y.0, y.1)?)
        };
        for bi in 0..batch {
            let (xo, yo, zo) = (bi * m * k, bi * k * n, bi * m * n);
            dev.gemm(m, k, n, (x.0, xo), (&ysum, yo), (&mut *z, zo), true)?;
            dev.gemm(m, k, n, (x.1, xo), (y0, yo), (&mut *z, zo), true)?;
        }
        Ok(())
    }

    pub fn conv_terms<D: Device + ?Sized>(
        dev: &D,
        terms: &[(&Buf, &Buf)],
        g: &Conv2dGeom,
        out_ch: usize,
        groups: usize,
    ) -> Result<Buf> {
        let (oh, ow) = g.out_hw();
        let l = g.n * oh * ow;
        let (cg, og) = (g.c / groups, out_ch / groups);
        let kk = cg * g.kh * g.kw;
        // GEMM output is [O, N*OH*OW]; permuted to NCHW at the end.
        let mut y = dev.zeros(out_ch * l)?;
        for gi in 0..groups {
            for (w, x) in terms {
                let cols = dev.im2col(x, g, gi * cg, cg)?;
                let (wo, yo) = (gi * og * kk, gi * og * l);
                dev.gemm(og, kk, l, (w, wo), (&cols, 0), (&mut y, yo), true)?;
            }
        }
        // [O, N, OH*OW] -> [N, O, OH*OW]
        dev.gather(&y, &[g.n, out_ch, oh * ow], 0, &[oh * ow, l, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::{bounds, Buf, Conv2dGeom, Cpu, Device};
    use crate::error::EngineError;

    fn geom(n: usize, c: usize, hw: usize, k: usize) -> Conv2dGeom {
        Conv2dGeom {
            n,
            c,
            h: hw,
            w: hw,
            kh: k,
            kw: k,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        }
    }

    fn internal<T: std::fmt::Debug>(r: crate::error::Result<T>) -> bool {
        matches!(r, Err(EngineError::Internal(_)))
    }

    /// What a device would read or write past a buffer is refused before
    /// it runs (the same checks guard the GPU kernels' launches).
    #[test]
    fn reads_and_writes_past_a_buffer_are_internal_errors() {
        let cpu = Cpu;
        let x = Buf::Host((0..32).collect());
        // A view ending at element 32 of 32; one ending at 31 is fine.
        assert!(internal(cpu.gather(&x, &[4, 4], 2, &[9, 1])));
        assert_eq!(cpu.gather(&x, &[4, 4], 7, &[8, 0]).unwrap().len(), 16);
        // Strides whose reach overflows must not wrap to a small offset.
        assert!(internal(cpu.gather(&x, &[3], 0, &[usize::MAX / 2])));
        let mut dst = Buf::Host(vec![0; 8]);
        assert!(internal(cpu.scatter(&x, &mut dst, &[3, 3], 0, &[3, 1])));
        let short = Buf::Host(vec![1; 3]);
        assert!(internal(cpu.scatter(&short, &mut dst, &[4], 0, &[1])));
        // NCHW 2x2x4x4 = 64 words, but x has 32.
        let g = geom(2, 2, 4, 3);
        assert!(internal(cpu.im2col(&x, &g, 0, 2)));
        assert!(internal(cpu.window_sum(&x, &g)));
        let g1 = geom(1, 2, 4, 3);
        assert!(internal(cpu.im2col(&x, &g1, 1, 2)));
        assert_eq!(cpu.im2col(&x, &g1, 1, 1).unwrap().len(), 9 * 4);
        // col2im needs [c kh kw, n oh ow] = 18 x 4 = 72 words.
        assert!(internal(cpu.col2im(&x, &g1)));
        assert!(internal(cpu.sum_axis(&x, 3, 4, 3)));
        assert_eq!(cpu.sum_axis(&x, 2, 4, 4).unwrap().len(), 8);
        // A geometry whose window does not fit its input.
        assert!(internal(bounds::conv_input(
            "t",
            &geom(1, 1, 2, 3),
            (0, 1),
            4
        )));
        assert!(internal(bounds::rows("t", (usize::MAX, 2, 1), 8)));
        assert!(internal(bounds::conv_cols(
            "t",
            &geom(usize::MAX, 1, 3, 1),
            8
        )));
    }
}
