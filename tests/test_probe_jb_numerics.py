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
- silu(x) = silu(c) + relu(x - 16) for c = clamp(x, -16, 16): |silu(x) -
  relu(x)| < 16 e^-16 = 1.8e-6 beyond +-16; c sigmoid(c) carries |c| times
  sigmoid's error (1e-4, tests/test_functions.py's measured 9.8e-5) plus
  one truncation: 16e-4 + ULP + 1.8e-6. mish likewise with tanh of
  softplus, whose error is tanh's 2e-4 (2 sigmoid(2u) - 1: twice
  sigmoid's) plus softplus's few units seen through tanh' <= 1: 16 (2e-4 +
  4 ULP) + ULP + 1.8e-6.
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


SILU_TOL = 16 * 1e-4 + ULP + 16 * math.exp(-16)
MISH_TOL = 16 * (2e-4 + 4 * ULP) + ULP + 16 * math.exp(-16)


@pytest.mark.parametrize("name, fn, tol", [("silu", F.silu, SILU_TOL), ("mish", F.mish, MISH_TOL)])
def test_silu_and_mish_tails(name, fn, tol):
    """Over [-30000, 30000] (the probe's silu(-30000) = -0.46, mish(-5667)
    = -0.69), both as F.silu / F.mish and through nn.SiLU / nn.Mish."""
    cryptgpu.init(seed=7)
    try:
        x = _activation_grid()
        xs = cryptgpu.cryptensor(x)
        for got in (fn(xs), getattr(torch.nn, {"silu": "SiLU", "mish": "Mish"}[name])()(xs)):
            err = (opened(got) - fn(x)).abs()
            assert err.max().item() <= tol, (name, err.max().item(), x[err.argmax()].item())
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
