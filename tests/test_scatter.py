"""torch's scatter family and the CrypTen functions added with it:
``index_add``, ``index_copy``, ``index_fill``, ``scatter_add``,
``scatter``, their in-place forms, ``masked_select``, ``unfold``,
``logsumexp``, ``erf`` and ``b ** x``, against float64 torch, with their
gradients, torch's errors for bad indices, and the session usable after.

Tolerances (conftest): the scatter family only moves and adds encoded
values, so an element is a sum of at most k encoded inputs, within k ENC
(k = 3 below: the input and up to two added sources at one position), and
alpha = 2.5 adds one truncation (TRUNC) and 2.5 ENC. erf (functions.erf)
is x P(u), u = x^2 / 8, with P's fit within 6.3e-5 (at the cut 2 sqrt(2));
Horner's 9 truncations and 10 encoded coefficients each add at most one
unit (ULP) to P (u <= 1 damps the earlier ones), u's own unit moves P by
at most |P'| <= 3 units, and x P is one more truncation: ERF = 6.3e-5 +
2 sqrt(2) (14 + 3) ULP + ULP = 8.2e-4 (measured 1.3e-4). Its gradient Q(u)
likewise: fit 3.8e-4 at the cut, 14 units of Horner, |Q'| <= 9 units from
u, and the product with the incoming gradient: ERF_GRAD = 3.8e-4 + 24 ULP
= 7.5e-4. logsumexp is the max-shifted exp_nonpos (relative 3e-4 of the
sum, test_functions) and the range-reduced log (a few units of 2^-16):
LSE = 4e-4 absolute. b ** x: see its test.
"""

import math

import pytest
import torch

import cryptgpu
from conftest import ENC, TRUNC, ULP, assert_close, rand
from conftest import F as PRECISION

D = torch.float64
LOCAL = 3 * ENC
ERF, ERF_GRAD, LSE = 6.3e-5 + 2 * math.sqrt(2) * 17 * ULP + ULP, 3.8e-4 + 24 * ULP, 4e-4


# plus the encoded input's ENC times erf's slope 2 / sqrt(pi)
ERF_IN = ERF + 2 / math.sqrt(math.pi) * ENC


def opened(x):
    return x.get_plain_text(dtype=D)


def usable():
    z = cryptgpu.cryptensor(torch.tensor([1.5], dtype=D)) + 1
    return abs(opened(z).item() - 2.5) <= ENC


def test_index_add_copy_fill_match_torch(session, rng):
    x, src = rand(4, 5, gen=rng), rand(3, 5, gen=rng)
    xs, ss = cryptgpu.cryptensor(x), cryptgpu.cryptensor(src)
    idx = torch.tensor([3, 0, 3])  # a repeated index adds up
    assert_close(opened(xs.index_add(0, idx, ss)), x.index_add(0, idx, src), LOCAL)
    assert_close(
        opened(xs.index_add(0, idx, ss, alpha=2.5)),
        x.index_add(0, idx, src, alpha=2.5),
        LOCAL + 2.5 * 2 * ENC + 2 * TRUNC,
    )
    assert_close(opened(torch.index_add(xs, 0, idx, src)), x.index_add(0, idx, src), LOCAL)
    cidx = torch.tensor([2, 0, 1])
    assert_close(opened(xs.index_copy(0, cidx, ss)), x.index_copy(0, cidx, src), LOCAL)
    fidx = torch.tensor([1, 4])
    assert_close(opened(xs.index_fill(1, fidx, -2.0)), x.index_fill(1, fidx, -2.0), LOCAL)
    assert_close(
        opened(xs.index_fill(1, torch.tensor(2), cryptgpu.cryptensor(torch.tensor(0.75)))),
        x.index_fill(1, torch.tensor(2), 0.75),
        LOCAL,
    )
    y = xs.clone()
    y.index_add_(1, torch.tensor([0, 2]), cryptgpu.cryptensor(rand(4, 2, gen=rng)))
    assert y.shape == xs.shape


def test_scatter_and_scatter_add_match_torch(session, rng):
    x, src = rand(3, 4, gen=rng), rand(3, 4, gen=rng)
    xs, ss = cryptgpu.cryptensor(x), cryptgpu.cryptensor(src)
    index = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])  # smaller than src, repeats
    assert_close(opened(xs.scatter_add(0, index, ss)), x.scatter_add(0, index, src), LOCAL)
    assert_close(opened(torch.scatter_add(xs, 0, index, src)), x.scatter_add(0, index, src), LOCAL)
    distinct = torch.tensor([[0, 1, 2, 1], [2, 0, 1, 0]])  # torch's result is defined
    assert_close(opened(xs.scatter(0, distinct, ss)), x.scatter(0, distinct, src), LOCAL)
    col = torch.tensor([[3], [0], [1]])
    assert_close(opened(xs.scatter(1, col, 2.5)), x.scatter(1, col, 2.5), LOCAL)
    assert_close(opened(xs.scatter(1, col, value=-1.0)), x.scatter(1, col, value=-1.0), LOCAL)
    one_hot = torch.zeros(3, 4, dtype=D).scatter(1, col, 1.0)
    zeros = cryptgpu.cryptensor(torch.zeros(3, 4, dtype=D))
    assert_close(opened(zeros.scatter(1, col, 1.0)), one_hot, LOCAL)
    y = xs.clone()
    y.scatter_(0, distinct, ss)
    assert_close(opened(y), x.scatter(0, distinct, src), LOCAL)


def test_scatter_family_gradients_match_torch(session, rng):
    x, src, w = rand(3, 4, gen=rng), rand(2, 4, gen=rng), rand(3, 4, gen=rng)
    distinct = torch.tensor([[0, 1, 2, 1], [2, 0, 1, 0]])
    idx = torch.tensor([2, 0])
    for op in (
        lambda a, s: a.scatter(0, distinct, s),
        lambda a, s: a.scatter_add(0, distinct, s),
        lambda a, s: a.index_add(0, idx, s, alpha=2.0),
        lambda a, s: a.index_copy(0, idx, s),
    ):
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        ss = cryptgpu.cryptensor(src, requires_grad=True)
        (op(xs, ss) * w).sum().backward()
        xt, st = x.clone().requires_grad_(), src.clone().requires_grad_()
        (op(xt, st) * w).sum().backward()
        # the gradients are w's elements (times 2), each one truncated product
        assert_close(opened(xs.grad), xt.grad, 2 * ENC + TRUNC)
        assert_close(opened(ss.grad), st.grad, 2 * (2 * ENC + TRUNC))


def test_masked_select_and_unfold_match_torch(session, rng):
    x = rand(3, 5, gen=rng)
    xs = cryptgpu.cryptensor(x)
    mask = torch.tensor([True, False, True, True, False])  # broadcast over rows
    assert_close(opened(xs.masked_select(mask)), x.masked_select(mask), ENC)
    assert_close(opened(torch.masked_select(xs, mask)), x.masked_select(mask), ENC)
    for dim, size, step in ((1, 2, 1), (1, 3, 2), (0, 3, 1), (-1, 5, 5)):
        assert_close(opened(xs.unfold(dim, size, step)), x.unfold(dim, size, step), ENC)
    xg = cryptgpu.cryptensor(x, requires_grad=True)
    w = rand(3, 2, 3, gen=rng)
    (xg.unfold(1, 3, 2) * w).sum().backward()
    xt = x.clone().requires_grad_()
    (xt.unfold(1, 3, 2) * w).sum().backward()
    assert_close(opened(xg.grad), xt.grad, 2 * (2 * ENC + TRUNC))  # overlapping windows


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.index_add(0, torch.tensor([0, 5]), torch.ones(2, 4)),  # out of range
        lambda x: x.index_add(0, torch.tensor([-1, 1]), torch.ones(2, 4)),  # torch: no wrap
        lambda x: x.index_add(0, torch.tensor([0.0, 1.0]), torch.ones(2, 4)),  # float index
        lambda x: x.index_add(0, torch.tensor([0, 1]), torch.ones(3, 4)),  # count
        lambda x: x.index_add(0, torch.tensor([[0, 1]]), torch.ones(2, 4)),  # not a vector
        lambda x: x.scatter_add(0, torch.tensor([0, 1]), torch.ones(2, 4)),  # rank
        lambda x: x.scatter_add(0, torch.tensor([[0, 3]]), torch.ones(2, 4)),  # range
        lambda x: x.scatter(0, torch.tensor([[0, 1]]), torch.ones(1, 1)),  # src too small
        lambda x: x.index_fill(1, torch.tensor([0, 4]), 1.0),
        lambda x: x.index_fill(1, torch.tensor([0]), torch.ones(2)),  # value not 0-d
        lambda x: x.unfold(1, 5, 1),
        lambda x: x.unfold(1, 2, 0),
        lambda x: x.masked_select(torch.tensor([1, 0, 1, 0])),  # not bool
    ],
)
def test_bad_indices_raise_as_torch(session, call):
    x = torch.zeros(3, 4, dtype=D)
    with pytest.raises((RuntimeError, IndexError)) as want:
        call(x)
    with pytest.raises(type(want.value)):
        call(cryptgpu.cryptensor(x))
    assert usable()


def test_private_positions_are_refused(session):
    xs = cryptgpu.cryptensor(torch.zeros(3, 4, dtype=D))
    with pytest.raises(NotImplementedError, match="reveal the mask"):
        xs.masked_select(xs > 0)
    with pytest.raises(NotImplementedError, match="public"):
        xs.index_add(0, cryptgpu.cryptensor(torch.tensor([0.0])), torch.ones(1, 4))
    with pytest.raises(NotImplementedError, match="multiply"):
        xs.scatter(0, torch.tensor([[0, 1]]), torch.ones(1, 2), reduce="multiply")
    assert usable()


def test_erf_matches_torch_with_gradient(session):
    x = torch.linspace(-5, 5, 801, dtype=D)  # both sides of the cut at 2 sqrt(2)
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    y = xs.erf()
    assert_close(opened(y), torch.erf(x), ERF_IN)
    assert_close(opened(torch.erf(xs)), torch.erf(x), ERF_IN)
    assert_close(opened(torch.special.erf(xs)), torch.erf(x), ERF_IN)
    y.sum().backward()
    xt = x.clone().requires_grad_()
    torch.erf(xt).sum().backward()
    assert_close(opened(xs.grad), xt.grad, ERF_GRAD)
    # the GELU users write by hand: 0.5 x (1 + erf(x / sqrt 2)), erf's error times |x| / 2 <= 2.5
    xs = cryptgpu.cryptensor(x)
    g = 0.5 * xs * (1 + torch.erf(xs / math.sqrt(2)))
    assert_close(opened(g), torch.nn.functional.gelu(x), 2.5 * ERF_IN + 3 * TRUNC)


def test_logsumexp_matches_torch(session, rng):
    y = rand(3, 4, 6, gen=rng, scale=6.0)
    ys = cryptgpu.cryptensor(y, requires_grad=True)
    for dim, keep in ((2, False), ((0, 2), True), (-1, True), (1, False)):
        got = torch.logsumexp(ys, dim, keepdim=keep)
        assert_close(opened(got), torch.logsumexp(y, dim, keepdim=keep), LSE)
    assert_close(opened(torch.special.logsumexp(ys, 1)), torch.logsumexp(y, 1), LSE)
    ys.logsumexp(2).sum().backward()
    yt = y.clone().requires_grad_()
    yt.logsumexp(2).sum().backward()
    assert_close(opened(ys.grad), yt.grad, LSE)  # the gradient is the softmax (3e-4)


def test_power_of_a_public_base(session):
    """b ** x is 2^(x log2 b), range-reduced (functions.exp2): p(u) on
    [0, 1] within 2.7e-9 plus its Horner truncations (a few units of 2^-16,
    relative to p >= 1) times the exact 2^k, and the product x log2 b's
    unit moving the result by ln 2 times it: POW = 4 units of 2^-16 plus
    2^-14 relative. CrypTen's exp limit, used until 2026-12-05, gave 2^20
    30% low."""
    x = torch.linspace(-8, 20, 57, dtype=D)
    got = opened(2 ** cryptgpu.cryptensor(x))
    want = 2**x
    assert ((got - want).abs() <= 4 * ULP + 2.0**-14 * want).all()
    tens = torch.tensor([0.5, 3.0, 5.0], dtype=D)
    got = opened(10 ** cryptgpu.cryptensor(tens))
    # log2(10) x is one more product: its unit times ln 2 log2(10) = 2.3 relative units
    assert ((got - 10**tens).abs() <= 4 * ULP + 2.0**-13 * 10**tens).all()
    assert_close(
        opened(torch.exp2(cryptgpu.cryptensor(x))), want, float(4 * ULP + 2.0**-14 * want.max())
    )
    assert_close(opened(1 ** cryptgpu.cryptensor(x)), torch.ones(57, dtype=D), ENC)
    with pytest.raises(NotImplementedError, match="positive base"):
        (-2) ** cryptgpu.cryptensor(x)
    assert usable()


def test_costs_of_erf_exp2_and_logsumexp(session):
    """Rounds and bytes against the README's cost table: exp2 is a clamp
    to public bounds (one batched ReLU), one comparison of the unit
    thresholds, a Horner call of degree 6, the 2^k scaling of the
    negative octaves (two exact steps) and the selection product, and
    nothing more (its parts measured alone sum to it: 38 rounds); erf has
    GELU's pieces (one comparison call for two indicators, x^2 truncated
    exactly, ten products, one integer selection: 33 rounds); logsumexp
    is log_softmax's normaliser (the same rounds)."""
    from cryptgpu import functions as fx

    x = cryptgpu.cryptensor(torch.randn(64, dtype=D) * 4)

    def cost(fn):
        cryptgpu.reset_stats()
        out = fn()
        t = cryptgpu.stats()["total"]
        return out, t["rounds"], t["bytes_per_party"]

    lo, hi = -(PRECISION + 1), 62 - 2 * PRECISION  # exp2's clamp at the session's f
    _, rounds, nbytes = cost(lambda: fx.exp2(x))
    xc, r1, b1 = cost(lambda: x.clamp(float(lo), float(hi)))
    starts = list(range(lo, hi))
    ind, r2, b2 = cost(lambda: fx._bucket_indicator(xc, starts, "exp2", unit=True))
    p, r3, b3 = cost(lambda: fx._horner(fx._EXP2_COEFFS, xc * 1))
    c, r4, b4 = cost(lambda: fx._pow2_copies(p, starts[::-1]))
    _, r5, b5 = cost(lambda: (ind * c).sum(0))
    assert rounds == r1 + r2 + r3 + r4 + r5 == 38
    assert nbytes == b1 + b2 + b3 + b4 + b5
    assert cost(lambda: x.erf())[1] == cost(lambda: x.gelu())[1] == 33
    assert cost(lambda: x.logsumexp(0))[1] == cost(lambda: x.log_softmax(0))[1]
