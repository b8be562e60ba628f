"""Cross-entropy with torch's options (class weights, ignore_index,
label_smoothing, [N, C, d] logits), NLLLoss after LogSoftmax, Huber and
smooth L1, as cryptgpu.nn classes, torch.nn classes and F.* on a
SharedTensor: values and gradients against float64 torch.

Tolerances (f = 16): log_softmax is CrypTen's log of a range-reduced sum,
within LOGSM = 1e-2 of torch's per entry on these rows of 4 to 5 logits
in [-3, 3] (test_functions bounds 1000-entry rows by 0.1); softmax within
SM = 3e-4 (test_functions); the cross-entropy gradient is the exact
shortcut (softmax - target) times the row's weight over the weights'
sum, so its error is SM times that factor plus two truncations. Each
weighted mean divides by the sum of the kept weights, as torch's.
"""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close

LOGSM, SM = 1e-2, 3e-4
W = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)


def run(private, plain, x, y):
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    xt = x.clone().requires_grad_()
    lp, lt = private(xs, y), plain(xt, y)
    (lp if lp.dim() == 0 else lp.sum()).backward()
    (lt if lt.dim() == 0 else lt.sum()).backward()
    return (
        lp.get_plain_text(dtype=torch.float64),
        lt.detach(),
        xs.grad.get_plain_text(dtype=torch.float64),
        xt.grad,
    )


@pytest.mark.parametrize(
    "name,private,plain",
    [
        ("ignore_index", lambda a, b: cryptgpu.nn.CrossEntropyLoss()(a, b), F.cross_entropy),
        (
            "weight",
            lambda a, b: cryptgpu.nn.CrossEntropyLoss(weight=W)(a, b),
            lambda a, b: F.cross_entropy(a, b, weight=W),
        ),
        (
            "torch_module_label_smoothing",
            lambda a, b: tnn.CrossEntropyLoss(label_smoothing=0.1)(a, b),
            lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
        ),
        (
            "weight_none_reduction",
            lambda a, b: F.cross_entropy(a, b, weight=W, reduction="none"),
            lambda a, b: F.cross_entropy(a, b, weight=W, reduction="none"),
        ),
    ],
)
def test_cross_entropy_options_follow_torch(session, rng, name, private, plain):
    x = torch.rand(6, 4, generator=rng, dtype=torch.float64) * 6 - 3
    y = torch.tensor([0, 1, 3, -100, 2, 1])  # one row ignored (torch's default index)
    got, want, g, gw = run(private, plain, x, y)
    # per-sample losses: LOGSM each times the largest weight (2), averaged
    assert_close(got, want, 2 * LOGSM)
    # weighted rows over the weights' sum (>= 5 here): SM times 2 / 5
    assert_close(g, gw, SM * 2 + 2 * TRUNC)
    assert float(g[3].abs().max()) <= 2 * TRUNC  # the ignored row gets nothing


def test_cross_entropy_over_extra_dims_and_nll_after_log_softmax(session, rng):
    x = torch.rand(2, 4, 5, generator=rng, dtype=torch.float64) * 6 - 3
    y = torch.randint(0, 4, (2, 5), generator=rng)
    got, want, g, gw = run(F.cross_entropy, F.cross_entropy, x, y)
    assert_close(got, want, LOGSM)
    assert_close(g, gw, SM / 10 + 2 * TRUNC)  # mean over the 10 positions
    x2 = torch.rand(6, 4, generator=rng, dtype=torch.float64) * 6 - 3
    y2 = torch.tensor([0, 1, 3, 2, 2, 1])
    for private, plain in (
        (
            lambda a, b: tnn.NLLLoss()(F.log_softmax(a, 1), b),
            lambda a, b: F.nll_loss(a.log_softmax(1), b),
        ),
        (
            lambda a, b: cryptgpu.nn.NLLLoss(weight=W)(a.log_softmax(1), b),
            lambda a, b: F.nll_loss(a.log_softmax(1), b, weight=W),
        ),
    ):
        got, want, g, gw = run(private, plain, x2, y2)
        assert_close(got, want, 2 * LOGSM)
        # NLL's gradient goes through log_softmax's recorded operations (a
        # softmax in its backward): SM times the weights' share, a few
        # truncations along the way
        assert_close(g, gw, 2 * SM + 8 * TRUNC)


def test_huber_and_smooth_l1(session, rng):
    x = torch.rand(6, 4, generator=rng, dtype=torch.float64) * 6 - 3
    t = torch.rand(6, 4, generator=rng, dtype=torch.float64) * 4 - 2
    for private, plain in (
        (lambda a, b: F.huber_loss(a, b, delta=0.7), lambda a, b: F.huber_loss(a, b, delta=0.7)),
        (
            lambda a, b: tnn.SmoothL1Loss(beta=0.5)(a, b),
            lambda a, b: F.smooth_l1_loss(a, b, beta=0.5),
        ),
        (
            lambda a, b: cryptgpu.nn.HuberLoss(reduction="none")(a, cryptgpu.cryptensor(b)),
            lambda a, b: F.huber_loss(a, b, reduction="none"),
        ),
    ):
        got, want, g, gw = run(private, plain, x, t)
        # c^2 / 2 + delta (|d| - |c|) on encoded inputs: each element moves
        # by at most |d| <= 5 times its 2 ENC of encoding, plus 3
        # truncations; a mean of such elements by as much, then its division
        assert_close(got, want, 5 * 2 * ENC + 3 * TRUNC + TRUNC)
        assert_close(g, gw, 2 * ENC + 4 * TRUNC)


def test_loss_argument_errors_as_torch(session):
    x = cryptgpu.cryptensor(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="label_smoothing"):
        cryptgpu.nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="delta"):
        cryptgpu.nn.HuberLoss(delta=0.0)
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(x, torch.tensor([0, 7]))
