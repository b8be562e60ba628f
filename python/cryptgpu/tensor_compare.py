"""Comparisons of SharedTensor and what is built on them: ReLU, sign, abs,
clamp, ``where``, and max/min/argmax by a tournament. Each comparison is
the engine's sign-bit circuit (msb_inject), batched as far as possible.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import torch

from . import autograd as ag
from . import gradients as gr
from . import tensor_bounds as bounds
from ._native import EncodingError, InvalidArgumentError
from ._plain import _bool_as_number, _float64, _ibuf, _index, _norm_dim, _plain_array
from .tensor_base import TensorBase
from .tensor_reduce import axis_alias
from .tensor_shape import cat, stack

# max(dim) / min(dim) results: a tuple with torch's field names (``.values``,
# ``.indices``; the indices are the one-hot mask unless one_hot=False)
_MaxMin = collections.namedtuple("max_min", ["values", "indices"])
_TopK = collections.namedtuple("topk", ["values", "indices"])


def _tensor_alone_is_other(method):
    """torch's reading of ``x.max(t)`` / ``x.min(t)``: a torch tensor given
    alone in dim's place is ``other`` (the element-wise maximum), a 0-dim
    one too, of any dtype; with ``keepdim`` given, or as ``dim=t``, a 0-dim
    integer tensor is a dim. Until 2026-12-07 ``x.max(torch.tensor(1))``
    reduced over dim 1 silently, and a 0-dim float one raised TypeError."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if (
            len(args) == 1
            and isinstance(args[0], torch.Tensor)
            and not kwargs.keys() & {"dim", "keepdim", "other"}
        ):
            return method(self, other=args[0], **kwargs)
        return method(self, *args, **kwargs)

    return call


class ComparisonOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: comparisons, ReLU and max/argmax."""

    __slots__ = ()

    # ------------------------------------------------------------ comparisons
    def relu(self) -> TensorBase:
        """max(x, 0): sign bit by A2B, then bit injection. 10 rounds for any size.
        When recording for autograd, the engine injects the derivative mask
        1 - msb(x) in the same call (same rounds) and it is kept for backward."""
        if not ag.needs_grad(self):
            return self._wrap(self._s().relu(self._t))
        out, mask = self._s().relu_with_mask(self._t)
        return gr.record_relu(self._wrap(out), self, self._wrap(mask))

    def _ltz(self, label: str = "ltz") -> TensorBase:
        """The 0/1 (fixed-point) indicator of x < 0."""
        return self._wrap(self._s().msb_inject(self._t, None, label))

    def _msb_times(self, v: TensorBase, label: str) -> TensorBase:
        """msb(self) * v, where v's shape starts with self's shape."""
        return self._wrap(self._s().msb_inject(self._t, v._t, label))

    def _ltz_bit(self, label: str) -> TensorBase:
        """[x < 0] as a 0/1 ring integer: the sign bit injected into the
        word 1 instead of the fixed-point 1.0 (the same rounds and bytes)."""
        s = self._s()
        word = self._public_like(2.0**-s.precision_bits)  # encodes as the word 1
        return self._wrap(s.msb_inject(self._t, word._t, label))

    def _minus(self, other, what: str):
        """(x - other, the NaN positions of a plaintext other or None). A
        plaintext other that does not encode (+-inf, 1e10, NaN) has torch's
        answer still: :func:`cryptgpu.tensor_bounds.minus_far` (until
        2026-12-08 an EncodingError). The ordinary subtraction is tried
        first: a comparison with an operand that encodes costs as before."""
        other = _bool_as_number(other)
        try:
            return self.sub(other), None
        except EncodingError:
            # (a Python int beyond 64 bits: torch's OverflowError, ours as before)
            if isinstance(other, TensorBase) or bounds.beyond_64_bits(other):
                raise
        return bounds.minus_far(self, other, what)

    def lt(self, other) -> TensorBase:
        """1.0 where x < other else 0.0 (secret-shared). Correct while
        |x - other| < 2^(63-f); a public other beyond the encoding's range
        (+-inf, 1e10) as :mod:`cryptgpu.tensor_bounds` says, for every
        shared |x| < 2^(62-f); NaN gives 0, as torch's False."""
        d, nan = self._minus(other, "lt")
        return _cmp_result(bounds.nan_is(d._ltz_bit("lt"), nan, 0))

    def gt(self, other) -> TensorBase:
        """1.0 where x > other else 0.0."""
        d, nan = self._minus(other, "gt")
        return _cmp_result(bounds.nan_is(d.neg()._ltz_bit("gt"), nan, 0))

    def le(self, other) -> TensorBase:
        """1.0 where x <= other else 0.0."""
        d, nan = self._minus(other, "le")
        return _cmp_result(bounds.nan_is(_one_minus(d.neg()._ltz_bit("gt")), nan, 0))

    def ge(self, other) -> TensorBase:
        """1.0 where x >= other else 0.0."""
        d, nan = self._minus(other, "ge")
        return _cmp_result(bounds.nan_is(_one_minus(d._ltz_bit("lt")), nan, 0))

    def _both_signs(self, y, label):
        """[x < y] and [x > y] as 0/1 ring integers, from one comparison
        call; and y's NaN positions (or None)."""
        d, nan = self._minus(y, label)
        both = stack([d, d.neg()])._ltz_bit(label)
        return both[0], both[1], nan

    def eq(self, other) -> TensorBase:
        """1.0 where x == other else 0.0: one batched comparison of x - other and other - x."""
        lt, gt, nan = self._both_signs(other, "eq")
        return _cmp_result(bounds.nan_is(_one_minus(lt) - gt, nan, 0))

    def ne(self, other) -> TensorBase:
        """1.0 where x != other else 0.0."""
        lt, gt, nan = self._both_signs(other, "ne")
        return _cmp_result(bounds.nan_is(lt + gt, nan, 1))

    __lt__ = lt
    __gt__ = gt
    __le__ = le
    __ge__ = ge
    __hash__ = object.__hash__

    def __eq__(self, y):  # noqa: D105 - torch semantics: elementwise
        # x == None is False and x != None True, as torch's (Python's
        # identity comparison, once NotImplemented)
        return NotImplemented if y is None else self.eq(y)

    def __ne__(self, y):
        return NotImplemented if y is None else self.ne(y)

    def sign(self) -> TensorBase:
        """1.0 where x > 0, 0.0 where x == 0, -1.0 where x < 0, as ``torch.sign``
        (CrypTen returns 1 at 0): [x < 0] and [-x < 0] in one comparison call
        (same rounds as one, twice the bytes). On an input that requires
        grad the result does too, with torch's zero gradient."""
        recorded = ag.needs_grad(self)
        with ag.inside(recorded):
            flat = self.reshape(-1)
            n = flat.shape[0]
            both = self._cat([flat, -flat], 0)._ltz("sign")
            out = (both[n:] - both[:n]).reshape(self.shape)
        if recorded:
            ag.record(out, (self,), lambda g: (g * 0,))
        return out

    def abs(self) -> TensorBase:
        """|x| = x - 2 msb(x) x: one comparison, exact; differentiable (the
        derivative 1 - 2 [x < 0])."""
        if ag.needs_grad(self):
            return self._abs_and_ltz("abs")[0]
        return self - 2 * self._msb_times(self, "abs")

    def _abs_and_ltz(self, label: str = "abs"):
        """(|x|, [x < 0]) from one comparison call. When autograd records,
        |x| is recorded with its derivative 1 - 2 [x < 0] (the indicator has
        none): computed from the injected bit, which the tape cannot see,
        it used to back-propagate as if |x| were x, so the gradients of
        abs, sigmoid and tanh had the wrong sign for x < 0."""
        recorded = ag.needs_grad(self)
        with ag.inside(recorded):
            ones = self._public_like(1.0)
            both = self._cat([self.unsqueeze(-1), ones.unsqueeze(-1)], -1)
            m = self._msb_times(both, label)
            a, neg = self - 2 * m[..., 0], m[..., 1]
        if recorded:
            ag.record(a, (self,), lambda g: (g * (1 - 2 * neg),))
        return a, neg

    __abs__ = abs

    def where(self, condition, other) -> TensorBase:
        """``condition ? self : other`` like ``torch.where(condition, self, other)``."""
        return where(condition, self, other)

    def clamp(self, min=None, max=None) -> TensorBase:  # noqa: A002 - torch's names
        """Clamp to [min, max]: numbers, or tensors (plaintext or shared)
        broadcasting against x, as torch's min(max(x, min), max), so max
        wherever min > max. Plaintext bounds: both in one batched ReLU
        (10 rounds), min first lowered to max where it exceeds it. A shared
        bound cannot be compared with the other without revealing it, so
        the form max - relu(max - (relu(x - min) + min)), right for every
        pair of bounds, takes two ReLUs in sequence (20 rounds)."""
        if min is None and max is None:
            raise InvalidArgumentError("clamp: at least one of min and max must be given")
        min, max = _bool_as_number(min), _bool_as_number(max)  # noqa: A001 - torch's 0/1
        kinds = [type(v).__name__ if isinstance(v, (int, float)) else "Tensor" for v in (min, max)]
        if min is not None and max is not None and "Tensor" in kinds and kinds[0] != kinds[1]:
            bound = min if kinds[0] == "Tensor" else max
            # torch's: a torch tensor bound with a number (not a 0-d tensor);
            # a shared bound with a number has no torch form and is computed
            if isinstance(bound, torch.Tensor) and len(bound.shape):
                raise TypeError(
                    f"clamp() received an invalid combination of arguments - got ({kinds[0]}, "
                    f"{kinds[1]}), but expected one of: (Tensor min = None, Tensor max = None), "
                    "(Number min = None, Number max = None)"
                )
        # a bound on its own side beyond every share bounds nothing
        # (clamp(max=inf), clamp(max=1e20)); one that does not encode
        # (1e10, a tensor holding inf) is held as exact ring words
        # (tensor_bounds; until 2026-12-08 an EncodingError)
        f = self._s().precision_bits
        if isinstance(min, (int, float)) and min <= -bounds.far(f):
            min = None  # noqa: A001
        if isinstance(max, (int, float)) and max >= bounds.far(f):
            max = None  # noqa: A001
        min, max = bounds.clamp_bound(min, "min", f), bounds.clamp_bound(max, "max", f)  # noqa: A001
        far = [
            v is not None and not isinstance(v, TensorBase) and not bounds.encodes(v, f)
            for v in (min, max)
        ]
        if min is None and max is None:
            return self + 0.0
        if min is not None and max is not None:
            if isinstance(min, TensorBase) or isinstance(max, TensorBase):
                if any(far):  # the public one as a public sharing
                    min, max = (
                        bounds.exact_public(self, v) if w else v for v, w in zip((min, max), far)
                    )  # noqa: A001
                return max - (max - ((self - min).relu() + min)).relu()
            lo, hi = (_float64(v, "clamp") for v in (min, max))
            flat = lo >= hi  # the result is max there, its gradient 0 (torch's)
            if bool(flat.any()):
                if lo.dim() == 0 and hi.dim() == 0:
                    # max everywhere: no comparison (one that requires grad is
                    # noted as a plaintext operand is: float() dropped it)
                    if far[1]:
                        return bounds.plus(self * 0, hi)
                    return self * 0 + (hi if hi.requires_grad else float(hi))
                min = torch.minimum(lo, hi)  # noqa: A001 - max where min > max
            # relu(x - max) as (x - max) + relu(max - x), equal in the ring:
            # the same one batched ReLU, and the gradient [x > min] - 1 +
            # [x < max] is 0 at both bounds, as torch's (relu'(0) = 0 gave
            # 1 at the upper bound until 2026-12-05); where min == max it is
            # -1 at x == min, so those elements are the constant max
            # (products with public 0/1 factors: exact)
            # (a bound of higher rank than x broadcasts both to one shape
            # before they are stacked: a ShapeError until 2026-12-06)
            shape = torch.broadcast_shapes(tuple(self.shape), tuple(lo.shape), tuple(hi.shape))
            if any(far):  # each bound's words added on its own (|max + min| may reach 2^(63-f))
                low, high = bounds.plus(self, -min), bounds.plus(self.neg(), max)
                r = stack([low.expand(shape), high.expand(shape)]).relu()
                out = bounds.plus(bounds.plus(r[0] - r[1] - self, max), min)
                if bool(flat.any()):
                    out = bounds.plus(out * (~flat).double(), hi * flat.double())
                return out
            r = stack([(self - min).expand(shape), (self.neg() + max).expand(shape)]).relu()
            out = r[0] - r[1] - self + (max + min)
            if bool(flat.any()):
                out = out * (~flat).double() + hi * flat.double()
            return out
        if min is not None:
            if far[0]:
                return bounds.plus(bounds.plus(self, -min).relu(), min)
            return (self - min).relu() + min
        if far[1]:
            return bounds.plus(bounds.plus(self.neg(), max).relu().neg(), max)
        return max - (max - self).relu()

    def _tournament(self, want_arg: bool, label: str):
        """Max over the last dim: the engine's tournament of pairwise
        comparisons (protocol/nonlinear.rs; log2(k) levels of one batched
        comparison each), ties to the first index like torch. Returns
        (values, one-hot argmax or None)."""
        v, a = self._s().tournament(self._t, want_arg, label)
        return self._wrap(v), (self._wrap(a) if a is not None else None)

    def _reduce_max(self, dim, keepdim, want_arg, label):
        """(values, one-hot argmax or None) over ``dim`` (all elements when
        None). Recorded for autograd, the values' gradient goes to the
        selected (first maximal) element of each reduction, as torch's
        ``max(dim)`` does; the argmax is kept for the backward pass."""
        recorded = ag.needs_grad(self)
        if not recorded:
            return self._max_values(dim, keepdim, want_arg, label)
        with ag.inside(recorded):
            v, a = self._max_values(dim, keepdim, True, label)
        gr.record_max(v, self, a, None if dim is None or keepdim else dim)
        return v, (a if want_arg else None)

    def _max_values(self, dim, keepdim, want_arg, label):
        _empty_needs_dim(self, dim, label)
        if dim is not None and self.dim() == 0:
            _norm_dim(dim, 0)  # -1 and 0 are the scalar's only "dim"
            v, a = self.reshape(1)._max_values(0, False, want_arg, label)
            return v, (a.reshape(()) if want_arg else None)
        if dim is not None and self.dim() and self.shape[_norm_dim(dim, self.dim())] == 0:
            # torch's type for this error
            raise IndexError(
                f"{label}(): expected reduction dim {dim} to have non-zero size, "
                f"got shape {tuple(self.shape)}"
            )
        if dim is None:
            v, a = self.flatten()._tournament(want_arg, label)
            return v, (a.reshape(self.shape) if want_arg else None)
        nd = self.dim()
        d = _norm_dim(dim, nd)
        # The reduced dim goes last and the others keep their order, so the
        # values come out in torch's order (a transpose would swap d with the
        # last dim and return [.., last, ..] transposed for d < nd - 2).
        order = [i for i in range(nd) if i != d] + [d]
        moved = self.permute(order)
        v, a = moved._tournament(want_arg, label)
        if keepdim:
            v = v.unsqueeze(d)
        if want_arg:
            a = a.permute([order.index(i) for i in range(nd)])
        return v, a

    @axis_alias
    @_tensor_alone_is_other
    def max(self, dim=None, keepdim: bool = False, one_hot: bool = True, *, other=None):
        """Maximum. With ``dim=None`` returns the max of all elements; with a
        dim returns ``(values, argmax)`` where argmax is a one-hot SharedTensor
        of the input's shape (CrypTen's convention), or with
        ``one_hot=False`` the index itself, still secret-shared. With
        ``other`` (positional or torch's keyword) the element-wise maximum:
        as torch's, a tensor given alone in dim's place is ``other``, even a
        0-dim one (``x.max(torch.tensor(1))``), while ``dim=torch.tensor(1)``
        and ``x.max(torch.tensor(1), keepdim)`` read it as a dim."""
        if other is not None:
            return self.maximum(_other_alone(dim, other, "max"))
        if _is_other(dim):
            return self.maximum(dim)  # torch's max(other): element-wise
        if dim is None:
            return self._reduce_max(None, False, False, "max")[0]
        v, a = self._reduce_max(dim, keepdim, True, "max")
        return _MaxMin(v, a) if one_hot else _MaxMin(v, _indices(a, dim, keepdim))

    @axis_alias
    def amax(self, dim=None, keepdim: bool = False) -> TensorBase:
        """Maximum values only (no argmax), like ``torch.amax``: the tournament
        without the one-hot bookkeeping, whose size grows with k^2 per row.
        ``dim`` may be a tuple of dims (reduced together, as torch's)."""
        _empty_needs_dim(self, dim, "amax")
        if dim is None and keepdim and self.dim():  # torch: every dim kept, size 1
            return self.amax(None).reshape([1] * self.dim())
        if isinstance(dim, (tuple, list)):
            dims = [_norm_dim(d, self.dim()) for d in dim]
            for d in dims:  # torch's error (the same dim twice was taken)
                if dims.count(d) > 1:
                    raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
            dims = sorted(dims)
            if not dims:
                return self.amax(None, keepdim)
            rest = [d for d in range(self.dim()) if d not in dims]
            flat = self.permute(rest + dims).reshape([self.shape[d] for d in rest] + [-1])
            out = flat.amax(-1)
            for d in dims if keepdim else ():
                out = out.unsqueeze(d)
            return out
        return self._reduce_max(dim, keepdim, False, "max")[0]

    @axis_alias
    def amin(self, dim=None, keepdim: bool = False) -> TensorBase:
        """Minimum values only, as ``torch.amin``: -amax(-x)."""
        _empty_needs_dim(self, dim, "amin")  # (amax's error said "max()")
        return self.neg().amax(dim, keepdim).neg()

    @axis_alias
    @_tensor_alone_is_other
    def min(self, dim=None, keepdim: bool = False, one_hot: bool = True, *, other=None):
        """Minimum, as :meth:`max` of ``-x`` (a tensor as ``other``: as max's)."""
        if other is not None:
            return self.minimum(_other_alone(dim, other, "min"))
        if _is_other(dim):
            return self.minimum(dim)
        _empty_needs_dim(self, dim, "min")
        r = self.neg().max(dim, keepdim, one_hot)
        return r.neg() if dim is None else _MaxMin(r[0].neg(), r[1])

    def topk(self, k, dim=-1, largest=True, sorted=True, *, one_hot: bool = True):  # noqa: A002
        """torch's ``topk``: the ``k`` largest (smallest with ``largest=False``)
        along ``dim``, in order (``sorted`` changes nothing). ``k`` = 1 is
        ``max(dim, keepdim=True)`` (a tutorial's greedy decoder's ``_, topi
        = out.topk(1)``), its indices as max(dim)'s (see :meth:`max`). A
        larger ``k`` (since 2026-12-07) takes k maxima in turn, each chosen
        one moved far down (:func:`_far_down`: nothing is opened, no sorting
        network; every value the encoding allows, |x| < 2^(63 - 2f)): k
        times max(dim)'s rounds. Its indices with ``one_hot=True`` are the
        k one-hot masks stacked at ``dim`` (``[..., k, n, ...]``: row i the
        mask of the i-th pick over the next dim), with ``one_hot=False``
        torch's index values (shared); ties go to the first index, as
        max(dim)."""
        if _index(k) is None:  # (a NumPy integer or a 0-d integer tensor is one)
            raise TypeError(f"topk(): argument 'k' must be int, not {type(k).__name__}")
        k, d = _index(k), _norm_dim(dim, self.dim())
        size = self.shape[d] if self.dim() else 1
        if k < 0 or k > size:
            raise RuntimeError("selected index k out of range")
        if k == 1 or self.dim() == 0:
            r = (self.max if largest else self.min)(d, keepdim=True, one_hot=one_hot)
            return _TopK(*r)
        if k == 0:  # empty, in torch's shapes
            values = self.narrow(d, 0, 0)
            return _TopK(values, self.unsqueeze(d).narrow(d, 0, 0) if one_hot else values * 0)
        x, vals, hots = (self if largest else self.neg()), [], []
        for i in range(k):
            v, h = x.max(d, keepdim=True)
            vals.append(v)
            hots.append(h)
            if i < k - 1:  # the chosen one out of the next picks
                x = x - _far_down(h)
        values = cat(vals, d) if largest else cat(vals, d).neg()
        onehots = stack(hots, d)
        return _TopK(values, onehots if one_hot else _indices(onehots, d + 1, False))

    @axis_alias
    def argmax(self, dim=None, keepdim: bool = False, one_hot: bool = True) -> TensorBase:
        """One-hot (fixed-point 0/1) indicator of the first maximum, shaped like
        the input (over all elements when ``dim`` is None); with
        ``one_hot=False`` the index of the first maximum as a SharedTensor
        (a sum of the one-hot times public positions: no extra rounds), as
        CrypTen's."""
        a = self._reduce_max(dim, keepdim, True, "argmax")[1]
        return a if one_hot else _indices(a, dim, keepdim)

    @axis_alias
    def argmin(self, dim=None, keepdim: bool = False, one_hot: bool = True) -> TensorBase:
        """One-hot indicator of the first minimum."""
        return self.neg().argmax(dim, keepdim, one_hot)


def _far_down(onehot) -> TensorBase:
    """2^62 as ring integers where ``onehot`` is 1 (an exact public integer
    product, local; no gradient): a value moved down by it lies below every
    value of ring magnitude under 2^61 (2^(61 - f) as reals, past the
    encoding's 2^(63 - 2f)), and its differences with them stay below 2^63,
    inside what the comparisons read right. Until 2026-12-07 the move was
    2^30 as reals: picks went wrong silently from |x| = 2^29."""
    s = onehot._s()
    k = np.array([1 << (62 - s.precision_bits)])  # its 1 is 2^f
    return onehot._wrap(s.mul_public_int(onehot.detach()._t, _ibuf(k)))


def _other_alone(dim, other, what: str):
    """``other`` given by torch's keyword (``x.max(other=y)``): with no dim,
    as torch's (whose error is a TypeError)."""
    if dim is not None:
        raise TypeError(f"{what}() received an invalid combination of arguments: other= with a dim")
    if not isinstance(other, (TensorBase, np.ndarray, torch.Tensor)):  # torch's error
        raise TypeError(f"{what}(): argument 'other' must be Tensor, not {type(other).__name__}")
    return other


def _indices(onehot, dim, keepdim: bool):
    """The position of the 1 in each one-hot row along ``dim`` (of the
    flattened tensor when ``dim`` is None), shared: public integer factors
    and a sum, all local."""
    if dim is None:
        flat = onehot.reshape(-1)
        idx = (flat * torch.arange(flat.shape[0], dtype=torch.int64)).sum()
        return idx.reshape([1] * onehot.dim()) if keepdim else idx
    if onehot.dim() == 0:  # a scalar's only "dim" (0 or -1): index 0, as torch's
        return onehot * 0
    d = dim % onehot.dim()
    shape = [1] * onehot.dim()
    shape[d] = onehot.shape[d]
    pos = torch.arange(onehot.shape[d], dtype=torch.int64).reshape(shape)
    return (onehot * pos).sum(d, keepdim=keepdim)


def _is_other(dim) -> bool:
    """max(other)/min(other): a tensor where a dim would go."""
    return isinstance(dim, (TensorBase, np.ndarray)) or (
        isinstance(dim, torch.Tensor) and dim.dim() > 0
    )


def _one_minus(bit) -> TensorBase:
    """1 - b for a 0/1 ring-integer bit b (local)."""
    return bit._public_like(2.0 ** -bit._s().precision_bits) - bit


def _cmp_result(bit) -> TensorBase:
    """A comparison's result: the fixed-point 0/1 of a 0/1 ring-integer
    bit (times 2^f, local), which keeps the bit for :func:`where`."""
    s = bit._s()
    out = bit._wrap(s.mul_public_int(bit._t, _ibuf(np.array([1 << s.precision_bits]))))
    out._bit = (out._h, bit._t)
    return out


def kept_bit(condition) -> TensorBase | None:
    """The 0/1 ring-integer bit a comparison's result keeps, with no
    messages, for the result itself while it holds its shares unchanged and
    for a view of it (``c.unsqueeze(1)``, ``c[0]``, ``c.expand(...)``: the
    same view of its bit); None for any other tensor."""
    kept = getattr(condition, "_bit", None)
    if kept is not None and kept[0] is condition._t:
        return condition._wrap(kept[1])
    v = condition._view
    if v is not None:
        _ = condition._t  # the view brought up to date with its base
        base, v = v[0], condition._view
        kept = getattr(base, "_bit", None)
        if kept is not None and kept[0] is base._t and v[1] == base._version:
            with ag.no_grad():
                return v[2](base._wrap(kept[1]))
    return None


def bit_product(a, b) -> TensorBase | None:
    """a * b exactly when one factor is a comparison's result that keeps
    its bit (:func:`kept_bit`) and records no gradient: the other factor
    selected by the bit as ring integers (1 round, no truncation, exact
    for any words), as :func:`where` does; None otherwise."""
    for c, d in ((a, b), (b, a)):
        if ag.needs_grad(c):
            continue
        bit = kept_bit(c)
        if bit is not None:
            return _select(bit, d)
    return None


def _ring_bit(condition) -> TensorBase:
    """A shared 0/1 condition as a 0/1 ring integer: its :func:`kept_bit`
    (no messages), else the fixed-point value divided by 2^f by the exact
    protocol (2 rounds; exact for values that are exactly 0 or 1, as a
    product or a difference of comparisons and a shared 0/1 tensor are)."""
    bit = kept_bit(condition)
    if bit is not None:
        return bit
    s = condition._s()
    return condition._wrap(s.div_public_int_exact(condition._t, 1 << s.precision_bits, False))


def _select(bit, d) -> TensorBase:
    """bit * d for a 0/1 ring-integer bit, both broadcast to their common
    shape (ShapeError where they do not broadcast, as a product's): one
    product of ring integers (1 round, no truncation), exact for any words
    of d. Recorded for autograd: d's gradient is bit times the result's,
    selected alike (summed over d's broadcast dims)."""
    shape = bit._bcast_shape(d.shape)
    if tuple(bit.shape) != tuple(shape):
        bit = bit.expand(shape)
    if tuple(d.shape) != tuple(shape):
        d = d.expand(shape)
    out = d._wrap(d._s(bit).mul_int(bit._t, d._t))
    if ag.needs_grad(d):
        ag.record(out, (d,), lambda g: (g._wrap(g._s(bit).mul_int(bit._t, g._t)),))
    return out


def where(condition, x, y) -> TensorBase:
    """``torch.where(condition, x, y)``. ``condition`` may be a plaintext bool
    tensor (free) or a SharedTensor of 0/1 values. A shared condition
    selects exactly, as relu and maximum do (no truncation; exact while
    |x - y| < 2^(63-f)): ``x - y`` times the condition's 0/1 bit as ring
    integers, one round. A comparison's result (``a > b``, ``a <= b``,
    ``a == b``, ...) keeps its bit, also in its views (``c.unsqueeze(1)``,
    ``c[0]``, ``c.expand(...)``), so ``where(a > b, a, b)`` costs the
    comparison and 1 round (11, relu's 10 + 1); any other shared condition
    (``1 - c``, ``c1 * c2``, a comparison changed in place,
    a shared 0/1 tensor of the user's) is first divided by 2^f by the exact
    protocol (2 rounds more, 3 in all): exact for values that are exactly
    0 or 1 (a value in between is rounded at random, where the product
    form interpolated). A shared condition that requires grad keeps the
    product form ``condition * (x - y) + y`` (one truncated product; the
    condition gets the gradient (x - y) g, which torch cannot give a bool
    condition). Gradients of x and y: g selected by the same bit, exact.
    A Python bool condition is torch's TypeError."""
    if isinstance(condition, (bool, np.bool_)):  # torch's TypeError
        raise TypeError(
            "where() received an invalid combination of arguments - got (bool, ...): the "
            "condition must be a tensor (a bool tensor, or a shared 0/1 one)"
        )
    x, y = _bool_as_number(x), _bool_as_number(y)
    if isinstance(condition, TensorBase):
        if ag.needs_grad(condition):
            if isinstance(x, TensorBase):
                return condition * (x - y) + y
            if isinstance(y, TensorBase):
                return y - condition * (y - x)
            xp, yp = _plain_array(x, "where x"), _plain_array(y, "where y")
            return condition * (xp - yp) + yp
        bit = _ring_bit(condition)
        if isinstance(x, TensorBase):
            d, base, sign = x - y, y, 1
        elif isinstance(y, TensorBase):
            d, base, sign = y - x, y, -1
        else:
            xp, yp = _plain_array(x, "where x"), _plain_array(y, "where y")
            d, base, sign = condition._public(np.asarray(xp - yp)), yp, 1
        sel = _select(bit, d)
        return sel + base if sign > 0 else base - sel
    mask = _plain_array(condition, "where condition")
    if not isinstance(x, TensorBase) and not isinstance(y, TensorBase):
        raise TypeError("where: x or y must be a SharedTensor")
    m = mask.astype(bool).astype(np.int64)
    if isinstance(x, TensorBase):
        return (x - y) * m + y
    return (y - x) * (1 - m) + x


def _empty_needs_dim(x, dim, label: str) -> None:
    """torch's error for a reduction of no element over all dims, naming
    the operation asked for (IndexError for argmax, as torch's)."""
    if dim is None and x.numel() == 0:
        msg = f"{label}(): the input is empty; specify a dim (torch needs one too)"
        raise IndexError(msg) if label == "argmax" else InvalidArgumentError(msg)
