"""cryptgpu: three parties compute on secret-shared PyTorch tensors.

Replicated secret sharing over Z_2^64 (ABY3 / CryptGPU) with a Rust engine.
Start with :func:`init`, share data with :func:`cryptensor`, compute with
:class:`SharedTensor`, and open results with ``get_plain_text()``.
"""

from . import autograd, functions, models, nn, optim, spmd
from ._native import (
    CryptGPUError,
    EncodingError,
    InternalError,
    PeerError,
    ShapeError,
    gemm_kernel,
)
from ._session import init, is_initialized, rank, reset_stats, stats, uninit
from .functions import ApproxConfig
from .tensor import SharedTensor, cat, cryptensor, stack, where

__version__ = "0.1.0"

__all__ = [
    "ApproxConfig",
    "CryptGPUError",
    "EncodingError",
    "InternalError",
    "PeerError",
    "ShapeError",
    "SharedTensor",
    "cat",
    "cryptensor",
    "autograd",
    "functions",
    "models",
    "nn",
    "optim",
    "rank",
    "spmd",
    "gemm_kernel",
    "init",
    "is_initialized",
    "reset_stats",
    "stack",
    "stats",
    "uninit",
    "where",
]
