"""A PyTorch user's training-loop habits a user probe found refused or
silently ineffective (2026-12-06): ``nn.Parameter(shared)`` and
``nn.Buffer(shared)`` in a module's ``__init__`` (README's advice led to a
plain attribute the optimiser never stepped), and ``fused=True``, a speed
flag torch accepts on CPU.

Tolerances: a parameter after one SGD step is p - lr g. For ``temp``, g
= d/dtemp sums the 8 outputs of fc (4 rows x 2), each a sum of 3 products
of encoded inputs and weights (prod_tol(3, |x|, |w|)) plus an encoded bias
(ENC), each term a product by the output's gradient, truncated (one unit):
8 (prod_tol(3, |x|, |w|) + ENC + ULP). lr g carries lr times that, one
truncation more, and lr's own encoding (15 significant bits: |lr g|
2^-15).
"""

import pytest
import torch

import cryptgpu
from conftest import ENC, ULP, prod_tol, usable

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
    g_err = 8 * (prod_tol(3, x.abs().max(), w.abs().max()) + ENC + ULP)  # module docstring
    tol = 0.1 * g_err + ULP + 0.1 * temp.grad.abs().max() * 2**-15
    assert (got - want).abs().max() <= tol
    assert m.temp.requires_grad
    assert usable()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_fused_is_a_speed_flag_accepted_as_torch_accepts_it(session, name):
    x = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=D)
    p = cryptgpu.cryptensor(x, requires_grad=True)
    opt = getattr(torch.optim, name)([p], lr=0.1, fused=True)
    (p * p).sum().backward()
    opt.step()
    # torch float64, the same init and step (fused too: on the CPU it
    # computes what the plain step does)
    t = x.clone().requires_grad_()
    ref = getattr(torch.optim, name)([t], lr=0.1, fused=True)
    (t * t).sum().backward()
    ref.step()
    # The step of lr = 0.1, after a gradient 2p of two truncated products
    # (2 units): SGD's p - lr g is lr 2 units + 1 truncation + lr |g| 2^-16
    # (0.1 encoded with 15 significant bits): 1.3 units. Adam, AdamW and
    # Adagrad take lr * m / sqrt(w), whose ratio_inv_sqrt is within 1e-4
    # relative plus a unit of its result (README), carried on by the step's
    # factor (lr / (1 - beta1) = 1 for Adam's first step, lr for Adagrad's),
    # with one truncation of the product; Adam's bias correction uses beta1
    # as the products encode it (0.9 to within 2^-17, so 1 / (1 - beta1) to
    # within 2^-17 / 0.1 relative) and the factor itself has 2^-15 relative
    # (15 significant bits); AdamW's decay p lr wd is one truncation more.
    # So lr (1e-4 + 2^-17 / 0.1 + 2^-15) + 3 units bounds each (6.6e-5).
    tol = 0.1 * (1e-4 + 2**-17 / 0.1 + 2**-15) + 3 * ULP
    assert (p.get_plain_text(dtype=D) - t.detach()).abs().max() <= tol
    with pytest.raises(RuntimeError, match="cannot be `True` together"):  # torch's
        getattr(torch.optim, name)([p], lr=0.1, fused=True, foreach=True)
    with pytest.raises(NotImplementedError, match=f"{name}\\(differentiable=True\\)"):
        getattr(cryptgpu.optim, name)([p], lr=0.1, differentiable=True)
    assert usable()
