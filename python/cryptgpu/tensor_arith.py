"""Arithmetic of SharedTensor: + - * / and matrix products, with shared or
plaintext operands on either side and broadcasting. Additions are local;
products cost one multiplication and one truncation in the engine.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import autograd as ag
from . import functions as fx
from . import gradients as gr
from . import rounding
from ._native import EncodingError, ShapeError
from ._plain import (
    DivisionByZeroError,
    _buf,
    _float64,
    _ibuf,
    _is_integer_plain,
    _plain_array,
    check_encodable,
)
from .public_factors import in_products_only, reciprocal, whole_reciprocal
from .tensor_base import TensorBase
from .tensor_compare import bit_product
from .tensor_overlap import refuse_internal_overlap, refuse_partial_overlap, same_data


class ArithmeticOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: arithmetic and matrix products."""

    __slots__ = ()

    # ------------------------------------------------------------ arithmetic
    def add(self, other, *, alpha=1) -> TensorBase:
        """x + alpha * other for a SharedTensor or plaintext other (broadcasting)."""
        ys, yp = self._other(_times(other, alpha), "add")
        if ys is not None:
            x, ye = self._aligned(ys)
            out = self._wrap(self._s().add(x._t, ye._t))
            if ag.needs_grad(self, ys):
                gr.record_add(out, self, ys)
            return out
        if yp.ndim == 0:  # a scalar: the engine broadcasts it, nothing to expand
            x, vals = self, yp.reshape(1)
        else:
            shape, x = self._bcast(yp.shape)
            vals = _values(yp, shape)
        out = self._wrap(self._s().add_public(x._t, _buf(vals)))
        if ag.needs_grad(self):
            gr.record_unbroadcast(out, self, self.shape)
        return out

    def sub(self, other, *, alpha=1) -> TensorBase:
        """x - alpha * other for a SharedTensor or plaintext other (broadcasting)."""
        _refuse_bool_sub(other)
        ys, yp = self._other(_times(other, alpha), "sub")
        if ys is not None:
            x, ye = self._aligned(ys)
            out = self._wrap(self._s().sub(x._t, ye._t))
            if ag.needs_grad(self, ys):
                gr.record_sub(out, self, ys)
            return out
        check_encodable(yp, self._s().precision_bits)  # named as given, not as -yp
        return self.add(-yp)

    def neg(self) -> TensorBase:
        """-x (local)."""
        out = self._wrap(self._s().neg(self._t))
        if ag.needs_grad(self):
            gr.record_neg(out, self)
        return out

    def mul(self, other) -> TensorBase:
        """Elementwise x * other. Integer plaintext factors cost nothing;
        fixed-point factors (shared or plain) need one truncation (2 rounds):
        a plaintext 1/k for a whole k (0.001, 0.5) is the division by k, and
        a plaintext tensor whose entries need different scales (1e-5 next to
        1.0) two (4 rounds), so that each entry keeps its significant bits.
        A comparison's result times a shared tensor (``(x > y) * x``)
        selects by its kept bit: exact, 1 round (as :func:`where`)."""
        ys, yp = self._other(other, "mul")
        if ys is not None:
            sel = bit_product(self, ys)  # (x > y) * x: exact, 1 round
            if sel is not None:
                return sel
            x, ye = self._aligned(ys)
            # _s last: it sets the truncation protocol for this product.
            out = self._wrap(self._s(ys).mul(x._t, ye._t))
            if ag.needs_grad(self, ys):
                gr.record_mul(out, self, ys)
            return out
        k = whole_reciprocal(yp)
        if k is not None and not in_products_only():
            # 1/k (x * 0.001, x * 0.5): x / k, below 1/4 exact as its product was
            return self._divided(k, yp.shape, exact=abs(k) >= 4)
        return self._mul_plain(other, yp)

    def _mul_plain(self, other, yp: np.ndarray) -> TensorBase:
        """x * a plaintext y (``yp`` its array), as a product."""
        if yp.ndim == 0:
            x, shape = self, self.shape
        else:
            shape, x = self._bcast(yp.shape)
        full = np.broadcast_to(yp, shape)
        s = self._s()
        if _is_integer_plain(other) or _integer_valued(yp, s.precision_bits):
            # k x must stay inside the ring's range +-2^(63-f): with |k| below
            # 2^(63-2f) (the encoding limit) that holds for every |x| < 2^f;
            # a larger k would wrap for x = 1 already, silently.
            f = s.precision_bits
            lim = 2.0 ** (63 - 2 * f)
            ks = np.asarray(yp).reshape(1) if yp.size == 1 else full  # sent once
            if ks.size and full.size and np.max(np.abs(ks.astype(np.float64))) >= lim:
                raise ValueError(
                    f"integer factor {int(np.max(np.abs(ks)))} is too large: |k| must be "
                    f"below 2^{63 - 2 * f} (= {int(lim)}) at {f} fractional bits, "
                    "or the product wraps"
                )
            out = self._wrap(s.mul_public_int(x._t, _ibuf(ks.astype(np.int64).ravel())))
            factor = full.astype(np.int64) if ag.needs_grad(self) else None
        else:
            one = yp.size > 1 and bool(np.all(yp == yp.flat[0]))  # sent once
            vals = yp.reshape(-1)[:1] if yp.ndim == 0 or one else _values(yp, shape)
            out = self._wrap(s.mul_public(x._t, _buf(vals)))
            factor = full
        if ag.needs_grad(self):
            gr.record_mul_public(out, self, factor)
        return out

    def square(self) -> TensorBase:
        """x * x (one multiplication)."""
        return self.mul(self)

    def pow(self, exponent) -> TensorBase:
        """x ** p for a public integer ``exponent`` p >= 0 (square and multiply:
        about 2 log2(p) multiplications), as CrypTen's ``pow``; ``p = 0.5``
        is :meth:`sqrt`, a negative integer the :meth:`reciprocal` of x ** -p,
        any other exponent :meth:`pos_pow` (x > 0; torch gives nan for x < 0
        there, ours is meaningless) (their approximations and input ranges
        apply)."""
        if isinstance(exponent, TensorBase):
            # a private exponent (a learnable one: x ** self.p): 2^(p log2 x), x > 0
            return self.pos_pow(exponent)
        if np.ndim(exponent) != 0:
            return self._pow_tensor(exponent)
        if torch.is_tensor(exponent) and exponent.requires_grad and exponent.numel() == 1:
            # a torch exponent whose gradient is asked for: noted, so the
            # products below carry the news of its lost gradient (or a
            # fractional one goes to pos_pow's recorded product)
            v = float(exponent.detach())
            if math.isfinite(v) and not v.is_integer():
                return self.pos_pow(exponent)
            self._plain(exponent, "pow exponent")
        e = float(_plain_array(exponent, "pow exponent")) if np.ndim(exponent) == 0 else None
        if e is None:
            raise NotImplementedError("pow: the exponent must be one public number")
        if not math.isfinite(e):
            raise EncodingError(f"pow exponent {e}: a finite exponent is needed")
        if e == 0.5:
            return self.sqrt()
        if not e.is_integer():
            # x ** 0.75, x.pow(-1.5): defined for x > 0 (torch's nan below)
            return self.pos_pow(e)
        k = int(e)
        if k < 0:
            # (1/x)^k, not 1/(x^k): x^k of a small x has lost its relative
            # precision before the division (0.1 ** -4 came out 9362)
            return self.reciprocal().pow(-k)
        if k == 0:
            return self - self + 1.0
        out, base = None, self
        while True:
            if k & 1:
                out = base if out is None else out.mul(base)
            k >>= 1
            if not k:
                return out
            base = base.mul(base)

    __pow__ = pow

    def _pow_tensor(self, p) -> TensorBase:
        """x ** p for a public tensor of exponents (until 2026-12-05
        refused), element-wise with torch's broadcasting: each distinct
        whole exponent by the rule for a number (products, so a negative x
        keeps torch's sign), its elements picked by a public 0/1 mask (an
        exact integer factor, local); the fractional ones at once as
        2^(p log2 x) (x > 0; torch's nan below), recorded for a torch
        exponent that requires grad (whose whole entries are noted as
        losing theirs). More than 16 distinct whole exponents raise
        (each costs its own powers): ``x.pos_pow(p)`` takes any, for x > 0."""
        arr = _plain_array(p, "pow exponent")
        if not np.isfinite(arr).all():
            raise EncodingError("pow: every exponent must be finite")
        try:
            shape = np.broadcast_shapes(tuple(self.shape), arr.shape)
        except ValueError:
            raise ShapeError(
                f"pow: shapes {tuple(self.shape)} and {arr.shape} do not broadcast"
            ) from None
        whole = arr == np.round(arr)
        ints = np.unique(arr[whole])
        if ints.size > 16:
            raise NotImplementedError(
                f"pow with {ints.size} distinct whole exponents (16 at most, each costs its "
                "own products); x.pos_pow(p) takes any exponent for x > 0"
            )
        grad = torch.is_tensor(p) and p.requires_grad
        if grad and whole.any():
            self._plain(p, "pow exponent")  # noted: the whole ones' gradient is lost
        out = (self - self) + np.zeros(shape)  # the broadcast shape, for empty exponents
        for e in ints:
            piece = self.pow(float(e))
            out = out + (piece if arr.size and (arr == e).all() else piece * (arr == e))
        if not whole.all():
            frac = torch.as_tensor(~whole)
            q = torch.where(frac, p, 1.0) if torch.is_tensor(p) else np.where(whole, 1.0, arr)
            out = out + self.pos_pow(q) * frac.numpy().astype(np.float64)
        return out

    def __rpow__(self, base) -> TensorBase:
        """``b ** x`` for a public number or tensor b > 0 (broadcasting):
        2^(x log2 b), range-reduced (:func:`cryptgpu.functions.exp2`; a few
        units plus 2^-15 relative, for results up to 2^30 at f = 16; larger
        ones are clamped there)."""
        if isinstance(base, TensorBase):
            return NotImplemented
        if np.ndim(base) != 0:
            b = self._plain(base, "power base")
            if not (b > 0).all():
                raise NotImplementedError(
                    "tensor ** SharedTensor: only positive bases are supported (2^(x log2 b))"
                )
            return fx.exp2(self * np.log2(b))
        b = float(self._plain(base, "power base"))  # (a base that requires grad: noted)
        if b <= 0:
            raise NotImplementedError(
                f"{base} ** SharedTensor: only a positive base is supported (exp(x ln b))"
            )
        if b == 1:
            return self - self + 1.0
        return fx.exp2(self * math.log2(b))

    # In-place forms (CrypTen's add_, sub_, mul_, div_, neg_): the tensor
    # takes the result's shares. On a leaf that requires grad they are
    # refused, as torch refuses them; on a recorded result, see _in_place.
    @staticmethod
    def _refuse_in_place(what: str, view: bool = False, read: bool = False) -> None:
        if read:
            raise RuntimeError(
                f"{what}: this tensor requires grad and a recorded operation has already "
                "read it; changed in place, that operation's gradient would go through the "
                "change (torch allows it where that gradient does not need the old value, "
                f"and raises at backward where it does; ours refuses both); write "
                f"x = x.{what.rstrip('_')}(...) instead"
            )
        if view:
            hint = (
                "on a view autograd records, the change would have to reach its base; build "
                "the base's new value out of place instead (torch.where with a mask, or "
                "cryptgpu.cat of the pieces)"
            )
        elif what == "__setitem__":
            hint = (
                "build the result out of place instead (torch.where with a mask, "
                "x.masked_fill, or cryptgpu.cat of the pieces)"
            )
        elif hasattr(TensorBase, what.rstrip("_")):
            hint = f"write x = x.{what.rstrip('_')}(...) instead"
        else:  # zero_, fill_, copy_: no out-of-place method of that name
            hint = "build the new value out of place instead"
        raise RuntimeError(
            f"{what}: in-place operations on tensors that require grad (or are "
            f"computed from one, or with a value that requires grad) are not supported; {hint}"
        )

    def _in_place(self, what: str, compute, reshape: bool = False) -> TensorBase:
        """``compute(self)`` taken in place (``add_``, ``relu_``, ...). On a
        recorded result (torch's ``h = fc(x); h.relu_()``), recorded from a
        snapshot of it (its gradient rule reads the old value), which takes
        its place in the graph, then moved in; while no recorded operation
        has read it yet (theirs would route their gradients through the new
        node; torch tracks versions), and not on a view: else refused, as
        everywhere until 2026-12-06. ``reshape``: the result may have another
        shape (squeeze_, unsqueeze_ on a recorded result)."""
        if not (ag.needs_grad(self) and self._back is not None):
            return self._assign(compute(self), what)
        if self._view is not None or getattr(self, "_uses", 0):
            self._refuse_in_place(what, view=self._view is not None, read=self._view is None)
        old = self._wrap(self._t)
        old._st, old._rg, old._frozen, old._back = self._st, self._rg, self._frozen, self._back
        old._kind, old._lost = self._kind, self._lost
        # hooks registered before see the old value's gradient, as torch's
        old._hooks, self._hooks = getattr(self, "_hooks", None), None
        out = compute(old)
        if tuple(out.shape) != tuple(self.shape) and not reshape:
            _grown(self.shape, out.shape)
        return self._take_recorded(out)

    def _take_recorded(self, out) -> TensorBase:
        """This tensor takes the recorded result ``out``: its shares and its
        place in the autograd graph (the in-place forms that record)."""
        self._t, self._session, self._st = out._t, out._session, out._st
        self._rg, self._frozen, self._back = out._rg, out._frozen, out._back
        # (an unrecorded out, a comparison's 0/1 of gt_: no _kind)
        self._kind, self._lost, self._gfn = getattr(out, "_kind", None), out._lost, None
        return self

    def _own_result(self) -> TensorBase:
        """This tensor, a view of a temporary only the op that made it
        holds (``linear``'s rows reshaped back), as a tensor of its own:
        nothing else sees that temporary, so an in-place change needs no
        write-back, and is taken as on any result (torch's result is no
        view: ``F.linear(x3d, W).relu_()`` was refused as one)."""
        self._view = None
        return self

    def _assign(self, out, what: str) -> TensorBase:
        refuse_internal_overlap(self, what)  # an expand: torch refuses
        if ag.needs_grad(self) or getattr(out, "requires_grad", False):
            self._refuse_in_place(what)
        if tuple(out.shape) != tuple(self.shape):
            _grown(self.shape, out.shape)
        self._t, self._session = out._t, out._session
        self._write_back()  # a view: the same change in its base
        return self

    def _fits_in_place(self, y) -> None:
        """torch's RuntimeError, before any work, where an in-place
        ``x op= y`` would broadcast x to a larger shape (until 2026-12-05
        ``x += y`` rebound x to the larger result and left its base as it
        was). Shapes that do not broadcast at all are left to the op. Also
        torch's refusal of a y that is a view of x, or x of y, partly
        overlapping it (``x.add_(x.t())``: tensor_overlap.refuse_partial_overlap)."""
        try:
            yshape = tuple(y.shape) if isinstance(y, TensorBase) else np.shape(y)
            full = torch.broadcast_shapes(tuple(self.shape), yshape)
        except (RuntimeError, ValueError, TypeError):
            return
        if tuple(full) != tuple(self.shape):
            _grown(self.shape, full)
        refuse_partial_overlap(self, y)

    def add_(self, other, *, alpha=1) -> TensorBase:
        """x += alpha * other in place."""
        self._fits_in_place(other)
        return self._in_place("add_", lambda x: x.add(other, alpha=alpha))

    def sub_(self, other, *, alpha=1) -> TensorBase:
        """x -= alpha * other in place."""
        self._fits_in_place(other)
        return self._in_place("sub_", lambda x: x.sub(other, alpha=alpha))

    def copy_(self, src=None, non_blocking: bool = False, *, other=None) -> TensorBase:
        """x takes src's value in place (a SharedTensor, or a public tensor
        shared as known to all; broadcast to x's shape, as torch's). A
        tensor of another session is refused before anything changes, as
        ``add_`` refuses it (x took its shares and every later use failed).
        ``src`` may be given by either of torch's keyword names (``src``,
        documented, or ``other``, torch 2.15's); ``non_blocking`` changes
        nothing (the copy is one local step)."""
        if (src is None) == (other is None):
            raise TypeError(
                'copy_() missing 1 required positional arguments: "src"'
                if src is None
                else "copy_() got multiple values for argument 'src'"
            )
        src = other if src is None else src
        self._s()
        # torch's early exit: the same elements alike (after its leaf check:
        # leaf.copy_(leaf) raises for a leaf that requires grad, a review)
        if same_data(self, src) and not (ag.needs_grad(self) and self._back is None):
            return self
        plain = None  # a torch tensor that requires grad: its gradient is private
        if isinstance(src, TensorBase):
            src._s()
            refuse_partial_overlap(self, src)
        else:
            if isinstance(src, torch.Tensor) and src.requires_grad:
                plain, src = src, src.detach()
            src = self._public(_float64(src, "copy_").numpy())
        out = src.expand(*self.shape) if src.shape != self.shape else src

        def take(t):
            if plain is not None:  # noted as _plain notes it: a backward raises
                t._plain(plain, "copy_")
            return t * 0 + out  # no gradient to t

        if ag.needs_grad(self) and self._back is not None:  # a recorded result:
            return self._in_place("copy_", take)
        return self._assign(take(self) if plain is not None else out.clone(), "copy_")

    def mul_(self, other) -> TensorBase:
        """x *= other in place."""
        self._fits_in_place(other)
        return self._in_place("mul_", lambda x: x.mul(other))

    def div_(self, other, *, rounding_mode=None) -> TensorBase:
        """x /= other in place."""
        self._fits_in_place(other)
        return self._in_place("div_", lambda x: x.div(other, rounding_mode=rounding_mode))

    def neg_(self) -> TensorBase:
        """x = -x in place."""
        return self._in_place("neg_", lambda x: x.neg())

    def div(self, other, *, rounding_mode=None) -> TensorBase:
        """x / other. A plaintext whole-number divisor (``3``, ``1e6``, a
        one-element tensor holding one) uses the division protocol by that
        integer, as CrypTen does; other plaintext divisors multiply by the
        reciprocal, encoded with as many significant bits as the precision
        has; one holding a 0 raises :class:`cryptgpu.DivisionByZeroError`
        (a ValueError and a ZeroDivisionError: fixed point has no inf). A
        SharedTensor divisor divides privately, range-reduced in the
        divisor y (:func:`cryptgpu.functions.divide`: a few units of 2^-16 of
        the quotient), for |y| in 2^-16 .. 2^30 (not checked: y is secret;
        y = 0 gives a large finite value, not an error). ``rounding_mode``
        "floor" / "trunc" with a public divisor on the fixed-point grid:
        exact (:mod:`cryptgpu.rounding`)."""
        if rounding_mode is not None:
            return rounding.by_mode(self, other, rounding_mode)
        if isinstance(other, TensorBase):
            self._bcast_shape(other.shape)  # the ShapeError of *, before any work
            return fx.divide(self, other)
        _, yp = self._other(other, "div")
        if np.any(yp == 0):
            raise DivisionByZeroError("division of a SharedTensor by zero")
        if yp.size and np.all(yp == yp.flat[0]):  # one value (a tensor of equal ones too)
            d = float(yp.flat[0])
            if d.is_integer() and abs(d) < 2.0**62:
                if abs(d) == 1:
                    return self.mul(yp)  # exact and free (an integer product)
                return self._divided(int(d), yp.shape)
        return self.mul(reciprocal(yp, self._s().precision_bits))

    def _divided(self, k: int, yshape, exact: bool = False) -> TensorBase:
        """x / k for a whole k (2 <= |k| < 2^62) given as a plaintext of
        shape ``yshape`` (broadcast as torch does): the exact division by
        |k| (2 rounds), which holds for x anywhere in the sum range, where a
        product by 1/k needs |x| < 2^31. Broadcast elements round each on
        their own (``div_public_int_fresh``, the same cost); ``exact``: by
        the exact protocol in every mode."""
        shape = self._bcast_shape(yshape)
        s = self._s()
        x, fresh = self, tuple(shape) != tuple(self.shape)
        if fresh:
            x = self._bcast(yshape)[1]
        t = x._t if k > 0 else s.neg(x._t)
        if exact:
            out = self._wrap(s.div_public_int_exact(t, abs(k), fresh))
        else:
            div = s.div_public_int_fresh if fresh else s.div_public_int
            out = self._wrap(div(t, abs(k)))
        if ag.needs_grad(self):
            gr.record_div_int(out, self, k)
        return out

    def matmul(self, other) -> TensorBase:
        """Matrix product with torch.matmul semantics (1-D, 2-D, batched with
        broadcast batch dims); other may be shared or plaintext."""
        _not_a_number(other)
        ys, yp = self._other(other, "matmul")
        yshape = ys.shape if ys is not None else torch.Size(yp.shape)
        return _matmul(self, ys, yp, yshape, public_left=False)

    def _matmul_t(self, y: TensorBase) -> TensorBase:
        """self @ y^T over the last two dims, both shared with equal batch
        dims: one engine call that reads y in place (no transpose written
        out), as Linear's x W^T and attention's Q K^T need."""
        out = self._wrap(self._s(y).matmul_t(self._t, y._t))
        if ag.needs_grad(self, y):
            gr.record_matmul_t(out, self, y)
        return out

    def dot(self, tensor, weights=None) -> TensorBase:
        """Inner product of two 1-D tensors, as ``torch.dot`` (and CrypTen's
        ``dot``, with its ``weights``: the sum of x y w for y = ``tensor``): one truncation,
        whatever the length (one more for the weights)."""
        _not_a_number(tensor, "dot")
        if weights is not None:
            if tuple(np.shape(weights)) != tuple(self.shape):
                raise ShapeError(
                    f"dot: weights of shape {tuple(np.shape(weights))}, not {tuple(self.shape)}"
                )
            return (self * weights).dot(tensor)
        ys, yp = self._other(tensor, "dot")
        yshape = tuple(ys.shape if ys is not None else yp.shape)
        if self.dim() != 1 or len(yshape) != 1:
            raise ShapeError(f"dot needs two 1-D tensors, got {self.dim()}-D and {len(yshape)}-D")
        if yshape[0] != self.shape[0]:
            raise ShapeError(f"dot: lengths differ ({self.shape[0]} and {yshape[0]})")
        return _matmul(self, ys, yp, torch.Size(yshape), public_left=False)

    def rmatmul(self, p) -> TensorBase:
        """other @ self, for a plaintext or shared ``other``."""
        _not_a_number(p)
        _, yp = self._other(p, "matmul")
        return _matmul(self, None, yp, torch.Size(yp.shape), public_left=True)

    __add__ = add
    __radd__ = add
    __sub__ = sub
    __mul__ = mul
    __rmul__ = mul
    __matmul__ = matmul
    __rmatmul__ = rmatmul
    __neg__ = neg
    __truediv__ = div

    def __rsub__(self, y):
        _refuse_bool_sub(y)
        return self.neg().add(y)

    # x += y, x -= y, x *= y, x /= y, x **= y: in place, as torch's. Where
    # autograd records, torch's rules: a leaf that requires grad is refused
    # (``p -= lr * p.grad`` outside no_grad rebound p and trained nothing),
    # and so is a view (the change would have to reach its base through the
    # graph; it rebound the view's name and left the base as it was). A
    # tensor that does not require grad takes the recorded result in place
    # (``acc += x * 2``: other references see it, as torch's). A result that
    # requires grad itself (``y = x * 2; y += 1``) changes in place as
    # ``add_`` does (:meth:`_in_place`) while no recorded operation has read
    # it; else it is rebound to the new tensor, with the same value: torch
    # changes it in place too, but recorded operations that already read y
    # would then route their gradients through the new node. A y that would broadcast x to a
    # larger shape is torch's RuntimeError either way, before any work.
    def _augmented(self, y, op: str):
        self._fits_in_place(y)
        mine = ag.needs_grad(self)
        if mine and self._back is None:
            raise RuntimeError(_LEAF_IN_PLACE)
        theirs = isinstance(y, TensorBase) and ag.needs_grad(y)
        if (mine or theirs) and self._view is not None:
            self._refuse_in_place(_SYMBOLS[op], view=True)
        if mine and not getattr(self, "_uses", 0):  # in place, as add_ (_in_place)
            return self._in_place(op + "_", lambda t: getattr(t, op)(y))
        if mine:  # read by recorded operations: rebound (see above), and
            # views taken before raise at their next use rather than miss
            # the change (until 2026-12-06 they kept the old value, silently)
            self._version += 1
            self._rec_at = self._version
            return getattr(self, op)(y)
        if not theirs:
            return self._assign(getattr(self, op)(y), op + "_")
        # recorded from a snapshot of this tensor (its gradient rule reads
        # the old value), then moved in
        old = self._wrap(self._t)
        old._st = self._st
        out = getattr(old, op)(y)
        if not getattr(out, "requires_grad", False):
            return self._assign(out, op + "_")
        self._take_recorded(out)
        self._rec_at = self._version  # views taken before cannot follow (tensor_base)
        return self

    def __iadd__(self, y):
        return self._augmented(y, "add")

    def __isub__(self, y):
        return self._augmented(y, "sub")

    def __imul__(self, y):
        return self._augmented(y, "mul")

    def __itruediv__(self, y):
        return self._augmented(y, "div")

    def __ipow__(self, y):  # without it, x **= y rebound a view's name
        return self._augmented(y, "pow")

    def __rtruediv__(self, y):
        """y / x for a plaintext y: divided privately, range-reduced in x
        (:func:`cryptgpu.functions.divide`; y times 1 / x lost the quotient
        where 1 / x is small: 7e5 / x at x = 1e6 gave 0)."""
        self._bcast_shape(np.shape(y))
        return fx.divide(y, self)


_SYMBOLS = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "pow": "**="}

_LEAF_IN_PLACE = (
    "a leaf Variable that requires grad is being used in an in-place operation. (x -= ..., "
    "x += ..., x *= ... on a tensor that requires grad, such as a parameter updated by "
    "hand: wrap the update in `with torch.no_grad():` or `with cryptgpu.no_grad():`)"
)


def _not_a_number(y, what: str = "matmul") -> None:
    """torch's TypeError for ``x @ 2.0``, ``x.mm(2.0)`` (a number is no
    matrix; it was a ShapeError)."""
    if isinstance(y, (int, float, complex, np.number, np.bool_)):
        raise TypeError(f"{what}(): argument must be Tensor, not {type(y).__name__}")


def _grown(shape, full) -> None:
    """torch's error for an in-place result larger than its tensor."""
    raise RuntimeError(
        f"output with shape {list(shape)} doesn't match the broadcast shape {list(full)}"
    )


def _integer_valued(yp: np.ndarray, f: int) -> bool:
    """A plaintext factor whose values are all integers (0.0, 2.0, a 0/1
    float mask) small enough for the exact integer product: multiplying by
    them needs no truncation, so x * 0.0 is exactly 0 and x * 2.0 exactly 2x."""
    if yp.size == 0:
        return False
    return bool(np.all(np.abs(yp) < 2.0 ** (63 - 2 * f)) and np.all(yp == np.round(yp)))


def _values(yp, shape):
    """A plaintext operand for the engine: one value when it is the same for
    every element (the engine broadcasts it, no full-size copy), else the
    broadcast array."""
    if np.size(yp) == 1:
        return np.asarray(yp, dtype=np.float64).reshape(1)
    return np.broadcast_to(yp, shape)


def _matmul(x: TensorBase, ys, yp, yshape, public_left: bool) -> TensorBase:
    """torch.matmul shape rules on top of the engine's equal-batch matmul."""
    xshape = x.shape
    lshape, rshape = (yshape, xshape) if public_left else (xshape, yshape)
    if len(lshape) == 0 or len(rshape) == 0:
        raise ShapeError("matmul: both operands need at least one dimension")
    lvec, rvec = len(lshape) == 1, len(rshape) == 1
    l2 = [1] + list(lshape) if lvec else list(lshape)
    r2 = list(rshape) + [1] if rvec else list(rshape)
    if l2[-1] != r2[-2]:
        raise ShapeError(f"matmul: shapes {tuple(lshape)} and {tuple(rshape)} do not align")
    try:
        batch = list(np.broadcast_shapes(tuple(l2[:-2]), tuple(r2[:-2])))
    except ValueError as e:
        raise ShapeError(f"matmul: batch dims of {tuple(lshape)} and {tuple(rshape)} differ") from e
    lf, rf = batch + l2[-2:], batch + r2[-2:]

    def as_shared(t, shp, full):
        # Operands already of the product's shape (2-D, equal batches: the
        # common case) pass as they are, with no view calls.
        if list(t._t.shape) == full:
            return t
        return t.reshape(shp).expand(full)

    def as_plain(a, shp, full):
        return np.broadcast_to(a.reshape(shp), full)

    if ys is not None:
        xl = as_shared(x, l2, lf)
        yr = as_shared(ys, r2, rf)
        out = x._wrap(x._s(ys).matmul(xl._t, yr._t))
        if ag.needs_grad(xl, yr):
            gr.record_matmul(out, xl, yr)
    elif public_left:
        pl = as_plain(yp, l2, lf)
        xr = as_shared(x, r2, rf)
        out = x._wrap(x._s().matmul_public(xr._t, _buf(pl), list(pl.shape), True))
        if ag.needs_grad(xr):
            gr.record_matmul_public_left(out, xr, pl)
    else:
        xl = as_shared(x, l2, lf)
        pr = as_plain(yp, r2, rf)
        out = x._wrap(x._s().matmul_public(xl._t, _buf(pr), list(pr.shape), False))
        if ag.needs_grad(xl):
            gr.record_matmul_public_right(out, xl, pr)
    final = list(batch)
    if not lvec:
        final.append(l2[-2])
    if not rvec:
        final.append(r2[-1])
    return out if list(out._t.shape) == final else out.reshape(final)


def _times(y, alpha):
    """alpha * y (``add``'s and ``sub``'s alpha): a plaintext y scaled in
    float64 before it is encoded."""
    if isinstance(alpha, (np.floating, np.integer)):  # np.float32(2), as torch
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if alpha == 1:
        return y
    if isinstance(y, TensorBase):
        return y * alpha
    return _float64(y, "alpha") * alpha


def _refuse_bool_sub(y) -> None:
    """torch's NotImplementedError for ``x - mask`` and ``mask - x`` (a
    bool tensor or a Python bool: torch's hint is ``~mask``; NumPy bools
    and bool arrays torch takes as numbers)."""
    if isinstance(y, bool) or (isinstance(y, torch.Tensor) and y.dtype == torch.bool):
        raise NotImplementedError(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead."
        )
