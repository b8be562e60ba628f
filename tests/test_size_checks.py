"""A forward's checks on its input's sizes (probe ND, 2026-12-07):
nanoGPT's ``assert t <= self.block_size`` ended the conversion with
torch.fx's "symbolically traced variables cannot be used as inputs to
control flow", naming no line. A check on sizes (an assert, or an ``if``
whose body only raises) now runs at each call of the converted model and
raises the forward's own exception type; any other branch on a traced
value is refused with its line named.

Tolerance (f = 16, conftest): as test_probe_nd's, ids given in plaintext:
each embedding row is its encoding (ENC); the head is a Linear of 4
inputs (prod_tol) carrying that error times its weights' sum of
magnitudes.
"""

import pytest
import torch

import cryptgpu
from conftest import ENC, prod_tol, usable

D = torch.float64


class Checked(torch.nn.Module):
    """nanoGPT's first lines, with its assert and an ``if ...: raise``."""

    def __init__(self, V=10, T=8, E=4):
        super().__init__()
        self.block_size = T
        self.wte, self.wpe = torch.nn.Embedding(V, E), torch.nn.Embedding(T, E)
        self.head = torch.nn.Linear(E, V)

    def forward(self, idx):
        if idx.dim() != 2:
            raise ValueError("expected (batch, time) ids")
        b, t = idx.size()
        assert t <= self.block_size, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        return self.head(self.wte(idx) + self.wpe(pos))


def _tol(model, ids):
    h = (model.wte(ids) + model.wpe(torch.arange(ids.shape[1]))).abs().max().item()
    w = model.head.weight.abs()
    return prod_tol(4, h, w.max().item()) + w.sum(1).max().item() * 2 * ENC + ENC


def test_nanogpts_assert_on_sizes_converts_and_checks_each_call(session):
    torch.manual_seed(0)
    model = Checked().double()
    pm = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 5, dtype=torch.long)).encrypt()
    for t in (3, 8):  # any length the assert lets through, as in torch
        ids = torch.randint(0, 10, (2, t))
        got = pm(ids).get_plain_text(dtype=D)
        assert (got - model(ids)).abs().max().item() <= _tol(model, ids)
    too_long = torch.randint(0, 10, (2, 9))
    with pytest.raises(AssertionError):
        model(too_long)  # torch's
    with pytest.raises(AssertionError, match=r"assert t <= self.block_size.*test_size_checks"):
        pm(too_long)
    assert usable()
    with pytest.raises(ValueError, match=r"expected \(batch, time\) ids"):
        pm(torch.randint(0, 10, (2, 3, 4)))
    assert usable()
    pm.train()  # the train-mode graph keeps the checks too
    with pytest.raises(AssertionError):
        pm(too_long)
    assert usable()


class Sub(torch.nn.Module):
    """A check on ``x.shape`` inside a submodule, with ``if not ...``."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        if not x.shape[-1] == self.lin.in_features:
            raise IndexError("last dimension must be 4")
        return self.lin(x)


def test_a_check_in_a_submodule_raises_its_own_type(session):
    torch.manual_seed(1)
    model = torch.nn.Sequential(Sub(), torch.nn.ReLU()).double()
    pm = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 4)).encrypt()
    x = torch.randn(3, 4, dtype=D)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    w = model[0].lin.weight
    tol = prod_tol(4, x.abs().max().item(), w.abs().max().item()) + ENC  # one Linear
    assert (got - model(x)).abs().max().item() <= tol
    with pytest.raises(IndexError, match="last dimension must be 4"):
        pm(cryptgpu.cryptensor(torch.randn(3, 5)))
    assert usable()


class OnValues(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Reshaping(torch.nn.Module):
    def forward(self, x):
        if x.size(1) > 4:  # not a check: the two branches compute different things
            x = x * 2
        return x


def test_other_branches_are_refused_naming_their_line(session):
    with pytest.raises(NotImplementedError, match=r"if x.sum\(\) > 0:.*a branch on a traced value"):
        cryptgpu.nn.from_pytorch(OnValues(), torch.zeros(2, 3))
    with pytest.raises(NotImplementedError, match=r"if x.size\(1\) > 4:.*a branch on a size"):
        cryptgpu.nn.from_pytorch(Reshaping(), torch.zeros(2, 3))
    assert usable()
