"""init(check_range=True) on a converted model's function and method calls
(a probe, 2026-12-06: only module calls were checked, so F.linear, x @ w
and h * h in a forward overflowed silently inside the check's window),
and the overflow message under the probabilistic truncation.

Tolerance: an in-range output of a product of grid values is within one
truncation of float64 (conftest TRUNC) per product.
"""

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cryptgpu
from conftest import TRUNC, usable

D = torch.float64


class FunLinear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.full((1, 1), w))

    def forward(self, x):
        return F.linear(x, self.w)


class MatMul(FunLinear):
    def forward(self, x):
        return x @ self.w


class Square(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.fc = nn.Linear(1, 1, bias=False)
        self.fc.weight.data.fill_(w)

    def forward(self, x):
        h = self.fc(x)
        return h * h


class ModLinear(Square):
    def forward(self, x):
        return self.fc(x)


class Moves(Square):
    """fc (checked), view and relu (not: they cannot leave the range where
    fc's output is inside it), a product (checked)."""

    def forward(self, x):
        h = torch.relu(self.fc(x).view(-1))
        return h * h


def _convert(cls, w, x):
    return cryptgpu.nn.from_pytorch(cls(w).float(), x.float()).encrypt(src=0)


@pytest.mark.parametrize(
    "cls, w, x, node",
    [
        (FunLinear, 1.5e4, 1e5, "'linear' (linear)"),  # 1.5e9
        (MatMul, 1.5e4, 1e5, "'matmul' (matmul)"),
        (Square, 1.0, 4e4, "'mul' (mul)"),  # fc: 4e4 in range, h * h = 1.6e9
    ],
)
def test_function_calls_of_a_forward_are_checked(cls, w, x, node):
    cryptgpu.init(seed=1, check_range=True, truncation="exact")
    try:
        xin = torch.tensor([[x]])
        pm = _convert(cls, w, xin)
        with pytest.raises(cryptgpu.nn.FixedPointOverflowError, match=re.escape(f"node {node}")):
            with torch.no_grad():
                pm(cryptgpu.cryptensor(xin))
        assert usable()
        small = torch.tensor([[3.0]], dtype=D)
        got = pm(cryptgpu.cryptensor(small)).get_plain_text(dtype=D)
        want = cls(w).double()(small).detach()
        # grid inputs: the products' truncations (two for Square, its h
        # times 3 and h * h: 3 TRUNC of the first, seen through 2 h)
        assert (got - want).abs().max() <= 8 * TRUNC
    finally:
        cryptgpu.uninit()


def test_views_and_bounded_outputs_are_not_checked():
    """Each check is one comparison and one opening: Moves checks fc and
    h * h (2 checks), not its view and relu; a lone Linear checks once."""
    cryptgpu.init(seed=1, truncation="exact")
    try:
        xin = torch.tensor([[2.0]])

        def rounds(cls, check):
            cryptgpu.nn.check_overflow(2.0**30 if check else None)
            pm = _convert(cls, 1.0, xin)
            cryptgpu.reset_stats()
            with torch.no_grad():
                pm(cryptgpu.cryptensor(xin))
            return cryptgpu.stats()["total"]["rounds"]

        one = rounds(Square, True) - rounds(Square, False)  # fc and h * h
        moved = rounds(Moves, True) - rounds(Moves, False)
        lone = rounds(FunLinear, True) - rounds(FunLinear, False)
        assert lone > 0 and one == 2 * lone == moved
    finally:
        cryptgpu.uninit()


def test_the_overflow_message_names_the_probabilistic_truncation():
    """Under "auto" inference, outputs of 1e8 (far below the bound 2^30)
    come out off by 2^32 with chance 1e8 / 2^32 each: the message says
    truncation="exact" rules that out. Under the exact truncation (and in
    training, where "auto" is exact) an overflow is an overflow."""
    cryptgpu.init(seed=1, check_range=True)
    try:
        xin = torch.full((4096, 1), 1e4)
        pm = _convert(ModLinear, 1e4, xin[:1])
        with pytest.raises(cryptgpu.nn.FixedPointOverflowError) as e:
            with torch.no_grad():
                pm(cryptgpu.cryptensor(xin))
        assert 'truncation="exact"' in str(e.value) and "2^32" in str(e.value)
        pm.train()
        big = cryptgpu.cryptensor(torch.full((2, 1), 2e5), requires_grad=True)
        with pytest.raises(cryptgpu.nn.FixedPointOverflowError) as e:
            pm(big)
        assert "learning rate" in str(e.value) and "truncation" not in str(e.value)
        assert usable()
    finally:
        cryptgpu.uninit()
