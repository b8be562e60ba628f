"""Losses of cryptgpu.nn for private training: cross-entropy (with the exact
softmax-minus-target gradient) and mean squared error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import autograd as ag
from .._native import ShapeError
from ..tensor import SharedTensor
from .module import Module
from .stats import SOFTMAX, _track


def _one_hot(target, like: SharedTensor):
    """Targets as a one-hot: a SharedTensor one-hot is used as is; integer
    labels (plaintext, so known to all parties) are expanded."""
    if isinstance(target, SharedTensor):
        if tuple(target.shape) != tuple(like.shape):
            raise ShapeError(f"one-hot target {tuple(target.shape)} != logits {tuple(like.shape)}")
        return target
    t = torch.as_tensor(target)
    if t.dim() == 1 and not t.is_floating_point():
        if t.numel() != like.shape[0]:
            raise ValueError(f"{t.numel()} labels for a batch of {like.shape[0]}")
        return F.one_hot(t.long(), like.shape[1]).double()
    if tuple(t.shape) != tuple(like.shape):
        raise ValueError(f"target {tuple(t.shape)} != logits {tuple(like.shape)}")
    return t.double()


class CrossEntropyLoss(Module):
    """Mean cross-entropy of logits [N, C] against labels or one-hot targets.

    The loss value is computed privately with log_softmax (for monitoring);
    the backward pass uses the exact shortcut d loss / d logits =
    (softmax(logits) - onehot) / N, as CryptGPU and CrypTen do, rather than
    differentiating through the approximations."""

    kind = SOFTMAX

    def forward(self, logits, target):
        """The mean cross-entropy of ``logits`` against ``target`` (labels or one-hot)."""
        if not isinstance(logits, SharedTensor):
            return F.cross_entropy(logits, torch.as_tensor(target))
        y = _one_hot(target, logits)
        n = logits.shape[0]
        want_grad = ag.needs_grad(logits)
        with ag.inside(want_grad):
            # Each sample's loss is >= 0 in exact arithmetic; the log and
            # exp approximations can make it slightly negative (-0.0009 was
            # seen), so each is clamped at 0: one comparison of N values.
            per_sample = (logits.log_softmax(1) * y).sum(1).neg()
            loss = per_sample.relu().sum().div(n)
            if not want_grad:
                return loss
            probs = logits.softmax(1)
        return ag.record(loss, (logits,), lambda g: ((probs - y).div(n) * g,))

    def __call__(self, logits, target):
        with _track(self.kind, logits):
            return self.forward(logits, target)


class MSELoss(Module):
    """Mean squared error, differentiated by the recorded operations."""

    def forward(self, x, target):
        """mean((x - target)^2)."""
        d = x - target
        return (d * d).mean()

    def __call__(self, x, target):
        return self.forward(x, target)
