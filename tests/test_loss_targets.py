"""Loss targets beyond one label per sample, against float64 torch (values
and gradients): cross-entropy rows that do not sum to 1 (a zero row
masking a padded sample, a doubled row) and class weights with
probability targets; plaintext predictions against a shared target;
NLLLoss over [N, C, d1, ...]; the regression losses' broadcast warning.

Tolerances (f = 16), as test_losses': log_softmax within LOGSM = 1e-2 of
torch's per entry on rows of 4 logits in [-3, 3], softmax within SM =
3e-4; a sample's cross-entropy is the sum of its target row's entries
times log_softmax's, so within LOGSM times the row's absolute sum; its
gradient (row sum) softmax - row within SM times the row's sum, plus the
row sum's encoding (C entries, ENC each) and a few truncations. With a
public operand exact in float64 (torch's log_softmax of plaintext
logits), each product by a shared entry carries that entry's ENC times
the public factor plus one truncation.
"""

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close, usable

LOGSM, SM = 1e-2, 3e-4
W = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
# one-hot; all zero (a masked, padded sample); a doubled one-hot; a
# probability row; a probability row halved
ROWS = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 2.0],
        [0.1, 0.2, 0.3, 0.4],
        [0.05, 0.25, 0.1, 0.1],
    ],
    dtype=torch.float64,
)


def _logits(rng, *shape):
    return torch.rand(*shape, generator=rng, dtype=torch.float64) * 6 - 3


def _effective_rows(weight, eps):
    """torch's target rows: smoothed, times the class weights."""
    y = ROWS * (1 - eps) + eps / ROWS.shape[1]
    return y * (W if weight else 1.0)


@pytest.mark.parametrize("form", ["shared", "public"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight,eps", [(False, 0.0), (True, 0.0), (False, 0.1), (True, 0.1)])
def test_cross_entropy_rows_that_do_not_sum_to_one(session, rng, form, reduction, weight, eps):
    x = _logits(rng, 5, 4)
    kw = dict(reduction=reduction, label_smoothing=eps, weight=W if weight else None)
    target = cryptgpu.cryptensor(ROWS, src=1) if form == "shared" else ROWS
    xs, xt = cryptgpu.cryptensor(x, requires_grad=True), x.clone().requires_grad_()
    lp, lt = cryptgpu.nn.CrossEntropyLoss(**kw)(xs, target), F.cross_entropy(xt, ROWS, **kw)
    (lp if lp.dim() == 0 else lp.sum()).backward()
    (lt if lt.dim() == 0 else lt.sum()).backward()
    mass = _effective_rows(weight, eps).abs().sum(1)  # each row's absolute sum
    per = LOGSM * mass + 2 * TRUNC
    tol = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
    got = lp.get_plain_text(dtype=torch.float64)
    assert got.shape == lt.shape
    assert bool(((got - lt.detach()).abs() <= tol).all()), (got, lt, tol)
    # the gradient: (row sum) softmax - row (divided by N for the mean);
    # the masked row's is 0 as torch's
    assert_close(
        xs.grad.get_plain_text(dtype=torch.float64),
        xt.grad,
        SM * float(mass.max()) + 4 * ENC + 4 * TRUNC,
    )


def test_cross_entropy_soft_rows_over_extra_dims(session, rng):
    # [N, C, d] logits, the [N, C, d] target's rows at each position
    x = _logits(rng, 2, 4, 3)
    rows = torch.cat([ROWS, ROWS[:1]]).reshape(2, 3, 4).permute(0, 2, 1).contiguous()
    for target in (rows, cryptgpu.cryptensor(rows, src=1)):
        xs, xt = cryptgpu.cryptensor(x, requires_grad=True), x.clone().requires_grad_()
        lp, lt = F.cross_entropy(xs, target, weight=W), F.cross_entropy(xt, rows, weight=W)
        lp.backward()
        lt.backward()
        # a mean over 6 rows of absolute weighted sum <= 4
        assert_close(lp.get_plain_text(dtype=torch.float64), lt.detach(), 4 * LOGSM)
        assert_close(xs.grad.get_plain_text(dtype=torch.float64), xt.grad, 4 * SM + 8 * TRUNC)


def test_cross_entropy_rows_summing_to_one_keep_the_label_cost(session, rng):
    # a public one-hot target costs what its labels do: no product by its
    # row sums (each is 1), however the rows were written
    x = _logits(rng, 5, 4)
    labels = torch.tensor([0, 3, 1, 2, 2])
    cost = []
    for target in (labels, F.one_hot(labels, 4).double()):
        cryptgpu.reset_stats()
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        cryptgpu.nn.CrossEntropyLoss()(xs, target).backward()
        cost.append((cryptgpu.stats()["total"]["rounds"], cryptgpu.stats()["total"]["bytes"]))
    assert cost[0] == cost[1]


def _public_loss_tol(factor_max, k):
    """k products per result, each a shared entry (ENC) times a public
    factor up to factor_max, truncated once, and one more truncation."""
    return k * (factor_max * ENC + TRUNC) + TRUNC


def test_plaintext_predictions_with_a_shared_target(session, rng):
    x = _logits(rng, 5, 4)
    lsm_max = float(x.log_softmax(1).abs().max())
    bits = (torch.rand(5, 4, generator=rng) > 0.5).double()
    p = torch.sigmoid(x)
    onehot = F.one_hot(torch.tensor([0, 3, 1, 2, 2]), 4).double()
    cases = [
        # (private, torch, its bound)
        (
            lambda: cryptgpu.nn.CrossEntropyLoss()(x, cryptgpu.cryptensor(ROWS, src=1)),
            lambda: F.cross_entropy(x, ROWS),
            _public_loss_tol(lsm_max, 4),
        ),
        (  # weights, smoothing and the functional form: a few products more
            lambda: F.cross_entropy(
                x, cryptgpu.cryptensor(ROWS, src=1), weight=W, label_smoothing=0.1, reduction="sum"
            ),
            lambda: F.cross_entropy(x, ROWS, weight=W, label_smoothing=0.1, reduction="sum"),
            5 * 3 * _public_loss_tol(2 * lsm_max, 4),
        ),
        (
            lambda: cryptgpu.nn.CrossEntropyLoss(reduction="none")(
                x.reshape(5, 4, 1), cryptgpu.cryptensor(ROWS.reshape(5, 4, 1), src=1)
            ),
            lambda: F.cross_entropy(x.reshape(5, 4, 1), ROWS.reshape(5, 4, 1), reduction="none"),
            _public_loss_tol(lsm_max, 4),
        ),
        (
            lambda: cryptgpu.nn.NLLLoss()(x.log_softmax(1), cryptgpu.cryptensor(onehot, src=1)),
            lambda: F.nll_loss(x.log_softmax(1), onehot.argmax(1)),
            _public_loss_tol(lsm_max, 4),
        ),
        (  # y a + b with |a| <= (pos_weight + 1) softplus(3) ~ 9, times 2
            lambda: cryptgpu.nn.BCEWithLogitsLoss(weight=W, pos_weight=W)(
                x, cryptgpu.cryptensor(bits, src=1)
            ),
            lambda: F.binary_cross_entropy_with_logits(x, bits, weight=W, pos_weight=W),
            _public_loss_tol(20.0, 1) + TRUNC,
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(x, cryptgpu.cryptensor(p, src=1)),
            lambda: F.binary_cross_entropy_with_logits(x, p),
            _public_loss_tol(7.0, 1) + TRUNC,
        ),
        (  # |log(1 - p) - log p| = |x| <= 3
            lambda: cryptgpu.nn.BCELoss(reduction="sum")(p, cryptgpu.cryptensor(bits, src=1)),
            lambda: F.binary_cross_entropy(p, bits, reduction="sum"),
            20 * _public_loss_tol(3.0, 1),
        ),
    ]
    for private, plain, tol in cases:
        got = private()
        assert isinstance(got, cryptgpu.SharedTensor) and not got.requires_grad
        assert_close(got.get_plain_text(dtype=torch.float64), plain(), tol)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(x, cryptgpu.cryptensor(bits, src=1))
    assert usable()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_over_extra_dims(session, rng, reduction):
    # log-probabilities [N, C, d1, d2], labels [N, d1, d2] with one ignored
    logp = _logits(rng, 2, 4, 3, 2).log_softmax(1)
    y = torch.randint(0, 4, (2, 3, 2), generator=rng)
    y[1, 2, 0] = 7
    kw = dict(weight=W, ignore_index=7, reduction=reduction)
    xs, xt = cryptgpu.cryptensor(logp, requires_grad=True), logp.clone().requires_grad_()
    lp, lt = cryptgpu.nn.NLLLoss(**kw)(xs, y), F.nll_loss(xt, y, **kw)
    (lp if lp.dim() == 0 else lp.sum()).backward()
    (lt if lt.dim() == 0 else lt.sum()).backward()
    # each sample: C products of an encoded entry (|x| <= 7) by a public
    # weight <= 2, truncated; the sum over 12 samples bounds every form
    tol = 12 * (4 * (2 * ENC + TRUNC)) + TRUNC
    assert_close(lp.get_plain_text(dtype=torch.float64), lt.detach(), tol)
    # the gradient is the public -w[y] times the incoming gradient (for the
    # mean 1 / (kept weights), itself encoded and truncated: ENC + TRUNC),
    # truncated once more: w <= 2 times that, plus TRUNC
    assert_close(xs.grad.get_plain_text(dtype=torch.float64), xt.grad, 2 * (ENC + TRUNC) + TRUNC)
    # a shared one-hot target of the input's shape, through torch's module
    onehot = F.one_hot(y.clamp(max=3), 4).permute(0, 3, 1, 2).double()
    got = tnn.NLLLoss(reduction=reduction)(xs, cryptgpu.cryptensor(onehot, src=1))
    want = F.nll_loss(logp, y.clamp(max=3), reduction=reduction)
    assert_close(got.get_plain_text(dtype=torch.float64), want, 12 * 4 * 7 * ENC + 4 * TRUNC)


def test_class_losses_refuse_a_misplaced_target_shape(session, rng):
    xs = cryptgpu.cryptensor(_logits(rng, 2, 4, 3))
    with pytest.raises(RuntimeError, match=re.escape("Expected target size [2, 3], got [3, 2]")):
        F.nll_loss(xs, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match=re.escape("Expected target size [2, 3], got [3, 2]")):
        cryptgpu.nn.CrossEntropyLoss()(xs, torch.zeros(3, 2, dtype=torch.long))
    assert usable()


def test_cross_entropy_with_a_wrong_target_shape_raises_runtime_error(session, rng):
    """torch raises ValueError for labels of the wrong length and
    RuntimeError for probabilities of another shape; ours raised a bare
    ValueError for both (a ShapeError now, which is both)."""
    logits = _logits(rng, 3, 4)
    xs = cryptgpu.cryptensor(logits)
    for target in (torch.zeros(2, dtype=torch.long), torch.zeros(3, 5, dtype=torch.float64)):
        with pytest.raises((RuntimeError, ValueError)) as torchs:
            F.cross_entropy(logits, target)
        with pytest.raises(torchs.type):
            F.cross_entropy(xs, target)
    assert usable()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("form", ["module", "functional", "converted"])
def test_bce_loss_takes_torchs_weight(session, rng, reduction, form):
    """BCELoss(weight=w) and F.binary_cross_entropy(..., weight=w) raised
    NotImplementedError; the weight (broadcast to the input) multiplies
    each element's loss and its gradient, as torch's."""
    p = torch.rand(4, 3, generator=rng, dtype=torch.float64) * 0.8 + 0.1
    y = (torch.rand(4, 3, generator=rng) > 0.5).double()
    w = torch.rand(3, generator=rng, dtype=torch.float64) * 2
    pt = p.clone().requires_grad_()
    want = F.binary_cross_entropy(pt, y, weight=w, reduction=reduction)
    want.sum().backward()
    ps = cryptgpu.cryptensor(p, requires_grad=True)
    if form == "module":
        got = cryptgpu.nn.BCELoss(weight=w, reduction=reduction)(ps, y)
    elif form == "functional":
        got = F.binary_cross_entropy(ps, y, weight=w, reduction=reduction)
    else:
        got = tnn.BCELoss(weight=w, reduction=reduction)(ps, y)  # torch's module on ours
    got.sum().backward()
    # p in [0.1, 0.9]: the logs within 3e-5 each (range-reduced log of an
    # encoded p, |log p| < 2.3 carrying p's ENC / p < 1e-4), times w < 2,
    # summed over 12 elements for "sum": 12 * 2 * 1.3e-4
    assert_close(got.get_plain_text(dtype=torch.float64), want.detach(), 12 * 2 * 1.3e-4)
    # the gradient w (p - y) / (p (1 - p)): the reciprocal of p (1 - p) >=
    # 0.09 within 2e-4 relative of values <= 11, times w < 2: 5e-3
    assert_close(ps.grad.get_plain_text(dtype=torch.float64), pt.grad, 5e-3)


def _torch_warning(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args)
    return value, [(w.category, str(w.message)) for w in caught]


@pytest.mark.parametrize(
    "private,plain",
    [
        (cryptgpu.nn.MSELoss(), F.mse_loss),
        (cryptgpu.nn.L1Loss(), F.l1_loss),
        (cryptgpu.nn.HuberLoss(delta=0.5), lambda a, b: F.huber_loss(a, b, delta=0.5)),
        (cryptgpu.nn.SmoothL1Loss(beta=0.5), lambda a, b: F.smooth_l1_loss(a, b, beta=0.5)),
        (tnn.MSELoss(reduction="sum"), lambda a, b: F.mse_loss(a, b, reduction="sum")),
    ],
)
def test_regression_losses_warn_on_a_broadcast_target_as_torch(session, rng, private, plain):
    pred = torch.rand(4, 1, generator=rng, dtype=torch.float64) * 2 - 1
    target = torch.rand(4, generator=rng, dtype=torch.float64) * 2 - 1
    want, torch_warnings = _torch_warning(plain, pred, target)
    assert len(torch_warnings) == 1
    for t in (target, cryptgpu.cryptensor(target, src=1)):
        got, ours = _torch_warning(private, cryptgpu.cryptensor(pred), t)
        assert ours == torch_warnings
        # the [4, 4] broadcast, as torch's: |d| <= 2 over 16 elements, each
        # within 2 |d| 2 ENC plus two truncations (the sum of 16: 16 times)
        assert_close(got.get_plain_text(dtype=torch.float64), want, 16 * (8 * ENC + 2 * TRUNC))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        private(cryptgpu.cryptensor(pred), pred)  # same shapes: no warning


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss"])
def test_regression_losses_refuse_a_non_tensor_input_as_torch(session, name):
    """MSELoss()(ndarray, ndarray) returned a NumPy float (torch: TypeError);
    lists raised TypeError where torch raises AttributeError."""
    for args in ((np.ones(3), np.ones(3)), ([1.0, 2.0], [1.0, 2.0])):
        with pytest.raises((TypeError, AttributeError)) as torchs:
            getattr(tnn, name)()(*args)
        with pytest.raises(torchs.type):
            getattr(cryptgpu.nn, name)()(*args)
    x = cryptgpu.cryptensor(torch.ones(3))
    for pred, target in ((x, torch.zeros(3)), (torch.zeros(3), x)):  # still taken
        got = getattr(cryptgpu.nn, name)()(pred, target).get_plain_text(dtype=torch.float64)
        want = getattr(tnn, name)()(torch.ones(3), torch.zeros(3)).double()
        assert abs(float(got) - float(want)) < 4 * ENC  # |d| = 1 on the grid
    assert usable()
