"""The range reduction's pieces shared by functions.py and division.py:
octave thresholds, one-hot bucket indicators, exact power-of-two copies,
an exact selection by a ring-integer indicator, and 1 / m on [1, 2]."""

from __future__ import annotations

import numpy as np

from . import autograd as ag


def _is_shared(x) -> bool:
    # Duck typing: this module sits below cryptgpu.tensor (and also runs on
    # torch tensors), so it recognises a SharedTensor by its comparison hook.
    return hasattr(x, "_msb_times")


def _encodable_exps(x, lo_exp, hi_exp: int, step: int, label: str) -> tuple[int, int]:
    """[lo_exp, hi_exp) narrowed (on multiples of ``step``) to what x's
    session can encode: no value reaches 2^(63 - 2f), so above 16 fractional
    bits the top thresholds (2^28 at f = 18) could not even be encoded, and
    the range reduction's integer factors 2^-j must stay below 2^(63 - 2f)
    (at f = 24 the bottom bucket starts at 2^-14). A plaintext x keeps the
    range. ``lo_exp`` None: the finest octave the session encodes, 2^-f
    above 16 fractional bits (2^-16 at or below: the thresholds, and their
    cost, are unchanged at f = 16); until 2026-12-06 the functions fixed
    -16, so at f = 20 1 / 2^-19 came out 405195 and log(2^-19) -12.85."""
    if lo_exp is None:
        f = x._s().precision_bits if _is_shared(x) else 16
        lo_exp = -max(16, f - f % step)
    if not _is_shared(x):
        return lo_exp, hi_exp
    f = x._s().precision_bits
    top = 62 - 2 * f
    top -= top % step
    # the bottom threshold must be encodable (2^-f); integer factors beyond
    # 2^(63 - 2f) are applied in steps (_pow2_copies)
    bottom = f - f % step
    lo_exp, hi_exp = max(lo_exp, -bottom), min(hi_exp, top)
    if not lo_exp < hi_exp:
        raise ValueError(f"{label}: no range left at {f} fractional bits")
    return lo_exp, hi_exp


def _bucket_indicator(x, starts, label: str, unit: bool = False, ring: bool = False):
    """The one-hot indicator [k, *x.shape] of the bucket [2^starts[i],
    2^starts[i+1]) (``unit``: [starts[i], starts[i+1])) holding each element
    of x (the first bucket also takes what is below it, the last what is
    above): one batched comparison of x with the k - 1 inner thresholds.
    ``ring``: the indicator as 0/1 ring integers (the sign bits injected
    into the word 1, at the same cost), which select exactly by
    :func:`_pick`, with no truncation."""
    k = len(starts)
    edges = starts[1:] if unit else [2.0**j for j in starts[1:]]
    tj = np.array(edges, dtype=np.float64).reshape((k - 1,) + (1,) * x.dim())
    if _is_shared(x):
        stacked = x.unsqueeze(0).expand(k - 1, *x.shape)
        one = 2.0 ** -x._s().precision_bits if ring else 1.0  # the word 1, or 1.0
        diff = _minus_thresholds(stacked, tj)
        if ring:
            below = diff._msb_times(stacked._public_like(one), label)
        else:
            below = diff._ltz(label)  # [x < 2^j], j = starts[1:]
        edge = [1, *x.shape]
        # c_j = [x >= 2^j], with c_lo = 1 and c_hi = 0 (public)
        c = _cat_dim0([below._public_like(one, edge), one - below, below._public_like(0.0, edge)])
    else:
        import torch

        c = (x.unsqueeze(0) >= torch.as_tensor(tj, dtype=x.dtype)).to(x.dtype)
        c = torch.cat([torch.ones_like(c[:1]), c, torch.zeros_like(c[:1])])
    return c[:k] - c[1:]


def _minus_thresholds(stacked, tj):
    """stacked - tj for public thresholds tj [k - 1, 1, ...]: added as
    encoded constants, except those at or above 2^(62 - 2f), which a
    public operand cannot encode (2^30 at f = 16; a row sum of squares is
    compared with up to 2^44, :mod:`cryptgpu.unit_rows`): subtracted as
    2^(62 - 2f) shared publicly times an integer (they are powers of two),
    exact and local."""
    limit = 2.0 ** (62 - 2 * stacked._s().precision_bits)
    big = tj >= limit
    if not big.any():
        return stacked - tj
    mult = np.where(big, tj / limit, 0.0).astype(np.int64)
    return (stacked - np.where(big, 0.0, tj)) - stacked._public_like(limit) * mult


def _pow2_copies(x, exps):
    """x * 2^e for each e of ``exps`` (decreasing), stacked on a new dim 0,
    exactly: integer factors for e >= 0 (no truncation, so x itself, up to
    2^30, is never multiplied by a fixed-point 1.0), and exact fixed-point
    powers of two, in at most two steps, for e < 0."""
    k = len(exps)
    lead = (k,) + (1,) * x.dim()
    if not _is_shared(x):
        import torch

        f = np.array([2.0**e for e in exps]).reshape(lead)
        return x.unsqueeze(0).expand(k, *x.shape) * torch.as_tensor(f, dtype=x.dtype)
    ints = [e for e in exps if e >= 0]  # exps decrease: integer factors first
    fracs = [e for e in exps if e < 0]
    parts = []
    if ints:
        # an integer factor must stay below 2^(63 - 2f): larger powers of two
        # (the bottom buckets of a range reduction at high precision, 2^24
        # at f = 24) in steps, exact and local
        shp = (len(ints),) + lead[1:]
        most = max(1, 62 - 2 * x._s().precision_bits)
        left = np.array(ints)
        xi = x.unsqueeze(0).expand(len(ints), *x.shape)
        while True:
            step = np.minimum(left, most)
            xi = xi * (2**step).astype(np.int64).reshape(shp)
            left = left - step
            if not left.any():
                break
        parts.append(xi)
    if fracs:
        shp = (len(fracs),) + lead[1:]
        # a power of two below 2^-f is not representable: a first step of at
        # most 2^-min(14, f), then steps of at most 2^-f (two steps at f = 16
        # for exponents down to -30; a fixed first 2^-14, until 2026-12-05,
        # encoded as 0 at f = 12 and 13: sqrt(1e6) came out -527 at f = 13)
        f = x._s().precision_bits
        left = np.array(fracs)
        xf = x.unsqueeze(0).expand(len(fracs), *x.shape)
        k = min(14, f)
        while left.min() < 0:
            step = np.maximum(left, -k)
            xf = xf * (2.0**step).reshape(shp)
            left, k = left - step, f
        parts.append(xf)
    return parts[0] if len(parts) == 1 else _cat_dim0(parts)


def _cat_dim0(parts):
    return parts[0]._cat(parts, 0)


def _reciprocal_unit(m, start=24.0 / 17.0):
    """1 / m for m in [1, 2]: the line 24/17 - 8/17 m (relative error at
    most 1/17), then three Newton steps y <- y (2 - m y), each squaring the
    relative error (3.5e-3, 1.2e-5, 1.4e-10): 14 rounds, where CrypTen's
    guess 3 e^(0.5 - m) + 0.003 and 10 steps took 68. With ``start`` =
    sign(m) 24/17 (a shared value), m may be in [-2, -1] too: the line and
    every step are odd in m."""
    y = start - m * (8.0 / 17.0)
    for _ in range(3):
        y = y * (2 - m * y)
    return y


def _pick(ind, copies):
    """sum over dim 0 of ind * copies, for a one-hot ``ind`` of 0/1 ring
    integers (:func:`_bucket_indicator` with ``ring``) and shared copies of
    the same shape: one product as ring integers, exact for any words and
    with no truncation (one round), so a selected copy may exceed the
    fixed-point product range (a numerator of 2^31 over an octave of
    [1, 2)) and the copies not selected may wrap. Recorded for autograd:
    the gradient of the copies is ind times the result's, selected the
    same way."""
    s = copies._s()
    out = copies._wrap(s.mul_int(ind._t, copies._t)).sum(0)
    if ag.needs_grad(copies):
        k = copies.shape[0]

        def back(g):
            ge = g.unsqueeze(0).expand(k, *g.shape)
            return (ge._wrap(ge._s().mul_int(ind._t, ge._t)),)

        ag.record(out, (copies,), back)
    return out
