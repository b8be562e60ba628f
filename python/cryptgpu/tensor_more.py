"""More of torch's tensor API, composed from the other mixins (views,
public positions, products, the range-reduced square root): select, tile,
ravel, diag, diag_embed, fliplr/flipud, mH/H, nansum, fill_diagonal_,
take_along_dim, broadcast_to, tensor_split and hsplit/vsplit/dsplit, lerp,
diff, cumprod, the in-place transpose_/t_/squeeze_/unsqueeze_, is_leaf and
is_floating_point; and the torch functions with no method of their name
(broadcast_tensors, hstack, vstack, dstack, var_mean,
std_mean, linalg.norm, cosine_similarity, mv with a public matrix, and
``tensor_math``'s), which ``torch_dispatch`` maps through :data:`TABLE`.
No engine calls of their own; every gradient comes from the composed
operations.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.nn.functional as F

from . import autograd as ag
from . import tensor_storage as _storage
from . import unit_rows
from ._native import ShapeError
from ._plain import _float64, _index, _ints, _norm_dim, _varargs
from .tensor_base import TensorBase
from .tensor_math import TABLE as _MATH
from .tensor_overlap import refuse_partial_overlap
from .tensor_reduce import axis_alias
from .tensor_scatter import _index_array
from .tensor_shape import _view_strides, cat
from .tensor_torchlike import scan


class MoreOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: more of torch's tensor methods."""

    __slots__ = ()

    # ------------------------------------------------------------ views and copies
    def select(self, dim: int, index: int) -> TensorBase:
        """``x.select(dim, i)``: the view ``x[..., i, ...]`` with ``dim`` removed."""
        if self.dim() == 0:
            raise IndexError("select() cannot be applied to a 0-dim tensor.")
        d = _norm_dim(dim, self.dim())
        i = _ints([index], "select: index")[0]
        n = self.shape[d]
        if not -n <= i < n:
            raise IndexError(f"select(): index {i} out of range for tensor of size {n} at dim {d}")
        return self[(slice(None),) * d + (i,)]

    def tile(self, *dims, **kw) -> TensorBase:
        """``torch.tile``: :meth:`repeat`, with ones prepended to ``dims``
        when it has fewer entries than the tensor has dims."""
        dims = _varargs(dims, kw, "dims", "tile")
        if not dims:
            raise TypeError('tile() missing 1 required positional arguments: "dims"')
        if len(dims) == 1 and isinstance(dims[0], (tuple, list, torch.Size)):
            dims = tuple(dims[0])
        reps = _ints(dims, "tile: dims")
        reps = [1] * (self.dim() - len(reps)) + reps
        return self.repeat(reps) if reps else self + 0

    def ravel(self) -> TensorBase:
        """``reshape(-1)``: a view where torch's is one, else a copy."""
        return self.reshape(-1)

    def broadcast_to(self, *size, **kw) -> TensorBase:
        """``torch.broadcast_to``: :meth:`expand` (a read-only view)."""
        return self.expand(*_varargs(size, kw, "size", "broadcast_to"))

    def diag(self, diagonal: int = 0) -> TensorBase:
        """``torch.diag``: a 1-D tensor as the ``diagonal``-th diagonal of a
        square matrix (zeros elsewhere, local), or a matrix's diagonal as a
        new 1-D tensor."""
        k = _ints([diagonal], "diag: diagonal")[0]
        if self.dim() == 2:
            return self.diagonal(k).clone()
        if self.dim() != 1:
            raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {self.dim()}D")
        n = self.shape[0]
        m = n + abs(k)
        pos = np.full((m, m), n, dtype=np.int64)  # position n: a public zero
        rows = np.arange(n) + max(-k, 0)
        pos[rows, rows + k] = np.arange(n)
        return cat([self, self._public_like(0.0, [1])], 0)._at(pos)

    def diag_embed(self, offset: int = 0, dim1: int = -2, dim2: int = -1) -> TensorBase:
        """``torch.diag_embed``: the last dim's values on the ``offset``-th
        diagonal of the new dims ``dim1``, ``dim2`` (zeros elsewhere; local,
        exact). Placed by torch's own diag_embed of the public positions
        (its argument errors too)."""
        n = self.numel()
        grid = torch.arange(1, n + 1, dtype=torch.int64).reshape(tuple(self.shape))
        pos = torch.diag_embed(grid, offset, dim1, dim2) - 1
        pos[pos < 0] = n  # position n: a public zero
        return cat([self.reshape(-1), self._public_like(0.0, [1])], 0)._at(pos.numpy())

    def fliplr(self) -> TensorBase:
        """``torch.fliplr``: :meth:`flip` of dim 1 (at least 2 dims)."""
        if self.dim() < 2:
            raise RuntimeError("Input must be >= 2-d.")
        return self.flip(1)

    def flipud(self) -> TensorBase:
        """``torch.flipud``: :meth:`flip` of dim 0 (at least 1 dim)."""
        if self.dim() < 1:
            raise RuntimeError("Input must be >= 1-d.")
        return self.flip(0)

    @property
    def mH(self) -> TensorBase:  # noqa: N802 - torch's name
        """``mT``: the conjugate is the value itself (real shares)."""
        if self.dim() == 1:
            raise RuntimeError(
                "tensor.mH is only supported on matrices or batches of matrices. Got 1-D tensor."
            )
        return self.mT

    @property
    def H(self) -> TensorBase:  # noqa: N802 - torch's name
        """A matrix's transpose (real shares: no conjugate); a 0-d tensor itself."""
        if self.dim() not in (0, 2):
            raise RuntimeError(
                f"tensor.H is only supported on matrices (2-D tensors). Got {self.dim()}-D tensor."
            )
        return self.t()

    def nansum(self, *args, **kwargs) -> TensorBase:
        """``sum``: shares hold no NaN."""
        return self.sum(*args, **kwargs)

    def float_power(self, exponent) -> TensorBase:
        """``pow`` (shares are fixed point, whatever torch's float64 would be)."""
        return self.pow(exponent)

    def fill_diagonal_(self, fill_value, wrap: bool = False) -> TensorBase:
        """``fill_diagonal_`` as torch's (its checks and ``wrap``): the
        positions from torch's own on a public mask, then ``masked_fill_``."""
        mask = torch.zeros(tuple(self.shape), dtype=torch.bool)
        return self.masked_fill_(mask.fill_diagonal_(True, wrap), fill_value)

    def take_along_dim(self, indices, dim=None) -> TensorBase:
        """``torch.take_along_dim`` with public indices: the flattened
        tensor's positions (``dim`` None), or :meth:`gather` along ``dim``
        after broadcasting the other dims, as torch does."""
        idx = _index_array(indices, "take_along_dim")
        if dim is None:
            return self.reshape(-1).gather(0, torch.from_numpy(idx.reshape(-1)))
        if idx.ndim != self.dim():
            raise RuntimeError(
                "torch.take_along_dim(): input and indices should have the same number of "
                f"dimensions, but got {self.dim()} dimensions for input, and {idx.ndim} "
                "dimensions for indices"
            )
        d = _norm_dim(dim, self.dim())
        want = list(self.shape)
        want[d] = idx.shape[d]
        try:
            shape = list(np.broadcast_shapes(tuple(want), idx.shape))
        except ValueError:
            raise ShapeError(
                f"take_along_dim: shapes {tuple(self.shape)} and {idx.shape} do not broadcast"
            ) from None
        n = self.shape[d]
        # along a dim torch wraps negative indices (-n..-1), as gather does not
        idx = np.broadcast_to(np.where((idx < 0) & (idx >= -n), idx + n, idx), shape)
        shape[d] = n
        return self.expand(shape).gather(d, torch.from_numpy(np.array(idx)))

    def tensor_split(
        self,
        indices_or_sections=None,
        dim: int = 0,
        *,
        sections=None,
        indices=None,
        tensor_indices_or_sections=None,
    ) -> tuple:
        """``torch.tensor_split``: views along ``dim``. An int n gives n
        pieces, the first size % n of them one longer; a list of indices
        gives the slices between them, each bound wrapped and clamped as a
        slice's (an index past the end, or below the one before it, gives
        empty pieces, as torch's); a long tensor is either (torch's keyword
        names ``sections``, ``indices``, ``tensor_indices_or_sections``)."""
        given = [
            v
            for v in (indices_or_sections, sections, indices, tensor_indices_or_sections)
            if v is not None
        ]
        if len(given) != 1:
            raise TypeError("tensor_split() takes one indices_or_sections (sections or indices)")
        spec = given[0]
        if self.dim() == 0:
            raise RuntimeError(
                "tensor_split expected at least a 1-dimensional tensor, but got a tensor "
                "with 0 dims"
            )
        d = _norm_dim(dim, self.dim())
        n = self.shape[d]
        if isinstance(spec, torch.Tensor):
            if spec.dtype != torch.int64:
                kind = spec.new_empty(0, device="cpu").type().split(".")[-1]
                raise RuntimeError(
                    "tensor_split expected tensor_indices_or_sections to have dtype of long, "
                    f"but got {kind.replace('Tensor', '')}"
                )
            if spec.dim() > 1:
                raise RuntimeError(
                    "tensor_split expected tensor_indices_or_sections to be a zero-dimensional "
                    f"or one-dimensional tensor, but got a tensor with {spec.dim()} dims"
                )
            spec = int(spec) if spec.dim() == 0 else spec.tolist()
        k = _index(spec)
        if k is not None:
            if k <= 0:
                raise RuntimeError(f"number of sections must be larger than 0, got {k}")
            q, r = divmod(n, k)
            cuts = [i * q + min(i, r) for i in range(1, k)]
        elif isinstance(spec, (list, tuple)):
            cuts = _ints(spec, "tensor_split(): indices")
        else:
            raise TypeError(
                "tensor_split(): indices_or_sections must be an int, a tuple of ints or a "
                f"long tensor, not {type(spec).__name__}"
            )
        lead = (slice(None),) * d
        return tuple(self[lead + (slice(s, e),)] for s, e in zip([0, *cuts], [*cuts, n]))

    def hsplit(self, indices_or_sections=None, *, sections=None, indices=None) -> tuple:
        """``torch.hsplit``: :meth:`tensor_split` along dim 1 (dim 0 of a
        1-D tensor); an int must divide that dim's size (torch's
        RuntimeError otherwise)."""
        return _nsplit(self, "hsplit", 1, indices_or_sections, sections, indices)

    def vsplit(self, indices_or_sections=None, *, sections=None, indices=None) -> tuple:
        """``torch.vsplit``: :meth:`tensor_split` along dim 0 of a tensor of
        at least 2 dims; an int must divide that dim's size."""
        return _nsplit(self, "vsplit", 2, indices_or_sections, sections, indices)

    def dsplit(self, indices_or_sections=None, *, sections=None, indices=None) -> tuple:
        """``torch.dsplit``: :meth:`tensor_split` along dim 2 of a tensor of
        at least 3 dims; an int must divide that dim's size."""
        return _nsplit(self, "dsplit", 3, indices_or_sections, sections, indices)

    def transpose_(self, dim0: int, dim1: int) -> TensorBase:
        """:meth:`transpose` in place, as torch's: the tensor takes the
        transposed layout of its own storage (as ``x.data = x.transpose(..)``:
        views taken before keep viewing it); where autograd records, as
        any in-place op (a leaf that requires grad is refused)."""
        if ag.needs_grad(self):
            return self._in_place("transpose_", lambda t: t.transpose(dim0, dim1), reshape=True)
        with ag.no_grad():
            new = self.transpose(dim0, dim1)
        _storage.replace(self, new)
        return self

    swapaxes_ = swapdims_ = transpose_

    def t_(self) -> TensorBase:
        """:meth:`t` in place (:meth:`transpose_` of a matrix)."""
        if self.dim() > 2:
            raise RuntimeError(
                f"t_() expects a tensor with <= 2 dimensions, but self is {self.dim()}D"
            )
        return self.transpose_(0, 1) if self.dim() == 2 else self

    @axis_alias
    def squeeze_(self, dim=None) -> TensorBase:
        """:meth:`squeeze` in place (the tensor takes the new shape)."""
        recorded = ag.needs_grad(self)
        with ag.no_grad():  # the new shape (not recorded: it would read self)
            new = self.squeeze(dim)
        return self._reshape_in_place(new, "squeeze_", recorded)

    @axis_alias
    def unsqueeze_(self, dim: int) -> TensorBase:
        """:meth:`unsqueeze` in place (the tensor takes the new shape)."""
        recorded = ag.needs_grad(self)
        with ag.no_grad():
            new = self.unsqueeze(dim)
        return self._reshape_in_place(new, "unsqueeze_", recorded)

    def _reshape_in_place(self, new, what: str, recorded: bool) -> TensorBase:
        if recorded:  # as any in-place op: a recorded result takes it, a leaf refuses
            return self._in_place(what, lambda t: t.reshape(list(new.shape)), reshape=True)
        old, shape = list(self.shape), list(new.shape)
        if old == shape:
            return self
        st = None if self._st is None else _view_strides(old, self._st, shape)
        # views of this tensor read it through a reshape to the shape they
        # knew (TensorBase._as_view_of); a view itself now reads and writes
        # its base through one
        self._h, self._st = new._t, (None if st is None else tuple(st))
        v = self._view
        if v is not None:
            rd, wr = v[2], v[3]
            self._view = (
                v[0],
                v[1],
                lambda b: rd(b).reshape(shape),
                lambda b, val: wr(b, val.reshape(old)),
            )
        return self

    # ------------------------------------------------------------ element-wise
    def lerp(self, end, weight) -> TensorBase:
        """``torch.lerp``: self + weight (end - self); ``weight`` a public
        number or tensor, or shared."""
        w = weight if isinstance(weight, TensorBase) else _float64(weight, "lerp weight")
        if isinstance(end, TensorBase):
            return self + (end - self) * w
        return self + (self.neg() + _float64(end, "lerp end")) * w

    def lerp_(self, end, weight) -> TensorBase:
        """``x.lerp_(end, weight)`` in place: the EMA habit
        ``ema.lerp_(p, 1 - decay)``, which adds (p - ema) (1 - decay) with
        one truncation, so it keeps torch's average where
        ``ema.mul_(decay).add_(p, alpha=1 - decay)`` drifts (a decay near 1
        is rounded to 16 fractional bits, and the error adds up over
        1 / (1 - decay) steps)."""
        self._fits_in_place(end)
        if isinstance(weight, TensorBase) or torch.is_tensor(weight):
            self._fits_in_place(weight)
        return self._assign(self.lerp(end, weight), "lerp_")

    def addcmul(self, tensor1, tensor2, *, value=1) -> TensorBase:
        """``torch.addcmul``: x + value * tensor1 * tensor2."""
        return self._add_times(tensor1 * tensor2, value)

    def addcmul_(self, tensor1, tensor2, *, value=1) -> TensorBase:
        """``addcmul`` in place."""
        self._fits_broadcast(tensor1, tensor2)
        return self._assign(self.addcmul(tensor1, tensor2, value=value), "addcmul_")

    def addcdiv(self, tensor1, tensor2, *, value=1) -> TensorBase:
        """``torch.addcdiv``: x + value * tensor1 / tensor2 (a private
        divisor by the reciprocal's range-reduced protocol, as ``/``)."""
        return self._add_times(tensor1 / tensor2, value)

    def addcdiv_(self, tensor1, tensor2, *, value=1) -> TensorBase:
        """``addcdiv`` in place."""
        self._fits_broadcast(tensor1, tensor2)
        return self._assign(self.addcdiv(tensor1, tensor2, value=value), "addcdiv_")

    def _add_times(self, p, value) -> TensorBase:
        """x + value * p (no product for value 1)."""
        return self + (p if value == 1 else p * value)

    def _fits_broadcast(self, *operands) -> None:
        """torch's RuntimeError, before any work, when the operands'
        broadcast shape would grow x (an in-place result keeps x's shape),
        or when one partly overlaps x (``x.addcmul_(x.t(), y)``)."""
        shapes = (tuple(getattr(t, "shape", np.shape(t))) for t in operands)
        self._fits_in_place(torch.empty(torch.broadcast_shapes(*shapes), device="meta"))
        refuse_partial_overlap(self, *operands)

    def diff(self, n: int = 1, dim: int = -1, prepend=None, append=None) -> TensorBase:
        """``torch.diff``: the n-th forward difference along ``dim`` (after
        joining ``prepend`` and ``append``), local."""
        if self.dim() == 0:
            raise RuntimeError("diff expects input to be at least one-dimensional")
        n = _ints([n], "diff: n")[0]
        if n < 0:
            raise RuntimeError(f"order must be non-negative but got {n}")
        if n == 0:  # torch: the input, whatever prepend and append
            return self + 0
        d = _norm_dim(dim, self.dim())
        parts = [p for p in (prepend, self, append) if p is not None]
        y = cat(parts, d) if len(parts) > 1 else self
        for _ in range(n):
            m = y.shape[d]
            if m == 0:
                break
            y = y.narrow(d, 1, m - 1) - y.narrow(d, 0, m - 1)
        return y if n else y + 0

    # ------------------------------------------------------------ CrypTen's names
    def shallow_copy(self) -> TensorBase:
        """CrypTen's ``shallow_copy``: a new tensor holding the same shares
        (an in-place change of either shows in the other), outside the
        autograd graph: :meth:`detach`."""
        return self.detach()

    def cosine_similarity(self, x2, dim: int = 1, eps: float = 1e-8) -> TensorBase:
        """CrypTen's method form of ``F.cosine_similarity(self, x2, dim, eps)``
        (:func:`cosine_similarity`)."""
        return cosine_similarity(self, x2, dim, 1e-8 if eps is None else eps)

    def dropout2d(self, p: float = 0.5, training: bool = True, inplace: bool = False):
        """CrypTen's method form of ``F.dropout2d``: whole channels."""
        return F.dropout2d(self, p, training, inplace)

    def dropout3d(self, p: float = 0.5, training: bool = True, inplace: bool = False):
        """CrypTen's method form of ``F.dropout3d``: whole channels."""
        return F.dropout3d(self, p, training, inplace)

    def glu(self, dim: int = -1) -> TensorBase:
        """``F.glu``: the first half of ``dim`` times the sigmoid of the second."""
        d = _norm_dim(dim, self.dim())
        if self.shape[d] % 2:
            raise RuntimeError(
                f"Halving dimension must be even, but dimension {d} is size {self.shape[d]}"
            )
        a, b = self.chunk(2, d)
        return a * b.sigmoid()

    def true_divide(self, other) -> TensorBase:
        """``x / other`` (torch's true_divide)."""
        return self.div(other)

    # torch's aliases (torch.divide, x.negative, ...: NotImplementedError or
    # AttributeError until 2026-12-06)
    def divide(self, other, *, rounding_mode=None) -> TensorBase:
        """``x.div(other, rounding_mode=)`` (torch's divide)."""
        return self.div(other, rounding_mode=rounding_mode)

    def divide_(self, other, *, rounding_mode=None) -> TensorBase:
        return self.div_(other, rounding_mode=rounding_mode)

    def multiply(self, other) -> TensorBase:
        return self.mul(other)

    def subtract(self, other, *, alpha=1) -> TensorBase:
        return self.sub(other if alpha == 1 else other * alpha)

    def negative(self) -> TensorBase:
        return self.neg()

    def absolute(self) -> TensorBase:
        return self.abs()

    def greater(self, other) -> TensorBase:
        return self.gt(other)

    def greater_equal(self, other) -> TensorBase:
        return self.ge(other)

    def less(self, other) -> TensorBase:
        return self.lt(other)

    def less_equal(self, other) -> TensorBase:
        return self.le(other)

    def not_equal(self, other) -> TensorBase:
        return self.ne(other)

    def cumprod(self, dim: int, *, dtype=None) -> TensorBase:
        """Running products along ``dim``: ceil(log2(n)) rounds of products
        of shifted copies (padded with ones), as cumsum's additions."""
        if dtype is not None and not getattr(dtype, "is_floating_point", False):
            raise NotImplementedError(f"cumprod(dtype={dtype}): shares hold fixed-point reals")
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0:
            return self + 0
        return scan(self, d, operator.mul, 1.0)

    # ------------------------------------------------------------ queries
    def is_floating_point(self) -> bool:
        """True: shares hold fixed-point reals, revealed as floats."""
        return True

    @property
    def is_leaf(self) -> bool:
        """As torch's: False only for a result recorded by autograd (computed
        from a tensor that requires grad)."""
        return self._back is None

    def is_contiguous(self, memory_format=torch.contiguous_format) -> bool:
        """As torch's tensor of the same view would answer (a transposed,
        expanded, strided or diagonal view is not; its contiguous() is)."""
        if memory_format is not torch.contiguous_format:
            return torch.empty_strided(self.shape, self.stride(), device="meta").is_contiguous(
                memory_format=memory_format
            )
        return self._st is None

    def stride(self, dim=None):
        """torch's strides of the same view (in elements), or dim's."""
        st = tuple(self._strides())
        return st if dim is None else st[_norm_dim(dim, self.dim())]

    # shares are finite fixed-point numbers: public answers, as torch's
    # for finite values
    def isfinite(self) -> torch.Tensor:
        """All True (public): a share holds a finite fixed-point number."""
        return torch.ones(self.shape, dtype=torch.bool)

    def isnan(self) -> torch.Tensor:
        """All False (public): a share holds a finite fixed-point number."""
        return torch.zeros(self.shape, dtype=torch.bool)

    isinf = isposinf = isneginf = isnan

    def nan_to_num(self, nan=0.0, posinf=None, neginf=None) -> TensorBase:
        """torch's nan_to_num: a copy, exactly (a share holds a finite
        fixed-point number: nothing to replace); ``nan``, ``posinf`` and
        ``neginf`` are checked as torch checks them (numbers, or None). The
        usual guard after a -inf masked softmax (until 2026-12-07 refused)."""
        _replacements(nan, posinf, neginf)
        return self.clone()

    def nan_to_num_(self, nan=0.0, posinf=None, neginf=None) -> TensorBase:
        """torch's in-place nan_to_num_: ``self`` as it is (see nan_to_num)."""
        _replacements(nan, posinf, neginf)
        return self


def _replacements(nan, posinf, neginf) -> None:
    """torch's TypeError for a nan_to_num replacement that is not a number."""
    for name, v in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
        if v is not None and not isinstance(v, (int, float)):
            raise TypeError(
                f"nan_to_num(): argument {name!r} must be float, not {type(v).__name__}"
            )


def _nsplit(x, name: str, need: int, spec, sections, indices) -> tuple:
    """hsplit (need 1), vsplit (2), dsplit (3): torch's checks, then
    tensor_split along dim 1 (0 for a 1-D hsplit), 0 or 2."""
    given = [v for v in (spec, sections, indices) if v is not None]
    if len(given) != 1:
        raise TypeError(f"{name}() takes one indices_or_sections (sections or indices)")
    spec = given[0]
    if x.dim() < need:
        raise RuntimeError(
            f"torch.{name} requires a tensor with at least {need} dimension, but got a tensor "
            f"with {x.dim()} dimensions!"
        )
    dim = {"hsplit": 1 if x.dim() > 1 else 0, "vsplit": 0, "dsplit": 2}[name]
    k = _index(spec)
    if k is not None:
        n = x.shape[dim]
        if k == 0 or n % k:
            raise RuntimeError(
                f"torch.{name} attempted to split along dimension {dim}, but the size of the "
                f"dimension {n} is not divisible by the split_size {k}!"
            )
    elif not isinstance(spec, (list, tuple)):
        raise TypeError(
            f"{name}(): indices_or_sections must be an int or a tuple of ints, not "
            f"{type(spec).__name__}"
        )
    return x.tensor_split(spec, dim)


# ------------------------------------------------------------ torch functions


def _atleast(t, nd: int):
    """torch.atleast_{1,2,3}d of a shared or plaintext tensor."""
    shape = list(t.shape) if hasattr(t, "shape") else list(np.shape(t))
    if len(shape) >= nd:
        return t
    if nd == 3 and len(shape) == 2:
        new = shape + [1]
    elif nd == 3 and len(shape) == 1:
        new = [1] + shape + [1]
    else:
        new = [1] * (nd - len(shape)) + shape
    return t.reshape(new) if isinstance(t, TensorBase) else _float64(t, "stack").reshape(new)


def hstack(tensors, *, out=None) -> TensorBase:
    """``torch.hstack``: cat along dim 0 for 1-D tensors, else dim 1."""
    ts = [_atleast(t, 1) for t in tensors]
    return cat(ts, 0 if ts and len(ts[0].shape) == 1 else 1)


def vstack(tensors, *, out=None) -> TensorBase:
    """``torch.vstack``: cat along dim 0 of the tensors made at least 2-D."""
    return cat([_atleast(t, 2) for t in tensors], 0)


def dstack(tensors, *, out=None) -> TensorBase:
    """``torch.dstack``: cat along dim 2 of the tensors made at least 3-D."""
    return cat([_atleast(t, 3) for t in tensors], 2)


def _var_mean(std: bool):
    def call(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
        if isinstance(dim, bool) and unbiased is None:
            dim, unbiased = None, dim
        v = (x.std if std else x.var)(dim, unbiased, keepdim, correction=correction)
        if x.dim() == 0:
            return v, x + 0
        dims = list(range(x.dim())) if dim is None else x._dims_arg(dim)
        return v, x.mean(dims, keepdim=keepdim)

    return call


def linalg_norm(x, ord=None, dim=None, keepdim=False, *, out=None, dtype=None):  # noqa: A002
    """``torch.linalg.norm``: the 2-norm of all elements by default (ord
    None), a vector norm over one dim (ord 2, 1, inf), and the matrix norms
    'fro', 1, -1, inf and -inf of 2-D inputs or over two dims."""
    if out is not None or dtype is not None:
        raise NotImplementedError("linalg.norm(..., out=, dtype=) on a SharedTensor")
    if dim is not None and not isinstance(dim, (tuple, list)):
        dim = [dim]
    if dim is not None and len(dim) not in (1, 2):  # torch's error (dim=() included)
        raise RuntimeError(
            f"linalg.norm: If dim is specified, it must be of length 1 or 2. Got {list(dim)}"
        )
    if dim is None and ord is not None:
        dim = list(range(x.dim()))
        if len(dim) not in (1, 2):
            raise RuntimeError(
                f"linalg.norm: If dim is not specified but ord is, the input must be 1D or "
                f"2D. Got {x.dim()}D."
            )
    if ord is None or (dim is not None and len(dim) == 1):
        return x.norm(2 if ord is None else ord, dim, keepdim)
    a, b = (_norm_dim(d, x.dim()) for d in dim)
    if ord == "fro":
        return x.norm("fro", [a, b], keepdim)
    if ord in (1, -1, math.inf, -math.inf):
        # 1: the largest column sum of |x| (over rows a); inf: of row sums
        s = x.abs().sum(a if ord in (1, -1) else b, keepdim=True)
        r = s.amax([a, b], keepdim=True) if ord > 0 else s.amin([a, b], keepdim=True)
        return r if keepdim else r.squeeze([a, b])
    raise NotImplementedError(
        f"linalg.norm(ord={ord!r}) of a matrix needs singular values, which are not provided"
    )


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8) -> TensorBase:
    """``F.cosine_similarity``: the dot product over ``dim`` of the two
    unit vectors, each as ``F.normalize`` computes it
    (:func:`cryptgpu.unit_rows.unit`: 1e-4 relative for elements below
    2^(31 - f) and norms from 4e-3 to 2^23, where until 2026-12-06 norms
    above 2^15 gave garbage; until 2026-12-05 one ratio of the dot product
    over sqrt(|x1|^2 |x2|^2), whose product wrapped for norms near 300:
    -3e8 for torch's -0.32). ``eps`` guards nothing: a zero vector gives
    0, as torch's."""
    if not isinstance(x1, TensorBase):
        x1, x2 = x2, x1
    y = x2 if isinstance(x2, TensorBase) else _float64(x2, "cosine_similarity")
    shape = torch.broadcast_shapes(tuple(x1.shape), tuple(y.shape))  # first, as torch
    x1 = x1 if tuple(x1.shape) == tuple(shape) else x1.expand(shape)
    y = y if tuple(y.shape) == tuple(shape) else y.expand(shape)
    return (unit(x1, dim) * unit(y, dim)).sum(dim)


def unit(v, dim: int):
    """v / ||v|| over ``dim`` (kept): for a SharedTensor
    :func:`cryptgpu.unit_rows.unit` (elements below 2^(31 - f), row sums of
    squares in [2^-16, 2^46): 1e-4 relative plus two units);
    ``F.normalize``'s p = 2."""
    if not isinstance(v, TensorBase):
        return F.normalize(v, dim=dim)
    return unit_rows.unit(v, dim)


def lerp(start, end, weight) -> TensorBase:
    """``torch.lerp`` with a SharedTensor anywhere."""
    if isinstance(start, TensorBase):
        return start.lerp(end, weight)
    s = _float64(start, "lerp start")
    w = weight if isinstance(weight, TensorBase) else _float64(weight, "lerp weight")
    return (end - s) * w + s


def mv(mat, vec, *, out=None) -> TensorBase:
    """``torch.mv`` with a SharedTensor matrix or vector."""
    if isinstance(mat, TensorBase):
        return mat.mv(vec)
    if len(np.shape(mat)) != 2 or vec.dim() != 1:
        raise ShapeError("mv: expected a matrix (2-D) and a vector (1-D)")
    return vec.rmatmul(mat)


def broadcast_tensors(*tensors) -> tuple:
    """``torch.broadcast_tensors`` with a SharedTensor among them: each
    expanded to the common shape (torch's RuntimeError where none is)."""
    shape = torch.broadcast_shapes(*(tuple(t.shape) for t in tensors))
    return tuple(t.expand(shape) for t in tensors)


TABLE = {
    torch.broadcast_tensors: broadcast_tensors,
    torch.hstack: hstack,
    torch.vstack: vstack,
    torch.row_stack: vstack,
    torch.dstack: dstack,
    torch.var_mean: _var_mean(False),
    torch.std_mean: _var_mean(True),
    torch.linalg.norm: linalg_norm,
    F.cosine_similarity: cosine_similarity,
    F.glu: lambda x, dim=-1: x.glu(dim),
    torch.cosine_similarity: cosine_similarity,
    torch.lerp: lerp,
    torch.mv: mv,
    **_MATH,
}
