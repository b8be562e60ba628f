"""Numerics a user probe (JB, 2026-12-06) found silently wrong, against
float64 torch: F.normalize (and F.cosine_similarity, which shares it) of
rows whose norm is above 2^15 (a row of 64 x 6000 gave -0.1249 for
torch's 0.125), with a gradient that lost its projection term (41% off
at norms near 500); F.silu and F.mish of large inputs, off by |x| times
a unit or two of 2^-16 (silu(-30000) gave -0.46, mish(-27810) 3.4).

Tolerances (f = 16, inputs on the 2^-16 grid, so no encoding error):
- normalize: 1 / ||v|| = y 2^-J with y from 3 Newton steps (4.5e-8) whose
  truncations, on values of order 1, leave 1e-4 relative; the sum of
  squares carries one truncation per square, n units at most, a relative
  error of n ULP / s in s and half that in 1 / sqrt(s); then one exact
  division (1 unit) and the product's own unit: (1e-4 + n ULP / (2 s)) |u|
  + 2 ULP for u = v / ||v||.
- its gradient (g - u (g . u)) / ||v||: g . u has n truncations (n ULP),
  u (g . u) one more plus |g . u| times u's error, divided by ||v|| (its
  relative error as above), one more truncation of the scaled result.
- cosine_similarity: the sum over n of u1 u2, each within the bound above,
  and n truncations.
- silu and mish: a bound for each element, from the truncations each
  step makes (:func:`silu_tol`, :func:`mish_tol`): 7.5e-4 and 7.3e-3 at
  the most, at |x| >= 16 (measured: 2.9e-4 and 2.4e-3).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ULP

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def on_grid(x):
    return torch.round(x * 2**16) / 2**16


def normalize_tol(x, dim=1):
    """(1e-4 + n ULP / (2 s)) |u| + 2 ULP (module docstring)."""
    n = x.shape[dim]
    s = (x * x).sum(dim, keepdim=True)
    u = F.normalize(x, dim=dim)
    return (1e-4 + n * ULP / (2 * s)) * u.abs() + 2 * ULP


def big_rows():
    """Rows whose sum of squares is above 2^30 (norms above 2^15), each
    element below 2^15, up to a sum of squares just below 2^46."""
    torch.manual_seed(0)
    signs = torch.randn(8, 64, dtype=D).sign()
    return [
        torch.full((1, 64), 6000.0, dtype=D),  # the probe's: -0.1249 for 0.125
        torch.full((1, 4), 20000.0, dtype=D),
        on_grid(signs * 1e4 + torch.randn(8, 64, dtype=D)),
        on_grid(signs[:, :8] * 3e4 + torch.randn(8, 8, dtype=D)),
        on_grid((torch.rand(4, 64, dtype=D) * 2 - 1) * 32000),
        torch.full((1, 65000), 32000.0, dtype=D),  # s = 6.66e13, 2^45.9
    ]


@pytest.mark.parametrize("mode", ["exact", "auto"])
def test_normalize_rows_of_norm_above_2_15(mode):
    cryptgpu.init(seed=3, truncation=mode)
    try:
        for x in big_rows():
            got = opened(F.normalize(cryptgpu.cryptensor(x), dim=1))
            bad = (got - F.normalize(x, dim=1)).abs() > normalize_tol(x)
            assert not bad.any(), (x[0, 0].item(), x.shape, got[bad][:4])
        # along the middle dim of a 3-D tensor
        x = on_grid(torch.randn(3, 40, 5, dtype=D) * 8000)
        got = opened(F.normalize(cryptgpu.cryptensor(x), dim=1))
        assert not ((got - F.normalize(x, dim=1)).abs() > normalize_tol(x)).any()
    finally:
        cryptgpu.uninit()


def test_cosine_similarity_of_large_vectors():
    """F.cosine_similarity normalises each vector as F.normalize (norms of
    5e4 to 1.5e5 here, elements below 2^15; the sum over n of u1 u2 within the bound of each
    factor's error, and n truncations)."""
    cryptgpu.init(seed=4, truncation="exact")
    try:
        torch.manual_seed(1)
        a = on_grid(torch.randn(6, 64, dtype=D) * 5000 + 3000)
        b = on_grid((torch.randn(6, 64, dtype=D) * 20000).clamp(-32000, 32000))
        want = F.cosine_similarity(a, b, dim=1)
        ua, ub = F.normalize(a, dim=1), F.normalize(b, dim=1)
        tol = (normalize_tol(a) * ub.abs() + normalize_tol(b) * ua.abs()).sum(1) + 64 * ULP
        for got in (
            F.cosine_similarity(cryptgpu.cryptensor(a), cryptgpu.cryptensor(b), dim=1),
            F.cosine_similarity(cryptgpu.cryptensor(a), b, dim=1),
        ):
            err = (opened(got) - want).abs()
            assert (err <= tol).all(), (err, tol)
    finally:
        cryptgpu.uninit()


def test_normalize_gradient_matches_float64():
    """The gradient of sum(w * F.normalize(x)) for rows of norm 1 to 5e4
    (the composition lost the projection term u (g . u) / ||v|| once
    1 / ||v||^3 fell below the fixed point's unit: 41% off at norms near
    500, 0.03% at norm 8, garbage above 2^15)."""
    cryptgpu.init(seed=5, truncation="exact")
    try:
        torch.manual_seed(2)
        mags = torch.tensor([0.2, 1.0, 8.0, 60.0, 500.0, 6000.0, 30000.0], dtype=D)
        x = on_grid((torch.rand(7, 64, dtype=D) * 2 - 1) * mags[:, None])
        w = on_grid(torch.randn(7, 64, dtype=D))
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        (F.normalize(xs, dim=1) * w).sum().backward()
        xt = x.clone().requires_grad_()
        (F.normalize(xt, dim=1) * w).sum().backward()
        n = x.shape[1]
        u = F.normalize(x, dim=1)
        norm = x.norm(dim=1, keepdim=True)
        s = (w * u).sum(1, keepdim=True)
        rel = 1e-4 + n * ULP / (2 * norm**2)  # 1 / ||v||'s relative error
        tol = (
            rel * xt.grad.abs()
            + (ULP * (1 + n * u.abs()) + s.abs() * (rel * u.abs() + 2 * ULP)) / norm
            + 2 * ULP
        )
        err = (opened(xs.grad) - xt.grad).abs()
        assert (err <= tol).all(), (err.max(1).values, tol.max(1).values)
    finally:
        cryptgpu.uninit()


def test_normalize_cost_per_row():
    """F.normalize of [50, 64] over dim 1 with the gradient recorded: the
    squares (one exact product), one batched comparison of the 50 sums
    with 30 thresholds, the selections as ring integers, Newton on the 50
    rows, one ring product and one exact division per element: 39 rounds
    and 0.29 MB per party (44 rounds and 3.1 MB until 2026-12-06, 23
    scaled copies of each element); the backward 18 rounds and 0.72 MB
    (64 rounds, 3.5 MB)."""
    cryptgpu.init(seed=6, truncation="auto")
    try:
        torch.manual_seed(3)
        x = torch.randn(50, 64, dtype=D) * 3
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        cryptgpu.reset_stats()
        y = F.normalize(xs, dim=1)
        fwd = cryptgpu.stats()["total"]
        cryptgpu.reset_stats()
        (y * torch.randn(50, 64, dtype=D)).sum().backward()
        bwd = cryptgpu.stats()["total"]
        assert fwd["rounds"] <= 39 and fwd["bytes_per_party"] <= 300_000, fwd
        assert bwd["rounds"] <= 18 and bwd["bytes_per_party"] <= 750_000, bwd
    finally:
        cryptgpu.uninit()


def _activation_grid():
    x = torch.cat(
        [
            torch.linspace(-30000, 30000, 2001, dtype=D),
            torch.linspace(-40, 40, 1601, dtype=D),
            torch.tensor([-5667.0, -27810.0, -1000.0, 1000.0, 16.0, -16.0], dtype=D),
        ]
    )
    return on_grid(x)


# The error bounds of SiLU and Mish, element by element. Every truncation
# (a product's, a division by a public integer's) is within one unit of
# 2^-16 (conftest); ReLU, the comparison's selections and products by 2 are
# exact, and the inputs are on the grid. Both activations are
# f(c) + relu(x - 16) for c = clamp(x, -16, 16), so the error is
# |c| (the error of f(c) / c) + 1 unit (the product by c) + 16 e^-16
# (|f - relu| beyond +-16, left out).
TAIL = 16 * math.exp(-16)


def _exp_err(a):
    """exp_nonpos(-a) for 0 <= a <= 16: y = a / 16 is one truncation (1
    unit), Horner's 9 truncated products carry on by |y| <= 1 each (the sum
    of |y|^k units), the Taylor remainder is 2.8e-7 relative; 4 squarings
    multiply the relative error of p(y) = e^-y by 16, and the truncation of
    the k-th square, relative to it, by 2^(4 - k)."""
    y = a / 16
    poly = sum(y**k for k in range(9)) * ULP / torch.exp(-y)
    squares = sum(2 ** (4 - k) * ULP * torch.exp(-a * (1 - 2**k / 16)) for k in range(1, 5))
    return torch.exp(-a) * 16 * (ULP + poly + 2.8e-7) + squares


def _sigmoid_err(a):
    """sigmoid(+-a) = 1 / (1 + e^-a), mirrored exactly for a negative input:
    e^-a's error times d sigmoid / d(e^-a) = 1 / (1 + e^-a)^2, plus the
    reciprocal's last Newton step, two truncations (the earlier steps'
    errors are squared away): 2 units."""
    a = a.clamp(max=16)  # beyond, exp_nonpos takes e^-16 for e^-a (2 e^-16 more for tanh)
    return _exp_err(a) / (1 + torch.exp(-a)) ** 2 + 2 * ULP


def silu_tol(x):
    """|c| times sigmoid's error + 1 unit + TAIL: 7.5e-4 at |c| = 16, where
    sigmoid's is 3 units (1 from e^-16's last square, 2 from the
    reciprocal); measured 2.9e-4 (19 units at x = 12, 1 element in 10^5)."""
    c = x.clamp(-16, 16)
    return c.abs() * _sigmoid_err(c.abs()) + ULP + TAIL


def mish_tol(x):
    """c tanh(u) for u = softplus(c) = relu(c) + log1p(e^-|c|): log1p's 8
    truncated products (the sum of (e^-|c|)^k units, and 3.4e-8) on top of
    e^-|c|'s error seen through log1p' = 1 / (1 + e^-|c|); tanh(u) = 2
    sigmoid(2u) - 1 doubles sigmoid's error at 2u and carries u's through
    tanh' = 1 - tanh^2: 7.3e-3 at c = -16, where u is about 0 and sigmoid's
    error at 0 is 14 units (the truncation of y = 2u / 16 alone moves e^-2u
    by 16 units, 4 in sigmoid, 8 in tanh: the measured 128 units of mish,
    up to 160: 2.4e-3)."""
    c = x.clamp(-16, 16)
    e = torch.exp(-c.abs())
    d_u = _exp_err(c.abs()) / (1 + e) + sum(e**k for k in range(8)) * ULP + 3.4e-8
    u = c.clamp(min=0) + torch.log1p(e)
    d_tanh = 2 * _sigmoid_err(2 * u) + 2 * math.exp(-16) * (2 * u > 16) + d_u * (1 - u.tanh() ** 2)
    return c.abs() * d_tanh + ULP + TAIL


@pytest.mark.parametrize("name, fn, tol", [("silu", F.silu, silu_tol), ("mish", F.mish, mish_tol)])
def test_silu_and_mish_tails(name, fn, tol):
    """Over [-30000, 30000] (the probe's silu(-30000) = -0.46, mish(-5667)
    = -0.69), both as F.silu / F.mish and through nn.SiLU / nn.Mish, each
    element within its bound (:func:`silu_tol`, :func:`mish_tol`)."""
    cryptgpu.init(seed=7)
    try:
        x = _activation_grid()
        bound = tol(x)
        assert bound.max().item() <= {"silu": 7.5e-4, "mish": 7.3e-3}[name]  # the documented
        xs = cryptgpu.cryptensor(x)
        for got in (fn(xs), getattr(torch.nn, {"silu": "SiLU", "mish": "Mish"}[name])()(xs)):
            err = (opened(got) - fn(x)).abs()
            bad = err > bound
            assert not bad.any(), (name, x[bad][:4], err[bad][:4], bound[bad][:4])
    finally:
        cryptgpu.uninit()


def test_silu_and_mish_tails_cost_no_round_more(session):
    """The tails' batched ReLU (10 rounds) replaces sigmoid's and
    softplus's own clamp at -16 (|c| <= 16 needs none): SiLU 66 and Mish 130
    rounds, as before the tails; bytes per element grow by the ReLU's 47
    (294.7 -> 342.1 and 565.4 -> 612.8 per element per party, counted by
    the engine)."""
    x = cryptgpu.cryptensor(torch.randn(1000, dtype=D))
    for f, rounds, per_element in ((F.silu, 66, 342.08), (F.mish, 130, 612.8)):
        cryptgpu.reset_stats()
        f(x)
        t = cryptgpu.stats()["total"]
        assert t["rounds"] == rounds, (f.__name__, t)
        assert t["bytes_per_party"] == round(per_element * 1000), (f.__name__, t)
