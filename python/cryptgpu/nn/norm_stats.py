"""The private statistics of the normalisation layers (LayerNorm, RMSNorm,
GroupNorm, InstanceNorm, BatchNorm in training): the deviations from the
mean, their variance from chunked sums of squares, and 1/sqrt(var + eps)
range-reduced, in two scales at once so that large deviations neither
wrap the sums of squares nor leave the inverse square root's range.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _session, functions
from .. import autograd as ag
from .._octaves import _bucket_indicator, _encodable_exps, _pick, _pow2_copies
from .stats import FixedPointOverflowError

# The sum of squared deviations is taken in chunks of at most _CHUNK
# elements, each one product with a single truncation (a 1 x c by c x 1
# matmul), of the deviations times a public power of two s with
# c s^2 <= _CHUNK: each chunk's s^2 sum(x - mean)^2 must stay below the
# 2^(62 - 2f) a product may reach (2^30 at f = 16: a variance below 2^22
# spread evenly), and the result keeps at least 2^-16 / _CHUNK = 2^-24 of
# absolute precision on the variance.
_CHUNK = 256

# The second scale: the deviations divided by 2^_SHIFT, whose sums of
# squares hold every |x - mean| below deviation_bound(f) (2^17 at f = 16);
# the first scale's hold 2^11 spread evenly over a chunk at f = 16
# (variance 2^22, beyond which until 2026-12-08 LayerNorm and RMSNorm
# silently returned garbage, -7e6 for +-1 at a std of 4000).
_SHIFT = 6

WHAT = "the statistics of LayerNorm, RMSNorm, GroupNorm, InstanceNorm and BatchNorm"


def deviation_bound(f: int) -> float:
    """The largest |x - mean| (RMSNorm: |x|) the statistics take at ``f``
    fractional bits: 2^(min(11, 27 - f) + _SHIFT), 2^17 = 131072 at f = 16
    and below, 2^13 at f = 20. Above 16 bits the second scale's chunk sums
    of squares (up to 2^8 (x - mean)^2 / 4^k) would wrap past 2^(63 - 2f)
    (kept half a power of two inside); at 16 bits and below their mean
    would leave the inverse square root's range, 2^30."""
    return 2.0 ** (min(11, 27 - f) + _SHIFT)


def statistics(x, dims, eps: float, want_var: bool = False, center: bool = True):
    """(mean, var or None, r, f, x - mean) over ``dims``, where
    1/sqrt(var + eps) = r f with f a public power of two and r about
    2^(8 + k) / std: normalise as (x - mean) r then f, which keeps the
    relative precision of 1 / std for large variances (:func:`_times_pow2`:
    one truncation). ``want_var`` also returns the variance (BatchNorm's
    running statistics). Without ``center`` (RMSNorm) the mean is None
    and x is taken as it is.

    Two scales at once: the variance from the deviations as they are
    (chunked sums of squares, 2^-24 absolute precision, see _CHUNK), and
    from the deviations divided by 2^_SHIFT (one exact division, the
    mean's own: (sum x, n x - sum x) / (n 2^k)); both sums of squares in
    one product, both 1/sqrt in one range-reduced call (:func:`_ratio_ring`),
    and the first kept unless the second's variance is in a bucket where
    the first's sums could have wrapped: the bucket indicator (ring
    integers) selects r, exactly, in one product of one value per row.
    Right for every |x - mean| below :func:`deviation_bound` (until
    2026-12-08 the variance had to stay below 2^22: LayerNorm of +-4000
    gave -7e6); with ``init(check_range=True)`` beyond it raises
    FixedPointOverflowError."""
    fb = x._s().precision_bits
    functions.available_up_to(x, WHAT, 26)  # (r's 2^8 and the chunks' s^2)
    rest = [d for d in range(x.dim()) if d not in dims]
    lead = tuple(x.shape[d] for d in rest)
    n = x.numel() // max(1, math.prod(lead))
    kb = 2**_SHIFT
    keep = [1 if d in dims else k for d, k in enumerate(x.shape)]
    mean = None
    if center:
        total = x.sum(dims, keepdim=True)
        dev = x * n - total  # n (x - mean), exact and local
        both = x._cat([(total * kb).reshape(-1), dev.reshape(-1)], 0).div(n * kb)
        rows = math.prod(keep)
        mean = both[:rows].reshape(keep)  # one exact division for the two
        xc, xb = x - mean, both[rows:].reshape(tuple(x.shape))
    else:
        xc, xb = x, x.div(kb)
    _check_deviations(xb, fb)
    c = min(n, _CHUNK)
    s = 1
    while c * (2 * s) ** 2 <= _CHUNK:
        s *= 2
    pair = x._cat([xc.unsqueeze(0), xb.unsqueeze(0)], 0)
    xt = pair.permute(0, *[d + 1 for d in rest], *[d + 1 for d in dims])
    flat = xt.reshape(2, *lead, n)
    if n % c:
        flat = flat.pad([0, c - n % c])  # zeros add nothing to the sum
    m = flat.shape[-1] // c
    chunks = flat.reshape(2, *lead, m, c)
    if s > 1:
        chunks = chunks * s  # a public integer: exact, no truncation
    sums = chunks.unsqueeze(-2).matmul(chunks.unsqueeze(-1)).reshape(2, *lead, m)
    v = sums.mean(-1) if m > 1 else sums.reshape(2, *lead)  # scale var, scale var / 4^k
    scale = s * s * n / m
    v = v.reshape([2, *keep])
    # r = extra 2^up / std: ``extra`` keeps 8 bits more than 1 / std would
    # have in fixed point (1.5% relative at a std of 1000; r has 6e-5) while
    # the range reduction's numerator fits 2^(63 - 2f); ``up`` (<= k) more
    # where xc r, 2^up extra xhat (|xhat| < sqrt(n)), fits it too
    extra = 2.0 ** max(0, min(8, 26 - fb))
    up = int(min(_SHIFT, max(0, 60 - 2 * fb - math.log2(extra) - math.log2(n) / 2)))
    nums = [extra * math.sqrt(scale), extra * math.sqrt(scale) * 2.0 ** (up - _SHIFT)]
    lead2 = [2] + [1] * x.dim()
    num = x._public(np.broadcast_to(np.array(nums).reshape(lead2), v.shape).copy())
    eps_s = np.array([eps * scale, eps * scale / kb**2]).reshape(lead2)
    ind, starts, r = _ratio_ring(num, v + eps_s)
    # the first scale holds while the second's chunks stay below 2^(61 - 2f
    # - 2k) (a factor 2 spare: the first's wrap at 2^(63 - 2f)), their mean
    # below that over m, and below the range reduction's top over 4^k
    top = min(starts[-1] + 2, 61 - 2 * fb - math.ceil(math.log2(m))) - 2 * _SHIFT
    held = sum(1 for j in starts if j + 2 <= top)  # buckets the first scale holds
    r0 = r[0] * 2**up  # an integer factor: exact, local
    var = None
    if want_var:
        var = v * np.array([1.0 / scale, kb**2 / scale]).reshape(lead2)  # one truncation
    if held == len(starts):  # no bucket where the first scale can fail
        return mean, (None if var is None else var[0]), r0, 1.0 / (extra * 2**up), xc
    sel = ind[held:, 1].sum(0)  # ring 0/1: the second scale's
    xs, diffs = [r0], [r[1] - r0]
    if want_var:
        xs, diffs = xs + [var[0]], diffs + [var[1] - var[0]]
    picked = _select_many(sel, xs, diffs)
    var = picked[1] if want_var else None
    return mean, var, picked[0], 1.0 / (extra * 2**up), xc


def _select_many(sel, xs, diffs):
    """x + sel d for each pair (x, d): the differences picked by the ring
    0/1 ``sel`` (broadcast to each one's shape) in one exact ring product."""
    flat_s = sel._cat([sel.expand(*d.shape).reshape(-1) for d in diffs], 0)
    flat_d = sel._cat([d.reshape(-1) for d in diffs], 0)
    got = _pick(flat_s.unsqueeze(0), flat_d.unsqueeze(0))
    out, at = [], 0
    for x, d in zip(xs, diffs):
        out.append(x + got[at : at + d.numel()].reshape(tuple(d.shape)))
        at += d.numel()
    return out


def _ratio_ring(num, den):
    """(ring bucket indicator [k, *den.shape], the buckets' starts, num /
    sqrt(den)): :func:`functions.ratio_inv_sqrt` over the whole encodable
    range with the indicator as ring integers, whose selection is exact
    and one round (:func:`_pick`)."""
    lo, hi = _encodable_exps(den, None, 30, 2, "ratio_inv_sqrt")
    starts = list(range(lo, hi, 2))
    ind = _bucket_indicator(den, starts, "ratio_inv_sqrt", ring=True)
    copies = den._cat(
        [_pow2_copies(den, [-j - 1 for j in starts]), _pow2_copies(num, [-j // 2 for j in starts])],
        1,
    )
    got = _pick(den._cat([ind, ind], 1), copies)
    half, num_n = got[: den.shape[0]], got[den.shape[0] :]
    return ind, starts, num_n * functions.inv_sqrt_half(half)


def _check_deviations(xb, f: int) -> None:
    """With ``init(check_range=True)``: FixedPointOverflowError where an
    |x - mean| (held as xb = (x - mean) / 2^k) reaches
    :func:`deviation_bound` (one comparison and one opening, as the
    layers' checks)."""
    if getattr(_session._ctx, "overflow_bound", None) is None:
        return
    bound = deviation_bound(f) / 2**_SHIFT
    with ag.no_grad():
        flat = xb.reshape(-1)
        flags = xb._cat([flat - bound, -flat - bound], 0).neg()._ltz("overflow")
        count = flags.sum().get_plain_text().item()
    if count > 0.5:
        raise FixedPointOverflowError(
            f"{int(round(count))} values of |x - mean| in {WHAT} reach "
            f"{deviation_bound(f):g} (2^{min(11, 27 - f) + _SHIFT} at precision_bits={f}), "
            "beyond which their sums of squares would wrap: normalise or scale the inputs"
        )
