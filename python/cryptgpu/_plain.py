"""Plaintext operands of SharedTensor operations: Python values, numpy arrays
and torch tensors turned into float64 arrays and byte buffers, and the
argument checks shared by the tensor modules. Imports nothing from cryptgpu.
"""

from __future__ import annotations

import dis
import numbers
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ._native import EncodingError, InvalidArgumentError, OutOfMemoryError

_FLOAT_KINDS = "fiub"  # float, signed/unsigned int, bool


class IndexRangeError(IndexError, RuntimeError):
    """An index out of range where torch raises RuntimeError (gather,
    narrow, index_select): catchable as either."""


class DivisionByZeroError(InvalidArgumentError, ZeroDivisionError):
    """Division of a SharedTensor by a public zero (``x / 0``, a divisor
    tensor holding a 0, ``x // 0``, ``x % 0``): torch gives inf or nan,
    which fixed point cannot hold. An :class:`InvalidArgumentError` (so a
    ``ValueError`` and a ``CryptGPUError``, a ``RuntimeError``) and a
    ``ZeroDivisionError``, which the division by zero raised until
    2026-12-07."""


# t += s and the other augmented assignments: Python 3.11+ runs BINARY_OP
# with an NB_INPLACE_* argument, older ones an INPLACE_* opcode
_NB_OPS = getattr(dis, "_nb_ops", ())
_IN_PLACE_ARGS = frozenset(i for i, op in enumerate(_NB_OPS) if op[0].startswith("NB_INPLACE_"))
_BINARY_OP = dis.opmap.get("BINARY_OP")
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def in_augmented_assignment(frame) -> bool:
    """Whether ``frame`` (torch's own Python frames above it skipped) is
    running an augmented assignment (``t += s``) right now: a torch
    tensor's ``__iadd__`` turns our refusal (a TypeError) into
    NotImplemented, and Python then takes ``t + s`` and rebinds ``t``."""
    while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
        frame = frame.f_back
    if frame is None:
        return False
    code, i = frame.f_code.co_code, frame.f_lasti
    if not 0 <= i < len(code) - 1:
        return False
    if code[i] == _BINARY_OP:
        return code[i + 1] in _IN_PLACE_ARGS
    return dis.opname[code[i]].startswith("INPLACE_")


def _is_complex(x) -> bool:
    """A complex value: a torch tensor, a NumPy array or scalar, a Python
    complex, or a list or tuple holding one."""
    if isinstance(x, torch.Tensor):
        return x.is_complex()
    if isinstance(x, (complex, np.complexfloating)):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind == "c"
    if isinstance(x, (list, tuple)):
        return any(_is_complex(v) for v in x)
    return False


def _refuse_complex(x, what: str) -> None:
    """TypeError for a complex plaintext operand: cast to float64 it would
    lose its imaginary part with a mere warning; and for a nested one."""
    if _is_complex(x):
        raise TypeError(f"complex tensors cannot be secret-shared ({what})")
    if isinstance(x, torch.Tensor) and x.is_nested:  # (torch's "Internal error" named none)
        raise TypeError(
            f"nested tensors cannot be secret-shared ({what}): pad them "
            "(torch.nested.to_padded_tensor) or share each one"
        )


def _dense(x):
    """A sparse torch tensor (COO, CSR, ...; a GCN's public adjacency) as
    its dense value; anything else as it is."""
    if isinstance(x, torch.Tensor) and x.layout != torch.strided:
        return x.to_dense()
    return x


def _bool_as_number(y):
    """A bool operand of a comparison, ``maximum``/``minimum``, ``clamp``
    or ``where`` as torch promotes it there: 0/1 (a Python bool as an int,
    a bool tensor as float64); anything else as it is. (These subtract it,
    and ``x - bool_tensor`` itself stays torch's error.)"""
    if isinstance(y, bool):
        return int(y)
    if isinstance(y, torch.Tensor) and y.dtype == torch.bool:
        return y.to(torch.float64)
    return y


def _float64(x, what: str) -> torch.Tensor:
    """``torch.as_tensor(x, dtype=torch.float64)`` for a plaintext operand
    (a sparse one as its dense value), a complex one refused (TypeError)
    instead of cast to its real part."""
    _refuse_complex(x, what)
    return torch.as_tensor(_dense(x), dtype=torch.float64)


def _plain_array(x, what: str = "operand") -> np.ndarray:
    """A plaintext value as a float64 numpy array (a sparse torch tensor
    as its dense value), or TypeError."""
    if isinstance(x, range):  # torch.tensor(range(4)) takes one too
        x = list(x)
    if not isinstance(x, (list, tuple)):  # (a list: by its array's dtype below)
        _refuse_complex(x, what)
    if isinstance(x, torch.Tensor):
        return _dense(x.detach().cpu()).to(torch.float64).numpy()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"cannot secret-share a numpy array of dtype {x.dtype} ({what})")
        return x.astype(np.float64)
    if isinstance(x, (bool, np.bool_)) or isinstance(x, numbers.Real):
        return np.asarray(_float_of(x, what), dtype=np.float64)
    if isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x)
        except ValueError as e:
            raise ValueError(f"ragged nested list cannot be shared ({what}): {e}") from None
        _refuse_complex(arr, what)
        if arr.dtype == object and all(isinstance(v, numbers.Real) for v in arr.flat):
            # Python ints beyond 64 bits ([2**70]): numbers, out of range for
            # the encoding (EncodingError), as 2**70 alone (until 2026-12-06
            # TypeError "list of object values")
            arr = np.array([_float_of(v, what) for v in arr.flat]).reshape(arr.shape)
        if arr.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"list of {arr.dtype} values cannot be secret-shared ({what})")
        return arr.astype(np.float64)
    raise TypeError(
        f"expected a torch tensor, numpy array, number or list ({what}), got {type(x).__name__}"
    )


def _float_of(x, what: str) -> float:
    """float(x); an integer too large for a float64 (10**400) is refused as
    any value out of the encoding's range (EncodingError), not OverflowError."""
    try:
        return float(x)
    except OverflowError:
        raise EncodingError(
            f"encoding error: an integer of {int(x).bit_length()} bits is outside the "
            f"representable range ({what})"
        ) from None


def _is_integer_plain(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, numbers.Integral):
        return True
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "iu"
    return False


def _buf(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def _ibuf(a) -> bytes:
    """Integers as the engine's int64 bytes (``mul_public_int``): until
    2026-12-06 a Python list, converted element by element twice."""
    return np.ascontiguousarray(a, dtype="<i8").tobytes()


def _index(v) -> int | None:
    """``v`` as a Python int where torch takes it as one (an int, a NumPy
    integer, a 0-d integer tensor; not a bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if (
        isinstance(v, torch.Tensor)
        and v.dim() == 0
        and not v.is_floating_point()
        and not v.is_complex()
        and v.dtype != torch.bool
    ):
        return int(v)
    return None


def _ints(vs, what: str) -> list[int]:
    """Every element of ``vs`` as a Python int (see :func:`_index`), or TypeError."""
    out = [_index(v) for v in vs]
    if any(v is None for v in out):
        raise TypeError(f"{what} must be ints, got {tuple(vs)!r}")
    return out


def _varargs(args: tuple, kw: dict, name: str, what: str) -> tuple:
    """The sizes or dims of a torch method taking them as ``*args`` or as
    one keyword (torch's name: ``x.permute(dims=...)``,
    ``x.view(size=...)``)."""
    if kw:
        bad = next((k for k in kw if k != name), None)
        if bad is not None or args:
            raise TypeError(
                f"{what}() got an unexpected keyword argument '{bad or name}'"
                if bad is not None
                else f"{what}() got multiple values for argument '{name}'"
            )
        return (kw[name],)
    return args


def _norm_dim(d: int, ndim: int) -> int:
    i = _index(d)
    if i is None:
        raise TypeError(f"dim must be an int, got {type(d).__name__}")
    d = i
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"dim {d} out of range for a tensor of rank {ndim}")
    return d % max(ndim, 1)


def softmax_dim(name: str, dim, ndim: int, stacklevel: int = 3):
    """``dim``, or where it is None torch's legacy implicit choice for
    softmax-like ``name`` (0 for 0-, 1- and 3-D inputs, else 1) with
    torch's deprecation warning (``F._get_softmax_dim``'s text)."""
    if dim is not None:
        return dim
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _pair(v, name: str) -> tuple[int, int]:
    """An int or a pair of ints (each as :func:`_index` takes it: NumPy
    integers and 0-d integer tensors too, as torch's; a sequence of one
    int is a pair, as torch's), or TypeError; a sequence of ints of
    another length is torch's RuntimeError (InvalidArgumentError)."""
    if _index(v) is not None:
        v = (v, v)
    if not isinstance(v, (tuple, list)) or None in map(_index, v):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if len(v) == 1:
        v = (v[0], v[0])
    if len(v) != 2:
        raise InvalidArgumentError(f"{name} must be an int or a pair of ints, got {v!r}")
    v = tuple(_index(i) for i in v)
    if any(i < 0 for i in v):
        raise InvalidArgumentError(f"{name} must be non-negative, got {v!r}")
    return int(v[0]), int(v[1])


def _strides(shape: Sequence[int]) -> list[int]:
    st = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        st[i] = st[i + 1] * shape[i + 1]
    return st


def _available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_encodable(a: np.ndarray, precision_bits: int) -> None:
    """The EncodingError the engine's encoding would raise for ``a`` (NaN,
    inf, |v| >= 2^(63 - 2f)), naming the value as the user gave it (an
    operand negated first was named negated: -3e9 for 3e9)."""
    bad = a[~np.isfinite(a)]
    if bad.size:
        raise EncodingError(
            f"cannot encode non-finite value {bad.flat[0]}: a fixed-point share cannot hold it"
        )
    lim = 2.0 ** (63 - 2 * precision_bits)
    big = a[np.abs(a) >= lim]
    if big.size:
        raise EncodingError(
            f"encoding error: value {float(big.flat[0])!r} is outside the "
            f"representable range (-{lim:.0f}, {lim:.0f}) for {precision_bits} fractional bits"
        )


def check_positions(n: int, what: str) -> None:
    """Refuse, as the engine refuses an allocation that cannot fit
    (OutOfMemoryError, a MemoryError), a result of ``n`` elements whose
    public positions Python would build (about 48 bytes each: the index
    array and its list for the engine): before the memory is touched, not
    by the kernel's OOM killer."""
    need = n * 48
    if need < 1 << 30:
        return
    avail = _available_bytes()
    if avail is not None and need > avail:
        raise OutOfMemoryError(
            f"{what}: a result of {n} elements needs about {need} bytes of positions; "
            f"{avail} bytes are available"
        )


def tensor_type(dst):
    """``x.type(dst)`` / ``model.type(dst)``'s target as ``to``'s arguments:
    (device, dtype) for a type name ("torch.cuda.DoubleTensor") or a tensor
    type class (``torch.DoubleTensor``), else ``(dst,)``."""
    if isinstance(dst, str):
        device = "cuda" if ".cuda." in dst else "cpu"
        return device, torch.empty(0).type(dst.replace(".cuda.", ".", 1)).dtype
    if isinstance(dst, type) and isinstance(getattr(dst, "dtype", None), torch.dtype):
        return ("cuda" if dst.is_cuda else "cpu"), dst.dtype
    return (dst,)


def zero_d_iteration(frame) -> str:
    """The TypeError's words for iterating over a 0-d SharedTensor, naming
    the caller where it is known: torch's ``GradScaler.scale`` iterates
    over what is not a torch.Tensor (probe OF: the generic words sent a
    user to detach the loss)."""
    name = frame.f_code.co_filename if frame is not None else ""
    if name.endswith(os.path.join("amp", "grad_scaler.py")):
        return (
            "torch.amp.GradScaler cannot scale a SharedTensor loss (it scales torch "
            "tensors only); fixed point needs no loss scaling: call loss.backward() and "
            "optimizer.step() without the scaler, or build it with GradScaler(enabled=False)"
        )
    return (
        "iteration over a 0-d tensor (a SharedTensor is no torch.Tensor: a helper that "
        "recurses into what is not one, word_language_model's repackage_hidden, ends here; "
        "call h.detach() on each SharedTensor)"
    )


def plain_requires_grad(v) -> str:
    """Why a plaintext torch tensor that requires grad cannot be a number
    here (torch refuses it too)."""
    return (
        f"a plaintext torch tensor that requires grad (shape {list(v.shape)}) cannot be "
        "taken as a number: its gradient would be lost. Encrypt it "
        "(cryptgpu.cryptensor(w, requires_grad=True)) to train it, or detach it to keep it fixed"
    )
