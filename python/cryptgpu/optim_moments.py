"""The scaled moments of Adam, AdamW, RMSprop and Adagrad: the range
reduced m / (sqrt(w) + e) of a step, and :func:`guard_moments`, which keeps
each element's second moment inside the fixed-point range by a shared
per-element scale (and a clip of the scaled gradient)."""

from __future__ import annotations

import math

from . import _session, functions
from .tensor import stack


def scaled_ratio(m, w, e: float, k=None):
    """m / (sqrt(w) + e k) for the scaled moments of Adam, RMSprop and
    Adagrad, k their element's scale (:func:`guard_moments`; None: 1):
    while e is below the square root of the floor on w (2^-14 at f = 16:
    :func:`_floor_exp`), m / sqrt(w + max(e^2, floor)), one range-reduced
    inverse square root; a larger e as written (sqrt(w), then two
    divisions by sqrt(sqrt(w) + e k)): three."""
    fe = _floor_exp()
    floor = 2.0**fe
    if e > 2.0 ** (fe // 2):
        root = functions.ratio_inv_sqrt(w + floor, w + floor, lo_exp=fe)
        # eps in the element's units (e alone was e / k: a step 0.42x
        # torch's after a scale-down, a review)
        den = root + (e if k is None else k * e)
        q = functions.ratio_inv_sqrt(m, den, lo_exp=fe)
        return functions.ratio_inv_sqrt(q, den, lo_exp=fe)
    return functions.ratio_inv_sqrt(m, w + max(e * e, floor), lo_exp=fe)


def _moment_bounds() -> tuple[float, float, float]:
    """(top, low, clip) for the scaled second moments at this precision: w
    stays below W = 2^min(30, 62 - 2f) (ratio_inv_sqrt's top bucket; w *
    beta2 must stay below 2^(63 - 2f)); at or above ``top`` = W / 16 an
    element's moments and scale go down, below ``low`` = top / 64 (with its
    scale below 1) up (:func:`guard_moments`); a scaled gradient is
    clipped to ``clip``, so that w * (1/16 or 1) + clip^2 < W."""
    e = min(30, 62 - 2 * _session.current().precision_bits)
    big = 2.0**e
    return big / 16, big / 1024, math.floor(math.sqrt(big * 15 / 16) * 0.99)


def guard_moments(x, k, w, firsts=(), seconds=()):
    """Keep the scaled moments of Adam, RMSprop and Adagrad in range, per
    element and without revealing which: one batched comparison clips the
    scaled gradient x times the element's scale k (1 when None) to
    +-``clip``, finds where w reached ``top`` and where it is below ``low``
    with k below 1 (:func:`_moment_bounds`). Where w reached top, w and
    ``seconds`` (amsgrad's maximum) are divided by 16 and k, ``firsts``
    (first moments) and the new gradient by 4; where it is below low with
    k < 1, all are multiplied so (the new gradient clipped after), so that
    a small gradient after a large one keeps its precision (where the
    gradient times 4 needs no clip; amsgrad's maximum, not w, must be
    below low): m / sqrt(w)
    and g / sqrt(w), the steps, are unchanged by such a common factor (eps
    is scaled by k in :func:`scaled_ratio`; the floor on w, which plays
    the part of a tiny eps, is not). Returns (x, k, w, firsts, seconds) in
    the new units (None entries stay None); w None (a first step): the
    clip only. Where nothing is clipped or scaled every value is
    unchanged, exactly (sums of 0 and products by 1.0). One comparison
    (7 thresholds) and four products per step. The scale is a fixed-point
    power of 4: after 8 divisions (gradients near 10^6 at the default
    scale) it would be 0 and the element would never step again, so such
    gradients are outside the optimisers' range (README).

    Until 2026-12-07 nothing bounded w: a gradient of 100 (scale 2^8) took
    an Adam weight to 9.8e7 in two steps, and a gradient held above about 4
    overflowed the moment later, silently."""
    top, low, clip = _moment_bounds()
    xk = x if k is None else x * k
    d = [xk + clip, xk.neg() + clip]
    if w is not None and k is not None:  # [|4 xk| > clip]: no scale-up there
        d += [xk * 4 + clip, xk * -4 + clip]
    if w is not None:
        d += [w - top]
    if w is not None and k is not None:
        # amsgrad's maximum, never below w, decides the scale-up (from w
        # alone the maximum went past the range: a review)
        hi = next((t for t in seconds if t is not None), w)
        d += [hi - low, k - 0.5]
    one = xk * 0.0 + 1.0
    v = d[:2] + [one] * (len(d) - 2)
    a = stack(d)._msb_times(stack(v), "optimiser moment guard")
    xc = xk - a[0] + a[1]  # clamp(xk, -clip, clip), as clamp's relu pair
    if w is None:
        return xc, k, w, tuple(firsts), tuple(seconds)
    if k is None:  # never scaled: down only
        below = a[2]  # [w < top]: a factor 1 there, else 1/4 (1/16 for w)
        f4, f16, fx, up = below * 0.75 + 0.25, below * (15 / 16) + (1 / 16), None, None
    else:
        below = a[4]  # [w < top]
        # up where the moments fell below low, k < 1 and 4 xk needs no clip
        # (a clipped one against the scaled-up history: steps 3.2x, a review)
        up = (a[5] * a[6]) * (1.0 - a[2] - a[3])
        fx = below * 0.75 + 0.25  # the gradient's factor where it does not go up
        f4 = fx + up * 3.0
        f16 = below * (15 / 16) + (1 / 16) + up * 15.0

    def scaled(parts, factors):
        keep = [i for i, t in enumerate(parts) if t is not None]
        out = iter((stack([parts[i] for i in keep]) * stack([factors[i] for i in keep])).unbind(0))
        got = [None] * len(parts)
        for i in keep:
            got[i] = next(out)
        return got

    n1, n2 = len(firsts), len(seconds)
    parts = [xc, f4 if k is None else k, *firsts, w, *seconds]
    factors = [fx if k is not None else f4, f4, *[f4] * n1, f16, *[f16] * n2]
    if k is not None:  # where up: 4 xk (unclipped there), xk + 3 xk
        parts, factors = parts + [xk * 3 + (xk - xc)], factors + [up]
    got = scaled(parts, factors)
    x_ = got[0] if k is None else got[0] + got[-1]  # clip(xk) fx, or 4 xk where up
    k_ = f4 if k is None else got[1]  # 1 times the factor
    return x_, k_, got[2 + n1], tuple(got[2 : 2 + n1]), tuple(got[3 + n1 : 3 + n1 + n2])


def _room(fw: float) -> float:
    """The power of 1/4 that, applied to the first moments, k and (squared)
    the second, leaves the second below its range after a public factor fw
    (a larger beta2 or grad_scale set between steps: 0.9 -> 0.9999 put
    weights at 1e9 until 2026-12-07, a user probe); 1 for fw <= 1."""
    if fw <= 1:
        return 1.0
    return 4.0 ** -math.ceil(math.log(fw, 16) - 1e-9)


def _scaled_k(k, w, down: float):
    """An element scale k (None: 1) times the public ``down``."""
    return (w * 0.0 + 1.0 if k is None else k) * down


def _floor_exp() -> int:
    """The floor on the scaled second moment: 2^-14 (4 units) up to f = 16,
    then 4 units or less, an even power (ratio_inv_sqrt's buckets): 2^-16
    at f = 17, 18 and 2^-18 at f = 19, 20, where the default grad_scale is
    smaller (:func:`check_grad_scale`) and 2^-14 would have cut the steps
    of gradients below 1e-3 (0.02 short of torch's after 100 steps of
    1e-3 at f = 20)."""
    return -2 * ((max(14, _session.current().precision_bits - 2) + 1) // 2)
