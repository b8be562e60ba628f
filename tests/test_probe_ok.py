"""Probe OK (2026-12-07, modern architectures converted and trained):
Hardswish's gradient was 2-10x noisier than any other activation's.

Computed as (x (clamp(x, -3, 3) + 3)) / 6, its recorded chain rule divided
the upstream gradient by 6 first and multiplied that unit of rounding by
up to 9 (clamp(x) + 3 <= 6 and |x| <= 3): input gradients off by 9-10
units of 2^-16, and 27% on the weight gradient of the conv before it in a
MobileNetV3 block. It now has its own rule, one product and one division.

Tolerances: f = 16 fractional bits, ULP = 2^-16 (conftest).
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ULP, usable

D = torch.float64


@pytest.mark.parametrize("g", [0.0, 1e-3, 1.0, -0.7])
def test_hardswish_gradient_has_one_rounding(session, g):
    # ties at exactly -3 and 3 included: torch's gradient is 0 and g there
    x = torch.cat(
        [torch.linspace(-4, 4, 2001, dtype=D), torch.tensor([-3.0] * 8 + [3.0] * 8, dtype=D)]
    )
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    y = F.hardswish(xs)
    y.backward(cryptgpu.cryptensor(torch.full_like(x, g)))
    xr = x.clone().requires_grad_()
    F.hardswish(xr).backward(torch.full_like(xr, g))
    got = xs.grad.get_plain_text().double()
    # g's encoding (half a unit) times the slope (<= 1.5), the product's
    # truncation (1 unit) and the division by 6 (1 unit): under 3 units;
    # the old chain rule reached 9-10
    assert (got - xr.grad).abs().max() <= 3 * ULP
    # forward: x's encoding times the slope, the product's and the
    # division's truncations: under 3 units as well
    assert (y.get_plain_text().double() - F.hardswish(x)).abs().max() <= 3 * ULP
    assert usable()


def test_hardswish_rule_in_a_converted_block_gives_torchs_gradients(session):
    """The own rule inside a converted model (a check of the rule's value,
    not of its noise: the test above bounds that)."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(
        torch.nn.Conv2d(4, 8, 1), torch.nn.Hardswish(), torch.nn.Conv2d(8, 4, 1)
    ).double()
    x = torch.randn(2, 4, 5, 5, dtype=D) * 2
    pm = cryptgpu.nn.from_pytorch(block, x).encrypt().train()
    pm(cryptgpu.cryptensor(x)).mean().backward()
    block(x).mean().backward()
    grads = {n: q.grad.get_plain_text().double() for n, q in pm.named_parameters()}
    assert len(grads) == 4
    for name, p in block.named_parameters():
        # each of the 50 positions adds at most 4 units (the Hardswish rule's
        # 3, the second conv's product 1), times |x| <= 8 for a weight: a
        # wrong rule is off by about |g| (0.06-0.25, 4,000-16,000 units)
        bound = (50 * 4 * (8 if name == "0.weight" else 1) + 8) * ULP
        assert (grads[name] - p.grad).abs().max() <= bound, name
    assert usable()
