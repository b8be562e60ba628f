"""cryptgpu: three parties compute on secret-shared PyTorch tensors.

Replicated secret sharing over Z_2^64 (ABY3 / CryptGPU) with a Rust engine.
Start with :func:`init`, share data with :func:`cryptensor`, compute with
:class:`SharedTensor`, and open results with ``get_plain_text()``.
"""

import sys as _sys
import types as _types

from . import (
    autograd,
    checkpoint,
    comm,
    communicator,
    cuda,
    functions,
    models,
    mpc,
    nn,
    optim,
    optim_torch,  # noqa: F401 - torch.optim.SGD etc. on shared parameters
    spmd,
    torch_functions,  # noqa: F401 - torch.autograd.Function.apply on shares
)
from ._native import (
    CryptGPUError,
    EncodingError,
    InternalError,
    InvalidArgumentError,
    OutOfMemoryError,
    PeerError,
    ShapeError,
    UnavailableError,
    gemm_kernel,
)
from ._plain import DivisionByZeroError
from ._session import init, is_initialized, reset_stats, stats, truncation, uninit
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .checkpoint import load, save
from .comm import log_ as log  # CrypTen's crypten.log
from .comm import print_ as print  # noqa: A004 - CrypTen's crypten.print
from .comm import rank  # counts as asking the rank (the placeholder warning)
from .functions import ApproxConfig
from .party_io import load_from_party, save_from_party
from .tensor import SharedTensor, cat, cryptensor, stack, where
from .tensor_base import SecretValueError

# CrypTen's ``crypten.common.serial.register_safe_class`` (a no-op here:
# see checkpoint.register_safe_class), also importable by that path.
common = _types.ModuleType("cryptgpu.common", "CrypTen's crypten.common: serial only.")
common.serial = _types.ModuleType(
    "cryptgpu.common.serial", "CrypTen's crypten.common.serial: register_safe_class only."
)
common.serial.register_safe_class = checkpoint.register_safe_class
_sys.modules.setdefault("cryptgpu.common", common)
_sys.modules.setdefault("cryptgpu.common.serial", common.serial)


# CrypTen's base class of encrypted tensors: isinstance(x, CrypTensor) holds
# for every SharedTensor (it is mpc.MPCTensor, whose constructor shares)
CrypTensor = mpc.MPCTensor


def is_encrypted_tensor(obj) -> bool:
    """True for a :class:`SharedTensor` (CrypTen's ``is_encrypted_tensor``)."""
    return isinstance(obj, SharedTensor)


def get_default_cryptensor_type() -> str:
    """CrypTen's: the name of the kind of tensor :func:`cryptensor` makes,
    "mpc" (the only kind here)."""
    return "mpc"


def set_default_cryptensor_type(cryptensor_type) -> None:
    """CrypTen's: "mpc" is the only kind (nothing to change); any other
    name is CrypTen's ValueError."""
    if cryptensor_type != "mpc":
        raise ValueError(f"CrypTensor type {cryptensor_type} does not exist.")


def get_cryptensor_type(tensor) -> str:
    """CrypTen's: "mpc" for a :class:`SharedTensor`, its ValueError for
    anything else."""
    if not isinstance(tensor, SharedTensor):
        raise ValueError(f"Specified tensor is not a CrypTensor: {type(tensor)}")
    return "mpc"


def cuda_is_available() -> bool:
    """True when a CUDA driver and GPU are present (see :mod:`cryptgpu.cuda`)."""
    return cuda.is_available()


def print_communication_stats() -> None:
    """Print the rounds and bytes (busiest party) counted since the last
    reset, as CrypTen's ``crypten.print_communication_stats()`` does."""
    comm.get().print_communication_stats()


def reset_communication_stats() -> None:
    """Zero the communication counters (CrypTen's name for :func:`reset_stats`)."""
    reset_stats()


def get_communication_stats() -> dict:
    """Rounds, bytes (busiest party) and messages since the last reset."""
    return comm.get().get_communication_stats()


# CrypTen's top-level names with no counterpart here, and what to use
# instead: ``crypten.<name>`` raises AttributeError saying so.
_INSTEAD = {
    "init_thread": (
        "CrypTen's init_thread(rank, world_size) makes this thread one party of a "
        "threaded run; here run the parties as threads with "
        "@crypten.mpc.run_multiprocess(world_size=3) or cryptgpu.spmd.run(fn) (an "
        "init() inside keeps the party's session)"
    ),
    "manual_seed": (
        "CrypTen's manual_seed(next_seed, local_seed, global_seed) seeds its parties' "
        "generators; here crypten.init(seed=...) derives every party's PRG keys from "
        "one public seed (reproducible, not secure), and torch.manual_seed seeds your data"
    ),
    "trace": (
        "CrypTen's trace/fill_cache record and precompute a provider's Beaver triples; "
        "replicated sharing uses none (crypten.mpc.ttp_required() is False): leave "
        "the calls out"
    ),
    "rand": (
        "no private random tensors: crypten.cryptensor(torch.rand(size), src=i) "
        "shares values that party i knows"
    ),
    "cfg": (
        "no configuration files: the settings are crypten.init()'s arguments "
        "(precision_bits, truncation, seed, timeout_s, device, check_range); "
        "functions.reciprocal_all_pos is x.reciprocal(all_pos=True), and the "
        "approximations' iteration counts have no counterpart (they take their own steps)"
    ),
    "set_default_backend": (
        "CrypTen's set_default_backend/get_default_backend choose its backend "
        "(crypten.mpc); there is one here, replicated sharing among three parties: "
        "leave the call out"
    ),
}
_INSTEAD.update(
    trace_once=_INSTEAD["trace"],
    fill_cache=_INSTEAD["trace"],
    randn=_INSTEAD["rand"],
    get_default_backend=_INSTEAD["set_default_backend"],
    bernoulli=_INSTEAD["rand"],
)


def __getattr__(name: str):
    if name in _INSTEAD:
        raise AttributeError(f"module 'cryptgpu' has no attribute {name!r}: {_INSTEAD[name]}")
    raise AttributeError(f"module 'cryptgpu' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "common",
    "communicator",
    "load_from_party",
    "log",
    "print",
    "save_from_party",
    "is_encrypted_tensor",
    "get_default_cryptensor_type",
    "set_default_cryptensor_type",
    "get_cryptensor_type",
    "ApproxConfig",
    "CryptGPUError",
    "DivisionByZeroError",
    "EncodingError",
    "InternalError",
    "InvalidArgumentError",
    "OutOfMemoryError",
    "PeerError",
    "ShapeError",
    "UnavailableError",
    "SecretValueError",
    "SharedTensor",
    "CrypTensor",
    "cat",
    "comm",
    "cuda",
    "cuda_is_available",
    "get_communication_stats",
    "mpc",
    "print_communication_stats",
    "reset_communication_stats",
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
    "load",
    "save",
    "is_grad_enabled",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_initialized",
    "reset_stats",
    "stack",
    "stats",
    "truncation",
    "uninit",
    "where",
]
