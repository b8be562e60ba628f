"""torch's loss modules met inside a converted forward (nanoGPT's
``forward(idx, targets)`` returning the loss; a model holding
``self.criterion = nn.CrossEntropyLoss()``): each becomes ours, with its
options. The functional forms (``F.cross_entropy``) run through
torch_dispatch (functional.FUNCTIONS lists them)."""

from __future__ import annotations

import torch

from . import kl_div, losses, losses_more


def converters(plain) -> dict:
    """torch loss class -> function(module) -> our loss."""
    # a loss's class weights stay public, as torch's buffers

    def weight(m):
        w = getattr(m, "weight", None)
        return None if w is None else w.detach().double()

    def pos_weight(m):
        return None if m.pos_weight is None else m.pos_weight.detach().double()

    t = torch.nn
    return {
        t.CrossEntropyLoss: lambda m: losses.CrossEntropyLoss(
            weight(m), None, m.ignore_index, None, m.reduction, m.label_smoothing
        ),
        t.NLLLoss: lambda m: losses.NLLLoss(weight(m), None, m.ignore_index, None, m.reduction),
        t.MSELoss: lambda m: losses.MSELoss(m.reduction),
        t.L1Loss: lambda m: losses.L1Loss(m.reduction),
        t.BCELoss: lambda m: losses.BCELoss(weight(m), reduction=m.reduction),
        t.BCEWithLogitsLoss: lambda m: losses.BCEWithLogitsLoss(
            weight(m), None, None, m.reduction, pos_weight(m)
        ),
        t.HuberLoss: lambda m: losses.HuberLoss(m.reduction, m.delta),
        t.SmoothL1Loss: lambda m: losses.SmoothL1Loss(None, None, m.reduction, m.beta),
        t.KLDivLoss: lambda m: kl_div.KLDivLoss(None, None, m.reduction, m.log_target),
        **losses_more.converters(plain),  # triplet, cosine / hinge embedding, Poisson, Gaussian
    }
