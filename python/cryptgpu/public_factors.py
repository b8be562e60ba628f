"""Which plaintext factors of a product are divisions: ``x * c`` for
c = 1/k (k whole) is the exact division by k (``tensor_arith``), except
inside the optimisers' steps (``products_only``).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from . import _native

_PRODUCTS = threading.local()


class products_only(_native.RestoreOnExit):
    """Inside it, ``x * c`` for a plaintext c = 1/k (k whole) is a product
    (one truncation, c kept to f - 1 significant bits), as before
    2026-12-06, not the division by k: the optimisers' steps (lr g,
    (1 - beta1) g, weight decay). Their operands are far inside 2^31, and
    the exact division by a k that is not a power of two moves a
    re-randomised sharing of 0 by a unit in about a tenth of its elements:
    a weight whose gradient is 0 would drift, and Adam would divide that
    unit by sqrt(v) + eps."""

    def __enter__(self):  # a native __exit__, as autograd._no_grad: see there why
        self._restore = ((_PRODUCTS, "on", getattr(_PRODUCTS, "on", False)),)
        _PRODUCTS.on = True


def in_products_only() -> bool:
    """Whether a ``products_only`` block is running on this thread."""
    return getattr(_PRODUCTS, "on", False)


def whole_reciprocal(yp: np.ndarray) -> int | None:
    """k where every entry of a plaintext factor is 1/k for one whole k,
    2 <= |k| < 2^31, to float32 precision (|k p - 1| <= 2^-23: 1/3 and
    0.001 as float32 included), else None. Such a factor is the division
    by k: within the division's units of 2^-f, for x anywhere in the sum
    range, where a product by a factor below 1/4 is scaled into
    [1/4, 1/2) and needs |x| < 2^31 (a row sum of 1e10 times 0.001
    wrapped)."""
    if yp.size == 0:
        return None
    p = float(yp.flat[0])
    # below 2^-31 (subnormals included: 1/p is inf) no whole k < 2^31 fits
    if not math.isfinite(p) or abs(p) < 2.0**-31 or not np.all(yp == p):
        return None
    k = round(1.0 / p)
    if not 2 <= abs(k) < 2**31 or abs(k * p - 1.0) > 2.0**-23:
        return None
    return k


def reciprocal(yp: np.ndarray, precision_bits: int) -> np.ndarray:
    """1 / yp for a plaintext divisor, each reciprocal within the encoding's
    range (|v| < 2^(63 - 2f)); else the EncodingError names the divisor
    (until 2026-12-07 its reciprocal: "cannot encode non-finite value inf"
    for a subnormal divisor the user passed as 1e-310)."""
    with np.errstate(over="ignore", divide="ignore"):
        inv = 1.0 / yp
    top = 63 - 2 * precision_bits
    bad = ~(np.abs(inv) < 2.0**top)
    if np.any(bad):
        d, r = float(yp[bad].flat[0]), float(inv[bad].flat[0])
        raise _native.EncodingError(
            f"encoding error: division by {d!r}: its reciprocal {r:g} is "
            f"outside the representable range (-2^{top}, 2^{top}) for {precision_bits} "
            "fractional bits"
        )
    return inv
