"""torch's activation functions and the remaining element-wise tensor
methods users reach for (masked_fill, norm, dropout, CrypTen's polynomial
and pos_pow, the in-place ``_`` forms), composed from ReLU, clamp,
comparisons and the range-reduced approximations of :mod:`cryptgpu.functions`:
no engine calls of their own, and every gradient comes from the composed
operations.

Costs and accuracy (f = 16): leaky_relu, relu6, hardsigmoid and hardswish
are one ReLU (or one batched clamp) plus at most one product; elu, selu and
celu add ``exp_nonpos`` (3e-4 relative); silu is sigmoid times x (1e-3
absolute on sigmoid), mish x tanh(softplus(x)), each of x clamped to
[-16, 16] plus relu(x - 16) (silu within 7.5e-4 of torch's, mish 7.3e-3,
for every x: bounds from the truncations, measured 2.9e-4 and 2.4e-3);
softplus is relu(x) + log1p(e^-|x|), its log1p a
degree-8 polynomial on [0, 1] (3.4e-8 from log1p, so the fixed point
dominates: a few 1e-5).
"""

from __future__ import annotations

import contextlib
import math

import torch

from . import _session
from . import autograd as ag
from . import functions as fx
from ._native import EncodingError, InvalidArgumentError
from ._plain import _float64, plain_requires_grad, softmax_dim
from .tensor_base import TensorBase
from .tensor_compare import where
from .tensor_overlap import refuse_internal_overlap, refuse_partial_overlap

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


class ActivationOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: activations and the other
    element-wise methods of torch and CrypTen."""

    __slots__ = ()

    # ------------------------------------------------------------ activations
    def leaky_relu(self, negative_slope: float = 0.01) -> TensorBase:
        """x for x >= 0, negative_slope * x below: relu(x) + s (x - relu(x))."""
        s = number_or_shared(negative_slope, "leaky_relu(): argument 'negative_slope'")
        r = self.relu()
        return r + (self - r) * s

    def relu6(self) -> TensorBase:
        """min(max(x, 0), 6)."""
        return self.clamp(0.0, 6.0)

    def _elu_parts(self, alpha: float, inner: float = 1.0) -> TensorBase:
        """relu(x) + alpha (e^(min(x, 0) / inner) - 1): exp only of values <= 0."""
        r = self.relu()
        neg = self - r  # min(x, 0)
        e = fx.exp_nonpos(neg if inner == 1.0 else neg * (1.0 / inner))
        return r + (e - 1.0) * float(alpha) if alpha != 1.0 else r + e - 1.0

    def elu(self, alpha: float = 1.0) -> TensorBase:
        """torch's ELU: x for x > 0, alpha (e^x - 1) below."""
        return self._elu_parts(public_number(alpha, "elu(): argument 'alpha'"))

    def celu(self, alpha: float = 1.0) -> TensorBase:
        """torch's CELU: x for x > 0, alpha (e^(x / alpha) - 1) below."""
        alpha = public_number(alpha, "celu(): argument 'alpha'")
        if alpha == 0:
            raise InvalidArgumentError("ZeroDivisionError: alpha cannot be 0 for CELU")
        return self._elu_parts(alpha, alpha)

    def selu(self) -> TensorBase:
        """torch's SELU: scale * ELU(x, alpha) with its fixed constants."""
        return self._elu_parts(_SELU_ALPHA) * _SELU_SCALE

    def silu(self) -> TensorBase:
        """x sigmoid(x) (SiLU, swish), with its tails (:meth:`_relu_tails`;
        sigmoid of the clamped x without exp_nonpos's own clamp): within
        7.5e-4 of torch's for every x, a bound from the truncations (16
        times sigmoid's 3 units at |x| >= 16; tests/test_probe_jb_numerics.py
        checks each element against it), measured up to 2.9e-4 (x sigmoid(x)
        alone was off by |x| times a unit of sigmoid: -0.46 for
        silu(-30000) until 2026-12-06). 66 rounds, as before (342 bytes an
        element per party, 295 before)."""
        fx.available_up_to(self, "silu", 29)
        return self._relu_tails(lambda c: c * fx.sigmoid(c, within16=True))

    def _relu_tails(self, f) -> TensorBase:
        """f(x) for an activation f that approaches relu(x) in both tails
        (SiLU, Mish), as f(c) + relu(x - 16) with c = clamp(x, -16, 16):
        both from one batched ReLU of [x - 16, -16 - x] (10 rounds). f(x) -
        relu(x) is below 16 e^-16 = 1.8e-6 beyond +-16, so this changes f
        by less than 0.12 units of 2^-16 there, and f's product by x, whose
        other factor carries a unit or two of fixed-point error, is of a
        value of at most 16: f(x) itself multiplied that error by |x|."""
        x = self.unsqueeze(0)
        r = x._cat([x - 16.0, -16.0 - x], 0).relu()
        return f(self - r[0] + r[1]) + r[0]

    def hardsigmoid(self) -> TensorBase:
        """min(max(x / 6 + 1/2, 0), 1)."""
        return (self.div(6) + 0.5).clamp(0.0, 1.0)

    def hardswish(self) -> TensorBase:
        """x hardsigmoid(x), as (x (clamp(x, -3, 3) + 3)) / 6: the clamp
        compares x itself with -3 and 3, so at exactly +-3 the comparison is
        exact and the gradient is torch's (0 at -3, 1 at 3). As x times
        hardsigmoid the division's truncation came first and decided the
        tie, at random: eight copies of -3 got gradients of 0 and -0.5. The
        same comparison, product and division; below -3 the product is of
        an exact 0.

        Recorded, its gradient is its own: g (2c + 3 + 3 [x < 3] - 3 [x >
        -3]) / 6 with c = clamp(x, -3, 3) (0 up to -3, 1 from 3, as torch's),
        one product and one division. The chain rule through the product
        and the division divided g by 6 first, and that unit of rounding
        came out multiplied by up to 9 (a probe's MobileNetV3 block: the conv
        weight gradient 27% off at 16 bits, 4% with ReLU)."""
        if not ag.needs_grad(self):
            return (self * (self.clamp(-3.0, 3.0) + 3.0)).div(6)
        with ag.inside(True):
            x = self.unsqueeze(0)
            both = x._cat([x + 3.0, 3.0 - x], 0)  # one batched ReLU, as clamp's
            # masks [x > -3] and [x < 3] (ReLU's derivative: 0 at 0)
            r, m = (both._wrap(t) for t in both._s().relu_with_mask(both._t))
            c = r[0] - r[1] - self
            out = (self * (c + 3.0)).div(6)
            slope = c * 2.0 + 3.0 + (m[1] - m[0]) * 3.0  # 6 x the derivative
        return ag.record(out, (self,), lambda g: ((g * slope).div(6),))

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> TensorBase:
        """log(1 + e^(beta x)) / beta, as relu(y) + log1p(e^-|y|) for y =
        beta x (no overflow for any x). Where y > ``threshold`` torch returns
        x, which this formula equals to within log1p(e^-threshold) / beta:
        at the default threshold 20 that is 2e-9 / beta, below the
        fixed-point resolution, so x is selected (one more comparison and
        one product) only for another threshold."""
        beta = public_number(beta, "softplus(): argument 'beta'")
        threshold = public_number(threshold, "softplus(): argument 'threshold'")
        if beta <= 0:
            raise InvalidArgumentError(f"softplus: beta must be positive, got {beta}")
        top = 63 - 2 * self._s().precision_bits  # the encoding's range: |v| < 2^top
        if not math.log(2) / beta < 2.0**top:  # (1e-310: torch's result is inf)
            raise InvalidArgumentError(
                f"softplus: beta={beta!r} is too small: every result is at least "
                f"log(2) / beta = {math.log(2) / beta:g}, outside the representable range "
                f"(|v| < 2^{top} at {self._s().precision_bits} fractional bits)"
            )
        y = self if beta == 1 else self * float(beta)
        r = y.relu()
        u = fx.exp_nonpos(y - r * 2)  # e^-|y|, |y| = 2 relu(y) - y
        out = r + fx.log1p_unit(u)
        out = out if beta == 1 else out * (1.0 / beta)
        if float(threshold) == 20.0:
            return out
        return where(y.gt(float(threshold)), self, out)

    def mish(self) -> TensorBase:
        """x tanh(softplus(x)), with its tails (:meth:`_relu_tails`; until
        2026-12-06 off by |x| times a unit or two: -0.69 for mish(-5667),
        3.4 at -27810): within 7.3e-3 of torch's for every x, a bound from
        the truncations (16 times tanh's error near 0, 30 units, at x
        <= -16; tests/test_probe_jb_numerics.py), measured up to 2.4e-3
        (one truncation of sigmoid's input alone puts 8 units in tanh: 128
        units, 2e-3, at x <= -16). 130 rounds."""
        fx.available_up_to(self, "mish", 29)

        def core(c):  # softplus(c) as softplus computes it, |c| <= 16: no clamp in exp_nonpos
            r = c.relu()
            return c * (r + fx.log1p_unit(fx.exp_nonpos(c - r * 2, within16=True))).tanh()

        return self._relu_tails(core)

    def logsigmoid(self) -> TensorBase:
        """log(sigmoid(x)) = -softplus(-x) (no overflow for any x)."""
        return -((-self).softplus())

    def softsign(self) -> TensorBase:
        """x / (1 + |x|): one comparison and the range-reduced division."""
        return fx.divide(self, self.abs() + 1.0)

    def tanhshrink(self) -> TensorBase:
        """x - tanh(x)."""
        return self - self.tanh()

    def softshrink(self, lambd: float = 0.5) -> TensorBase:
        """x - lambd above lambd, x + lambd below -lambd, 0 between (torch's
        Softshrink): x - clamp(x, -lambd, lambd), one batched ReLU; the
        gradient 1 outside [-lambd, lambd], 0 strictly inside."""
        lam = public_number(lambd, "softshrink(): argument 'lambd'")
        if not lam >= 0:
            raise RuntimeError(f"softshrink: lambda must be at least 0, but found {lam}")
        return self - self.clamp(-lam, lam)

    def hardshrink(self, lambd: float = 0.5) -> TensorBase:
        """x where |x| > lambd, 0 elsewhere (torch's Hardshrink)."""
        return self * (self.abs() > number_or_shared(lambd, "hardshrink(): argument 'lambd'"))

    def threshold(self, threshold: float, value: float) -> TensorBase:
        """x where x > threshold, ``value`` elsewhere (torch's Threshold)."""
        t = number_or_shared(threshold, "threshold(): argument 'threshold'")
        return where(self.gt(t), self, number_or_shared(value, "threshold(): argument 'value'"))

    def softmin(self, dim=None, dtype=None) -> TensorBase:
        """softmax(-x) over ``dim``."""
        dim = softmax_dim("softmin", dim, self.dim(), 4)  # torch's implicit dim, and warning
        return (-self).softmax(dim, dtype)

    def log1p(self) -> TensorBase:
        """log(1 + x) by the range-reduced log (1 + x in [2^-16, 2^30))."""
        return (self + 1.0).log()

    # ------------------------------------------------------------ CrypTen's
    def polynomial(self, coeffs, func="mul") -> TensorBase:
        """CrypTen's ``polynomial``: sum_i coeffs[i] x^(i+1) (coefficients
        from the linear term up; no constant term): d products in sequence
        for degree d (2d rounds, d n elements). CrypTen's ``func`` (how
        powers are formed) must be "mul", its default; any other value
        is NotImplementedError. Shared coefficients (CrypTen's
        ``MPCTensor(coeffs)``, flattened) take the same Horner's rule with
        private products (the same rounds), recorded for autograd: the
        coefficients get their gradients too."""
        if not (isinstance(func, str) and func == "mul"):
            raise NotImplementedError(
                f"polynomial(func={func!r}) on a SharedTensor: only func='mul' is provided"
            )
        listed = coeffs if isinstance(coeffs, (list, tuple)) else [coeffs]
        if not isinstance(coeffs, TensorBase) and any(
            isinstance(v, torch.Tensor) and v.requires_grad for v in listed
        ):  # plaintext operands of the products below: noted as such (float() dropped them)
            coeffs = torch.cat(
                [torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in listed]
            )
        if isinstance(coeffs, TensorBase) or getattr(coeffs, "requires_grad", False):
            cs = coeffs.reshape(-1)
            if cs.shape[0] == 0:
                raise InvalidArgumentError("polynomial needs at least one coefficient")
            acc = cs[-1]
            for k in range(cs.shape[0] - 2, -1, -1):
                acc = acc * self + cs[k]
            return acc * self
        c = [float(v) for v in _float64(coeffs, "polynomial coefficients").reshape(-1)]
        if not c:
            raise InvalidArgumentError("polynomial needs at least one coefficient")
        if len(c) == 1:
            return self * c[0]
        # x (c1 + c2 x + ... + cd x^(d-1)): Horner's rule (one engine call
        # when not recorded: d - 1 products), then the product by x
        return fx._horner(c, self) * self

    def pos_pow(self, p) -> TensorBase:
        """x^p for x > 0 (CrypTen's ``pos_pow``): x^floor(p) by products
        times x^(p - floor(p)), a square root for a half (x^1.5 = x sqrt(x),
        1e-4 relative), 2^(frac log2 x) otherwise (range-reduced exp2 of the
        range-reduced log: about 1e-4 relative); a negative whole p through
        the reciprocal, any other negative p as 2^(p log2 x); a SharedTensor
        p privately as 2^(p log2 x)."""
        if isinstance(p, TensorBase) or (torch.is_tensor(p) and (p.numel() > 1 or p.requires_grad)):
            # a private exponent, one per element, or a torch one whose
            # gradient is asked for (the product records it, or reports it
            # lost): 2^(p log2 x), x > 0
            return fx.exp2(self.log() * (p * (1 / math.log(2))))
        p = public_number(p, "pos_pow exponent")
        if not math.isfinite(p):
            raise EncodingError(f"pos_pow exponent {p}: a finite exponent is needed")
        if p < 0 and p != math.floor(p):
            # 2^(p log2 x) at once: the reciprocal first lost 1/x's relative
            # precision where x is large (1000^-0.75 was 4e-3 off, 1e4^-0.5
            # 3.5e-2) and took 16 to 48 rounds more
            return fx.pow_pos(self, p)
        if p < 0:
            return self.reciprocal().pow(int(-p))  # as pow
        k, frac = int(math.floor(p)), p - math.floor(p)
        if frac == 0:
            return self.pow(k) if k else self.pow(0)  # x^0 = 1
        # a fraction other than 1/2: 2^(frac log2 x), range-reduced (CrypTen's
        # exp of frac log x was 2% off at x = 100 and 12% at 1e5 for 0.7)
        if not k:
            return self.sqrt() if frac == 0.5 else fx.pow_pos(self, frac)
        # x^k x^frac, recorded as one node whose backward is g p x^(k-1)
        # x^frac (through the product rule, g x^k times the part's large
        # derivative at a small x: x^1.5 at 0.003 was 9 units off)
        recorded = ag.needs_grad(self)
        with ag.inside(recorded):
            part = self.sqrt() if frac == 0.5 else fx.pow_pos(self, frac)
            lower = part if k == 1 else self.pow(k - 1) * part
            out = self * lower
        if recorded:
            kept = lower * p
            ag.record(out, (self,), lambda g: (g * kept,))
        return out

    # ------------------------------------------------------------ torch's
    def masked_fill(self, mask, value) -> TensorBase:
        """``value`` where ``mask`` is true (a public bool tensor, or a shared
        0/1 comparison result), x elsewhere; broadcasting as torch's."""
        if isinstance(mask, torch.Tensor) and mask.dtype != torch.bool:
            raise RuntimeError(
                f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype}"
            )
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise EncodingError(
                f"masked_fill with {value}: a fixed-point share cannot hold it; use a large "
                "finite value (-1e4 masks an attention score: e^-16 after the max shift), "
                "or give attention a bool mask (F.scaled_dot_product_attention, "
                "nn.MultiheadAttention), which masks exactly"
            )
        return where(mask, value, self)

    def norm(self, p="fro", dim=None, keepdim: bool = False, out=None, dtype=None):
        """The vector norm over ``dim`` (all elements by default): p = 2 or
        "fro" range-reduced by max |x| (:func:`_p_norm`, 1e-4 relative in
        value and gradient for max |x| in [2^-16, 2^30), 4n < 2^30, and the
        norm itself below 2^31: a larger one cannot be encoded and wraps,
        silently), 1 as the sum of |x|, inf as the largest |x| (-inf the
        smallest), any other p > 0 as CrypTen's (sum |x|^p)^(1/p),
        range-reduced (:func:`_p_norm`, the same ranges).
        (``out`` and ``dtype``, which torch.norm passes, must be None.)"""
        if out is not None or dtype is not None:
            raise NotImplementedError("norm(..., out=, dtype=) on a SharedTensor")
        if p == "fro" and isinstance(dim, (tuple, list)) and len(dim) > 2:  # torch's error
            dims = " ".join(str(d) for d in dim)
            raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {dims}")
        if p in ("fro", 2, 2.0):
            # range-reduced by max |x| as any other p (until 2026-12-06 the
            # square root of the plain sum of squares: the value wrapped for
            # sums above 2^30 and the gradient, through a rounded
            # 1 / (2 sqrt(ss)), was 1.5% to 12% off for norms of 1e3 to 5e3)
            return _p_norm(self, 2.0, dim, keepdim)
        if p in (1, 1.0):
            return self.abs().sum(dim, keepdim)
        if p in (math.inf, "inf"):
            return self.abs().amax(dim, keepdim)
        if p in (-math.inf, "-inf"):
            return self.abs().amin(dim, keepdim)
        q = p if isinstance(p, (int, float)) and not isinstance(p, bool) else None
        if q is None or not 0 < q < math.inf:
            raise NotImplementedError(
                f"norm with p={p!r} on a SharedTensor ('fro', inf, -inf and any p > 0 "
                "are supported)"
            )
        return _p_norm(self, float(q), dim, keepdim)

    def dropout(self, p: float = 0.5, training: bool = True, inplace: bool = False):
        """``F.dropout``: in training, each element zeroed with probability p
        and the rest scaled by 1 / (1 - p), from a mask the three parties
        draw alike (independent of the data); x itself otherwise."""
        if p is None or isinstance(p, (str, bytes)):  # torch's TypeError
            raise TypeError(f"dropout(): argument 'p' must be Number, not {type(p).__name__}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise InvalidArgumentError(
                f"dropout probability has to be between 0 and 1, but got {p}"
            )
        if not training or p == 0:
            return self
        scale = _session.dropout_scale(self.shape, p)
        return self._in_place("dropout_", lambda t: t * scale) if inplace else self * scale

    def repeat_interleave(self, repeats, dim=None, *, output_size=None) -> TensorBase:
        """Each element repeated ``repeats`` times along ``dim`` (of the
        flattened tensor when None): public index copies. ``repeats`` is a
        public int or integer tensor (one count per element, or one),
        checked by torch's own repeat_interleave of the positions."""
        if isinstance(repeats, TensorBase):
            raise NotImplementedError("repeat_interleave with private repeats")
        if isinstance(repeats, (bool, float)):
            kind = type(repeats).__name__
            raise TypeError(f"repeat_interleave(): repeats must be an int or a tensor, not {kind}")
        x, d = (self.reshape(-1), 0) if dim is None else (self, dim)
        idx = torch.arange(x.shape[d]).repeat_interleave(repeats, output_size=output_size)
        return x.index_select(d, idx)

    def clip(self, min=None, max=None) -> TensorBase:  # noqa: A002 - torch's names
        """``clamp``'s other name."""
        return self.clamp(min, max)

    def __pos__(self) -> TensorBase:
        return self

    # ------------------------------------------------------------ in place
    def zero_(self) -> TensorBase:
        """x = 0 in place (``p.grad.zero_()``): exact, no communication."""
        return self._in_place("zero_", lambda t: t * 0)

    def fill_(self, value) -> TensorBase:
        """x = value everywhere, in place (a public value; no communication)."""
        if isinstance(value, str):
            raise TypeError("fill_(): argument 'value' must be a Number or a 0-dim tensor, not str")
        dims = len(getattr(value, "shape", ()))
        if dims:
            raise RuntimeError(
                "fill_ only supports 0-dimension value tensor but got tensor with "
                f"{dims} dimensions."
            )

        if isinstance(value, (torch.Tensor, TensorBase)):
            refuse_internal_overlap(self)  # torch's copy_ of a 0-d tensor: refused

        def fill(t):
            v = value
            if isinstance(v, torch.Tensor):  # one that requires grad: its gradient
                v = t._plain(v, "fill_")  # is private: a backward raises, naming fill_
            return t * 0 + number_or_shared(v)

        return self._in_place("fill_", fill)


def _in_place(name: str):
    def method(self, *args, **kwargs):
        if name != "masked_fill":  # (torch reads its 0-d value first, as a number)
            refuse_partial_overlap(self, *args, *kwargs.values())
        return self._in_place(name + "_", lambda x: getattr(x, name)(*args, **kwargs))

    method.__name__ = name + "_"
    method.__doc__ = (
        f"``{name}`` in place (the tensor takes the result's shares); a tensor "
        "argument that partly overlaps it is torch's RuntimeError (tensor_overlap)."
    )
    return method


for _name in (
    "relu",
    "abs",
    "square",
    "pow",
    "clamp",
    "clip",
    "exp",
    "sigmoid",
    "tanh",
    "sqrt",
    "masked_fill",
    "leaky_relu",
    "hardtanh",
    "elu",
    "silu",
    "reciprocal",
    "log",
    "erf",
    "sin",
    "cos",
    "floor",
    "ceil",
    "trunc",
    "fix",
    "round",
    "frac",
    "floor_divide",
    "remainder",
    "fmod",
    "clamp_min",
    "clamp_max",
    "sign",
    "triu",
    "tril",
    # found missing by a probe (2026-12-07): torch's in-place comparisons
    # (0/1 in the tensor's own dtype) and running sums and products
    *("gt", "lt", "ge", "le", "eq", "ne", "cumsum", "cumprod"),
):
    setattr(ActivationOps, _name + "_", _in_place(_name))


def _p_norm(x, q: float, dim, keepdim: bool):
    """(sum |x|^q)^(1/q) for a p other than 1 and inf (CrypTen's
    formula), range-reduced: m = max |x| over ``dim`` (a tournament) is put
    in an octave [2^j, 2^(j+1)) by one batched comparison (as the
    division's, :func:`cryptgpu.functions.divide`), |x| scaled by the exact
    power of two 2^-j selected by the one-hot octave, so that the largest
    element is in [1, 2) and the sum s of their q-th powers in [1, 2^q n);
    the root 2^(log2(s) / q) (range-reduced log and exp2, about 1e-4
    relative) is scaled back by 2^j the same way. Powers by products for a
    whole q, else :meth:`pos_pow` (exact at 0 for q > 1 and q = 1/2; for
    another q < 1 the elements at 0 are masked by [|x| > 0], one comparison
    more). About 1e-4 relative for max |x| in [2^-16, 2^30) while 2^q n
    stays below 2^30 and the norm itself below 2^31 (the encoding's range:
    a larger norm wraps, silently); a zero vector gives 0. Without the scaling (the sum
    of |x|^q as is, CrypTen's) a sum below 2^-16 gave 2^(-16 / q) and the
    gradient, through 1 / s, was lost for sums near 1e6. The gradient is
    the composition's (the selected power of two is a constant): within
    about 1e-4 relative plus a few units of 2^-16 times q 2^(q-1) / max |x|
    (its units are those of the scaled elements)."""
    a = x.abs()
    if a.numel() == 0:  # torch's 0 for a sum over no element (max |x| had none)
        return a.sum(dim, keepdim)
    with ag.no_grad():
        m = a.amax(dim, keepdim=True)
        ind, exps = fx._octave_indicator(m, None, 30, "norm")  # 2^-f above f = 16
    own = q == 2.0 and ag.needs_grad(x)  # the 2-norm's own backward: g x / |x|
    with ag.inside(True) if own else contextlib.nullcontext():
        u = fx._select(ind, fx._pow2_copies(a, exps), m)
        if q.is_integer():
            powered = u.pow(int(q))
        else:
            powered = u.pos_pow(q)
            if q < 1 and q != 0.5:
                powered = powered * (a > 0)
        if own:  # the root and its inverse from one range reduction
            root, inv = fx.sqrt_with_inverse(powered.sum(dim, keepdim=True))
        else:
            root = powered.sum(dim, keepdim=True).pos_pow(1.0 / q)
        ups = [-e for e in reversed(exps)]  # decreasing, as _pow2_copies takes them
        out = (ind * fx._pow2_copies(root, ups).flip(0)).sum(0)
    if own:
        # x / |x| = (x 2^-j) / (|x| 2^-j), both O(1): the scaled x over the
        # scaled root (until 2026-12-07 autograd went back through the
        # scaling, which multiplied the rounding of small gradients by 2^-j:
        # rows near 0.1 were 76% off, a user probe)
        with ag.no_grad():
            ratio = fx._select(ind, fx._pow2_copies(x, exps), m) * inv
        ag.record(out, (x,), lambda g: (g * ratio,))
    if keepdim:
        return out
    kept = torch.empty(tuple(x.shape), device="meta").sum(dim, keepdim=False).shape
    return out.reshape(tuple(kept))


def public_number(v, what: str) -> float:
    """``float(v)`` for a hyperparameter that must be public; a SharedTensor
    is refused (float() would open it to every party without the code
    saying so)."""
    if isinstance(v, TensorBase):
        raise TypeError(
            f"{what} must be a public number, got a SharedTensor (using it here would "
            "open it to every party; call get_plain_text() first if that is intended)"
        )
    _a_number(v, what)
    return float(v)


def number_or_shared(v, what: str = "argument"):
    """A scalar operand kept private when it is a SharedTensor (a product or
    comparison with it stays private), else its float."""
    if isinstance(v, TensorBase):
        return v
    _a_number(v, what)
    return float(v)


def _a_number(v, what: str) -> None:
    """torch's TypeError for a string or None where a number goes (float()
    read "1.5" as a number and raised ValueError for "a"), and for a torch
    tensor that requires grad (float() dropped its gradient)."""
    if v is None or isinstance(v, (str, bytes)):
        raise TypeError(f"{what} must be Number, not {type(v).__name__}")
    if isinstance(v, torch.Tensor) and v.requires_grad:
        # torch's TypeError too; float() dropped the gradient with a warning
        raise TypeError(f"{what} must be Number, not Tensor: {plain_requires_grad(v)}")
