"""torch's math functions composed from the range-reduced log and exp, the
products and the norms: log2, log10, expm1, logaddexp, xlogy, inner and
kron as methods, cov, corrcoef, count_nonzero and the logical operations
on 0/1 values, and the torch functions with no method of their name
(tensordot, cdist, pairwise_distance, rsub, sparse.mm), which
``tensor_more`` passes on to ``torch_dispatch`` in its TABLE. No engine
calls of their own; every gradient comes from the composed operations.
Methods torch has and we do not (sort, median, inverse, ...) raise
NotImplementedError, as their torch-function forms do, not AttributeError.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from . import _session, rounding, trig
from ._plain import _float64, _index, _norm_dim
from .functions import available_up_to, ratio_inv_sqrt_pair
from .tensor_base import TensorBase
from .tensor_reduce import _crypten_counts
from .tensor_shape import stack

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _times_constant(x, c: float):
    """x * c for a public constant c >= 1/4, kept precise: c as a multiple
    of 1/2 (exact in the encoding) plus a remainder below 1/4, which a
    product encodes with extra fractional bits (the Truncation section):
    c encoded at 2^-f was off by up to 2^-(f+1), times |x| up to 30."""
    k = round(c * 2) / 2
    return x * k + x * (c - k)


def _shape(t) -> tuple:
    return tuple(t.shape) if hasattr(t, "shape") else tuple(np.shape(t))


def _operand(t, what: str):
    """A SharedTensor as it is, a plaintext operand as a float64 tensor."""
    return t if isinstance(t, TensorBase) else _float64(t, what)


def _times(a, b):
    """a * b (broadcasting) with either of them shared."""
    return a * b if isinstance(a, TensorBase) else b * a


def _mm(a, b):
    """a @ b with either of them shared (the other plaintext)."""
    return a.matmul(b) if isinstance(a, TensorBase) else b.rmatmul(a)


class MathOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: more of torch's math."""

    __slots__ = ()

    def log2(self, *args, **kwargs) -> TensorBase:
        """log2(x) for x in [2^-16, 2^30): the range-reduced :meth:`log`
        (which takes the same arguments: CrypTen's ``input_in_01``) times
        1 / ln 2 (:func:`_times_constant`: 1.8e-4 off at 2^29 with the
        constant encoded at 2^-16, a user probe)."""
        available_up_to(self, "log2", 29)
        return _times_constant(self.log(*args, **kwargs), 1 / _LN2)

    def log10(self, *args, **kwargs) -> TensorBase:
        """log10(x) for x in [2^-16, 2^30): :meth:`log` (with its
        arguments) times 1 / ln 10 (:func:`_times_constant`)."""
        available_up_to(self, "log10", 29)
        return _times_constant(self.log(*args, **kwargs), 1 / _LN10)

    def expm1(self) -> TensorBase:
        """e^x - 1 by the range-reduced :meth:`exp`. Its error is the exp's
        (a few units of 2^-16 near 0), so for small x it is absolute where
        torch's expm1 keeps relative precision."""
        return self.exp() - 1.0

    def cosh(self) -> TensorBase:
        """cosh x = (e^x + e^-x) / 2, as ``torch.cosh``: e^x and e^-x from
        one range-reduced :meth:`exp` of the stacked pair and the halving
        (44 rounds), so
        1e-3 relative for |x| <= 20.8 (cosh up to 5e8; beyond, e^20.8 / 2);
        the gradient (sinh x) comes from the exp's."""
        ep, en = _exp_pair(self)
        return (ep + en) * 0.5

    def sinh(self) -> TensorBase:
        """sinh x = (e^x - e^-x) / 2, as ``torch.sinh`` (see :meth:`cosh`):
        within 1e-3 of cosh x, so absolute near 0 (about 6e-4 at |x| < 1,
        measured), where torch's keeps relative precision."""
        ep, en = _exp_pair(self)
        return (ep - en) * 0.5

    def floor(self) -> TensorBase:
        """torch's ``floor``, exact (:mod:`cryptgpu.rounding`: 12 rounds)."""
        return rounding.rounded(self, 1, "floor", "floor")

    def ceil(self) -> TensorBase:
        """torch's ``ceil``, exact."""
        return rounding.rounded(self, 1, "ceil", "ceil")

    def trunc(self) -> TensorBase:
        """torch's ``trunc`` (``fix``): toward zero, exact (13 rounds)."""
        return rounding.rounded(self, 1, "trunc", "trunc")

    fix = trunc

    def round(self, decimals: int = 0) -> TensorBase:
        """torch's ``round``: ties to even, exact (12 rounds); ``decimals``
        d > 0 rounds x 10^d and divides by 10^d (within 2 units of 2^-f)."""
        return rounding.round_even(self, decimals)

    def frac(self) -> TensorBase:
        """torch's ``frac``: x - trunc(x), exact."""
        return rounding.remainder(self, 1, "trunc", "frac")

    def floor_divide(self, other) -> TensorBase:
        """``x // d`` for a public d on the fixed-point grid (an integer,
        0.5, 1.25): floor(x / d), exact; a shared divisor is refused."""
        return rounding.rounded(self, other, "floor", "floor_divide")

    def remainder(self, other) -> TensorBase:
        """``x % d`` (the divisor's sign, as torch's and Python's) for a
        public d on the fixed-point grid: x - d floor(x / d), exact."""
        return rounding.remainder(self, other, "floor", "remainder")

    def fmod(self, other) -> TensorBase:
        """torch's ``fmod`` (the dividend's sign): x - d trunc(x / d), exact."""
        return rounding.remainder(self, other, "trunc", "fmod")

    __floordiv__ = floor_divide
    __mod__ = remainder

    def __rfloordiv__(self, other):
        rounding.refuse_shared_divisor("floor_divide")

    def __rmod__(self, other):
        rounding.refuse_shared_divisor("remainder")

    def __ifloordiv__(self, other):
        return self.floor_divide_(other)

    def __imod__(self, other):
        return self.remainder_(other)

    def cos(self, iterations=None) -> TensorBase:
        """cos x, as ``torch.cos`` (:mod:`cryptgpu.trig`: 23 rounds, within
        a few units of 2^-f for every encodable x); older CrypTen's
        ``iterations`` is accepted and changes nothing."""
        _crypten_counts("cos", iterations=iterations)
        return trig.cos(self)

    def sin(self, iterations=None) -> TensorBase:
        """sin x, as ``torch.sin`` (:mod:`cryptgpu.trig`; ``iterations``: see cos)."""
        _crypten_counts("sin", iterations=iterations)
        return trig.sin(self)

    def cossin(self, iterations=None) -> tuple:
        """(cos x, sin x) from one evaluation, as CrypTen's ``cossin``."""
        _crypten_counts("cossin", iterations=iterations)
        return trig.cossin(self)

    def logaddexp(self, other) -> TensorBase:
        """log(e^x + e^other), broadcasting, as ``torch.logaddexp``: the
        max-shifted :meth:`logsumexp` of the stacked pair (one max, one
        range-reduced exp and log; within 4e-4). ``other`` a tensor, shared
        or public (a number is torch's TypeError)."""
        return logaddexp(self, other)

    def xlogy(self, other) -> TensorBase:
        """x * log(other), as ``torch.xlogy``: a shared ``other`` by the
        range-reduced log (other in [2^-16, 2^30); where x is 0 the product
        is 0 whatever other is, as torch's), a public one in plaintext."""
        return xlogy(self, other)

    def inner(self, other) -> TensorBase:
        """``torch.inner``: sums of products over the last dim of both (one
        matrix product), shape x.shape[:-1] + other.shape[:-1]; a product
        where either is 0-d."""
        return inner(self, other)

    def kron(self, other) -> TensorBase:
        """``torch.kron``: the Kronecker product (every pair of elements
        multiplied once, broadcast along interleaved dims, then merged)."""
        return kron(self, other)

    def cov(self, *, correction=1, fweights=None, aweights=None) -> TensorBase:
        """``torch.cov``: the covariance of the rows (variables) over the
        columns (observations), as torch's (a 1-D x is one variable; its
        checks and result shape): the deviations from the (weighted) mean,
        divided so that their matrix product's sum is at most the
        covariance (both sides by p = ceil(sqrt(n)); with weights one side
        times them over ceil(w_sum / p)), times the product of the
        divisors, divided by the whole degrees of freedom (exact truncations
        throughout, as :meth:`var`'s): covariances below 2^31 with n times
        them below 2^46 (var's range), within sqrt(n) (max |x_i - m_i| +
        max |x_j - m_j|) 2^-16 plus a few units unweighted (typically
        2^-15 / sqrt(var) relative on the diagonal); weights add 2^-15
        relative, aweights' non-whole degrees of freedom 2^-16 more.
        ``fweights`` and ``aweights`` public (private ones:
        NotImplementedError); none left (N <= correction) is ValueError,
        where torch warns and gives inf or nan."""
        for w in (fweights, aweights):
            if isinstance(w, TensorBase):
                raise NotImplementedError("torch.cov with private fweights or aweights")
        with warnings.catch_warnings():  # torch's checks and result shape, on zeros
            warnings.simplefilter("ignore")
            shape = torch.cov(
                torch.zeros(tuple(self.shape), dtype=torch.float64),
                correction=correction,
                fweights=fweights,
                aweights=aweights,
            ).shape
        x = self.reshape(1, -1) if self.dim() < 2 else self
        n = x.shape[1]
        w = None if fweights is None else _float64(fweights, "cov fweights")
        if aweights is not None:
            aw = _float64(aweights, "cov aweights")
            w = aw if w is None else w * aw
        w_sum = float(n if w is None else w.sum())
        if correction == 0:
            norm = w_sum
        elif aweights is None:
            norm = w_sum - correction
        else:
            norm = w_sum - correction * float((w * aw).sum()) / w_sum
        if w_sum <= 0 or norm <= 0:
            raise ValueError(
                f"cov: {n} observations (weights summing to {w_sum}) leave no degrees of "
                f"freedom (correction {correction})"
            )
        # The weights as fractions (w / w_sum, w / q): a product by a large
        # weight (fweights 1e6) wrapped past 2^31 (a review)
        mean = x.mean(1, keepdim=True) if w is None else (x * (w / w_sum)).sum(1, keepdim=True)
        dev = x - mean
        # One matrix product of the deviations, each side first divided so
        # that the product's sum is at most the covariance itself (one side
        # by the whole p = ceil(sqrt(n)), the other by p too, or with weights
        # times w / q, q = ceil(w_sum / p)), then times p q and divided by the
        # whole norm (exact truncations throughout, as var's). Until
        # 2026-12-07 the undivided sum, n - 1 times the covariance, wrapped
        # past 2^31: cov of randn(8, 4000) * 1500 gave 35584 for 2.2e6.
        p = math.isqrt(n - 1) + 1  # p * p >= n
        q = p if w is None else max(1, math.ceil(w_sum / p))  # (one division unweighted)
        with _session.training_work():
            u = dev.div(p) if p > 1 else dev
            v = u if w is None else dev * (w / q)
            c = v.matmul(u.t())
            if float(norm).is_integer() and p * q <= 2**20:  # p q / norm, exactly
                c = (c * (p * q)).div(int(norm))
            else:  # (aweights) encoded with 2^-16 relative error
                c = c * (p * q / norm)
        return c.reshape(shape)

    def corrcoef(self) -> TensorBase:
        """``torch.corrcoef``: :meth:`cov` c_ij divided by sqrt(c_ii c_jj)
        range-reduced (:func:`cryptgpu.functions.ratio_inv_sqrt_pair`: the
        rows' factor, then the columns', each 1e-4 relative), with no
        small fixed-point 1 / (s_i s_j) formed (until 2026-12-07 it was:
        1.4e-3 off at variance 100, the diagonal 0.0 at 9e4). Within
        2e-4 + 2^-15 / sqrt(var_i var_j) absolute (the second term is the
        covariance's own rounding): 1e-4-level for variances from about
        0.25 up to :meth:`var`'s range (each |x - mean| below 2^15). Not
        clipped to [-1, 1] as torch's is (two comparisons per entry)."""
        c = self.cov()
        return ratio_inv_sqrt_pair(c, c if c.dim() == 0 else c.diagonal())

    def count_nonzero(self, dim=None) -> TensorBase:
        """``torch.count_nonzero``: the sum of x != 0 over ``dim`` (all
        when None), a private count (a SharedTensor; torch's is int64).
        A value below 2^-17 in magnitude encodes as 0 and is not counted."""
        ne = self.ne(0)
        return ne.sum() if dim is None else ne.sum(dim)

    def logical_and(self, other) -> TensorBase:
        """x AND other for 0/1 values (comparison results), as their
        product: 0/1 values, where torch gives bool. A shared ``other``
        costs one product (within a unit of 2^-16 of 0 or 1); a public one
        is taken as torch does (nonzero is True), multiplied exactly."""
        return self * _bit(other)

    def logical_or(self, other) -> TensorBase:
        """x OR other for 0/1 values: x + other - x other (see
        :meth:`logical_and`)."""
        b = _bit(other)
        return self + b - self * b

    def logical_xor(self, other) -> TensorBase:
        """x XOR other for 0/1 values: x + other - 2 x other (see
        :meth:`logical_and`)."""
        b = _bit(other)
        return self + b - self * b * 2

    def logical_not(self) -> TensorBase:
        """NOT x for 0/1 values: 1 - x, exact and local."""
        return self.neg() + 1


def _exp_pair(x):
    """(e^x, e^-x) from one exp call on the stacked pair."""
    e = stack([x, x.neg()]).exp()
    return e[0], e[1]


def _bit(v):
    """A logical operand: a SharedTensor as it is (assumed 0/1), a public
    one as torch reads it (nonzero is True) in 0/1 float64 values."""
    return v if isinstance(v, TensorBase) else (_float64(v, "logical operand") != 0).double()


def _logical(name):
    """torch.logical_<name>(a, b) with a SharedTensor on either side (the
    operations are symmetric)."""

    def call(a, b):
        return getattr(a, name)(b) if isinstance(a, TensorBase) else getattr(b, name)(a)

    return call


def _unsupported(name):
    """A method torch has and SharedTensor does not: NotImplementedError,
    as the torch function of that name on a SharedTensor raises."""

    def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"{name} on a SharedTensor is not supported (README, 'What is supported', lists "
            "what is)"
        )

    method.__name__, method.__qualname__ = name, f"SharedTensor.{name}"
    method.__doc__ = f"torch's ``{name}``: not supported (NotImplementedError)."
    method.unsupported = True  # torch_dispatch gives no "share it first" hint for it
    return method


UNSUPPORTED = (
    "median",
    "nanmedian",
    "quantile",
    "inverse",
    "det",
    "sort",
    "argsort",
    "kthvalue",
    "mode",
)
for _name in UNSUPPORTED:
    setattr(MathOps, _name, _unsupported(_name))


# ------------------------------------------------------------ either operand shared


def logaddexp(input, other) -> TensorBase:  # noqa: A002 - torch's names
    """``torch.logaddexp`` with a SharedTensor on either side."""
    for t, pos in ((input, 0), (other, 1)):
        if not isinstance(t, (TensorBase, torch.Tensor)):
            raise TypeError(
                f"logaddexp(): argument '{'input' if pos == 0 else 'other'}' (position "
                f"{pos + 1}) must be Tensor, not {type(t).__name__}"
            )
    shape = torch.broadcast_shapes(_shape(input), _shape(other))
    pair = [_operand(t, "logaddexp").expand(shape) for t in (input, other)]
    return stack(pair, 0).logsumexp(0)


def xlogy(input, other) -> TensorBase:  # noqa: A002 - torch's names
    """``torch.xlogy`` (and ``torch.special.xlogy``): input * log(other),
    either of them shared, a number allowed on either side."""
    if isinstance(other, TensorBase):
        return _times(other.log(), _operand(input, "xlogy input"))
    return _times(input, torch.log(_float64(other, "xlogy other")))


def inner(input, other) -> TensorBase:  # noqa: A002 - torch's names
    """``torch.inner`` with a SharedTensor on either side."""
    sa, sb = _shape(input), _shape(other)
    if not sa or not sb:
        return _times(input, _operand(other, "inner"))
    if sa[-1] != sb[-1]:
        raise RuntimeError(
            "inner() the last dimension must match on both input tensors but got shapes "
            f"{list(sa)} and {list(sb)}"
        )
    return tensordot(input, other, ([-1], [-1]))


def kron(input, other) -> TensorBase:  # noqa: A002 - torch's names
    """``torch.kron`` with a SharedTensor on either side: the operand of
    fewer dims gets leading ones, as torch's."""
    a, b = _operand(input, "kron"), _operand(other, "kron")
    sa, sb = _shape(a), _shape(b)
    n = max(len(sa), len(sb))
    sa, sb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    a = a.reshape([v for s in sa for v in (s, 1)])
    b = b.reshape([v for s in sb for v in (1, s)])
    return _times(a, b).reshape([p * q for p, q in zip(sa, sb)])


def _dims_list(dims, na: int, nb: int):
    """torch.tensordot's ``dims``: an int (the last dims of a with the
    first of b), two lists, or a tensor of either."""
    bad = RuntimeError(
        "tensordot expects dims to be int or tuple[list[int], list[int]] or list[list[int]] "
        f"containing two lists, but got dims={dims}"
    )
    if isinstance(dims, torch.Tensor):
        if dims.numel() > 1:
            return dims[0].tolist(), dims[1].tolist()
        dims = int(dims.item())
    if isinstance(dims, (tuple, list)):
        da, db = dims
        for name, d in (("dims_self", da), ("dims_other", db)):
            if not isinstance(d, (tuple, list, torch.Tensor)):
                raise TypeError(
                    f"tensordot(): argument '{name}' must be tuple of ints, not {type(d).__name__}"
                )
        return list(da), list(db)
    k = _index(dims)
    if k is None:
        raise bad
    if k < 0:
        raise RuntimeError(f"tensordot expects dims >= 0, but got dims={k}")
    if k > min(na, nb):
        raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={k}")
    return list(range(-k, 0)), list(range(k))


def _permuted(t, order):
    return t if order == list(range(len(order))) else t.permute(order)


def tensordot(a, b, dims=2, out=None) -> TensorBase:
    """``torch.tensordot`` with a SharedTensor on either side (the other
    shared or public): the contracted dims of a (``dims`` an int: its last
    ``dims``; or two lists) summed against b's, by one matrix product of
    the permuted operands; a contracted dim of size 1 on one side is summed
    on the other first, as torch's."""
    if out is not None:
        raise NotImplementedError("torch.tensordot(..., out=) on a SharedTensor")
    a, b = _operand(a, "tensordot"), _operand(b, "tensordot")
    na, nb = len(a.shape), len(b.shape)
    da, db = _dims_list(dims, na, nb)
    if len(da) != len(db):
        raise RuntimeError("both dimension lists should have same length")
    ia = [_norm_dim(d, na) for d in da]
    ib = [_norm_dim(d, nb) for d in db]
    for ds in (ia, ib):
        dup = next((d for i, d in enumerate(ds) if d in ds[:i]), None)
        if dup is not None:
            raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
    for i, j, oi, oj in zip(ia, ib, da, db):
        s1, s2 = a.shape[i], b.shape[j]
        if s2 == 1:  # broadcast: summed right away, as torch
            a = a.sum(i, keepdim=True)
        elif s1 == 1:
            b = b.sum(j, keepdim=True)
        elif s1 != s2:
            raise RuntimeError(
                f"contracted dimensions need to match, but first has size {s1} in dim {oi} "
                f"and second has size {s2} in dim {oj}"
            )
    free_a = [i for i in range(na) if i not in ia]
    free_b = [j for j in range(nb) if j not in ib]
    out_shape = [a.shape[i] for i in free_a] + [b.shape[j] for j in free_b]
    k = math.prod(a.shape[i] for i in ia)
    pa = _permuted(a, free_a + ia).reshape(math.prod(a.shape[i] for i in free_a), k)
    pb = _permuted(b, ib + free_b).reshape(k, math.prod(b.shape[j] for j in free_b))
    return _mm(pa, pb).reshape(out_shape)


_CDIST_MODES = (
    "use_mm_for_euclid_dist_if_necessary",
    "use_mm_for_euclid_dist",
    "donot_use_mm_for_euclid_dist",
)


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary") -> TensorBase:
    """``torch.cdist`` for p = 2 and 1, batched (batch dims broadcast):
    the norm over the feature dim of every pairwise difference, p = 2 by
    :meth:`norm`'s range reduction by max |d| (1e-4 relative for max |d|
    in [2^-16, 2^30)), p = 1 as a sum of |d| (one comparison per
    difference). Every difference is formed (P R M elements), never
    |x1|^2 + |x2|^2 - 2 x1 x2, whose cancellation would leave a negative
    square near 0. ``compute_mode`` is checked and has no effect."""
    if compute_mode not in _CDIST_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    s1, s2 = _shape(x1), _shape(x2)
    for name, s in (("X1", s1), ("X2", s2)):
        if len(s) < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: {len(s)}D")
    if s1[-1] != s2[-1]:
        raise RuntimeError(
            f"X1 and X2 must have the same number of columns. X1: {s1[-1]} X2: {s2[-1]}"
        )
    p = float(p)
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    if p not in (1.0, 2.0):
        raise NotImplementedError(f"torch.cdist with p={p} on a SharedTensor (p = 2 and 1 only)")
    torch.broadcast_shapes(s1[:-2], s2[:-2])  # torch's RuntimeError, before any work
    a, b = _operand(x1, "cdist").unsqueeze(-2), _operand(x2, "cdist").unsqueeze(-3)
    d = a - b if isinstance(a, TensorBase) else b - a  # (the sign does not matter)
    return d.norm(p, -1)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False) -> TensorBase:
    """``F.pairwise_distance`` (``torch.pairwise_distance``): the p-norm
    of x1 - x2 + eps over the last dim, broadcasting, for p = 2, 1 and inf
    (:meth:`norm`'s). The default eps, 1e-6, is below 2^-16 and encodes as
    0 (torch's result differs from the plain norm by about that much)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p not in (1, 2, math.inf):
        raise NotImplementedError(
            f"pairwise_distance with p={p!r} on a SharedTensor (2, 1 and inf are supported)"
        )
    n = max(len(_shape(x1)), len(_shape(x2)))
    torch.broadcast_shapes(_shape(x1), _shape(x2))  # torch's RuntimeError first
    if isinstance(x1, TensorBase):
        d = x1 - _operand(x2, "pairwise_distance")
    else:
        d = (x2 - _float64(x1, "pairwise_distance")).neg()
    return (d + float(eps)).norm(p, n - 1 if n else None, keepdim)


def rsub(input, other, *, alpha=1) -> TensorBase:  # noqa: A002 - torch's names
    """``torch.rsub``: other - alpha * input, a SharedTensor on either side."""
    x = input if alpha == 1 else input * alpha
    if isinstance(x, TensorBase):
        return x.__rsub__(other)
    return other - _float64(x, "rsub input")


def sparse_mm(mat1, mat2, reduce=None) -> TensorBase:
    """``torch.sparse.mm``: a public sparse matrix (a GCN's normalised
    adjacency, COO or CSR) and a SharedTensor, as ``torch.mm`` of the
    sparse one's dense value (the sum reduction only). ``torch.spmm`` is
    torch.mm itself (one builtin: a key of its own here would replace
    torch.mm's entry)."""
    if reduce not in (None, "sum"):
        raise NotImplementedError(f"torch.sparse.mm with reduce={reduce!r} on a SharedTensor")
    for t in (mat1, mat2):
        if len(_shape(t)) != 2:  # torch's check, its exception
            raise RuntimeError(f"torch.sparse.mm: expected 2-D matrices, got {len(_shape(t))}-D")
    return _mm(_operand(mat1, "sparse.mm"), _operand(mat2, "sparse.mm"))


TABLE = {
    torch.sparse.mm: sparse_mm,
    **{getattr(torch, f"logical_{n}"): _logical(f"logical_{n}") for n in ("and", "or", "xor")},
    **{
        getattr(torch.Tensor, f"logical_{n}"): _logical(f"logical_{n}")
        for n in ("and", "or", "xor")
    },
    torch.tensordot: tensordot,
    torch.cdist: cdist,
    torch.pairwise_distance: pairwise_distance,  # also F.pairwise_distance
    torch.rsub: rsub,
    torch.logaddexp: logaddexp,
    torch.xlogy: xlogy,
    torch.special.xlogy: xlogy,
    torch.inner: inner,
    torch.kron: kron,
}
