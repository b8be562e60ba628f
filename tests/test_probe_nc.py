"""Probe NC (2026-12-07, long training runs against float64 torch):

* SmoothL1Loss / F.smooth_l1_loss with a small beta computed the Huber
  loss and multiplied it by 1 / beta, so the product's truncation error
  (a unit of 2^-16) came back times 1 / beta: beta = 1e-5 gave
  [3.05, 1.53, 0, 0] for torch's [3, 1, 0.1, 0.5], and a negative loss on
  another draw. Below beta = 1 it is now c (c / (2 beta)) + |d| - |c| with
  c = clamp(d, -beta, beta): c / (2 beta) lies within 1/2, so an error of
  a unit stays a unit.
* clip_grad_norm_ of shared gradients with max_norm >= 46341 (its square
  past the encoding range), float('inf') included, the usual way to read
  the norm, raised an EncodingError about a value the user never gave.
* Adam/RMSprop/Adagrad refused grad_scale=4.0 ("must be a power of two").

Tolerances: f = 16 fractional bits, ULP = 2^-16, ENC = ULP / 2 (conftest).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, usable

D = torch.float64


@pytest.mark.parametrize("beta", [1e-9, 1e-5, 1e-3, 0.01, 0.3, 1.0, 4.0])
def test_smooth_l1_is_torchs_for_every_beta(session, beta):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(200, dtype=D) * 2, torch.tensor([0.0, 1e-6, -3e-6, 0.1, -0.5])])
    t = torch.randn(205, dtype=D) * 0.1
    want = F.smooth_l1_loss(x, t, beta=beta, reduction="none")
    got = F.smooth_l1_loss(
        cryptgpu.cryptensor(x), cryptgpu.cryptensor(t), beta=beta, reduction="none"
    ).get_plain_text(dtype=D)
    # d = x - t carries two encodings (2 ENC); the linear part |d| - |c|
    # is exact on them; the quadratic part is two products (2 truncations)
    # of factors within 1 and 1/2, and its value is within beta / 2 of
    # torch's where beta is below a unit (d.abs() is taken there): 4 ULP.
    # Before the fix, beta = 1e-5 was 1.5 off.
    assert (got - want).abs().max().item() <= 2 * ENC + 2 * ULP + beta / 2 + ULP
    mean = torch.nn.SmoothL1Loss(beta=beta)(cryptgpu.cryptensor(x), cryptgpu.cryptensor(t))
    # the mean of errors within 4 ULP, plus the division's truncation
    assert abs(mean.get_plain_text(dtype=D).item() - want.mean().item()) <= 5 * ULP


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_smooth_l1_gradient_is_torchs(session, beta):
    torch.manual_seed(1)
    x = torch.randn(100, dtype=D)
    xt = x.clone().requires_grad_(True)
    F.smooth_l1_loss(xt, torch.zeros(100, dtype=D), beta=beta, reduction="sum").backward()
    p = cryptgpu.cryptensor(x, requires_grad=True)
    F.smooth_l1_loss(
        p, cryptgpu.cryptensor(torch.zeros(100)), beta=beta, reduction="sum"
    ).backward()
    # clamp(d / beta, -1, 1): d's encoding (ENC) over beta, and the
    # products' truncations (2 ULP over beta at most, 2 ULP otherwise)
    tol = (ENC + 2 * ULP) / min(beta, 1.0) + 2 * ULP
    assert (p.grad.get_plain_text(dtype=D) - xt.grad).abs().max().item() <= tol


@pytest.mark.parametrize("max_norm", [46341.0, 1e6, math.inf])
def test_clip_grad_norm_with_a_large_max_norm_reads_the_norm(session, max_norm):
    torch.manual_seed(2)
    w = torch.randn(20, dtype=D) * 3
    p = cryptgpu.cryptensor(w, requires_grad=True)
    (p * p).sum().backward()  # grad 2 w
    before = p.grad.get_plain_text(dtype=D)
    norm = torch.nn.utils.clip_grad_norm_([p], max_norm)
    want = (2 * w).norm()
    # the range-reduced inverse square root: 1e-4 relative (utils.py), and
    # the gradient's own products (20 truncations summed)
    assert abs(norm.get_plain_text(dtype=D).item() - want.item()) <= 1e-4 * want.item() + 20 * ULP
    # nothing clipped: the gradient is as it was, exactly
    assert torch.equal(p.grad.get_plain_text(dtype=D), before)
    assert usable()


def test_clip_grad_norm_below_the_cap_still_clips(session):
    torch.manual_seed(3)
    w = torch.randn(20, dtype=D) * 3
    p = cryptgpu.cryptensor(w, requires_grad=True)
    (p * p).sum().backward()
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    g = p.grad.get_plain_text(dtype=D)
    # the clipped gradient's norm is 1 within the factor's precision
    # (1e-4 relative, utils.py) and 20 coordinates' truncations
    assert abs(g.norm().item() - 1.0) <= 1e-4 + 20 * ULP


@pytest.mark.parametrize("opt", ["Adam", "RMSprop", "Adagrad"])
def test_grad_scale_takes_a_whole_float(session, opt):
    def run(scale, make=cryptgpu.cryptensor):
        p = make(torch.tensor([0.5, -1.0, 2.0], dtype=D), requires_grad=True)
        o = getattr(torch.optim, opt)(
            [p], lr=0.1, **({} if scale is None else {"grad_scale": scale})
        )
        for _ in range(2):
            o.zero_grad()
            (p * p).sum().backward()
            o.step()
        return p.get_plain_text(dtype=D) if scale is not None else p.detach()

    want = run(None, lambda t, requires_grad: t.clone().requires_grad_(requires_grad))
    # 4.0 is the integer 4. Two steps, each within 1% of its size (up to
    # lr / sqrt(1 - alpha) = 1 for RMSprop's first) of torch's (README:
    # the optimisers' steps); the probe's 4.0 raised ValueError
    for scale in (4.0, 4):
        assert (run(scale) - want).abs().max().item() <= 2 * 0.01 * 1.0
    for bad in (3.0, 0.5, True, 4.5):
        with pytest.raises(ValueError, match="power of two"):
            getattr(torch.optim, opt)(
                [cryptgpu.cryptensor(torch.zeros(2), requires_grad=True)], lr=0.1, grad_scale=bad
            )
    assert usable()
