"""What a differential fuzzer of the SharedTensor API (probe JB) found
different from float64 torch: ``where`` / ``masked_fill`` with a shared
condition were truncated fixed-point products (garbage past 2^31, and
under ``truncation="auto"`` about |x - y| / 2^32 of the elements off by
2^32), where relu / maximum / clamp are exact; comparisons and
maximum/minimum with a bool operand raised; and smaller API differences
(F.hardtanh_, squeeze_/unsqueeze_ on a recorded result, an in-place op
on a partly overlapping view of itself, squeeze and norm dims, a Python
bool condition). Each test fails on the code before its fix. Tolerances
follow conftest's model (ENC, TRUNC) and are derived next to each
assertion.
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def cost(fn):
    """(rounds, busiest party's bytes) of ``fn()``."""
    cryptgpu.reset_stats()
    fn()
    t = cryptgpu.stats()["total"]
    return t["rounds"], t["bytes_per_party"]


def _big_sums():
    """Shared sums of 4096 elements of +-(2^30 - 1) each: +-4.4e12, far past
    2^31 (the fixed-point product range) but inside the ring (2^47), and
    exact (whole numbers, encoded exactly and added in the ring). The
    plaintext sums in float64 (exact: below 2^53)."""
    x = torch.full((2, 4096), 2.0**30 - 1, dtype=D)
    x[1] *= -1
    return cryptgpu.cryptensor(x).sum(1), x.sum(1)


# ------------------------------------------------------------ A. where exact


def test_where_and_masked_fill_of_a_comparison_are_exact_past_2_31(session):
    """where(s > 0, s, 0) on sums of +-4.4e12: [-4096, 0] before (the
    product's truncation wrapped), relu's exact answer now; masked_fill
    likewise. Every value is a whole number below 2^47 and the selection
    is an exact ring product: error 0."""
    s, p = _big_sums()
    assert torch.equal(opened(torch.where(s > 0, s, 0.0)), torch.where(p > 0, p, 0.0))
    assert torch.equal(opened(s.masked_fill(s < 0, 0.0)), p.masked_fill(p < 0, 0.0))
    assert torch.equal(opened(s.where(s >= 0, -s)), p.where(p >= 0, -p))
    assert torch.equal(opened(torch.where(s <= 0, 1.0, s)), torch.where(p <= 0, 1.0, p))
    assert torch.equal(opened(torch.where(s == s, s, 0.0)), p)  # == and != keep their bit too
    assert torch.equal(opened(torch.where(s != -s, s, 0.0)), p)


def test_where_of_a_comparison_under_auto_truncation(session):
    """where(a > b, a, b) at |a| = |b| = 1e8 under the default "auto"
    truncation: 9189 of 200,000 elements were off by 2^32 (the truncated
    product of 2e8 failing with chance ~2e8 / 2^32); maximum had none.
    Whole numbers, an exact selection: error 0."""
    n = 20_000
    a = cryptgpu.cryptensor(torch.full((n,), 1e8, dtype=D))
    b = -a
    assert torch.equal(opened(torch.where(a > b, a, b)), torch.full((n,), 1e8, dtype=D))
    assert torch.equal(opened(a.masked_fill(a < b, 0.0)), torch.full((n,), 1e8, dtype=D))


def test_where_views_and_other_shared_conditions_are_exact(session):
    """A view of a comparison (unsqueeze, index, expand) selects by the same
    view of its bit; a shared 0/1 condition that is no comparison's own
    result (1 - c, a product of comparisons, a user's shared 0/1 tensor, a
    comparison changed in place) by its value divided by 2^f exactly.
    Against the big sums every one of them was a wrapped product before.
    Error 0 (whole numbers, exact selections)."""
    s, p = _big_sums()
    s2, p2 = s.reshape(2, 1).expand(2, 3), p.reshape(2, 1).expand(2, 3)
    c, pc = s2 > 0, p2 > 0
    want = torch.where(pc, p2, -p2)
    assert torch.equal(opened(torch.where(c, s2, -s2)), want)
    assert torch.equal(opened(torch.where(c[:, :1], s2, -s2)), want)  # a view: broadcast
    assert torch.equal(opened(torch.where(c[0].unsqueeze(0), s2, -s2)), torch.where(pc[0], p2, -p2))
    assert torch.equal(opened(torch.where(1 - c, -s2, s2)), want)
    assert torch.equal(opened(torch.where(c * (s2 > -s2), s2, -s2)), want)
    user = cryptgpu.cryptensor(pc.double())
    assert torch.equal(opened(torch.where(user, s2, -s2)), want)
    c[0] = 0.0  # the comparison changed in place: its kept bit is stale
    want[0] = -p2[0]
    assert torch.equal(opened(torch.where(c, s2, -s2)), want)


def test_where_gradients_with_a_comparison_condition(session):
    """Gradients as torch's: g where the condition holds to x, g elsewhere
    to y, summed over broadcast dims (x of shape (3, 1), y a public scalar
    or shared (4,)), with the values past 2^31 exact (they were garbage).
    The gradients are exact selections of g (encoded: within ENC each, a
    sum over 4 broadcast columns within 4 ENC)."""
    torch.manual_seed(0)
    xp = torch.tensor([[3.0e9], [-2.5e9], [1.5]], dtype=D)
    yp = torch.tensor([-1.0e9, 2.0e9, 0.25, 7.0], dtype=D)
    g = torch.randn(3, 4, dtype=D)
    x = cryptgpu.cryptensor(xp / 4, requires_grad=True)
    y = cryptgpu.cryptensor(yp / 4, requires_grad=True)
    xs, ys = x * 4, y * 4  # values past 2^31: sums are exact, encoding is not
    out = torch.where(xs > ys, xs, ys)
    xt, yt = xp.clone().requires_grad_(), yp.clone().requires_grad_()
    want = torch.where(xt > yt, xt, yt)
    assert torch.equal(opened(out), want.detach())
    (out * g).sum().backward()
    (want * g).sum().backward()
    # x = xs / 4: d/dx = 4 d/dxs (an exact integer product)
    assert (opened(x.grad) - 4 * xt.grad).abs().max() <= 4 * 4 * ENC
    assert (opened(y.grad) - 4 * yt.grad).abs().max() <= 4 * 3 * ENC
    z = cryptgpu.cryptensor(xp / 4, requires_grad=True)
    zs = z * 4
    zs.masked_fill(zs < 0, 0.5).sum().backward()  # a public fill value
    assert torch.equal(opened(zs.masked_fill(zs < 0, 0.5)), xp.masked_fill(xp < 0, 0.5))
    assert torch.equal(opened(z.grad), 4.0 * (xp >= 0).double())  # exact 0/1 times 4


def test_where_with_a_comparison_costs_a_comparison_and_one_round(session):
    """Rounds and bytes (README's cost table: "ReLU, comparison, abs" 10
    rounds, "mul" 2 rounds and n ring elements): where(a > b, a, b) is
    the comparison and one product of ring integers, 11 rounds and relu's
    bytes + 8 n (it was 12 rounds: a product with its truncation);
    where with a kept comparison 1 round and 8 n bytes, also for a view
    of it (it was 2); another shared condition adds the exact division by
    2^f (2 rounds, P0 3n), 3 rounds."""
    n = 1000
    a = cryptgpu.cryptensor(torch.randn(n, dtype=D))
    b = cryptgpu.cryptensor(torch.randn(n, dtype=D))
    relu = cost(lambda: (a - b).relu())
    assert relu[0] == 10
    assert cost(lambda: torch.where(a > b, a, b)) == (relu[0] + 1, relu[1] + 8 * n)
    assert cost(lambda: a.masked_fill(a < 0, 0.0)) == (relu[0] + 1, relu[1] + 8 * n)
    c = a > b
    assert cost(lambda: torch.where(c, a, b)) == (1, 8 * n)
    assert cost(lambda: torch.where(c.reshape(n, 1)[:, 0], a, b)) == (1, 8 * n)
    assert cost(lambda: torch.where(1 - c, a, b)) == (3, 8 * 3 * n + 8 * n)


def test_a_comparison_times_a_shared_tensor_selects_exactly(session):
    """``(s > 0) * s`` (the mask-multiply habit, relu written by hand) was a
    truncated product like where's: wrapped past 2^31 and, under "auto",
    off by 2^32 at 1e8 for ~1 in 20 elements. Now the kept bit selects as
    in where: whole numbers, exact selections, error 0; the gradient of
    the shared factor is g times the same bit (exact for a whole g); 1 round and 8 n bytes (a product of ring
    integers) where the product cost 2 rounds."""
    s, p = _big_sums()
    assert torch.equal(opened((s > 0) * s), (p > 0) * p)
    assert torch.equal(opened(s * (s <= 0)), p * (p <= 0))
    assert torch.equal(opened((s > 0).double() * s), (p > 0) * p)  # a copy keeps the bit
    assert torch.equal(opened((s > 0).float().clone() * s), (p > 0) * p)
    s2, p2 = s.reshape(2, 1).expand(2, 3), p.reshape(2, 1).expand(2, 3)
    assert torch.equal(opened((s2 > 0)[:, :1] * s2), (p2 > 0)[:, :1] * p2)  # a view, broadcast
    n = 20_000
    a = cryptgpu.cryptensor(torch.full((n,), 1e8, dtype=D))
    assert torch.equal(opened((a > -a) * a), torch.full((n,), 1e8, dtype=D))
    a.mul_(a > 0)  # in place, as x *= mask
    assert torch.equal(opened(a), torch.full((n,), 1e8, dtype=D))
    torch.manual_seed(1)
    xp = torch.randn(3, 4, dtype=D)
    x = cryptgpu.cryptensor(xp, requires_grad=True)
    out = (x > 0).unsqueeze(0) * x  # the bit's view broadcast: shape (1, 3, 4)
    (out * 3).sum().backward()  # an integer factor: g = 3, exact
    assert out.shape == (1, 3, 4)
    assert torch.equal(opened(out)[0], ((xp > 0) * opened(x)))  # x's own encoding selected
    assert torch.equal(opened(x.grad), 3.0 * (xp > 0))  # exact 0/1 times 3
    b = cryptgpu.cryptensor(torch.randn(1000, dtype=D))
    c = b > 0
    assert cost(lambda: c * b) == (1, 8 * 1000)


# ------------------------------------------------------------ B. bool operands


def test_comparisons_and_maximum_with_a_bool_operand(session):
    """A bool operand is taken as 0/1, as torch promotes it (it raised
    torch's "Subtraction ... with a bool tensor"); x - mask itself stays
    torch's NotImplementedError. Comparisons are exact 0/1 here (the
    differences are at least 0.5); maximum/minimum one ReLU of encoded
    inputs: within ENC."""
    xp = torch.tensor([-1.0, 0.5, 1.0, 2.0], dtype=D)
    m = torch.tensor([True, False, True, False])
    x = cryptgpu.cryptensor(xp)
    for f in (
        lambda a: a > m,
        lambda a: a == m,
        lambda a: m < a,
        lambda a: a >= True,
        lambda a: a != False,  # noqa: E712 - the operand under test
        lambda a: torch.le(a, m),
        lambda a: torch.gt(m, a),
    ):
        assert torch.equal(opened(f(x)), f(xp).double())
    for f in (
        lambda a: torch.maximum(a, m),
        lambda a: torch.minimum(m, a),
        lambda a: a.clamp(min=True),
        lambda a: torch.where(a > 0, a, True),
    ):
        assert (opened(f(x)) - f(xp)).abs().max() <= ENC
    with pytest.raises(NotImplementedError):
        xp - m
    with pytest.raises(NotImplementedError):
        x - m
    assert usable()


# ------------------------------------------------------------ C. smaller ones


def test_in_place_functional_activations(session):
    """F.hardtanh_ (and F.elu_, F.leaky_relu_, F.threshold_, F.celu_,
    F.selu_) change x in place, as torch's, where they raised. One clamp
    (within ENC), or the ELU family's exp_nonpos (3e-4 relative, README)
    times alpha (and selu's scale 1.05): within 2e-4 on these inputs."""
    xp = torch.tensor([-3.0, -0.5, 0.2, 2.0], dtype=D)
    for name, args, tol in (
        ("hardtanh_", (), ENC),
        ("hardtanh_", (-0.4, 0.5), ENC),
        ("leaky_relu_", (0.2,), 2 * ENC),  # one truncated product by 0.2
        ("threshold_", (0.1, 7.0), ENC),
        ("elu_", (0.5,), 2e-4),
        ("celu_", (2.0,), 2e-4),
        ("selu_", (), 2e-4),
    ):
        x, t = cryptgpu.cryptensor(xp), xp.clone()
        assert getattr(F, name)(x, *args) is x
        getattr(F, name)(t, *args)
        assert (opened(x) - t).abs().max() <= tol, name


def test_squeeze_and_unsqueeze_in_place_on_a_recorded_result(session):
    """h = x * x; h.squeeze_() under autograd, as torch allows on a result
    (it raised); the gradient goes through the reshape: 2 x w, exact
    products of whole numbers. A leaf still refuses, as torch's."""
    xp = torch.tensor([[1.0], [2.0], [3.0]], dtype=D)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    x = cryptgpu.cryptensor(xp, requires_grad=True)
    h = x * x
    assert h.squeeze_() is h and tuple(h.shape) == (3,)
    (h * w).sum().backward()
    assert torch.equal(opened(x.grad), 2 * xp * w.reshape(3, 1))
    x.grad = None
    h = x * 2
    h.unsqueeze_(0)
    assert tuple(h.shape) == (1, 3, 1)
    h.sum().backward()
    assert torch.equal(opened(x.grad), torch.full((3, 1), 2.0, dtype=D))
    with pytest.raises(RuntimeError):
        torch.ones(3, 1, requires_grad=True).squeeze_()
    with pytest.raises(RuntimeError):
        x.squeeze_()
    assert usable()


def test_bad_dims_and_conditions_raise_as_torch(session):
    """torch's errors where we computed: an in-place op with a partly
    overlapping view of itself, squeeze with a repeated dim, the "fro"
    norm over more than 2 dims (p=2 and p=1 still take them), and a
    Python bool condition. Nothing changes and the session stays usable."""
    xp = torch.arange(9, dtype=D).reshape(3, 3)
    x = cryptgpu.cryptensor(xp)
    for f in (
        lambda a: a.add_(a.t()),
        lambda a: a.t().add_(a),
        lambda a: a.mul_(a[0]),
        lambda a: a.copy_(a.t()),
    ):
        with pytest.raises(RuntimeError, match="single memory location"):
            f(xp.clone())
        with pytest.raises(RuntimeError, match="single memory location"):
            f(x)
    assert torch.equal(opened(x), xp)
    x.add_(x.t().t())  # the same elements: allowed, as torch's
    assert torch.equal(opened(x), 2 * xp)
    y = cryptgpu.cryptensor(torch.ones(1, 3, dtype=D))
    with pytest.raises(RuntimeError, match="appears multiple times"):
        torch.ones(1, 3).squeeze((0, -2))
    with pytest.raises(RuntimeError, match="appears multiple times"):
        y.squeeze((0, -2))
    zp = torch.ones(2, 3, 4, dtype=D)
    z = cryptgpu.cryptensor(zp)
    for f in (lambda a: a.norm(dim=(0, 1, 2)), lambda a: torch.norm(a, dim=[0, 1, 2])):
        with pytest.raises(RuntimeError, match="2-tuple"):
            f(zp)
        with pytest.raises(RuntimeError, match="2-tuple"):
            f(z)
    # sqrt(24) and 24: range-reduced norm, 1e-4 relative (README)
    assert abs(opened(z.norm(p=2, dim=(0, 1, 2))).item() - 24**0.5) <= 1e-4 * 24**0.5
    assert abs(opened(z.norm(p=1, dim=(0, 1, 2))).item() - 24) <= ENC
    with pytest.raises(TypeError):
        torch.where(True, zp, zp)
    with pytest.raises(TypeError):
        cryptgpu.where(True, z, z)
    with pytest.raises(TypeError):
        zp.where(True, zp)
    with pytest.raises(TypeError):
        z.where(True, z)
    assert usable()
