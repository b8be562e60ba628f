"""Function approximations, as CrypTen computes them (Knott et al. 2021,
`common/functions/approximations.py`), with their iteration counts in one
config object.

Each approximation uses only +, -, *, division by a public integer, and the
comparisons of SharedTensor, so the same code runs on a float64 torch tensor:
the tests use that to separate the approximation's own error (float64 run
against torch) from the fixed-point error (private run against float64 run).

Input ranges on which the stated tolerances hold (tested at both edges in
tests/test_functions.py, f = 16):

| function    | range              | method                                     |
|-------------|--------------------|--------------------------------------------|
| exp         | [-16, (62-2f) ln 2] | clamp, Taylor 11 of e^(x/16), 4 squares   |
| reciprocal  | [2^-16, 2^30) and the negatives | octave selection, line + 3 Newton on [1, 2) |
| inv_sqrt    | [2^-16, 2^30)      | ratio_inv_sqrt(1, x): range-reduced Newton |
| sqrt        | [2^-16, 2^30), 0   | ratio_inv_sqrt(x, x)                       |
| log         | [2^-16, 2^30)      | octave selection, degree-8 log1p on [1, 2) |
| sigmoid     | any (tested +-1e4) | 1 / (1 + exp_nonpos(-abs(x))), mirrored    |
| tanh        | any (tested +-1e4) | 2 sigmoid(2x) - 1                          |
| exp_nonpos  | (-inf, 0]          | clamp at -16, Taylor 9 of e^(z/16), 4 squares |
| softmax     | rows < 2^(62-2f)   | exp_nonpos(x - max), reciprocal of the sum on [1, n] |
| log_softmax | rows < 2^(62-2f)   | (x - max) - log(sum exp_nonpos) on [1, n]     |
| gelu        | |x| < 2^15         | x/2 + poly in x^2 on |x| < 4, relu beyond     |
"""

from __future__ import annotations

import math

import numpy as np

from . import _session
from . import autograd as ag
from ._native import InvalidArgumentError
from ._octaves import (
    _bucket_indicator,
    _encodable_exps,
    _is_shared,
    _pow2_copies,
    _reciprocal_unit,
)
from .crypten_approx import ApproxConfig, config, exp_crypten, log_crypten  # noqa: F401 (public)
from .division import divide  # noqa: F401 (public: functions.divide)
from .log_fits import _LOG_MID_F, _fit_log1p_unit, _log_mid


def _abs_and_ltz(x):
    """(|x|, [x < 0]) with one batched comparison on shares (differentiable
    in |x| under autograd)."""
    if not _is_shared(x):
        return x.abs(), (x < 0).to(x.dtype)
    return x._abs_and_ltz("abs")


def exp(x):
    """e^x, range-reduced as :func:`exp_nonpos` on both sides of 0: x is
    clamped to [-16, (62 - 2f) ln 2] (below, e^x < 1.2e-7; above, e^x
    would leave the range a product may reach, 2^(62 - 2f): 2^30 at f =
    16), e^(x/16) on [-1, 1.3] is its Taylor polynomial of degree 11
    (1.8e-7 relative), squared 4 times. About 1e-3 relative plus a few
    units of 2^-f (the squarings, exact truncations, multiply the
    polynomial's fixed-point error by 16), 42 rounds; until 2026-12-05 CrypTen's (1 + x/256)^256,
    5% off at x = +-5, 12% at -8 and 52% at 20 (kept as
    :func:`exp_crypten`). Under autograd one recorded node whose backward
    is g e^x."""
    hi, lo = _exp_top(x), -_exp_floor(x)
    recorded = _is_shared(x) and ag.needs_grad(x)
    with ag.inside(recorded):
        u = x.clamp(lo, hi) / 16
        y = _horner(_EXP_TAYLOR11, u)
        # squares up to 2^(62 - 2f): probabilistic truncation would wrap
        # one in 8 at 2^29 (README, "Truncation"), so always exact
        with _session.training_work():
            for _ in range(4):
                y = y * y
    if recorded:
        kept = y._wrap(y._t)  # the value, not y: y may be changed in place (mul_)
        ag.record(y, (x,), lambda g: (g * kept,))
    return y


def _exp_top(x) -> float:
    """The largest input :func:`exp` keeps: e^top = 2^(62 - 2f) (for a torch
    tensor, the default f = 16's bound)."""
    f = x._s().precision_bits if _is_shared(x) else 16
    return (62 - 2 * f) * math.log(2.0)


def _exp_floor(x) -> float:
    """How far below 0 the exponentials clamp: 16 (e^-16 = 1.1e-7), or
    just inside the fixed-point range where that is smaller (|x| < 8 at
    f = 30, where -16 itself cannot be encoded)."""
    f = x._s().precision_bits if _is_shared(x) else 16
    return min(16.0, 0.99 * 2.0 ** (63 - 2 * f))


_EXP_TAYLOR11 = tuple(1.0 / math.factorial(k) for k in range(12))


def reciprocal(x, lo_exp: int | None = None, hi_exp: int = 30):
    """1 / x for 2^lo_exp <= |x| < 2^hi_exp, either sign: 1/x = sign(x) / |x|
    with the range-reduced :func:`_reciprocal_pos` (until 2026-12-05
    CrypTen's Newton iteration from a fixed guess, right on about [0.02,
    200] only: 1/1000 came out -1.4e12)."""
    a, neg = _abs_and_ltz(x)
    y = _reciprocal_pos(a, lo_exp, hi_exp)
    return y - 2 * (neg * y)


def reciprocal_pos(x):
    """1 / x for x in [2^-16, 2^30), known positive (CrypTen's ``all_pos``):
    :func:`reciprocal` without the sign; an x <= 0 gives garbage."""
    return _reciprocal_pos(x)


def _reciprocal_pos(x, lo_exp: int | None = None, hi_exp: int = 30):
    """1 / x for x in [2^lo_exp, 2^hi_exp), range-reduced as :func:`log`:
    one batched comparison puts x in an octave [2^j, 2^(j+1)), the one-hot
    indicator selects m = x / 2^j in [1, 2) (exact powers of two), the
    reciprocal of m (:func:`_reciprocal_unit`) is scaled back by 2^-j the
    same way. Within a few units of 2^-16 plus 1e-9 relative."""
    ind, exps, m = _octave(x, lo_exp, hi_exp, "reciprocal")
    return (ind * _pow2_copies(_reciprocal_unit(m), exps)).sum(0)


def _octave(x, lo_exp: int, hi_exp: int, label: str):
    """(one-hot octave indicator [k, *x.shape], the exponents -j of the
    octaves' powers of two, m = x / 2^j in [1, 2)) for x in [2^lo_exp,
    2^hi_exp): one batched comparison and one selection product."""
    ind, exps = _octave_indicator(x, lo_exp, hi_exp, label)
    return ind, exps, (ind * _pow2_copies(x, exps)).sum(0)


def _octave_indicator(x, lo_exp: int, hi_exp: int, label: str):
    """:func:`_octave`'s indicator and exponents only: one batched
    comparison, no selection (norm selects copies of another tensor)."""
    lo_exp, hi_exp = _encodable_exps(x, lo_exp, hi_exp, 1, label)
    starts = list(range(lo_exp, hi_exp))
    return _bucket_indicator(x, starts, "reciprocal"), [-j for j in starts]


def _select(ind, copies, den):
    """sum over buckets of ind * copies, the indicator at ``den``'s shape
    and the copies at a numerator's that may broadcast against it (ranks
    aligned after the bucket dim): one product of the broadcast shape."""
    if _is_shared(den) and tuple(copies.shape[1:]) != tuple(den.shape):
        nd, k = copies.dim() - 1, ind.shape[0]
        rank = max(den.dim(), nd)
        ind = ind.reshape(k, *([1] * (rank - den.dim())), *den.shape)
        copies = copies.reshape(k, *([1] * (rank - nd)), *copies.shape[1:])
    return (ind * copies).sum(0)


def inv_sqrt(x):
    """1 / sqrt(x) for x in [2^-16, 2^30): the range-reduced
    :func:`ratio_inv_sqrt` (1e-4 relative). CrypTen's Newton iteration from
    its fixed initial guess held on [0.1, 130] only and returned garbage
    beyond (std of [100, 200, 300] was -3e9); this one costs a batched
    comparison with 22 thresholds per element more."""
    return ratio_inv_sqrt(x * 0 + 1, x, None, 30)


def ratio_inv_sqrt(num, den, lo_exp: int | None = -10, hi_exp: int = 30):
    """num / sqrt(den) for den in [2^lo_exp, 2^hi_exp) (even exponents; None:
    the finest the session encodes, :func:`_encodable_exps`),
    within 1e-4 relative plus a few units of 2^-f absolute over the whole
    range (beyond what the encoding of den contributes: its rounding, 2^-17,
    is a relative error of 2^-18 / den in the result, 0.4% at den = 1e-3),
    where :func:`inv_sqrt` holds only on [0.1, 130].

    Range reduction: one batched comparison of den with 2^j (j = lo_exp+2,
    lo_exp+4, ..) puts den in a bucket [2^j, 2^(j+2)); the one-hot bucket
    indicator selects den / 2^j (in [1, 4)) and num / 2^(j/2), each a product
    of the shared indicator with den and num scaled by a public power of
    two, so both stay O(1) and keep their relative precision; Newton's
    iteration for 1/sqrt on [1, 4) from a fitted line (3 steps) finishes. Used by
    Adam, whose second moment spans many octaves."""
    _, _, y, num_n = _ratio_parts(num, den, lo_exp, hi_exp)
    return num_n * y


def _ratio_parts(num, den, lo_exp, hi_exp):
    """:func:`ratio_inv_sqrt`'s pieces: the bucket indicator, the buckets'
    starts j, 1 / sqrt(den / 2^j) and num / 2^(j/2) (their product is the
    result)."""
    if (lo_exp is not None and (lo_exp % 2 or not lo_exp < hi_exp)) or hi_exp % 2:
        raise ValueError("ratio_inv_sqrt needs even exponents lo_exp < hi_exp")
    lo_exp, hi_exp = _encodable_exps(den, lo_exp, hi_exp, 2, "ratio_inv_sqrt")
    starts = list(range(lo_exp, hi_exp, 2))  # bucket j covers [2^j, 2^(j+2))
    ind = _bucket_indicator(den, starts, "ratio_inv_sqrt")
    half = (ind * _pow2_copies(den, [-j - 1 for j in starts])).sum(0)  # d / 2, d in [1, 4)
    # num may broadcast against a smaller den (a row norm)
    num_n = _select(ind, _pow2_copies(num, [-j // 2 for j in starts]), den)
    return ind, starts, inv_sqrt_half(half), num_n


def ratio_inv_sqrt_pair(num, d):
    """num / sqrt(d_i d_j) for a square num [v, v] and d [v] in [2^-16,
    2^30) (a 0-d num and d: num / d): :func:`ratio_inv_sqrt`'s one bucket
    comparison and Newton iteration on d, whose selection and product are
    applied along the rows, then the columns; num / sqrt(d_i) stays below
    sqrt(d_j) when |num| <= sqrt(d_i d_j) (a correlation's covariance), and
    no small 1 / sqrt(d_i d_j) is formed in fixed point."""
    lo_exp, hi_exp = _encodable_exps(d, None, 30, 2, "ratio_inv_sqrt")
    starts = list(range(lo_exp, hi_exp, 2))
    ind = _bucket_indicator(d, starts, "ratio_inv_sqrt")
    y = inv_sqrt_half((ind * _pow2_copies(d, [-j - 1 for j in starts])).sum(0))
    halves = [-j // 2 for j in starts]
    if num.dim() == 0:
        return (
            _select(ind, _pow2_copies(_select(ind, _pow2_copies(num, halves), d) * y, halves), d)
            * y
        )
    r_ind, r_y = ind.unsqueeze(-1), y.unsqueeze(-1)  # along the rows: d_i
    a = _select(r_ind, _pow2_copies(num, halves), r_y) * r_y
    c_ind, c_y = ind.unsqueeze(-2), y.unsqueeze(-2)  # along the columns: d_j
    return _select(c_ind, _pow2_copies(a, halves), c_y) * c_y


def inv_sqrt_half(half):
    """1 / sqrt(d) for d = 2 ``half`` in [1, 4): the relative-minimax line
    1.066277 - 0.152325 d (within 8.6%), then Newton y <- y (1.5 - (d/2)
    y^2): 1.1e-2, 1.7e-4, 4.5e-8. Three products a step, the halving
    folded into the caller's range reduction (5 steps from 0.7, with a
    division, were 21 sequential operations; these are 10)."""
    y = 1.066277 - half * 0.30465
    for _ in range(3):
        y = y * (1.5 - half * (y * y))
    return y


def sqrt(x):
    """sqrt(x) = x / sqrt(x) for x in [2^-16, 2^30) by :func:`ratio_inv_sqrt`
    (1e-4 relative; the numerator is range-reduced with the denominator, so
    a large x keeps its relative precision); sqrt(0) = 0. Under autograd
    one recorded node whose backward is g / (2 sqrt(x)), 1 / sqrt(x) taken
    from the same range reduction (the bucket's 2^(-j/2), public, times
    the Newton result: two products more in the forward). Until 2026-12-07
    autograd went back through the reduction's own steps, whose rounding
    the bucket's 2^(-j/2) scaled up: about 2.6 units of 2^-16 / x off
    whatever g (sqrt at 0.005 with g = 1e-3: 0.0044 to 0.0105 for 0.0071;
    norm and std of rows near 0.1 off by 76%, a user probe)."""
    if not (_is_shared(x) and ag.needs_grad(x)):
        return ratio_inv_sqrt(x, x, None, 30)
    with ag.inside(True):
        out, half_inv = sqrt_with_inverse(x, 0.5)  # 1 / (2 sqrt(x))
    ag.record(out, (x,), lambda g: (g * half_inv,))
    return out


def sqrt_with_inverse(x, factor: float = 1.0):
    """(sqrt(x), factor / sqrt(x)) from one range reduction (as
    :func:`ratio_inv_sqrt`'s, 1e-4 relative each): the Newton result times
    the bucket's num / 2^(j/2), and times the public factor 2^(-j/2) the
    indicator selects (two products more than sqrt alone)."""
    ind, starts, y, root = _ratio_parts(x, x, None, 30)
    lead = (len(starts),) + (1,) * x.dim()
    w = np.array([factor * 2.0 ** (-j // 2) for j in starts]).reshape(lead)
    return root * y, (ind * w).sum(0) * y


def available_up_to(x, what: str, most: int) -> None:
    """InvalidArgumentError where the session's precision is above ``most``,
    the highest at which ``what`` is right on ordinary inputs (a sweep of
    f = 24..30 on [-3, 3] and the documented ranges, tests/test_probe_ob.py):
    above it, its internal constants or intermediate values leave the
    encoding's range (|v| < 2^(63 - 2f)). Until 2026-12-07 an error naming
    one of those constants, or (LayerNorm at f = 29) a silently wrong value."""
    f = x._s().precision_bits if _is_shared(x) else 0
    if f > most:
        raise InvalidArgumentError(
            f"{what} is not available at precision_bits={f} (at most {most}): its "
            f"intermediate values leave the fixed-point range (|v| < 2^{63 - 2 * f}); "
            f"use precision_bits={most} or fewer"
        )


def log(x, lo_exp: int | None = None, hi_exp: int = 30):
    """ln(x) for x in [2^lo_exp, 2^hi_exp), range-reduced: one batched
    comparison puts x in an octave [2^j, 2^(j+1)), the one-hot indicator
    selects m = x / 2^j in [1, 2) (exact powers of two) and ln(x) = P(m -
    1.5) + j ln 2, P a degree-8 fit of ln(1.5 + v), |v| <= 1/2 (1.5e-8;
    centred, so Horner's k-th rounding is damped by |v|^k). j ln 2 + P(0),
    one rounded integer per octave (selected exactly, locally), joins the
    last Horner truncation: no product of its own, and not j times a
    rounded ln 2 (-4.1e-5 at 2^29 until 2026-12-05), up to 18 fractional
    bits (above, j times an encoded ln 2 again). Within 3e-5 of ln of the
    encoded x at f = 16 (measured), where CrypTen's Householder
    iteration (:func:`log_crypten`, kept) was 1e-2 off at 10 and 0.078 at
    1e-3 (cross-entropy values came out low by up to 51%)."""
    available_up_to(x, "log", 29)
    lo_exp, hi_exp = _encodable_exps(x, lo_exp, hi_exp, 1, "log")
    starts = list(range(lo_exp, hi_exp))
    ind = _bucket_indicator(x, starts, "log")
    m = (ind * _pow2_copies(x, [-j for j in starts])).sum(0)  # in [1, 2)
    if not _is_shared(x):
        c0 = [j * math.log(2.0) + _LOG_MID_F[0] for j in starts]
        return _horner((0.0, *_LOG_MID_F[1:]), m - 1.5) + _octave_index(ind, c0)
    f = x._s().precision_bits
    mid = _log_mid(f)  # coefficients on the session's 2^-f grid
    c0 = [j * math.log(2.0) + mid[0] for j in starts]
    # j ln 2 + P(0) on the 2^-f grid, selected by integer factors, which must
    # stay below 2^(61 - 2f) (the engine's bound for an exact product)
    if 61 - 2 * f - math.ceil(math.log2(max(abs(c) for c in c0) + 1)) < f:
        # above 18 bits that grid does not fit: j times an encoded ln 2, one
        # product more, as before 2026-12-05 (3e-7 off at 24 bits, measured)
        return log1p_unit(m - 1.0) + _octave_index(ind, starts) * math.log(2.0)
    ints = _octave_index(ind, [round(c * 2.0**f) for c in c0])
    return _horner((0.0, *mid[1:]), m - 1.5, plus=(ints, 2.0**-f))


def _octave_index(ind, starts):
    """sum_i ind[i] * starts[i] (the octave's exponent, or a value per
    octave): by integer factors, exact, no communication."""
    shape = (len(starts),) + (1,) * (ind.dim() - 1)
    js = np.array(starts).reshape(shape)
    if _is_shared(ind):
        return (ind * js).sum(0)
    import torch

    return (ind * torch.as_tensor(js, dtype=ind.dtype)).sum(0)


_LOG1P_UNIT = _fit_log1p_unit()


def log1p_unit(u):
    """log(1 + u) for u in [0, 1]: the degree-8 polynomial alone (8
    products, 3.4e-8 from log1p; outside [0, 1], wrong silently)."""
    return _horner(_LOG1P_UNIT, u)


def sigmoid(x, within16: bool = False):
    """1 / (1 + e^-x), evaluated on |x| so the reciprocal's input stays in
    [1, 2], then mirrored: sigmoid(x) = 1 - sigmoid(-x) for x < 0. e^-|x|
    is the range-reduced :func:`exp_nonpos`, valid for every |x| (CrypTen's
    limit form turns negative past |x| = 256 and squares to a huge value:
    sigmoid(1000) was -2.7e12). ``within16``: the caller guarantees |x| <=
    16 (SiLU's clamped input), so exp_nonpos's clamp at -16 is left out
    (one comparison less)."""
    a, neg = _abs_and_ltz(x)
    return sigmoid_from_parts(1 + exp_nonpos(-a, within16), neg)


def sigmoid_from_parts(one_plus_e, neg):
    """sigmoid(x) from 1 + e^-|x| and [x < 0] (what :func:`sigmoid` computes
    first; a caller that has them, BCEWithLogitsLoss, saves the comparison
    and the exponential)."""
    s = _reciprocal_unit(one_plus_e)  # 1 + e^-|x| is in (1, 2]
    return s + neg * (1 - 2 * s)


def tanh(x):
    """2 sigmoid(2x) - 1."""
    return 2 * sigmoid(2 * x) - 1


def _max_keep(x, dim):
    """The row maximum that softmax, log_softmax and logsumexp subtract:
    detached, since the shift has no gradient of its own (through it, the
    backward summed every element's rounding onto the argmax: 3.5e-4 at
    rows of 512, 7% of the largest gradient, against 7e-5 without)."""
    return x.amax(dim, keepdim=True).detach()


def exp_nonpos(z, within16: bool = False):
    """e^z for z <= 0 (a max-shifted softmax input), range-reduced: z is
    clamped at -16 (e^-16 = 1.1e-7; one comparison), e^(z/16) on [-1, 0] is
    its Taylor polynomial of degree 9 (error 2.8e-7), then squared 4 times.
    Squaring doubles a relative error, so 4 squarings instead of CrypTen's 8
    keep the fixed-point error to 16 times a truncation's: about 3e-4 of
    the value against CrypTen's 12% at z = -8 (its (1 + z/256)^256).
    ``within16``: z is known to be in [-16, 0], no clamp (where the floor
    is 16, below 28 fractional bits)."""
    lo = _exp_floor(z)
    zc = z if within16 and lo == 16.0 else (z + lo).relu() - lo
    y = zc / 16
    acc = _horner(_EXP_TAYLOR, y)
    for _ in range(4):
        acc = acc * acc
    return acc


_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(10))


def _octaves(x, n: int) -> int:
    """The top exponent for a softmax row sum in [1, n]: 2^k > n (at least 2
    octaves, so that the range reduction has a threshold). A row too long
    for the session's fixed-point range (2^(62 - 2f): 2^30 at f = 16, 2^14
    at f = 24) raises instead of reducing over a narrower range."""
    k = max(2, int(n).bit_length())
    if _is_shared(x):
        top = 62 - 2 * x._s().precision_bits
        if k > top:
            raise ValueError(
                f"softmax over rows of {n} entries: the row sum needs 2^{k}, beyond what "
                f"{x._s().precision_bits} fractional bits can hold (2^{top}); use fewer "
                "precision_bits"
            )
    return k


def softmax(x, dim: int):
    """exp(x - max) / sum, with the range-reduced :func:`exp_nonpos` and
    the sum's range-reduced reciprocal over its octaves [1, n] (a batched
    comparison with log2(n) thresholds per row: the reciprocal keeps its
    relative precision on any row length). Within 3e-4 absolute of float64
    on rows of 16 to 512 entries of logits with std up to 8
    (tests/test_functions.py)."""
    e = exp_nonpos(x - _max_keep(x, dim))
    return e * _reciprocal_pos(e.sum(dim, keepdim=True), 0, _octaves(x, x.shape[dim]))


def log_softmax(x, dim: int):
    """(x - max) - log(sum exp(x - max)), the range-reduced log over the
    sum's octaves [1, n]."""
    z = x - _max_keep(x, dim)
    return z - log(exp_nonpos(z).sum(dim, keepdim=True), 0, _octaves(x, x.shape[dim]))


def logsumexp(x, dim: int):
    """max + log(sum exp(x - max)) over ``dim`` (kept), as log_softmax's
    normaliser: the range-reduced log over the sum's octaves [1, n]. Within
    4e-4 + n e^-16 + 2 sqrt(n) 2^-16: :func:`exp_nonpos` counts each term
    below e^-16 as e^-16 (a bias of up to n e^-16 in the sum, which is at
    least 1), and rounds each to about a unit, unbiased (sqrt(n) units)."""
    m = _max_keep(x, dim)
    return m + log(exp_nonpos(x - m).sum(dim, keepdim=True), 0, _octaves(x, x.shape[dim]))


# GELU(x) = x/2 + E(x) with E even: E(x) = (x/2) erf(x/sqrt(2)), or for
# approximate="tanh" (x/2) tanh(sqrt(2/pi) (x + 0.044715 x^3)). On |x| < 4,
# E is a degree-10 polynomial in u = x^2/16 in [0, 1], and so is E'(x) / x
# (coefficients below, lowest first: our least-squares fits on 4000
# Chebyshev nodes in u; fit errors 1.3e-6 and 4e-6); beyond, GELU(x) is
# taken as relu(x), off by at most 1.3e-4 at |x| = 4 (tanh form: 7e-5) and
# its derivative by 5e-4. Horner in u keeps every intermediate bounded
# where the polynomial is used (u <= 1, coefficients below 150); simulated
# in fixed point at f = 16 the polynomials add at most 6e-5 (value) and
# 1.7e-4 (derivative). Beyond |x| = 4 the polynomial is evaluated anyway
# and discarded by an exact integer selection. Literals, so that every
# party holds the same public constants.
_GELU_COEFFS = {
    "none": (
        1.32246837619e-06, 6.38274492753, -17.0076871528, 40.6235719641,
        -75.8560717897, 111.02892281, -125.396974856, 104.725047629,
        -60.1756001118, 21.005490805, -3.32957318791,
    ),
    "tanh": (
        1.32233832115e-06, 6.38276780086, -17.0942894129, 41.6317016001,
        -80.6414263683, 123.783083382, -146.639401439, 127.472114888,
        -75.4657621576, 26.8923122594, -4.32117334461,
    ),
}  # fmt: skip
_GELU_DERIV_COEFFS = {
    "none": (
        0.797883247506, -4.25505504808, 15.3056279146, -38.6797918993,
        73.7076069089, -108.893366972, 123.574911362, -103.473341212,
        59.5450974769, -20.8038955325, 3.29945061526,
    ),
    "tanh": (
        0.797885252124, -4.27669682005, 15.6846502732, -41.0936398231,
        81.8569718473, -125.61315104, 145.516205655, -121.948343748,
        69.1302198042, -23.5526216597, 3.62360456234,
    ),
}  # fmt: skip


def _horner(c, u, plus=None):
    """c[0] + c[1] u + ... (+ k w for plus = (w, k)) by Horner's rule: one
    engine call for a shared u that autograd does not record through (the
    same products and rounds as the composition below, without a call and a
    copy per step; k w is folded into the last product's truncation)."""
    if _is_shared(u) and not ag.needs_grad(u) and (plus is None or _is_shared(plus[0])):
        coeffs = [float(v) for v in c]
        if plus is None:
            return u._wrap(u._s().horner(u._t, coeffs))
        return u._wrap(u._s(plus[0]).horner(u._t, coeffs, plus[0]._t, float(plus[1])))
    acc = c[-1] * u + c[-2]
    for k in range(len(c) - 3, -1, -1):
        acc = acc * u + c[k]
    return acc if plus is None else acc + plus[0] * plus[1]


def gelu(x, approximate: str = "none"):
    """GELU as ``torch.nn.functional.gelu(x, approximate=...)``: the
    polynomial above on |x| < 4, relu(x) beyond, selected by one batched
    comparison call ([x < 0] and [x^2 / 16 > 1] together); within 2e-4 of
    torch's float64 GELU (either form) for |x| < 2^15 (x^2 must fit the
    fixed-point range). Under autograd one recorded node whose backward is
    the fitted derivative (within 7e-4 of GELU's), not the derivative of
    the selection's arithmetic."""
    if approximate not in _GELU_COEFFS:
        # a ValueError and a RuntimeError (torch raises RuntimeError)
        raise InvalidArgumentError(
            f"approximate argument must be either 'none' or 'tanh', got {approximate!r}"
        )
    if not _is_shared(x):
        return _gelu_plain(x, approximate)
    available_up_to(x, f"gelu (approximate={approximate!r})", 28 if approximate == "none" else 27)
    recorded = ag.needs_grad(x)
    with ag.inside(recorded):
        # x^2 / 16, one truncation: exact even in inference ("auto"), where
        # the probabilistic one failed for 21% of elements at |x| = 30000
        # (x^2 before truncation is near 2^62) and 1.6% at 8192
        with _session.training_work():
            u = x._wrap(x._s().mul_shift(x._t, x._t, 4))
        neg, negx, out = _gelu_indicators(x, u, recorded)
        # u is not clamped: beyond |x| = 4 the polynomial leaves the
        # fixed-point range (its words wrap), and the integer selection by
        # `out` replaces it there exactly (no truncation of those words).
        # x / 2 joins the last Horner step's truncation.
        inner = _horner(_GELU_COEFFS[approximate], u, plus=(x, 0.5))
        y = inner + _select_int(out, x - negx - inner)
    if recorded:

        def back(g):
            d = x * _horner(_GELU_DERIV_COEFFS[approximate], u) + 0.5
            return (g * (d + _select_int(out, (1 - neg) - d)),)

        ag.record(y, (x,), back)
    return y


def _gelu_plain(x, approximate):
    """GELU of a public tensor by the same approximation (u clamped to 1
    beyond |x| = 4)."""
    xx = x * x
    out = (xx > 16).to(x.dtype)
    u = xx / 16
    inner = x * 0.5 + _horner(_GELU_COEFFS[approximate], u - out * (u - 1))
    relu = x - (x < 0).to(x.dtype) * x
    return inner + out * (relu - inner)


def _select_int(bit, v):
    """bit * v for a 0/1 ring integer `bit`: exact and one round whatever
    v's words are (no truncation)."""
    return bit._wrap(bit._s(v).mul_int(bit._t, v._t))


def _gelu_indicators(x, u, with_neg, label="gelu"):
    """([x < 0] in fixed point, or None; [x < 0] x; [x^2 > 16] as a 0/1 ring
    integer) from one comparison call: the sign bits of x and of 1 - u
    (u = x^2 / 16) injected into x (and 1.0, for the backward) and into the
    word 1."""
    shape, n = tuple(x.shape), x.numel()
    sel = x._cat([x.reshape(-1), (1 - u).reshape(-1)], 0)
    word = 2.0 ** -x._s().precision_bits  # encodes as the ring word 1
    if not with_neg:
        v = x._cat([x.reshape(-1), x._public_like(word, [n])], 0)
        m = sel._msb_times(v, label)
        return None, m[:n].reshape(shape), m[n:].reshape(shape)
    top = x._cat([x._public_like(1.0, [n, 1]), x.reshape(n, 1)], -1)
    v = x._cat([top, x._public_like(word, [n, 2])], 0)
    m = sel._msb_times(v, label)
    return m[:n, 0].reshape(shape), m[:n, 1].reshape(shape), m[n:, 0].reshape(shape)


# erf(z) = z P(u) with u = z^2 / 8 on |z| < 2 sqrt(2) (where erf reaches
# 1 - 6.3e-5), sign(z) beyond; its derivative 2/sqrt(pi) e^(-z^2) is Q(u)
# there and 0 beyond. P and Q have degree 9 (coefficients lowest first: our
# least-squares fits on 4000 Chebyshev nodes in u); simulated in fixed point
# at f = 16 (coefficients and every Horner step rounded) erf is within
# 1.1e-4 of math.erf everywhere and the derivative within 3.8e-4 (its value
# at the cut). Literals, so that every party holds the same constants.
_ERF_COEFFS = (
    1.12837785333, -3.00873819641, 7.21218281962, -13.6270170197, 20.4925040018,
    -24.2388257281, 21.5563322934, -13.3216738084, 5.01699351396, -0.856605691475,
)  # fmt: skip
_ERF_DERIV_COEFFS = (
    1.12835896643, -9.02281494587, 35.9611912263, -94.2722229733, 178.209828815,
    -247.267549493, 245.033167967, -162.691935947, 64.2467594026, -11.3244186476,
)  # fmt: skip


def erf(x):
    """erf(x) of a shared x, as ``torch.erf``: the polynomial above on
    |x| < 2 sqrt(2), +-1 beyond, selected by one batched comparison call
    ([x < 0] and [x^2 / 8 > 1] together, as GELU's). Under autograd one
    recorded node whose backward is the fitted derivative."""
    available_up_to(x, "erf", 29)
    recorded = ag.needs_grad(x)
    with ag.inside(recorded):
        with _session.training_work():  # x^2 / 8, one exact truncation
            u = x._wrap(x._s().mul_shift(x._t, x._t, 3))
        neg, _, out = _gelu_indicators(x, u, True, "erf")
        inner = x * _horner(_ERF_COEFFS, u)
        y = inner + _select_int(out, (1 - 2 * neg) - inner)
    if recorded:

        def back(g):
            d = _horner(_ERF_DERIV_COEFFS, u)
            return (g * (d - _select_int(out, d)),)

        ag.record(y, (x,), back)
    return y


# 2^u on [0, 1]: our least-squares fit of degree 6 on 4000 Chebyshev nodes
# (within 2.7e-9), lowest coefficient first.
_EXP2_COEFFS = (
    1.00000000259, 0.693146928693, 0.240230502045, 0.0554804263258,
    0.00968458045233, 0.0012387821479, 0.000218775047699,
)  # fmt: skip


def exp2(x):
    """2^x of a shared x, range-reduced: x clamped to [-(f + 1), 62 - 2f]
    (below, 2^x is under the resolution; above, the result would leave the
    range a product may reach: 2^30 at f = 16), one batched comparison puts
    it in a unit bucket [k, k + 1), the fraction u = x - k in [0, 1] goes
    through the fitted polynomial, and the bucket's 2^k scales it exactly.
    Within a few units of 2^-f plus 2^-15 relative, where CrypTen's
    (1 + x/2^n)^(2^n) exp is 6% off for 2^8 and 30% for 2^20."""
    import torch

    f = x._s().precision_bits
    lo, hi = -(f + 1), 62 - 2 * f
    xc = x.clamp(float(lo), float(hi))
    starts = list(range(lo, hi))
    ind = _bucket_indicator(xc, starts, "exp2", unit=True)
    ks = torch.tensor(starts, dtype=torch.float64).reshape(-1, *([1] * x.dim()))
    u = xc - (ind * ks).sum(0)  # an integer factor per bucket: exact
    p = _horner(_EXP2_COEFFS, u)
    return (ind * _pow2_copies(p, starts[::-1]).flip(0)).sum(0)


def pow_pos(x, e: float):
    """x^e = 2^(e log2 x) for x > 0 and a public e (range-reduced log and
    exp2: about 1e-4 relative). Under autograd one recorded node whose
    backward is g e x^(e - 1), x^(e - 1) = 2^((e - 1) log2 x) from the
    forward's log (one exp2 more, in the backward). Until 2026-12-07
    autograd went back through the log's range reduction, whose 2^-j
    scaled the rounding of small gradients up (x^0.3 at 0.005 with g =
    1e-3: 0.0078 to 0.0156 for 0.0122, a user probe)."""
    recorded = _is_shared(x) and ag.needs_grad(x)
    with ag.inside(recorded):
        lg = log(x)
        out = exp2(lg * (e / math.log(2)))
    if recorded:
        kept = lg._wrap(lg._t)
        ag.record(out, (x,), lambda g: (g * (exp2(kept * ((e - 1) / math.log(2))) * e),))
    return out
