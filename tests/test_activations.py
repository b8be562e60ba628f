"""torch's activations beyond ReLU (methods, F.* on a SharedTensor, the
nn layers and their conversion from PyTorch), comparisons and max inside a
converted model, and the element-wise extras (masked_fill, norm, normalize,
polynomial, pos_pow, dropout, the in-place forms), against float64 torch.

Tolerances (f = 16): inputs are encoded within ENC = 2^-17 and each
truncation adds at most TRUNC = 2^-16. ReLU and clamp are exact on the
encoded input; a product by a public factor adds one truncation; exp_nonpos
is within 3e-4 of e^z relative (functions.py), sigmoid within 1e-3 and tanh
within 2e-3 absolute (test_functions.py). Each bound is derived next to its
case.
"""

import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, ULP, assert_close, sgd_alongside, usable

A = torch.linspace(-6, 6, 121, dtype=torch.float64)
X6 = 6.0  # the largest |x| in A
EXP = 3e-4  # exp_nonpos's relative error


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


CASES = [
    # name, private call, torch call, tolerance
    ("leaky_relu", lambda x: x.leaky_relu(0.1), lambda a: F.leaky_relu(a, 0.1), ENC + TRUNC),
    ("F.leaky_relu", lambda x: F.leaky_relu(x), F.leaky_relu, ENC + TRUNC),
    ("relu6", F.relu6, F.relu6, ENC),
    ("hardtanh_kw", lambda x: x.hardtanh(min_value=-2, max_value=3), lambda a: a.clamp(-2, 3), ENC),
    ("clip", lambda x: torch.clip(x, -1, 2), lambda a: a.clip(-1, 2), ENC),
    # x / 6 is one division (TRUNC), then an exact clamp
    ("hardsigmoid", F.hardsigmoid, F.hardsigmoid, ENC + TRUNC),
    # x (clamp(x, -3, 3) + 3) / 6: the clamp exact on the encoded x, the
    # product of |x| <= 6 and a factor <= 6 (12 ENC + TRUNC), / 6, TRUNC
    ("hardswish", F.hardswish, F.hardswish, X6 * (ENC + TRUNC) + ENC + TRUNC),
    # relu(x) + alpha (e^min(x,0) - 1): alpha times exp's error, the
    # encoding moved through a slope <= max(1, alpha), one product
    ("elu", lambda x: F.elu(x, 0.7), lambda a: F.elu(a, 0.7), 0.7 * EXP + 2 * ENC + 3 * TRUNC),
    ("selu", F.selu, F.selu, 1.06 * (1.68 * EXP + 2 * ENC + 3 * TRUNC) + TRUNC),
    ("celu", lambda x: F.celu(x, 2.0), lambda a: F.celu(a, 2.0), 2 * EXP + 2 * ENC + 4 * TRUNC),
    # x sigmoid(x): |x| times sigmoid's 1e-3
    ("silu", F.silu, F.silu, X6 * 1e-3 + ENC + TRUNC),
    # relu(x) + log1p(e^-|x|): exp's relative error (log1p' <= 1), the
    # degree-8 polynomial (3.4e-8) and its 8 Horner truncations
    ("softplus", F.softplus, F.softplus, EXP + 3.4e-8 + 10 * TRUNC + ENC),
    ("softplus_beta", lambda x: F.softplus(x, 2.0), lambda a: F.softplus(a, 2.0), EXP + 12 * TRUNC),
    # x tanh(softplus(x)): |x| times tanh's 2e-3 (softplus's error, damped
    # by tanh' <= 1, is below it)
    ("mish", F.mish, F.mish, X6 * (2e-3 + EXP) + TRUNC),
    ("masked_fill", lambda x: x.masked_fill(A > 3, 9.0), lambda a: a.masked_fill(A > 3, 9.0), ENC),
    (
        "masked_fill_shared_mask",
        lambda x: x.masked_fill(x > 3, 9.0),
        lambda a: a.masked_fill(a > 3, 9.0),
        ENC + TRUNC,
    ),
    # Horner with coefficients encoded at 16 bits (ENC each, times |x|^(i+1)
    # for the i-th: 6 + 36 + 216 ENC), the input's ENC through the slope (< 7),
    # and the truncations, each multiplied by the |x| factors after it
    # (1 + 6 + 36 TRUNC)
    (
        "polynomial",
        lambda x: x.polynomial([1.0, 0.5, -0.01]),
        lambda a: a + 0.5 * a**2 - 0.01 * a**3,
        ENC * (X6 + X6**2 + X6**3) + 7 * ENC + TRUNC * (1 + X6 + X6**2),
    ),
]


@pytest.mark.parametrize("name,priv,plain,tol", CASES, ids=[c[0] for c in CASES])
def test_activation_matches_torch(session, name, priv, plain, tol):
    assert_close(pt(priv(cryptgpu.cryptensor(A))), plain(A), tol)


def test_polynomial_with_shared_coefficients(session):
    """CrypTen's test_polynomial passes MPCTensor(coeffs): the same Horner's
    rule with private products (a misleading "len() of a 0-d tensor"
    before), the coefficients' gradients too. |x| <= X = 2, |c| <= 1."""
    g = torch.Generator().manual_seed(4)
    b = torch.rand(9, generator=g, dtype=torch.float64) * 4 - 2
    c = torch.tensor([0.7, -0.9, 0.4], dtype=torch.float64)
    x = cryptgpu.cryptensor(b, requires_grad=True)
    cs = cryptgpu.cryptensor(c, requires_grad=True)
    y = x.polynomial(cs)
    bt, ct = b.clone().requires_grad_(), c.clone().requires_grad_()
    yt = ct[0] * bt + ct[1] * bt**2 + ct[2] * bt**3
    X = 2.0
    # as the public case: each coefficient's encoding times |x|^(i+1), the
    # input's through the slope (|p'| <= 0.7 + 2 0.9 X + 3 0.4 X^2 < 10),
    # the truncations times the |x| factors after them
    fwd = ENC * (X + X**2 + X**3) + 10 * ENC + TRUNC * (1 + X + X**2)
    assert_close(pt(y), yt.detach(), fwd)
    assert_close(pt(x.polynomial(c)), yt.detach(), fwd)  # public ones: as before
    y.sum().backward()
    yt.sum().backward()
    # d/dx: three terms (acc2, x acc, x^2 c2), each a chain like the forward's
    assert_close(pt(x.grad), bt.grad, 3 * fwd)
    # d/dc_k = sum_i x_i^(k+1): per element k + 1 encodings of x times
    # X^k and a truncation per product (1 + X + X^2 for k = 2), over 9
    assert_close(pt(cs.grad), ct.grad, 9 * (3 * X**2 * ENC + (1 + X + X**2) * TRUNC))


def test_norms_normalize_and_pos_pow(session):
    a = torch.tensor([[3.0, -4.0, 12.0], [0.5, 0.25, -1.0]], dtype=torch.float64)
    x = cryptgpu.cryptensor(a)
    # the square sum's truncations (ULP each) over 2 norm, then 1e-4 relative
    for got, want in (
        (x.norm(), a.norm()),
        (torch.norm(x, dim=1), a.norm(dim=1)),
        (
            torch.linalg.vector_norm(x, dim=1, keepdim=True),
            torch.linalg.vector_norm(a, dim=1, keepdim=True),
        ),
    ):
        assert_close(pt(got), want, 1e-4 * want.abs().max() + 6 * ULP)
    assert_close(pt(torch.norm(x, 1)), a.abs().sum(), 6 * ENC)  # exact |x|, summed
    assert_close(pt(x.norm(p=math.inf, dim=1)), a.abs().amax(1), ENC)
    with pytest.raises(NotImplementedError, match="p=0"):
        x.norm(p=0)
    # x / sqrt(sum x^2) range-reduced: 1e-4 relative plus the encodings
    assert_close(pt(F.normalize(x, dim=1)), F.normalize(a, dim=1), 1e-4 + 8 * ENC)
    b = torch.tensor([0.5, 2.0, 4.0, 9.0], dtype=torch.float64)
    y = cryptgpu.cryptensor(b)
    # x^1.5 = x sqrt(x): sqrt's 1e-4 relative times x, the product
    assert_close(pt(y.pos_pow(1.5)), b**1.5, 1e-4 * 27 + 4 * ULP * 9)
    assert_close(pt(y.pos_pow(2)), b**2, 2 * 9 * ENC + TRUNC)


@pytest.mark.parametrize("q", [1.5, 2.5, 3, 4, 0.7])
def test_norm_with_any_positive_p(session, q):
    """CrypTen's test_norm uses p in [1, 1.5, 2, 3, inf, 'fro'] (p = 1.5 and
    3 were NotImplementedError): (sum |x|^p)^(1/p), range-reduced by the
    largest |x|'s octave. Tolerances: the root's log and exp2 (1e-4
    relative each) and, for a fractional p, pos_pow's on each term: 3e-4
    relative; the inputs' encodings (ENC each, the norm's slope at most 1
    per element). Gradients, of magnitude at most 1: 3e-4 relative and the
    backward's units of 2^-16 on the scaled elements (max |x| >= 1 in
    these rows: in [1, 2)) times the powers' slope q 2^(q-1), a few each."""
    a = torch.tensor(
        [[3.0, -4.0, 12.0, 0.0], [0.5, 0.25, -1.0, 2.0], [10.0, 20.0, -30.0, 0.5]],
        dtype=torch.float64,
    )
    x = cryptgpu.cryptensor(a, requires_grad=True)
    for dim, keepdim in [(1, False), (None, False), (0, True), ((0, 1), False)]:
        want = a.norm(p=q, dim=dim, keepdim=keepdim)
        got = pt(x.norm(p=q, dim=dim, keepdim=keepdim))
        assert_close(got, want, 3e-4 * want.abs().max().item() + a.numel() * ENC)
    for got, want in [
        (torch.linalg.vector_norm(x, ord=q, dim=1), a.norm(p=q, dim=1)),
        (torch.norm(x, q), a.norm(p=q)),
    ]:
        assert_close(pt(got), want, 3e-4 * want.abs().max().item() + a.numel() * ENC)
    y = x.norm(p=q, dim=1)
    y.backward(cryptgpu.cryptensor(torch.ones(3)))
    t = a.clone().requires_grad_()
    t.norm(p=q, dim=1).sum().backward()
    assert_close(pt(x.grad), t.grad, 3e-4 + 8 * q * 2 ** (q - 1) * ULP)
    z = cryptgpu.cryptensor(torch.zeros(2, 3))
    assert_close(pt(z.norm(p=q, dim=1)), torch.zeros(2), ULP)  # a zero vector: 0


@pytest.mark.parametrize("scale", [1.0, 300.0, 3000.0, 1e4])
def test_norm_p2_value_and_gradient_at_any_scale(session, scale):
    """p = 2 (the default; also torch.norm and vector_norm's default ord)
    range-reduced by max |x| as any other p: until 2026-12-06 the square
    root of the plain sum of squares, whose gradient went through a rounded
    1 / (2 sqrt(ss)) (1.5% to 12% off at these scales) and whose value
    wrapped once the sum passed 2^30 (scale 1e4: sum 1.6e9, norm 31840
    for 40984). Reference: float64 torch on the encoded inputs.
    Tolerances: the root's 1e-4 relative (sqrt on [1, 4n)) plus the
    scaled squares' truncations (n units of 2^-16 relative to max |x|^2,
    i.e. n ULP / 2 relative on the norm); the gradient x / ||x|| (at most 1)
    within 1e-4 plus a few units of 2^-16 of the scaled elements (slope 2)."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 16, generator=g, dtype=torch.float64) * scale
    a[2] = scale  # 16 equal entries: sum of squares 16 scale^2 (1.6e9 > 2^30 at 1e4)
    a = (a * 2.0**16).round() / 2.0**16  # the encoded inputs
    x = cryptgpu.cryptensor(a, requires_grad=True)
    t = a.clone().requires_grad_()
    want = t.norm(dim=1)
    got = x.norm(dim=1)
    assert_close(pt(got), want.detach(), 1e-4 * want.max().item() + 16 * ULP)
    got.backward(cryptgpu.cryptensor(torch.ones(3)))
    want.sum().backward()
    assert_close(pt(x.grad), t.grad, 1e-4 + 8 * ULP)  # was 0.118 off at 1e3
    for y, ref in (
        (torch.linalg.vector_norm(x[2]), a[2].norm()),
        (torch.norm(x[:2], "fro"), a[:2].norm()),
        (x.norm(), a.norm()),
    ):
        assert_close(pt(y), ref, 1e-4 * ref.item() + 48 * ULP)


def test_norm_minus_inf_and_refused_p(session):
    a = torch.tensor([[3.0, -0.5, 12.0], [0.0, 2.0, -1.0]], dtype=torch.float64)
    x = cryptgpu.cryptensor(a)
    assert_close(pt(x.norm(p=-math.inf, dim=1)), a.norm(p=-math.inf, dim=1), ENC)
    for p in (0, -1, "nuc"):
        with pytest.raises(NotImplementedError, match="p="):
            x.norm(p=p)
    assert usable()


def test_in_place_forms_dropout_and_public_likes(session):
    x = cryptgpu.cryptensor(A.clone())
    x.relu_()
    assert_close(pt(x), A.relu(), ENC)
    x.clamp_(0.5, 2.0).mul_(2)
    assert_close(pt(x), A.relu().clamp(0.5, 2.0) * 2, 2 * ENC)
    g = cryptgpu.cryptensor(A)
    g.zero_()  # p.grad.zero_() in a hand-written loop
    assert pt(g).abs().max() == 0
    g.fill_(1.5)
    assert pt(g).tolist() == [1.5] * len(A)
    assert torch.zeros_like(x).shape == x.shape and torch.ones_like(x).sum() == len(A)
    assert (+x) is x
    # dropout: the identity at eval; in training about p of the elements
    # are 0 (n = 2000: 6 sigma of a binomial is 0.067) and the rest scaled
    y = cryptgpu.cryptensor(torch.ones(2000))
    assert y.dropout(0.5, training=False) is y
    d = pt(F.dropout(y, 0.3))
    assert abs(float((d == 0).double().mean()) - 0.3) < 0.067
    assert_close(d[d != 0], torch.full_like(d[d != 0], 1 / 0.7), ENC + TRUNC)
    with pytest.raises(ValueError, match="between 0 and 1"):
        y.dropout(1.5)
    with pytest.raises(RuntimeError, match="in-place"):
        cryptgpu.cryptensor(A, requires_grad=True).relu_()


def test_gradients_through_the_activations(session):
    """d/dx of the composed activations against torch autograd: the
    backward products of each piece (a few TRUNC) times |x| <= 3, plus
    the forward's approximation error moved by the local slope."""
    a = torch.linspace(-3, 3, 25, dtype=torch.float64)
    for f, tol in (
        (lambda t: F.leaky_relu(t, 0.2), 4 * TRUNC),
        (F.elu, EXP * 3 + 8 * TRUNC),
        (F.silu, 3 * 1e-3 + 1e-3 + 8 * TRUNC),
        (F.softplus, 1e-3 + EXP + 16 * TRUNC),
    ):
        x = cryptgpu.cryptensor(a, requires_grad=True)
        f(x).sum().backward()
        t = a.clone().requires_grad_()
        f(t).sum().backward()
        assert_close(pt(x.grad), t.grad, tol)


def test_relu_derivative_at_zero_is_torchs(session):
    """relu'(0) = 0, as torch (the mask was 1 - msb(x), which is 1 at 0):
    an exactly-zero pre-activation (a zero input through a zero bias)
    passed its gradient on, and leaky_relu'(0) was 1 instead of 0.2."""
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    for f in (torch.relu, lambda t: F.leaky_relu(t, 0.2)):
        x = cryptgpu.cryptensor(a, requires_grad=True)
        f(x).sum().backward()
        t = a.clone().requires_grad_()
        f(t).sum().backward()
        assert_close(pt(x.grad), t.grad, TRUNC)
        assert_close(pt(f(cryptgpu.cryptensor(a))), f(a), TRUNC)


def test_hardswish_gradient_at_the_bounds_is_torchs(session):
    """Hardswish'(-3) is 0 and Hardswish'(3) is 1 in torch; here it was x
    times hardsigmoid(x) whose x / 6 truncated before the clamp's
    comparison, so the tie at -3 went either way: eight copies of -3 got
    [1.5e-5, 0, 0, 0, -0.49998, 0, 0, 0]. Now the clamp compares x itself
    (exact at the bounds, relu'(0) = 0), at the same cost. Tolerance: the
    gradient (clamp(x, -3, 3) + 3) / 6 + x clamp'(x) / 6 is one
    truncated product and one division: 2 TRUNC, plus 3 ENC for |x| <= 3
    times the encoded factor, within 4 TRUNC."""
    a = torch.tensor([-3.0] * 8 + [3.0] * 8 + [-2.999, 2.999, -5.0, 0.0], dtype=torch.float64)
    for f in (F.hardswish, lambda t: t.hardswish(), tnn.Hardswish()):
        x = cryptgpu.cryptensor(a, requires_grad=True)
        f(x).sum().backward()
        t = a.clone().requires_grad_()
        F.hardswish(t).sum().backward()
        assert_close(pt(x.grad), t.grad, 4 * TRUNC)
        assert_close(pt(f(cryptgpu.cryptensor(a))), F.hardswish(a), 2 * ENC + 2 * TRUNC)
    pm = cryptgpu.nn.from_pytorch(tnn.Sequential(tnn.Hardswish()), a).encrypt().train()
    x = cryptgpu.cryptensor(a, requires_grad=True)
    pm(x).sum().backward()
    assert_close(pt(x.grad), t.grad, 4 * TRUNC)


def test_converted_models_with_activations_comparisons_and_max(session):
    torch.manual_seed(0)
    acts = tnn.Sequential(
        tnn.Linear(4, 8),
        tnn.LeakyReLU(0.1),
        tnn.Linear(8, 8),
        tnn.ELU(),
        tnn.Linear(8, 8),
        tnn.SiLU(),
        tnn.Linear(8, 8),
        tnn.Hardswish(),
        tnn.Linear(8, 8),
        tnn.ReLU6(),
        tnn.Linear(8, 8),
        tnn.Softplus(),
        tnn.Linear(8, 8),
        tnn.Mish(),
        tnn.Linear(8, 8),
        tnn.SELU(),
        tnn.Linear(8, 8),
        tnn.Hardsigmoid(),
        tnn.Hardtanh(-0.5, 0.5),
        tnn.Linear(8, 8),
        tnn.CELU(0.5),
    )

    class Cmp(tnn.Module):
        def __init__(self):
            super().__init__()
            self.lin = tnn.Linear(4, 6)

        def forward(self, x):
            y = self.lin(x)
            a = torch.where(y > 0, y, 0.1 * y)
            b = (y > 0).float() * y
            c = y.masked_fill(y < 0, 0.0)
            m = torch.max(a, 1, keepdim=True)[0] + y.max(dim=1, keepdim=True).values
            return a + b + c + m + F.silu(y) + torch.zeros_like(y)

    prelu = tnn.Sequential(tnn.Conv2d(1, 3, 3), tnn.PReLU(3), tnn.Flatten(), tnn.Linear(12, 2))
    for m, x in (
        (acts, torch.randn(3, 4)),
        (Cmp(), torch.randn(3, 4)),
        (prelu, torch.randn(2, 1, 4, 4)),
    ):
        m, x = m.double().eval(), x.double()
        cm = cryptgpu.nn.from_pytorch(m, x).encrypt()
        # Each layer's error is at most that of its activation above (mish's
        # 2e-3 |x| the largest) carried through Linear layers of row sums
        # below 1.5 (torch's init on 8 inputs): a few 1e-3 at most.
        assert_close(pt(cm(cryptgpu.cryptensor(x))), m(x).detach(), 2e-2)
    assert {type(c).__name__ for c in cryptgpu.nn.from_pytorch(acts).modules()} >= {
        "LeakyReLU",
        "ELU",
        "SiLU",
        "Hardswish",
        "ReLU6",
        "Softplus",
        "Mish",
        "SELU",
        "Hardsigmoid",
        "Hardtanh",
        "CELU",
    }


def test_training_through_silu_and_prelu_follows_torch(session):
    torch.manual_seed(3)
    m = tnn.Sequential(
        tnn.Linear(4, 8), tnn.SiLU(), tnn.Linear(8, 8), tnn.PReLU(), tnn.Linear(8, 3)
    ).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cm = cryptgpu.nn.from_pytorch(m.train(), x).encrypt().train()
    sgd_alongside(cm, m, x, y, 0.5, 3)
    # 3 steps of lr 0.5 times gradient errors of a few 1e-4 (silu's
    # sigmoid, 1e-3 absolute, damped by the layers after it)
    for p, w in zip(cm.parameters(), m.parameters()):
        assert_close(pt(p), w.detach(), 3 * 0.5 * 5e-4)


def test_norm_costs_as_the_readme_states():
    """The range-reduced norm's rounds and bytes (README, `norm`): a row
    norm of [50, 64], unrecorded, 136 rounds; recorded, 148 rounds and
    11.5 MB per party forward (the root's inverse from the same range
    reduction, 12 rounds, and the scaled x's selection, one product of 46
    copies: 2.7 MB) and 2 rounds, 0.08 MB backward (g x / ||x||: the row's
    gradient expanded times that ratio, one product of 50 x 64 elements
    with its truncation; counted by the engine; the figures depend on
    shapes only)."""
    cryptgpu.init(seed=1)
    try:
        g = torch.Generator().manual_seed(0)
        t = torch.randn(50, 64, generator=g, dtype=torch.float64)
        x = cryptgpu.cryptensor(t)
        cryptgpu.reset_stats()
        with cryptgpu.no_grad():
            x.norm(dim=1)
        st = cryptgpu.stats()["total"]
        assert (st["rounds"], st["bytes_per_party"]) == (136, 3_220_560)
        x = cryptgpu.cryptensor(t, requires_grad=True)
        cryptgpu.reset_stats()
        v = x.norm(dim=1)
        fwd = cryptgpu.stats()["total"]
        cryptgpu.reset_stats()
        v.sum().backward()
        bwd = cryptgpu.stats()["total"]
        assert (fwd["rounds"], round(fwd["bytes_per_party"] / 1e5)) == (148, 115)
        # one product with its exact truncation (training work): 2 rounds,
        # 3 ring elements of 8 bytes per element for the busiest party
        assert (bwd["rounds"], bwd["bytes_per_party"]) == (2, 50 * 64 * 3 * 8)
    finally:
        cryptgpu.uninit()
