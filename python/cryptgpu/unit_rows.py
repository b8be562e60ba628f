"""v / ||v|| over one dim for a SharedTensor (``F.normalize``'s p = 2,
``F.cosine_similarity``): the row's sum of squares range-reduced once, its
inverse square root applied to every element of the row by an exact
product of ring integers.

Until 2026-12-06 this was ``ratio_inv_sqrt(v, sum v^2, None, 30)``: its
range reduction stopped at a sum of squares of 2^30, so a row of norm
above 2^15 (64 values of 6000: -0.1249 for torch's 0.125) came out as
garbage, and every element of the row was selected from 23 scaled copies
of itself (3.1 MB per party for a [50, 64] input, with the exact
truncation); the gradient, the composition's, lost the projection term
for large norms (1 / norm^3 is below 2^-16) and was 0.5% off at norms
near 25.
"""

from __future__ import annotations

import numpy as np

from . import _session
from . import autograd as ag
from . import functions as fx
from ._octaves import _bucket_indicator, _pick, _pow2_copies


def unit(v, dim: int):
    """v / sqrt(sum v^2) over ``dim`` (kept), for a SharedTensor v whose
    elements are below 2^(31 - f) in magnitude at f fractional bits (2^15
    at f = 16, 2^11 at 20, 2^7 at 24: each square below 2^(62 - 2f), the
    range of an exact product; a larger element's square may wrap, with no
    error: 10.9 for a value of at most 1 at f = 24 and elements near 1500;
    ``v / v.norm(dim, keepdim=True)``, range-reduced by max |v|, takes
    elements up to 2^30 at f = 16) and whose row sums of squares are in
    [2^-16, 2^46) at f = 16 (up to 2^(j_max + 2), :func:`_exponents`:
    2^44 at f = 17 and 18, 2^42 at 19, 2^40 at 20, 2^24 at 24): within
    1e-4 relative plus two units of 2^-f, for rows of norm 4e-3 to 2^23
    at f = 16 (at most 2^16 elements of 2^15). A zero row
    gives 0 (torch's too); a row whose sum of squares is below 2^-16
    (norm below 4e-3) gives a finite value with no significant bits, and
    rows of many elements near 2^-8 lose bits to the truncation of each
    square (64 elements of 0.01: 3% off).

    The squares are truncated exactly and summed; one batched comparison
    puts the sum s in a bucket [2^j, 2^(j+2)) (j even), whose one-hot
    indicator (ring integers) selects s 2^(T - j - 1) exactly (integer
    factors, no truncation; T = j_max + 1), divided by 2^T exactly into
    d / 2 = s 2^-(j+1) in [1/2, 2); Newton's iteration gives y = 1 /
    sqrt(d) (:func:`cryptgpu.functions.inv_sqrt_half`), and 1 / ||v|| =
    y 2^-J, J = j / 2. Each element is v y 2^(H - J) 2^-H: y 2^(H - J)
    selected from integer copies of y (H = J_max + 1), the product with v
    one of ring integers (no truncation; |v / ||v||| <= 1 keeps it below
    2^(2f + H + 1)), and one exact division by 2^(f + H).

    Under autograd one recorded node whose backward is torch's, (g - u
    sum(g u)) / ||v|| for u the result, scaled per row as the forward
    (:func:`_times_inv_norm`): within 1e-4 relative plus a few units of
    2^-f (and of 2^-f / ||v|| for norms below 1) for gradients below
    2^24 (2^(62 - f - j_max / 2))."""
    recorded = ag.needs_grad(v)
    with ag.inside(recorded):
        with _session.training_work():  # exact squares: each below 2^30
            sq = (v * v).sum(dim, keepdim=True)
        ind, halves, y = _inv_norm(sq)
        out = _times_inv_norm_bounded(v, y, ind, halves)
    if recorded:
        kept = out._wrap(out._t)  # the value, not out: out may change in place

        def back(g):
            with _session.training_work():
                t = g - kept * (g * kept).sum(dim, keepdim=True)
                return (_times_inv_norm(t, y, ind, halves),)

        ag.record(out, (v,), back)
    return out


def _exponents(s) -> list[int]:
    """The even bucket exponents j of a sum of squares at s's precision f:
    from 2^-f (the finest encodable threshold) to j_max = 60 - f (the sum
    below 2^(62 - f), so that s 2^(f + T - j - 1) stays below 2^62 for the
    exact division), and 2f + j_max / 2 + 1 <= 60 (so that the forward's
    ring product, out 2^(2f + H), H = j_max / 2 + 1, stays below 2^61),
    rounded down to even: j_max = 44 at f = 16, 42 at 17 and 18, 40 at
    19, 38 at 20 (the second bound from f = 20 up), 22 at 24."""
    f = s._s().precision_bits
    lo = -(f - f % 2)
    top = min(60 - f, 2 * (59 - 2 * f))
    top -= top % 2
    return list(range(lo, top + 1, 2))


def _inv_norm(sq):
    """(the ring-integer bucket indicator [k, *sq.shape], the halved
    exponents J = j / 2 of its buckets, y = 1 / sqrt(sq 2^-j)) for row sums
    of squares ``sq``: 1 / sqrt(sq) = y 2^-J in the selected bucket."""
    js = _exponents(sq)
    ind = _bucket_indicator(sq, js, "normalize", ring=True)
    top = js[-1] + 1
    # sq 2^(top - j - 1): integer factors, exact; the selected copy is
    # (d / 2) 2^top < 2^(62 - f), the others may wrap (selected by 0)
    half = _pick(ind, _pow2_copies(sq, [top - j - 1 for j in js]))._divided(2**top, (), exact=True)
    return ind, [j // 2 for j in js], fx.inv_sqrt_half(half)


def _times_inv_norm_bounded(w, y, ind, halves):
    """w y 2^-J for |w y 2^-J| <= 1 (the forward, w = v): y 2^(H - J) from
    integer copies of y, selected exactly; one ring product with w and one
    exact division by 2^(f + H)."""
    h = halves[-1] + 1
    c = _pick(ind, _pow2_copies(y, [h - j for j in halves]))
    return _ring_times(w, c)._divided(2 ** (w._s().precision_bits + h), (), exact=True)


def _times_inv_norm(w, y, ind, halves):
    """w y 2^-J for any |w y 2^-J| < 2^(40 - f) (the backward, where w is
    a gradient): rows with J <= 0 by the fixed-point product of w with y
    2^-J (integer copies of y, selected exactly); rows with J > 0 as w y
    (one product, its unit scaled down by 2^-J) times the ring integer
    2^(J_max - J), divided by 2^J_max exactly. Two products in one call,
    one ring product, one exact division."""
    k0 = sum(1 for j in halves if j <= 0)
    lo = _pick(ind[:k0], _pow2_copies(y, [-j for j in halves[:k0]]))  # 0 in hi rows
    jmax = halves[-1]
    ints = [2 ** (jmax - j) for j in halves[k0:]]
    p = (ind[k0:] * _column(ints, ind.dim())).sum(0)  # ring integers, 0 in lo rows
    shape = tuple(w.shape)
    both = w._cat([w.unsqueeze(0), w.unsqueeze(0)], 0) * w._cat(
        [lo.expand(tuple(shape)).unsqueeze(0), y.expand(tuple(shape)).unsqueeze(0)], 0
    )
    hi = _ring_times(both[1], p)._divided(2**jmax, (), exact=True)
    return both[0] + hi


def _ring_times(w, c):
    """w times the row values ``c`` (broadcast to w's shape) as ring
    integers: the exact product of the two words, no truncation (1 round)."""
    cb = c.expand(tuple(w.shape)).reshape(tuple(w.shape))
    return w._wrap(w._s(c).mul_int(w._t, cb._t))  # (w._t: a view's current shares)


def _column(values, dims: int):
    """Public integers as a [k, 1, ...] int64 array of ``dims`` dims."""
    return np.array(values, dtype=np.int64).reshape((len(values),) + (1,) * (dims - 1))
