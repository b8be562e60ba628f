"""Loss targets beyond one label per sample, against float64 torch (values
and gradients): cross-entropy rows that do not sum to 1 (a zero row
masking a padded sample, a doubled row) and class weights with
probability targets;
NLLLoss over [N, C, d1, ...].

Tolerances (f = 16), as test_losses': log_softmax within LOGSM = 1e-2 of
torch's per entry on rows of 4 logits in [-3, 3], softmax within SM =
3e-4; a sample's cross-entropy is the sum of its target row's entries
times log_softmax's, so within LOGSM times the row's absolute sum; its
gradient (row sum) softmax - row within SM times the row's sum, plus the
row sum's encoding (C entries, ENC each) and a few truncations.
"""

import re

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
