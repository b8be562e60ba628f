"""CrypTen's own approximations, kept beside the range-reduced ones of
:mod:`cryptgpu.functions` (which re-exports them): ``exp_crypten``, the
limit (1 + x / 2^n)^(2^n), and ``log_crypten``, Householder iterations from
CrypTen's initial guess, with their iteration counts in ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApproxConfig:
    """Iteration counts of the approximations (CrypTen's defaults; the
    reciprocal, inv_sqrt, sqrt and log are range-reduced, with none to set)."""

    exp_iterations: int = 8
    log_iterations: int = 2
    log_order: int = 8


config = ApproxConfig()


def exp_crypten(x):
    """e^x by CrypTen's limit (1 + x / 2^n)^(2^n), n = ``config.exp_iterations``
    squarings (2 rounds each): cheap, but x^2 / 2^(n+1) relative error (12%
    at x = -8 for n = 8) and wrong past |x| = 2^n."""
    n = config.exp_iterations
    y = 1 + x / (2**n)
    for _ in range(n):
        y = y * y
    return y


def log_crypten(x):
    """ln(x) for x > 0 by CrypTen's method: Householder iterations y <- y -
    sum_k h^k / k with h = 1 - x e^(-y), from CrypTen's initial guess
    (accurate on about [0.05, 200]; :func:`log` is range-reduced)."""
    y = x / 120 - 20 * exp_crypten(-2 * x - 1.0) + 3.0
    for _ in range(config.log_iterations):
        h = 1 - x * exp_crypten(-y)
        acc = h
        hp = h
        for k in range(2, config.log_order + 1):
            hp = hp * h
            acc = acc + hp * (1.0 / k)
        y = y - acc
    return y
