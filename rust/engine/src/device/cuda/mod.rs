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

/// Launch `kernel` over `n` items with the given arguments. The argument
/// count is checked against the kernel table and a CUDA error is returned
/// with the kernel's name (`?` in the enclosing function).
macro_rules! launch {
    ($dev:expr, $kernel:expr, $n:expr, $($arg:expr),+ $(,)?) => {{
        let kernel: $crate::device::cuda::Kernel = $kernel;
        let given = [$(stringify!($arg)),+].len();
        if given != kernel.params().len() {
            return Err($crate::error::EngineError::Internal(format!(
                "CUDA kernel {}: {given} arguments for {} parameters",
                kernel.name(),
                kernel.params().len()
            )));
        }
        use cudarc::driver::PushKernelArg as _;
        let mut b = $dev.stream.launch_builder($dev.f(kernel)?);
        $( b.arg($arg); )+
        // SAFETY: every call site passes the arguments of the kernel's
        // parameters in kernels/*.cu, in order (the count is checked above,
        // the types by tests/test_cuda_kernels.py), with buffers of the
        // lengths it reads or writes.
        let r = unsafe { b.launch(Cuda::cfg($n)) };
        $dev.check(r, kernel.name())?;
    }};
}

mod gemm;
mod kernels;
mod probe;

pub use gemm::GemmPath;
pub use kernels::{compile_all, expanded_source, kernel_files, ptx, Kernel, KERNEL_SOURCES};
pub use probe::{device_count, device_map, memory_peak};

use crate::device::{bounds, Buf, Conv2dGeom, Device, Op1, Op2};
use crate::error::{EngineError, Result};
use crate::prg::Prg;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use kernels::{kgeom, kview};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Ring elements in GPU memory. The allocation holds at least one word (a
/// zero-length allocation is an error in CUDA); `len` is the logical length.
/// Clones share the allocation; a device method that writes a shared buffer
/// copies it first (on the device), so a clone never fails and never costs
/// a copy that is not needed.
#[derive(Clone)]
pub struct GpuBuf {
    data: Arc<CudaSlice<u64>>,
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
    pub fn to_vec(&self) -> Result<Vec<u64>> {
        let mut v = self
            .data
            .stream()
            .memcpy_dtov(&*self.data)
            .map_err(|e| cuda_err("copy to host", e))?;
        v.truncate(self.len);
        Ok(v)
    }
}

fn op2_code(op: Op2) -> u32 {
    match op {
        Op2::Add => 0,
        Op2::Sub => 1,
        Op2::Mul => 2,
        Op2::Xor => 3,
    }
}

/// The CUDA device: one GPU, one stream per party; a received buffer is
/// copied on the receiver's stream (`adopt`), so each allocation is used
/// from one stream. Every CUDA error is returned: an out-of-memory as
/// `OutOfMemory`, anything else as `Unavailable`.
pub struct Cuda {
    ordinal: usize,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    funcs: HashMap<Kernel, CudaFunction>,
    /// AES round keys on the device, by key.
    round_keys: Mutex<HashMap<[u8; 16], CudaSlice<u8>>>,
    /// The faster GEMM path per (m, k, n), measured at first use; a forced
    /// path from CRYPTGPU_GEMM=f64|int8 overrides it.
    paths: Mutex<HashMap<(usize, usize, usize), GemmPath>>,
    forced: Option<GemmPath>,
}

/// Whether `off..off + len` lies within `total` words (no overflow).
fn in_range(off: usize, len: usize, total: usize) -> bool {
    off.checked_add(len).is_some_and(|end| end <= total)
}

/// A CUDA error as an engine error: out-of-memory is its own kind (Python's
/// MemoryError), everything else says what failed.
pub(crate) fn cuda_err(what: &str, e: impl std::fmt::Debug) -> EngineError {
    let text = format!("{e:?}");
    if text.contains("OUT_OF_MEMORY") || text.contains("ALLOC_FAILED") {
        EngineError::OutOfMemory(format!("CUDA: {what}: {text}"))
    } else {
        EngineError::Unavailable(format!("CUDA: {what}: {text}"))
    }
}

fn poisoned(what: &str) -> EngineError {
    EngineError::Internal(format!("CUDA {what} lock poisoned"))
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
        if !probe::loadable(cudarc::cublas::sys::is_culib_present) {
            let why = "libcublas is missing or predates CUDA 13 (`pip install nvidia-cublas`)";
            return Err(EngineError::Unavailable(why.into()));
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_err("cuBLAS", e))?;
        let mut funcs = HashMap::new();
        for file in kernel_files() {
            let ptx = cudarc::nvrtc::Ptx::from_src(ptx(file, arch)?);
            let module = ctx.load_module(ptx).map_err(|e| cuda_err(file, e))?;
            for k in Kernel::ALL.into_iter().filter(|k| k.file() == file) {
                let f = module
                    .load_function(k.name())
                    .map_err(|e| cuda_err(k.name(), e))?;
                funcs.insert(k, f);
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

    fn f(&self, k: Kernel) -> Result<&CudaFunction> {
        self.funcs
            .get(&k)
            .ok_or_else(|| EngineError::Internal(format!("CUDA kernel {} not loaded", k.name())))
    }

    fn up<T: DeviceRepr + Copy + ValidAsZeroBits>(&self, x: &[T]) -> Result<CudaSlice<T>> {
        if x.is_empty() {
            return self.zeros::<T>(1);
        }
        self.stream
            .memcpy_stod(x)
            .map_err(|e| cuda_err(&format!("GPU {}: copy to device", self.ordinal), e))
    }

    fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros(n.max(1))
            .map_err(|e| cuda_err(&format!("GPU {}: allocate {n} elements", self.ordinal), e))
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

    fn check<T>(&self, r: std::result::Result<T, impl std::fmt::Debug>, what: &str) -> Result<T> {
        r.map_err(|e| cuda_err(&format!("GPU {}: {what}", self.ordinal), e))
    }

    fn wrap(&self, data: CudaSlice<u64>, len: usize) -> Buf {
        Buf::Cuda(GpuBuf {
            data: Arc::new(data),
            len,
        })
    }

    /// The device memory of an operand (uploading a host buffer).
    fn dv<'a>(&self, b: &'a Buf) -> Result<Dv<'a>> {
        Ok(match b {
            Buf::Cuda(g) => Dv::B(&g.data),
            Buf::Host(v) => Dv::O(self.up(v)?),
        })
    }

    /// The device memory of an output operand, to write: a host buffer
    /// moves here, a buffer shared with a clone is copied first.
    fn dm<'a>(&self, b: &'a mut Buf) -> Result<&'a mut CudaSlice<u64>> {
        if let Buf::Host(v) = b {
            let len = v.len();
            *b = self.wrap(self.up(v)?, len);
        }
        match b {
            Buf::Cuda(g) => {
                if Arc::get_mut(&mut g.data).is_none() {
                    let copy = self.check(self.stream.clone_dtod(&*g.data), "copy on device")?;
                    g.data = Arc::new(copy);
                }
                Arc::get_mut(&mut g.data)
                    .ok_or_else(|| EngineError::Internal("GPU buffer still shared".into()))
            }
            Buf::Host(_) => Err(EngineError::Internal("host buffer after upload".into())),
        }
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<u64>> {
        self.zeros::<u64>(n)
    }

    /// The local step of a replicated product or AND (kernel `k` of ring.cu
    /// / bits.cu) over the first r.len() words of x0, x1, y0, y1.
    fn rss_local(&self, k: Kernel, xy: [&Buf; 4], r: Buf) -> Result<Buf> {
        let n = r.len();
        if xy.iter().any(|b| b.len() < n) {
            return Err(EngineError::Internal(
                "operands shorter than the mask".into(),
            ));
        }
        let [a, b, c, d] = [
            self.dv(xy[0])?,
            self.dv(xy[1])?,
            self.dv(xy[2])?,
            self.dv(xy[3])?,
        ];
        let e = self.dv(&r)?;
        let mut out = self.alloc(n)?;
        let nn = n as u64;
        launch!(self, k, n, &*a, &*b, &*c, &*d, &*e, &mut out, &nn);
        Ok(self.wrap(out, n))
    }

    /// Make sure all queued work is done (benchmarks time with this).
    pub fn synchronize(&self) -> Result<()> {
        self.check(self.stream.synchronize(), "synchronize")
    }
}

impl Device for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn upload(&self, v: Vec<u64>) -> Result<Buf> {
        let n = v.len();
        Ok(self.wrap(self.up(&v)?, n))
    }

    fn adopt(&self, b: Buf) -> Result<Buf> {
        match b {
            Buf::Host(v) => self.upload(v),
            // Another party's buffer on this GPU: copied on this stream,
            // then the sender's stream waits for the copy (cudarc keeps one
            // read event per allocation: read from two streams, it would be
            // freed after the last reader only). With one GPU per party it
            // is copied to this GPU through the host.
            Buf::Cuda(g) => {
                if g.data.stream().context().ordinal() == self.ordinal {
                    let copy = self.check(self.stream.clone_dtod(&*g.data), "copy a message")?;
                    let owner = g.data.stream();
                    self.check(owner.join(&self.stream), "order the sender after the copy")?;
                    Ok(self.wrap(copy, g.len))
                } else {
                    self.upload(g.to_vec()?)
                }
            }
        }
    }

    fn zeros(&self, n: usize) -> Result<Buf> {
        Ok(self.wrap(self.alloc(n)?, n))
    }

    fn map2(&self, op: Op2, a: &Buf, b: &Buf) -> Result<Buf> {
        let n = a.len();
        if b.len() != n {
            return Err(EngineError::Internal(
                "element-wise operands differ in length".into(),
            ));
        }
        let (da, db) = (self.dv(a)?, self.dv(b)?);
        let mut out = self.alloc(n)?;
        let (nn, code) = (n as u64, op2_code(op));
        launch!(self, Kernel::RingMap2, n, &*da, &*db, &mut out, &nn, &code);
        Ok(self.wrap(out, n))
    }

    fn map2_into(&self, op: Op2, dst: &mut Buf, src: &Buf) -> Result<()> {
        let n = dst.len();
        if src.len() != n {
            return Err(EngineError::Internal(
                "element-wise operands differ in length".into(),
            ));
        }
        let ds = self.dv(src)?;
        let dd = self.dm(dst)?;
        let (nn, code) = (n as u64, op2_code(op));
        launch!(self, Kernel::RingMap2Into, n, dd, &*ds, &nn, &code);
        Ok(())
    }

    fn map1(&self, op: Op1, a: &Buf) -> Result<Buf> {
        let n = a.len();
        let da = self.dv(a)?;
        let mut out = self.alloc(n)?;
        let nn = n as u64;
        match op {
            Op1::Neg => launch!(self, Kernel::RingNeg, n, &*da, &mut out, &nn),
            Op1::AddScalar(s) => {
                launch!(self, Kernel::RingAddScalar, n, &*da, &s, &mut out, &nn)
            }
            Op1::DivFloor(d) => launch!(self, Kernel::RingDivFloor, n, &*da, &d, &mut out, &nn),
        }
        Ok(self.wrap(out, n))
    }

    fn prg(&self, prg: &mut Prg, n: usize) -> Result<Buf> {
        let key = prg.key();
        let mut keys = self.round_keys.lock().map_err(|_| poisoned("round key"))?;
        if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(key) {
            let kd = self.up(&key)?;
            let mut rk = self.zeros::<u8>(176)?;
            launch!(self, Kernel::Aes128KeyExpand, 1, &kd, &mut rk);
            slot.insert(rk);
        }
        let rk = keys
            .get(&key)
            .ok_or_else(|| EngineError::Internal("round keys missing".into()))?;
        let mut out = self.alloc(n)?;
        // The counter moves only once the memory is there: a failed
        // allocation leaves this party's stream in step with its neighbour's.
        let c0 = prg.reserve(n);
        let (lo, hi, nn) = (c0 as u64, (c0 >> 64) as u64, n as u64);
        launch!(
            self,
            Kernel::Aes128CtrFill,
            n.div_ceil(2),
            rk,
            &lo,
            &hi,
            &mut out,
            &nn
        );
        Ok(self.wrap(out, n))
    }

    fn mul_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf> {
        self.rss_local(Kernel::RssMulLocal, [x0, x1, y0, y1], r)
    }

    fn and_local(&self, x0: &Buf, x1: &Buf, y0: &Buf, y1: &Buf, r: Buf) -> Result<Buf> {
        self.rss_local(Kernel::RssAndLocal, [x0, x1, y0, y1], r)
    }

    fn concat(&self, parts: &[(&Buf, usize, usize)]) -> Result<Buf> {
        let total: usize = parts.iter().map(|p| p.2).sum();
        let mut out = self.alloc(total)?;
        let mut at = 0;
        for (b, off, len) in parts {
            if !in_range(*off, *len, b.len()) {
                return Err(EngineError::Internal("concat range out of bounds".into()));
            }
            if *len > 0 {
                let src = self.dv(b)?;
                let mut dst = out.slice_mut(at..at + len);
                let r = self
                    .stream
                    .memcpy_dtod(&src.slice(*off..off + len), &mut dst);
                self.check(r, "copy on device")?;
            }
            at += len;
        }
        Ok(self.wrap(out, total))
    }

    fn update(
        &self,
        op: Option<Op2>,
        dst: &mut Buf,
        doff: usize,
        src: &Buf,
        soff: usize,
        len: usize,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !in_range(soff, len, src.len()) || !in_range(doff, len, dst.len()) {
            return Err(EngineError::Internal("update range out of bounds".into()));
        }
        let s = self.dv(src)?;
        let sv = s.slice(soff..soff + len);
        let d = self.dm(dst)?;
        let mut dv = d.slice_mut(doff..doff + len);
        match op {
            None => {
                let r = self.stream.memcpy_dtod(&sv, &mut dv);
                self.check(r, "copy on device")?;
            }
            Some(op) => {
                let (nn, code) = (len as u64, op2_code(op));
                launch!(self, Kernel::RingMap2Into, len, &mut dv, &sv, &nn, &code);
            }
        }
        Ok(())
    }

    fn to_planes(&self, x: &Buf) -> Result<Buf> {
        let n = x.len();
        let nw = n.div_ceil(64);
        let dx = self.dv(x)?;
        let mut out = self.alloc(64 * nw)?;
        let (nn, nwu) = (n as u64, nw as u64);
        launch!(self, Kernel::ToPlanes, nw, &*dx, &nn, &nwu, &mut out);
        Ok(self.wrap(out, 64 * nw))
    }

    fn unslice_planes(&self, planes: &Buf, n: usize) -> Result<Buf> {
        let nw = n.div_ceil(64);
        if planes.len() < 64 * nw {
            return Err(EngineError::Internal("too few bit planes".into()));
        }
        let dp = self.dv(planes)?;
        let mut out = self.alloc(n)?;
        let (nn, nwu) = (n as u64, nw as u64);
        launch!(self, Kernel::FromPlanes, nw, &*dp, &nn, &nwu, &mut out);
        Ok(self.wrap(out, n))
    }

    fn expand_bits(&self, plane: &Buf, n: usize, reps: usize) -> Result<Buf> {
        if plane.len() < n.div_ceil(64) {
            return Err(EngineError::Internal("bit plane too short".into()));
        }
        let total = n
            .checked_mul(reps)
            .ok_or_else(|| EngineError::Internal("expanded bits overflow".into()))?;
        let dp = self.dv(plane)?;
        let mut out = self.alloc(total)?;
        let (nn, r) = (n as u64, reps as u64);
        launch!(self, Kernel::ExpandBits, total, &*dp, &nn, &r, &mut out);
        Ok(self.wrap(out, total))
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
    ) -> Result<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (ca, coff) = c;
        bounds::words(
            "GEMM operand A",
            a.0.len(),
            m.checked_mul(k).and_then(|x| x.checked_add(a.1)),
        )?;
        bounds::words(
            "GEMM operand B",
            b.0.len(),
            k.checked_mul(n).and_then(|x| x.checked_add(b.1)),
        )?;
        bounds::words(
            "GEMM output",
            ca.len(),
            m.checked_mul(n).and_then(|x| x.checked_add(coff)),
        )?;
        let dc = self.dm(ca)?;
        if k == 0 {
            if !accumulate {
                let mut v = dc.slice_mut(coff..coff + m * n);
                self.check(self.stream.memset_zeros(&mut v), "memset")?;
            }
            return Ok(());
        }
        let (da, db) = (self.dv(a.0)?, self.dv(b.0)?);
        let av = da.slice(a.1..a.1 + m * k);
        let bv = db.slice(b.1..b.1 + k * n);
        let mut cv = dc.slice_mut(coff..coff + m * n);
        self.gemm_chosen(m, k, n, &av, &bv, &mut cv, accumulate)
    }

    fn im2col(&self, x: &Buf, g: &Conv2dGeom, c0: usize, cg: usize) -> Result<Buf> {
        let (oh, ow) = bounds::conv_input("im2col", g, (c0, cg), x.len())?;
        let len = cg * g.kh * g.kw * g.n * oh * ow;
        let dx = self.dv(x)?;
        let mut out = self.alloc(len)?;
        if len > 0 {
            let (kg, c0, cg) = (kgeom(g), c0 as u64, cg as u64);
            launch!(self, Kernel::Im2col, len, &*dx, &kg, &c0, &cg, &mut out);
        }
        Ok(self.wrap(out, len))
    }

    fn col2im(&self, cols: &Buf, g: &Conv2dGeom) -> Result<Buf> {
        bounds::conv_cols("col2im", g, cols.len())?;
        let len = g.n * g.c * g.h * g.w;
        let dc = self.dv(cols)?;
        let mut out = self.alloc(len)?;
        if len > 0 && !cols.is_empty() {
            let kg = kgeom(g);
            launch!(self, Kernel::Col2im, len, &*dc, &kg, &mut out);
        }
        Ok(self.wrap(out, len))
    }

    fn window_sum(&self, x: &Buf, g: &Conv2dGeom) -> Result<Buf> {
        let (oh, ow) = bounds::conv_input("window sum", g, (0, g.c), x.len())?;
        let len = g.n * g.c * oh * ow;
        let dx = self.dv(x)?;
        let mut out = self.alloc(len)?;
        if len > 0 {
            let kg = kgeom(g);
            launch!(self, Kernel::WindowSum, len, &*dx, &kg, &mut out);
        }
        Ok(self.wrap(out, len))
    }

    fn gather(&self, src: &Buf, shape: &[usize], offset: usize, strides: &[usize]) -> Result<Buf> {
        let n = crate::ring::numel(shape);
        if n == 0 {
            return Ok(self.wrap(self.alloc(0)?, 0));
        }
        bounds::view("gather", shape, offset, strides, src.len())?;
        let Some(v) = kview(shape, offset, strides) else {
            // More dims than the kernel's view holds: the host does it.
            let h = super::cpu::host::gather(&src.to_vec()?, shape, offset, strides)?;
            return self.upload(h);
        };
        let ds = self.dv(src)?;
        let mut out = self.alloc(n)?;
        let nn = n as u64;
        launch!(self, Kernel::Gather, n, &*ds, &v, &mut out, &nn);
        Ok(self.wrap(out, n))
    }

    fn scatter(
        &self,
        src: &Buf,
        dst: &mut Buf,
        shape: &[usize],
        offset: usize,
        strides: &[usize],
    ) -> Result<()> {
        let n = crate::ring::numel(shape);
        if n == 0 {
            return Ok(());
        }
        bounds::view("scatter", shape, offset, strides, dst.len())?;
        bounds::words("scatter", src.len(), Some(n))?;
        let Some(v) = kview(shape, offset, strides) else {
            let mut h = dst.to_vec()?;
            super::cpu::host::scatter(&src.to_vec()?, &mut h, shape, offset, strides);
            *dst = self.upload(h)?;
            return Ok(());
        };
        let ds = self.dv(src)?;
        let dd = self.dm(dst)?;
        let nn = n as u64;
        launch!(self, Kernel::Scatter, n, &*ds, &v, dd, &nn);
        Ok(())
    }

    fn index_gather(&self, src: &Buf, idx: &[usize]) -> Result<Buf> {
        let n = idx.len();
        if idx.iter().any(|&i| i >= src.len()) {
            return Err(EngineError::Internal("gather index out of bounds".into()));
        }
        let di = self.up(&idx.iter().map(|&i| i as u64).collect::<Vec<u64>>())?;
        let ds = self.dv(src)?;
        let mut out = self.alloc(n)?;
        let nn = n as u64;
        launch!(self, Kernel::IndexGather, n, &*ds, &di, &mut out, &nn);
        Ok(self.wrap(out, n))
    }

    fn index_scatter_add(&self, src: &Buf, idx: &[usize], n: usize) -> Result<Buf> {
        let m = idx.len();
        if idx.iter().any(|&i| i >= n) || src.len() < m {
            return Err(EngineError::Internal("scatter index out of bounds".into()));
        }
        let di = self.up(&idx.iter().map(|&i| i as u64).collect::<Vec<u64>>())?;
        let ds = self.dv(src)?;
        let mut out = self.alloc(n)?;
        let mm = m as u64;
        if m > 0 {
            launch!(self, Kernel::IndexScatterAdd, m, &*ds, &di, &mut out, &mm);
        }
        Ok(self.wrap(out, n))
    }

    fn sum_axis(&self, x: &Buf, outer: usize, len: usize, inner: usize) -> Result<Buf> {
        bounds::rows("sum over an axis", (outer, len, inner), x.len())?;
        let n = outer * inner;
        let dx = self.dv(x)?;
        let mut out = self.alloc(n)?;
        if n > 0 {
            let (o, l, i) = (outer as u64, len as u64, inner as u64);
            launch!(self, Kernel::SumAxis, n, &*dx, &o, &l, &i, &mut out);
        }
        Ok(self.wrap(out, n))
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
