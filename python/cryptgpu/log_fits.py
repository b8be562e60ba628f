"""The fitted coefficients of :func:`cryptgpu.functions.log` and
:func:`cryptgpu.functions.log1p_unit` (least-squares fits at Chebyshev
nodes), kept apart from the protocols that evaluate them."""

from __future__ import annotations

import numpy as np


def _fit_log1p_unit(deg: int = 8) -> tuple:
    """Monomial coefficients of the least-squares fit of log1p on [0, 1] at
    Chebyshev nodes (largest error 3.4e-8 at degree 8; coefficients below 1
    in magnitude, so Horner's rule adds little fixed-point error)."""
    u = np.cos(np.pi * (np.arange(400) + 0.5) / 400) * 0.5 + 0.5
    p = np.polynomial.Polynomial.fit(u, np.log1p(u), deg, domain=[0, 1]).convert()
    return tuple(float(c) for c in p.coef)


def _fit_log_mid(f=None, deg: int = 8) -> tuple:
    """Coefficients of ln(1.5 + v) on |v| <= 1/2 for :func:`log`, each of
    c_deg .. c_1 rounded to the engine's 2^-f grid (f None: not rounded)
    and the lower ones fitted again after it; c_0 (not encoded: it joins
    the per-octave constant) centres what that rounding leaves."""
    v = np.cos(np.pi * (np.arange(2000) + 0.5) / 2000) / 2
    y, c = np.log(1.5 + v), {}
    for k in range(deg, 0, -1):
        c[k] = np.linalg.lstsq(np.vander(v, k + 1, increasing=True), y, rcond=None)[0][k]
        c[k] = float(c[k] if f is None else round(c[k] * 2.0**f) / 2.0**f)
        y = y - c[k] * v**k
    return (float(y.max() + y.min()) / 2, *(c[k] for k in range(1, deg + 1)))


_LOG_MID_F = _fit_log_mid()
_LOG_MIDS: dict = {}


def _log_mid(f: int) -> tuple:
    """:func:`_fit_log_mid` at precision f, once per f (rounded to 2^-16
    at every precision, log lost accuracy above 20 bits: 9.6e-4 at 24)."""
    if f not in _LOG_MIDS:
        _LOG_MIDS[f] = _fit_log_mid(f)
    return _LOG_MIDS[f]
