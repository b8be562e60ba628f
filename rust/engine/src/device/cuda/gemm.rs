//! The ring GEMM on the GPU (issue 8 (a) and (b)): Z_2^64 products split
//! into limbs that float64 DGEMM or int8 GemmEx multiply exactly, the path
//! chosen per shape by timing both at first use.

use super::kernels::{kview, Kernel};
use super::{cuda_err, Cuda};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::prg::Prg;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr};
use std::time::Instant;

/// Largest K of one limb16 pass: entries of the shift-3 product stay below
/// 4 K 2^32 <= 2^53, exact in float64 (kernels/gemm.cu).
const LIMB16_MAX_K: usize = 1 << 19;
/// Largest K of one int8 pass: |sum| <= 8 K 2^14 < 2^31 (kernels/gemm.cu).
const LIMB8_MAX_K: usize = 1 << 13;

/// The two ring GEMM formulations (issue 8 (a) and (b)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// 16-bit limbs, 10 limb products in 4 cuBLAS DGEMMs (the paper's).
    F64Limb16,
    /// 8-bit balanced digits, 36 limb products in 8 int8 GEMMs with int32
    /// accumulation (tensor cores).
    I8Limb8,
}

/// A GEMM result without the "was C written" flag of its error.
fn untraced<T>(r: std::result::Result<T, (EngineError, bool)>) -> Result<T> {
    r.map_err(|(e, _)| e)
}

impl Cuda {
    /// One K chunk of C (+)= A B by limbs (kernels/gemm.cu): split A and B
    /// into `limbs` limbs of type L; partial s (the weight-2^(w s) term) is
    /// sum_{i <= s} A_i B_{s-i}, one cuBLAS call per pair accumulating into
    /// partials of type P (`mm(a, b, out, accumulate)`); then recombine mod
    /// 2^64. Accumulating in place needs no concatenated copies of the limbs.
    /// `kernels`: the split and combine kernels.
    #[allow(clippy::too_many_arguments)]
    fn gemm_limbs<L, P>(
        &self,
        kernels: [Kernel; 2],
        limbs: usize,
        (m, k, n): (usize, usize, usize),
        a: &CudaView<u64>,
        b: &CudaView<u64>,
        c: &mut CudaViewMut<u64>,
        acc: bool,
        mm: impl Fn(&CudaBlas, &CudaView<L>, &CudaView<L>, &mut CudaViewMut<P>, bool) -> Result<()>,
    ) -> Result<()>
    where
        L: DeviceRepr + cudarc::driver::ValidAsZeroBits,
        P: DeviceRepr + cudarc::driver::ValidAsZeroBits,
    {
        let [split, combine] = kernels;
        let (mk, kn, mn) = (m * k, k * n, m * n);
        let mut la = self.zeros::<L>(limbs * mk)?;
        let mut lb = self.zeros::<L>(limbs * kn)?;
        let (mku, knu) = (mk as u64, kn as u64);
        launch!(self, split, mk, a, &mku, &mut la);
        launch!(self, split, kn, b, &knu, &mut lb);
        let mut parts = self.zeros::<P>(limbs * mn)?;
        {
            let blas = self
                .blas
                .lock()
                .map_err(|_| EngineError::Internal("cuBLAS handle lock poisoned".into()))?;
            for s in 0..limbs {
                let mut out = parts.slice_mut(s * mn..(s + 1) * mn);
                for i in 0..=s {
                    let ai = la.slice(i * mk..(i + 1) * mk);
                    let bj = lb.slice((s - i) * kn..(s - i + 1) * kn);
                    mm(&blas, &ai, &bj, &mut out, i > 0)?;
                }
            }
        }
        let (mnu, accu) = (mn as u64, acc as u32);
        launch!(self, combine, mn, &parts, &mnu, &accu, c);
        Ok(())
    }

    /// One K chunk of C (+)= A B by the limbs of `path`: 16-bit limbs in
    /// float64 (cuBLAS DGEMM), or 8-bit balanced digits in int8 GEMMs with
    /// int32 accumulation (an error where cuBLAS refuses the int8 shape).
    #[allow(clippy::too_many_arguments)]
    fn gemm_chunk(
        &self,
        path: GemmPath,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaView<u64>,
        b: &CudaView<u64>,
        c: &mut CudaViewMut<u64>,
        acc: bool,
    ) -> Result<()> {
        use cudarc::cublas::sys::{
            cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType,
        };
        match path {
            GemmPath::F64Limb16 => {
                let names = [Kernel::Limbs16Split, Kernel::Limbs16Combine];
                self.gemm_limbs::<f64, f64>(
                    names,
                    4,
                    (m, k, n),
                    a,
                    b,
                    c,
                    acc,
                    |blas, ai, bj, out, add| {
                        // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS
                        // multiplies bj (n x k, ld n) by ai (k x m, ld k).
                        let cfg = GemmConfig {
                            transa: cublasOperation_t::CUBLAS_OP_N,
                            transb: cublasOperation_t::CUBLAS_OP_N,
                            m: n as i32,
                            n: m as i32,
                            k: k as i32,
                            alpha: 1.0f64,
                            lda: n as i32,
                            ldb: k as i32,
                            beta: if add { 1.0 } else { 0.0 },
                            ldc: n as i32,
                        };
                        // SAFETY: dimensions and leading dimensions match the buffers.
                        unsafe { blas.gemm(cfg, bj, ai, out) }
                            .map_err(|e| cuda_err("cuBLAS DGEMM", e))
                    },
                )
            }
            GemmPath::I8Limb8 => {
                let names = [Kernel::Limbs8Split, Kernel::Limbs8Combine];
                self.gemm_limbs::<i8, i32>(
                    names,
                    8,
                    (m, k, n),
                    a,
                    b,
                    c,
                    acc,
                    |blas, ai, bj, out, add| {
                        let (alpha, beta) = (1i32, add as i32);
                        let (pb, _gb) = bj.device_ptr(&self.stream);
                        let (pa, _ga) = ai.device_ptr(&self.stream);
                        let (pc, _gc) = out.device_ptr_mut(&self.stream);
                        // SAFETY: as the DGEMM (column-major C^T = B^T A^T), with int8
                        // operands, int32 output and int32 compute; the pointers outlive
                        // the call (their guards are held).
                        let r = unsafe {
                            cudarc::cublas::result::gemm_ex(
                                *blas.handle(),
                                cublasOperation_t::CUBLAS_OP_N,
                                cublasOperation_t::CUBLAS_OP_N,
                                n as i32,
                                m as i32,
                                k as i32,
                                &alpha as *const i32 as *const _,
                                pb as *const _,
                                cudaDataType::CUDA_R_8I,
                                n as i32,
                                pa as *const _,
                                cudaDataType::CUDA_R_8I,
                                k as i32,
                                &beta as *const i32 as *const _,
                                pc as *mut _,
                                cudaDataType::CUDA_R_32I,
                                n as i32,
                                cublasComputeType_t::CUBLAS_COMPUTE_32I,
                                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                            )
                        };
                        r.map_err(|e| cuda_err(&format!("cuBLAS int8 GemmEx {m}x{k}x{n}"), e))
                    },
                )
            }
        }
    }

    /// C (+)= A B with A, B contiguous on the device, K chunked for the
    /// path. The error also says whether C was written before it (a K chunk
    /// combined into C): where it was not, another path can still compute
    /// C (+)= A B from the C the caller gave (`untraced` drops that).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_path(
        &self,
        path: GemmPath,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaView<u64>,
        b: &CudaView<u64>,
        c: &mut CudaViewMut<u64>,
        acc: bool,
    ) -> std::result::Result<(), (EngineError, bool)> {
        let untouched = |e: EngineError| (e, false);
        if m * n == 0 {
            return Ok(());
        }
        if k == 0 {
            // An empty sum: C stays as it is, or becomes zero.
            return if acc {
                Ok(())
            } else {
                self.check(self.stream.memset_zeros(c), "memset")
                    .map_err(untouched)
            };
        }
        // cuBLAS takes its sizes as i32 (k goes in chunks of at most MAX_K).
        if i32::try_from(m.max(n)).is_err() {
            return Err(untouched(EngineError::Invalid(format!(
                "GPU ring GEMM of {m} x {n} outputs: a side exceeds cuBLAS's 2^31 - 1"
            ))));
        }
        let step = match path {
            GemmPath::F64Limb16 => LIMB16_MAX_K,
            GemmPath::I8Limb8 => LIMB8_MAX_K,
        }
        .min(k);
        for k0 in (0..k).step_by(step) {
            let kc = step.min(k - k0);
            let first = k0 == 0;
            // Only a chunk's final combine writes C: a failure in the first
            // chunk leaves it as it was.
            let traced = |e: EngineError| (e, !first);
            let acc_here = acc || !first;
            let b_ref = b.slice(k0 * n..(k0 + kc) * n);
            // With several chunks, A's rows restricted to columns
            // [k0, k0 + kc) are gathered into a contiguous block.
            let a_chunk = if kc < k {
                let v = kview(&[m, kc], k0, &[k, 1])
                    .ok_or_else(|| traced(EngineError::Internal("a 2-D view".into())))?;
                let mut out = self.alloc(m * kc).map_err(traced)?;
                let nn = (m * kc) as u64;
                let mut gather = || -> Result<()> {
                    launch!(self, Kernel::Gather, m * kc, a, &v, &mut out, &nn);
                    Ok(())
                };
                gather().map_err(traced)?;
                Some(out)
            } else {
                None
            };
            let a_ref = match &a_chunk {
                Some(blk) => blk.slice(0..m * kc),
                None => a.slice(0..m * k),
            };
            self.gemm_chunk(path, m, kc, n, &a_ref, &b_ref, c, acc_here)
                .map_err(traced)?;
        }
        Ok(())
    }

    /// C (+)= A B by the path chosen for the shape; where cuBLAS refuses
    /// int8, float64 takes over (and is remembered for the shape).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_chosen(
        &self,
        m: usize,
        k: usize,
        n: usize,
        av: &CudaView<u64>,
        bv: &CudaView<u64>,
        cv: &mut CudaViewMut<u64>,
        accumulate: bool,
    ) -> Result<()> {
        let path = self.choose(m, k, n, av, bv)?;
        let r = self.gemm_path(path, m, k, n, av, bv, cv, accumulate);
        if let Err((e, written)) = r {
            // cuBLAS refused int8 for this shape. Before any chunk reached C
            // (the usual case: the shape itself is refused), or when C is
            // overwritten anyway, float64 redoes it; part-way through an
            // accumulating product the sum is lost.
            if path != GemmPath::I8Limb8 || matches!(e, EngineError::OutOfMemory(_)) {
                return Err(e);
            }
            if let Ok(mut t) = self.paths.lock() {
                t.insert((m, k, n), GemmPath::F64Limb16);
            }
            if accumulate && written {
                return Err(EngineError::Unavailable(format!(
                    "int8 GEMM failed part-way through an accumulating product: {e}"
                )));
            }
            untraced(self.gemm_path(GemmPath::F64Limb16, m, k, n, av, bv, cv, accumulate))?;
        }
        Ok(())
    }

    /// The path for (m, k, n): forced, remembered, or measured now (both
    /// paths run once into scratch; the faster is kept for the shape, and a
    /// path that fails counts as infinitely slow).
    pub(super) fn choose(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaView<u64>,
        b: &CudaView<u64>,
    ) -> Result<GemmPath> {
        if let Some(p) = self.forced {
            return Ok(p);
        }
        if let Some(p) = self
            .paths
            .lock()
            .ok()
            .and_then(|t| t.get(&(m, k, n)).copied())
        {
            return Ok(p);
        }
        let time = |p: GemmPath| -> Result<f64> {
            let mut scratch = self.alloc(m * n)?;
            let mut sv = scratch.slice_mut(0..m * n);
            self.synchronize()?;
            let t = Instant::now();
            untraced(self.gemm_path(p, m, k, n, a, b, &mut sv, false))?;
            self.synchronize()?;
            Ok(t.elapsed().as_secs_f64())
        };
        let f = time(GemmPath::F64Limb16)?;
        let i = time(GemmPath::I8Limb8).unwrap_or(f64::INFINITY);
        let p = if i < f {
            GemmPath::I8Limb8
        } else {
            GemmPath::F64Limb16
        };
        if let Ok(mut t) = self.paths.lock() {
            t.insert((m, k, n), p);
        }
        Ok(p)
    }

    /// C = A B on host vectors by one given path (benchmarks and tests).
    pub fn gemm_host(
        &self,
        path: Option<GemmPath>,
        m: usize,
        k: usize,
        n: usize,
        a: &[u64],
        b: &[u64],
    ) -> Result<Vec<u64>> {
        if a.len() < m * k || b.len() < k * n {
            return Err(EngineError::Invalid(
                "GEMM operands shorter than m k / k n".into(),
            ));
        }
        let (da, db) = (self.up(a)?, self.up(b)?);
        let mut c = self.alloc(m * n)?;
        if m * n == 0 {
            return Ok(Vec::new());
        }
        if k > 0 {
            let (av, bv) = (da.slice(0..m * k), db.slice(0..k * n));
            let p = match path {
                Some(p) => p,
                None => self.choose(m, k, n, &av, &bv)?,
            };
            let mut cv = c.slice_mut(0..m * n);
            untraced(self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false))?;
        }
        self.wrap(c, m * n).into_vec()
    }

    /// Seconds per ring GEMM of random operands already in GPU memory
    /// (copies excluded), over `reps` runs after one warm-up, and the path
    /// that ran (benchmarks/gpu_gemm.py).
    pub fn time_gemm(
        &self,
        path: Option<GemmPath>,
        m: usize,
        k: usize,
        n: usize,
        reps: usize,
    ) -> Result<(f64, GemmPath)> {
        let mut prg = Prg::new([7; 16]);
        let (a, b) = (
            Device::prg(self, &mut prg, m * k)?,
            Device::prg(self, &mut prg, k * n)?,
        );
        let (da, db) = (self.dv(&a)?, self.dv(&b)?);
        let (av, bv) = (da.slice(0..m * k), db.slice(0..k * n));
        let p = match path {
            Some(p) => p,
            None => self.choose(m, k, n, &av, &bv)?,
        };
        let mut c = self.alloc(m * n)?;
        let mut cv = c.slice_mut(0..m * n);
        untraced(self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false))?;
        self.synchronize()?;
        let t = Instant::now();
        for _ in 0..reps.max(1) {
            untraced(self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false))?;
        }
        self.synchronize()?;
        Ok((t.elapsed().as_secs_f64() / reps.max(1) as f64, p))
    }
}
