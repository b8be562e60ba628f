"""The rest of torch's tensor API that users reach for, composed from the
other mixins (views, indexing by public positions, products, comparisons):
no engine calls of their own, and every gradient comes from the composed
operations. Reorderings (flip, roll, gather, repeat, diagonal) index the
shares by public positions and are local; cumsum is log2(n) shifted
additions (local), prod a tree of multiplications (log2(n) rounds of
products), var/std a mean and one product (plus std's square root).
"""

from __future__ import annotations

import operator
import warnings

import numpy as np
import torch

from . import _session
from . import autograd as ag
from . import functions as fx
from . import tensor_bounds as bounds
from ._native import EncodingError, ShapeError
from ._plain import (
    IndexRangeError,
    _bool_as_number,
    _float64,
    _index,
    _ints,
    _norm_dim,
    _varargs,
    plain_requires_grad,
    tensor_type,
)
from .tensor_arith import _not_a_number
from .tensor_base import SecretValueError, TensorBase
from .tensor_reduce import axis_alias, check_dtype
from .tensor_scatter import _index_array
from .tensor_shape import cat


class TorchLikeOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: torch's remaining tensor methods."""

    __slots__ = ()

    # ------------------------------------------------------------ positions
    def _grid(self) -> np.ndarray:
        """The flat position of every element, in the tensor's shape."""
        return np.arange(self.numel(), dtype=np.int64).reshape(tuple(self.shape))

    def _at(self, pos: np.ndarray) -> TensorBase:
        """The elements at flat positions ``pos``, shaped like ``pos``."""
        return self.reshape(-1)[np.asarray(pos, dtype=np.int64)]

    def _moved(self, fn) -> TensorBase:
        """``fn`` (a torch data-movement op: a padding mode, a pixel or
        channel shuffle) applied to the shares through public positions:
        ``fn`` of the tensor of flat positions says which element lands
        where, and one local copy (recorded for autograd) moves them."""
        pos = fn(torch.from_numpy(self._grid()).to(torch.float64))
        return self._at(pos.round().to(torch.int64).numpy())

    def _dims_arg(self, dims) -> list[int]:
        single = _index(dims)
        dims = [single] if single is not None else list(dims)
        return [_norm_dim(d, self.dim()) for d in dims]

    # ------------------------------------------------------------ products
    def mm(self, mat2) -> TensorBase:
        """Matrix product of two 2-D tensors, as ``torch.mm``."""
        _not_a_number(mat2, "mm")
        check_product("mm", self.shape, getattr(mat2, "shape", np.shape(mat2)))
        return self.matmul(mat2)

    def mv(self, vec) -> TensorBase:
        """Matrix [n, m] times vector [m], as ``torch.mv``."""
        _not_a_number(vec, "mv")
        if self.dim() != 2 or len(getattr(vec, "shape", np.shape(vec))) != 1:
            raise ShapeError("mv: expected a matrix (2-D) and a vector (1-D)")
        return self.matmul(vec)

    def bmm(self, mat2) -> TensorBase:
        """Batched product of [b, n, m] and [b, m, p], as ``torch.bmm``."""
        _not_a_number(mat2, "bmm")
        check_product("bmm", self.shape, getattr(mat2, "shape", np.shape(mat2)))
        return self.matmul(mat2)

    def outer(self, vec2) -> TensorBase:
        """Outer product of two 1-D tensors."""
        check_product("outer", self.shape, getattr(vec2, "shape", np.shape(vec2)))
        yv = vec2 if isinstance(vec2, TensorBase) else _float64(vec2, "outer")
        return self.unsqueeze(1) * yv.reshape(1, -1)

    ger = outer

    def addmm(self, mat1, mat2, *, beta=1, alpha=1) -> TensorBase:
        """beta * x + alpha * (mat1 @ mat2), as ``x.addmm(mat1, mat2)``."""
        return torch.addmm(self, mat1, mat2, beta=beta, alpha=alpha)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1) -> TensorBase:
        """beta * x + alpha * bmm(batch1, batch2) (Bloom's ALiBi scores)."""
        return torch.baddbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def addbmm(self, batch1, batch2, *, beta=1, alpha=1) -> TensorBase:
        """beta * x + alpha * bmm(batch1, batch2) summed over the batch."""
        return torch.addbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def addmv(self, mat, vec, *, beta=1, alpha=1) -> TensorBase:
        """beta * x + alpha * (mat @ vec), as ``x.addmv(mat, vec)``."""
        return torch.addmv(self, mat, vec, beta=beta, alpha=alpha)

    # ------------------------------------------------------------ views and reorderings
    def expand_as(self, other) -> TensorBase:
        """``expand`` to ``other``'s shape."""
        return self.expand(tuple(other.shape))

    def view_as(self, other) -> TensorBase:
        """``view`` as ``other``'s shape."""
        return self.reshape(tuple(other.shape))

    reshape_as = view_as

    def swapaxes(self, axis0: int, axis1: int) -> TensorBase:
        """Alias of :meth:`transpose` (torch's keyword names axis0, axis1)."""
        return self.transpose(axis0, axis1)

    def swapdims(self, dim0: int, dim1: int) -> TensorBase:
        """Alias of :meth:`transpose` (torch's keyword names dim0, dim1)."""
        return self.transpose(dim0, dim1)

    @property
    def mT(self) -> TensorBase:  # noqa: N802 - torch's name
        """The last two dims transposed (torch's RuntimeError for one dim;
        a 0-d tensor itself, with torch's deprecation warning)."""
        if self.dim() == 0:
            warnings.warn(
                "Tensor.mT is deprecated on 0-D tensors. This function is the identity in "
                "these cases.",
                UserWarning,
                stacklevel=2,
            )
            return self
        if self.dim() == 1:
            raise RuntimeError(
                "tensor.mT is only supported on matrices or batches of matrices. Got 1-D tensor."
            )
        return self.transpose(-2, -1)

    def movedim(self, source, destination) -> TensorBase:
        """Move dims ``source`` to positions ``destination``, as ``torch.movedim``."""
        src, dst = self._dims_arg(source), self._dims_arg(destination)
        if len(src) != len(dst):
            raise ShapeError("movedim: source and destination must have the same length")
        if len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ShapeError("movedim: repeated dim")
        if self.dim() == 0:  # torch: 0 and -1 name a scalar's only "dim"
            return self
        order = [i for i in range(self.dim()) if i not in src]
        for to, frm in sorted(zip(dst, src)):
            order.insert(to, frm)
        return self.permute(order)

    moveaxis = movedim

    def narrow(self, dim: int, start: int, length: int) -> TensorBase:
        """``length`` elements from ``start`` along ``dim``."""
        if self.dim() == 0:
            raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
        d = _norm_dim(dim, self.dim())
        n = self.shape[d]
        start, length = _ints((start, length), "narrow: start and length")
        start = start + n if start < 0 else start
        if not (0 <= start <= n and 0 <= length <= n - start):
            raise IndexRangeError(
                f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n})"
            )
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def flip(self, *dims, **kw) -> TensorBase:
        """Reverse the order along ``dims`` (a copy, as torch's; a 0-d
        tensor's dims 0 and -1 leave its value)."""
        dims = _varargs(dims, kw, "dims", "flip")
        if not dims:  # torch's TypeError (x.flip() reversed nothing until 2026-12-06)
            raise TypeError('flip() missing 1 required positional arguments: "dims"')
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        norm = self._dims_arg(dims)
        for d in set(norm):
            if norm.count(d) > 1:
                raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        if self.dim() == 0:
            return self + 0
        return self._at(np.flip(self._grid(), axis=tuple(norm)))

    def roll(self, shifts, dims=None) -> TensorBase:
        """Roll elements along ``dims`` (the flattened tensor when None)."""
        if dims is None:
            return self._at(np.roll(self._grid(), _ints([shifts], "roll: shifts")[0]))
        shifts = [shifts] if _index(shifts) is not None else list(shifts)
        dims = self._dims_arg(dims)
        if len(shifts) != len(dims):
            raise ShapeError("roll: shifts and dims must have the same length")
        return self._at(np.roll(self._grid(), _ints(shifts, "roll: shifts"), axis=dims))

    def index_select(self, dim: int, index) -> TensorBase:
        """The entries at public ``index`` (1-D integers) along ``dim``."""
        idx = _index_array(index, "index_select")
        if idx.ndim > 1:
            raise IndexError("index_select: index must be 0-D or 1-D")
        d = _norm_dim(dim, self.dim())
        n = self.shape[d] if self.dim() else 1
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            # torch's words; a negative index is out of range too (not from the end)
            raise IndexRangeError(
                f"index out of range in self (index_select: indices {idx.min()}..{idx.max()} "
                f"for dim {d} of size {n})"
            )
        out = self._at(np.take(self._grid(), idx.reshape(-1), axis=d if self.dim() else None))
        return out.reshape(()) if self.dim() == 0 else out  # torch: a scalar stays one

    @axis_alias
    def gather(self, dim: int, index) -> TensorBase:
        """``torch.gather`` with a public integer ``index``."""
        idx = _index_array(index, "gather")
        if idx.size == 0:  # torch takes an empty index of any rank: its shape
            _norm_dim(dim, max(self.dim(), 1))
            return self._at(np.zeros(idx.shape, dtype=np.int64))
        if self.dim() == 0:  # torch: a scalar gathers with a 0-d index of 0
            if idx.ndim != 0:
                raise RuntimeError("gather: index must have as many dims as the input")
            _norm_dim(dim, 1)
            if idx.item() not in (0, -1):
                raise IndexRangeError(f"gather: index {idx.item()} out of range for a scalar")
            return self + 0.0
        d = _norm_dim(dim, self.dim())
        if idx.ndim != self.dim():
            raise RuntimeError("gather: index must have as many dims as the input")
        if any(idx.shape[k] > self.shape[k] for k in range(self.dim()) if k != d):
            raise RuntimeError(
                f"gather: index {idx.shape} larger than input {tuple(self.shape)} off dim {d}"
            )
        n = self.shape[d]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexRangeError(f"gather: index out of range for dim {d} of size {n}")
        cut = tuple(slice(None) if k == d else slice(0, s) for k, s in enumerate(idx.shape))
        part = self._grid()[cut]
        return self._at(np.take_along_axis(part, idx, axis=d))

    def take(self, index, dimension: int | None = None) -> TensorBase:
        """The entries at public positions ``index``, in CrypTen's form:
        with ``dimension`` None (torch.take) the flat positions, shaped like
        ``index``; otherwise the positions along that dim (``x[..., index,
        ...]``: the dim replaced by index's shape). Negative positions count
        from the end, as torch's."""
        idx = _index_array(index, "take")
        if dimension is None or self.dim() == 0:
            return self._at(np.take(self._grid().reshape(-1), idx))
        d = _norm_dim(dimension, self.dim())
        return self._at(np.take(self._grid(), idx, axis=d))

    def clamp_min(self, min) -> TensorBase:  # noqa: A002 - torch's name
        """max(x, min), as torch's ``clamp_min``."""
        return self.clamp(min, None)

    def clamp_max(self, max) -> TensorBase:  # noqa: A002 - torch's name
        """min(x, max), as torch's ``clamp_max``."""
        return self.clamp(None, max)

    def _template(self) -> torch.Tensor:
        """An empty public tensor of ``x.dtype`` that torch's ``new_*``
        methods run on: public values are plaintext on the host, in the
        dtype the tensor reports (``dtype=``, ``device=``, ``requires_grad=``
        as torch's; ``device="cuda"`` without a GPU is torch's error)."""
        return torch.empty(0, dtype=self.dtype)

    def new_zeros(self, *size, **kwargs) -> torch.Tensor:
        """A public tensor of zeros (torch's ``x.new_zeros(size)``: public
        values of a given shape are plaintext here), of ``x.dtype``."""
        return self._template().new_zeros(*size, **kwargs)

    def new_ones(self, *size, **kwargs) -> torch.Tensor:
        """A public tensor of ones (see :meth:`new_zeros`)."""
        return self._template().new_ones(*size, **kwargs)

    def new_full(self, size, fill_value, **kwargs) -> torch.Tensor:
        """A public tensor filled with ``fill_value`` (see :meth:`new_zeros`)."""
        return self._template().new_full(size, fill_value, **kwargs)

    def new_empty(self, *size, **kwargs) -> torch.Tensor:
        """A public uninitialised tensor (see :meth:`new_zeros`)."""
        return self._template().new_empty(*size, **kwargs)

    def new_tensor(self, data, **kwargs) -> torch.Tensor:
        """``data`` as a public tensor of ``x.dtype`` (torch's
        ``x.new_tensor(data)``, see :meth:`new_zeros`); to make it private,
        ``cryptgpu.cryptensor(data)``."""
        if isinstance(data, TensorBase):
            raise SecretValueError(
                "new_tensor(x) of a SharedTensor: its value is secret; copy it with "
                "x.clone(), or open it with get_plain_text()"
            )
        return self._template().new_tensor(data, **kwargs)

    # ------------------------------------------------------------ torch's attributes
    def type(self, dtype=None, non_blocking=False, **kwargs):
        """``x.type()``: torch's type name for ``x.dtype`` and device
        ("torch.FloatTensor"); ``x.type(dtype)``: :meth:`to` that dtype (a
        type name such as "torch.DoubleTensor" too): a copy where it
        differs from ``x.dtype``."""
        if dtype is None:
            name = self._template().type()
            return name.replace("torch.", "torch.cuda.", 1) if self.is_cuda else name
        return self.to(*tensor_type(dtype))

    def get_device(self) -> int:
        """-1 in a CPU session, as torch's for a CPU tensor; in a CUDA session
        the index of the GPU this party's shares are on (0 unless told)."""
        d = self.device
        return -1 if d.type == "cpu" else (d.index or 0)

    layout = torch.strided  # shares are dense
    is_meta = is_sparse = is_quantized = is_mkldnn = is_nested = False

    def is_complex(self) -> bool:
        """False: shares hold fixed-point reals (complex data is refused)."""
        return False

    def is_inference(self) -> bool:
        """False: no SharedTensor is an inference-mode tensor (torch's
        inference_mode changes nothing for one)."""
        return False

    def element_size(self) -> int:
        """Refused: no size honestly describes an element here (``x.dtype``'s
        4 bytes would understate the memory the shares take)."""
        raise NotImplementedError(
            "element_size(): a SharedTensor's element is not stored in x.dtype: each of "
            "the three parties holds two 8-byte ring elements per element (x.share is "
            "this party's share, an int64 tensor)"
        )

    def is_pinned(self, device=None) -> bool:
        """False: the shares live in the engine's memory, never pinned."""
        return False

    def pin_memory(self, device=None):
        """Refused: the shares live in the engine's memory. Without an
        accelerator, torch's own error (as torch's ``pin_memory()``)."""
        torch.empty(0).pin_memory()  # torch's RuntimeError where no accelerator is
        raise NotImplementedError(
            "pin_memory(): a SharedTensor's shares live in the engine's memory (on the "
            "session's device), which cannot be pinned"
        )

    def repeat(self, *sizes, **kw) -> TensorBase:
        """Tile the tensor ``sizes`` times, as ``torch.Tensor.repeat``."""
        sizes = _varargs(sizes, kw, "repeats", "repeat")
        if not sizes:  # torch's TypeError (a 0-d x.repeat() was x until 2026-12-06)
            raise TypeError('repeat() missing 1 required positional arguments: "repeats"')
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
            sizes = sizes[0]
        sizes = _ints(sizes, "repeat: sizes")
        if len(sizes) < self.dim():
            raise RuntimeError("repeat: fewer sizes than the tensor has dims")
        if min(sizes, default=0) < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension: {sizes}")
        return self._at(np.tile(self._grid(), sizes))

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        """Split into ``chunks`` pieces along ``dim`` (the last may be smaller)."""
        if self.dim() == 0:
            raise RuntimeError("chunk expects at least a 1-dimensional tensor")
        k = _ints([chunks], "chunk: chunks")[0]
        if k <= 0:
            raise RuntimeError("chunk expects `chunks` to be greater than 0")
        n = self.shape[_norm_dim(dim, self.dim())]
        if n == 0:  # torch: `chunks` empty pieces
            return self.split([0] * k, dim)
        return self.split(-(-n // k), dim)

    def split(self, split_size_or_sections=None, dim: int = 0, *, split_size=None) -> tuple:
        """Pieces of ``split_size`` (or of the listed sizes) along ``dim``
        (``split_size=`` is the method's keyword in torch,
        ``split_size_or_sections=`` torch.split's)."""
        if (split_size is None) == (split_size_or_sections is None):
            raise TypeError("split() takes one split_size (or split_size_or_sections)")
        if split_size_or_sections is None:
            split_size_or_sections = split_size
        if self.dim() == 0:
            raise RuntimeError("split expects at least a 1-dimensional tensor")
        d = _norm_dim(dim, self.dim())
        n = self.shape[d]
        if _index(split_size_or_sections) is not None:
            step = _index(split_size_or_sections)
            if step <= 0 and n:
                raise RuntimeError("split: split_size must be positive")
            sizes = [min(step, n - s) for s in range(0, n, step)] if n else [0]
        else:
            sizes = _ints(split_size_or_sections, "split: sections")
            if sum(sizes) != n:
                raise RuntimeError(f"split: sections {sizes} do not sum to dim {d}'s size {n}")
        out, at = [], 0
        for s in sizes:
            out.append(self.narrow(d, at, s))
            at += s
        return tuple(out)

    def unbind(self, dim: int = 0) -> tuple:
        """Every slice along ``dim``, with ``dim`` removed."""
        if self.dim() == 0:
            raise IndexError("Dimension specified as 0 but tensor has no dimensions")
        d = _norm_dim(dim, self.dim())
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> TensorBase:
        """The diagonal of dims ``dim1``, ``dim2``, appended as the last dim."""
        a, b = _norm_dim(dim1, self.dim()), _norm_dim(dim2, self.dim())
        if a == b:
            raise RuntimeError("diagonal dimensions cannot be identical")
        k = _ints([offset], "offset")[0]
        # an offset past the dims is an empty diagonal (numpy's C long
        # cannot hold every Python int torch takes)
        k = max(-self.shape[a], min(k, self.shape[b]))
        pos = np.diagonal(self._grid(), k, a, b)
        # a view, as torch's: x.diagonal().fill_(0) changes x, and a change
        # of x shows in the diagonal (it was a copy until 2026-12-05)
        where = np.unravel_index(pos, tuple(self.shape))
        offset = _ints([offset], "offset")[0]
        # the read gives a live view of the base (a view of this view reads
        # through it and writes back through its write); torch's strides of
        # the view (the two dims' strides summed, appended), so that
        # contiguous(), reshape and flatten copy where torch's do (until
        # 2026-12-05 the diagonal passed for contiguous and they stayed views)
        ts = self._strides()
        out = self._at(pos)
        out._set_strides([s for i, s in enumerate(ts) if i not in (a, b)] + [ts[a] + ts[b]])
        return out._as_view_of(
            self,
            lambda base: base.diagonal(offset, a, b),
            lambda base, v: base._write_at(where, v),
            k * ts[b] if k >= 0 else -k * ts[a],  # torch's storage offset
        )

    def trace(self) -> TensorBase:
        """Sum of the main diagonal of a matrix."""
        if self.dim() != 2:
            raise RuntimeError("trace: expected a matrix")
        return self.diagonal().sum()

    def tril(self, diagonal: int = 0) -> TensorBase:
        """Lower triangle (of the last two dims); the rest zero (exact, local)."""
        return self * _triangle(self, diagonal, torch.tril)

    def triu(self, diagonal: int = 0) -> TensorBase:
        """Upper triangle (of the last two dims); the rest zero (exact, local)."""
        return self * _triangle(self, diagonal, torch.triu)

    # ------------------------------------------------------------ reductions
    @axis_alias
    def cumsum(self, dim: int, *, dtype=None) -> TensorBase:
        """Running sums along ``dim``: log2(n) shifted additions, local."""
        check_dtype(dtype, "cumsum")
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0:
            return self + 0
        return scan(self, d, operator.add, 0.0)

    @axis_alias
    def prod(self, dim=None, keepdim: bool = False, *, dtype=None) -> TensorBase:
        """Product over ``dim`` (all elements when None): a tree of
        element-wise products, ceil(log2(n)) multiplications deep."""
        check_dtype(dtype, "prod")
        if dim is None:
            return self.reshape(-1).prod(0)
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0:
            return self + 0
        y = self.movedim(d, -1)
        if y.shape[-1] == 0:
            out = (y.sum(-1) * 0) + 1.0
        else:
            while y.shape[-1] > 1:
                m = y.shape[-1] // 2
                paired = y[..., 0 : 2 * m : 2] * y[..., 1 : 2 * m : 2]
                y = cat([paired, y[..., 2 * m :]], -1) if y.shape[-1] % 2 else paired
            out = y.squeeze(-1)
        return out.unsqueeze(d) if keepdim else out

    @axis_alias
    def var(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
        """Variance over ``dim`` (all elements when None), with Bessel's
        correction by default (``unbiased=False`` or ``correction=0`` for
        the population variance), as ``torch.var``."""
        dims, dev, denom = self._deviations(dim, unbiased, correction)
        # squared deviations near 2^31 break a probabilistic truncation
        # (1 row in 500 of randn * 1000 came out 3e9): exact, as LayerNorm's;
        # and so is the division of their sum (up to 2^46) by the public
        # integer, which probabilistically failed with probability |s| / 2^47
        # (until 2026-12-07: 1 row in 100 to 400 of var(randn * 2e4) over
        # rows of 4000 came out -7e10)
        with _session.training_work():
            return (dev * dev).sum(dims, keepdim=keepdim).div(denom)

    def _deviations(self, dim, unbiased, correction):
        """(dims, x - mean over them, the degrees of freedom) of var and
        std, from torch's arguments."""
        if unbiased is not None and not isinstance(unbiased, bool):
            dim, unbiased = unbiased, None  # var(dim) called positionally as var(dim)
        if isinstance(dim, bool) and unbiased is None:
            dim, unbiased = None, dim  # torch's var(unbiased): x.var(False)
        if unbiased is not None and correction is not None:
            raise TypeError("var/std: unbiased and correction cannot both be given (as torch)")
        if correction is None:
            correction = 0 if unbiased is False else 1
        # torch: None and an empty list of dims (``dim=()``) both reduce
        # every dim, as sum's and mean's do; a scalar's dim 0 is itself
        # (one element). (Until 2026-12-06 ``dim=()`` reduced nothing here
        # while mean and sum reduced everything: var(dim=(), correction=0)
        # was the sum of squares over 1, 14.7 for torch's 1.23.)
        dims = self._dims(dim)
        n = 1
        for d in dims:
            n *= self.shape[d]
        dev = self - self.mean(dims, keepdim=True)
        denom = max(n - correction, 0)
        if denom == 0:
            raise ValueError(
                f"var: {n} elements leave no degrees of freedom (correction {correction})"
            )
        return dims, dev, denom

    @axis_alias
    def std(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
        """Square root of :meth:`var` (its approximation's input range
        applies). Under autograd one recorded node whose backward is g (x -
        mean) / (dof std), the deviations over std from the square root's
        own range reduction (O(1), so they keep their relative precision);
        through var's and sqrt's backward, 1 / (2 std) of a large variance
        kept few bits and the deviations multiplied its rounding: 8% off at
        data of scale 300, 97% at 3000 until 2026-12-07 (a user probe)."""
        if not ag.needs_grad(self):
            return self.var(dim, unbiased, keepdim, correction=correction).sqrt()
        with ag.inside(True):
            dims, dev, denom = self._deviations(dim, unbiased, correction)
            with _session.training_work():
                v = (dev * dev).sum(dims, keepdim=True).div(denom)
            ind, starts, y, root = fx._ratio_parts(v, v, None, 30)
            out = root * y
            # the bucket's 2^(-j/2), an exact power of two of at least 2^-14,
            # times the deviations, then the Newton result: (x - m) / std in
            # O(1) units (two products of x's size, not one per bucket)
            halves = np.array([2.0 ** (-j // 2) for j in starts]).reshape(
                (len(starts),) + (1,) * v.dim()
            )
            z = (dev * (ind * halves).sum(0)) * y
        ag.record(out, (self,), lambda g: ((g * z).div(denom),))
        if keepdim:
            return out
        return out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in dims))

    def rsqrt(self) -> TensorBase:
        """1 / sqrt(x): :meth:`inv_sqrt`."""
        return self.inv_sqrt()

    # ------------------------------------------------------------ element-wise
    def maximum(self, other) -> TensorBase:
        """Element-wise max with a shared or plaintext tensor: one ReLU. A
        plaintext other beyond the encoding's range (-inf, -1e10) is
        ``clamp(min=other)``'s (tensor_bounds), where a share holds the result."""
        other = _bool_as_number(other)  # a bool mask as 0/1, as torch's
        try:
            return (self - other).relu() + other
        except EncodingError as e:
            return _far_bound(self, e, other, "min")

    def minimum(self, other) -> TensorBase:
        """Element-wise min with a shared or plaintext tensor: one ReLU (a
        plaintext other beyond the encoding's range as :meth:`maximum`)."""
        other = _bool_as_number(other)
        try:
            return self - (self - other).relu()
        except EncodingError as e:
            return _far_bound(self, e, other, "max")

    def hardtanh(
        self, min_val: float = -1.0, max_val: float = 1.0, *, min_value=None, max_value=None
    ) -> TensorBase:
        """``clamp(min_val, max_val)`` (CrypTen names them ``min_value`` and
        ``max_value``; both are accepted)."""
        lo = min_val if min_value is None else min_value
        hi = max_val if max_value is None else max_value
        for name, v in (("min_val", lo), ("max_val", hi)):  # torch's TypeError
            if isinstance(v, torch.Tensor) and v.requires_grad:
                raise TypeError(
                    f"hardtanh(): argument '{name}' must be Number, not Tensor: "
                    + plain_requires_grad(v)
                )
        public = not isinstance(lo, TensorBase) and not isinstance(hi, TensorBase)
        if public and float(lo) > float(hi):  # torch's check (clamp itself accepts it)
            raise ValueError("min_val cannot be greater than max_val")
        return self.clamp(lo, hi)

    # Logic on 0/1 values (comparison results): exact products and sums.
    # A shared operand is taken to be 0/1 (its values are secret); a public
    # one of other values is refused (until 2026-12-06 ``c & 3`` gave 3 c).
    def __and__(self, other):
        return self * _zero_one(other)

    __rand__ = __and__

    def __or__(self, other):
        other = _zero_one(other)
        return self + other - self * other

    __ror__ = __or__

    def __xor__(self, other):
        other = _zero_one(other)
        return self + other - 2 * (self * other)

    __rxor__ = __xor__

    def __invert__(self):
        return 1 - self


def _zero_one(v):
    """An operand of ``& | ^``: a SharedTensor as it is (taken as 0/1, a
    comparison's result), a public one only of 0/1 values (bool, or numbers
    0 and 1), else a TypeError (torch's bitwise operators refuse a float
    tensor too, with NotImplementedError)."""
    if isinstance(v, TensorBase):
        return v
    t = v if torch.is_tensor(v) else torch.as_tensor(v)
    if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
        raise TypeError(
            "& | ^ on a SharedTensor take 0/1 values (comparison results, as torch's bool "
            f"tensors): a public operand of other values ({v!r}) would not be bitwise; "
            "integer bitwise operations on secret values are not provided"
        )
    return t.double() if torch.is_tensor(v) else v


def _triangle(x, diagonal: int, fn) -> torch.Tensor:
    if x.dim() < 2:
        raise RuntimeError("tril/triu: the tensor must have at least 2 dims")
    k = _ints([diagonal], "diagonal")[0]
    return fn(torch.ones(tuple(x.shape[-2:]), dtype=torch.float64), k)


def check_product(name: str, sa, sb) -> None:
    """torch's rank checks of ``mm``, ``bmm`` and ``outer`` (operands of
    shapes ``sa`` and ``sb``), in torch's words; ShapeError is a RuntimeError."""
    sa, sb = tuple(sa), tuple(sb)
    names = {"mm": ("self", "mat2"), "bmm": ("batch1", "batch2"), "outer": ("self", "vec2")}
    rank = {"mm": 2, "bmm": 3, "outer": 1}[name]
    for what, s in zip(names[name], (sa, sb)):
        if len(s) == rank:
            continue
        if name == "mm":
            raise ShapeError(f"mm: {what} must be a matrix, got {len(s)}-D tensor")
        if name == "bmm":
            raise ShapeError(f"{what} must be a 3D tensor")
        raise ShapeError(f"outer: Expected 1-D argument {what}, but got {len(s)}-D")
    if name == "bmm" and sb[:2] != (sa[0], sa[2]):
        raise ShapeError(
            "Expected size for first two dimensions of batch2 tensor to be: "
            f"[{sa[0]}, {sa[2]}] but got: [{sb[0]}, {sb[1]}]."
        )


def scan(x, d: int, combine, fill: float):
    """Running ``combine`` along dim ``d`` (cumsum's +, cumprod's *):
    ceil(log2(n)) steps, each combining y with y shifted by k positions
    (padded with ``fill``, combine's identity)."""
    n, y, k = x.shape[d], x, 1
    while k < n:
        pad = [0, 0] * (x.dim() - 1 - d) + [k, 0]
        y = combine(y, y.narrow(d, 0, n - k).pad(pad, value=fill))
        k *= 2
    return y


def _far_bound(x, err, other, side: str):
    """maximum/minimum with a plaintext ``other`` that does not encode:
    ``clamp`` with it as the bound on ``side``, or the encoding's error
    ``err`` where clamp cannot hold the result either (+inf in maximum, NaN)."""
    if isinstance(other, TensorBase) or bounds.beyond_64_bits(other):
        raise err
    try:
        return x.clamp(**{side: other})
    except EncodingError:
        raise err from None
