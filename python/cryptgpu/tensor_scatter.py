"""Writes at public positions, as torch's scatter family: ``index_add``,
``scatter_add``, ``scatter``, ``scatter_reduce`` (sum, mean),
``index_copy``, ``index_fill``, and the
reads ``masked_select`` and ``unfold``. The positions are public, so every
one is local (no communication): additions are the engine's ``put_add``
of the shares, overwrites keep the untouched elements through a public 0/1
mask. Gradients follow torch's: an added or copied source element gets
the gradient at its position, an overwritten input element none.
"""

from __future__ import annotations

import numpy as np
import torch

from . import autograd as ag
from ._native import ShapeError
from ._plain import IndexRangeError, _index, _norm_dim
from .tensor_base import TensorBase
from .tensor_overlap import refuse_partial_overlap


def _index_array(index, what: str) -> np.ndarray:
    """A public integer index as an int64 array; float indices are refused
    as torch refuses them (RuntimeError), a SharedTensor index too."""
    if isinstance(index, TensorBase):
        raise NotImplementedError(f"{what} with a SharedTensor index (indices must be public)")
    if isinstance(index, torch.Tensor):
        if index.dtype not in (torch.int64, torch.int32):
            raise RuntimeError(
                f"{what}(): Expected dtype int32/int64 for index but got: {index.dtype}"
            )
        return index.detach().cpu().to(torch.int64).numpy()
    arr = np.asarray(index)
    if arr.dtype.kind not in "iu":
        raise RuntimeError(f"{what}(): Expected an integer index, got {arr.dtype}")
    return arr.astype(np.int64)


def _in_range(idx: np.ndarray, n: int, d: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexRangeError(f"index {bad} is out of bounds for dimension {d} with size {n}")


def _vector_positions(x, dim, index, what: str, wrap: bool = False):
    """(dim, index as 1-D, the flat positions of the selected slices of x
    shaped [..., len(index), ...]) for index_add/index_copy/index_fill
    (``wrap``: negative indices count from the end, as index_fill's)."""
    d = _norm_dim(dim, max(x.dim(), 1))
    idx = _index_array(index, what)
    if idx.ndim > 1:
        raise IndexError(f"{what}(): Index is supposed to be a vector, but got dim: {idx.ndim}")
    idx = idx.reshape(-1)
    grid = x._grid() if x.dim() else x._grid().reshape(1)
    if wrap:
        idx = np.where(idx < 0, idx + grid.shape[d], idx)
    _in_range(idx, grid.shape[d], d)
    return d, idx, np.take(grid, idx, axis=d)


def _scatter_positions(x, dim, index, src_shape, what: str):
    """The flat positions in x that torch.scatter's ``index`` names, shaped
    like index, after torch's shape checks."""
    idx = _index_array(index, what)
    idx = idx.reshape(1) if idx.ndim == 0 else idx  # a scalar's index: one position
    d = _norm_dim(dim, max(x.dim(), 1))
    if idx.ndim != max(x.dim(), 1) and idx.size:
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if src_shape is not None and idx.size and max(len(src_shape), 1) != idx.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
    grid = x._grid() if x.dim() else x._grid().reshape(1)
    if not idx.size:
        return idx.reshape(idx.shape), idx
    too_big = any(idx.shape[k] > grid.shape[k] for k in range(grid.ndim) if k != d)
    if too_big or (src_shape is not None and any(i > s for i, s in zip(idx.shape, src_shape))):
        raise RuntimeError(
            f"Expected index {list(idx.shape)} to be no larger than self {list(grid.shape)} "
            f"apart from dimension {d}"
            + (f" and to be no larger size than src {list(src_shape)}" if src_shape else "")
        )
    _in_range(idx, grid.shape[d], d)
    cut = tuple(slice(None) if k == d else slice(0, s) for k, s in enumerate(idx.shape))
    return np.take_along_axis(grid[cut], idx, axis=d), idx


def _put_add(x, src, pos: np.ndarray):
    """x plus src's elements added at flat positions ``pos`` (pos shaped
    like src; repeated positions add up). Local."""
    if not pos.size:
        return x + 0.0
    flat = src.reshape(-1)
    moved = src._wrap(src._s(x).put_add(flat._t, pos.ravel().tolist(), list(x.shape) or [1]))
    moved = moved.reshape(tuple(x.shape))
    if ag.needs_grad(src):
        shape = tuple(src.shape)
        ag.record(moved, (src,), lambda g: (g.reshape(-1)._at(pos).reshape(shape),))
    return x + moved


def _keep_mask(x, pos: np.ndarray) -> torch.Tensor:
    """A public 0/1 tensor of x's shape: 0 at the positions ``pos``."""
    keep = np.ones(x.numel(), dtype=np.float64)
    keep[pos.ravel()] = 0.0
    return torch.from_numpy(keep.reshape(tuple(x.shape)))


def _last_writes(pos: np.ndarray) -> np.ndarray:
    """Which of the flattened ``pos`` write last to their position (torch
    leaves the winner of a repeated position unspecified; ours is the last)."""
    flat = pos.ravel()
    _, first_rev = np.unique(flat[::-1], return_index=True)
    keep = np.zeros(flat.size, dtype=bool)
    keep[flat.size - 1 - first_rev] = True
    return keep


class ScatterOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: torch's scatter family."""

    __slots__ = ()

    def _source(self, src, like_shape, what: str):
        """src as a SharedTensor (a plaintext source is taken as public)."""
        if isinstance(src, TensorBase):
            return src
        arr = self._plain(src, what)
        return self._public_like(0.0, list(arr.shape)) + torch.from_numpy(arr)

    def index_add(self, dim: int, index, source, *, alpha=1) -> TensorBase:
        """``torch.index_add``: ``alpha * source`` added to the slices of
        ``dim`` that the public ``index`` names (repeated indices add up)."""
        d, idx, pos = _vector_positions(self, dim, index, "index_add_")
        src = self._source(source, pos.shape, "index_add source")
        if tuple(src.shape) != pos.shape and not (src.dim() == 0 == self.dim()):
            if src.dim() != max(self.dim(), 1) or src.shape[d] != idx.size:
                raise RuntimeError(
                    f"index_add_(): Number of indices ({idx.size}) should be equal to "
                    f"source.size(dim): ({src.shape[d] if src.dim() > d else 1}), for dim: {d}"
                )
            raise ShapeError(
                f"index_add_(): source {list(src.shape)} does not match self "
                f"{list(self.shape)} apart from dim {d}"
            )
        if alpha != 1:
            src = src * alpha
        return _put_add(self, src.reshape(pos.shape), pos)

    def index_copy(self, dim: int, index, source) -> TensorBase:
        """``torch.index_copy``: the slices of ``dim`` named by the public
        ``index`` replaced by ``source``'s (the last of repeated indices wins)."""
        d, idx, pos = _vector_positions(self, dim, index, "index_copy_")
        src = self._source(source, pos.shape, "index_copy source")
        if tuple(src.shape) != pos.shape and not (src.dim() == 0 and pos.size == 1):
            raise IndexRangeError(  # torch: IndexError
                f"index_copy_(): source {list(src.shape)} must have self's shape "
                f"{list(self.shape)} with dim {d} of size {idx.size}"
            )
        return _overwrite(self, src.reshape(pos.shape), pos)

    def index_fill(self, dim: int, index, value) -> TensorBase:
        """``torch.index_fill``: the slices of ``dim`` named by the public
        ``index`` set to ``value`` (a number, or a 0-d tensor, shared or not)."""
        _, _, pos = _vector_positions(self, dim, index, "index_fill_", wrap=True)
        if isinstance(value, (TensorBase, torch.Tensor)) and value.dim() != 0:
            raise RuntimeError(
                "index_fill_ only supports a 0-dimensional value tensor, but got tensor "
                f"with {value.dim()} dimension(s)."
            )
        mask = _keep_mask(self, pos)
        if isinstance(value, TensorBase):
            return self * mask + value * (1 - mask)
        v = float(self._plain(value, "index_fill value"))  # noted before self's product
        return self * mask + (1 - mask) * v

    def scatter_add(self, dim: int, index, src) -> TensorBase:
        """``torch.scatter_add``: each element of ``src`` (cut to the public
        ``index``'s shape) added at the position ``index`` names along
        ``dim``; repeated positions add up."""
        src = self._source(src, None, "scatter_add src")
        pos, idx = _scatter_positions(self, dim, index, tuple(src.shape), "scatter_add")
        if not idx.size:
            return self + 0.0
        cut = tuple(slice(0, s) for s in idx.shape)
        return _put_add(self, src[cut] if src.dim() else src.reshape(1), pos)

    def scatter(self, dim: int, index, src=None, *, value=None, reduce=None) -> TensorBase:
        """``torch.scatter``: elements of ``src`` (or the number ``value``)
        written at the positions the public ``index`` names along ``dim``;
        the last of repeated positions wins (torch leaves it unspecified).
        ``reduce="add"`` is :meth:`scatter_add`; "multiply" is not provided."""
        if src is None and value is None:
            raise TypeError("scatter() missing 1 required argument: 'src' or 'value'")
        if reduce not in (None, "add"):
            raise NotImplementedError(f"scatter(reduce={reduce!r}): only 'add' is provided")
        scalar = value if src is None else src
        if src is None and isinstance(scalar, (TensorBase, torch.Tensor)):
            if scalar.dim() != 0:
                raise RuntimeError("scatter(value=...) takes a number or a 0-d tensor")
            pos, _ = _scatter_positions(self, dim, index, None, "scatter")
            if reduce == "add":
                counts = np.bincount(pos.ravel(), minlength=self.numel()).astype(np.float64)
                return self + scalar * torch.from_numpy(counts).reshape(tuple(self.shape))
            mask = _keep_mask(self, pos)
            return self * mask + scalar * (1 - mask)
        if not isinstance(scalar, (TensorBase, torch.Tensor, np.ndarray, list, tuple)):
            pos, idx = _scatter_positions(self, dim, index, None, "scatter")
            if reduce == "add":
                return self + torch.from_numpy(
                    np.bincount(pos.ravel(), minlength=self.numel()).astype(np.float64)
                ).reshape(tuple(self.shape)) * float(scalar)
            mask = _keep_mask(self, pos)
            return self * mask + (1 - mask) * float(scalar)
        if reduce == "add":
            return self.scatter_add(dim, index, scalar)
        src = self._source(scalar, None, "scatter src")
        pos, idx = _scatter_positions(self, dim, index, tuple(src.shape), "scatter")
        if not idx.size:
            return self + 0.0
        cut = tuple(slice(0, s) for s in idx.shape)
        return _overwrite(self, src[cut] if src.dim() else src.reshape(1), pos)

    def scatter_reduce(
        self, dim: int, index, src, reduce: str, *, include_self: bool = True
    ) -> TensorBase:
        """``torch.scatter_reduce`` for ``reduce`` "sum" and "mean": the
        elements of ``src`` (cut to the public ``index``'s shape) reduced
        into the positions ``index`` names along ``dim``, with x's own value
        (``include_self``) or without (named positions start from 0). "mean"
        divides each position by its public count (x's value counts once
        when included; an untouched position keeps x). "amax", "amin" and
        "prod" would need a comparison or a product per position and are
        not provided."""
        if reduce in ("amax", "amin", "prod"):
            raise NotImplementedError(
                f"scatter_reduce(reduce={reduce!r}) on a SharedTensor: only 'sum' and "
                "'mean' are provided"
            )
        if reduce not in ("sum", "mean"):
            raise RuntimeError(
                f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}"
            )
        if not isinstance(src, (TensorBase, torch.Tensor)):
            raise TypeError(
                f"scatter_reduce(): argument 'src' (position 3) must be Tensor, not "
                f"{type(src).__name__}"
            )
        src = self._source(src, None, "scatter_reduce src")
        pos, idx = _scatter_positions(self, dim, index, tuple(src.shape), "scatter_reduce")
        if not idx.size:
            return self + 0.0
        base = self if include_self else self * _keep_mask(self, pos)
        cut = tuple(slice(0, s) for s in idx.shape)
        out = _put_add(base, src[cut] if src.dim() else src.reshape(1), pos)
        if reduce == "sum":
            return out
        counts = np.bincount(pos.ravel(), minlength=self.numel()).astype(np.float64)
        counts = counts + 1.0 if include_self else np.maximum(counts, 1.0)
        if (counts == 1.0).all():
            return out
        return out / torch.from_numpy(counts.reshape(tuple(self.shape)))

    def masked_select(self, mask) -> TensorBase:
        """``torch.masked_select`` with a public bool mask (broadcast with
        x): the selected elements, 1-D. A shared mask cannot be used: the
        result's length would reveal how many elements it selects."""
        if isinstance(mask, TensorBase):
            raise NotImplementedError(
                "masked_select with a SharedTensor mask: the result's size would reveal "
                "the mask; use x * mask (or masked_fill) to keep the shape"
            )
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise RuntimeError("masked_select: expected BoolTensor for mask")
        shape = torch.broadcast_shapes(tuple(self.shape), tuple(mask.shape))
        x = self.expand(shape) if tuple(self.shape) != tuple(shape) else self
        return x[mask.expand(shape)]

    def unfold(self, dimension: int, size: int, step: int) -> TensorBase:
        """``Tensor.unfold``: every slice of length ``size`` along
        ``dimension``, ``step`` apart, as a new last dim (a copy, local)."""
        size, step = _index(size), _index(step)
        if size is None or step is None:
            raise TypeError("unfold: size and step must be ints")
        if step <= 0:
            raise RuntimeError(f"step is {step} but must be > 0")
        if self.dim() == 0:  # torch: a scalar unfolds to [1] (size 0 or 1)
            if size not in (0, 1):
                raise RuntimeError(
                    f"maximum size for tensor at dimension 0 is 1 but size is {size}"
                )
            return self.reshape(1)[:size]
        grid = self._grid()
        d = _norm_dim(dimension, self.dim())
        n = grid.shape[d]
        if size < 0 or size > n:
            raise RuntimeError(
                f"maximum size for tensor at dimension {d} is {n} but size is {size}"
            )
        starts = np.arange(0, n - size + 1, step)
        windows = np.stack([np.take(grid, np.arange(s, s + size), axis=d) for s in starts], d)
        return self._at(np.moveaxis(windows, d + 1, -1))


def _overwrite(x, src, pos: np.ndarray):
    """x with src's elements written at flat positions ``pos`` (pos shaped
    like src; the last write to a repeated position wins)."""
    last = _last_writes(pos)
    flat_pos = pos.ravel()[last]
    kept = x * _keep_mask(x, flat_pos)
    if last.all():
        return _put_add(kept, src, pos)
    chosen = src.reshape(-1)[np.flatnonzero(last)]
    return _put_add(kept, chosen, flat_pos)


for _name in ("index_add", "index_copy", "index_fill", "scatter_add", "scatter", "scatter_reduce"):

    def _method(self, *args, _n=_name, **kwargs):
        if _n != "index_fill":  # (torch reads its 0-d value first, as a number)
            refuse_partial_overlap(self, *args, *kwargs.values())
        return self._assign(getattr(self, _n)(*args, **kwargs), _n + "_")

    _method.__name__ = _name + "_"
    _method.__doc__ = (
        f"``{_name}`` in place (the tensor takes the result's shares); a source "
        "that partly overlaps it is torch's RuntimeError (tensor_overlap)."
    )
    setattr(ScatterOps, _name + "_", _method)
