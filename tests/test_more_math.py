"""More of torch's math on SharedTensor, against torch float64, values and
gradients: what a user probe found missing (AttributeError for the method,
NotImplementedError for the torch function): log2, log10, expm1,
tensor_split and hsplit/vsplit/dsplit, logaddexp, xlogy, inner, kron,
torch.tensordot, torch.cdist, F.pairwise_distance, torch.rsub,
scatter_reduce ("sum", "mean"), and CrypTen's keyword arguments
``reciprocal(input_in_01=)`` and ``polynomial(coeffs, func="mul")``.
Bad arguments raise torch's exception type, and the session stays usable.

Tolerances (conftest; ULP = 2^-16, ENC = ULP / 2 per encoded input, TRUNC
= ULP per truncation), each stated at its assertion:
- data movement (splits, scatter sums) is exact on encoded values: k
  encoded inputs summed are within k ENC;
- products: ``conftest.prod_tol(k, xmax, ymax)`` for sums of k products;
- the range-reduced log is within LOG = 4e-5 of ln of the encoded input
  (tests/test_functions.py, measured 3.5e-5 over 9.2e4 inputs); a public
  non-integer factor c is encoded on the 2^-16 grid (ENC per unit of the
  other factor) and costs a truncation; the log's gradient is the
  derivative of its fitted polynomial through the octave selection, 16
  units of 2^-16 per unit of 1 + 1/x (test_functions' K for the log);
- exp: within 32 (2 e^x + 1) ULP of e^x (test_functions), its gradient
  g e^x with the private e^x, within that plus 2 ULP (1 + e^x);
- logsumexp (of a stacked pair, logaddexp): LSE = 4e-4 absolute, its
  gradient (the softmax weights) within LSE per unit of incoming gradient
  (tests/test_scatter.py);
- sqrt (the 2-norms): 1e-4 relative (functions.ratio_inv_sqrt) after the
  sum of squares (one exact truncation per square).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, ULP, assert_close, prod_tol, usable

D = torch.float64
LOG = 4e-5
LSE = 4e-4
SQRT_REL = 1e-4


def pt(x):
    return x.get_plain_text(dtype=D)


def sh(t, grad=False):
    return cryptgpu.cryptensor(t.clone(), requires_grad=grad)


def uniform(*shape, lo=-1.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=D) * (hi - lo) + lo


def enc(t):
    """t rounded to the fixed-point grid, as cryptensor encodes it."""
    return torch.round(t / ULP) * ULP


def grads(f, inputs, shared, weight):
    """(private result, torch result, private grads, torch grads) of
    sum(f(*inputs) * weight), the inputs marked in ``shared`` as
    SharedTensors requiring grad, the others as public torch tensors."""
    tt = [t.clone().requires_grad_(s) for t, s in zip(inputs, shared)]
    ss = [sh(t, True) if s else t.clone() for t, s in zip(inputs, shared)]
    want, got = f(*tt), f(*ss)
    (want * weight).sum().backward()
    (got * cryptgpu.cryptensor(weight)).sum().backward()
    gs = [pt(s.grad) for s, b in zip(ss, shared) if b]
    gt = [t.grad for t, b in zip(tt, shared) if b]
    return pt(got), want.detach(), gs, gt


def same_error(f, t, s):
    """f raises on the private tensor what it raises on the torch one (not
    a NotImplementedError, which is a RuntimeError too: torch's refusal of
    an unsupported function is no check of the argument)."""
    with pytest.raises(Exception) as want:
        f(t)
    with pytest.raises(want.type) as got:
        f(s)
    assert not isinstance(got.value, NotImplementedError), got.value


# ------------------------------------------------------------ 1. log2, log10, expm1


@pytest.mark.parametrize(
    "name,fn,c", [("log2", torch.log2, 1 / math.log(2)), ("log10", torch.log10, 1 / math.log(10))]
)
def test_log2_and_log10_with_gradients(session, name, fn, c):
    """ln x times a public constant c (1 / ln 2, 1 / ln 10): LOG c, plus
    c's encoding (ENC per unit of |ln x| <= ln 20) and the product's
    truncation, against the encoded input; also as torch.<name>(x) and with
    the log's keyword (CrypTen's input_in_01)."""
    a = uniform(64, lo=0.5, hi=20.0)
    tol = LOG * c + math.log(20) * ENC + TRUNC
    w = uniform(64, seed=1)
    got, _, (g,), _ = grads(lambda x: getattr(x, name)(), [a], [True], w)
    assert_close(got, fn(enc(a)), tol)
    # d/dx = c / x: the log's gradient (16 ULP per unit of 1 + 1/x), times
    # c with c's encoding and one truncation more, per unit of |w| <= 1
    gtol = c * 16 * ULP * (1 + 1 / a) + ENC / a + TRUNC
    assert ((g - w * c / a).abs() <= gtol).all()
    assert_close(pt(fn(sh(a))), fn(enc(a)), tol)
    small = uniform(16, lo=0.05, hi=1.0)
    tol01 = LOG * c + math.log(20) * ENC + TRUNC  # |ln x| <= ln 20 here too
    assert_close(pt(getattr(sh(small), name)(input_in_01=True)), fn(enc(small)), tol01)


def test_expm1_with_gradient(session):
    """e^x - 1 by the range-reduced exp (the -1 is exact): 32 (2 e^x + 1)
    ULP of torch's expm1 (test_functions' exp bound, which includes the
    input's encoding); the gradient g e^x within that plus 2 ULP (1 + e^x)
    for |g| <= 1."""
    a = uniform(64, lo=-6.0, hi=6.0)
    w = uniform(64, seed=1)
    got, want, (g,), (gt,) = grads(lambda x: x.expm1(), [a], [True], w)
    tol = 32 * (2 * a.exp() + 1) * ULP
    assert ((got - want).abs() <= tol).all()
    assert ((g - gt).abs() <= tol + 2 * ULP * (1 + a.exp())).all()
    assert ((pt(torch.expm1(sh(a))) - want).abs() <= tol).all()


# ------------------------------------------------------------ 2. tensor_split and friends

SPLITS = [
    ("3 sections", 3, 1),
    ("7 sections of 5", 7, 1),
    ("1 section", 1, 0),
    ("sections dim -1", 2, -1),
    ("indices", [1, 3], 1),
    ("tuple", (2,), 0),
    ("out of range and decreasing", [6, -2, 1, -10], 1),
    ("negative", [-1], 1),
    ("empty list", [], 1),
    ("long tensor of indices", torch.tensor([1, 3]), 1),
    ("0-d long tensor", torch.tensor(2), 1),
]


@pytest.mark.parametrize("name,spec,dim", SPLITS, ids=[s[0] for s in SPLITS])
def test_tensor_split_as_torch(session, name, spec, dim):
    """torch's pieces (uneven sizes for an int, slice bounds wrapped and
    clamped for indices, empty pieces included): exact data movement,
    within ENC; gradients of the pieces' weighted sums are the weights,
    exact on encoded weights: ENC per piece holding the element (two where
    indices overlap: [0:6] and [-10:5] both hold every element)."""
    a = uniform(4, 5)
    want = a.tensor_split(spec, dim)
    x = sh(a, True)
    got = x.tensor_split(spec, dim)
    assert len(got) == len(want)
    for g, t in zip(got, want):
        assert_close(pt(g), t, ENC)
    assert [tuple(p.shape) for p in torch.tensor_split(x, spec, dim)] == [
        tuple(t.shape) for t in want
    ]
    w = uniform(4, 5, seed=1)
    ws = w.tensor_split(spec, dim)
    total = sum((p * cryptgpu.cryptensor(v)).sum() for p, v in zip(got, ws) if v.numel())
    total.backward()
    at = a.clone().requires_grad_()
    sum((p * v).sum() for p, v in zip(at.tensor_split(spec, dim), ws)).backward()
    assert_close(pt(x.grad), at.grad, 2 * ENC)


def test_tensor_split_pieces_are_views(session):
    """A change of a piece reaches the base, as torch's views (exact)."""
    a, x = torch.arange(10.0, dtype=D), sh(torch.arange(10.0, dtype=D))
    a.tensor_split(3)[1].fill_(-1.0)
    x.tensor_split(3)[1].fill_(-1.0)
    assert_close(pt(x), a, ENC)


@pytest.mark.parametrize(
    "name,shape,spec",
    [
        ("hsplit", (4, 6), 3),
        ("hsplit", (4, 6), [1, 4]),
        ("hsplit", (6,), 2),
        ("vsplit", (4, 6), 2),
        ("vsplit", (4, 6, 2), [3]),
        ("dsplit", (2, 3, 4), 2),
        ("dsplit", (2, 3, 4), [1, 5]),
    ],
)
def test_hsplit_vsplit_dsplit(session, name, shape, spec):
    """torch's dims (hsplit: 1, or 0 for 1-D; vsplit: 0; dsplit: 2),
    method and torch function: exact, within ENC."""
    a = uniform(*shape)
    want = getattr(a, name)(spec)
    for got in (getattr(sh(a), name)(spec), getattr(torch, name)(sh(a), spec)):
        assert len(got) == len(want)
        for g, t in zip(got, want):
            assert_close(pt(g), t, ENC)


SPLIT_ERRORS = [
    ("0-d tensor_split", lambda x: x[0, 0].tensor_split(2)),
    ("0 sections", lambda x: x.tensor_split(0)),
    ("negative sections", lambda x: x.tensor_split(-1, 1)),
    ("float sections", lambda x: x.tensor_split(2.5)),
    ("float index", lambda x: x.tensor_split([1, 2.5])),
    ("dim out of range", lambda x: x.tensor_split(3, 2)),
    ("float tensor", lambda x: x.tensor_split(torch.tensor([1.0, 3.0]), 1)),
    ("int32 tensor", lambda x: x.tensor_split(torch.tensor([1], dtype=torch.int32), 1)),
    ("2-D tensor", lambda x: x.tensor_split(torch.tensor([[1, 3]]), 1)),
    ("hsplit not dividing", lambda x: x.hsplit(2)),
    ("hsplit 0", lambda x: x.hsplit(0)),
    ("hsplit float", lambda x: x.hsplit(2.0)),
    ("hsplit 0-d", lambda x: x[0, 0].hsplit(1)),
    ("vsplit 1-D", lambda x: x[0].vsplit(1)),
    ("vsplit not dividing", lambda x: x.vsplit(3)),
    ("dsplit 2-D", lambda x: x.dsplit(1)),
    ("torch.hsplit not dividing", lambda x: torch.hsplit(x, 3)),
]


@pytest.mark.parametrize("name,f", SPLIT_ERRORS, ids=[e[0] for e in SPLIT_ERRORS])
def test_split_errors_are_torchs(session, name, f):
    """torch's exception type for each bad argument (a 4 x 5 tensor)."""
    a = uniform(4, 5)
    same_error(f, a, sh(a))
    assert usable()


# ------------------------------------------------------------ 3. logaddexp, xlogy


def test_logaddexp_broadcasts_with_gradients(session):
    """The logsumexp of the stacked pair, broadcast (3, 1) with (4,): LSE
    (the input encodings move it by at most ENC: its slopes sum to 1); the
    gradients are the pair's softmax weights, LSE per unit of |w| <= 1,
    summed over the 4 (resp. 3) broadcast positions."""
    a, b = uniform(3, 1, lo=-8, hi=8), uniform(4, lo=-8, hi=8, seed=1)
    w = uniform(3, 4, seed=2)
    got, want, (ga, gb), (ta, tb) = grads(lambda x, y: x.logaddexp(y), [a, b], [True, True], w)
    assert_close(got, want, LSE + ENC)
    assert_close(ga, ta, 4 * LSE)
    assert_close(gb, tb, 3 * LSE)
    # a public operand on either side, method and torch function
    got, want, (gb,), (tb,) = grads(torch.logaddexp, [a, b], [False, True], w)
    assert_close(got, want, LSE + ENC)
    assert_close(gb, tb, 3 * LSE)
    assert_close(pt(sh(a).logaddexp(b)), want, LSE + ENC)


def test_logaddexp_bad_arguments(session):
    """A number (torch: TypeError) and shapes that do not broadcast
    (RuntimeError)."""
    a = uniform(3, 2)
    same_error(lambda x: x.logaddexp(1.0), a, sh(a))
    same_error(lambda x: x.logaddexp(torch.zeros(3)), a, sh(a))
    same_error(lambda x: torch.logaddexp(x, torch.zeros(4, 3)), a, sh(a))
    assert usable()


def test_xlogy_with_gradients(session):
    """x log(y), y shared in [0.5, 10]: |x| <= 3 times log's error against
    ln y (LOG, plus ENC / y from y's encoding), plus ln(10) ENC from x's
    encoding and the product's truncation. Gradients: d/dx = ln y (the same
    log error per unit of |w|, plus w's encoding times ln 10 and a
    truncation); d/dy = x / y through the log's gradient (16 ULP (1 + 1/y)
    per unit of |x w| <= 3, plus x's encoding over y)."""
    x, y = uniform(32, lo=-3, hi=3), uniform(32, lo=0.5, hi=10, seed=1)
    w = uniform(32, seed=2)
    got, want, (gx, gy), (tx, ty) = grads(lambda a, b: a.xlogy(b), [x, y], [True, True], w)
    tol = 3 * (LOG + ENC / 0.5) + math.log(10) * ENC + TRUNC
    assert_close(got, want, tol)
    assert_close(gx, tx, LOG + ENC / 0.5 + math.log(10) * ENC + 2 * TRUNC)
    assert ((gy - ty).abs() <= 3 * 16 * ULP * (1 + 1 / y) + ENC / y + 2 * TRUNC).all()
    # x = 0 gives 0 whatever y (torch: 0, also where y = 0): one truncation
    zero = sh(torch.zeros(3, dtype=D))
    assert_close(pt(zero.xlogy(sh(torch.tensor([0.0, 1.0, 5.0], dtype=D)))), torch.zeros(3), TRUNC)
    # a public side: torch.xlogy(number, shared), x.xlogy(public): exact logs
    assert_close(pt(torch.xlogy(2, sh(y))), torch.xlogy(2, y), 2 * (LOG + ENC / 0.5) + ULP)
    assert_close(pt(sh(x).xlogy(y)), torch.xlogy(x, y), prod_tol(1, 3, math.log(10)))
    assert_close(pt(torch.special.xlogy(sh(x), 3.0)), torch.xlogy(x, 3.0), prod_tol(1, 3, 1.1))


# ------------------------------------------------------------ 4. products and distances


def test_inner_and_kron_with_gradients(session):
    """Sums of k products of encoded inputs in [-1, 1]: prod_tol(k, 1, 1)
    (inner: k = 4; kron: k = 1); gradients, products of the encoded weights
    with the other operand, summed over the terms each element meets."""
    a, b = uniform(2, 3, 4), uniform(5, 4, seed=1)
    w = uniform(2, 3, 5, seed=2)
    got, want, (ga, gb), (ta, tb) = grads(lambda x, y: x.inner(y), [a, b], [True, True], w)
    assert_close(got, want, prod_tol(4, 1, 1))
    assert_close(ga, ta, prod_tol(5, 1, 1))  # each a element meets 5 rows of b
    assert_close(gb, tb, prod_tol(6, 1, 1))  # each b element meets 6 rows of a
    v = uniform(4, seed=3)
    assert_close(pt(torch.inner(sh(v), sh(v))), torch.inner(v, v), prod_tol(4, 1, 1))
    assert_close(pt(torch.inner(a, sh(b))), torch.inner(a, b), prod_tol(4, 1, 1))
    assert_close(pt(sh(a).inner(torch.tensor(2.0, dtype=D))), a * 2, 2 * ENC)  # 0-d: exact x2
    c, d = uniform(2, 3, seed=4), uniform(3, 2, 2, seed=5)
    w = uniform(3, 4, 6, seed=6)
    got, want, (gc, gd), (tc, td) = grads(lambda x, y: x.kron(y), [c, d], [True, True], w)
    assert_close(got, want, prod_tol(1, 1, 1))
    assert_close(gc, tc, prod_tol(12, 1, 1))  # each c element meets all 12 of d
    assert_close(gd, td, prod_tol(6, 1, 1))
    assert_close(pt(torch.kron(c, sh(d))), torch.kron(c, d), prod_tol(1, 1, 1))


TENSORDOTS = [
    ("dims=2", (2, 3, 4), (3, 4, 5), 2),
    ("dims=1", (2, 3), (3, 5), 1),
    ("dims=0", (2, 3), (4,), 0),
    ("lists", (2, 3, 4), (4, 3, 5), ([1, 2], [1, 0])),
    ("negative dims", (2, 3, 4), (4, 3, 5), ([-2, -1], [1, 0])),
    ("size-1 broadcast", (2, 1, 4), (4, 3, 5), ([1, 2], [1, 0])),
    ("size-1 on b", (2, 3, 4), (4, 1, 5), ([1, 2], [1, 0])),
    ("tensor dims", (2, 3), (3, 5), torch.tensor([[1], [0]])),
]


@pytest.mark.parametrize("name,sa,sb,dims", TENSORDOTS, ids=[t[0] for t in TENSORDOTS])
@pytest.mark.parametrize("public", [None, 0, 1])
def test_tensordot_with_gradients(session, name, sa, sb, dims, public):
    """One matrix product over the contracted dims (k = 12 at most, inputs
    in [-1, 1]): prod_tol(12, 3, 3) (a size-1 dim summed first adds up to
    3 encoded inputs, 3 ENC, per factor); gradients likewise. Either
    operand may be public."""
    a, b = uniform(*sa), uniform(*sb, seed=1)
    shared = [public != 0, public != 1]
    want = torch.tensordot(a, b, dims=dims)
    w = uniform(*want.shape, seed=2)
    got, want, gs, ts = grads(lambda x, y: torch.tensordot(x, y, dims=dims), [a, b], shared, w)
    assert_close(got, want, prod_tol(12, 3, 3))
    for g, t in zip(gs, ts):
        assert_close(g, t, prod_tol(20, 3, 1))  # at most 20 output terms per element


TENSORDOT_ERRORS = [
    ("sizes differ", lambda x, y: torch.tensordot(x, y, dims=([2], [1]))),
    ("lists of unequal length", lambda x, y: torch.tensordot(x, y, dims=([1, 2], [0]))),
    ("repeated dim", lambda x, y: torch.tensordot(x, y, dims=([1, 1], [0, 0]))),
    ("negative int", lambda x, y: torch.tensordot(x, y, dims=-1)),
    ("int too large", lambda x, y: torch.tensordot(x, y, dims=4)),
    ("dim out of range", lambda x, y: torch.tensordot(x, y, dims=([5], [0]))),
    ("ints in place of lists", lambda x, y: torch.tensordot(x, y, dims=(2, 0))),
    ("a string", lambda x, y: torch.tensordot(x, y, dims="x")),
    ("a float", lambda x, y: torch.tensordot(x, y, dims=1.0)),
    ("inner: last dims differ", lambda x, y: torch.inner(x, y)),
]


@pytest.mark.parametrize("name,f", TENSORDOT_ERRORS, ids=[e[0] for e in TENSORDOT_ERRORS])
def test_tensordot_and_inner_errors_are_torchs(session, name, f):
    """torch's exception type for each bad ``dims`` ([2, 3, 4] and [4, 3, 5])."""
    a, b = uniform(2, 3, 4), uniform(4, 3, 5, seed=1)
    same_error(lambda x: f(x, b), a, sh(a))
    assert usable()


def test_cdist_batched_with_gradients(session):
    """Batched (batch dims broadcast: [2, 3, 4] and [1, 5, 4]); x2 in
    [2, 4] and x1 in [-1, 1], so every coordinate difference is in [1, 5]
    and every distance at least sqrt(4) = 2. p = 2: each difference's two
    encodings (ULP) move the distance by at most 2 ULP (sqrt(M) ULP), the
    4 squares' truncations the square sum by 4 ULP (2 ULP / 2 in the
    distance), then sqrt's 1e-4 relative (distances <= 10). p = 1: 4
    differences' encodings (4 ULP), |d| exact. Gradients: p = 2, for each
    of the R = 5 (resp. P = 3 x batch 2) distances an element meets, a
    weight times a unit-bounded ratio d / dist, with sqrt's 1e-4 relative
    and a few units; p = 1, weights times exact signs, ENC each."""
    x1, x2 = uniform(2, 3, 4), uniform(1, 5, 4, lo=2, hi=4, seed=1)
    w = uniform(2, 3, 5, seed=2)
    got, want, (g1, g2), (t1, t2) = grads(torch.cdist, [x1, x2], [True, True], w)
    assert_close(got, want, SQRT_REL * 10 + 4 * ULP)
    assert_close(g1, t1, 5 * (SQRT_REL + 8 * ULP))
    assert_close(g2, t2, 6 * (SQRT_REL + 8 * ULP))
    p1 = lambda a, b: torch.cdist(a, b, p=1)  # noqa: E731
    got, want, (g1, g2), (t1, t2) = grads(p1, [x1, x2], [True, True], w)
    assert_close(got, want, 4 * ULP)
    assert_close(g1, t1, 5 * ENC + TRUNC)
    assert_close(g2, t2, 6 * ENC + TRUNC)
    # 2-D, and a public operand on either side
    assert_close(pt(torch.cdist(sh(x1[0]), x2[0])), torch.cdist(x1[0], x2[0]), 1e-3 + 4 * ULP)
    assert_close(pt(torch.cdist(x1[0], sh(x2[0]))), torch.cdist(x1[0], x2[0]), 1e-3 + 4 * ULP)


CDIST_ERRORS = [
    ("1-D", lambda x: torch.cdist(x[0], x)),
    ("columns differ", lambda x: torch.cdist(x, torch.zeros(2, 3, dtype=D))),
    ("negative p", lambda x: torch.cdist(x, x, p=-1.0)),
    ("compute_mode", lambda x: torch.cdist(x, x, compute_mode="foo")),
    ("batch mismatch", lambda x: torch.cdist(x.expand(2, 3, 4), torch.zeros(3, 2, 4, dtype=D))),
]


@pytest.mark.parametrize("name,f", CDIST_ERRORS, ids=[e[0] for e in CDIST_ERRORS])
def test_cdist_errors_are_torchs(session, name, f):
    """torch's exception type for each bad argument (a [3, 4] x1)."""
    a = uniform(3, 4)
    same_error(f, a, sh(a))
    assert usable()


def test_other_norms_are_refused_by_name(session):
    """cdist for p other than 2 and 1, pairwise_distance beyond 2, 1 and
    inf: NotImplementedError naming p (torch computes them)."""
    x = sh(uniform(3, 4))
    with pytest.raises(NotImplementedError, match="p=3"):
        torch.cdist(x, x, p=3)
    with pytest.raises(NotImplementedError, match="p=0"):
        torch.cdist(x, x, p=0)
    with pytest.raises(NotImplementedError, match="p=3"):
        F.pairwise_distance(x, x, p=3)
    assert usable()


def test_pairwise_distance_with_gradients(session):
    """F.pairwise_distance (torch.pairwise_distance, the same function):
    the norm of x1 - x2 + eps over the last dim, broadcasting; x2 in [2, 4]
    keeps every difference in [1, 5] (eps = 1e-6 encodes as 0, moving
    torch's value by at most 4e-6 = sqrt(4) 1e-6 for p = 2, 4e-6 for
    p = 1); tolerances as cdist's."""
    x1, x2 = uniform(3, 4), uniform(4, lo=2, hi=4, seed=1)
    w = uniform(3, seed=2)
    got, want, (g1, g2), (t1, t2) = grads(F.pairwise_distance, [x1, x2], [True, True], w)
    assert_close(got, want, SQRT_REL * 10 + 4 * ULP + 4e-6)
    assert_close(g1, t1, SQRT_REL + 8 * ULP)
    assert_close(g2, t2, 3 * (SQRT_REL + 8 * ULP))
    l1 = lambda a, b: F.pairwise_distance(a, b, p=1, keepdim=True)  # noqa: E731
    got, want, (g1,), (t1,) = grads(l1, [x1, x2], [True, False], w.reshape(3, 1))
    assert_close(got, want, 4 * ULP + 4e-6)
    assert_close(g1, t1, ENC + TRUNC)
    pinf = F.pairwise_distance(x2, sh(x1), p=math.inf)  # a public x1
    assert_close(pt(pinf), F.pairwise_distance(x2, x1, p=math.inf), ULP + 1e-6)
    zero_d = F.pairwise_distance(sh(torch.tensor(1.0, dtype=D)), torch.tensor(3.5, dtype=D))
    assert_close(
        pt(zero_d), F.pairwise_distance(torch.tensor(1.0), torch.tensor(3.5)).double(), 1e-3
    )
    # torch's RuntimeError for shapes that do not broadcast
    same_error(lambda x: F.pairwise_distance(x, torch.zeros(2, 4)), x1, sh(x1))
    assert usable()


def test_rsub(session):
    """torch.rsub(x, other, alpha=) = other - alpha x: alpha 2 is an exact
    integer factor (x's encoding doubled, 2 ENC, and other's, ENC); alpha
    0.5 a product (ENC of x halved, other's ENC, one truncation)."""
    a, b = uniform(3, 4), uniform(4, seed=1)
    w = uniform(3, 4, seed=2)
    f = lambda x, y: torch.rsub(x, y, alpha=2)  # noqa: E731
    got, want, (ga, gb), (ta, tb) = grads(f, [a, b], [True, True], w)
    assert_close(got, want, 3 * ENC)
    assert_close(ga, ta, 2 * ENC)  # -2 w: exact on the encoded weight
    assert_close(gb, tb, 3 * ENC)  # the sum of 3 encoded weights
    assert_close(pt(torch.rsub(sh(a), 5)), 5 - a, ENC)
    assert_close(pt(torch.rsub(sh(a), sh(b), alpha=0.5)), b - 0.5 * a, 2 * ENC + TRUNC)
    assert_close(pt(torch.rsub(a, sh(b))), b - a, 2 * ENC)  # a public input


# ------------------------------------------------------------ 5. scatter_reduce

SCATTERS = [
    ("dim 0", 0, [[0, 1, 0], [1, 1, 0]]),
    ("dim 1, fewer columns than src", 1, [[2, 2], [0, 2]]),
    ("dim -1, repeated thrice", -1, [[1, 1, 1], [0, 0, 2]]),
]


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("name,dim,index", SCATTERS, ids=[s[0] for s in SCATTERS])
def test_scatter_reduce_sum_and_mean(session, reduce, include_self, name, dim, index):
    """A position receives at most 3 encoded src elements and x's own:
    within 4 ENC for "sum"; "mean" divides that by a public count c <= 4
    by a product with 1 / c, encoded with 16 significant bits (2^-16
    relative of the value, |value| <= 5) and truncated once. Gradients:
    "sum" passes the encoded weight (ENC); "mean" the weight times 1 / c
    (ENC, c's encoding, one truncation). Also as torch.scatter_reduce and
    in place (scatter_reduce_)."""
    idx = torch.tensor(index)
    x, src = uniform(2, 3, lo=-5, hi=5), uniform(2, 3, lo=-5, hi=5, seed=1)
    w = uniform(2, 3, seed=2)

    def f(a, b):
        if isinstance(b, torch.Tensor):  # torch's backward refuses a src larger than index
            b = b[tuple(slice(0, n) for n in idx.shape)]
        return a.scatter_reduce(dim, idx, b, reduce, include_self=include_self)

    got, want, (gx, gs), (tx, ts) = grads(f, [x, src], [True, True], w)
    tol = 4 * ENC if reduce == "sum" else 4 * ENC + 5 * 2.0**-16 + TRUNC
    gtol = ENC if reduce == "sum" else ENC + 2.0**-16 + TRUNC
    assert_close(got, want, tol)
    assert_close(gx, tx, gtol)
    assert_close(gs, ts, gtol)
    fn = torch.scatter_reduce(sh(x), dim, idx, src, reduce=reduce, include_self=include_self)
    assert_close(pt(fn), want, tol)  # a public src
    y = sh(x)
    y.scatter_reduce_(dim, idx, sh(src), reduce, include_self=include_self)
    assert_close(pt(y), want, tol)


@pytest.mark.parametrize("reduce", ["amax", "amin", "prod"])
def test_scatter_reduce_refuses_the_other_reductions_by_name(session, reduce):
    """torch computes them; here NotImplementedError naming the reduction."""
    x = sh(uniform(2, 3))
    with pytest.raises(NotImplementedError, match=reduce):
        x.scatter_reduce(0, torch.tensor([[0, 1, 0]]), sh(uniform(1, 3)), reduce)
    assert usable()


SCATTER_ERRORS = [
    ("unknown reduce", lambda x, s: x.scatter_reduce(0, torch.tensor([[0, 1, 0]]), s, "foo")),
    ("float index", lambda x, s: x.scatter_reduce(0, torch.tensor([[0.0, 1, 0]]), s, "sum")),
    ("index out of range", lambda x, s: x.scatter_reduce(0, torch.tensor([[0, 2, 0]]), s, "sum")),
    ("a number src", lambda x, s: x.scatter_reduce(0, torch.tensor([[0, 1, 0]]), 3.0, "sum")),
    ("include_self positional", lambda x, s: x.scatter_reduce(0, torch.tensor([[0]]), s, "sum", 0)),
]


@pytest.mark.parametrize("name,f", SCATTER_ERRORS, ids=[e[0] for e in SCATTER_ERRORS])
def test_scatter_reduce_errors_are_torchs(session, name, f):
    """torch's exception type for each bad argument."""
    a, s = uniform(2, 3), uniform(1, 3, seed=1)
    same_error(lambda x: f(x, s if isinstance(x, torch.Tensor) else sh(s)), a, sh(a))
    assert usable()


# ------------------------------------------------------------ 6. CrypTen's keywords


def test_crypten_reciprocal_and_polynomial_keywords(session):
    """x.reciprocal(input_in_01=True) is the range-reduced reciprocal
    either way: within 32 (1/x^2 + 1 + 1/x) ULP of 1 / x
    (test_functions' bound) on (0.05, 1]; polynomial(coeffs, func="mul")
    is polynomial(coeffs): x + 0.5 x^2 - 0.25 x^3 on [-1, 1], the inputs'
    encoding through the derivative (<= 2.75 ENC) plus a truncation per
    product (3)."""
    a = uniform(32, lo=0.05, hi=1.0)
    tol = 32 * (a**-2 + 1 + 1 / a) * ULP
    for flag in (True, False):
        assert ((pt(sh(a).reciprocal(input_in_01=flag)) - 1 / a).abs() <= tol).all()
    b = uniform(32)
    want = b + 0.5 * b**2 - 0.25 * b**3
    got = pt(sh(b).polynomial([1.0, 0.5, -0.25], func="mul"))
    assert_close(got, want, 2.75 * ENC + 3 * TRUNC)
    with pytest.raises(NotImplementedError, match="conv2d"):
        sh(b).polynomial([1.0, 0.5], func="conv2d")
    assert usable()
