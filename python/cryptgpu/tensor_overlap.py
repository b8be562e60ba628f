"""torch's refusal of an in-place op whose operand partly overlaps the
written-to tensor (``x.add_(x.t())``), decided as torch decides it.

A view here holds a copy of its values (tensor_base.py), so nothing would
go wrong if we computed; we refuse where torch refuses, so that code that
runs here runs on torch. torch (``at::get_overlap_status``, which every
TensorIterator op, ``copy_``, ``index_put_`` and the scatter/index ops
call) compares the written-to tensor with each operand as it was passed
(before broadcasting):

- the same tensor, or one of them empty, or different storages: allowed;
- either one not "non-overlapping and dense" (its elements are not exactly
  a block of its storage: a strided slice ``x[:, :1]``, a diagonal, an
  expanded tensor): torch cannot tell cheaply, calls it "too hard", and
  computes;
- both dense and their storage ranges intersect: refused, unless the
  ranges are the same and so are the strides (``x.add_(x.t().t())``;
  the strides of size-1 dims, which torch compares too, are not kept
  here and not compared). Not followed: torch's ``index_copy_``,
  ``index_add_``, ``scatter*_`` and advanced-index ``x[idx] = v`` also
  refuse a full overlap (``x.index_copy_(0, i, x)``; its
  ``assert_no_overlap``); ours computes them with the operand's old value.

So the storage offset of each view in its root's storage (``_off``, set by
``TensorBase._as_view_of``) and its torch strides (``_strides()``) are
what is compared; two views of one base are compared too. A view whose
layout is not torch's (``view()`` of a transposed tensor, which torch
refuses to make) has no known offset and is never refused.

Where torch computes with an operand that overlaps the result
(``x.sub_(x[:, :1])``, ``x.mul_(x[0].expand(4, 4))``,
``x.mul_(x.diagonal())``), its result depends on the order in which its
loops read and write: element by element in memory order for narrow rows
(``x.sub_(x[:, :1])`` on a 4 x 4 tensor leaves rows 1-3 less only their
first element's new value, 0), the value read before any write for rows
vectorised whole (the same call on 4 x 64), and it differs between runs
with several threads (``x.mul_(x[0].expand(600, 600))``). Ours is always
the last: the operand's value as it was before the op, as if it had been
``clone()``d first (which torch's own error message asks for).
"""

from __future__ import annotations

import numpy as np
import torch

from . import tensor_storage as _storage
from .tensor_base import _OVERLAP, TensorBase

_PARTIAL = (
    "unsupported operation: some elements of the input tensor and the written-to tensor "
    "refer to a single memory location. Please clone() the tensor before performing the "
    "operation."
)


def _place(t):
    """(the root whose storage ``t`` is in, t's offset there), or None
    where the offset is not known."""
    if t._view is None:
        return t, 0
    off = getattr(t, "_off", None)
    return None if off is None else (_storage.follow(t, t._view)[0], off)


def _layout(t, place) -> tuple:
    """(root, storage offset, shape, strides) of ``t`` as torch lays it out."""
    return place[0], place[1], tuple(t.shape), tuple(t._strides())


def _shared(x, y):
    """The layouts of x and y where they are in one storage, else None."""
    px, py = _place(x), _place(y)
    if px is None or py is None or px[0] is not py[0]:
        return None
    return _layout(x, px), _layout(y, py)


def _dense(shape, strides) -> bool:
    """torch's ``is_non_overlapping_and_dense``: the elements fill a block
    of the storage, each once (in any order of the dims)."""
    need = 1
    for st, n in sorted((st, n) for n, st in zip(shape, strides) if n >= 2):
        if st != need:
            return False
        need *= n
    return True


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _key(lay) -> tuple:
    """A layout's strides as torch compares them, but for the dims of size
    1, whose strides we do not keep (tensor_base._set_strides): these are
    never read."""
    return tuple(st if n != 1 else None for n, st in zip(lay[2], lay[3]))


def _refuse_between(a, b) -> None:
    """torch's RuntimeError where layouts ``a`` (written to) and ``b`` (an
    operand) overlap partly (``at::assert_no_partial_overlap``)."""
    na, nb = _numel(a[2]), _numel(b[2])
    if not na or not nb or not _dense(a[2], a[3]) or not _dense(b[2], b[3]):
        return  # nothing to overlap, or "too hard": torch computes
    if a[1] == b[1] and na == nb:
        if _key(a) == _key(b):
            return  # the same elements alike
        raise RuntimeError(_PARTIAL)
    if a[1] < b[1] + nb and b[1] < a[1] + na:
        raise RuntimeError(_PARTIAL)


def refuse_partial_overlap(x, *operands) -> None:
    """torch's RuntimeError, before any work, for an in-place op on ``x``
    with an operand (a SharedTensor among ``operands``; others are
    skipped) that partly overlaps x in torch's storage: ``x.add_(x.t())``,
    ``x.mul_(x[0])``, ``x[1:].add_(x[:-1])``; allowed where torch allows
    it (see the module docstring), ours then computes with the operand's
    value from before the op."""
    for y in operands:
        if isinstance(y, TensorBase) and y is not x:
            both = _shared(x, y)  # (None: another storage, or a layout torch has not)
            if both is not None:
                _refuse_between(*both)


def _outer(idx: tuple):
    """The basic part of an advanced index, which torch applies first as
    a view that ``index_put_`` then writes (``x[1, i] = v`` writes
    ``x[1]``): each tensor or list kept as the whole dims it indexes (a
    bool mask all its dims; a bool the new dim it adds). None where an
    index is not read here (a SharedTensor, a ragged list)."""
    out = []
    for i in idx:
        if isinstance(i, (bool, torch.Tensor, np.ndarray, list, tuple)):
            try:
                a = np.asarray(i.cpu() if isinstance(i, torch.Tensor) else i)
            except (TypeError, ValueError, RuntimeError):
                return None
            if getattr(i, "dtype", None) == torch.uint8:
                return None  # torch's deprecated byte mask: checked against all of x
            if a.dtype == np.bool_ and not a.ndim:
                out.append(None)
            else:
                out += [slice(None)] * (a.ndim if a.dtype == np.bool_ else 1)
        elif isinstance(i, TensorBase):
            return None
        else:
            out.append(i)
    return tuple(out)


def refuse_setitem_overlap(x, idx: tuple, basic: bool, value) -> None:
    """torch's RuntimeError for ``x[idx] = value`` where value partly
    overlaps what is written: for a basic index (ints, slices, None,
    ``...``) the view ``x[idx]``, copied into from value broadcast to its
    shape (a 0-d value fills it: never refused); for any other index the
    view of its basic part (:func:`_outer`), which ``index_put_`` writes."""
    if not isinstance(value, TensorBase):
        return
    both = _shared(x, value)
    if both is None:
        return
    mine, src = both
    where = idx if basic else _outer(idx)
    if where is None:
        refuse_partial_overlap(x, value)
        return
    probe = torch.empty_strided(mine[2], mine[3], dtype=torch.bool)[where]
    dest = (mine[0], mine[1] + probe.storage_offset(), tuple(probe.shape), probe.stride())
    if not basic or src[2] == dest[2]:
        _refuse_between(dest, src)
        return
    if not src[2]:
        return  # a 0-d value: torch's fill_
    # torch drops the value's leading size-1 dims, then expands it to the
    # view's shape: an expanded dim has stride 0
    shape, st = list(src[2]), list(src[3])
    while shape and shape[0] == 1 and len(shape) > len(dest[2]):
        shape.pop(0)
        st.pop(0)
    lead = len(dest[2]) - len(shape)
    full = [0] * lead + [s if n == m else 0 for n, m, s in zip(shape, dest[2][lead:], st)]
    _refuse_between(dest, (src[0], src[1], dest[2], tuple(full)))


def _repeats(t) -> bool:
    """torch's internal overlap (``at::has_internal_overlap`` is YES): a
    non-empty tensor with a stride-0 dim of size > 1 (an ``expand``)."""
    shape = tuple(t.shape)
    return _numel(shape) > 0 and any(n > 1 and s == 0 for n, s in zip(shape, t._strides()))


def same_data(x, y) -> bool:
    """x and y are the same elements alike (one storage, offset, shape
    and strides): torch's ``copy_`` returns at once."""
    if x is y:
        return True
    both = _shared(x, y) if isinstance(y, TensorBase) else None
    return both is not None and both[0][1:] == both[1][1:]


def refuse_internal_overlap(t, what: str = "") -> None:
    """torch's RuntimeError, before anything changes, for an in-place op
    on ``t`` where several of its elements are one memory location (a view
    of an ``expand``ed tensor with a stride-0 dim of size > 1); ``what``
    (the op) ``zero_`` or ``fill_`` (a number), which torch allows there (so does
    ``x[i] = number`` with a basic index, a fill_ of ``x[i]``). Not
    followed: torch also writes ``masked_fill_``, ``index_fill_`` and
    ``x[idx] = number`` there; ours refuses them (its write would give the
    elements of one place their last value, not the filled one). A view
    through an expand whose place torch has not (no known offset) cannot
    be written back: refused as well."""
    v = t._view
    if v is None or not getattr(v[3], "_strided", False):
        return
    fill = what in ("zero_", "fill_")  # torch writes an expand with one value
    if getattr(t, "_off", None) is None or (not fill and _repeats(t)):
        raise RuntimeError(_OVERLAP)


def write_strided(root, value) -> None:
    """The write into ``root`` of a view taken through an ``expand``
    (``x[:1].expand(3, 3)[0].add_(1)``, ``x.expand(1, 2, 3).add_(1)``,
    where torch writes): each element of ``value`` goes to its place in
    the root's storage, from the view's torch offset and strides, as
    torch's view writes its storage (a place several elements share
    takes the last; ``refuse_internal_overlap`` refused first unless
    all take one value)."""
    st = root._strides()
    order = sorted(range(root.dim()), key=lambda d: -st[d])  # storage order
    flat = root.permute(order).reshape(-1) if order else root.reshape(-1)
    n = max(_numel(tuple(root.shape)), 1)
    pos = torch.as_strided(torch.arange(n), tuple(value.shape), value._strides(), value._off)
    if pos.numel():
        flat._write_at((pos.reshape(-1),), value.reshape(-1))


write_strided._strided = True
