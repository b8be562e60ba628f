"""Shape and view operations of SharedTensor (broadcasting, reshape, permute,
indexing, padding) and the functions ``cat`` and ``stack``. All are local:
the engine moves share elements, no party sends anything.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from . import autograd as ag
from . import gradients as gr
from ._native import InvalidArgumentError, OutOfMemoryError, ShapeError
from ._plain import _index, _ints, _norm_dim, _plain_array, _strides, _varargs, plain_requires_grad
from .tensor_base import TensorBase
from .tensor_overlap import _repeats, refuse_internal_overlap, refuse_setitem_overlap, write_strided
from .tensor_reduce import axis_alias


class ShapeOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: shape and view operations."""

    __slots__ = ()

    # ------------------------------------------------------------ broadcasting
    def expand(self, *sizes, **kw) -> TensorBase:
        """Broadcast to a larger shape (``-1`` keeps a dim), like ``torch.Tensor.expand``."""
        sizes = _varargs(sizes, kw, "size", "expand")
        if not sizes:
            raise TypeError("expand() missing its sizes argument")
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
            sizes = tuple(sizes[0])
        shape = list(self._t.shape)
        if len(sizes) < len(shape):
            raise ShapeError(f"expand: target {sizes} has fewer dims than {tuple(shape)}")
        lead = len(sizes) - len(shape)
        st, ts = _strides(shape), self._strides()
        out, ost, tst = [], [], []
        sizes = tuple(_ints(sizes, "expand: sizes"))
        for i, want in enumerate(sizes):
            if want < -1:
                raise ShapeError(f"expand: invalid size {want} in {tuple(sizes)}")
            if i < lead:
                if want < 0:
                    raise ShapeError("expand: -1 is not allowed for new leading dims")
                out.append(want)
                ost.append(0)
                tst.append(0)
                continue
            have = shape[i - lead]
            if want == -1 or want == have:
                out.append(have)
                ost.append(st[i - lead])
                tst.append(ts[i - lead])
            elif have == 1:
                out.append(want)
                ost.append(0)
                tst.append(0)
            else:
                raise ShapeError(f"expand: cannot expand dim of size {have} to {want}")
        if out == shape:
            return self
        res = self._wrap(self._s().gather(self._t, out, 0, ost))
        if ag.needs_grad(self):
            gr.record_unbroadcast(res, self, tuple(shape))
        # a view, as torch's: it follows changes of its base; writing into
        # it is refused where several elements share one place (tensor_overlap)
        res._set_strides(tst)
        return res._as_view_of(self, lambda b, o=tuple(out): b.expand(*o), write_strided)

    def _aligned(self, ys: TensorBase) -> tuple[TensorBase, TensorBase]:
        """self and the shared ys broadcast to their common shape (no engine
        call when the shapes already agree)."""
        if ys._t.shape == self._t.shape:
            return self, ys
        shape, x = self._bcast(ys.shape)
        with ag.no_grad():  # the operation records itself from self and ys
            return x, ys.expand(shape)

    def _bcast(self, other_shape) -> tuple[torch.Size, TensorBase]:
        shape = self._bcast_shape(other_shape)
        with ag.no_grad():  # the operation records itself from self (unbroadcast)
            return shape, self.expand(shape)

    def _bcast_shape(self, other_shape) -> tuple:
        """The broadcast shape, or ShapeError where the shapes do not broadcast."""
        try:
            return np.broadcast_shapes(tuple(self._t.shape), tuple(other_shape))
        except ValueError as e:
            raise ShapeError(
                f"shapes {tuple(self.shape)} and {tuple(other_shape)} do not broadcast"
            ) from e

    # ------------------------------------------------------------ shape ops
    def reshape(self, *shape, **kw) -> TensorBase:
        """Another shape (-1 allowed), as torch.reshape (local): a view, or a
        copy where torch copies (a transposed or strided tensor whose dims
        are merged or split)."""
        shape = _varargs(shape, kw, "shape", "reshape")
        return self._reshaped(self._shape_arg(shape, "reshape"), view=False)

    def view(self, *shape, **kw) -> TensorBase:
        """A view with another shape (-1 allowed), as torch's view (local;
        also of a transposed or strided tensor, where torch may refuse)."""
        shape = _varargs(shape, kw, "size", "view")
        return self._reshaped(self._shape_arg(shape, "view"), view=True)

    def _shape_arg(self, shape, what: str) -> list:
        """The sizes of reshape/view(*shape), -1 resolved."""
        if not shape:
            raise TypeError(f"{what}() missing its shape argument")
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        shape = _ints(shape, f"{what}: sizes")
        if shape.count(-1) > 1:
            raise ShapeError(f"{what}: only one dimension can be -1")
        if -1 in shape:
            known = 1
            for d in shape:
                if d != -1:
                    known *= d
            if known == 0 or self.numel() % known:
                raise ShapeError(f"cannot reshape {tuple(self.shape)} into {tuple(shape)}")
            shape[shape.index(-1)] = self.numel() // known
        if any(d < 0 for d in shape):
            raise ShapeError(f"{what}: negative size in {tuple(shape)}")
        return shape

    def _reshaped(self, shape, view: bool) -> TensorBase:
        out = self._wrap(self._s().reshape(self._t, list(shape)))
        if ag.needs_grad(self):
            gr.record_reshape(out, self)
        known = 0  # a view starts where self does
        if self._st is not None:
            st = _view_strides(list(self.shape), self._st, list(shape))
            if st is None and not view:
                return out  # torch's reshape copies a tensor it cannot view
            out._set_strides(st)  # (None: a view torch would refuse, kept)
            if st is None:  # no offset in a layout torch has
                known = None
        back = list(self.shape)
        return out._as_view_of(
            self,
            lambda b, s=list(shape): b.reshape(s),
            lambda b, v, s=back: b._assign(v.reshape(s), "view"),
            known,
        )

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> TensorBase:
        """Flatten dims ``start_dim..end_dim`` into one (local)."""
        a, b = _norm_dim(start_dim, self.dim()), _norm_dim(end_dim, self.dim())
        if self.dim() == 0:
            return self.reshape(1)
        if a > b:
            raise ShapeError("flatten: start_dim must not come after end_dim")
        shp = list(self.shape)
        mid = 1
        for d in shp[a : b + 1]:
            mid *= d
        return self.reshape(shp[:a] + [mid] + shp[b + 1 :])

    def unflatten(self, dim: int, sizes) -> TensorBase:
        """Split dim ``dim`` into ``sizes`` (one may be -1), as
        ``torch.Tensor.unflatten`` (a view where reshape is one)."""
        d = _norm_dim(dim, self.dim())
        sizes = _ints(sizes, "unflatten(): sizes")  # (not int(): a SharedTensor would open)
        if not sizes:
            raise RuntimeError("unflatten: sizes must be non-empty")
        shp = list(self.shape)
        known = 1
        for v in sizes:
            known *= v if v != -1 else 1
        if sizes.count(-1) > 1 or (
            -1 not in sizes and known != shp[d] or -1 in sizes and (not known or shp[d] % known)
        ):
            raise RuntimeError(
                f"unflatten: Provided sizes {sizes} don't multiply up to the size of dim "
                f"{d} ({shp[d]}) in the input tensor"
            )
        if -1 in sizes:  # from the dim's size (the whole tensor's may be 0)
            sizes[sizes.index(-1)] = shp[d] // known
        return self.reshape(shp[:d] + sizes + shp[d + 1 :])

    def permute(self, *dims, **kw) -> TensorBase:
        """Reorder dims, as torch.permute (local)."""
        dims = _varargs(dims, kw, "dims", "permute")
        if not dims:
            raise TypeError("permute() missing its dims argument")
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        nd = self.dim()
        if len(dims) != nd:
            raise ShapeError(f"permute: {len(dims)} dims given for a tensor of rank {nd}")
        dims = [_norm_dim(d, nd) for d in dims]
        if sorted(dims) != list(range(nd)):
            raise ShapeError(f"permute: {dims} is not a permutation of {nd} dims")
        if dims == list(range(nd)):
            return self
        st = _strides(self._t.shape)
        shape = [self._t.shape[d] for d in dims]
        out = self._wrap(self._s().gather(self._t, shape, 0, [st[d] for d in dims]))
        if ag.needs_grad(self):
            gr.record_permute(out, self, dims)
        inv = [dims.index(i) for i in range(nd)]
        ts = self._strides()
        out._set_strides([ts[d] for d in dims])
        return out._as_view_of(
            self,
            lambda b, o=dims: b.permute(o),
            lambda b, v, o=inv: b._assign(v.permute(o), "permute"),
        )

    def transpose(self, dim0: int, dim1: int) -> TensorBase:
        """Swap two dims (local)."""
        nd = self.dim()
        order = list(range(nd))
        a, b = _norm_dim(dim0, nd), _norm_dim(dim1, nd)
        if nd == 0:
            return self  # torch: dims -1 and 0 name the only "dim" of a scalar
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    def t(self) -> TensorBase:
        """Transpose of a tensor with at most 2 dims (local)."""
        if self.dim() > 2:
            raise ShapeError("t() expects a tensor with at most 2 dims")
        return self if self.dim() < 2 else self.transpose(0, 1)

    @property
    def T(self) -> TensorBase:
        """Reverse all dims, as torch's ``.T``."""
        return self.permute(list(range(self.dim() - 1, -1, -1)))

    @axis_alias
    def unsqueeze(self, dim: int) -> TensorBase:
        """Insert a dim of size 1 (local)."""
        if isinstance(dim, bool) or not hasattr(dim, "__index__"):  # (1.0: a slice error)
            raise TypeError(
                f"unsqueeze(): argument 'dim' (position 1) must be int, not {type(dim).__name__}"
            )
        dim = int(dim.__index__())
        nd = self.dim() + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze: dim {dim} out of range for rank {self.dim()}")
        d = dim % nd
        shp = list(self.shape)
        return self.reshape(shp[:d] + [1] + shp[d:])

    @axis_alias
    def squeeze(self, dim=None) -> TensorBase:
        """Remove dims of size 1 (all, or ``dim``) (local)."""
        shp = list(self.shape)
        if dim is None:
            return self.reshape([s for s in shp if s != 1])
        if isinstance(dim, (tuple, list)):  # torch >= 2.0: several dims
            ds = [_norm_dim(d, self.dim()) for d in dim]
            for d in ds:  # torch's error (the same dim twice was squeezed once)
                if ds.count(d) > 1:
                    raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
            return self.reshape([s for i, s in enumerate(shp) if not (i in ds and s == 1)])
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0 or shp[d] != 1:
            return self
        return self.reshape(shp[:d] + shp[d + 1 :])

    def contiguous(self, memory_format=None) -> TensorBase:
        """self, or a copy where torch's tensor would not be contiguous (a
        transposed, expanded, strided or diagonal view, or a clone of a
        transposed one): writing into it then leaves the base alone, as in
        torch."""
        if self._st is None:
            return self
        out = self.clone()
        out._st = None
        return out

    def clone(self, *, memory_format=None) -> TensorBase:
        """A copy of the shares, with the strides torch's clone
        (``preserve_format``) gives: ``x.t().clone()`` is not contiguous, so
        its ``contiguous()`` is a copy, as in torch. A comparison's result
        keeps its 0/1 bit in the copy (``(y > 0).double() * y`` selects)."""
        out = self._wrap(self._t)
        kept = getattr(self, "_bit", None)
        if kept is not None and kept[0] is self._t:  # the same shares: the same bit
            out._bit = kept
        if ag.needs_grad(self):
            gr.record_identity(out, self)
        if self._st is not None and memory_format in (None, torch.preserve_format):
            # torch's rule (dense strides in the order of the input's), read
            # off a storage-less tensor of the same layout
            meta = torch.empty_strided(tuple(self._t.shape), self._st, device="meta")
            out._set_strides(meta.clone().stride())
        return out

    def __getitem__(self, idx) -> TensorBase:
        idx = _key(idx)
        if not all(_basic(i) for i in idx):
            pos = _positions(self, idx)
            flat = pos.ravel().tolist()
            out = self._wrap(self._s().take(self._t, flat, list(pos.shape)))
            if ag.needs_grad(self):
                gr.record_take(out, self, flat)
            return out
        if sum(1 for i in idx if i is Ellipsis) > 1:
            return self._view_by_torch(idx)
        if any(i is Ellipsis for i in idx):
            k = idx.index(Ellipsis)
            fill = self.dim() - (len(idx) - 1 - sum(1 for i in idx if i is None))
            idx = idx[:k] + (slice(None),) * fill + idx[k + 1 :]
        shape_in = list(self._t.shape)
        st_in, ts = _strides(shape_in), self._strides()
        offset, out_shape, out_st, tst, d, toff = 0, [], [], [], 0, 0
        for i in idx:
            if i is None:
                out_shape.append(1)
                out_st.append(0)
                tst.append(0)
                continue
            if isinstance(i, slice) and i.step is not None and i.step <= 0:
                # torch checks a slice's step before the rank, index by index
                raise ValueError("slice step must be positive")
            if d >= len(shape_in):
                raise IndexError(f"too many indices for a tensor of rank {len(shape_in)}")
            n = shape_in[d]
            if isinstance(i, bool) or not isinstance(i, (int, slice)):
                raise TypeError(
                    f"SharedTensor indexing supports ints, slices, None and ..., "
                    f"got {type(i).__name__}"
                )
            if isinstance(i, int):
                if not -n <= i < n:
                    raise IndexError(f"index {i} out of range for dim {d} of size {n}")
                offset += (i % n) * st_in[d]
                toff += (i % n) * ts[d]  # (torch's offset, in self's strides)
            else:
                start, stop, step = i.indices(n)
                if step <= 0:
                    raise ValueError("slice step must be positive")
                cnt = max(0, (stop - start + step - 1) // step)
                offset += start * st_in[d] if cnt else 0
                toff += start * ts[d] if cnt else 0
                out_shape.append(cnt)
                out_st.append(st_in[d] * step)
                tst.append(ts[d] * step)
            d += 1
        out_shape += shape_in[d:]
        out_st += st_in[d:]
        tst += ts[d:]
        return self._strided_view(idx, shape_in, offset, out_shape, out_st, tst, toff)

    def _strided_view(self, idx, shape_in, offset, out_shape, out_st, tst, toff) -> TensorBase:
        """``self[idx]`` as the view of ``out_shape`` at ``offset`` with the
        strides ``out_st`` in self's contiguous layout (``tst`` and ``toff``
        in its own)."""
        out = self._wrap(self._s().gather(self._t, out_shape, offset, out_st))
        if ag.needs_grad(self):
            gr.record_view(out, self, shape_in, offset, out_st)
        out._set_strides(list(tst))
        rd, wr = (lambda b, i=idx: b[i]), (lambda b, v, i=idx: b._write_at(i, v))
        return out._as_view_of(self, rd, wr, toff)

    def _view_by_torch(self, idx: tuple) -> TensorBase:
        """``self[idx]`` for an index of ints, slices, None and several
        ``...``, which torch reads in its own undocumented way (numpy
        refuses it): the view's shape, strides and offset are those torch
        gives uninitialised CPU tensors of self's shape (not "meta" ones:
        torch reads such an index differently on them)."""
        shape_in = list(self._t.shape)
        st_in = _strides(shape_in)
        m = torch.empty_strided(shape_in, st_in, dtype=torch.bool)[idx]
        out_shape, offset, out_st = list(m.shape), m.storage_offset(), list(m.stride())
        mine = torch.empty_strided(shape_in, self._strides(), dtype=torch.bool)[idx]
        tst, toff = mine.stride(), mine.storage_offset()
        return self._strided_view(idx, shape_in, offset, out_shape, out_st, tst, toff)

    def __delitem__(self, idx) -> None:
        raise TypeError("SharedTensor does not support deleting items (as torch's Tensor)")

    def __setitem__(self, idx, value) -> None:
        """``x[idx] = value`` in place, for any index ``__getitem__`` takes
        (public positions) and a shared or plaintext value broadcast to the
        indexed shape; where a position is indexed twice the last value
        wins, as in torch. Local (no communication). A value that partly
        overlaps what is written is torch's RuntimeError (tensor_overlap)."""
        idx = _key(idx)
        basic = all(_basic(i) for i in idx)
        refuse_setitem_overlap(self, idx, basic, value)
        if basic and _repeats(self):  # (an expand) torch writes the view x[idx]:
            view = self[idx]  # a number by fill_, allowed; a tensor by copy_
            if isinstance(value, (int, float, np.integer, np.floating)):  # NumPy's too
                view.fill_(value)
                return
            refuse_internal_overlap(view)
            self = view
            idx = (Ellipsis,)
        self._write_at(idx, value)

    def _write_at(self, idx: tuple, value) -> None:
        """``self[idx] = value`` for an index as :func:`_key` gives it (also
        a view's write into its base: the view is the value, not checked)."""
        if (isinstance(value, TensorBase) and ag.needs_grad(value)) or (
            isinstance(value, torch.Tensor) and value.requires_grad and ag.is_grad_enabled()
        ):
            # the update would carry no gradient to value (torch records it)
            self._refuse_in_place("__setitem__")
        pos = _positions(self, idx)
        flat = pos.ravel()
        # The last write to each position wins.
        _, first_rev = np.unique(flat[::-1], return_index=True)
        keep = flat.size - 1 - first_rev
        where = flat[keep].tolist()
        vshape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
        if len(vshape) > pos.ndim and all(n == 1 for n in vshape[: len(vshape) - pos.ndim]):
            # torch drops a value's leading size-1 dims (out[i] = f(x[i:i+1]))
            vshape = vshape[len(vshape) - pos.ndim :]
            if isinstance(value, TensorBase):
                value = value.reshape(vshape)
            else:
                value = np.reshape(_plain_array(value, "setitem value"), vshape)
        try:
            fits = np.broadcast_shapes(vshape, pos.shape) == pos.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(
                f"shape mismatch: value tensor of shape {list(vshape)} cannot be broadcast to "
                f"indexing result of shape {list(pos.shape)}"
            ) from None
        if isinstance(value, TensorBase):
            v = value.expand(pos.shape) if tuple(value.shape) != pos.shape else value
            v = v.reshape(-1)[keep]
        else:
            v = np.broadcast_to(_plain_array(value, "setitem value"), pos.shape).ravel()[keep]
        current = self._wrap(self._s().take(self._t, where, [len(where)]))
        delta = v - current if isinstance(v, TensorBase) else (current - v).neg()
        update = self._wrap(self._s().put_add(delta._t, where, list(self._t.shape)))
        self._assign(self.add(update), "__setitem__")

    def pad(self, pad: Sequence[int], value: float = 0.0, mode: str = "constant") -> TensorBase:
        """Padding with ``torch.nn.functional.pad`` semantics (pairs of
        (before, after) from the last dim backwards; negative values crop);
        ``mode`` "reflect", "replicate" or "circular" copies elements at
        public positions (CrypTen's order ``pad(pad, mode, value)`` works too).
        A 0-d SharedTensor ``value`` (CrypTen's encrypted pad value) fills
        the border as its product with a public 0/1 mask (exact, local; its
        gradient is the sum of the border's)."""
        if isinstance(value, str):  # x.pad(pad, "reflect"): CrypTen's order
            mode, value = value, (0.0 if isinstance(mode, str) else mode)
        if isinstance(value, torch.Tensor) and value.requires_grad:  # torch's TypeError
            raise TypeError(
                "pad(): argument 'value' (position 4) must be float, not Tensor: "
                + plain_requires_grad(value)
            )
        if isinstance(value, TensorBase) and value.dim() != 0:
            raise TypeError(
                "pad(): argument 'value' must be a number or a 0-d SharedTensor, "
                f"not one of shape {tuple(value.shape)}"
            )
        if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in pad):
            raise TypeError(f"pad(): argument 'pad' must be a tuple of ints, got {tuple(pad)}")
        if mode != "constant":
            if isinstance(value, TensorBase) or float(value) != 0:
                # torch's error (a shared value, whose value is unknown, too):
                # until 2026-12-06 the value was dropped silently
                raise InvalidArgumentError(f'Padding mode "{mode}" doesn\'t take in value argument')
            return self._moved(lambda i: torch.nn.functional.pad(i, tuple(pad), mode=mode))
        if len(pad) % 2 or len(pad) // 2 > self.dim():
            raise ShapeError(f"pad: {len(pad)} values do not fit a tensor of rank {self.dim()}")
        pairs = [(0, 0)] * self.dim()
        for j in range(len(pad) // 2):
            pairs[self.dim() - 1 - j] = (int(pad[2 * j]), int(pad[2 * j + 1]))
        for (a, b), n in zip(pairs, self.shape):
            if n + min(a, 0) + min(b, 0) < 0:
                raise ShapeError(
                    f"pad {tuple(pad)} crops more than the size {n} of a dim of {tuple(self.shape)}"
                )
        crop = [slice(max(0, -a), n - max(0, -b)) for (a, b), n in zip(pairs, self.shape)]
        x = self[tuple(crop)] if any(a < 0 or b < 0 for a, b in pairs) else self
        pos = [(max(0, a), max(0, b)) for a, b in pairs]
        new = [n + a + b for (a, b), n in zip(pos, x.shape)]
        if math.prod(d for d in new if d) >= 2**60:  # torch: "stride calculation overflowed"
            raise OutOfMemoryError(f"pad: an output of shape {tuple(new)} cannot be allocated")
        out = self._wrap(self._s().pad(x._t, pos))
        if ag.needs_grad(x):
            gr.record_pad(out, x, pos)
        shared = isinstance(value, TensorBase)
        if (shared or value != 0) and out.numel() > x.numel():
            mask = np.full(tuple(out.shape), 1.0 if shared else float(value))
            inner = tuple(slice(a, a + n) for (a, _), n in zip(pos, x.shape))
            mask[inner] = 0.0
            out = out + (value * mask if shared else mask)
        return out

    @staticmethod
    def _cat(tensors, dim: int = 0):
        """:func:`cat`, reached through a tensor by the modules below this one
        (gradients, functions), which must not import it."""
        return cat(tensors, dim)


def _shared_list(tensors, what: str) -> list:
    """The elements as SharedTensors: plaintext ones (torch tensors, arrays,
    lists) become public sharings in the session of the first shared one."""
    if isinstance(tensors, TensorBase):  # (its rows would be the elements)
        raise TypeError(
            f"{what}(): argument 'tensors' (position 1) must be tuple of Tensors, not SharedTensor"
        )
    ts = list(tensors)
    if not ts:
        raise InvalidArgumentError(f"{what} expects a non-empty TensorList")
    first = next((t for t in ts if isinstance(t, TensorBase)), None)
    if first is None:
        raise TypeError(f"{what}: at least one element must be a SharedTensor")
    rg = next((t for t in ts if isinstance(t, TensorBase) and ag.needs_grad(t)), first)
    return [t if isinstance(t, TensorBase) else first._public(rg._plain(t, what)) for t in ts]


def cat(tensors: Sequence[TensorBase], dim: int = 0) -> TensorBase:
    """Concatenate along ``dim`` (no communication); plaintext elements are
    taken as public values. As torch's, a 1-D tensor of size 0 (the
    accumulator ``torch.tensor([])``) is skipped, whatever the others'
    shapes (until 2026-12-07 a ShapeError)."""
    ts = _shared_list(tensors, "cat")
    s = ts[0]._s()
    for t in ts[1:]:
        t._s()
    kept = [t for t in ts if tuple(t.shape) != (0,)]
    if not kept:  # all empty: torch's (0,) for any dim
        return ts[0]._wrap(s.cat([t._t for t in ts], 0))
    ts = kept
    d = _norm_dim(dim, ts[0].dim())
    out = ts[0]._wrap(s.cat([t._t for t in ts], d))
    if ag.needs_grad(*ts):
        gr.record_cat(out, ts, d)
    return out


def stack(tensors: Sequence[TensorBase], dim: int = 0) -> TensorBase:
    """Stack tensors of equal shape along a new ``dim`` (plaintext elements
    are taken as public values)."""
    ts = _shared_list(tensors, "stack")
    for t in ts[1:]:
        if tuple(t.shape) != tuple(ts[0].shape):
            raise ShapeError(
                f"stack expects each tensor to be equal size, got {tuple(ts[0].shape)} "
                f"and {tuple(t.shape)}"
            )
    nd = ts[0].dim() + 1
    if not -nd <= dim < nd:
        raise IndexError(f"stack: dim {dim} out of range")
    return cat([t.unsqueeze(dim % nd) for t in ts], dim % nd)


def _key(idx) -> tuple:
    """An index as a tuple of per-dim indices, read as torch reads it: a
    list of fewer than 32 items holding a sequence, tensor, slice, None or
    ... is a tuple of indices (``x[[rows, cols]]`` is ``x[rows, cols]``),
    with torch's deprecation warning; any other list is one index."""
    if isinstance(idx, list) and len(idx) < 32 and any(_multi(i) for i in idx):
        warnings.warn(
            "Using a non-tuple sequence for multidimensional indexing is deprecated "
            "(torch reads it as a tuple, as here, until its 2.9 change); use "
            "x[tuple(seq)] instead of x[seq]",
            UserWarning,
            stacklevel=3,
        )
        idx = tuple(idx)
    if not isinstance(idx, tuple):
        idx = (idx,)
    return tuple(i if _index(i) is None else _index(i) for i in idx)


def _multi(i) -> bool:
    return (
        i is None
        or i is Ellipsis
        or isinstance(i, (slice, torch.Tensor, np.ndarray))
        or (isinstance(i, Sequence) and not isinstance(i, str))
    )


def _basic(i) -> bool:
    """An index the strided-view path takes: an int, a slice, None or ``...``."""
    if i is None or i is Ellipsis or isinstance(i, slice):
        return True
    return isinstance(i, int) and not isinstance(i, bool)


def _positions(x, idx: tuple) -> np.ndarray:
    """The flat positions ``x[idx]`` reads, shaped like the result, for
    public indices of every kind torch takes (integer and bool tensors,
    lists and arrays, Python bools, mixed with ints, slices, None and
    ``...``): torch's own indexing applied to a tensor of the positions, so
    that the shape, the order of the dims and the errors are torch's."""
    conv = []
    for i in idx:
        if isinstance(i, TensorBase) or (isinstance(i, (list, tuple)) and _holds_shared(i)):
            raise NotImplementedError(
                "indexing with a SharedTensor (private positions) is not supported: reveal "
                "the index, or select with a one-hot product or where()"
            )
        if isinstance(i, torch.Tensor) and i.device.type != "cpu":
            i = i.cpu()
        elif isinstance(i, np.ndarray) and (not i.flags.writeable or min(i.strides, default=0) < 0):
            # (a flipped array, which torch refuses, or a read-only one, a
            # diagonal's, which torch warns about)
            i = i.copy()
        conv.append(i)
    shape = tuple(x._t.shape)
    pos = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
    return pos[tuple(conv)].numpy()


def _holds_shared(seq) -> bool:
    """Whether a list or tuple index holds a SharedTensor at any depth
    (torch would read its value to build the index)."""
    return any(
        isinstance(v, TensorBase) or (isinstance(v, (list, tuple)) and _holds_shared(v))
        for v in seq
    )


def _view_strides(shape, strides, new_shape):
    """The strides of ``new_shape`` viewing a tensor of ``shape`` and
    ``strides`` (torch's rule: each run of dims that are contiguous among
    themselves may be split or merged), or None where no view exists."""
    if math.prod(shape) == 0 or not shape:
        return _strides(new_shape)
    out = [0] * len(new_shape)
    v = len(new_shape) - 1
    base, run, seen = strides[-1], 1, 1
    for d in range(len(shape) - 1, -1, -1):
        run *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != run * base):
            while v >= 0 and (seen < run or new_shape[v] == 1):
                out[v] = seen * base
                seen *= new_shape[v]
                v -= 1
            if seen != run:
                return None
            if d > 0:
                base, run, seen = strides[d - 1], 1, 1
    return out if v == -1 else None
