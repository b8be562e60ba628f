"""Probe OE (2026-12-07, a CrypTen user porting code with ``import
cryptgpu as crypten``): CrypTen names and arguments that were refused.

* ``crypten.init("config.yaml")`` took the path as the device ("unknown
  device"); ``config_file=`` and ``party_name=`` were TypeErrors.
* ``crypten.print(dst=5)`` printed locally and nothing in party threads,
  silently; ``dst=1.0`` failed with "'float' object is not iterable".
* ``crypten.nn.Sequential(OrderedDict(...))``,
  ``register_parameter(..., requires_grad=False)`` and ``register_module``.
* ``crypten.optim.SGD(grad_threshold=)`` and ``crypten.optim.Optimizer``.
* ``get_communication_stats()["time"]``, ``MPCTensor.cat``/``stack``, and
  ``x.bernoulli()`` (a bare AttributeError, now saying what to use).

Tolerances: f = 16 fractional bits, ULP = 2^-16, ENC = ULP / 2 (conftest).
"""

import contextlib
import io
from collections import OrderedDict

import pytest
import torch

import cryptgpu as crypten
from conftest import ENC, ULP, prod_tol, usable

D = torch.float64


# -- 1. init(config_file, party_name, device)


def test_init_takes_crypten_config_file_and_party_name(tmp_path, session):
    cfg = tmp_path / "default.yaml"
    cfg.write_text(
        "communicator:\n  verbose: True\ndebug:\n  debug_mode: False\n"
        "encoder:\n  precision_bits: 20\nfunctions:\n  exp_iterations: 8\n"
        "mpc:\n  provider: TTP\n  protocol: beaver\n"
    )
    try:
        crypten.init(str(cfg), party_name="alice")  # CrypTen's positional form
        assert crypten._session.current().precision_bits == 20
        crypten.init(config_file=cfg)  # a PathLike too
        assert crypten._session.current().precision_bits == 20
        x = crypten.cryptensor(torch.tensor([0.3], dtype=D))
        # one product at f = 20: encoding 2^-21 per input, one truncation 2^-20
        assert abs((x * x).get_plain_text(dtype=D).item() - 0.09) <= 2 * 0.3 * 2**-21 + 2**-20
        crypten.init(config_file=None, party_name=None, device="cpu")
        assert crypten._session.current().precision_bits == 16
        crypten.init("cpu")  # cryptgpu's earlier positional device still works
        assert crypten._session.current().precision_bits == 16
    finally:
        crypten.init(device="cpu", seed=1234)
    assert usable()


def test_init_config_file_errors(tmp_path, session):
    with pytest.raises(FileNotFoundError, match="no-such.yaml"):
        crypten.init("configs/no-such.yaml")
    bad = tmp_path / "bad.yaml"
    for text, match in (
        ("encoder:\n  precision_bitz: 20\n", "unknown CrypTen configuration key"),
        ("mpc:\n  active_security: True\n", "mpc.active_security"),
        ("functions:\n  exp_iterations: 9\n", "functions.exp_iterations"),
        ("encoder:\n  precision_bits: 40\n", "precision_bits"),
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            crypten.init(str(bad))
    bad.write_text("encoder:\n  precision_bits: 20\n")
    with pytest.raises(ValueError, match="disagrees"):
        crypten.init(str(bad), precision_bits=18)
    with pytest.raises(TypeError, match="party_name"):
        crypten.init(None, 20)  # cryptgpu's old init(device, precision_bits) order
    with pytest.raises(ValueError, match="unknown device"):
        crypten.init(device="tpu")
    crypten.init(device="cpu", seed=1234)
    assert usable()


# -- 2. crypten.print's dst


def test_print_checks_dst_as_get_plain_text_in_every_runtime(session):
    with pytest.raises(crypten.InvalidArgumentError, match="0, 1 or 2"):
        crypten.cryptensor(torch.ones(1)).get_plain_text(dst=5)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for dst in (5, [0, 3], -1):
            with pytest.raises(crypten.InvalidArgumentError, match="dst must be 0, 1 or 2"):
                crypten.print("x", dst=dst)
        for dst in (1.0, "0", [0.0]):
            with pytest.raises(TypeError, match="dst must be a party index"):
                crypten.print("x", dst=dst)
        crypten.print("shown", dst=torch.tensor(1))
    assert out.getvalue() == "shown\n"

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        errors = []
        for dst in (5, 1.0):
            try:
                crypten.print("never", dst=dst)
            except (ValueError, TypeError) as e:
                errors.append(type(e).__name__)
        crypten.print("party", crypten.comm.get().get_rank(), dst=[1, 2])
        return errors

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        got = job()
    assert got == [["InvalidArgumentError", "TypeError"]] * 3
    assert sorted(out.getvalue().split("\n")) == ["", "party 1", "party 2"]
    assert usable()


# -- 3. crypten.nn


def test_sequential_of_an_ordered_dict_matches_torch(session):
    torch.manual_seed(0)
    t = torch.nn.Sequential(
        OrderedDict([("fc", torch.nn.Linear(3, 2).double()), ("act", torch.nn.ReLU())])
    )
    fc = crypten.nn.Linear(3, 2)
    fc.weight, fc.bias = t.fc.weight.detach().float(), t.fc.bias.detach().float()
    m = crypten.nn.Sequential(OrderedDict([("fc", fc), ("act", crypten.nn.ReLU())]))
    assert [n for n, _ in m.named_children()] == ["fc", "act"] and m[0] is fc
    m.encrypt()
    x = torch.randn(5, 3, dtype=D)
    got = m(crypten.cryptensor(x)).get_plain_text(dtype=D)
    # 3 products of inputs below 3 (weights below 1), the weights encoded too
    assert torch.allclose(got, t(x).detach(), atol=prod_tol(3, 3.0, 1.0) + 3 * 3.0 * ENC, rtol=0)
    with pytest.raises(TypeError, match="not a cryptgpu.nn.Module"):
        crypten.nn.Sequential(OrderedDict([("fc", torch.nn.Linear(3, 2))]))
    assert usable()


def test_register_parameter_requires_grad_and_register_module(session):
    class Net(crypten.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_parameter("w", torch.full((3, 2), 0.5))
            self.register_parameter("scale", torch.full((2,), 2.0), requires_grad=False)
            self.register_module("act", crypten.nn.ReLU())

        def forward(self, x):
            return self.act(x.matmul(self.w) * self.scale)

    net = Net()
    assert [(n, p.requires_grad) for n, p in net.named_parameters()] == [
        ("w", True),
        ("scale", False),
    ]
    assert [n for n, _ in net.named_children()] == ["act"]
    net.encrypt().train()
    assert [p.requires_grad for p in net.parameters()] == [True, False]  # still frozen
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=D)
    net(crypten.cryptensor(x)).sum().backward()
    crypten.optim.SGD(net.parameters(), lr=0.1).step()
    # d/dw of sum(relu(x w) * 2) with x w = [-0.25, -0.25]: relu' = 0, w unchanged;
    # scale has no gradient (frozen); each value within its encoding
    assert torch.allclose(net.w.get_plain_text(dtype=D), torch.full((3, 2), 0.5, dtype=D), atol=ENC)
    assert torch.allclose(
        net.scale.get_plain_text(dtype=D), torch.full((2,), 2.0, dtype=D), atol=ENC
    )
    with pytest.raises(TypeError, match="not a cryptgpu.nn.Module"):
        net.register_module("bad", torch.nn.ReLU())
    assert usable()


# -- 4. crypten.optim


def _model_and_grads(seed=0):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(3, 2).double()
    m = crypten.nn.Linear(3, 2)
    m.weight, m.bias = lin.weight.detach().float(), lin.bias.detach().float()
    return lin, m.encrypt()


def test_sgd_grad_threshold_is_crypten_s(session):
    lin, m = _model_and_grads()
    x = torch.tensor([[1.0, 2.0, -1.0], [3.0, 0.5, 2.0]], dtype=D)
    y = torch.tensor([[20.0, -1.0], [0.0, 1.0]], dtype=D)
    # MSE-like loss sum((xw+b - y)^2): gradients of a few tens in some elements
    ((lin(x) - y) ** 2).sum().backward()
    out = m(crypten.cryptensor(x)) - crypten.cryptensor(y)
    (out * out).sum().backward()
    t, lr, mu, wd = 10.0, 0.01, 0.9, 0.1
    opt = crypten.optim.SGD(m.parameters(), lr=lr, momentum=mu, weight_decay=wd, grad_threshold=t)
    grads = [p.grad.get_plain_text(dtype=D) for p in m.parameters()]
    opt.step()
    for p, g, tp in zip(m.parameters(), grads, (lin.weight, lin.bias)):
        assert torch.allclose(g, tp.grad, atol=1e-3)  # (the gradients themselves agree)
        # CrypTen: d = g * (g^2 < t^2) + wd p; the first momentum step is d
        d = tp.grad * (tp.grad.abs() < t) + wd * tp.detach()
        want = tp.detach() - lr * d
        # each gradient within 1e-3 of torch's (a sum of products of inputs up
        # to 20), times lr, plus a few units of 2^-16 for the products
        assert torch.allclose(p.get_plain_text(dtype=D), want, atol=lr * 1e-3 + 4 * ULP), (p, want)
        assert torch.equal(p.grad.get_plain_text(dtype=D), g)  # p.grad left as it was
    assert any((tp.grad.abs() >= t).any() for tp in (lin.weight, lin.bias))  # one was cut
    with pytest.raises(ValueError, match="grad_threshold"):
        crypten.optim.SGD(m.parameters(), lr=0.1, grad_threshold=-1.0)
    with pytest.raises(TypeError, match="grad_threshold"):
        crypten.optim.SGD(m.parameters(), lr=0.1, grad_threshold="1")
    assert usable()


def test_optimizer_base_class_for_a_users_optimiser(session):
    class SignSGD(crypten.optim.Optimizer):  # CrypTen's documented base class
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        def step(self, closure=None):
            loss = closure() if closure is not None else None
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        st = self.state[id(p)]  # CrypTen's key; self.state[p] the same
                        st["steps"] = st.get("steps", 0) + 1
                        p.sub_(p.grad.sign() * g["lr"])
            return loss

    lin, m = _model_and_grads(1)
    x = torch.randn(4, 3, dtype=D)
    opt = SignSGD(m.parameters(), 0.01)
    assert isinstance(opt, torch.optim.Optimizer)
    assert isinstance(crypten.optim.SGD(m.parameters(), lr=0.1), crypten.optim.Optimizer)
    xs = crypten.cryptensor(x)

    def closure():
        opt.zero_grad()
        loss = m(xs).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    lin(x).sum().backward()
    # the loss is a sum of 8 outputs, each 3 products of inputs below 4
    assert abs(loss.get_plain_text(dtype=D).item() - lin(x).sum().item()) <= 8 * prod_tol(3, 4, 1)
    for p, tp in zip(m.parameters(), (lin.weight, lin.bias)):
        want = tp.detach() - 0.01 * tp.grad.sign()
        # 0.01 * sign is one product (one truncation), on a weight within its encoding
        assert torch.allclose(p.get_plain_text(dtype=D), want, atol=ENC + 2 * ULP)
        assert p.requires_grad and opt.state[p] == {"steps": 1}
    sd = opt.state_dict()
    assert sd == {
        "state": {0: {"steps": 1}, 1: {"steps": 1}},
        "param_groups": [{"lr": 0.01, "params": [0, 1]}],
    }
    fresh = SignSGD(m.parameters(), 0.5)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["lr"] == 0.01 and fresh.state[id(m.weight)] == {"steps": 1}
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())

    class NoStep(crypten.optim.Optimizer):
        pass

    with pytest.raises(NotImplementedError, match="step"):
        NoStep(m.parameters(), {}).step()
    with pytest.raises(TypeError, match="defaults"):
        crypten.optim.Optimizer(m.parameters(), None)
    assert usable()


# -- 5. communication stats, MPCTensor.cat/stack, x.bernoulli()


def test_communication_stats_time_cat_stack_and_bernoulli(session):
    comm = crypten.comm.get()
    comm.reset_communication_stats()
    x = crypten.cryptensor(torch.tensor([1.5, -2.0], dtype=D))
    (x * x).get_plain_text()
    stats = comm.get_communication_stats()
    assert set(stats) == {"rounds", "bytes", "time", "messages"}
    assert isinstance(stats["time"], float) and stats["time"] > 0
    comm.reset_communication_stats()
    assert comm.get_communication_stats()["time"] < stats["time"] + 1.0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        comm.print_communication_stats()
    assert "Time" in out.getvalue()

    y = crypten.cryptensor(torch.tensor([0.25, 3.0], dtype=D))
    want = torch.tensor([1.5, -2.0, 0.25, 3.0], dtype=D)
    # data movement only: each value within its encoding
    got = crypten.mpc.MPCTensor.cat([x, y]).get_plain_text(dtype=D)
    assert torch.allclose(got, want, atol=ENC, rtol=0)
    got = crypten.mpc.MPCTensor.stack([x, y], dim=1).get_plain_text(dtype=D)
    assert torch.allclose(got, want.reshape(2, 2).t(), atol=ENC, rtol=0)

    with pytest.raises(NotImplementedError, match="torch.rand"):
        x.bernoulli()
    with pytest.raises(AttributeError, match="torch.rand"):
        x.uniform_()
    assert not hasattr(x, "bernoulli")
    assert usable()
