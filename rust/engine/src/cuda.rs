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
//! What is not here yet: the `Device` implementation that keeps shares in
//! device buffers and launches these kernels and cuBLAS/cuBLASLt. It needs
//! the device trait to abstract the buffer type first, and a GPU to verify
//! it on; none was available to this work. The kernels' logic is checked on
//! the CPU instead (tests/test_cuda_kernels.py: NVRTC compiles every file,
//! and a host-C++ emulation matches the CPU device bit for bit).

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
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(EngineError::Unavailable(
            "libnvrtc was not found (install the CUDA toolkit or `pip install nvidia-cuda-nvrtc` \
             and make it loadable)"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for (name, _) in KERNEL_SOURCES.iter().filter(|(n, _)| n.ends_with(".cu")) {
        let src = expanded_source(name)?;
        let opts = cudarc::nvrtc::CompileOptions {
            arch: Some(arch),
            name: Some((*name).to_string()),
            options: vec!["--std=c++17".into()],
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(&src, opts)
            .map_err(|e| EngineError::Unavailable(format!("{name} does not compile: {e:?}")))?;
        out.push((name.to_string(), ptx.to_src().len()));
    }
    Ok(out)
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
