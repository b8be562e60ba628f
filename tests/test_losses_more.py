"""The metric-learning and likelihood losses torch has and the package
lacked until 2026-12-07 (a user probe: each raised NotImplementedError on
a SharedTensor): TripletMarginLoss, TripletMarginWithDistanceLoss,
CosineEmbeddingLoss, MarginRankingLoss, HingeEmbeddingLoss,
PoissonNLLLoss and GaussianNLLLoss as torch's modules and functional
forms on SharedTensors, as cryptgpu.nn classes and inside a converted
forward; and torch.cosh / torch.sinh. Values and gradients against
float64 torch for every reduction; torch's errors for bad arguments.

Tolerances (f = 16, ULP = 2^-16): encoding is within ENC = ULP / 2 and a
truncation within TRUNC = ULP (conftest). The approximations, as README
and functions.py state them: a p = 2 norm (sqrt) NORM = 1e-4 relative
plus a unit; a unit row (cosine similarity) 1e-4 relative each, COS =
2e-4 for the cosine plus a unit; exp EXP = 64 ULP relative plus 32 ULP;
log LOG = 4e-5 of ln of the encoded input; a private division or
reciprocal DIV = 4 ULP relative plus a unit.
"""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, ULP, assert_close, usable

NORM, COS, EXP, LOG, DIV = 1e-4, 2e-4, 64 * ULP, 4e-5, 4 * ULP
REDUCTIONS = ["mean", "sum", "none"]


def _run(loss, inputs, shared):
    """(value, grads of the shared inputs) of ``loss`` on SharedTensors
    (the inputs whose index is in ``shared``) and of the same on float64
    torch tensors: value and gradient pairs."""
    ref = [v.clone().requires_grad_(i in shared) for i, v in enumerate(inputs)]
    sec = [
        cryptgpu.cryptensor(v, requires_grad=True) if i in shared else v
        for i, v in enumerate(inputs)
    ]
    want, got = loss(*ref), loss(*sec)
    want.sum().backward()
    got.sum().backward()
    grads = [(sec[i].grad.get_plain_text(dtype=torch.float64), ref[i].grad) for i in sorted(shared)]
    return got.get_plain_text(dtype=torch.float64), want.detach(), grads


def _ours(loss, plain):
    """A cryptgpu.nn loss on SharedTensors, torch's ``plain`` on the
    reference's torch tensors (ours returns torch's there too, but as its
    own inputs' dtype)."""

    def call(*args):
        return (
            loss(*args) if any(isinstance(v, cryptgpu.SharedTensor) for v in args) else plain(*args)
        )

    return call


def _n(reduction: str, k: int) -> int:
    """How many per-element errors a reduction adds up (a mean averages)."""
    return k if reduction == "sum" else 1


def _triplets():
    torch.manual_seed(3)
    a = torch.randn(4, 6, dtype=torch.float64)
    p = a + 0.4 * torch.randn(4, 6, dtype=torch.float64)
    n = a + 0.8 * torch.randn(4, 6, dtype=torch.float64)
    return a, p, n


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_margin_losses_as_torch(session, reduction):
    """Triplet margin loss, p = 2 and p = 1 with swap, and the distance form
    (default pairwise distance, and a user's cosine distance on
    SharedTensors) as torch's modules, F.* and cryptgpu.nn classes."""
    a, p, n = _triplets()
    margin = 1.5
    d = [F.pairwise_distance(a, v) for v in (p, n)]
    hinge = margin + d[0] - d[1]
    # data away from the ReLU's kink and from distance 0 (the norm's range)
    assert hinge.abs().min() > 0.05 and (hinge > 0).any() and min(x.min() for x in d) > 0.5
    for loss in (
        tnn.TripletMarginLoss(margin=margin, reduction=reduction),
        lambda x, y, z: F.triplet_margin_loss(x, y, z, margin=margin, reduction=reduction),
        cryptgpu.nn.TripletMarginLoss(margin=margin, reduction=reduction),
        tnn.TripletMarginWithDistanceLoss(margin=margin, reduction=reduction),
    ):
        got, want, grads = _run(loss, (a, p, n), {0, 1, 2})
        # two distances of at most 8 per triplet, each NORM relative plus
        # the encoding of 6 differences (2 ENC each, through the norm's
        # unit gradient: 2 ENC sqrt 6 < 5 ENC) and a unit; 4 triplets summed
        per = 2 * (NORM * 8 + 5 * ENC + ULP) + TRUNC
        assert_close(got, want, per * _n(reduction, 4))
        # gradients: differences of unit vectors (x - y) / |x - y|, each
        # NORM relative plus the encoding over the distance (> 0.5), and
        # the reduction's division (a truncation)
        for g, gw in grads:
            assert_close(g, gw, 2 * (NORM + 5 * ENC / 0.5 + ULP) + TRUNC)
    # p = 1 with swap: |x| by comparisons (exact on encoded inputs), the
    # swap's minimum one more; 6 encodings of 2 ENC per distance
    got, want, grads = _run(
        lambda x, y, z: F.triplet_margin_loss(
            x, y, z, margin=4.0, p=1, swap=True, reduction=reduction
        ),
        (a, p, n),
        {0, 1, 2},
    )
    assert_close(got, want, (2 * 6 * 2 * ENC + TRUNC) * _n(reduction, 4))
    for g, gw in grads:  # sums of signs, exact, then the mean's division
        assert_close(g, gw, TRUNC)
    # a user's distance on SharedTensors: 1 - cos (COS each), with swap
    got, want, grads = _run(
        tnn.TripletMarginWithDistanceLoss(
            distance_function=lambda x, y: 1.0 - F.cosine_similarity(x, y),
            margin=0.5,
            swap=True,
            reduction=reduction,
        ),
        (a, p, n),
        {0, 1, 2},
    )
    assert_close(got, want, (2 * (COS + ULP) + TRUNC) * _n(reduction, 4))
    # the cosine's gradient (y/|y| - cos x/|x|) / |x|: a few unit-row
    # errors (NORM) over |x| > 1 (these rows' norms), two distances
    assert min(v.norm(dim=1).min() for v in (a, p, n)) > 1
    for g, gw in grads:
        assert_close(g, gw, 2 * 3 * (NORM + ULP) + TRUNC)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_embedding_and_ranking_losses_as_torch(session, reduction):
    """CosineEmbeddingLoss (public +-1 targets, [N, D] and 0-d / [D]),
    MarginRankingLoss (public and shared targets, broadcast) and
    HingeEmbeddingLoss (public targets, one of them neither 1 nor -1)."""
    a, p, _ = _triplets()
    y = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    cos = F.cosine_similarity(a, p)
    assert (cos - 0.1).abs().min() > 0.05  # away from the kink of max(0, cos - margin)

    def fn_plain(x, z):
        return F.cosine_embedding_loss(x, z, y, margin=0.1, reduction=reduction)

    for loss in (
        tnn.CosineEmbeddingLoss(margin=0.1, reduction=reduction),
        lambda x, z: F.cosine_embedding_loss(x, z, y, margin=0.1, reduction=reduction),
        cryptgpu.nn.CosineEmbeddingLoss(margin=0.1, reduction=reduction),
    ):
        fn = loss if not isinstance(loss, tnn.Module) else (lambda x, z, m=loss: m(x, z, y))
        if isinstance(loss, cryptgpu.nn.Module):
            fn = _ours(lambda x, z, m=loss: m(x, z, y), fn_plain)
        got, want, grads = _run(fn, (a, p), {0, 1})
        # COS per row (and a unit of 1 - cos), 4 rows summed
        assert_close(got, want, (COS + ULP + TRUNC) * _n(reduction, 4))
        # (z/|z| - cos x/|x|) / |x|: unit-row errors over |x| > 1
        for g, gw in grads:
            assert_close(g, gw, 3 * (NORM + ULP) + TRUNC)
    # one pair of vectors, a 0-d target
    got, want, grads = _run(
        lambda x, z: F.cosine_embedding_loss(x, z, torch.tensor(-1.0), reduction=reduction),
        (a[0], a[0] + 0.3),
        {0, 1},
    )
    assert_close(got, want, COS + ULP + TRUNC)
    for g, gw in grads:
        assert_close(g, gw, 3 * (NORM + ULP) + TRUNC)

    # margin ranking: max(0, -y (x1 - x2) + margin), public and shared y,
    # [4, 1] against [1, 3] broadcast with a [4, 3] target
    x1, x2 = a[:, :1], p[:1, :3]
    yy = torch.tensor([[1.0, -1.0, 1.0]] * 4, dtype=torch.float64)
    assert (-yy * (x1 - x2) + 0.2).abs().min() > 0.01
    for shared, loss in (
        ({0, 1}, tnn.MarginRankingLoss(margin=0.2, reduction=reduction)),
        ({0, 1, 2}, lambda u, v, t: F.margin_ranking_loss(u, v, t, 0.2, reduction=reduction)),
        ({0, 2}, cryptgpu.nn.MarginRankingLoss(margin=0.2, reduction=reduction)),
    ):
        if isinstance(loss, cryptgpu.nn.MarginRankingLoss):
            loss = _ours(
                loss, lambda u, v, t: F.margin_ranking_loss(u, v, t, 0.2, reduction=reduction)
            )  # noqa: PLW2901
        got, want, grads = _run(loss, (x1, x2, yy), shared)
        # the difference's 2 ENC times |y| = 1, a shared y's ENC times
        # |x1 - x2| < 5 and one truncation of that product; 12 summed
        per = 2 * ENC + 5 * ENC + TRUNC
        assert_close(got, want, per * _n(reduction, 12))
        # -y or -(x1 - x2) where active: exact but for y's encoding times
        # nothing and the difference's (2 ENC), summed over the broadcast
        # (at most 4 elements to a [4, 1] or [1, 3] input), the mean's division
        for g, gw in grads:
            assert_close(g, gw, 4 * 2 * ENC + TRUNC)

    # hinge embedding: x where t = 1, max(0, margin - x) where t = -1,
    # both where t is anything else (0 here), broadcast [4, 6] x [6]
    t = torch.tensor([1.0, -1.0, 0.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    assert (0.5 - a).abs().min() > 0.005
    for loss in (
        tnn.HingeEmbeddingLoss(margin=0.5, reduction=reduction),
        lambda x, z: F.hinge_embedding_loss(x, z, margin=0.5, reduction=reduction),
    ):
        got, want, grads = _run(loss, (a, t), {0})
        # x's encoding (twice where t = 0), 24 summed
        assert_close(got, want, (2 * ENC + TRUNC) * _n(reduction, 24))
        assert_close(grads[0][0], grads[0][1], TRUNC)  # +-1 or 0, over N
    got = cryptgpu.nn.HingeEmbeddingLoss(0.5, reduction=reduction)(cryptgpu.cryptensor(a), t)
    want = F.hinge_embedding_loss(a, t, margin=0.5, reduction=reduction)
    assert_close(
        got.get_plain_text(dtype=torch.float64), want, (2 * ENC + TRUNC) * _n(reduction, 24)
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_and_gaussian_nll_as_torch(session, reduction):
    """PoissonNLLLoss: log-rates (exp) and rates (log), full (the Stirling
    term of public targets above 1), a shared target; GaussianNLLLoss:
    shared and public var, var one dim short, a [1, 6] var, a number, full."""
    torch.manual_seed(5)
    x = (torch.rand(4, 6, dtype=torch.float64) * 5 - 2.5).clamp(-2.5, 2.5)
    c = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0, 7.0]] * 4, dtype=torch.float64)
    k = _n(reduction, 24)
    for shared, loss in (
        ({0}, tnn.PoissonNLLLoss(reduction=reduction)),
        ({0}, lambda u, t: F.poisson_nll_loss(u, t, full=True, reduction=reduction)),
        ({0, 1}, cryptgpu.nn.PoissonNLLLoss(reduction=reduction)),
    ):
        if isinstance(loss, cryptgpu.nn.PoissonNLLLoss):
            loss = _ours(loss, lambda u, t: F.poisson_nll_loss(u, t, reduction=reduction))  # noqa: PLW2901
        got, want, grads = _run(loss, (x, c), shared)
        # e^x (|x| <= 2.5: e^x < 12.2) within EXP relative plus 32 ULP; t x:
        # x's encoding times t <= 7, a shared t's times |x|, one truncation
        per = EXP * 12.2 + 32 * ULP + 7 * ENC + 2.5 * ENC + TRUNC
        assert_close(got, want, per * k)
        # d/dx = e^x - t (exp's error), d/dt = -x (x's encoding); over N
        for g, gw in grads:
            assert_close(g, gw, EXP * 12.2 + 32 * ULP + 2 * TRUNC)
    # rates x in [0.1, 2.6]: x - t log x; the log within LOG of ln of the
    # encoded x (ENC / x off: 7.6e-5 at 0.1), times t <= 7
    r = x.abs() + 0.1
    got, want, grads = _run(
        lambda u, t: F.poisson_nll_loss(u, t, log_input=False, reduction=reduction), (r, c), {0}
    )
    assert_close(got, want, (ENC + 7 * (LOG + ENC / 0.1) + TRUNC) * k)
    # 1 - t / x: the log's gradient, a reciprocal (DIV relative) of the
    # encoded x (ENC / x^2 off), times t / x <= 70
    assert_close(grads[0][0], grads[0][1], 70 * DIV + 7 * ENC / 0.01 + 2 * TRUNC)

    # Gaussian: var in [0.5, 2.5], |x - t| < 3.5
    t = x.flip(0) * 0.5
    v = torch.rand(4, 6, dtype=torch.float64) * 2 + 0.5
    # 0.5 (log v + d^2 / v): LOG (v encoded: ENC / v), d^2 / v within DIV
    # relative (d^2 / v < 24.5) plus d's encoding through 2 |d| / v < 14,
    # v's through d^2 / v^2 < 49; a truncation or two
    per = 0.5 * (LOG + ENC / 0.5 + 24.5 * DIV + ULP + 14 * 2 * ENC + 49 * ENC) + 2 * TRUNC
    for shared, var, loss in (
        ({0, 1, 2}, v, tnn.GaussianNLLLoss(reduction=reduction)),
        ({0, 2}, v[:, 0], lambda u, z, w: F.gaussian_nll_loss(u, z, w, reduction=reduction)),
        ({0}, v[:1], lambda u, z, w: F.gaussian_nll_loss(u, z, w, full=True, reduction=reduction)),
    ):
        got, want, grads = _run(loss, (x, t, var), shared)
        assert_close(got, want, per * k)
        # d/dx = d / v (DIV and encodings, as above, < 7); d/dv = (1/v -
        # d^2/v^2) / 2: v's reciprocal and the quotient's DIV relative
        # (d^2 / v^2 < 49), times the 4 or 6 elements a broadcast var sums
        for g, gw in grads:
            assert_close(g, gw, 6 * (0.5 * (2 + 49) * DIV + 49 * 2 * ENC + 2 * TRUNC))
    got = cryptgpu.nn.GaussianNLLLoss(reduction=reduction)(cryptgpu.cryptensor(x), t, 2.0)
    want = F.gaussian_nll_loss(x, t, 2.0, reduction=reduction)
    assert_close(got.get_plain_text(dtype=torch.float64), want, per * k)


def test_cosh_and_sinh_as_torch(session):
    """torch.cosh / torch.sinh (log-cosh regression losses; refused until
    2026-12-07) and their methods, for |x| <= 20.8 (exp's range): e^x and
    e^-x within EXP relative plus 32 ULP each, halved (one truncation);
    the gradients (sinh, cosh) the same."""
    x = torch.cat([torch.linspace(-20.5, 20.5, 83), torch.linspace(-1, 1, 21)]).double()
    for f, df in ((torch.cosh, torch.sinh), (torch.sinh, torch.cosh)):
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        got = f(xs)
        got.sum().backward()
        bound = EXP * torch.cosh(x) + 64 * ULP + TRUNC
        err = (got.get_plain_text(dtype=torch.float64) - f(x)).abs()
        assert (err <= bound).all(), (err - bound).max()
        gerr = (xs.grad.get_plain_text(dtype=torch.float64) - df(x)).abs()
        assert (gerr <= bound + TRUNC).all(), (gerr - bound).max()
    xs = cryptgpu.cryptensor(x[83:])
    assert_close(xs.cosh().get_plain_text(dtype=torch.float64), x[83:].cosh(), 3 * EXP)


def test_losses_in_a_converted_forward(session):
    """A model holding torch's loss modules (a distance function among
    them) and calling the functional forms and cosh / sinh converts and
    trains: loss and weight gradient against torch. Bound: the terms'
    per-element bounds above, summed (their sum of magnitudes stays
    below 40), as an overall 1e-3 relative; the gradient likewise."""

    class Model(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(6, 6)
            self.trip = tnn.TripletMarginLoss(margin=0.5)
            self.dist = tnn.TripletMarginWithDistanceLoss(
                distance_function=lambda x, z: 1 - F.cosine_similarity(x, z), margin=0.3
            )
            self.cos = tnn.CosineEmbeddingLoss(0.1)
            self.gauss = tnn.GaussianNLLLoss()
            self.pois = tnn.PoissonNLLLoss(full=True)
            self.hinge = tnn.HingeEmbeddingLoss()
            self.rank = tnn.MarginRankingLoss(0.1)
            self.register_buffer("y", torch.tensor([1.0, -1.0, 1.0, -1.0]))
            self.register_buffer("c", torch.tensor([[0.0, 1, 2, 3, 5, 7]] * 4))

        def forward(self, a, p, n):
            ea, ep, en = self.fc(a), self.fc(p), self.fc(n)
            return (
                self.trip(ea, ep, en)
                + self.dist(ea, ep, en)
                + self.cos(ea, ep, self.y)
                + self.rank(ea[:, 0], ep[:, 0], self.y)
                + self.hinge(ea, self.c - 1)
                + self.pois(ea, self.c)
                + self.gauss(ea, en, ep * ep + 0.5)
                + F.margin_ranking_loss(ea[:, 1], ep[:, 1], self.y)
                + F.poisson_nll_loss(ea, self.c, reduction="sum")
                + F.triplet_margin_loss(ea, ep, en, p=1, swap=True)
                + F.cosine_embedding_loss(ea, en, self.y)
                + F.hinge_embedding_loss(ea, -self.y.reshape(4, 1))
                + F.gaussian_nll_loss(ea, en, 2.0)
                + torch.cosh(ea).mean()
                + ea.sinh().mean()
            )

    torch.manual_seed(0)
    m = Model().double()
    a, p, n = (torch.randn(4, 6, dtype=torch.float64) for _ in range(3))
    pm = cryptgpu.nn.from_pytorch(m, (a, p, n)).encrypt().train()
    got = pm(*(cryptgpu.cryptensor(v) for v in (a, p, n)))
    want = m(a, p, n)
    got.backward()
    want.backward()
    assert_close(got.get_plain_text(dtype=torch.float64), want.detach(), 1e-3 * 40)
    gw = m.fc.weight.grad
    assert_close(pm.fc.weight.grad.get_plain_text(dtype=torch.float64), gw, 1e-3 * 40)


def test_loss_argument_errors_as_torch(session):
    """torch's exception types for bad arguments (its words where they are
    its checks); a shared target where a public one is needed, and torch's
    p = 3 distance, NotImplementedError; then the session goes on."""
    torch.manual_seed(0)
    a, p, n = (cryptgpu.cryptensor(torch.randn(4, 6)) for _ in range(3))
    y = torch.ones(4)
    cases = [
        (RuntimeError, "same number of dimensions", lambda: F.triplet_margin_loss(a, p[0], n)),
        (ValueError, "margin must be greater", lambda: F.triplet_margin_loss(a, p, n, margin=0)),
        (ValueError, "not a valid value", lambda: tnn.TripletMarginLoss(reduction="x")(a, p, n)),
        (
            ValueError,
            "greater than 0",
            lambda: cryptgpu.nn.TripletMarginWithDistanceLoss(margin=-1),
        ),
        (
            ValueError,
            "margin must be greater",
            lambda: F.triplet_margin_with_distance_loss(a, p, n, margin=-1),
        ),
        (RuntimeError, "broadcast", lambda: F.triplet_margin_loss(a, p[:3], n)),
        (NotImplementedError, "p=3", lambda: F.triplet_margin_loss(a, p, n, p=3)),
        (RuntimeError, "0D or 1D target", lambda: F.cosine_embedding_loss(a, p, y.reshape(4, 1))),
        (
            RuntimeError,
            "1D target tensor expects 2D",
            lambda: F.cosine_embedding_loss(a.unsqueeze(2), p.unsqueeze(2), y),
        ),
        (RuntimeError, "broadcast", lambda: F.cosine_embedding_loss(a, p, y[:3])),
        (NotImplementedError, "shared target", lambda: F.cosine_embedding_loss(a, p, a[:, 0])),
        (ValueError, "not a valid value", lambda: tnn.CosineEmbeddingLoss(reduction="x")(a, p, y)),
        (
            RuntimeError,
            "same dimension",
            lambda: F.margin_ranking_loss(a[:, 0], p[:, 0], y.reshape(4, 1)),
        ),
        (RuntimeError, "broadcast", lambda: F.margin_ranking_loss(a[:, 0], p[:, 0], y[:3])),
        (RuntimeError, "broadcast", lambda: F.hinge_embedding_loss(a, torch.ones(5))),
        (NotImplementedError, "shared target", lambda: F.hinge_embedding_loss(a, p)),
        (RuntimeError, "broadcast", lambda: F.poisson_nll_loss(a, torch.ones(5))),
        (ValueError, "not a valid value", lambda: tnn.PoissonNLLLoss(reduction="x")(a, p)),
        (NotImplementedError, "full=True", lambda: F.poisson_nll_loss(a, p, full=True)),
        (ValueError, "negative", lambda: F.gaussian_nll_loss(a, p, -1.0)),
        (ValueError, "negative", lambda: tnn.GaussianNLLLoss()(a, p, -torch.ones(4, 6))),
        (ValueError, "incorrect size", lambda: F.gaussian_nll_loss(a, p, torch.ones(3, 6))),
        (ValueError, "incorrect size", lambda: F.gaussian_nll_loss(a, p, n[:1, :1])),
        (TypeError, "any", lambda: F.gaussian_nll_loss(a, p, 1)),  # torch's, for an int var
        (ValueError, "not valid", lambda: tnn.GaussianNLLLoss(reduction="x")(a, p, n)),
        (RuntimeError, "broadcast", lambda: F.gaussian_nll_loss(a, torch.ones(5), n)),
        (NotImplementedError, "deprecated", lambda: F.hinge_embedding_loss(a, y, reduce=False)),
    ]
    for kind, words, call in cases:
        with pytest.raises(kind, match=words):
            call()
    assert usable()
