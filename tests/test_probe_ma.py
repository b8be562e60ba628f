"""Probe MA (2026-12-07, the day's new features): a public BCE target
outside [0, 1] gave a number where torch raises; ``x // nan`` said
"different divisors"; cos / sin / cossin refused older CrypTen's
``iterations=`` (exp and log take it). NLLLoss's weighted mean gradient
is in test_loss_weight_scale."""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import usable

D = torch.float64


def test_bce_public_target_outside_0_1_is_torchs_error(session):
    p = torch.sigmoid(torch.tensor([[0.3, -1.0, 2.0]], dtype=D))
    t = torch.tensor([[0.0, 1.0, 2.0]], dtype=D)
    with pytest.raises(RuntimeError, match="target should be between 0 and 1"):
        F.binary_cross_entropy(p, t)  # torch's own
    for loss in (cryptgpu.nn.BCELoss(), F.binary_cross_entropy):
        with pytest.raises(RuntimeError, match="target should be between 0 and 1"):
            loss(cryptgpu.cryptensor(p), t)
    assert usable()


def test_a_nan_divisor_is_named(session):
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.5]))
    for d in (float("nan"), float("inf")):
        with pytest.raises(NotImplementedError, match=r"fixed point has no (nan|inf)"):
            x // d
    assert usable()


def test_trig_takes_crypten_iterations(session):
    x = torch.tensor([0.5, 1.0, -2.0], dtype=D)
    s = cryptgpu.cryptensor(x)
    xe = s.get_plain_text(dtype=D)
    c, sn = s.cossin(iterations=10)
    # as without the keyword (test_trig: within 2.7 units of 2^-16 here)
    for got, want in ((c, xe.cos()), (sn, xe.sin()), (s.cos(iterations=10), xe.cos())):
        assert (got.get_plain_text(dtype=D) - want).abs().max() <= 3 * 2.0**-16
    assert (s.sin(iterations=None).get_plain_text(dtype=D) - xe.sin()).abs().max() <= 3 * 2.0**-16
    with pytest.raises(TypeError):
        s.sin(iterations=1.5)
    assert usable()
