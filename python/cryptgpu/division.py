"""Division by a shared divisor: ``x / y``, ``1 / y``, ``softsign``
(:func:`divide`, also :func:`cryptgpu.functions.divide`)."""

from __future__ import annotations

import numpy as np

from . import autograd as ag
from ._native import InvalidArgumentError
from ._octaves import (
    _bucket_indicator,
    _encodable_exps,
    _is_shared,
    _pick,
    _pow2_copies,
    _reciprocal_unit,
)
from ._plain import _ibuf


def divide(num, den, lo_exp: int | None = None, hi_exp: int = 30):
    """num / den for a shared den with 2^lo_exp <= |den| < 2^hi_exp (lo_exp
    None: 2^-max(16, f), :func:`_encodable_exps`), either
    sign, num shared or public: range-reduced in den. One batched
    comparison puts |den| in an octave [2^j, 2^(j+1)) as a one-hot
    indicator of ring integers, which selects m = den / 2^j (in [1, 2) or
    (-2, -1]) and num / 2^j exactly (:func:`_pick`: no truncation, one
    round for both); then q = num / 2^j times 1 / m (Newton from the line
    sign(den) 24/17 - 8/17 m), one product whose value is the quotient's.
    Within a few units of 2^-16 plus 2^-15 relative (1 / m's own unit)
    over the whole range, and right for every |q| < 2^30 under the exact
    truncation; under the probabilistic one the only truncation of the
    quotient's size is that last product's (|q| / 2^32 per element).

    Until 2026-12-06 the selection was a fixed-point product, whose value,
    num / 2^j = q m, is up to twice the quotient: quotients from about
    2^29 to 2^30 broke the exact truncation's range (6e8 / 0.99 wrong in 5%
    of elements), a public numerator's copies were clamped to 2^30 (6e8 /
    0.99 gave 5.42e8 in every element), the sign came from one product
    more (-q at the quotient's size), and under "auto" inference those
    truncations failed 2 to 3.4 times as often as one of the quotient's
    size would. num * (1 / den), as until 2026-12-05, lost the quotient
    where 1 / den is small: 5e8 / 1e9 gave 0. num may broadcast against
    den; the indicator stays at den's shape until the selection."""
    import torch

    if not _is_shared(num) and _is_shared(den):
        # a public numerator is checked as any public operand (x * inf): a
        # complex one or one that requires grad (beside a den that does) as
        # den's _plain checks them, and NaN, infinite or |num| >= 2^(63-2f)
        # refused (EncodingError) by encoding it (clamped later, inf / x gave
        # 2^30, -2^40 / x garbage of either sign)
        num = den._plain(num, "div")
        den._public(num)
    nshape = tuple(num.shape) if hasattr(num, "shape") else np.shape(num)
    dshape = tuple(den.shape)
    try:
        bshape = tuple(torch.broadcast_shapes(nshape, dshape))
    except RuntimeError as e:  # torch's words, before any work
        raise InvalidArgumentError(str(e)) from None
    a, start = _abs_and_start(den)
    lo_exp, hi_exp = _encodable_exps(a, lo_exp, hi_exp, 1, "division")
    starts = list(range(lo_exp, hi_exp))
    exps, k = [-j for j in starts], len(starts)
    ind = _bucket_indicator(a, starts, "reciprocal", ring=True)  # [k, *den.shape]
    ind_b = _aligned(ind, k, dshape, bshape)  # [k, prod(bshape)]
    nd = int(np.prod(dshape, dtype=np.int64))
    if _is_shared(num):
        # den's and num's copies in one call, both selected in one product
        copies = _pow2_copies(den._cat([den.reshape(-1), num.reshape(-1)], 0), exps)
        cn = _aligned(copies[:, nd:].reshape(k, *nshape), k, nshape, bshape)
        both = _pick(ind._cat([ind.reshape(k, nd), ind_b], 1), copies._cat([copies[:, :nd], cn], 1))
        m, q = both[:nd].reshape(dshape), both[nd:].reshape(bshape)
    else:
        m = _pick(ind.reshape(k, nd), _pow2_copies(den.reshape(-1), exps)).reshape(dshape)
        q = _public_pick(ind_b, num, exps, bshape).reshape(bshape)
    return q * _reciprocal_unit(m, start)  # num / 2^j / m


def _abs_and_start(den):
    """(|den|, for the comparisons only: unrecorded; sign(den) 24/17, the
    start of Newton's line for 1 / m) from one comparison call, the sign
    bit injected into den and into the public 48/17."""
    with ag.no_grad():
        c = den._public_like(48.0 / 17.0)
        v = den._cat([den.unsqueeze(-1), c.unsqueeze(-1)], -1)
        neg = den._msb_times(v, "abs")
        return den - 2 * neg[..., 0], 24.0 / 17.0 - neg[..., 1]


def _aligned(t, k: int, shape, bshape):
    """[k, *shape] broadcast to [k, *bshape] (ranks aligned after dim 0),
    flattened to [k, prod(bshape)]."""
    shape, bshape = tuple(shape), tuple(bshape)
    if shape != bshape:
        t = t.reshape(k, *([1] * (len(bshape) - len(shape))), *shape).expand(k, *bshape)
    return t.reshape(k, -1)


def _public_pick(ind, num, exps, bshape):
    """num 2^e for the e that the one-hot ring-integer ``ind`` [k, n]
    selects: each copy's fixed-point word an integer factor, exact and
    local. A copy not selected may be any size (7e5 / 2^-16): its word is
    only kept inside the int64 range; the selected one is at most twice a
    quotient below 2^31."""
    import torch

    f = ind._s().precision_bits
    num = torch.as_tensor(num, dtype=torch.float64).broadcast_to(bshape).reshape(1, -1)
    scale = torch.tensor([2.0 ** (e + f) for e in exps], dtype=torch.float64).reshape(-1, 1)
    v = num * scale  # exact: powers of two
    words = (v.sign() * (v.abs() + 0.5).floor()).clamp(-(2.0**62), 2.0**62)  # halves away from 0
    return ind._wrap(
        ind._s().mul_public_int(ind._t, _ibuf(words.to(torch.int64).reshape(-1).numpy()))
    ).sum(0)
