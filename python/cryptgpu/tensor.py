"""SharedTensor: a CrypTen-style handle to a tensor secret-shared among the
three parties of the current session. Arithmetic is delegated to the engine;
this module only checks arguments, broadcasts, and turns Python values into
float64 buffers.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from . import _native
from . import autograd as ag
from . import functions as fx
from ._session import current

_FLOAT_KINDS = "fiub"  # float, signed/unsigned int, bool


def _plain_array(x, what: str = "operand") -> np.ndarray:
    """A plaintext value as a float64 numpy array, or TypeError."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"complex tensors cannot be secret-shared ({what})")
        return x.detach().cpu().to(torch.float64).numpy()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"cannot secret-share a numpy array of dtype {x.dtype} ({what})")
        return x.astype(np.float64)
    if isinstance(x, bool) or isinstance(x, numbers.Real):
        return np.asarray(float(x), dtype=np.float64)
    if isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x)
        except ValueError as e:
            raise ValueError(f"ragged nested list cannot be shared ({what}): {e}") from None
        if arr.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"list of {arr.dtype} values cannot be secret-shared ({what})")
        return arr.astype(np.float64)
    raise TypeError(
        f"expected a torch tensor, numpy array, number or list ({what}), got {type(x).__name__}"
    )


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


def _norm_dim(d: int, ndim: int) -> int:
    if not isinstance(d, int):
        raise TypeError(f"dim must be an int, got {type(d).__name__}")
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"dim {d} out of range for a tensor of rank {ndim}")
    return d % max(ndim, 1)


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if any(i < 0 for i in v):
        raise ValueError(f"{name} must be non-negative, got {v!r}")
    return int(v[0]), int(v[1])


def _strides(shape: Sequence[int]) -> list[int]:
    st = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        st[i] = st[i + 1] * shape[i + 1]
    return st


class SharedTensor:
    """A tensor secret-shared among three parties (replicated shares over Z_2^64).

    Create one with :func:`cryptgpu.cryptensor`. Supports ``+ - * @ /``, unary
    ``-``, mixing with plaintext tensors, numbers and arrays on either side,
    and the shape operations a CNN needs. ``get_plain_text()`` opens it.
    """

    __slots__ = ("_t", "_session", "requires_grad", "grad", "_back")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, handle: _native.Tensor, session: _native.Session):
        self._t = handle
        self._session = session
        self.requires_grad = False
        self.grad = None
        self._back = None

    # ------------------------------------------------------------ helpers
    def _s(self) -> _native.Session:
        s = current()
        if s.id != self._session.id:
            raise RuntimeError(
                "this SharedTensor belongs to an earlier session (cryptgpu.init() was "
                "called again); re-share its value in the current session"
            )
        return s

    def _wrap(self, h: _native.Tensor) -> SharedTensor:
        return SharedTensor(h, self._session)

    @staticmethod
    def _share(arr: np.ndarray, src: int) -> SharedTensor:
        s = current()
        return SharedTensor(s.share(_buf(arr), list(arr.shape), src), s)

    def _other(self, y, what: str):
        """(SharedTensor or None, plain array or None)."""
        if isinstance(y, SharedTensor):
            y._s()
            return y, None
        return None, _plain_array(y, what)

    def _public_like(self, value, shape=None) -> SharedTensor:
        """A sharing of a public constant (no messages)."""
        shp = list(self._t.shape if shape is None else shape)
        arr = np.full(shp, float(value))
        return self._wrap(self._s().public_tensor(_buf(arr), shp))

    # ------------------------------------------------------------ autograd
    def requires_grad_(self, flag: bool = True) -> SharedTensor:
        """Mark this tensor as a leaf whose gradient ``backward`` accumulates."""
        self.requires_grad = bool(flag)
        return self

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf with
        ``requires_grad`` that this tensor was computed from."""
        ag.backward(self, grad)

    def detach(self) -> SharedTensor:
        """The same shares, cut from the autograd graph."""
        return self._wrap(self._t)

    # ------------------------------------------------------------ shape info
    @property
    def shape(self) -> torch.Size:
        """The shape, as a torch.Size (shapes are public)."""
        return torch.Size(self._t.shape)

    def size(self, dim: int | None = None):
        """The shape, or the size of one dimension (like ``torch.Tensor.size``)."""
        if dim is None:
            return self.shape
        return self.shape[_norm_dim(dim, self.dim())]

    def dim(self) -> int:
        """Number of dimensions."""
        return len(self._t.shape)

    ndim = property(dim)

    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self._t.shape:
            n *= s
        return n

    def __len__(self) -> int:
        if self.dim() == 0:
            raise TypeError("len() of a 0-d SharedTensor")
        return self._t.shape[0]

    def __repr__(self) -> str:
        return f"SharedTensor(shape={tuple(self._t.shape)}, encrypted)"

    def __bool__(self):
        raise TypeError("the truth value of a SharedTensor is secret; reveal it first")

    # ------------------------------------------------------------ opening
    def get_plain_text(self, dst: int | None = None, dtype: torch.dtype | None = None):
        """Open the tensor and return it as a torch tensor.

        Args:
            dst: reveal to this party only (0, 1 or 2) and return what it sees;
                ``None`` reveals to all three. In the SPMD runtime the other
                parties get ``None``.
            dtype: result dtype (default ``torch.get_default_dtype()``); pass
                ``torch.float64`` to keep every fixed-point bit.
        """
        s = self._s()
        if dst is None:
            raw = s.reveal(self._t)
        else:
            if not isinstance(dst, int) or isinstance(dst, bool):
                raise TypeError("dst must be a party index (int)")
            raw = s.reveal_to(self._t, dst)
            if raw is None:  # SPMD: this party is not ``dst``
                return None
        arr = np.frombuffer(raw, dtype="<f8").reshape(self._t.shape).copy()
        return torch.from_numpy(arr).to(dtype or torch.get_default_dtype())

    def party_shares(self, party: int) -> tuple[np.ndarray, np.ndarray]:
        """What ``party`` holds: its two share components as uint64 arrays."""
        a, b = self._s().party_share(self._t, party)
        shp = self._t.shape
        return (
            np.frombuffer(a, dtype="<u8").reshape(shp),
            np.frombuffer(b, dtype="<u8").reshape(shp),
        )

    # ------------------------------------------------------------ broadcasting
    def expand(self, *sizes) -> SharedTensor:
        """Broadcast to a larger shape (``-1`` keeps a dim), like ``torch.Tensor.expand``."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
            sizes = tuple(sizes[0])
        shape = list(self._t.shape)
        if len(sizes) < len(shape):
            raise ValueError(f"expand: target {sizes} has fewer dims than {tuple(shape)}")
        lead = len(sizes) - len(shape)
        st = _strides(shape)
        out, ost = [], []
        for i, want in enumerate(sizes):
            if i < lead:
                if want < 0:
                    raise ValueError("expand: -1 is not allowed for new leading dims")
                out.append(want)
                ost.append(0)
                continue
            have = shape[i - lead]
            if want == -1 or want == have:
                out.append(have)
                ost.append(st[i - lead])
            elif have == 1:
                out.append(want)
                ost.append(0)
            else:
                raise ValueError(f"expand: cannot expand dim of size {have} to {want}")
        if out == shape:
            return self
        res = self._wrap(self._s().gather(self._t, out, 0, ost))
        if ag.needs_grad(self):
            xs = tuple(shape)
            ag.record(res, (self,), lambda g: (ag.unbroadcast(g, xs),))
        return res

    def _bcast(self, other_shape) -> tuple[torch.Size, SharedTensor]:
        try:
            shape = np.broadcast_shapes(tuple(self._t.shape), tuple(other_shape))
        except ValueError as e:
            raise ValueError(
                f"shapes {tuple(self.shape)} and {tuple(other_shape)} do not broadcast"
            ) from e
        return shape, self.expand(shape)

    # ------------------------------------------------------------ arithmetic
    def add(self, y) -> SharedTensor:
        """x + y for a SharedTensor or plaintext y (broadcasting)."""
        ys, yp = self._other(y, "add")
        if ys is not None:
            shape, x = self._bcast(ys.shape)
            out = self._wrap(self._s().add(x._t, ys.expand(shape)._t))
            if ag.needs_grad(self, ys):
                xs, yss = self.shape, ys.shape
                ag.record(
                    out, (self, ys), lambda g: (ag.unbroadcast(g, xs), ag.unbroadcast(g, yss))
                )
            return out
        shape, x = self._bcast(yp.shape)
        out = self._wrap(self._s().add_public(x._t, _buf(np.broadcast_to(yp, shape))))
        if ag.needs_grad(self):
            xs = self.shape
            ag.record(out, (self,), lambda g: (ag.unbroadcast(g, xs),))
        return out

    def sub(self, y) -> SharedTensor:
        """x - y for a SharedTensor or plaintext y (broadcasting)."""
        ys, yp = self._other(y, "sub")
        if ys is not None:
            shape, x = self._bcast(ys.shape)
            out = self._wrap(self._s().sub(x._t, ys.expand(shape)._t))
            if ag.needs_grad(self, ys):
                xs, yss = self.shape, ys.shape
                ag.record(
                    out, (self, ys), lambda g: (ag.unbroadcast(g, xs), ag.unbroadcast(-g, yss))
                )
            return out
        return self.add(-yp)

    def neg(self) -> SharedTensor:
        """-x (local)."""
        out = self._wrap(self._s().neg(self._t))
        if ag.needs_grad(self):
            ag.record(out, (self,), lambda g: (-g,))
        return out

    def mul(self, y) -> SharedTensor:
        """Elementwise x * y. Integer plaintext factors cost nothing; fixed-point
        factors (shared or plain) need one truncation (2 rounds)."""
        ys, yp = self._other(y, "mul")
        s = self._s()
        if ys is not None:
            shape, x = self._bcast(ys.shape)
            out = self._wrap(s.mul(x._t, ys.expand(shape)._t))
            if ag.needs_grad(self, ys):
                a, b = self, ys
                ag.record(
                    out,
                    (a, b),
                    lambda g: (
                        ag.unbroadcast(g * b, a.shape) if a.requires_grad else None,
                        ag.unbroadcast(g * a, b.shape) if b.requires_grad else None,
                    ),
                )
            return out
        shape, x = self._bcast(yp.shape)
        full = np.broadcast_to(yp, shape)
        if _is_integer_plain(y):
            if np.any(np.abs(full) >= 2.0**63):
                raise ValueError("integer factor does not fit in 64 bits")
            out = self._wrap(s.mul_public_int(x._t, full.astype(np.int64).ravel().tolist()))
            factor = full.astype(np.int64)
        else:
            out = self._wrap(s.mul_public(x._t, _buf(full)))
            factor = full
        if ag.needs_grad(self):
            xs = self.shape
            ag.record(out, (self,), lambda g: (ag.unbroadcast(g * factor, xs),))
        return out

    def div(self, y) -> SharedTensor:
        """x / y for a plaintext y. A positive integer divisor uses the exact
        division protocol; others multiply by the fixed-point reciprocal."""
        if isinstance(y, SharedTensor):
            raise NotImplementedError(
                "division by a SharedTensor needs a private reciprocal, which is not "
                "implemented yet"
            )
        if isinstance(y, numbers.Integral) and not isinstance(y, bool) and y > 0:
            out = self._wrap(self._s().div_public_int(self._t, int(y)))
            if ag.needs_grad(self):
                d = int(y)
                ag.record(out, (self,), lambda g: (g.div(d),))
            return out
        yp = _plain_array(y, "div")
        if np.any(yp == 0):
            raise ZeroDivisionError("division of a SharedTensor by zero")
        return self.mul(1.0 / yp)

    def matmul(self, y) -> SharedTensor:
        """Matrix product with torch.matmul semantics (1-D, 2-D, batched with
        broadcast batch dims); y may be shared or plaintext."""
        ys, yp = self._other(y, "matmul")
        yshape = ys.shape if ys is not None else torch.Size(yp.shape)
        return _matmul(self, ys, yp, yshape, public_left=False)

    def rmatmul(self, p) -> SharedTensor:
        """other @ self, for a plaintext or shared ``other``."""
        yp = _plain_array(p, "matmul")
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
        return self.neg().add(y)

    def __rtruediv__(self, y):
        raise NotImplementedError(
            "division by a SharedTensor needs a private reciprocal, which is not implemented yet"
        )

    # ------------------------------------------------------------ layers
    def conv2d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> SharedTensor:
        """2-D convolution of an NCHW (or CHW) input, like ``torch.nn.functional.conv2d``.
        ``weight`` and ``bias`` may be shared or plaintext."""
        stride, padding, dilation = (
            _pair(stride, "stride"),
            _pair(padding, "padding"),
            _pair(dilation, "dilation"),
        )
        if stride[0] == 0 or stride[1] == 0 or dilation[0] == 0 or dilation[1] == 0:
            raise ValueError("stride and dilation must be positive")
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        ws, wp = self._other(weight, "conv2d weight")
        s = self._s()
        if ws is not None:
            out = self._wrap(s.conv2d(x._t, ws._t, stride, padding, dilation, groups))
        else:
            out = self._wrap(
                s.conv2d_public(x._t, _buf(wp), list(wp.shape), stride, padding, dilation, groups)
            )
        if ag.needs_grad(x, ws):
            _record_conv(out, x, ws, wp, stride, padding, dilation, groups)
        if bias is not None:
            if isinstance(bias, SharedTensor):
                out = out + bias.reshape(1, -1, 1, 1)
            else:
                out = out + _plain_array(bias, "conv2d bias").reshape(1, -1, 1, 1)
        return out.squeeze(0) if squeeze else out

    def linear(self, weight, bias=None) -> SharedTensor:
        """x @ weight.T + bias, like ``torch.nn.functional.linear``."""
        if isinstance(weight, SharedTensor):
            out = self.matmul(weight.t())
        else:
            out = self.matmul(_plain_array(weight, "linear weight").T)
        return out if bias is None else out + bias

    def avg_pool2d(self, kernel_size, stride=None, padding=0) -> SharedTensor:
        """Average pooling (count_include_pad=True), like ``F.avg_pool2d``."""
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        if 0 in k or 0 in st:
            raise ValueError("kernel_size and stride must be positive")
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        pad = _pair(padding, "padding")
        out = self._wrap(self._s().avg_pool2d(x._t, k, st, pad))
        if ag.needs_grad(x):
            xs = list(x.shape)

            def back(g):
                n, c, oh, ow = g.shape
                kk = k[0] * k[1]
                m = g.div(kk).permute(1, 0, 2, 3).reshape(c, 1, n * oh * ow)
                m = m.expand(c, kk, n * oh * ow).reshape(c * kk, n * oh * ow)
                return (x._wrap(x._s().col2im(m._t, xs, (k, st, pad, (1, 1)))),)

            ag.record(out, (x,), back)
        return out.squeeze(0) if squeeze else out

    # ------------------------------------------------------------ comparisons
    def relu(self) -> SharedTensor:
        """max(x, 0): sign bit by A2B, then bit injection. 10 rounds for any size.
        When recording for autograd, the derivative mask 1 - msb(x) is injected
        in the same call (same rounds) and kept for backward."""
        if not ag.needs_grad(self):
            return self._wrap(self._s().relu(self._t))
        ones = self._public_like(1.0)
        m = self._msb_times(cat([self.unsqueeze(-1), ones.unsqueeze(-1)], -1), "relu")
        out = self.detach() - m[..., 0].detach()
        mask = 1 - m[..., 1].detach()
        return ag.record(out, (self,), lambda g: (g * mask,))

    def _ltz(self, label: str = "ltz") -> SharedTensor:
        """The 0/1 (fixed-point) indicator of x < 0."""
        return self._wrap(self._s().msb_inject(self._t, None, label))

    def _msb_times(self, v: SharedTensor, label: str) -> SharedTensor:
        """msb(self) * v, where v's shape starts with self's shape."""
        return self._wrap(self._s().msb_inject(self._t, v._t, label))

    def lt(self, y) -> SharedTensor:
        """1.0 where x < y else 0.0 (secret-shared). Correct while |x - y| < 2^(63-f)."""
        return self.sub(y)._ltz("lt")

    def gt(self, y) -> SharedTensor:
        """1.0 where x > y else 0.0."""
        return self.sub(y).neg()._ltz("gt")

    def le(self, y) -> SharedTensor:
        """1.0 where x <= y else 0.0."""
        return 1 - self.gt(y)

    def ge(self, y) -> SharedTensor:
        """1.0 where x >= y else 0.0."""
        return 1 - self.lt(y)

    def _both_signs(self, y, label):
        d = self.sub(y)
        both = stack([d, d.neg()])._ltz(label)
        return both[0], both[1]

    def eq(self, y) -> SharedTensor:
        """1.0 where x == y else 0.0: one batched comparison of x - y and y - x."""
        lt, gt = self._both_signs(y, "eq")
        return 1 - lt - gt

    def ne(self, y) -> SharedTensor:
        """1.0 where x != y else 0.0."""
        lt, gt = self._both_signs(y, "ne")
        return lt + gt

    __lt__ = lt
    __gt__ = gt
    __le__ = le
    __ge__ = ge
    __hash__ = object.__hash__

    def __eq__(self, y):  # noqa: D105 - torch semantics: elementwise
        return self.eq(y)

    def __ne__(self, y):
        return self.ne(y)

    def sign(self) -> SharedTensor:
        """1.0 where x >= 0, -1.0 where x < 0 (CrypTen's convention: sign(0) = 1)."""
        return 1 - 2 * self._ltz("sign")

    def abs(self) -> SharedTensor:
        """|x| = x - 2 msb(x) x: one comparison, exact."""
        return self - 2 * self._msb_times(self, "abs")

    __abs__ = abs

    def where(self, condition, y) -> SharedTensor:
        """``condition ? self : y`` like ``torch.where(condition, self, y)``."""
        return where(condition, self, y)

    def clamp(self, min=None, max=None) -> SharedTensor:  # noqa: A002 - torch's names
        """Clamp to [min, max] with public bounds; both bounds in one batched ReLU."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        if min is not None and max is not None:
            if float(min) > float(max):
                raise ValueError(f"clamp: min {min} is greater than max {max}")
            r = stack([self - min, self - max]).relu()
            return r[0] - r[1] + min
        if min is not None:
            return (self - min).relu() + min
        return max - (max - self).relu()

    def _tournament(self, want_arg: bool, label: str):
        """Max over the last dim by a tournament of pairwise comparisons
        (log2(k) levels of one batched comparison each); ties go to the first
        index, like torch. Returns (values, one-hot argmax or None)."""
        x = self
        k = x.shape[-1]
        if k == 0:
            raise ValueError("max of an empty dimension")
        if want_arg and k >= 2 and k & (k - 1) == 0:
            return x._tournament_pow2(label)
        oh = None
        if want_arg:
            eye = np.broadcast_to(np.eye(k), tuple(x.shape) + (k,))
            oh = x._wrap(x._s().public_tensor(_buf(eye), list(eye.shape)))
        while k > 1:
            h = k // 2
            a, b = x[..., 0 : 2 * h : 2], x[..., 1 : 2 * h : 2]
            d = a - b
            if want_arg:
                oa, ob = oh[..., 0 : 2 * h : 2, :], oh[..., 1 : 2 * h : 2, :]
                m = d._msb_times(cat([d.unsqueeze(-1), oa - ob], -1), label)
                win, ohw = a - m[..., 0], oa - m[..., 1:]
            else:
                win, ohw = a - d._msb_times(d, label), None
            if k % 2:
                win = cat([win, x[..., k - 1 :]], -1)
                if want_arg:
                    ohw = cat([ohw, oh[..., k - 1 :, :]], -2)
            x, oh, k = win, ohw, k - h
        return x.squeeze(-1), (oh.squeeze(-2) if want_arg else None)

    def _tournament_pow2(self, label: str):
        """Tournament with argmax for k = 2^n (max-pool windows 2x2, 4x4):
        each candidate carries a one-hot over only the slots it covers, so a
        level injects 1 + 2 * 2^L values per pair instead of 1 + k."""
        x, oh, size = self, None, 1
        while x.shape[-1] > 1:
            a, b = x[..., 0::2], x[..., 1::2]
            d = a - b
            if oh is None:
                ones = d._public_like(1.0).unsqueeze(-1)
                m = d._msb_times(cat([d.unsqueeze(-1), ones], -1), label)
                msb = m[..., 1:]
                oh = cat([1 - msb, msb], -1)
            else:
                oa, ob = oh[..., 0::2, :], oh[..., 1::2, :]
                m = d._msb_times(cat([d.unsqueeze(-1), oa, ob], -1), label)
                oh = cat([oa - m[..., 1 : 1 + size], m[..., 1 + size :]], -1)
            x = a - m[..., 0]
            size *= 2
        return x.squeeze(-1), oh.squeeze(-2)

    def _reduce_max(self, dim, keepdim, want_arg, label):
        if dim is None:
            v, a = self.flatten()._tournament(want_arg, label)
            return v, (a.reshape(self.shape) if want_arg else None)
        d = _norm_dim(dim, self.dim())
        moved = self.transpose(d, -1) if d != self.dim() - 1 else self
        v, a = moved._tournament(want_arg, label)
        if keepdim:
            v = v.unsqueeze(-1).transpose(d, -1) if d != self.dim() - 1 else v.unsqueeze(-1)
        if want_arg:
            a = a.transpose(d, -1) if d != self.dim() - 1 else a
        return v, a

    def max(self, dim=None, keepdim: bool = False, one_hot: bool = True):
        """Maximum. With ``dim=None`` returns the max of all elements; with a
        dim returns ``(values, argmax)`` where argmax is a one-hot SharedTensor
        of the input's shape (CrypTen's convention; ``one_hot=False`` is not
        supported because indices would have to be revealed)."""
        if not one_hot:
            raise NotImplementedError("max(..., one_hot=False): only one-hot argmax is supported")
        if dim is None:
            return self._reduce_max(None, False, False, "max")[0]
        return self._reduce_max(dim, keepdim, True, "max")

    def amax(self, dim=None, keepdim: bool = False) -> SharedTensor:
        """Maximum values only (no argmax), like ``torch.amax``: the tournament
        without the one-hot bookkeeping, whose size grows with k^2 per row."""
        return self._reduce_max(dim, keepdim, False, "max")[0]

    def min(self, dim=None, keepdim: bool = False, one_hot: bool = True):
        """Minimum, as :meth:`max` of ``-x``."""
        r = self.neg().max(dim, keepdim, one_hot)
        return r.neg() if dim is None else (r[0].neg(), r[1])

    def argmax(self, dim=None, keepdim: bool = False, one_hot: bool = True) -> SharedTensor:
        """One-hot (fixed-point 0/1) indicator of the first maximum, shaped like
        the input (over all elements when ``dim`` is None)."""
        if not one_hot:
            raise NotImplementedError(
                "argmax(..., one_hot=False) would reveal the indices; only one-hot argmax "
                "is supported"
            )
        return self._reduce_max(dim, keepdim, True, "argmax")[1]

    def argmin(self, dim=None, keepdim: bool = False, one_hot: bool = True) -> SharedTensor:
        """One-hot indicator of the first minimum."""
        return self.neg().argmax(dim, keepdim, one_hot)

    def max_pool2d(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False):
        """Max pooling like ``F.max_pool2d`` (padding acts as -inf). With
        ``return_indices`` also returns the one-hot argmax of every window,
        shape [N, C, OH, OW, kh*kw], as kept for the backward pass."""
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        dil = _pair(dilation, "dilation")
        if 0 in k or 0 in st or 0 in dil:
            raise ValueError("kernel_size, stride and dilation must be positive")
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        pad = _pair(padding, "padding")
        grad = ag.needs_grad(x)
        with ag.no_grad():
            win = x._wrap(x._s().pool_windows(x._t, (k, st, pad, dil)))
            v, a = win._tournament(return_indices or grad, "max_pool2d")
        if grad:
            xs, mask = list(x.shape), a

            def back(g):
                w = mask * g.unsqueeze(-1)
                return (x._wrap(x._s().pool_scatter(w._t, xs, (k, st, pad, dil))),)

            ag.record(v, (x,), back)
            a = a if return_indices else None
        if squeeze:
            v = v.squeeze(0)
            a = a.squeeze(0) if a is not None else None
        return (v, a) if return_indices else v

    # ------------------------------------------------------------ functions
    def exp(self) -> SharedTensor:
        """e^x by CrypTen's (1 + x/2^n)^(2^n) (relative error up to 12% at x = -8)."""
        return fx.exp(self)

    def reciprocal(self) -> SharedTensor:
        """1/x by Newton iterations (CrypTen's method; |x| in the tested range)."""
        return fx.reciprocal(self)

    def sqrt(self) -> SharedTensor:
        """sqrt(x) for x > 0, as x * inv_sqrt(x)."""
        return fx.sqrt(self)

    def inv_sqrt(self) -> SharedTensor:
        """1/sqrt(x) for x > 0 by Newton iterations (5 steps)."""
        return fx.inv_sqrt(self)

    def log(self) -> SharedTensor:
        """ln(x) for x > 0 by Householder iterations (CrypTen's method)."""
        return fx.log(self)

    def sigmoid(self) -> SharedTensor:
        """1 / (1 + e^-x), privately."""
        return fx.sigmoid(self)

    def tanh(self) -> SharedTensor:
        """tanh(x) = 2 sigmoid(2x) - 1, privately."""
        return fx.tanh(self)

    def softmax(self, dim: int) -> SharedTensor:
        """softmax over ``dim`` (max-shifted exp, then a private reciprocal)."""
        return fx.softmax(self, dim)

    def log_softmax(self, dim: int) -> SharedTensor:
        """log_softmax over ``dim``."""
        return fx.log_softmax(self, dim)

    # ------------------------------------------------------------ reductions
    def _dims(self, dim) -> list[int]:
        if dim is None:
            return list(range(self.dim()))
        if isinstance(dim, int):
            dim = [dim]
        dims = sorted({_norm_dim(d, self.dim()) for d in dim})
        return dims

    def sum(self, dim=None, keepdim: bool = False) -> SharedTensor:
        """Sum over ``dim`` (an int, a tuple, or all dims); no communication."""
        dims = self._dims(dim)
        out = self._wrap(self._s().sum(self._t, dims, bool(keepdim)))
        if ag.needs_grad(self):
            xs = list(self.shape)
            kept = [1 if i in dims else n for i, n in enumerate(xs)]
            ag.record(out, (self,), lambda g: (g.reshape(kept).expand(xs),))
        return out

    def mean(self, dim=None, keepdim: bool = False) -> SharedTensor:
        """Mean over ``dim``: a local sum, then one exact division (2 rounds)."""
        dims = self._dims(dim)
        n = 1
        for d in dims:
            n *= self._t.shape[d]
        if n == 0:
            raise ValueError("mean of an empty dimension")
        return self.sum(dims, keepdim).div(n)

    # ------------------------------------------------------------ shape ops
    def reshape(self, *shape) -> SharedTensor:
        """A view with another shape (-1 allowed), as torch.reshape (local)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        if not all(isinstance(d, int) for d in shape):
            raise TypeError(f"reshape: sizes must be ints, got {shape!r}")
        shape = list(shape)
        if shape.count(-1) > 1:
            raise ValueError("reshape: only one dimension can be -1")
        if -1 in shape:
            known = 1
            for d in shape:
                if d != -1:
                    known *= d
            if known == 0 or self.numel() % known:
                raise ValueError(f"cannot reshape {tuple(self.shape)} into {tuple(shape)}")
            shape[shape.index(-1)] = self.numel() // known
        if any(d < 0 for d in shape):
            raise ValueError(f"reshape: negative size in {tuple(shape)}")
        out = self._wrap(self._s().reshape(self._t, shape))
        if ag.needs_grad(self):
            xs = list(self.shape)
            ag.record(out, (self,), lambda g: (g.reshape(xs),))
        return out

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        """Flatten dims ``start_dim..end_dim`` into one (local)."""
        if self.dim() == 0:
            return self.reshape(1)
        a, b = _norm_dim(start_dim, self.dim()), _norm_dim(end_dim, self.dim())
        if a > b:
            raise ValueError("flatten: start_dim must not come after end_dim")
        shp = list(self.shape)
        mid = 1
        for d in shp[a : b + 1]:
            mid *= d
        return self.reshape(shp[:a] + [mid] + shp[b + 1 :])

    def permute(self, *dims) -> SharedTensor:
        """Reorder dims, as torch.permute (local)."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        nd = self.dim()
        dims = [_norm_dim(d, nd) for d in dims]
        if sorted(dims) != list(range(nd)):
            raise ValueError(f"permute: {dims} is not a permutation of {nd} dims")
        if dims == list(range(nd)):
            return self
        st = _strides(self._t.shape)
        shape = [self._t.shape[d] for d in dims]
        out = self._wrap(self._s().gather(self._t, shape, 0, [st[d] for d in dims]))
        if ag.needs_grad(self):
            inv = [dims.index(i) for i in range(nd)]
            ag.record(out, (self,), lambda g: (g.permute(inv),))
        return out

    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        """Swap two dims (local)."""
        nd = self.dim()
        order = list(range(nd))
        a, b = _norm_dim(dim0, nd), _norm_dim(dim1, nd)
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    def t(self) -> SharedTensor:
        """Transpose of a tensor with at most 2 dims (local)."""
        if self.dim() > 2:
            raise ValueError("t() expects a tensor with at most 2 dims")
        return self if self.dim() < 2 else self.transpose(0, 1)

    @property
    def T(self) -> SharedTensor:
        """Reverse all dims, as torch's ``.T``."""
        return self.permute(list(range(self.dim() - 1, -1, -1)))

    def unsqueeze(self, dim: int) -> SharedTensor:
        """Insert a dim of size 1 (local)."""
        nd = self.dim() + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze: dim {dim} out of range for rank {self.dim()}")
        d = dim % nd
        shp = list(self.shape)
        return self.reshape(shp[:d] + [1] + shp[d:])

    def squeeze(self, dim=None) -> SharedTensor:
        """Remove dims of size 1 (all, or ``dim``) (local)."""
        shp = list(self.shape)
        if dim is None:
            return self.reshape([s for s in shp if s != 1])
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0 or shp[d] != 1:
            return self
        return self.reshape(shp[:d] + shp[d + 1 :])

    def contiguous(self) -> SharedTensor:
        """Returns self (shares are always contiguous)."""
        return self

    def clone(self) -> SharedTensor:
        """A copy of the shares."""
        out = self._wrap(self._t)
        if ag.needs_grad(self):
            ag.record(out, (self,), lambda g: (g,))
        return out

    def __getitem__(self, idx) -> SharedTensor:
        if not isinstance(idx, tuple):
            idx = (idx,)
        if any(i is Ellipsis for i in idx):
            k = idx.index(Ellipsis)
            fill = self.dim() - (len(idx) - 1 - sum(1 for i in idx if i is None))
            idx = idx[:k] + (slice(None),) * fill + idx[k + 1 :]
        shape_in = list(self._t.shape)
        st_in = _strides(shape_in)
        offset, out_shape, out_st, d = 0, [], [], 0
        for i in idx:
            if i is None:
                out_shape.append(1)
                out_st.append(0)
                continue
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
            else:
                start, stop, step = i.indices(n)
                if step <= 0:
                    raise ValueError("slice step must be positive")
                cnt = max(0, (stop - start + step - 1) // step)
                offset += start * st_in[d] if cnt else 0
                out_shape.append(cnt)
                out_st.append(st_in[d] * step)
            d += 1
        out_shape += shape_in[d:]
        out_st += st_in[d:]
        out = self._wrap(self._s().gather(self._t, out_shape, offset, out_st))
        if ag.needs_grad(self):
            # The adjoint of the view: the gradient placed at the viewed
            # positions of a zero tensor (ints, slices of any positive step
            # and None never make a view overlap itself).
            ag.record(
                out,
                (self,),
                lambda g: (g._wrap(g._s().scatter(g._t, shape_in, offset, out_st)),),
            )
        return out

    def pad(self, pad: Sequence[int], value: float = 0.0) -> SharedTensor:
        """Constant padding with ``torch.nn.functional.pad`` semantics (pairs of
        (before, after) from the last dim backwards; negative values crop)."""
        if len(pad) % 2 or len(pad) // 2 > self.dim():
            raise ValueError(f"pad: {len(pad)} values do not fit a tensor of rank {self.dim()}")
        pairs = [(0, 0)] * self.dim()
        for j in range(len(pad) // 2):
            pairs[self.dim() - 1 - j] = (int(pad[2 * j]), int(pad[2 * j + 1]))
        crop = [slice(max(0, -a), n - max(0, -b)) for (a, b), n in zip(pairs, self.shape)]
        x = self[tuple(crop)] if any(a < 0 or b < 0 for a, b in pairs) else self
        pos = [(max(0, a), max(0, b)) for a, b in pairs]
        out = self._wrap(self._s().pad(x._t, pos))
        if ag.needs_grad(x):
            inner = tuple(slice(a, a + n) for (a, _), n in zip(pos, x.shape))
            ag.record(out, (x,), lambda g: (g[inner],))
        if value != 0:
            mask = np.full(tuple(out.shape), float(value))
            inner = tuple(slice(a, a + n) for (a, _), n in zip(pos, x.shape))
            mask[inner] = 0.0
            out = out + mask
        return out


def _matmul(x: SharedTensor, ys, yp, yshape, public_left: bool) -> SharedTensor:
    """torch.matmul shape rules on top of the engine's equal-batch matmul."""
    xshape = x.shape
    lshape, rshape = (yshape, xshape) if public_left else (xshape, yshape)
    if len(lshape) == 0 or len(rshape) == 0:
        raise ValueError("matmul: both operands need at least one dimension")
    lvec, rvec = len(lshape) == 1, len(rshape) == 1
    l2 = [1] + list(lshape) if lvec else list(lshape)
    r2 = list(rshape) + [1] if rvec else list(rshape)
    if l2[-1] != r2[-2]:
        raise ValueError(f"matmul: shapes {tuple(lshape)} and {tuple(rshape)} do not align")
    try:
        batch = list(np.broadcast_shapes(tuple(l2[:-2]), tuple(r2[:-2])))
    except ValueError as e:
        raise ValueError(f"matmul: batch dims of {tuple(lshape)} and {tuple(rshape)} differ") from e
    lf, rf = batch + l2[-2:], batch + r2[-2:]
    out_shape = batch + [l2[-2], r2[-1]]
    s = x._s()

    def as_shared(t, shp, full):
        return t.reshape(shp).expand(full)

    def as_plain(a, shp, full):
        return np.broadcast_to(a.reshape(shp), full)

    if ys is not None:
        xl = as_shared(x, l2, lf)
        yr = as_shared(ys, r2, rf)
        out = x._wrap(s.matmul(xl._t, yr._t))
        if ag.needs_grad(xl, yr):
            ag.record(
                out,
                (xl, yr),
                lambda g: (
                    g.matmul(yr.transpose(-1, -2)) if xl.requires_grad else None,
                    xl.transpose(-1, -2).matmul(g) if yr.requires_grad else None,
                ),
            )
    elif public_left:
        pl = as_plain(yp, l2, lf)
        xr = as_shared(x, r2, rf)
        out = x._wrap(s.matmul_public(xr._t, _buf(pl), list(pl.shape), True))
        if ag.needs_grad(xr):
            plt = np.ascontiguousarray(np.swapaxes(pl, -1, -2))
            ag.record(out, (xr,), lambda g: (g.rmatmul(plt),))
    else:
        xl = as_shared(x, l2, lf)
        pr = as_plain(yp, r2, rf)
        out = x._wrap(s.matmul_public(xl._t, _buf(pr), list(pr.shape), False))
        if ag.needs_grad(xl):
            prt = np.ascontiguousarray(np.swapaxes(pr, -1, -2))
            ag.record(out, (xl,), lambda g: (g.matmul(prt),))
    if not batch:
        out = out.reshape(out_shape)
    final = list(batch)
    if not lvec:
        final.append(l2[-2])
    if not rvec:
        final.append(r2[-1])
    return out.reshape(final)


def _record_conv(out, x, ws, wp, stride, padding, dilation, groups):
    """Conv backward, per group: input grad by col2im(W_g^T G_g), weight grad
    G_g cols(x_g)^T, the groups' results concatenated along channels."""
    wshape = list(ws.shape if ws is not None else wp.shape)
    kernel = (wshape[2], wshape[3])
    xs = list(x.shape)
    win = (kernel, stride, padding, dilation)

    def back(g):
        n, o, oh, ow = g.shape
        og, cg = o // groups, xs[1] // groups
        gm = g.permute(1, 0, 2, 3).reshape(o, n * oh * ow)
        gxs, gws = [], []
        for gi in range(groups):
            rows = slice(gi * og, (gi + 1) * og)
            gmi = gm if groups == 1 else gm[rows]
            if x.requires_grad:
                if ws is not None:
                    wi = ws if groups == 1 else ws[rows]
                    cols = wi.reshape(og, -1).t().matmul(gmi)
                else:
                    cols = gmi.rmatmul(np.ascontiguousarray(wp[rows].reshape(og, -1).T))
                shape = [xs[0], cg, xs[2], xs[3]]
                gxs.append(x._wrap(x._s().col2im(cols._t, shape, win)))
            if ws is not None and ws.requires_grad:
                xi = x if groups == 1 else x[:, gi * cg : (gi + 1) * cg]
                xc = x._wrap(x._s().im2col(xi._t, win))
                gws.append(gmi.matmul(xc.t()).reshape([og] + wshape[1:]))
        gx = gw = None
        if gxs:
            gx = gxs[0] if groups == 1 else cat(gxs, dim=1)
        if gws:
            gw = gws[0] if groups == 1 else cat(gws, dim=0)
        return (gx, gw) if ws is not None else (gx,)

    ag.record(out, (x, ws) if ws is not None else (x,), back)


def where(condition, x, y) -> SharedTensor:
    """``torch.where(condition, x, y)``. ``condition`` may be a plaintext bool
    tensor (free) or a SharedTensor of 0/1 values, e.g. a comparison result
    (one multiplication)."""
    if isinstance(condition, SharedTensor):
        if isinstance(x, SharedTensor):
            return condition * (x - y) + y
        if isinstance(y, SharedTensor):
            return y - condition * (y - x)
        xp, yp = _plain_array(x, "where x"), _plain_array(y, "where y")
        return condition * (xp - yp) + yp
    mask = _plain_array(condition, "where condition")
    if not isinstance(x, SharedTensor) and not isinstance(y, SharedTensor):
        raise TypeError("where: x or y must be a SharedTensor")
    m = mask.astype(bool).astype(np.int64)
    if isinstance(x, SharedTensor):
        return (x - y) * m + y
    return (y - x) * (1 - m) + x


def cryptensor(data, src: int = 0) -> SharedTensor:
    """Secret-share ``data`` from party ``src`` (0, 1 or 2).

    ``data`` may be a torch tensor, a numpy array, a Python number or a
    (nested) list. Values are encoded in fixed point with the session's
    ``precision_bits``; NaN, inf and values too large to encode raise
    :class:`cryptgpu.EncodingError` (a ValueError). Costs one round in which the
    owner sends one ring element per value to each of the two other parties.

    >>> import cryptgpu, torch
    >>> cryptgpu.init()
    >>> x = cryptgpu.cryptensor(torch.tensor([1.0, 2.0]))
    >>> (x * 3).get_plain_text()
    tensor([3., 6.])
    """
    if isinstance(data, SharedTensor):
        raise TypeError("data is already a SharedTensor")
    if isinstance(src, bool) or not isinstance(src, int):
        raise TypeError(f"src must be a party index (int), got {type(src).__name__}")
    if src not in (0, 1, 2):
        raise ValueError(f"src must be 0, 1 or 2, got {src}")
    current()
    return SharedTensor._share(_plain_array(data, "cryptensor"), src)


def cat(tensors: Sequence[SharedTensor], dim: int = 0) -> SharedTensor:
    """Concatenate SharedTensors along ``dim`` (no communication)."""
    ts = list(tensors)
    if not ts:
        raise ValueError("cat: need at least one tensor")
    if not all(isinstance(t, SharedTensor) for t in ts):
        raise TypeError("cat: every element must be a SharedTensor")
    s = ts[0]._s()
    for t in ts[1:]:
        t._s()
    d = _norm_dim(dim, ts[0].dim())
    out = ts[0]._wrap(s.cat([t._t for t in ts], d))
    if ag.needs_grad(*ts):
        sizes = [t.shape[d] for t in ts]

        def back(g):
            res, off = [], 0
            for n in sizes:
                idx = (slice(None),) * d + (slice(off, off + n),)
                res.append(g[idx])
                off += n
            return tuple(res)

        ag.record(out, ts, back)
    return out


def stack(tensors: Sequence[SharedTensor], dim: int = 0) -> SharedTensor:
    """Stack SharedTensors of equal shape along a new ``dim``."""
    ts = list(tensors)
    if not ts:
        raise ValueError("stack: need at least one tensor")
    if not all(isinstance(t, SharedTensor) for t in ts):
        raise TypeError("stack: every element must be a SharedTensor")
    nd = ts[0].dim() + 1
    if not -nd <= dim < nd:
        raise IndexError(f"stack: dim {dim} out of range")
    return cat([t.unsqueeze(dim % nd) for t in ts], dim % nd)
