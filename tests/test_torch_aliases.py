"""torch's aliases of supported operations: torch.divide / x.divide (div,
rounding_mode as div's), negative, absolute, greater, greater_equal, less,
less_equal, not_equal, also in a converted model's graph (torch.divide was
NotImplementedError, x.divide AttributeError, and a converted model's
"unsupported function divide", until 2026-12-06)."""

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import ENC, ULP, assert_close, usable

A = torch.tensor([1.5, -2.0, 3.0, 0.25], dtype=torch.float64)
B = torch.tensor([0.5, 4.0, -3.0, 0.25], dtype=torch.float64)


def test_aliases_match_torch(session):
    x, y = cryptgpu.cryptensor(A), cryptgpu.cryptensor(B)
    # division by a shared divisor: a few units of 2^-16 plus 2^-15 relative
    # (quotients at most 6 here) and the encodings' slope (|1/y| <= 4)
    tol = 2.0**-15 * 6 + 8 * ULP + 4 * ENC * (1 + 24)
    for got in (torch.divide(x, y), x.divide(y), torch.divide(x, other=y)):
        assert_close(got.get_plain_text().double(), A / B, tol)
    assert_close(torch.divide(x, 2.0).get_plain_text().double(), A / 2, ULP)
    with pytest.raises(NotImplementedError, match="rounding_mode"):
        torch.divide(x, y, rounding_mode="floor")  # as torch.div's
    for got, want in (
        (torch.negative(x), -A),
        (x.negative(), -A),
        (torch.absolute(x), A.abs()),
        (x.absolute(), A.abs()),
        (torch.multiply(x, y), A * B),
        (x.multiply(y), A * B),
        (torch.subtract(x, y), A - B),
        (x.subtract(y), A - B),
    ):
        assert_close(got.get_plain_text().double(), want, 4 * ENC * 4 + ULP)  # a product
    for name in ("greater", "greater_equal", "less", "less_equal", "not_equal"):
        want = getattr(torch, name)(A, B).double()
        for got in (getattr(torch, name)(x, y), getattr(x, name)(y), getattr(torch, name)(A, y)):
            assert torch.equal(got.get_plain_text().double(), want), name  # exact 0/1
    assert usable()


class _Aliases(tnn.Module):
    def forward(self, a):
        d = torch.divide(a, a.abs() + 1) + a.divide(2.0)
        s = torch.negative(a) + torch.absolute(a) + a.negative().absolute()
        c = torch.greater(a, 0.5).float() + a.less_equal(0.5).float() + torch.less(a, 1.0)
        return torch.multiply(d, s) + torch.subtract(c, a.not_equal(a).float())


def test_aliases_in_a_converted_model(session):
    model = _Aliases()
    pm = cryptgpu.nn.from_pytorch(model, torch.ones(4)).encrypt()
    got = pm(cryptgpu.cryptensor(A)).get_plain_text().double()
    # a quotient (2^-15 relative, at most 1) times a sum of at most 12, plus units
    assert_close(got, model(A.float()).double(), 12 * (2.0**-15 + 8 * ULP) + 16 * ULP)
