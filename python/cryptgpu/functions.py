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
| exp         | [-12, 6]           | (1 + x / 2^n)^(2^n), n = exp_iterations    |
| reciprocal  | [0.02, 200] and the negatives | Newton, y0 = 3 e^(0.5 - x) + 0.003 |
| inv_sqrt    | [0.1, 130]         | Newton, CrypTen's initial guess            |
| sqrt        | [0.1, 130]         | x * inv_sqrt(x)                            |
| log         | [0.05, 200]        | Householder order 8 on exp, CrypTen's init |
| sigmoid     | [-30, 30]          | 1 / (1 + exp(-abs(x))), mirrored for x < 0 |
| tanh        | [-15, 15]          | 2 sigmoid(2x) - 1                          |
| softmax     | any, max-shifted   | exp(x - max) * reciprocal(sum / n) / n     |
| log_softmax | any, max-shifted   | (x - max) - log(sum exp(x - max))          |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ApproxConfig:
    """Iteration counts of the approximations: CrypTen's defaults, except
    inv_sqrt, where 5 Newton steps instead of 3 bring the relative error on
    [0.1, 130] from 3e-3 to below 1e-8 (BatchNorm depends on it)."""

    exp_iterations: int = 8
    reciprocal_iterations: int = 10
    inv_sqrt_iterations: int = 5
    log_iterations: int = 2
    log_order: int = 8


config = ApproxConfig()


def _is_shared(x) -> bool:
    # Duck typing: this module sits below cryptgpu.tensor (and also runs on
    # torch tensors), so it recognises a SharedTensor by its comparison hook.
    return hasattr(x, "_msb_times")


def _abs_and_ltz(x):
    """(|x|, [x < 0]) with one batched comparison on shares (differentiable
    in |x| under autograd)."""
    if not _is_shared(x):
        return x.abs(), (x < 0).to(x.dtype)
    return x._abs_and_ltz("abs")


def exp(x):
    """e^x by the limit (1 + x / 2^n)^(2^n): n squarings (2 rounds each)."""
    n = config.exp_iterations
    y = 1 + x / (2**n)
    for _ in range(n):
        y = y * y
    return y


def reciprocal(x):
    """1 / x by Newton-Raphson, y <- 2y - x y^2, from CrypTen's initial guess.
    For inputs of either sign: 1/x = sign(x) / |x|."""
    a, neg = _abs_and_ltz(x)
    y = _reciprocal_pos(a)
    return y - 2 * (neg * y)


def _reciprocal_pos(x):
    """1 / x for x known to be positive (no sign handling)."""
    y = 3 * exp(0.5 - x) + 0.003
    for _ in range(config.reciprocal_iterations):
        y = 2 * y - x * y * y
    return y


def inv_sqrt(x):
    """1 / sqrt(x) for x > 0: Newton y <- y (3 - x y^2) / 2 from CrypTen's guess."""
    y = exp(-(x / 2 + 0.2)) * 2.2 + 0.2 - x / 1024
    for _ in range(config.inv_sqrt_iterations):
        y = y * (3 - x * y * y) * 0.5
    return y


def ratio_inv_sqrt(num, den, lo_exp: int = -10, hi_exp: int = 30):
    """num / sqrt(den) for den in [2^lo_exp, 2^hi_exp) (even exponents),
    within 1e-4 relative plus a few units of 2^-f absolute over the whole
    range (beyond what the encoding of den contributes: its rounding, 2^-17,
    is a relative error of 2^-18 / den in the result, 0.4% at den = 1e-3),
    where :func:`inv_sqrt` holds only on [0.1, 130].

    Range reduction: one batched comparison of den with 2^j (j = lo_exp+2,
    lo_exp+4, ..) puts den in a bucket [2^j, 2^(j+2)); the one-hot bucket
    indicator selects den / 2^j (in [1, 4)) and num / 2^(j/2), each a product
    of the shared indicator with den and num scaled by a public power of
    two, so both stay O(1) and keep their relative precision; Newton's
    iteration for 1/sqrt on [1, 4) from 0.7 (5 steps) finishes. Used by
    Adam, whose second moment spans many octaves."""
    if lo_exp % 2 or hi_exp % 2 or not lo_exp < hi_exp:
        raise ValueError("ratio_inv_sqrt needs even exponents lo_exp < hi_exp")
    starts = list(range(lo_exp, hi_exp, 2))  # bucket j covers [2^j, 2^(j+2))
    k = len(starts)
    lead = (k,) + (1,) * den.dim()
    tj = np.array([2.0**j for j in starts[1:]]).reshape((k - 1,) + (1,) * den.dim())
    if _is_shared(den):
        stacked = den.unsqueeze(0).expand(k - 1, *den.shape)
        below = (stacked - tj)._ltz("ratio_inv_sqrt")  # [den < 2^j], j = starts[1:]
        edge = [1, *den.shape]
        # c_j = [den >= 2^j], with c_lo = 1 and c_hi = 0 (public)
        c = _cat_dim0([below._public_like(1.0, edge), 1 - below, below._public_like(0.0, edge)])
    else:
        import torch

        c = (den.unsqueeze(0) >= torch.as_tensor(tj, dtype=den.dtype)).to(den.dtype)
        c = torch.cat([torch.ones_like(c[:1]), c, torch.zeros_like(c[:1])])
    ind = c[:k] - c[1:]  # one-hot bucket indicator, [k, *den.shape]

    def scaled(x, exps):
        """x * 2^e for each bucket's e (stacked on a new dim 0), exactly:
        integer factors for e >= 0 (no truncation, so x itself, up to
        2^hi_exp, is never multiplied by a fixed-point 1.0), and exact
        fixed-point powers of two, in at most two steps, for e < 0."""
        if not _is_shared(x):
            import torch

            f = np.array([2.0**e for e in exps]).reshape(lead)
            return x.unsqueeze(0).expand(k, *x.shape) * torch.as_tensor(f, dtype=x.dtype)
        ints = [e for e in exps if e >= 0]  # exps decrease: integer factors first
        fracs = [e for e in exps if e < 0]
        parts = []
        if ints:
            up = np.array([2**e for e in ints], dtype=np.int64).reshape((len(ints),) + lead[1:])
            parts.append(x.unsqueeze(0).expand(len(ints), *x.shape) * up)
        if fracs:
            shp = (len(fracs),) + lead[1:]
            # a power of two below 2^-f is not representable: two exact steps
            first = np.array([2.0 ** max(e, -14) for e in fracs]).reshape(shp)
            rest = np.array([2.0 ** min(e + 14, 0) for e in fracs]).reshape(shp)
            xf = x.unsqueeze(0).expand(len(fracs), *x.shape) * first
            parts.append(xf * rest if rest.min() < 1 else xf)
        return parts[0] if len(parts) == 1 else _cat_dim0(parts)

    den_n = (ind * scaled(den, [-j for j in starts])).sum(0)  # in [1, 4)
    num_n = (ind * scaled(num, [-j // 2 for j in starts])).sum(0)
    y = den_n * 0 + 0.7
    for _ in range(5):
        y = y * (3 - den_n * y * y) / 2
    return num_n * y


def _cat_dim0(parts):
    return parts[0]._cat(parts, 0)


def sqrt(x):
    """sqrt(x) = x * inv_sqrt(x) for x > 0."""
    return x * inv_sqrt(x)


def log(x):
    """ln(x) for x > 0: Householder iterations y <- y - sum_k h^k / k with
    h = 1 - x e^(-y), from CrypTen's initial guess."""
    y = x / 120 - 20 * exp(-2 * x - 1.0) + 3.0
    for _ in range(config.log_iterations):
        h = 1 - x * exp(-y)
        acc = h
        hp = h
        for k in range(2, config.log_order + 1):
            hp = hp * h
            acc = acc + hp * (1.0 / k)
        y = y - acc
    return y


def sigmoid(x):
    """1 / (1 + e^-x), evaluated on |x| so the reciprocal's input stays in
    [1, 2], then mirrored: sigmoid(x) = 1 - sigmoid(-x) for x < 0."""
    a, neg = _abs_and_ltz(x)
    s = _reciprocal_pos(1 + exp(-a))
    return s + neg * (1 - 2 * s)


def tanh(x):
    """2 sigmoid(2x) - 1."""
    return 2 * sigmoid(2 * x) - 1


def _max_keep(x, dim):
    return x.amax(dim, keepdim=True)


def softmax(x, dim: int):
    """exp(x - max) / sum: the sum (in [1, n]) is divided by n before the
    reciprocal so its input lies in [1/n, 1], inside the reciprocal's range
    for any number of classes."""
    n = x.shape[dim]
    e = exp(x - _max_keep(x, dim))
    s = e.sum(dim, keepdim=True) / n
    return e * (_reciprocal_pos(s) / n)


def log_softmax(x, dim: int):
    """(x - max) - log(sum exp(x - max)); the log's input lies in [1, n]."""
    z = x - _max_keep(x, dim)
    return z - log(exp(z).sum(dim, keepdim=True))
