"""floor, ceil, trunc, round, frac, ``//``, ``%``, fmod and div's rounding modes
(cryptgpu.rounding) against torch's float64 results of the encoded input.

Tolerance: none. The results are integers (times the divisor for the
remainders), computed as ring integers: one exact truncation puts Q within
2 of X / D, the rest X - Q D is exact, and one comparison call of the rest
against multiples of D corrects Q. Every element must equal torch's.
Until 2026-12-07 all of these raised (TypeError for ``//`` and ``%``,
NotImplementedError or AttributeError for the rest).
"""

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import prod_tol, usable

D = torch.float64


def inputs():
    g = torch.Generator().manual_seed(0)
    u = 2.0**-16
    return torch.cat(
        [
            (torch.rand(2000, generator=g, dtype=D) * 2 - 1) * 50,
            torch.arange(-12, 12.25, 0.25, dtype=D),  # on and next to every boundary
            torch.tensor([0.0, u, -u, 1 - u, -1 + u, 2.5 - u, -2.5 + u], dtype=D),
            ((torch.rand(300, generator=g, dtype=D) * 2 - 1) * 2.0**30).round(),
            ((torch.rand(100, generator=g, dtype=D) * 2 - 1) * 2.0**30).round() + 0.5,  # ties
        ]
    )


def exact(got, want):
    got = got.get_plain_text(dtype=D)
    assert got.shape == want.shape
    assert torch.equal(got, want), (got - want).abs().max()


@pytest.mark.parametrize("mode", ["auto", "probabilistic"])
def test_rounding_is_torchs_everywhere(mode):
    cryptgpu.init(seed=5, truncation=mode)
    try:
        s = cryptgpu.cryptensor(inputs())
        x = s.get_plain_text(dtype=D)
        exact(s.floor(), x.floor())
        exact(torch.ceil(s), x.ceil())
        exact(s.trunc(), x.trunc())
        exact(torch.fix(s), x.trunc())
        exact(s.frac(), x.frac())
        exact(s.round(), x.round())  # ties to even, as torch's
        exact(torch.round(s), x.round())
        small = s[:2100]  # (|x| 10^2 within the exact truncation's range)
        # round(x 100) exact, then the exact division by 100: within 2 units
        # of 2^-16 of the quotient, plus float64's own rounding of torch's
        got = torch.round(small, decimals=2).get_plain_text(dtype=D)
        assert (got - torch.round(x[:2100], decimals=2)).abs().max() <= 2 * 2.0**-16 + 1e-12
        for d in (2, 3, 7, -3, 0.5, 1.25, -2.5, 1000, 12345):
            exact(s // d, torch.div(x, d, rounding_mode="floor"))
            exact(torch.floor_divide(s, d), torch.div(x, d, rounding_mode="floor"))
            exact(torch.div(s, d, rounding_mode="trunc"), torch.div(x, d, rounding_mode="trunc"))
            exact(s % d, x % d)
            exact(torch.remainder(s, torch.tensor(d)), torch.remainder(x, d))
            exact(torch.fmod(s, d), torch.fmod(x, d))
    finally:
        cryptgpu.uninit()


def test_in_place_broadcast_gradient_and_cost(session):
    y = cryptgpu.cryptensor(torch.tensor([7.5, -7.5]))
    v = y[0:1]
    y //= 2
    exact(y, torch.tensor([3.0, -4.0], dtype=D))
    exact(v, torch.tensor([3.0], dtype=D))  # a view sees it, as torch's
    y.remainder_(3).fix_()
    exact(y, torch.tensor([0.0, 2.0], dtype=D))
    s = cryptgpu.cryptensor(torch.tensor([[1.5], [-2.25]]))
    exact(
        s.div(torch.full((2, 3), 2.0), rounding_mode="floor"),
        torch.full((2, 3), 0.0).add(torch.tensor([[0.0], [-2.0]])).to(D),
    )
    x = torch.tensor([1.5, -2.25, 3.0], dtype=D)
    s = cryptgpu.cryptensor(x, requires_grad=True)
    (s.floor() + s % 2 + s.frac() * 3 + torch.div(s, 2, rounding_mode="floor")).sum().backward()
    t = x.clone().requires_grad_()
    (t.floor() + t % 2 + t.frac() * 3 + torch.div(t, 2, rounding_mode="floor")).sum().backward()
    exact(s.grad, t.grad)  # 0 through the rounded, 1 through % and frac
    # a broadcast divisor: the gradient sums back over the copies, as torch's
    s = cryptgpu.cryptensor(x, requires_grad=True)
    t = x.clone().requires_grad_()
    wide = torch.full((4, 3), 2.0, dtype=D)
    ((s // wide).sum() + (s % wide).sum()).backward()
    ((torch.div(t, wide, rounding_mode="floor")).sum() + (t % wide).sum()).backward()
    exact(s.grad, t.grad)
    n = 1000
    s = cryptgpu.cryptensor(torch.randn(n, dtype=D) * 10)

    def cost(fn):
        cryptgpu.reset_stats()
        fn()
        t = cryptgpu.stats()["total"]
        return t["rounds"], t["bytes"]

    with cryptgpu.no_grad():
        r1, b1 = cost(lambda: s < 0)
        r3, b3 = cost(lambda: torch.stack([s, s, s]) < 0)
        # the exact truncation of a sharing: 2 rounds, 3 + 2 + 1 ring
        # elements per element over the parties; then one comparison call,
        # of 1 rest (D a power of two) or 3 (D = 3 * 2^16); trunc adds
        # [x < 0] and the rests for ceil (7 in all for D = 3 * 2^16) and one
        # ring product (1 round, one element per party)
        assert cost(lambda: s.floor()) == (2 + r1, 48 * n + b1)
        assert cost(lambda: s // 3) == (2 + r3, 48 * n + b3)
        r7, b7 = cost(lambda: torch.stack([s] * 7) < 0)
        assert cost(lambda: torch.div(s, 3, rounding_mode="trunc")) == (3 + r7, 72 * n + b7)


def test_refusals(session):
    s = cryptgpu.cryptensor(torch.tensor([1.5, -2.5]))
    with pytest.raises(NotImplementedError, match="public divisor"):
        s // s
    with pytest.raises(NotImplementedError, match="public divisor"):
        7 % s
    with pytest.raises(NotImplementedError, match="public divisor"):
        torch.div(7.0, s, rounding_mode="floor")
    for fn, a in (
        (torch.remainder, 7.0),
        (torch.floor_divide, 7.0),
        (torch.fmod, torch.tensor(7.0)),
    ):
        with pytest.raises(NotImplementedError, match="public divisor"):
            fn(a, s)  # (remainder's said "not supported" at all; torch.fmod(7.0, t) is a TypeError)
    with pytest.raises(NotImplementedError, match="multiple of 2"):
        s // 0.1  # not on the grid: floor(x / 0.1) would not be torch's
    with pytest.raises(NotImplementedError, match="different divisors"):
        s % torch.tensor([2.0, 3.0])
    with pytest.raises(ZeroDivisionError):
        s // 0
    with pytest.raises(NotImplementedError, match="decimals"):
        s.round(decimals=-1)
    with pytest.raises(TypeError):
        torch.round(torch.ones(2), decimals=1.5)  # torch's own
    with pytest.raises(TypeError):
        s.round(decimals=1.5)
    for bad in (lambda t: t.div(2, rounding_mode="round"),):
        with pytest.raises(RuntimeError, match="rounding_mode to be one of"):
            bad(torch.ones(2))  # torch's own
        with pytest.raises(RuntimeError, match="rounding_mode to be one of"):
            bad(s)
    assert usable()


def test_in_a_converted_model(session):
    class Bins(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(4, 3)

        def forward(self, x):
            h = self.fc(x) * 4
            odd = torch.arange(x.shape[1]) % 2  # public, as before
            return torch.floor(h) + h // 3 + h % 2 + h.frac() + odd[:3]

    torch.manual_seed(0)
    m = Bins().double().eval()
    x = torch.randn(6, 4, dtype=D)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    with torch.no_grad():
        h, want = m.fc(x) * 4, m(x)
    # h's private value: 4 products of |x| < 3 and |w| < 0.5 and a bias,
    # times 4 (exact); with every h at least 1e-2 from an integer (here),
    # floor, // 3, % 2 and frac round as torch's, and the output (h twice,
    # through % and frac) is off by twice h's error
    err = 4 * prod_tol(5, 3.0, 0.5)
    assert ((h - h.round()).abs() > 1e-2).all()
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    assert (got - want).abs().max() <= 2 * err
    assert usable()
