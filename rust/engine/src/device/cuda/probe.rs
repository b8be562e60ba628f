//! Finding CUDA at run time: the driver and its GPUs, how the parties are
//! placed on them, and the memory high-water mark the benchmarks report.

use super::cuda_err;
use crate::error::{EngineError, Result};
use cudarc::driver::CudaContext;

/// Whether a CUDA library (`probe`: one of cudarc's `is_culib_present`)
/// loads with every symbol cudarc binds. cudarc's probe panics instead of
/// answering false when it finds a library that lacks a symbol of the CUDA
/// 13 bindings (an older driver or toolkit): that is "not available" too.
pub(crate) fn loadable(probe: unsafe fn() -> bool) -> bool {
    // SAFETY: the probes only open the shared library and look up symbols.
    std::panic::catch_unwind(|| unsafe { probe() }).unwrap_or(false)
}

/// Number of CUDA GPUs; 0 without a driver or a GPU (never an error).
pub fn device_count() -> usize {
    if !loadable(cudarc::driver::sys::is_culib_present) {
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
