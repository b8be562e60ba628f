"""sin / cos / cossin of a shared tensor (cryptgpu.trig), against torch's
float64 sin and cos of the encoded input.

Tolerance (``tol`` below), in the result's units:
- the last truncation, to f bits: one unit of 2^-f;
- the 29-bit work (coefficients rounded to 2^-30, six truncations of 2^-29
  each, all multiplied by powers of u = w^2 <= 1.75^2: at most 606 units
  of 2^-29), amplified by three double-angle steps (each at most 2 sqrt(2)
  times an error in cos and sin): 22.6 * 606 * 2^-29;
- the turn factor K = round(2^(64-f) / (2 pi)): an angle error of
  2 pi |x| 2^f |K - 2^(64-f) / (2 pi)| / 2^64 (0.07 units at |x| = 2^31);
- the Taylor remainders at an eighth of the angle (|phi| <= 1.38): 1e-8.
Until 2026-12-07 SharedTensor had no sin / cos (AttributeError) and the
conversion refused them.
"""

import math

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import usable

D = torch.float64


def tol(f: int, xmax: float) -> float:
    k = round(2.0 ** (64 - f) / (2 * math.pi))
    turn = 2 * math.pi * xmax * 2.0**f * abs(k - 2.0 ** (64 - f) / (2 * math.pi)) / 2.0**64
    return 2.0**-f + 22.6 * 606 * 2.0**-29 + turn + 1e-8


def encoded(x):
    """The shared input and the value it encodes (what torch is given)."""
    s = cryptgpu.cryptensor(x)
    return s, s.get_plain_text(dtype=D)


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e3, 2.0**20, 2.0**31 - 1])
def test_sin_cos_over_the_whole_encoding_range(session, scale):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4000, generator=g, dtype=D) * 2 - 1) * scale
    s, xe = encoded(x)
    c, sn = s.cossin()
    t = tol(16, scale)
    assert (c.get_plain_text(dtype=D) - xe.cos()).abs().max() <= t
    assert (sn.get_plain_text(dtype=D) - xe.sin()).abs().max() <= t
    # method, torch function and in-place forms are the same evaluation
    for got, want in ((s.sin(), xe.sin()), (torch.cos(s), xe.cos()), (torch.sin(s), xe.sin())):
        assert (got.get_plain_text(dtype=D) - want).abs().max() <= t
    y = s.clone()
    y.cos_()
    assert (y.get_plain_text(dtype=D) - xe.cos()).abs().max() <= t


@pytest.mark.parametrize("mode", ["probabilistic", "auto", "exact"])
@pytest.mark.parametrize("f", [12, 16, 20])
def test_every_truncation_mode_and_precision(mode, f):
    """The 29-bit products are truncated exactly in every mode: under the
    probabilistic protocol they would fail about 1 time in 8 (garbage)."""
    cryptgpu.init(seed=7, precision_bits=f, truncation=mode)
    try:
        g = torch.Generator().manual_seed(f)
        xmax = min(1e4, 2.0 ** (63 - 2 * f) - 1)
        x = (torch.rand(3000, generator=g, dtype=D) * 2 - 1) * xmax
        s, xe = encoded(x)
        c, sn = s.cossin()
        assert (c.get_plain_text(dtype=D) - xe.cos()).abs().max() <= tol(f, xmax)
        assert (sn.get_plain_text(dtype=D) - xe.sin()).abs().max() <= tol(f, xmax)
    finally:
        cryptgpu.uninit()


def test_shapes_gradient_and_cost(session):
    for shape in ((), (0,), (3, 0, 2), (2, 3, 4)):
        x = torch.linspace(-7, 7, max(1, math.prod(shape)), dtype=D)[: math.prod(shape)]
        s, xe = encoded(x.reshape(shape))
        got = s.sin()
        assert got.shape == torch.Size(shape)
        err = (got.get_plain_text(dtype=D) - xe.sin()).abs()
        assert err.numel() == 0 or err.max() <= tol(16, 7)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, generator=g, dtype=D) * 3
    s = cryptgpu.cryptensor(x, requires_grad=True)
    (s.sin() * 2 + s.cos()).sum().backward()
    xt = s.get_plain_text(dtype=D).requires_grad_()
    (xt.sin() * 2 + xt.cos()).sum().backward()
    # 2 cos x - sin x from the forward's values: three of their errors and a
    # truncation per product with the integer gradient (2 units)
    assert (s.grad.get_plain_text(dtype=D) - xt.grad).abs().max() <= 3 * tol(16, 9) + 2 * 2.0**-16
    n = 1000
    s = cryptgpu.cryptensor(torch.randn(n, dtype=D))
    with cryptgpu.no_grad():
        cryptgpu.reset_stats()
        s.sin()
        t = cryptgpu.stats()["total"]
    # the turn fraction's truncation 2, w^2 2, Horner 2 + 8 + 2, two
    # doublings 4, the last one's ring product 1 and truncation 2; P0 sends
    # the most: 3 + 3 + 6 + 24 + 6 + 12 + 2 + 6 = 62 ring elements each
    assert t["rounds"] == 23
    assert t["bytes_per_party"] == 62 * 8 * n


def test_in_a_converted_model(session):
    class Periodic(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(4, 3)

        def forward(self, x):
            h = self.fc(x)
            return torch.sin(h) * 2 + h.cos()

    torch.manual_seed(0)
    m = Periodic().double().eval()
    x = torch.randn(5, 4, dtype=D)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    # the Linear's output error (below 1e-4 for these weights and inputs)
    # moves sin and cos by at most as much (|d/dh| <= 1): 3e-4 for 2 sin + cos
    with torch.no_grad():
        assert (got - m(x)).abs().max() <= 3 * 1e-4 + 3 * tol(16, 10)
    assert usable()
