"""``torch.nn.KLDivLoss`` / ``F.kl_div`` (knowledge distillation's loss) on
shared log-probabilities and shared or public targets: pointwise
target * (log target - input), or exp(target) * (target - input) with
``log_target=True``; reductions as torch's ("mean" over every element,
with torch's warning, "batchmean", "sum", "none")."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .. import torch_dispatch
from ..autograd import torch_grad
from ..tensor import SharedTensor
from .losses import _legacy
from .module import Module

_REDUCTIONS = ("mean", "batchmean", "sum", "none")


class KLDivLoss(Module):
    """``KLDivLoss(size_average=None, reduce=None, reduction="mean",
    log_target=False)``, as torch's: ``input`` holds log-probabilities,
    ``target`` probabilities (log-probabilities with ``log_target``).
    A public target costs one product by a public value (its
    target log target is plaintext, torch's xlogy: 0 where the target is
    0); a shared one a private log (``functions.log``, within 3e-5 for
    targets from 2^-16; a target below 2^-16 is 0 in fixed point and adds
    nothing, as torch's xlogy) or exp, and a private product. Gradients
    reach the input (-target) and a shared target (log target + 1 -
    input) as torch's."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        reduction = _legacy(size_average, reduce, reduction)
        if reduction == "elementwise_mean":  # torch's old name, with its warning
            warnings.warn(
                "reduction: 'elementwise_mean' is deprecated, please use 'mean' instead.",
                stacklevel=2,
            )
            reduction = "mean"
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.reduction, self.log_target = reduction, bool(log_target)

    def forward(self, input, target):
        if not isinstance(input, SharedTensor) and not isinstance(target, SharedTensor):
            return F.kl_div(
                torch.as_tensor(input),
                torch.as_tensor(target),
                reduction=self.reduction,
                log_target=self.log_target,
            )
        per = _pointwise(input, target, self.log_target)
        if self.reduction == "mean":
            warnings.warn(
                "reduction: 'mean' divides the total loss by both the batch size and the "
                "support size.'batchmean' divides only by the batch size, and aligns with the "
                "KL div math definition.'mean' will be changed to behave the same as "
                "'batchmean' in the next major release.",
                stacklevel=3,
            )
            return per.mean()
        if self.reduction == "batchmean":
            total = per.sum()
            return total.div(input.shape[0]) if input.dim() != 0 else total
        return per.sum() if self.reduction == "sum" else per

    def __call__(self, input, target):
        return self.forward(input, target)


def _pointwise(x, t, log_target: bool):
    """target (log target - x), or exp(target) (target - x)."""
    if not isinstance(t, SharedTensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if log_target:  # public or shared t (x is shared when t is public)
        return t.exp() * (t - x)
    if not isinstance(t, SharedTensor):
        return -(x * t) + torch.xlogy(t, t)
    # log t carries no recorded gradient (1/t is garbage where t is 0);
    # t - t.detach() is exactly 0 and gives t the missing +1 of
    # d/dt [t log t] = log t + 1 (torch_grad: torch.no_grad() in a forward
    # left recording off for good when a Ctrl-C landed at its __exit__)
    with torch_grad(False):
        lt = t.detach().log()
    return t * (lt - x) + (t - t.detach())


def _kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    return KLDivLoss(size_average, reduce, reduction, log_target)(input, target)


torch_dispatch.TABLE[F.kl_div] = _kl_div
