//! The CUDA kernels: their sources (kernels/*.cu, embedded so the wheel
//! carries them), NVRTC compilation with a per-process PTX cache, and the
//! table of every kernel's parameters that launches are checked against.

use crate::error::{EngineError, Result};
use crate::ring::Conv2dGeom;
use cudarc::driver::DeviceRepr;

/// (file name, source) of every file under `kernels/`.
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    (
        "common.cuh",
        include_str!("../../../../../kernels/common.cuh"),
    ),
    ("ring.cu", include_str!("../../../../../kernels/ring.cu")),
    ("bits.cu", include_str!("../../../../../kernels/bits.cu")),
    ("prg.cu", include_str!("../../../../../kernels/prg.cu")),
    (
        "reduce.cu",
        include_str!("../../../../../kernels/reduce.cu"),
    ),
    ("conv.cu", include_str!("../../../../../kernels/conv.cu")),
    ("gemm.cu", include_str!("../../../../../kernels/gemm.cu")),
];

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
    if !super::probe::loadable(cudarc::nvrtc::sys::is_culib_present) {
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

/// Every kernel the device launches. Launch sites name a variant, never a
/// string; `params` is what each launch site passes ("p" a device pointer,
/// "u64"/"u32" a scalar, "geom"/"view" the structs of conv.cu). `launch!`
/// checks the argument count at every launch (an error, not a panic), and
/// tests/test_cuda_kernels.py checks the table against the parameters NVRTC
/// compiles each kernel to, so a launch site and its kernel cannot silently
/// disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    RingMap2,
    RingMap2Into,
    RingDivFloor,
    RingAddScalar,
    RingNeg,
    RssMulLocal,
    RssAndLocal,
    ToPlanes,
    FromPlanes,
    ExpandBits,
    Aes128KeyExpand,
    Aes128CtrFill,
    SumAxis,
    Im2col,
    Col2im,
    WindowSum,
    Gather,
    Scatter,
    IndexGather,
    IndexScatterAdd,
    Limbs16Split,
    Limbs16Combine,
    Limbs8Split,
    Limbs8Combine,
}

impl Kernel {
    pub const ALL: [Kernel; 24] = [
        Kernel::RingMap2,
        Kernel::RingMap2Into,
        Kernel::RingDivFloor,
        Kernel::RingAddScalar,
        Kernel::RingNeg,
        Kernel::RssMulLocal,
        Kernel::RssAndLocal,
        Kernel::ToPlanes,
        Kernel::FromPlanes,
        Kernel::ExpandBits,
        Kernel::Aes128KeyExpand,
        Kernel::Aes128CtrFill,
        Kernel::SumAxis,
        Kernel::Im2col,
        Kernel::Col2im,
        Kernel::WindowSum,
        Kernel::Gather,
        Kernel::Scatter,
        Kernel::IndexGather,
        Kernel::IndexScatterAdd,
        Kernel::Limbs16Split,
        Kernel::Limbs16Combine,
        Kernel::Limbs8Split,
        Kernel::Limbs8Combine,
    ];

    /// The kernel's name in its .cu file.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::RingMap2 => "ring_map2",
            Kernel::RingMap2Into => "ring_map2_into",
            Kernel::RingDivFloor => "ring_div_floor",
            Kernel::RingAddScalar => "ring_add_scalar",
            Kernel::RingNeg => "ring_neg",
            Kernel::RssMulLocal => "rss_mul_local",
            Kernel::RssAndLocal => "rss_and_local",
            Kernel::ToPlanes => "to_planes",
            Kernel::FromPlanes => "from_planes",
            Kernel::ExpandBits => "expand_bits",
            Kernel::Aes128KeyExpand => "aes128_key_expand",
            Kernel::Aes128CtrFill => "aes128_ctr_fill",
            Kernel::SumAxis => "sum_axis",
            Kernel::Im2col => "im2col",
            Kernel::Col2im => "col2im",
            Kernel::WindowSum => "window_sum",
            Kernel::Gather => "gather",
            Kernel::Scatter => "scatter",
            Kernel::IndexGather => "index_gather",
            Kernel::IndexScatterAdd => "index_scatter_add",
            Kernel::Limbs16Split => "limbs16_split",
            Kernel::Limbs16Combine => "limbs16_combine",
            Kernel::Limbs8Split => "limbs8_split",
            Kernel::Limbs8Combine => "limbs8_combine",
        }
    }

    /// The file under kernels/ that defines it.
    pub fn file(self) -> &'static str {
        match self {
            Kernel::RingMap2 => "ring.cu",
            Kernel::RingMap2Into => "ring.cu",
            Kernel::RingDivFloor => "ring.cu",
            Kernel::RingAddScalar => "ring.cu",
            Kernel::RingNeg => "ring.cu",
            Kernel::RssMulLocal => "ring.cu",
            Kernel::RssAndLocal => "bits.cu",
            Kernel::ToPlanes => "bits.cu",
            Kernel::FromPlanes => "bits.cu",
            Kernel::ExpandBits => "bits.cu",
            Kernel::Aes128KeyExpand => "prg.cu",
            Kernel::Aes128CtrFill => "prg.cu",
            Kernel::SumAxis => "reduce.cu",
            Kernel::Im2col => "conv.cu",
            Kernel::Col2im => "conv.cu",
            Kernel::WindowSum => "conv.cu",
            Kernel::Gather => "conv.cu",
            Kernel::Scatter => "conv.cu",
            Kernel::IndexGather => "conv.cu",
            Kernel::IndexScatterAdd => "conv.cu",
            Kernel::Limbs16Split => "gemm.cu",
            Kernel::Limbs16Combine => "gemm.cu",
            Kernel::Limbs8Split => "gemm.cu",
            Kernel::Limbs8Combine => "gemm.cu",
        }
    }

    /// The parameter kinds each launch site passes.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Kernel::RingMap2 => &["p", "p", "p", "u64", "u32"],
            Kernel::RingMap2Into => &["p", "p", "u64", "u32"],
            Kernel::RingDivFloor => &["p", "u64", "p", "u64"],
            Kernel::RingAddScalar => &["p", "u64", "p", "u64"],
            Kernel::RingNeg => &["p", "p", "u64"],
            Kernel::RssMulLocal => &["p", "p", "p", "p", "p", "p", "u64"],
            Kernel::RssAndLocal => &["p", "p", "p", "p", "p", "p", "u64"],
            Kernel::ToPlanes => &["p", "u64", "u64", "p"],
            Kernel::FromPlanes => &["p", "u64", "u64", "p"],
            Kernel::ExpandBits => &["p", "u64", "u64", "p"],
            Kernel::Aes128KeyExpand => &["p", "p"],
            Kernel::Aes128CtrFill => &["p", "u64", "u64", "p", "u64"],
            Kernel::SumAxis => &["p", "u64", "u64", "u64", "p"],
            Kernel::Im2col => &["p", "geom", "u64", "u64", "p"],
            Kernel::Col2im => &["p", "geom", "p"],
            Kernel::WindowSum => &["p", "geom", "p"],
            Kernel::Gather => &["p", "view", "p", "u64"],
            Kernel::Scatter => &["p", "view", "p", "u64"],
            Kernel::IndexGather => &["p", "p", "p", "u64"],
            Kernel::IndexScatterAdd => &["p", "p", "p", "u64"],
            Kernel::Limbs16Split => &["p", "u64", "p"],
            Kernel::Limbs16Combine => &["p", "u64", "u32", "p"],
            Kernel::Limbs8Split => &["p", "u64", "p"],
            Kernel::Limbs8Combine => &["p", "u64", "u32", "p"],
        }
    }
}

/// The kernel files that define launched kernels, each once, in table order.
pub fn kernel_files() -> Vec<&'static str> {
    let mut files: Vec<&'static str> = Vec::new();
    for k in Kernel::ALL {
        if !files.contains(&k.file()) {
            files.push(k.file());
        }
    }
    files
}

/// `Geom` of kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct KGeom {
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
pub(super) struct KView {
    ndim: u64,
    offset: u64,
    shape: [u64; 8],
    strides: [u64; 8],
}
// SAFETY: as above.
unsafe impl DeviceRepr for KView {}

pub(super) fn kgeom(g: &Conv2dGeom) -> KGeom {
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
pub(super) fn kview(shape: &[usize], offset: usize, strides: &[usize]) -> Option<KView> {
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
