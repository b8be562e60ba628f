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
//! `Cuda` is the device itself: every operation of the `Device` trait runs
//! as kernels on one GPU over `GpuBuf`s, so shares stay in GPU memory from
//! `share` to `reveal` (the only host copies are a party's own input, the
//! opened result, and messages over a network transport; the local
//! transport hands GPU buffers over as they are). The ring GEMM runs two
//! ways, 16-bit limbs in cuBLAS DGEMM and 8-bit limbs in int8 GemmEx with
//! int32 accumulation (tensor cores), chosen per shape by timing both the
//! first time the shape is seen.
//!
//! None of this has run on a GPU yet (no GPU was lent to the sessions that
//! wrote it). What is checked without one: NVRTC compiles every kernel file,
//! a host-C++ emulation of each kernel matches the CPU device bit for bit
//! (tests/test_cuda_kernels.py), and every protocol runs through the same
//! trait on the CPU device, so the protocol code holds no host-only step.

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

/// The high-water mark of GPU memory in use by this process's stream-ordered
/// allocations on GPU `ordinal` (the default memory pool, which the engine
/// allocates from), in bytes; `reset` restarts it from the current use.
pub fn memory_peak(ordinal: usize, reset: bool) -> Result<u64> {
    use cudarc::driver::sys;
    if device_count() <= ordinal {
        return Err(EngineError::Unavailable(format!(
            "no CUDA GPU {ordinal} (found {})",
            device_count()
        )));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("open the GPU", e))?;
    ctx.bind_to_thread().map_err(|e| cuda_err("bind", e))?;
    let ok = |r: sys::CUresult, what: &str| {
        if r == sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(cuda_err(what, r))
        }
    };
    let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
    let mut dev: sys::CUdevice = 0;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut high: u64 = 0;
    // SAFETY: plain driver queries with valid out-pointers; the context is
    // current on this thread.
    unsafe {
        ok(sys::cuDeviceGet(&mut dev, ordinal as i32), "cuDeviceGet")?;
        ok(
            sys::cuDeviceGetDefaultMemPool(&mut pool, dev),
            "default memory pool",
        )?;
        ok(
            sys::cuMemPoolGetAttribute(pool, attr, &mut high as *mut u64 as *mut _),
            "pool attribute",
        )?;
        if reset {
            let mut zero: u64 = 0;
            ok(
                sys::cuMemPoolSetAttribute(pool, attr, &mut zero as *mut u64 as *mut _),
                "pool attribute",
            )?;
        }
    }
    Ok(high)
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

use crate::device::{Buf, Conv2dGeom, Device, Op1, Op2};
use crate::prg::Prg;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr,
    DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Ring elements in GPU memory. The allocation holds at least one word (a
/// zero-length allocation is an error in CUDA); `len` is the logical length.
pub struct GpuBuf {
    data: CudaSlice<u64>,
    len: usize,
}

impl GpuBuf {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Copy to the host (waits for the work that writes the buffer).
    pub fn to_vec(&self) -> Vec<u64> {
        let mut v = self
            .data
            .stream()
            .memcpy_dtov(&self.data)
            .unwrap_or_else(|e| panic!("CUDA: copy to host: {e:?}"));
        v.truncate(self.len);
        v
    }
}

impl Clone for GpuBuf {
    fn clone(&self) -> Self {
        let data = self
            .data
            .stream()
            .clone_dtod(&self.data)
            .unwrap_or_else(|e| panic!("CUDA: copy on device: {e:?}"));
        GpuBuf {
            data,
            len: self.len,
        }
    }
}

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

/// A view of at most 8 dims (callers with more dims merge or fall back).
fn kview(shape: &[usize], offset: usize, strides: &[usize]) -> Option<KView> {
    if shape.len() > 8 {
        return None;
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
    Some(v)
}

fn op2_code(op: Op2) -> u32 {
    match op {
        Op2::Add => 0,
        Op2::Sub => 1,
        Op2::Mul => 2,
        Op2::Xor => 3,
        Op2::And => 4,
    }
}

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

/// Launch kernel `name` over `n` items with the given arguments; a CUDA
/// error panics with the kernel's name (the runtime turns it into an error).
macro_rules! launch {
    ($dev:expr, $name:expr, $n:expr, $($arg:expr),+ $(,)?) => {{
        let given = [$(stringify!($arg)),+].len();
        let want = kernel_signature($name).map_or(0, |s| s.len());
        assert_eq!(given, want, "CUDA kernel {}: {given} arguments for {want} parameters", $name);
        let mut b = $dev.stream.launch_builder($dev.f($name));
        $( b.arg($arg); )+
        // SAFETY: every call site passes the arguments of kernels/*.cu's
        // kernel `$name`, in order, with buffers of the lengths it reads or
        // writes.
        let r = unsafe { b.launch(Cuda::cfg($n)) };
        $dev.check(r, $name);
    }};
}

/// The CUDA device: one GPU, one stream per party (cudarc orders work on
/// buffers shared between streams with events, so a buffer handed to another
/// party is read only after it is written). A CUDA error, an out-of-memory
/// included, panics here and reaches Python as InternalError (the runtime
/// catches panics). Not yet run on any GPU.
pub struct Cuda {
    ordinal: usize,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    funcs: HashMap<&'static str, CudaFunction>,
    /// AES round keys on the device, by key.
    round_keys: Mutex<HashMap<[u8; 16], CudaSlice<u8>>>,
    /// The faster GEMM path per (m, k, n), measured at first use; a forced
    /// path from CRYPTGPU_GEMM=f64|int8 overrides it.
    paths: Mutex<HashMap<(usize, usize, usize), GemmPath>>,
    forced: Option<GemmPath>,
}

fn cuda_err(what: &str, e: impl std::fmt::Debug) -> EngineError {
    EngineError::Unavailable(format!("CUDA: {what}: {e:?}"))
}

/// A kernel's name and its parameter kinds.
pub type KernelSig = (&'static str, &'static [&'static str]);

/// Every kernel the device launches, by file, with the parameters each
/// launch site passes: "p" a device pointer, "u64"/"u32" a scalar, "geom" /
/// "view" the structs of conv.cu. `launch!` checks the argument count at
/// every launch, and tests/test_cuda_kernels.py checks this table against
/// the parameters NVRTC compiles each kernel to, so a launch site and its
/// kernel cannot silently disagree.
pub const FUNCTIONS: &[(&str, &[KernelSig])] = &[
    (
        "ring.cu",
        &[
            ("ring_map2", &["p", "p", "p", "u64", "u32"]),
            ("ring_map2_into", &["p", "p", "u64", "u32"]),
            ("ring_div_floor", &["p", "u64", "p", "u64"]),
            ("ring_add_scalar", &["p", "u64", "p", "u64"]),
            ("ring_mul_scalar", &["p", "u64", "p", "u64"]),
            ("ring_neg", &["p", "p", "u64"]),
            ("rss_mul_local", &["p", "p", "p", "p", "p", "p", "u64"]),
        ],
    ),
    (
        "bits.cu",
        &[
            ("rss_and_local", &["p", "p", "p", "p", "p", "p", "u64"]),
            ("to_planes", &["p", "u64", "u64", "p"]),
            ("from_planes", &["p", "u64", "u64", "p"]),
            ("expand_bits", &["p", "u64", "u64", "p"]),
        ],
    ),
    (
        "prg.cu",
        &[
            ("aes128_key_expand", &["p", "p"]),
            ("aes128_ctr_fill", &["p", "u64", "u64", "p", "u64"]),
        ],
    ),
    (
        "reduce.cu",
        &[("sum_axis", &["p", "u64", "u64", "u64", "p"])],
    ),
    (
        "conv.cu",
        &[
            ("im2col", &["p", "geom", "u64", "u64", "p"]),
            ("col2im", &["p", "geom", "p"]),
            ("window_sum", &["p", "geom", "p"]),
            ("gather", &["p", "view", "p", "u64"]),
            ("scatter", &["p", "view", "p", "u64"]),
            ("index_gather", &["p", "p", "p", "u64"]),
            ("index_scatter_add", &["p", "p", "p", "u64"]),
        ],
    ),
    (
        "gemm.cu",
        &[
            ("limbs16_split", &["p", "u64", "p"]),
            ("limbs16_combine", &["p", "u64", "u32", "p"]),
            ("limbs8_split", &["p", "u64", "p"]),
            ("limbs8_combine", &["p", "u64", "u32", "p"]),
        ],
    ),
];

/// The parameter list of kernel `name` in `FUNCTIONS`.
pub fn kernel_signature(name: &str) -> Option<&'static [&'static str]> {
    FUNCTIONS
        .iter()
        .flat_map(|(_, ks)| ks.iter())
        .find(|(k, _)| *k == name)
        .map(|(_, sig)| *sig)
}

/// A device operand: borrowed when already on this GPU, uploaded otherwise.
enum Dv<'a> {
    B(&'a CudaSlice<u64>),
    O(CudaSlice<u64>),
}

impl std::ops::Deref for Dv<'_> {
    type Target = CudaSlice<u64>;
    fn deref(&self) -> &CudaSlice<u64> {
        match self {
            Dv::B(s) => s,
            Dv::O(s) => s,
        }
    }
}

impl Cuda {
    /// Open GPU `ordinal`, compile the kernels (NVRTC, for the card's compute
    /// capability) and load them.
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
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err("create a stream", e))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_err("cuBLAS", e))?;
        let mut funcs = HashMap::new();
        for (file, kernels) in FUNCTIONS {
            let ptx = cudarc::nvrtc::Ptx::from_src(ptx(file, arch)?);
            let module = ctx.load_module(ptx).map_err(|e| cuda_err(file, e))?;
            for (name, _) in kernels.iter() {
                let f = module.load_function(name).map_err(|e| cuda_err(name, e))?;
                funcs.insert(*name, f);
            }
        }
        let forced = match std::env::var("CRYPTGPU_GEMM").as_deref() {
            Ok("f64") => Some(GemmPath::F64Limb16),
            Ok("int8") => Some(GemmPath::I8Limb8),
            Ok("") | Ok("auto") | Err(_) => None,
            Ok(other) => {
                return Err(EngineError::Invalid(format!(
                    "CRYPTGPU_GEMM must be f64, int8 or auto, got {other:?}"
                )))
            }
        };
        Ok(Cuda {
            ordinal,
            stream,
            blas: Mutex::new(blas),
            funcs,
            round_keys: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
            forced,
        })
    }

    fn f(&self, name: &str) -> &CudaFunction {
        self.funcs
            .get(name)
            .unwrap_or_else(|| panic!("CUDA kernel {name} not loaded"))
    }

    fn up<T: DeviceRepr + Copy + cudarc::driver::ValidAsZeroBits>(&self, x: &[T]) -> CudaSlice<T> {
        if x.is_empty() {
            return self.zeros::<T>(1);
        }
        self.stream
            .memcpy_stod(x)
            .unwrap_or_else(|e| panic!("CUDA GPU {}: copy to device: {e:?}", self.ordinal))
    }

    fn zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(&self, n: usize) -> CudaSlice<T> {
        self.stream
            .alloc_zeros(n.max(1))
            .unwrap_or_else(|e| panic!("CUDA GPU {}: allocate {n} elements: {e:?}", self.ordinal))
    }

    /// 256 threads per block (within the register budget of any kernel
    /// here, the AES one included; 1024 might not be) and at most 2^20
    /// blocks: every kernel loops grid-stride over its items.
    fn cfg(n: usize) -> LaunchConfig {
        const THREADS: usize = 256;
        let blocks = n.div_ceil(THREADS).clamp(1, 1 << 20);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn check<T>(&self, r: std::result::Result<T, impl std::fmt::Debug>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("CUDA GPU {}: {what}: {e:?}", self.ordinal))
    }

    fn wrap(&self, data: CudaSlice<u64>, len: usize) -> Buf {
        Buf::Cuda(GpuBuf { data, len })
    }

    /// The device memory of an operand (uploading a host buffer).
    fn dv<'a>(&self, b: &'a Buf) -> Dv<'a> {
        match b {
            Buf::Cuda(g) => Dv::B(&g.data),
            Buf::Host(v) => Dv::O(self.up(v)),
        }
    }

    /// The device memory of an output operand (a host buffer moves here).
    fn dm<'a>(&self, b: &'a mut Buf) -> &'a mut CudaSlice<u64> {
        if let Buf::Host(v) = b {
            let len = v.len();
            *b = self.wrap(self.up(v), len);
        }
        match b {
            Buf::Cuda(g) => &mut g.data,
            Buf::Host(_) => unreachable!("converted above"),
        }
    }

    fn alloc(&self, n: usize) -> CudaSlice<u64> {
        self.zeros::<u64>(n)
    }

    /// One K chunk of C (+)= A B by limbs (kernels/gemm.cu): split A and B
    /// into `limbs` limbs of type L; partial s (the weight-2^(w s) term) is
    /// sum_{i <= s} A_i B_{s-i}, one cuBLAS call per pair accumulating into
    /// partials of type P (`mm(a, b, out, accumulate)`); then recombine mod
    /// 2^64. Accumulating in place needs no concatenated copies of the limbs.
    /// `names`: the split and combine kernels.
    #[allow(clippy::too_many_arguments)]
    fn gemm_limbs<L, P>(
        &self,
        names: [&'static str; 2],
        limbs: usize,
        (m, k, n): (usize, usize, usize),
        a: &CudaView<u64>,
        b: &CudaView<u64>,
        c: &mut CudaViewMut<u64>,
        acc: bool,
        mm: impl Fn(
            &CudaBlas,
            &CudaView<L>,
            &CudaView<L>,
            &mut CudaViewMut<P>,
            bool,
        ) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String>
    where
        L: DeviceRepr + cudarc::driver::ValidAsZeroBits,
        P: DeviceRepr + cudarc::driver::ValidAsZeroBits,
    {
        let [split, combine] = names;
        let (mk, kn, mn) = (m * k, k * n, m * n);
        let mut la = self.zeros::<L>(limbs * mk);
        let mut lb = self.zeros::<L>(limbs * kn);
        let (mku, knu) = (mk as u64, kn as u64);
        launch!(self, split, mk, a, &mku, &mut la);
        launch!(self, split, kn, b, &knu, &mut lb);
        let mut parts = self.zeros::<P>(limbs * mn);
        {
            let blas = self
                .blas
                .lock()
                .unwrap_or_else(|_| panic!("cuBLAS handle poisoned"));
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
    ) -> std::result::Result<(), String> {
        use cudarc::cublas::sys::{
            cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType,
        };
        match path {
            GemmPath::F64Limb16 => {
                let names = ["limbs16_split", "limbs16_combine"];
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
                            .map_err(|e| format!("cuBLAS DGEMM: {e:?}"))
                    },
                )
            }
            GemmPath::I8Limb8 => {
                let names = ["limbs8_split", "limbs8_combine"];
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
                        r.map_err(|e| format!("cuBLAS int8 GemmEx {m}x{k}x{n}: {e:?}"))
                    },
                )
            }
        }
    }

    /// C (+)= A B with A, B contiguous on the device, K chunked for the path.
    #[allow(clippy::too_many_arguments)]
    fn gemm_path(
        &self,
        path: GemmPath,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaView<u64>,
        b: &CudaView<u64>,
        c: &mut CudaViewMut<u64>,
        acc: bool,
    ) -> std::result::Result<(), String> {
        let step = match path {
            GemmPath::F64Limb16 => LIMB16_MAX_K,
            GemmPath::I8Limb8 => LIMB8_MAX_K,
        }
        .min(k);
        for k0 in (0..k).step_by(step) {
            let kc = step.min(k - k0);
            let first = k0 == 0;
            let acc_here = acc || !first;
            let b_ref = b.slice(k0 * n..(k0 + kc) * n);
            // With several chunks, A's rows restricted to columns
            // [k0, k0 + kc) are gathered into a contiguous block.
            let a_chunk = (kc < k).then(|| {
                let v = kview(&[m, kc], k0, &[k, 1]).unwrap_or_else(|| unreachable!("2 dims"));
                let mut out = self.alloc(m * kc);
                let nn = (m * kc) as u64;
                launch!(self, "gather", m * kc, a, &v, &mut out, &nn);
                out
            });
            let a_ref = match &a_chunk {
                Some(blk) => blk.slice(0..m * kc),
                None => a.slice(0..m * k),
            };
            self.gemm_chunk(path, m, kc, n, &a_ref, &b_ref, c, acc_here)?;
        }
        Ok(())
    }

    /// The path for (m, k, n): forced, remembered, or measured now (both
    /// paths run once into scratch; the faster is kept for the shape).
    fn choose(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaView<u64>,
        b: &CudaView<u64>,
    ) -> GemmPath {
        if let Some(p) = self.forced {
            return p;
        }
        if let Some(p) = self
            .paths
            .lock()
            .ok()
            .and_then(|t| t.get(&(m, k, n)).copied())
        {
            return p;
        }
        let time = |p: GemmPath| -> Option<f64> {
            let mut scratch = self.alloc(m * n);
            let mut sv = scratch.slice_mut(0..m * n);
            self.synchronize();
            let t = Instant::now();
            self.gemm_path(p, m, k, n, a, b, &mut sv, false).ok()?;
            self.synchronize();
            Some(t.elapsed().as_secs_f64())
        };
        let f = time(GemmPath::F64Limb16).unwrap_or(f64::INFINITY);
        let i = time(GemmPath::I8Limb8).unwrap_or(f64::INFINITY);
        let p = if i < f {
            GemmPath::I8Limb8
        } else {
            GemmPath::F64Limb16
        };
        if let Ok(mut t) = self.paths.lock() {
            t.insert((m, k, n), p);
        }
        p
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
        let (da, db) = (self.up(a), self.up(b));
        let mut c = self.alloc(m * n);
        if m * n == 0 {
            return Ok(Vec::new());
        }
        if k > 0 {
            let (av, bv) = (da.slice(0..m * k), db.slice(0..k * n));
            let p = path.unwrap_or_else(|| self.choose(m, k, n, &av, &bv));
            let mut cv = c.slice_mut(0..m * n);
            self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false)
                .map_err(EngineError::Unavailable)?;
        }
        Ok(self.wrap(c, m * n).into_vec())
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
            Device::prg(self, &mut prg, m * k),
            Device::prg(self, &mut prg, k * n),
        );
        let (da, db) = (self.dv(&a), self.dv(&b));
        let (av, bv) = (da.slice(0..m * k), db.slice(0..k * n));
        let p = path.unwrap_or_else(|| self.choose(m, k, n, &av, &bv));
        let mut c = self.alloc(m * n);
        let mut cv = c.slice_mut(0..m * n);
        self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false)
            .map_err(EngineError::Unavailable)?;
        self.synchronize();
        let t = Instant::now();
        for _ in 0..reps.max(1) {
            self.gemm_path(p, m, k, n, &av, &bv, &mut cv, false)
                .map_err(EngineError::Unavailable)?;
        }
        self.synchronize();
        Ok((t.elapsed().as_secs_f64() / reps.max(1) as f64, p))
    }

    /// The local step of a replicated product or AND (kernel `name` of
    /// ring.cu / bits.cu) over the first r.len() words of x0, x1, y0, y1.
    fn rss_local(&self, name: &'static str, xy: [&Buf; 4], r: Buf) -> Buf {
        let n = r.len();
        let [a, b, c, d] = xy.map(|v| self.dv(v));
        let e = self.dv(&r);
        let mut out = self.alloc(n);
        let nn = n as u64;
        launch!(self, name, n, &*a, &*b, &*c, &*d, &*e, &mut out, &nn);
        self.wrap(out, n)
    }

    /// Make sure all queued work is done (benchmarks time with this).
    pub fn synchronize(&self) {
        self.check(self.stream.synchronize(), "synchronize");
    }
}

impl Device for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn upload(&self, v: Vec<u64>) -> Buf {
        let n = v.len();
        self.wrap(self.up(&v), n)
    }

    fn adopt(&self, b: Buf) -> Buf {
        match b {
            Buf::Host(v) => self.upload(v),
            // Another party's GPU buffer: the same GPU (one context) needs
            // nothing; cudarc's events order the use after the write. With
            // one GPU per party the buffer is copied to this GPU.
            Buf::Cuda(g) => {
                if g.data.stream().context().ordinal() == self.ordinal {
                    Buf::Cuda(g)
                } else {
                    self.upload(g.to_vec())
                }
            }
        }
    }

    fn zeros(&self, n: usize) -> Buf {
        self.wrap(self.alloc(n), n)
    }

    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Buf {
        let n = a.len();
        let (da, db) = (self.dv(a), self.dv(b));
        let mut out = self.alloc(n);
        let (nn, code) = (n as u64, op2_code(op));
        launch!(self, "ring_map2", n, &*da, &*db, &mut out, &nn, &code);
        self.wrap(out, n)
    }

    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf) {
        let n = dst.len();
        let ds = self.dv(src);
        let dd = self.dm(dst);
        let (nn, code) = (n as u64, op2_code(op));
        launch!(self, "ring_map2_into", n, dd, &*ds, &nn, &code);
    }

    fn map1(&self, op: Op1, a: &Buf) -> Buf {
        let n = a.len();
        let da = self.dv(a);
        let mut out = self.alloc(n);
        let nn = n as u64;
        match op {
            Op1::Neg => launch!(self, "ring_neg", n, &*da, &mut out, &nn),
            Op1::AddScalar(s) => launch!(self, "ring_add_scalar", n, &*da, &s, &mut out, &nn),
            Op1::MulScalar(s) => launch!(self, "ring_mul_scalar", n, &*da, &s, &mut out, &nn),
            Op1::DivFloor(d) => launch!(self, "ring_div_floor", n, &*da, &d, &mut out, &nn),
        }
        self.wrap(out, n)
    }

    fn prg(&self, prg: &mut Prg, n: usize) -> Buf {
        let key = prg.key();
        let c0 = prg.reserve(n);
        let mut keys = self
            .round_keys
            .lock()
            .unwrap_or_else(|_| panic!("round key cache poisoned"));
        let rk = keys.entry(key).or_insert_with(|| {
            let kd = self.up(&key);
            let mut rk = self.zeros::<u8>(176);
            launch!(self, "aes128_key_expand", 1, &kd, &mut rk);
            rk
        });
        let mut out = self.alloc(n);
        let (lo, hi, nn) = (c0 as u64, (c0 >> 64) as u64, n as u64);
        launch!(
            self,
            "aes128_ctr_fill",
            n.div_ceil(2),
            rk,
            &lo,
            &hi,
            &mut out,
            &nn
        );
        self.wrap(out, n)
    }

    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf {
        self.rss_local("rss_mul_local", [x0, x1, y0, y1], r)
    }

    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Buf {
        self.rss_local("rss_and_local", [x0, x1, y0, y1], r)
    }

    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Buf {
        let total: usize = parts.iter().map(|p| p.2).sum();
        let mut out = self.alloc(total);
        let mut at = 0;
        for (b, off, len) in parts {
            if *len > 0 {
                let src = self.dv(b);
                let mut dst = out.slice_mut(at..at + len);
                let r = self
                    .stream
                    .memcpy_dtod(&src.slice(*off..off + len), &mut dst);
                self.check(r, "copy on device");
            }
            at += len;
        }
        self.wrap(out, total)
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
        if len == 0 {
            return;
        }
        let s = self.dv(src);
        let sv = s.slice(soff..soff + len);
        let d = self.dm(dst);
        let mut dv = d.slice_mut(doff..doff + len);
        match op {
            None => {
                let r = self.stream.memcpy_dtod(&sv, &mut dv);
                self.check(r, "copy on device");
            }
            Some(op) => {
                let (nn, code) = (len as u64, op2_code(op));
                launch!(self, "ring_map2_into", len, &mut dv, &sv, &nn, &code);
            }
        }
    }

    fn to_planes(&self, x: &Buf) -> Buf {
        let n = x.len();
        let nw = n.div_ceil(64);
        let dx = self.dv(x);
        let mut out = self.alloc(64 * nw);
        let (nn, nwu) = (n as u64, nw as u64);
        launch!(self, "to_planes", nw, &*dx, &nn, &nwu, &mut out);
        self.wrap(out, 64 * nw)
    }

    fn unslice_planes(&self, planes: &Buf, n: usize) -> Buf {
        let nw = n.div_ceil(64);
        let dp = self.dv(planes);
        let mut out = self.alloc(n);
        let (nn, nwu) = (n as u64, nw as u64);
        launch!(self, "from_planes", nw, &*dp, &nn, &nwu, &mut out);
        self.wrap(out, n)
    }

    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Buf {
        let dp = self.dv(plane);
        let mut out = self.alloc(n * reps);
        let (nn, r) = (n as u64, reps as u64);
        launch!(self, "expand_bits", n * reps, &*dp, &nn, &r, &mut out);
        self.wrap(out, n * reps)
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
        if m == 0 || n == 0 {
            return;
        }
        let (ca, coff) = c;
        let dc = self.dm(ca);
        if k == 0 {
            if !accumulate {
                let mut v = dc.slice_mut(coff..coff + m * n);
                self.check(self.stream.memset_zeros(&mut v), "memset");
            }
            return;
        }
        let (da, db) = (self.dv(a.0), self.dv(b.0));
        let av = da.slice(a.1..a.1 + m * k);
        let bv = db.slice(b.1..b.1 + k * n);
        let path = self.choose(m, k, n, &av, &bv);
        let mut cv = dc.slice_mut(coff..coff + m * n);
        if self
            .gemm_path(path, m, k, n, &av, &bv, &mut cv, accumulate)
            .is_err()
        {
            // cuBLAS refused int8 for this shape (the chunks before the
            // refusal may have run): redo it in float64, which always works.
            if path == GemmPath::I8Limb8 {
                if let Ok(mut t) = self.paths.lock() {
                    t.insert((m, k, n), GemmPath::F64Limb16);
                }
            }
            assert!(
                !accumulate || path != GemmPath::I8Limb8,
                "int8 GEMM failed part-way through an accumulating product"
            );
            self.gemm_path(GemmPath::F64Limb16, m, k, n, &av, &bv, &mut cv, accumulate)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Buf {
        let (oh, ow) = g.out_hw();
        let len = cg * g.kh * g.kw * g.n * oh * ow;
        let dx = self.dv(x);
        let mut out = self.alloc(len);
        if len > 0 {
            let (kg, c0, cg) = (kgeom(g), c0 as u64, cg as u64);
            launch!(self, "im2col", len, &*dx, &kg, &c0, &cg, &mut out);
        }
        self.wrap(out, len)
    }

    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Buf {
        let len = g.n * g.c * g.h * g.w;
        let dc = self.dv(cols);
        let mut out = self.alloc(len);
        if len > 0 && !cols.is_empty() {
            let kg = kgeom(g);
            launch!(self, "col2im", len, &*dc, &kg, &mut out);
        }
        self.wrap(out, len)
    }

    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Buf {
        let (oh, ow) = g.out_hw();
        let len = g.n * g.c * oh * ow;
        let dx = self.dv(x);
        let mut out = self.alloc(len);
        if len > 0 {
            let kg = kgeom(g);
            launch!(self, "window_sum", len, &*dx, &kg, &mut out);
        }
        self.wrap(out, len)
    }

    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Buf {
        let n = crate::ring::numel(shape);
        if n == 0 {
            return self.wrap(self.alloc(0), 0);
        }
        let Some(v) = kview(shape, offset, strides) else {
            // More dims than the kernel's view holds: the host does it.
            let h = crate::device::host::gather(&src.to_vec(), shape, offset, strides);
            return self.upload(h);
        };
        let ds = self.dv(src);
        let mut out = self.alloc(n);
        let nn = n as u64;
        launch!(self, "gather", n, &*ds, &v, &mut out, &nn);
        self.wrap(out, n)
    }

    fn scatter(&self, src: &Buf, dst: &mut Buf, shape: &[usize], offset: usize, strides: &[usize]) {
        let n = crate::ring::numel(shape);
        if n == 0 {
            return;
        }
        let Some(v) = kview(shape, offset, strides) else {
            let mut h = dst.to_vec();
            crate::device::host::scatter(&src.to_vec(), &mut h, shape, offset, strides);
            *dst = self.upload(h);
            return;
        };
        let ds = self.dv(src);
        let dd = self.dm(dst);
        let nn = n as u64;
        launch!(self, "scatter", n, &*ds, &v, dd, &nn);
    }

    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Buf {
        let n = idx.len();
        let di = self.up(&idx.iter().map(|&i| i as u64).collect::<Vec<u64>>());
        let ds = self.dv(src);
        let mut out = self.alloc(n);
        let nn = n as u64;
        launch!(self, "index_gather", n, &*ds, &di, &mut out, &nn);
        self.wrap(out, n)
    }

    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Buf {
        let m = idx.len();
        let di = self.up(&idx.iter().map(|&i| i as u64).collect::<Vec<u64>>());
        let ds = self.dv(src);
        let mut out = self.alloc(n);
        let mm = m as u64;
        if m > 0 {
            launch!(self, "index_scatter_add", m, &*ds, &di, &mut out, &mm);
        }
        self.wrap(out, n)
    }

    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Buf {
        let n = outer * inner;
        let dx = self.dv(x);
        let mut out = self.alloc(n);
        if n > 0 {
            let (o, l, i) = (outer as u64, len as u64, inner as u64);
            launch!(self, "sum_axis", n, &*dx, &o, &l, &i, &mut out);
        }
        self.wrap(out, n)
    }
}
