"""Probe OF (2026-12-07, training-loop habits): ``torch.amp.GradScaler``
given a private loss raised a TypeError whose words were meant for an RNN
helper (word_language_model's repackage_hidden: "call h.detach() on each
SharedTensor"), which sent a user to detach the loss and lose its
gradients. The error now names GradScaler and says what to do; the
scaler built with ``enabled=False``, as README says, trains as without it.

Tolerance (f = 16, conftest): the gradient of sum(x @ w) w.r.t. w is a sum
of 2 encoded inputs per element, exact up to their encodings (2 ENC).
"""

import pytest
import torch

import cryptgpu
from conftest import ENC, usable

D = torch.float64


def test_grad_scaler_on_a_private_loss_names_itself(session):
    torch.manual_seed(0)
    xv = torch.randn(2, 4, dtype=D)
    w = cryptgpu.cryptensor(torch.randn(4, 3), requires_grad=True)
    x = cryptgpu.cryptensor(xv)
    scaler = torch.amp.GradScaler("cpu")
    with pytest.raises(
        TypeError, match=r"GradScaler cannot scale a SharedTensor loss.*enabled=False"
    ):
        scaler.scale((x @ w).sum())
    assert usable()
    off = torch.amp.GradScaler("cpu", enabled=False)  # README's way: the loss as it is
    off.scale((x @ w).sum()).backward()
    want = xv.sum(0, keepdim=True).T.expand(4, 3)  # d sum(x w) / dw = column sums of x
    assert (w.grad.get_plain_text(dtype=D) - want).abs().max().item() <= 2 * ENC
