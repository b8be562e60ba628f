"""Finding CUDA at run time (issue 8).

The wheel is built without any CUDA toolkit; the driver is looked up when
asked for. :func:`is_available` (also ``cryptgpu.cuda_is_available()``) is
True when ``libcuda.so.1`` loads, ``cuInit`` succeeds and at least one GPU
is present. :func:`device_map` says where each party's shares would live.

State of the CUDA device: ``init(device="cuda")`` gives each party a CUDA
device on which its shares live in GPU memory from ``cryptensor`` to
``get_plain_text``: every engine operation (element-wise share arithmetic,
the AES-CTR PRG, products and truncation, the binary circuits of ReLU and
max, bit injection, views, im2col/col2im, pooling, reductions) runs as a
kernel from ``kernels/*.cu`` (compiled by NVRTC at first use). The ring
GEMM runs two ways, 16-bit limbs in cuBLAS DGEMM and 8-bit limbs in int8
GEMMs with int32 accumulation, picked per shape by timing both once. In the
local runtime messages between parties are GPU buffers handed over with no
host copy. This path has not run on a GPU yet (none was available to its
authors): the kernels are checked bit for bit against the CPU device by a
host emulation, and the tests run the CUDA path wherever a GPU is found.
"""

from __future__ import annotations

import functools

from . import _native


@functools.lru_cache(maxsize=1)
def device_count() -> int:
    """Number of CUDA GPUs the driver reports; 0 without a driver or GPU.
    The engine loads ``libcuda`` at run time (cudarc, dynamic loading)."""
    return _native.cuda_device_count()


def is_available() -> bool:
    """True when a CUDA driver and at least one GPU are present."""
    return device_count() > 0


def device_map(gpus: int | None = None) -> list[int] | None:
    """GPU index of parties 0, 1, 2: party i on ``cuda:i`` with three or more
    GPUs, all on ``cuda:0`` with one or two, None without a GPU."""
    n = device_count() if gpus is None else gpus
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
        raise ValueError(f"gpus must be a non-negative int, got {n!r}")
    m = _native.cuda_device_map(n)
    return None if m is None else list(m)


def compile_kernels(arch: str = "compute_90") -> dict[str, int]:
    """Compile every kernel with NVRTC (found at run time) for ``arch``;
    returns the PTX size per file. RuntimeError without libnvrtc or when a
    kernel does not compile."""
    return dict(_native.cuda_compile_kernels(arch))


def kernel_sources() -> dict[str, str]:
    """The kernel files embedded in the engine, by file name."""
    return dict(_native.cuda_kernel_sources())


def memory_peak(gpu: int = 0, reset: bool = False) -> int:
    """Peak bytes of GPU memory the engine has had allocated on ``gpu`` (its
    stream-ordered allocations, which hold every share and intermediate);
    ``reset=True`` restarts the count. RuntimeError without a GPU; a
    negative ``gpu`` is ValueError, as ``device_map``'s."""
    if isinstance(gpu, bool) or not isinstance(gpu, int):
        raise TypeError(f"gpu must be an int (a GPU index), got {type(gpu).__name__}")
    if not 0 <= gpu < 2**63:
        raise ValueError(f"gpu must be a non-negative GPU index, got {gpu}")
    return _native.cuda_memory_peak(gpu, bool(reset))
