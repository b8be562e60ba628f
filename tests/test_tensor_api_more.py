"""More of torch's tensor API, against torch float64: what a user probe of
2026-12-05 (the thirteenth session) found. A diagonal passed for a
contiguous tensor, so ``diagonal().contiguous()``, ``.flatten()`` and
``.reshape(-1)`` stayed linked to the base where torch copies (and a clone
of a transposed tensor lost torch's strides); ``argmax``/``max`` of a 0-d
tensor over dim 0 divided by zero; torch's keyword names (``dims=``,
``shape=``, ``size=``, ``other=`` ...) were refused; a public tensor
exponent was refused; several methods were missing (select, tile, ravel,
diag, hstack, take_along_dim, lerp, diff, ...); some messages were wrong;
gradients at ties and kinks differed from torch's.

Tolerances: inputs are encoded to 16 fractional bits (ULP = 2^-16, an
encoding error ENC = ULP / 2 per input); data movement (views, copies,
selections) is exact on the encoded values, so such results are compared
with torch within ENC; products within ``conftest.prod_tol``; each
assertion states its own.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, assert_close, prod_tol, usable
from cryptgpu._native import ShapeError


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def sh(t):
    return cryptgpu.cryptensor(t.clone())


# ------------------------------------------------------------ 1. copies of non-contiguous views

# (name, view, what follows it): torch copies in each of these
COPIES = [
    ("diagonal().contiguous()", lambda x: x.diagonal().contiguous(), (3, 3)),
    ("diagonal(1).contiguous()", lambda x: x.diagonal(1).contiguous(), (3, 3)),
    (
        "diagonal().unsqueeze(0).contiguous()",
        lambda x: x.diagonal().unsqueeze(0).contiguous(),
        (3, 3),
    ),
    ("3-D diagonal().flatten()", lambda x: x.diagonal().flatten(), (2, 2, 3)),
    ("3-D diagonal().flatten(0, 1)", lambda x: x.diagonal().flatten(0, 1), (2, 2, 3)),
    ("3-D diagonal().reshape(-1)", lambda x: x.diagonal().reshape(-1), (2, 2, 3)),
]


@pytest.mark.parametrize("name,f,shape", COPIES, ids=[c[0] for c in COPIES])
def test_contiguous_and_reshape_copy_non_contiguous_views(session, name, f, shape):
    """Until 2026-12-05 these stayed linked to the base: a change of the
    base showed in the copy, and a write into the copy reached the base.
    Values are exact (no products): compared within ENC."""
    t = torch.arange(float(torch.Size(shape).numel())).view(shape)
    tb, sb = t.clone(), sh(t)
    tv, sv = f(tb), f(sb)
    tb.mul_(-1)
    sb.mul_(-1)
    assert_close(pt(sv), tv, ENC)
    tv.fill_(7.0)
    sv.fill_(7.0)
    assert_close(pt(sb), tb, ENC)


def test_a_clone_of_a_transposed_tensor_keeps_torchs_strides(session):
    """torch's clone preserves a transposed layout, so y.contiguous() is a
    new tensor: writing it leaves y alone (it returned y itself). Exact."""
    x = torch.arange(12.0).view(2, 3, 2)
    for f in (lambda v: v.transpose(0, 2).clone(), lambda v: v.diagonal(0, 0, 2).clone()):
        y_t, y_s = f(x), f(sh(x))
        z_t, z_s = y_t.contiguous(), y_s.contiguous()
        z_t.fill_(-1.0)
        z_s.fill_(-1.0)
        assert_close(pt(y_s), y_t, ENC)
        assert_close(pt(z_s), z_t, ENC)
    # a diagonal's own views still write into the base, as torch's
    A, S = torch.zeros(3, 3), sh(torch.zeros(3, 3))
    A.diagonal().unsqueeze(0).fill_(2.0)
    S.diagonal().unsqueeze(0).fill_(2.0)
    assert_close(pt(S), A, ENC)


# ------------------------------------------------------------ 2. a scalar's only dim


def test_argmax_max_and_movedim_of_a_0d_tensor(session):
    """dim 0 of a 0-d tensor divided by zero in the index (one_hot=False)
    and movedim(0, 0) raised ShapeError; torch gives index 0 and the value.
    The index is exact; the value is the encoded input (within ENC)."""
    t = torch.tensor(1.5)
    x = sh(t)
    assert_close(pt(x.argmax(0, one_hot=False)), t.argmax(0).double(), 0.0)
    assert_close(pt(x.argmin(-1, one_hot=False)), t.argmin(-1).double(), 0.0)
    v, i = x.max(0, one_hot=False)
    assert_close(pt(v), t.max(0)[0], ENC)
    assert_close(pt(i), t.max(0)[1].double(), 0.0)
    assert_close(pt(x.min(0, keepdim=True)[0]), t.min(0, keepdim=True)[0], ENC)
    assert_close(pt(x.argmax(0)), torch.tensor(1.0), 0.0)  # one-hot: the only element
    assert_close(pt(x.movedim(0, 0)), t.movedim(0, 0), ENC)
    assert_close(pt(torch.movedim(x, -1, 0)), t.movedim(-1, 0), ENC)
    with pytest.raises(IndexError):
        x.movedim(1, 0)
    assert usable()


# ------------------------------------------------------------ 3. torch's keyword names

KEYWORDS = [
    ("torch.flip(x, dims=)", lambda x, m: m.flip(x, dims=(0,))),
    ("x.flip(dims=)", lambda x, m: x.flip(dims=[2])),
    ("x.permute(dims=)", lambda x, m: x.permute(dims=(2, 1, 0))),
    ("torch.permute(x, dims=)", lambda x, m: m.permute(x, dims=(2, 1, 0))),
    ("torch.reshape(x, shape=)", lambda x, m: m.reshape(x, shape=(-1,))),
    ("x.reshape(shape=)", lambda x, m: x.reshape(shape=(4, 6))),
    ("x.view(size=)", lambda x, m: x.view(size=(6, 4))),
    ("x.expand(size=)", lambda x, m: x.expand(size=(2, 2, 3, 4))),
    ("x.repeat(repeats=)", lambda x, m: x.repeat(repeats=(1, 1, 2))),
    ("x.split(split_size=)", lambda x, m: x.split(split_size=3, dim=-1)[1]),
    (
        "torch.split(x, split_size_or_sections=)",
        lambda x, m: m.split(x, split_size_or_sections=3, dim=-1)[1],
    ),
    ("torch.add(x, other=)", lambda x, m: m.add(x, other=1.0)),
    ("torch.sub(x, other=)", lambda x, m: m.sub(x, other=1.0)),
    ("torch.mul(x, other=)", lambda x, m: m.mul(x, other=2.0)),
    ("torch.div(x, other=)", lambda x, m: m.div(x, other=2.0)),
    ("x.var(False)", lambda x, m: x.var(False)),
    ("x.std(False)", lambda x, m: x.std(False)),
]


@pytest.mark.parametrize("name,f", KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_torchs_keyword_names(session, name, f):
    """Each raised TypeError (an unexpected keyword; var(False) read False
    as a dim). Data movement and integer factors are exact on the encoded
    inputs (ENC, times 2 for x * 2); a halving is one truncation (ENC / 2
    + ULP); the population variance of 24 values in (-1, 1) and its square
    root are compared within 1e-3 (squares of encoded values, one
    truncation each, then the mean and, for std, the range-reduced sqrt,
    whose measured error is ~1e-4 relative)."""
    t = torch.linspace(-1, 1, 24, dtype=torch.float64).view(2, 3, 4)
    want = f(t, torch)
    got = pt(f(sh(t), torch))
    tol = 1e-3 if name.endswith("(False)") else 2 * ENC + ULP
    assert_close(got, want, tol)


def test_torchs_keyword_names_of_products(session):
    """torch.matmul(x, other=w), torch.mm(x, mat2=w), torch.dot(a,
    tensor=b) raised TypeError. Sums of 4 products of values in (-1, 1)
    with public integers: prod_tol(4, 1, 1)."""
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4)
    w = torch.arange(8.0, dtype=torch.float64).view(4, 2) - 3
    x = sh(t)
    tol = prod_tol(4, 1, 4)
    assert_close(pt(torch.matmul(x, other=w)), torch.matmul(t, other=w), tol)
    assert_close(pt(torch.mm(x, mat2=w)), torch.mm(t, mat2=w), tol)
    assert_close(pt(torch.dot(x[0], tensor=w[:, 0])), torch.dot(t[0], tensor=w[:, 0]), tol)
    with pytest.raises(TypeError):
        x.permute(dims=(1, 0), order=1)
    with pytest.raises(TypeError):
        x.view((3, 4), size=(3, 4))
    assert usable()


# ------------------------------------------------------------ 4. public tensor exponents


def test_pow_with_a_public_tensor_exponent(session):
    """x ** t, x.pow(t), torch.pow(x, t) raised "the exponent must be one
    public number". Integer exponents (products: a negative x keeps torch's
    sign): x^3 of |x| <= 2 carries 3 x^2 ENC = 12 ENC from the encoding and
    two truncations scaled by up to x^2 (8 ULP): within 2e-4; 1 / x for
    |x| >= 0.5 is the reciprocal (a few units plus 2^-15 relative of 2, and
    ENC / x^2 = 4 ENC): within 2e-4 too."""
    t = torch.tensor([[-2.0, -1.25, 0.5, 1.5], [0.75, -0.5, 2.0, -1.0]], dtype=torch.float64)
    e = torch.tensor([1.0, 2.0, 3.0, -1.0], dtype=torch.float64)
    x = sh(t)
    for got in (x**e, x.pow(e), torch.pow(x, e)):
        assert_close(pt(got), t**e, 2e-4)
    # broadcasting to a larger shape, and one exponent in a 1-element tensor
    e2 = torch.tensor([[[2.0]], [[3.0]]], dtype=torch.float64)
    assert_close(pt(x**e2), t**e2, 2e-4)
    assert_close(pt(x ** torch.tensor([2.0])), t ** torch.tensor([2.0]), 2e-4)
    # fractional exponents, x > 0 (pos_pow: about 1e-4 relative, of up to
    # 2^2.5 = 5.7): within 1e-3
    xp, tp = sh(t.abs() + 0.25), t.abs() + 0.25
    ef = torch.tensor([0.5, 1.5, -0.5, 2.5], dtype=torch.float64)
    assert_close(pt(xp**ef), tp**ef, 1e-3)
    with pytest.raises(ShapeError):
        x ** torch.ones(3)
    assert usable()


def test_pow_tensor_exponent_gradient(session):
    """The gradient of x ** e (e public, integers) is e x^(e - 1): products
    and the reciprocal's, as in the forward pass; within 1e-3 for |x| <= 2
    (3 x^2 of up to 12, a few truncations, the reciprocal's 2^-15
    relative of 1 / x^2 <= 4)."""
    t = torch.tensor([-2.0, -1.25, 0.5, 1.5], dtype=torch.float64, requires_grad=True)
    e = torch.tensor([1.0, 2.0, 3.0, -1.0], dtype=torch.float64)
    x = cryptgpu.cryptensor(t.detach(), requires_grad=True)
    (x**e).sum().backward()
    (t**e).sum().backward()
    assert_close(pt(x.grad), t.grad, 1e-3)


def test_public_tensor_base_to_a_shared_power(session):
    """torch_tensor ** x and torch.pow(torch_tensor, x) raised unclear
    TypeErrors; they are 2^(x log2 b) element-wise (a few units plus 2^-15
    relative, results up to 3^1.5 = 5.2, and x's encoding times b^x ln b
    <= 5.7 ENC): within 1e-3."""
    t = torch.tensor([[-1.0, 0.5, 1.5, 2.0], [0.25, -0.75, 1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([1.5, 2.0, 3.0, 0.5], dtype=torch.float64)
    x = sh(t)
    assert_close(pt(b**x), b**t, 1e-3)
    assert_close(pt(torch.pow(b, x)), torch.pow(b, t), 1e-3)
    with pytest.raises(NotImplementedError):
        torch.tensor([-2.0, 1.0, 1.0, 1.0]) ** x
    assert usable()


# ------------------------------------------------------------ 5. more of torch's methods

MORE = [
    ("select", lambda m, a: a.select(1, -2)),
    ("tile", lambda m, a: m.tile(a, (2, 1, 2))),
    ("ravel", lambda m, a: a.t().ravel()),
    ("diag of a matrix", lambda m, a: m.diag(a, 1)),
    ("diag of a vector", lambda m, a: m.diag(a[0], -2)),
    ("hstack", lambda m, a: m.hstack([a, a[:, :1]])),
    ("vstack", lambda m, a: m.vstack([a, a[0]])),
    ("dstack", lambda m, a: m.dstack([a, a])),
    ("take_along_dim", lambda m, a: m.take_along_dim(a, torch.tensor([[3, 0]]), dim=1)),
    ("take_along_dim flat", lambda m, a: m.take_along_dim(a, torch.tensor([0, 5, 11]))),
    ("broadcast_to", lambda m, a: m.broadcast_to(a, (2, 3, 4))),
    ("diff", lambda m, a: m.diff(a, 2, 0)),
    (
        "diff prepend/append",
        lambda m, a: a.diff(prepend=torch.zeros(3, 1), append=torch.ones(3, 2)),
    ),
    ("true_divide", lambda m, a: a.true_divide(4.0)),
]


@pytest.mark.parametrize("name,f", MORE, ids=[c[0] for c in MORE])
def test_more_methods_moving_data(session, name, f):
    """Each was missing (AttributeError or NotImplementedError). Data
    movement is exact on the encoded inputs (ENC); a difference of
    differences carries 4 ENC; a division by 4 adds a truncation (ULP)."""
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4)
    assert_close(pt(f(torch, sh(t))), f(torch, t), 4 * ENC + ULP)


def test_more_methods_computing(session):
    """linalg.norm, var_mean/std_mean, lerp, cosine_similarity, cumprod and
    mv(public, shared) were missing. Tolerances: a weighted sum with a
    public weight, one truncation per product (prod_tol(1, 1, 1) each, two
    of them); cumprod of 4 factors of magnitude at most M = 1.1, 2 rounds
    of products (y[i] y[i - 1], then of those two apart): a product of
    factors within e of values below m is within 2 m e + e^2 + ULP, so the
    first round is within e1 = 2 M ENC + ENC^2 + ULP and the second, of two
    first-round products (below M^2), within 2 M^2 e1 + e1^2 + ULP: 9.3e-5
    (it was 2e-5, below its own derivation, and failed at 2.4e-5 once
    F.normalize's cheaper protocol changed the random stream before it);
    mv: prod_tol(3, 1, 1); the norms, variances and
    cosine through the range-reduced sqrt or 1/sqrt (about 1e-4 relative,
    values below 3): within 5e-4."""
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4) ** 3 + 0.1
    x = sh(t)
    for args in ((), ("fro",), (None, 1), (1,), (math.inf,), (-math.inf, None, True)):
        assert_close(pt(torch.linalg.norm(x, *args)), torch.linalg.norm(t, *args), 5e-4)
    for fn in (torch.var_mean, torch.std_mean):
        for got, want in zip(fn(x, 1, keepdim=True), fn(t, 1, keepdim=True)):
            assert_close(pt(got), want, 5e-4)
    end = t.flip(0)
    w = torch.linspace(0, 1, 4, dtype=torch.float64)
    tol = 2 * prod_tol(1, 1, 1)
    assert_close(pt(torch.lerp(x, sh(end), w)), torch.lerp(t, end, w), tol)
    assert_close(pt(x.lerp(end, 0.25)), t.lerp(end, 0.25), tol)
    assert_close(pt(x.lerp(end, sh(w))), t.lerp(end, w), tol)
    y = t * 0.5 + 0.25
    assert_close(pt(F.cosine_similarity(x, sh(y))), F.cosine_similarity(t, y), 5e-4)
    m = t.abs().max().item()  # 1.1 (docstring)
    e1 = 2 * m * ENC + ENC**2 + ULP
    assert_close(pt(x.cumprod(1)), t.cumprod(1), 2 * m * m * e1 + e1**2 + ULP)
    P = torch.linspace(0, 1, 6, dtype=torch.float64).view(2, 3)
    assert_close(pt(torch.mv(P, x[:, 0])), torch.mv(P, t[:, 0]), prod_tol(3, 1, 1))


def test_more_methods_gradients(session):
    """Gradients through diag, take_along_dim, lerp and cumprod, composed of
    recorded operations: data movement exact (ENC), lerp's weight one
    product (prod_tol(1, 1, 1)), cumprod's gradient a sum of up to 4
    terms, each a product of up to 4 encoded factors with 2 truncations
    (2 ULP + 3 ENC each): within 14 ULP."""
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4).requires_grad_()
    x = cryptgpu.cryptensor(t.detach(), requires_grad=True)
    g = torch.linspace(0, 1, 16, dtype=torch.float64).view(4, 4)

    def both(f):
        return f(x), f(t)

    outs = [
        both(lambda a: (a[0].diag() * g).sum()),
        both(lambda a: a.take_along_dim(torch.tensor([[3, 0]]), 1).sum()),
        both(lambda a: (a.lerp(a.flip(1), 0.25) * g[:3]).sum()),
        both(lambda a: (a.cumprod(1) * g[:3]).sum()),
    ]
    for ours, theirs in outs:
        x.grad = None
        t.grad = None
        ours.backward()
        theirs.backward()
        assert_close(pt(x.grad), t.grad, 14 * ULP)


def test_in_place_squeeze_and_queries(session):
    """squeeze_/unsqueeze_, is_floating_point and is_leaf were missing.
    squeeze_ changes the tensor's shape in place; its views, and the view
    it is, still read and write the right elements (exact)."""
    t = torch.arange(12.0, dtype=torch.float64).view(3, 4)
    x = sh(t)
    y, ty = x.unsqueeze(0), t.clone().unsqueeze(0)
    row, trow = y[0, 1], ty[0, 1]
    y.squeeze_()
    ty.squeeze_()
    assert y.shape == ty.shape
    y.add_(1.0)
    ty.add_(1.0)
    assert_close(pt(row), trow, ENC)
    y.unsqueeze_(1)
    ty.unsqueeze_(1)
    assert y.shape == ty.shape
    y[0].fill_(-1.0)
    ty[0].fill_(-1.0)
    assert_close(pt(x), ty.squeeze(1), ENC)
    assert x.is_floating_point() and x.is_leaf and (x * 2).is_leaf
    w = cryptgpu.cryptensor(t, requires_grad=True)
    assert w.is_leaf and not (w * 2).is_leaf
    with pytest.raises(RuntimeError):
        w.unsqueeze_(0)
    assert usable()


# ------------------------------------------------------------ 6. messages


def test_messages_name_what_the_user_called_and_passed(session):
    """x.numpy() suggested .tolist(); len() of a 0-d tensor did not use
    torch's words; x == inf and torch.maximum(x, inf) reported -inf (the
    negated operand). Types unchanged: TypeError, EncodingError."""
    x = sh(torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        x.numpy()
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        len(x.sum())
    for f in (lambda: torch.maximum(x, torch.tensor(math.inf)),):
        with pytest.raises(cryptgpu.EncodingError, match=r"value inf") as e:
            f()
        assert "-inf" not in str(e.value)
    # x == inf has torch's answer since 2026-12-08 (tests/test_fix_GI.py)
    assert torch.equal((x == math.inf).get_plain_text(), torch.zeros(2))  # exact
    assert usable()


# ------------------------------------------------------------ 7. gradients at kinks


def test_clamp_gradient_is_zero_at_both_bounds(session):
    """torch's clamp(min, max) passes no gradient at either bound; ours
    passed 1 at the upper one (relu'(0) = 0 on x - max). Same single
    batched ReLU now, on x - min and max - x. Gradients of 0/1 are exact;
    values are the encoded inputs' (ENC)."""
    t = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    x = cryptgpu.cryptensor(t.detach(), requires_grad=True)
    y = x.clamp(-1.0, 1.0)
    ty = t.clamp(-1.0, 1.0)
    assert_close(pt(y), ty.detach(), ENC)
    y.sum().backward()
    ty.sum().backward()
    assert_close(pt(x.grad), t.grad, 0.0)


def test_sign_of_an_input_requiring_grad_has_zero_gradient(session):
    """torch's sign of a tensor that requires grad does too, with gradient
    0 (CrypTen's test_unary_functions backs through it); ours did not
    require grad and backward() raised. Signs and 0/1 gradients: exact."""
    v = torch.tensor([[0.0, 1.5, -2.0], [3.0, -0.25, 0.0]], dtype=torch.float64)
    t = v.clone().requires_grad_()
    x = cryptgpu.cryptensor(v, requires_grad=True)
    y = x.sign()
    assert y.requires_grad and torch.sign(x).requires_grad
    assert_close(pt(y), torch.sign(v), 0.0)
    y.sum().backward()
    t.sign().sum().backward()
    assert_close(pt(x.grad), t.grad, 0.0)
    x.grad = None
    (x.sign() * x).sum().backward()  # |x|'s gradient through the product: sign(x)
    assert_close(pt(x.grad), torch.sign(v), 0.0)
    with cryptgpu.no_grad():
        assert not x.sign().requires_grad


def test_clamp_with_equal_or_crossed_bounds_has_no_gradient(session):
    """clamp(a, a) and hardtanh(a, a) are the constant a: torch's gradient
    is 0 everywhere. The one batched ReLU's derivative [x > min] - 1 +
    [x < max] gave -1 at x == a (CrypTen's test_hardtanh loops max_val from
    min_val). clamp(a, b) with a > b is b everywhere (torch's rule), with
    no gradient; plaintext tensor bounds equal or crossed in some columns
    are the constant max there (no gradient at either bound elsewhere, the
    README's rule). Values are selections of encoded inputs or bounds
    (ENC); gradients of 0/1 are exact."""
    v = torch.tensor([1.0, 2.0, 3.0, 1.5, 2.5, -2.0], dtype=torch.float64)
    forms = [
        (lambda y: y.clamp(2.0, 2.0), lambda y: y.clamp(2.0, 2.0)),
        (lambda y: y.hardtanh(2.0, 2.0), lambda y: F.hardtanh(y, 2.0, 2.0)),
        (lambda y: F.hardtanh(y, -2, -2), lambda y: F.hardtanh(y, -2.0, -2.0)),
        (lambda y: y.clamp(3.0, 1.5), lambda y: y.clamp(3.0, 1.5)),
    ]
    for ours, theirs in forms:
        t = v.clone().requires_grad_()
        x = cryptgpu.cryptensor(v, requires_grad=True)
        y, ty = ours(x), theirs(t)
        assert_close(pt(y), ty.detach(), ENC)
        y.sum().backward()
        ty.sum().backward()
        assert_close(pt(x.grad), t.grad, 0.0)
    lo = torch.tensor([2.0, 2.0, 3.0, 3.0, 1.0, -2.0], dtype=torch.float64)
    hi = torch.tensor([2.0, 1.0, 3.0, 1.0, 3.0, 0.0], dtype=torch.float64)
    x = cryptgpu.cryptensor(v, requires_grad=True)
    y = x.clamp(lo, hi)
    assert_close(pt(y), torch.clamp(v, lo, hi), ENC)
    y.sum().backward()
    assert_close(pt(x.grad), ((v > lo) & (v < hi)).double(), 0.0)


@pytest.mark.parametrize("scale", [0.1, 1.0, 100.0, 300.0])
def test_cosine_similarity_at_any_scale(session, scale):
    """One ratio of the dot product over sqrt(|x1|^2 |x2|^2) wrapped for
    norms near 300 (-3e8 for -0.32) and lost the small ones; each vector is
    normalised on its own now. Tolerance: two unit vectors within 1e-4
    relative each (F.normalize's), their dot product of 8 terms, and the
    inputs' encoding (ENC per entry) relative to the smaller norm. (At
    entries of 0.01 the squares themselves are a few units of 2^-16, and
    the result is 3e-3 off: README, the ranges of small values.)"""
    g = torch.Generator().manual_seed(13)
    a, b = (torch.randn(2, 8, generator=g, dtype=torch.float64) * scale for _ in range(2))
    got = F.cosine_similarity(cryptgpu.cryptensor(a), cryptgpu.cryptensor(b), dim=1)
    least = min(a.norm(dim=1).min(), b.norm(dim=1).min()).item()
    tol = 3e-4 + 8 * ULP + 2 * ENC * math.sqrt(8) / least
    assert_close(pt(got), F.cosine_similarity(a, b, dim=1), tol)


def test_take_along_dim_wraps_negative_indices_and_addmm_of_public_matrices(session):
    x = torch.randn(3, 2, dtype=torch.float64)
    idx = torch.tensor([[-1], [0], [-2]])
    got = torch.take_along_dim(cryptgpu.cryptensor(x), idx, 1)
    assert_close(pt(got), torch.take_along_dim(x, idx, 1), ENC)
    c, a, b = torch.randn(2, 4), torch.randn(2, 3), torch.randn(3, 4)
    want = torch.addmm(c, a, b, beta=0.5, alpha=2.0).double()
    # public product (exact in float64), 2a b encoded: ENC; half of c: ENC + ULP
    got = torch.addmm(cryptgpu.cryptensor(c), a, b, beta=0.5, alpha=2.0)
    assert_close(pt(got), want, 2 * ENC + ULP)


def test_review_fixes_of_the_new_api(session):
    """A review of the day's diff: more than 8 distinct exponents went to
    2^(p log2 x), garbage for negative x (torch: (-1.5)^3 = -3.375); a
    cosine over a broadcast dim normalised before broadcasting (twice
    torch's); diff(n=0) joined prepend (torch: the input)."""
    x = torch.tensor([-2.0, -1.5, 1.5, 2.0] * 3, dtype=torch.float64)
    p = (torch.arange(12.0) % 9).double()
    # whole exponents up to 8 of |x| <= 2: products of encoded values, a
    # relative 2^-16 per factor, up to 2^8 in size
    assert_close(pt(cryptgpu.cryptensor(x) ** p), x**p, 256 * 8 * 2.0**-15)
    with pytest.raises(NotImplementedError, match="distinct whole exponents"):
        cryptgpu.cryptensor(torch.ones(20)) ** torch.arange(20.0)
    g = torch.Generator().manual_seed(16)
    a = torch.randn(1, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64)
    got = F.cosine_similarity(cryptgpu.cryptensor(a), cryptgpu.cryptensor(b), dim=0)
    # as test_cosine_similarity_at_any_scale: 4 terms, the encoding over the smaller norm
    least = min(2 * a.abs().min(), b.norm(dim=0).min()).item()
    tol = 3e-4 + 4 * ULP + 2 * ENC * 2 / least
    assert_close(pt(got), F.cosine_similarity(a, b, dim=0), tol)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)
    d = cryptgpu.cryptensor(y).diff(n=0, prepend=cryptgpu.cryptensor(y[:, :1]))
    assert tuple(d.shape) == (3, 4)


def test_retain_grad_fills_a_non_leafs_grad_as_torch(session):
    """h.retain_grad() on a non-leaf: its .grad after backward, as torch's
    (until 2026-12-05 an AttributeError)."""
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = cryptgpu.cryptensor(a, requires_grad=True)
    h = w * 3
    h.retain_grad()
    assert h.retains_grad and not w.retains_grad
    (h * h).sum().backward()
    tw = a.clone().requires_grad_()
    th = tw * 3
    th.retain_grad()
    (th * th).sum().backward()
    # h = 3w exactly (an integer factor); d(h^2)/dh = 2h: one truncation
    # of the product (ULP), then dh/dw = 3 times that: 3 ULP
    assert_close(h.grad.get_plain_text(dtype=torch.float64), th.grad, ULP)
    assert_close(w.grad.get_plain_text(dtype=torch.float64), tw.grad, 3 * ULP)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        cryptgpu.cryptensor(a).retain_grad()
    assert usable()


def test_isnan_isinf_isfinite_answer_for_finite_values(session):
    """Shares hold finite fixed-point numbers, so the method and torch forms
    answer what torch answers for finite values: public bool tensors of the
    shape (until 2026-12-05 the methods were AttributeErrors and
    torch.isnan(x) a NotImplementedError)."""
    t = torch.tensor([[1.5, -2.0], [0.0, 3.0]])
    x = cryptgpu.cryptensor(t)
    for name in ("isnan", "isinf", "isfinite", "isposinf", "isneginf"):
        want = getattr(torch, name)(t)
        for got in (getattr(x, name)(), getattr(torch, name)(x)):
            assert isinstance(got, torch.Tensor) and got.dtype == torch.bool
            assert torch.equal(got, want), name
    assert not torch.isnan(x).any() and torch.isfinite(x).all()


def test_lerp_and_addcmul_in_place_for_an_ema(session):
    """ema.lerp_(p, 1 - decay), the EMA habit, was missing (AttributeError)
    and addcmul_ too. Over 3000 steps at decay 0.999 the lerp form stays
    within the steady-state error of one truncation per step, 2^-16 /
    (1 - decay) = 0.015, of torch's float64 EMA (measured 5e-4), where
    mul_(decay).add_(p, alpha=1 - decay) drifts further (0.019: decay is
    rounded to 16 fractional bits), as the README says. addcmul_: x + v t1
    t2 exact here (integers, one truncation of 0.5 times an integer);
    growing x raises torch's RuntimeError."""
    torch.manual_seed(0)
    p = torch.randn(50, dtype=torch.float64)
    ps = cryptgpu.cryptensor(p)
    want = torch.zeros(50, dtype=torch.float64)
    ema = cryptgpu.cryptensor(torch.zeros(50))
    for _ in range(3000):
        want.lerp_(p, 1e-3)
        ema.lerp_(ps, 1e-3)
    assert (ema.get_plain_text(dtype=torch.float64) - want).abs().max() <= 2.0**-16 / 1e-3
    a = cryptgpu.cryptensor(torch.ones(2, 3))
    a.addcmul_(cryptgpu.cryptensor(torch.full((3,), 2.0)), torch.full((2, 1), 3.0), value=0.5)
    assert torch.equal(
        a.get_plain_text(dtype=torch.float64), torch.full((2, 3), 4.0, dtype=torch.float64)
    )
    with pytest.raises(RuntimeError, match="broadcast shape"):
        cryptgpu.cryptensor(torch.ones(3)).addcmul_(torch.ones(2, 3), torch.ones(3))
    with pytest.raises(RuntimeError, match="broadcast shape"):
        cryptgpu.cryptensor(torch.ones(3)).lerp_(torch.ones(2, 3), 0.5)
    assert usable()


def test_addcdiv_as_torch(session):
    """addcdiv/addcdiv_ (missing; Adam written by hand uses them): x + v t1
    / t2 with a public or a shared divisor. Bound: a private divisor in
    [2, 4] by the reciprocal's protocol (within 1e-4 relative on its
    range, test_division_and_ranges) times |t1| <= 3 and v = 2, plus two
    truncations."""
    t1, t2 = (
        torch.tensor([1.0, 3.0], dtype=torch.float64),
        torch.tensor([2.0, 4.0], dtype=torch.float64),
    )
    want = torch.ones(2, dtype=torch.float64).addcdiv(t1, t2, value=2)
    a = cryptgpu.cryptensor(torch.ones(2))
    a.addcdiv_(cryptgpu.cryptensor(t1), t2, value=2)
    assert_close(a.get_plain_text(dtype=torch.float64), want, 2 * ULP)
    b = cryptgpu.cryptensor(torch.ones(2)).addcdiv(t1, cryptgpu.cryptensor(t2), value=2)
    assert_close(b.get_plain_text(dtype=torch.float64), want, 2 * 3 * 1e-4 + 2 * ULP)
    with pytest.raises(RuntimeError, match="broadcast shape"):
        cryptgpu.cryptensor(torch.ones(2)).addcdiv_(torch.ones(3, 2), t2)
    assert usable()


def test_clamp_with_a_bound_of_higher_rank_broadcasts_as_torch():
    """A plaintext tensor bound of higher rank than x with a number as the
    other bound: the two ReLU arguments had different shapes and stacking
    them raised ShapeError (review, 2026-12-06); torch broadcasts
    (min(max(x, lo), hi)) two tensor bounds, and refuses a tensor bound with
    a number one (TypeError; computed here until 2026-12-07)."""
    cryptgpu.init(seed=1)
    try:
        x = torch.tensor([0.5, 1.5], dtype=torch.float64)
        cases = [
            (torch.tensor([[0.0], [1.0]]), 2.0),
            (0.0, torch.tensor([[1.0], [0.25]])),
            (torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [1.2]])),
        ]
        for lo, hi in cases[:2]:  # a tensor with a number: torch's TypeError (probe OQ)
            with pytest.raises(TypeError):
                x.clamp(lo, hi)
            with pytest.raises(TypeError):
                cryptgpu.cryptensor(x).clamp(lo, hi)
        for lo, hi in cases[2:]:
            xs = cryptgpu.cryptensor(x, requires_grad=True)
            y = xs.clamp(lo, hi)
            y.sum().backward()
            xt = x.clone().requires_grad_()
            bound = [torch.as_tensor(b, dtype=torch.float64) for b in (lo, hi)]
            ref = torch.minimum(torch.maximum(xt, bound[0]), bound[1])
            ref.sum().backward()
            assert y.shape == ref.shape
            # every value is a bound or x, encoded within half a unit (2^-17)
            assert (y.get_plain_text(dtype=torch.float64) - ref.detach()).abs().max() <= 2.0**-17
            # gradient counts of whole numbers: exact
            assert torch.equal(xs.grad.get_plain_text(dtype=torch.float64), xt.grad)
        assert usable()
    finally:
        cryptgpu.uninit()
