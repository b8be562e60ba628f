"""SharedTensor: a CrypTen-style handle to a tensor secret-shared among the
three parties of the current session. Arithmetic is delegated to the engine;
the Python side only checks arguments, broadcasts, and turns Python values
into float64 buffers.

This module composes the class from its parts, each in a module of its own
that imports only those below it: tensor_base (state, opening), then the
operation mixins tensor_shape, tensor_arith, tensor_compare, tensor_reduce
and tensor_layers, and tensor_torchlike, tensor_scatter, tensor_math and
tensor_more composed from them; gradient rules
live in gradients, the tape in autograd.
"""

from __future__ import annotations

import copy
import enum
import math
import sys
import threading

import numpy as np
import torch

from . import _session, comm, torch_dispatch
from . import tensor_storage as _storage
from ._plain import _available_bytes, _index, _plain_array, check_encodable, in_augmented_assignment
from ._session import current
from .tensor_activations import ActivationOps
from .tensor_arith import ArithmeticOps
from .tensor_base import SecretValueError, TensorBase
from .tensor_compare import ComparisonOps, where
from .tensor_layers import LayerOps
from .tensor_math import MathOps
from .tensor_more import MoreOps
from .tensor_reduce import FunctionOps, ReductionOps
from .tensor_scatter import ScatterOps
from .tensor_shape import ShapeOps, cat, stack
from .tensor_torchlike import TorchLikeOps

__all__ = ["SharedTensor", "cat", "cryptensor", "stack", "where"]


class ptype(enum.Enum):
    """CrypTen's sharing types (``crypten.mpc.arithmetic``): arithmetic
    sharing is every SharedTensor's (``x.ptype``); binary shares are not
    provided (``ptype=binary`` is a NotImplementedError)."""

    arithmetic = 0
    binary = 1


def check_ptype(ptype_, where: str) -> None:
    """Refuses a sharing type other than arithmetic (CrypTen's enum member,
    its name, or None for the default)."""
    if ptype_ is not None and getattr(ptype_, "name", str(ptype_)) != "arithmetic":
        raise NotImplementedError(
            f"{where}(ptype={ptype_!r}): only arithmetic sharing is provided (no binary shares)"
        )


class SharedTensor(
    MoreOps,
    MathOps,
    ActivationOps,
    TorchLikeOps,
    ScatterOps,
    ShapeOps,
    ArithmeticOps,
    ComparisonOps,
    ReductionOps,
    FunctionOps,
    LayerOps,
    TensorBase,
):
    """A tensor secret-shared among three parties (replicated shares over Z_2^64).

    Create one with :func:`cryptgpu.cryptensor`. Supports ``+ - * @ /``, unary
    ``-``, mixing with plaintext tensors, numbers and arrays on either side,
    and the shape operations a CNN needs. ``get_plain_text()`` opens it.
    ``torch.cat``, ``torch.matmul``, ``F.relu`` and the other torch functions
    with a SharedTensor counterpart accept it (``torch_dispatch``).
    """

    __slots__ = ()

    # numpy defers to SharedTensor's reflected operators (arr + x), and its
    # functions (np.exp(x)) raise TypeError instead of building object
    # arrays of 0-d shares
    __array_ufunc__ = None

    def __array__(self, *args, **kwargs):
        raise SecretValueError(
            "a SharedTensor cannot become a numpy array or torch tensor: its value is "
            "secret; open it with x.get_plain_text() (every party learns it)"
        )

    @property
    def __cuda_array_interface__(self):
        """Absent (AttributeError). torch.tensor(x) and torch.as_tensor(x)
        ask for it first, then read x element by element down to the len()
        of a 0-d element, which raises: noted here (the caller's frame and
        instruction), that len() names what was asked, not a 0-d tensor."""
        f = sys._getframe(1)
        if f.f_code is not SharedTensor.__getattr__.__code__:  # (which asks again)
            _AS_TENSOR.asked = (id(f), f.f_code, f.f_lasti)
        raise AttributeError("__cuda_array_interface__")

    def __len__(self) -> int:
        f = sys._getframe(1)
        if self.dim() == 0 and getattr(_AS_TENSOR, "asked", None) == (id(f), f.f_code, f.f_lasti):
            _AS_TENSOR.asked = None  # torch.tensor(x) / torch.as_tensor(x) of any shape
            raise SecretValueError(
                "torch.tensor(x) or torch.as_tensor(x) of a SharedTensor: it cannot become a "
                "torch tensor or numpy array, whatever its shape: its value is secret; open it "
                "with x.get_plain_text() (every party learns it)"
            )
        return super().__len__()

    def __array_function__(self, func, types, args, kwargs):
        """numpy's functions: shape queries answer; the others (np.sum(x),
        whose ``out=`` the methods do not take) raise a clear TypeError."""
        if func in (np.shape, np.ndim):
            return func._implementation(*args, **kwargs)
        raise TypeError(
            f"numpy.{func.__name__} does not take a SharedTensor: use the torch "
            f"function or the method (x.sum(dim), torch.mean(x, dim)), or open the "
            "value with get_plain_text() first"
        )

    @property
    def ptype(self):
        """CrypTen's sharing type: ``crypten.mpc.arithmetic``, always."""
        return ptype.arithmetic

    def new(self, *args, **kwargs) -> SharedTensor:
        """CrypTen's ``x.new(data, ...)``: a new encrypted tensor, as
        ``cryptensor(data, ...)`` (shared from party 0 unless ``src=``);
        ``x`` itself only names the kind of tensor wanted. torch's legacy
        sizes form, ``x.new(x.size())`` or ``x.new(3, 4)`` (two or more
        ints), is torch's ``new_empty``: a public uninitialised tensor
        (until 2026-12-07 the sizes were shared as data)."""
        sizes = len(args) == 1 and isinstance(args[0], torch.Size)
        ints = len(args) > 1 and all(_is_int(a) for a in args)
        if (sizes or ints) and not kwargs:
            return self.new_empty(*args)
        return cryptensor(*args, **kwargs)

    def reveal(self, dst: int | None = None) -> torch.Tensor | None:
        """CrypTen's ``reveal``: open the tensor *without* decoding it, as
        int64 ring elements (the fixed-point values times 2^precision_bits;
        ``get_plain_text()`` is the decoded value). Exact while the values
        are below 2^(53 - precision_bits) in magnitude (the opening passes
        through float64). ``dst`` as in :meth:`get_plain_text`."""
        plain = self.get_plain_text(dst=dst, dtype=torch.float64)
        if plain is None:  # SPMD: this party is not dst
            return None
        scale = float(2 ** self._s().precision_bits)
        return torch.round(plain * scale).to(torch.int64)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return torch_dispatch.torch_function(cls, func, types, args, kwargs)

    def __deepcopy__(self, memo) -> SharedTensor:
        """TensorBase's; a view (of a root autograd does not record) stays
        a view of its root's copy in the same ``memo``, as torch's of its
        storage's: after ``b2, v2 = copy.deepcopy([b, b[0]])`` a change of
        ``b2`` shows in ``v2`` (until 2026-12-07 two unrelated tensors)."""
        if self._view is None or self._back is not None:
            return super().__deepcopy__(memo)
        _ = self._t  # (the view brought up to date)
        v = _storage.follow(self, self._view)
        if v[0]._back is not None:
            return super().__deepcopy__(memo)
        root = copy.deepcopy(v[0], memo)
        out = super().__deepcopy__(memo)
        out._st, out._off = self._st, getattr(self, "_off", None)
        out._cell = _storage.cell(root)
        out._view = (root, root._version, v[2], v[3])
        return out

    def __getattr__(self, name: str):
        # only for names nothing else defines: one of torch.Tensor's is
        # refused as the torch function of that name is (a bare
        # AttributeError until 2026-12-07), still an AttributeError for hasattr
        if any(name in vars(k) for k in type(self).__mro__):  # a property's own error
            return object.__getattribute__(self, name)  # (raised again, not hidden)
        if name.startswith("_") or not hasattr(torch.Tensor, name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        if name in _RANDOM:  # CrypTen's x.bernoulli() draws private randomness
            raise UnsupportedAttributeError(
                f"{name} on a SharedTensor is not supported: there are no private random "
                "tensors here; x > crypten.cryptensor(torch.rand(x.shape), src=i) draws "
                "CrypTen's x.bernoulli() (1 with probability x) with a uniform that party i "
                "knows and the others do not"
            )
        raise UnsupportedAttributeError(
            f"{name} on a SharedTensor is not supported (README, 'What is supported', lists "
            "what is)"
        )

    def any(self, *args, **kwargs):
        """Refused (NotImplementedError): torch's result is a bool to branch
        on, which would open a secret bit. ``(x != 0).amax(dim)`` is the
        same test as a secret 0/1 tensor; open it with get_plain_text()."""
        raise NotImplementedError(_TRUTH.format("any", "amax"))

    def all(self, *args, **kwargs):
        """Refused (NotImplementedError), as :meth:`any`: ``(x != 0).amin(dim)``
        is the secret 0/1 test."""
        raise NotImplementedError(_TRUTH.format("all", "amin"))

    # t += s with t a torch tensor (torch_dispatch sends it here): refused
    def __radd__(self, y):
        _refuse_augmented(y, "+")
        return self.add(y)

    def __rsub__(self, y):
        _refuse_augmented(y, "-")
        return super().__rsub__(y)

    def __rmul__(self, y):
        _refuse_augmented(y, "*")
        return self.mul(y)

    def __rtruediv__(self, y):
        _refuse_augmented(y, "/")
        return super().__rtruediv__(y)

    def __rpow__(self, y):
        _refuse_augmented(y, "**")
        return super().__rpow__(y)


_AS_TENSOR = threading.local()  # (frame id, code, instruction) that asked, per thread

_TRUTH = (
    "{0}() of a SharedTensor is not supported: its bool would open a secret bit; "
    "(x != 0).{1}(dim) gives the same test as a secret 0/1 tensor (open it with "
    "get_plain_text() where every party may learn it)"
)


# torch.Tensor's random draws (CrypTen has x.bernoulli()): refused saying what to use
_RANDOM = frozenset(
    "bernoulli bernoulli_ uniform_ normal_ random_ exponential_ geometric_ cauchy_ "
    "log_normal_".split()
)


class UnsupportedAttributeError(NotImplementedError, AttributeError):
    """A torch.Tensor method or attribute that SharedTensor does not have:
    a NotImplementedError, as the torch function of that name raises, and
    an AttributeError, so that ``hasattr`` and ``getattr(x, name, default)``
    still answer."""


def _refuse_augmented(y, op: str) -> None:
    """SecretValueError for ``t += s`` (``-=``, ``*=``, ``/=``, ``**=``) with
    ``t`` a torch tensor, as ``t.add_(s)``'s: torch changes ``t`` in place,
    and Python's fallback to ``t = t + s`` left ``t``'s other references
    (an output buffer's row, a caller's argument) unchanged, silently,
    until 2026-12-07. ``@=`` rebinds, as torch's own (no ``__imatmul__``)."""
    if isinstance(y, torch.Tensor) and in_augmented_assignment(sys._getframe(2)):
        raise SecretValueError(
            f"t {op}= s with t a torch tensor and s a SharedTensor: a torch tensor cannot "
            f"hold a secret value (torch changes t in place; other references to t would keep "
            f"the old value); write t = t {op} s for a new SharedTensor, or share t first "
            "(t = cryptgpu.cryptensor(t)) and then change it"
        )


def party_index(src) -> int:
    """``src`` checked as a party index: 0, 1 or 2 (an int, NumPy int or
    0-d integer tensor)."""
    if _index(src) is None:
        raise TypeError(f"src must be a party index (int), got {type(src).__name__}")
    src = _index(src)
    if src not in (0, 1, 2):
        raise ValueError(f"src must be 0, 1 or 2, got {src}")
    return src


def cryptensor(
    data, src: int = 0, requires_grad: bool | None = None, *, device=None, precision=None, **kwargs
) -> SharedTensor:
    """Secret-share ``data`` from party ``src`` (0, 1 or 2).

    ``data`` may be a torch tensor, a numpy array, a Python number or a
    (nested) list. Values are encoded in fixed point with the session's
    ``precision_bits``; NaN, inf and values too large to encode raise
    :class:`cryptgpu.EncodingError` (a ValueError). Costs one round in which the
    owner sends one ring element per value to each of the two other parties.
    ``requires_grad=True`` makes the result an autograd leaf (as CrypTen's
    ``cryptensor(..., requires_grad=True)``); left out (None), it is
    ``data.requires_grad`` (False for data that is no tensor), and an
    explicit ``False`` wins over a tensor that requires grad, as CrypTen's.
    In a multi-party run it is each party's own (not sent by src): every
    party must get the same, so a party other than src that passes a
    placeholder (``torch.empty(shape)``, which does not require grad) for
    src's tensor that does must pass ``requires_grad=True`` too (parties
    that differ run different protocols and fail with an out-of-step
    PeerError). With ``broadcast_size=True``, src's (its argument's, or
    its ``data.requires_grad``) comes with its shape and is taken by a
    party that gives none.
    CrypTen's ``device=`` and ``precision=`` keywords are accepted when they
    name the session's own device and precision_bits (a tensor cannot have
    others here).

    >>> import cryptgpu, torch
    >>> cryptgpu.init()
    >>> x = cryptgpu.cryptensor(torch.tensor([1.0, 2.0]))
    >>> (x * 3).get_plain_text()
    tensor([3., 6.])
    """
    if isinstance(data, SharedTensor):
        raise TypeError("data is already a SharedTensor")
    src = party_index(src)
    s = current()
    broadcast = kwargs.pop("broadcast_size", False)
    if "ptype" in kwargs:  # CrypTen's crypten.mpc.arithmetic (the only kind here)
        check_ptype(kwargs.pop("ptype"), "cryptensor")
    if kwargs:
        raise TypeError(f"cryptensor() got unexpected keyword arguments {sorted(kwargs)}")
    if precision is not None and precision != s.precision_bits:
        raise ValueError(
            f"precision={precision}: this session encodes with precision_bits="
            f"{s.precision_bits} (set it in cryptgpu.init)"
        )
    here = _session.device().type
    if device is not None and torch.device(device).type != here:
        raise ValueError(
            f"device={device!r}: this session's tensors live on {here} "
            "(choose it in cryptgpu.init(device=...))"
        )
    given = requires_grad is not None
    if requires_grad is None:
        # a torch tensor that requires grad gives a leaf that does, as
        # CrypTen's; an explicit requires_grad=False wins, as CrypTen's
        requires_grad = bool(getattr(data, "requires_grad", False))
    if not isinstance(requires_grad, (bool, np.bool_)):
        raise TypeError(f"requires_grad must be a bool, not {type(requires_grad).__name__}")
    if broadcast:  # CrypTen's: the other parties pass any tensor, src's shape is sent
        if src in s.ranks and len(s.ranks) < 3 and data is not None:
            # before the shape goes out, as the share's own encoding (a caught
            # EncodingError left the parties out of step: a review)
            if not (isinstance(data, torch.Tensor) and data.is_meta):
                check_encodable(
                    np.asarray(_plain_array(data, "cryptensor"), np.float64), s.precision_bits
                )
        data, src_grad = _sized(s, src, data, requires_grad)
        # src's requires_grad comes with its shape (no extra round): a
        # placeholder's own does not decide it where none was given
        requires_grad = requires_grad if given else src_grad
    if data is None:  # CrypTen's (and MPCTensor's) ValueError
        raise ValueError("Cannot initialize tensor with None.")
    if isinstance(data, torch.Tensor) and data.is_meta:  # a shape without values
        data = _meta_placeholder(s, src, data)
    comm.warn_placeholder(src)  # local runtime, src != 0, after get_rank(): once
    out = SharedTensor._share(_plain_array(data, "cryptensor"), src)
    return out.requires_grad_(requires_grad) if requires_grad else out


def opened_words(src: int, words: torch.Tensor) -> torch.Tensor:
    """src's int64 ``words`` (any shape; the other parties pass a tensor
    of that shape), known to every party exactly: cut into chunks below the
    encoding's limit 2^(63 - 2f) (16 bits up to f = 23, fewer above; the
    top chunk signed), each shared from src and opened. Until 2026-12-06
    values were shared whole: a shape dim or a buffer word beyond 2^(63 -
    2f) was an EncodingError (a dim of 200 at f = 28)."""
    parts, b = _chunks(words)
    opened = cryptensor(parts, src=src).get_plain_text(dtype=torch.float64)
    return _joined(opened, b)


def words_of_each(words: torch.Tensor) -> torch.Tensor:
    """Every party's int64 ``words`` (the same shape on each), known to
    every party exactly, as rows 0, 1, 2 of the result: each party shares
    its chunks (:func:`opened_words`; one round each, 3 in all) and the
    three are opened together (one round)."""
    parts, b = _chunks(words)
    shared = stack([cryptensor(parts, src=k) for k in range(3)])
    opened = shared.get_plain_text(dtype=torch.float64)
    return torch.stack([_joined(o, b) for o in opened])


def _chunks(words: torch.Tensor) -> tuple:
    """``words`` flattened and cut into b-bit chunks (rows, the top one
    signed) that encode exactly at this session's precision; and b."""
    f = _session.current().precision_bits
    b = max(1, min(16, 62 - 2 * f))
    n = -(-64 // b)
    words = words.to(torch.int64).reshape(-1)
    mask = (1 << b) - 1
    parts = [(words >> (b * i)) & mask for i in range(n - 1)] + [words >> (b * (n - 1))]
    return torch.stack(parts).double(), b


def _joined(opened: torch.Tensor, b: int) -> torch.Tensor:
    """The words back from their opened b-bit chunks."""
    n = opened.shape[0]
    opened = torch.round(opened).to(torch.int64)
    out = opened[n - 1] << (b * (n - 1))
    for i in range(n - 1):
        out = out | (opened[i] << (b * i))
    return out


def broadcast_shape(s, src: int, shape) -> tuple:
    """src's tensor shape, known to every party: its rank (or -1 when src
    failed to load), then its dims, each shared from src and opened
    exactly (:func:`opened_words`); src's failure is raised by every party
    alike."""
    return _shape_and_flag(s, src, shape, False)[0]


def _shape_and_flag(s, src: int, shape, flag: bool) -> tuple:
    """(src's shape, src's ``flag``) as :func:`broadcast_shape` has them:
    the flag rides in the rank's word (2 * rank + flag), at no extra round
    or byte."""
    if len(s.ranks) == 3:  # the local runtime: src's shape is already here
        return shape, flag
    word = torch.tensor([-1 if shape is None else 2 * len(shape) + int(bool(flag))])
    w = int(opened_words(src, word)[0])
    if w < 0:
        err = ValueError(f"party {src} could not load its tensor (its own error says why)")
        err._echo_of = src  # spmd._parties reports src's own error before this one
        raise err
    n, flag = w >> 1, bool(w & 1)
    if n > _MAX_DIMS:  # src's word sizes what follows: checked first (a review)
        raise ValueError(f"party {src} sent a shape of {n} dimensions (at most {_MAX_DIMS})")
    if n == 0:
        return (), flag
    dims = torch.tensor(list(shape) if shape is not None else [0] * n, dtype=torch.int64)
    got = tuple(int(d) for d in opened_words(src, dims))
    if any(d < 0 for d in got) or (
        src not in s.ranks and math.prod(got) * 8 > (_available_bytes() or math.inf)
    ):
        raise ValueError(f"party {src} sent the shape {got}: more than this host holds")
    return got, flag


_MAX_DIMS = 64


def _sized(s, src: int, data, requires_grad: bool) -> tuple:
    """(``data`` where this party is src, else zeros of src's shape; src's
    ``requires_grad``), both sent by src: ``cryptensor(x, src=,
    broadcast_size=True)``, CrypTen's, where the other parties pass any
    tensor."""
    mine = src in s.ranks
    shape, grad = _shape_and_flag(s, src, tuple(np.shape(data)) if mine else None, requires_grad)
    return (data if mine else torch.zeros(shape, dtype=torch.float64)), grad


def _meta_placeholder(s, src: int, data: torch.Tensor) -> torch.Tensor:
    """A meta tensor (a shape, no values) passed by a party other than src:
    a placeholder as ``torch.empty`` is (only src's values are read), here
    zeros of its shape and dtype; src itself has nothing to share from it
    (torch's "Cannot copy out of meta tensor" named no cause)."""
    if src in s.ranks:
        raise NotImplementedError(
            f"cryptensor: party {src} (src) shares a meta tensor of shape {list(data.shape)}, "
            "which holds no values; pass the data itself (a meta tensor serves only as a "
            "placeholder on the parties other than src)"
        )
    return torch.zeros(data.shape, dtype=data.dtype)


def _is_int(a) -> bool:
    """An int (not a bool), as torch reads a size."""
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))
