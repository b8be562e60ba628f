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

import contextlib

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close, usable

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


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shared_target", [False, True])
def test_kl_div_loss_as_torch(session, reduction, log_target, shared_target):
    """KLDivLoss / F.kl_div (distillation's loss; missing until 2026-12-05)
    with each reduction, probability or log targets, public or shared:
    value and input gradient, and a shared target's gradient. Bounds per
    element, with |x| < 6 (log-probabilities of 5 classes), targets in
    [0, 1] or their logs in [-9.3, 0]: the input's encoding (ENC) times
    the target plus one product's truncation (TRUNC); a shared target adds
    its log's 3e-5 (functions.log) plus the log of its encoding (ENC / t)
    or exp's 3e-4 relative (exp of a log target); summed over the 15
    elements for "sum" and "batchmean" (3 rows)."""
    torch.manual_seed(1)
    x = torch.log_softmax(torch.randn(3, 5, dtype=torch.float64), 1)
    t = torch.softmax(2 * torch.randn(3, 5, dtype=torch.float64), 1).clamp_min(0.05)
    t = t / t.sum(1, keepdim=True)
    tt = t.log() if log_target else t
    xr, tr = x.clone().requires_grad_(), tt.clone().requires_grad_(shared_target)
    with (
        pytest.warns(UserWarning, match="batchmean")
        if reduction == "mean"
        else contextlib.nullcontext()
    ):
        want = F.kl_div(xr, tr, reduction=reduction, log_target=log_target)
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    ts = cryptgpu.cryptensor(tt, requires_grad=True) if shared_target else tt
    with (
        pytest.warns(UserWarning, match="batchmean")
        if reduction == "mean"
        else contextlib.nullcontext()
    ):
        got = tnn.KLDivLoss(reduction=reduction, log_target=log_target)(xs, ts)
    per = 6 * ENC + TRUNC + ((3e-5 + ENC / 0.05 + 3e-4 * 9.3) if shared_target else 0.0)
    tol = per * (15 if reduction in ("sum", "batchmean") else 1)
    assert_close(got.get_plain_text(dtype=torch.float64), want.detach(), tol)
    want.sum().backward()
    got.sum().backward()
    # gradients: -t (or -exp(t)) scaled by the reduction's factor, within
    # the target's encoding (or exp's 3e-4) and one truncation
    assert_close(xs.grad.get_plain_text(dtype=torch.float64), xr.grad, 3e-4 + 2 * TRUNC)
    if shared_target:
        # log t + 1 - x (or exp(t) (t - x + 1)): the log's and the
        # encoding's error as above, through factors below 10
        assert_close(ts.grad.get_plain_text(dtype=torch.float64), tr.grad, 10 * per)


def test_kl_div_inside_a_converted_distillation_model(session):
    """A student holding ``self.kl = nn.KLDivLoss(reduction="batchmean")``
    and returning the loss against a teacher's probabilities converts and
    trains: loss and weight gradient against torch. Bound: log_softmax's
    LOGSM per entry times the target (summing to 1 per row), over 3 rows
    and divided by 3; the gradient (softmax - t) / 3 within SM, through
    x (|x| < 4) summed over 3 rows."""

    class Student(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.kl = tnn.Linear(5, 5), tnn.KLDivLoss(reduction="batchmean")

        def forward(self, x, teacher):
            return self.kl(F.log_softmax(self.fc(x), -1), teacher)

    torch.manual_seed(2)
    m = Student().double()
    x = torch.randn(3, 5, dtype=torch.float64).clamp(-3.9, 3.9)
    t = torch.softmax(torch.randn(3, 5, dtype=torch.float64), 1)
    pm = cryptgpu.nn.from_pytorch(m, (x, t)).encrypt().train()
    got = pm(cryptgpu.cryptensor(x), cryptgpu.cryptensor(t))
    want = m(x, t)
    assert_close(got.get_plain_text(dtype=torch.float64), want.detach(), LOGSM)
    got.backward()
    want.backward()
    assert_close(pm.fc.weight.grad.get_plain_text(dtype=torch.float64), m.fc.weight.grad, 4 * SM)


def test_kl_div_broadcasts_quietly_and_takes_elementwise_mean(session):
    """torch's kl_div broadcasts a [3] target over [2, 3] log-probabilities
    without a warning (ours warned, a user probe) and takes the old
    reduction name 'elementwise_mean' as 'mean' with a deprecation warning
    (ours raised). Bound as test_kl_div_loss_as_torch's per element (public
    target: 6 ENC + TRUNC), the mean of 6."""
    import warnings

    x = torch.log_softmax(torch.randn(2, 3, dtype=torch.float64), 1)
    t = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    xs = cryptgpu.cryptensor(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = F.kl_div(xs, t, reduction="sum")
    assert_close(
        got.get_plain_text(dtype=torch.float64),
        F.kl_div(x, t, reduction="sum"),
        6 * (6 * ENC + TRUNC),
    )
    with pytest.warns(UserWarning, match="elementwise_mean"):
        got = tnn.KLDivLoss(reduction="elementwise_mean")(xs, t)
    assert_close(
        got.get_plain_text(dtype=torch.float64), F.kl_div(x, t, reduction="mean"), 6 * ENC + TRUNC
    )
    # bad input: torch's types, and the session goes on
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        tnn.KLDivLoss(reduction="bogus")(xs, t)  # torch checks it at the call
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        cryptgpu.nn.KLDivLoss(reduction="bogus")
    for target in (torch.ones(4, dtype=torch.float64), cryptgpu.cryptensor(torch.ones(4))):
        with pytest.raises(RuntimeError, match="broadcast"):
            F.kl_div(xs, target)
    assert usable()


def test_a_missing_target_is_torchs_type_error(session):
    """F.cross_entropy(x, None) raised RuntimeError (from as_tensor); torch
    raises TypeError ("argument 'target' ... must be Tensor"), as do the
    other class losses now; the session goes on."""
    x = cryptgpu.cryptensor(torch.randn(2, 3))
    for fn in (F.cross_entropy, F.nll_loss, F.binary_cross_entropy_with_logits):
        with pytest.raises(TypeError, match="target"):
            fn(x, None)
    with pytest.raises(TypeError, match="target"):
        tnn.CrossEntropyLoss()(x, "labels")
    assert usable()
