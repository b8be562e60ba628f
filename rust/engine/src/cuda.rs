//! The CUDA device (issue 8), part built: the kernel sources, compiled by
//! NVRTC at first use, and finding the driver at run time.
//!
//! What is here: every kernel family of `kernels/*.cu` is embedded in the
//! library (so the abi3 wheel needs no toolkit to build and carries its
//! kernels); `compile_all` compiles them with NVRTC through cudarc's dynamic
//! loading (libnvrtc is looked up at run time, and its absence is an error,
//! not a crash); `device_count()` finds the CUDA driver (`libcuda.so.1`) the
//! same way and returns 0 where there is none; `device_map` places the
//! parties on GPUs.
//!
//! `Cuda` is a first step of the device itself: it implements the `Device`
//! trait (ring GEMM by 16-bit limbs in cuBLAS DGEMM, im2col, col2im, pooling
//! sums, views) on one GPU, copying operands in and results out per call,
//! because the trait still passes host slices. What is not here yet: shares
//! resident in device buffers (the trait must own its buffer type first),
//! element-wise share arithmetic, PRG and binary circuits on the GPU (their
//! kernels exist), and the int8 tensor-core GEMM path (its limb kernels
//! exist). None of this has run on a GPU; the kernels' logic is checked on
//! the CPU (tests/test_cuda_kernels.py: NVRTC compiles every file, and a
//! host-C++ emulation matches the CPU device bit for bit).

/// (file name, source) of every file under `kernels/`.
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("ring.cu", include_str!("../../../kernels/ring.cu")),
    ("bits.cu", include_str!("../../../kernels/bits.cu")),
    ("prg.cu", include_str!("../../../kernels/prg.cu")),
    ("reduce.cu", include_str!("../../../kernels/reduce.cu")),
    ("conv.cu", include_str!("../../../kernels/conv.cu")),
    ("gemm.cu", include_str!("../../../kernels/gemm.cu")),
];

use crate::error::{EngineError, Result};

/// The source of kernel file `name` with its `#include "common.cuh"`
/// expanded, so NVRTC needs no include path.
pub fn expanded_source(name: &str) -> Result<String> {
    let find = |n: &str| {
        KERNEL_SOURCES
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| *v)
            .ok_or_else(|| EngineError::Invalid(format!("no kernel file {n:?}")))
    };
    let common = find("common.cuh")?;
    Ok(find(name)?.replace("#include \"common.cuh\"", common))
}

/// Compile every kernel file with NVRTC for `arch` (e.g. "compute_90"):
/// (file name, PTX size in bytes). An error names the file and carries
/// NVRTC's log; without libnvrtc it says so.
pub fn compile_all(arch: &'static str) -> Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    for (name, _) in KERNEL_SOURCES.iter().filter(|(n, _)| n.ends_with(".cu")) {
        out.push((name.to_string(), ptx(name, arch)?.len()));
    }
    Ok(out)
}

/// The PTX of kernel file `name` for `arch`, compiled by NVRTC at first use
/// and kept for the life of the process (every party's device reuses it).
pub fn ptx(name: &str, arch: &'static str) -> Result<String> {
    type Cache = std::sync::Mutex<std::collections::HashMap<(String, &'static str), String>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (name.to_string(), arch);
    if let Some(p) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(p);
    }
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(EngineError::Unavailable(
            "libnvrtc was not found (install the CUDA toolkit or `pip install nvidia-cuda-nvrtc` \
             and make it loadable)"
                .into(),
        ));
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        name: Some(name.to_string()),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    let p = cudarc::nvrtc::compile_ptx_with_opts(expanded_source(name)?, opts)
        .map_err(|e| EngineError::Unavailable(format!("{name} does not compile: {e:?}")))?
        .to_src();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, p.clone());
    }
    Ok(p)
}

/// Number of CUDA GPUs; 0 without a driver or a GPU (never an error).
pub fn device_count() -> usize {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return 0;
    }
    std::panic::catch_unwind(|| {
        cudarc::driver::result::init()
            .ok()
            .and_then(|_| cudarc::driver::CudaContext::device_count().ok())
            .map_or(0, |n| n.max(0) as usize)
    })
    .unwrap_or(0)
}

/// Which GPU each party uses: party i on GPU i when there are at least
/// three, all on GPU 0 otherwise; None without a GPU.
pub fn device_map(gpus: usize) -> Option<[usize; 3]> {
    match gpus {
        0 => None,
        1 | 2 => Some([0, 0, 0]),
        _ => Some([0, 1, 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_spread_over_three_gpus_or_share_one() {
        assert_eq!(device_map(0), None);
        assert_eq!(device_map(1), Some([0, 0, 0]));
        assert_eq!(device_map(2), Some([0, 0, 0]));
        assert_eq!(device_map(8), Some([0, 1, 2]));
    }

    #[test]
    fn includes_are_expanded_and_no_gpu_means_zero_devices() {
        let src = expanded_source("ring.cu").unwrap();
        assert!(!src.contains("#include") && src.contains("typedef unsigned long long u64"));
        assert!(expanded_source("nope.cu").is_err());
        // Any machine: a count, never a panic (0 on the CI machine).
        let _ = device_count();
    }

    #[test]
    fn a_missing_gpu_is_an_unavailable_error() {
        // Without a GPU (CI) GPU 0 is missing; with one, GPU `count` is.
        let missing = device_count();
        assert!(matches!(
            Cuda::new(missing),
            Err(EngineError::Unavailable(m)) if m.contains("no CUDA GPU")
        ));
        let cfg = crate::runtime::Config {
            device: crate::runtime::DeviceKind::Cuda,
            ..Default::default()
        };
        if missing == 0 {
            let err = crate::runtime::Session::new(cfg).err().unwrap();
            assert!(err.to_string().contains("needs an NVIDIA GPU"), "{err}");
        }
    }

    #[test]
    fn every_kernel_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cu") || n.ends_with(".cuh"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = KERNEL_SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}

// ---------------------------------------------------------------- device

use crate::device::{Conv2dGeom, Device};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// `Geom` of kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct KGeom {
    n: u64,
    c: u64,
    h: u64,
    w: u64,
    kh: u64,
    kw: u64,
    sh: u64,
    sw: u64,
    ph: u64,
    pw: u64,
    dh: u64,
    dw: u64,
}
// SAFETY: plain old data with the layout of the kernel's struct.
unsafe impl DeviceRepr for KGeom {}

/// `View` of kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct KView {
    ndim: u64,
    offset: u64,
    shape: [u64; 8],
    strides: [u64; 8],
}
// SAFETY: as above.
unsafe impl DeviceRepr for KView {}

fn kgeom(g: &Conv2dGeom) -> KGeom {
    let u = |x: usize| x as u64;
    KGeom {
        n: u(g.n),
        c: u(g.c),
        h: u(g.h),
        w: u(g.w),
        kh: u(g.kh),
        kw: u(g.kw),
        sh: u(g.stride.0),
        sw: u(g.stride.1),
        ph: u(g.padding.0),
        pw: u(g.padding.1),
        dh: u(g.dilation.0),
        dw: u(g.dilation.1),
    }
}

/// Largest K of one limb GEMM pass: entries of the shift-3 product stay
/// below 4 K 2^32 <= 2^53, exact in float64 (kernels/gemm.cu).
const LIMB16_MAX_K: usize = 1 << 19;

/// Launch kernel `name` over `n` items with the given arguments; a CUDA
/// error panics with the kernel's name (the runtime turns it into an error).
macro_rules! launch {
    ($dev:expr, $name:literal, $n:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $dev.stream.launch_builder($dev.f($name));
        $( b.arg($arg); )+
        // SAFETY: every call site passes the arguments of kernels/*.cu's
        // kernel `$name`, in order, with buffers of the lengths it reads or
        // writes.
        let r = unsafe { b.launch(Cuda::cfg($n)) };
        $dev.check(r, $name);
    }};
}

/// The CUDA device, first step: the `Device` trait's operations (ring GEMM
/// by 16-bit limbs in cuBLAS DGEMM, im2col, col2im, pooling sums, views)
/// run on the GPU, with operands copied in and results copied out on each
/// call, since the trait still passes host slices. Keeping shares resident
/// in GPU memory needs the trait to own its buffers (not done). A CUDA
/// error panics here and reaches Python as InternalError (the runtime
/// catches panics). Not yet run on any GPU.
pub struct Cuda {
    ordinal: usize,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    funcs: HashMap<&'static str, CudaFunction>,
}

fn cuda_err(what: &str, e: impl std::fmt::Debug) -> EngineError {
    EngineError::Unavailable(format!("CUDA: {what}: {e:?}"))
}

const FUNCTIONS: &[(&str, &[&str])] = &[
    ("conv.cu", &["im2col", "col2im", "window_sum", "gather"]),
    (
        "gemm.cu",
        &[
            "limbs16_split",
            "limbs16_combine",
            "concat_a_f64",
            "concat_b_f64",
        ],
    ),
];

impl Cuda {
    /// Open GPU `ordinal`, compile the kernels it needs (NVRTC, for the
    /// card's compute capability) and load them.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        if device_count() <= ordinal {
            return Err(EngineError::Unavailable(format!(
                "no CUDA GPU {ordinal} (found {})",
                device_count()
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("open the GPU", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| cuda_err("compute capability", e))?;
        let arch: &'static str = match (major, minor) {
            (9, _) | (10.., _) => "compute_90",
            (8, 9) => "compute_89",
            (8, 6) => "compute_86",
            (8, _) => "compute_80",
            _ => "compute_70",
        };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_err("cuBLAS", e))?;
        let mut funcs = HashMap::new();
        for (file, names) in FUNCTIONS {
            let ptx = cudarc::nvrtc::Ptx::from_src(ptx(file, arch)?);
            let module = ctx.load_module(ptx).map_err(|e| cuda_err(file, e))?;
            for name in names.iter() {
                let f = module.load_function(name).map_err(|e| cuda_err(name, e))?;
                funcs.insert(*name, f);
            }
        }
        Ok(Cuda {
            ordinal,
            stream,
            blas: Mutex::new(blas),
            funcs,
        })
    }

    fn f(&self, name: &str) -> &CudaFunction {
        self.funcs
            .get(name)
            .unwrap_or_else(|| panic!("CUDA kernel {name} not loaded"))
    }

    fn up<T: DeviceRepr + Copy>(&self, x: &[T]) -> CudaSlice<T> {
        self.stream
            .memcpy_stod(x)
            .unwrap_or_else(|e| panic!("CUDA GPU {}: copy to device: {e:?}", self.ordinal))
    }

    fn zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(&self, n: usize) -> CudaSlice<T> {
        self.stream
            .alloc_zeros(n.max(1))
            .unwrap_or_else(|e| panic!("CUDA GPU {}: allocate: {e:?}", self.ordinal))
    }

    fn down(&self, x: &CudaSlice<u64>, n: usize) -> Vec<u64> {
        let mut v = self
            .stream
            .memcpy_dtov(x)
            .unwrap_or_else(|e| panic!("CUDA GPU {}: copy to host: {e:?}", self.ordinal));
        v.truncate(n);
        v
    }

    fn cfg(n: usize) -> LaunchConfig {
        LaunchConfig::for_num_elems(n.clamp(1, 1 << 30) as u32)
    }

    fn check<T>(&self, r: std::result::Result<T, impl std::fmt::Debug>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("CUDA GPU {}: {what}: {e:?}", self.ordinal))
    }

    /// C (+)= A B for one K chunk (K <= LIMB16_MAX_K), all on the device.
    fn gemm_chunk(&self, m: usize, k: usize, n: usize, a: &[u64], b: &[u64]) -> CudaSlice<f64> {
        let (da, db) = (self.up(a), self.up(b));
        let mut la = self.zeros::<f64>(4 * m * k);
        let mut lb = self.zeros::<f64>(4 * k * n);
        let (mk, kn) = ((m * k) as u64, (k * n) as u64);
        launch!(self, "limbs16_split", m * k, &da, &mk, &mut la);
        launch!(self, "limbs16_split", k * n, &db, &kn, &mut lb);
        let mut parts = self.zeros::<f64>(4 * m * n);
        let blas = self
            .blas
            .lock()
            .unwrap_or_else(|_| panic!("cuBLAS handle poisoned"));
        for s in 0..4u32 {
            let kk = (s as usize + 1) * k;
            let mut ca = self.zeros::<f64>(m * kk);
            let mut cb = self.zeros::<f64>(kk * n);
            let (mu, ku, nu) = (m as u64, k as u64, n as u64);
            launch!(self, "concat_a_f64", m * kk, &la, &mu, &ku, &s, &mut ca);
            launch!(self, "concat_b_f64", kk * n, &lb, &ku, &nu, &s, &mut cb);
            // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS
            // multiplies cb (n x kk, ld n) by ca (kk x m, ld kk).
            let cfg = GemmConfig {
                transa: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                transb: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                m: n as i32,
                n: m as i32,
                k: kk as i32,
                alpha: 1.0f64,
                lda: n as i32,
                ldb: kk as i32,
                beta: 0.0f64,
                ldc: n as i32,
            };
            let mut out = parts.slice_mut(s as usize * m * n..(s as usize + 1) * m * n);
            // SAFETY: dimensions and leading dimensions match the buffers.
            let r = unsafe { blas.gemm(cfg, &cb, &ca, &mut out) };
            self.check(r, "cuBLAS DGEMM");
        }
        parts
    }
}

impl Device for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
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
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                c.fill(0);
            }
            return;
        }
        // K in chunks that keep the float64 limb products exact; each chunk
        // accumulates into C on the device (C is uploaded only to add to it).
        let mut dc = if accumulate {
            self.up(c)
        } else {
            self.zeros::<u64>(m * n)
        };
        let (mn, one) = ((m * n) as u64, 1u32);
        let step = LIMB16_MAX_K.min(k);
        for k0 in (0..k).step_by(step) {
            let kc = step.min(k - k0);
            let a_chunk: std::borrow::Cow<[u64]> = if kc == k {
                std::borrow::Cow::Borrowed(a)
            } else {
                (0..m)
                    .flat_map(|i| a[i * k + k0..i * k + k0 + kc].iter().copied())
                    .collect()
            };
            let parts = self.gemm_chunk(m, kc, n, &a_chunk, &b[k0 * n..(k0 + kc) * n]);
            launch!(self, "limbs16_combine", m * n, &parts, &mn, &one, &mut dc);
        }
        c.copy_from_slice(&self.down(&dc, m * n));
    }

    fn im2col(&self, x: &[u64], g: &Conv2dGeom, c0: usize, cg: usize) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let len = cg * g.kh * g.kw * g.n * oh * ow;
        if len == 0 {
            return Vec::new();
        }
        let dx = self.up(x);
        let mut out = self.zeros::<u64>(len);
        let (kg, c0, cg) = (kgeom(g), c0 as u64, cg as u64);
        launch!(self, "im2col", len, &dx, &kg, &c0, &cg, &mut out);
        self.down(&out, len)
    }

    fn col2im(&self, cols: &[u64], g: &Conv2dGeom) -> Vec<u64> {
        let len = g.n * g.c * g.h * g.w;
        if len == 0 || cols.is_empty() {
            return vec![0; len];
        }
        let dc = self.up(cols);
        let mut out = self.zeros::<u64>(len);
        let kg = kgeom(g);
        launch!(self, "col2im", len, &dc, &kg, &mut out);
        self.down(&out, len)
    }

    fn window_sum(&self, x: &[u64], g: &Conv2dGeom) -> Vec<u64> {
        let (oh, ow) = g.out_hw();
        let len = g.n * g.c * oh * ow;
        if len == 0 {
            return Vec::new();
        }
        let dx = self.up(x);
        let mut out = self.zeros::<u64>(len);
        let kg = kgeom(g);
        launch!(self, "window_sum", len, &dx, &kg, &mut out);
        self.down(&out, len)
    }

    fn gather(&self, src: &[u64], shape: &[usize], offset: usize, strides: &[usize]) -> Vec<u64> {
        let n = crate::ring::numel(shape);
        if n == 0 {
            return Vec::new();
        }
        if shape.len() > 8 || src.is_empty() {
            // More dims than the kernel's view holds: the CPU does it.
            return crate::device::Cpu.gather(src, shape, offset, strides);
        }
        let mut v = KView {
            ndim: shape.len() as u64,
            offset: offset as u64,
            shape: [1; 8],
            strides: [0; 8],
        };
        for (d, (&s, &st)) in shape.iter().zip(strides).enumerate() {
            v.shape[d] = s as u64;
            v.strides[d] = st as u64;
        }
        let ds = self.up(src);
        let mut out = self.zeros::<u64>(n);
        let nn = n as u64;
        launch!(self, "gather", n, &ds, &v, &mut out, &nn);
        self.down(&out, n)
    }
}
