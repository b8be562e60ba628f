"""A PyTorch user's training-loop habits a user probe found refused or
silently ineffective (2026-12-06): ``nn.Parameter(shared)`` and
``nn.Buffer(shared)`` in a module's ``__init__`` (README's advice led to a
plain attribute the optimiser never stepped), and ``fused=True``, a speed
flag torch accepts on CPU.

Tolerances: a parameter after one SGD step is p - lr g; g here is a sum
of 4 products of encoded inputs and weights (|x|, |w| below 3), each
within prod_tol, and lr g adds one truncation: 4 prod_tol(3, 3, 3) plus
two units of 2^-16 bounds it.
"""

import pytest
import torch

import cryptgpu
from conftest import ULP, prod_tol, usable

D = torch.float64


class Scaled(cryptgpu.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = cryptgpu.nn.Linear(3, 2)
        self.temp = torch.nn.Parameter(cryptgpu.cryptensor(torch.tensor([2.0])))
        self.register_buffer("b0", torch.zeros(2))
        self.buf = torch.nn.Buffer(cryptgpu.cryptensor(torch.tensor([1.0, 2.0])), persistent=False)

    def forward(self, x):
        return self.fc(x) * self.temp + self.buf


def test_a_parameter_made_of_a_shared_tensor_is_registered_and_trained(session):
    torch.manual_seed(0)
    m = Scaled()
    w, b = (p.detach().to(D).clone() for p in (m.fc.weight, m.fc.bias))
    m = m.encrypt().train()
    # torch's order: the module's own parameters and buffers, then its children's
    assert [n for n, _ in m.named_parameters()] == ["temp", "fc.weight", "fc.bias"]
    assert list(m.state_dict()) == ["temp", "b0", "fc.weight", "fc.bias"]  # buf: not persistent
    assert [n for n, _ in m.named_buffers()] == ["b0", "buf"]
    x = torch.randn(4, 3, dtype=D)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(cryptgpu.cryptensor(x)).sum().backward()
    opt.step()
    # torch float64: the same module's step
    temp = torch.tensor([2.0], dtype=D, requires_grad=True)
    (
        torch.nn.functional.linear(x, w, b) * temp + torch.tensor([1.0, 2.0], dtype=D)
    ).sum().backward()
    want = 2.0 - 0.1 * temp.grad
    got = m.temp.get_plain_text(dtype=D)
    assert (got - want).abs().max() <= 4 * prod_tol(3, 3, 3) + 2 * ULP
    assert m.temp.requires_grad
    assert usable()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_fused_is_a_speed_flag_accepted_as_torch_accepts_it(session, name):
    p = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), requires_grad=True)
    q = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), requires_grad=True)
    fused = getattr(torch.optim, name)([p], lr=0.1, fused=True)
    plain = getattr(torch.optim, name)([q], lr=0.1)
    for t, opt in ((p, fused), (q, plain)):
        (t * t).sum().backward()
        opt.step()
    # the same step: fused changes how torch computes, not what. The two
    # runs' truncations differ (one unit of 2^-16 each) and Adam's and
    # Adagrad's 1/sqrt is within 1e-4 relative of lr (README): 2 units
    # plus 2e-4 lr
    assert (p.get_plain_text(dtype=D) - q.get_plain_text(dtype=D)).abs().max() <= 2 * ULP + 2e-5
    with pytest.raises(RuntimeError, match="cannot be `True` together"):  # torch's
        getattr(torch.optim, name)([p], lr=0.1, fused=True, foreach=True)
    with pytest.raises(NotImplementedError, match=f"{name}\\(differentiable=True\\)"):
        getattr(cryptgpu.optim, name)([p], lr=0.1, differentiable=True)
    assert usable()
