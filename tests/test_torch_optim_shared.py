"""torch.optim.SGD, Adam, AdamW, RMSprop and Adagrad given shared
parameters (the PyTorch habit ``torch.optim.SGD(model.parameters(), ...)``
on a private model) build cryptgpu.optim's class of the same name with the
same arguments: the same steps bit for bit as cryptgpu.optim's on the same
seed, schedulers, state_dict and checkpoints. Given torch tensors they are
torch's, unchanged (a generator of parameters reaches torch's __init__, a
user's subclass reads its generator itself). Every other torch optimiser,
and a user's subclass of torch.optim.SGD, refuses shared parameters with a
TypeError that names what works; so does a mix of shared and plaintext
parameters.

Tolerances against float64 torch (f = 16, conftest's model): see each
assertion.
"""

import copy
import inspect
import pickle

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import DEVICES, ULP, assert_close, usable
from conftest import F as FRAC

STEPS = 3
# The loss is scaled so that every gradient element of these steps lies in
# 5e-4 .. 2.4 (float64 torch), inside Adam's documented range (1e-4 .. 4).
SCALE = 8
X = torch.rand(8, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
Y = torch.rand(8, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1

CASES = {
    "SGD": dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "Adam": dict(lr=1e-2),
    "AdamW": dict(lr=1e-2, weight_decay=0.1),
    "RMSprop": dict(lr=1e-2, momentum=0.5),
    "Adagrad": dict(lr=0.1, lr_decay=0.01),
}


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    ).double()


def _private(net):
    return cryptgpu.nn.from_pytorch(copy.deepcopy(net), torch.zeros(1, 6)).encrypt(src=0).train()


def _shares(model):
    """Every party's share components of every parameter, as bytes."""
    s = cryptgpu._session.current()
    return [[s.party_share(p._t, r) for r in range(3)] for p in model.parameters()]


def _train(model, opt, steps=STEPS, sched=None):
    for _ in range(steps):
        opt.zero_grad()
        loss = cryptgpu.nn.MSELoss()(model(cryptgpu.cryptensor(X)), cryptgpu.cryptensor(Y))
        (loss * SCALE).backward()
        opt.step()
        if sched is not None:
            sched.step()


def _train_torch(net, opt, steps=STEPS, sched=None):
    for _ in range(steps):
        opt.zero_grad()
        (F.mse_loss(net(X), Y) * SCALE).backward()
        opt.step()
        if sched is not None:
            sched.step()


def _groups(model, how):
    """The model's parameters as the user passes them: a generator, or two
    parameter groups (generators, the first with its own lr)."""
    if how == "generator":
        return model.parameters()
    return [{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters()}]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name,how",
    [(n, "generator") for n in CASES] + [("SGD", "groups"), ("Adam", "groups")],
)
def test_torch_optimisers_step_as_cryptgpus_bit_for_bit(device, name, how):
    net = _net()
    runs = []
    for module in (torch.optim, cryptgpu.optim):
        cryptgpu.init(device=device, precision_bits=FRAC, seed=11)
        try:
            model = _private(net)
            opt = getattr(module, name)(_groups(model, how), **CASES[name])
            assert type(opt) is getattr(cryptgpu.optim, name)
            assert opt.param_groups[0]["lr"] == (0.05 if how == "groups" else CASES[name]["lr"])
            _train(model, opt)
            runs.append((_shares(model), opt.defaults, len(opt.param_groups)))
        finally:
            cryptgpu.uninit()
    assert runs[0] == runs[1]


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_torch_optimisers_on_a_private_model_train_as_float64_torch(session, name):
    net = _net()
    model = _private(net)
    opt = getattr(torch.optim, name)(model.parameters(), **CASES[name])
    _train(model, opt)
    ref = getattr(torch.optim, name)(net.parameters(), **CASES[name])
    assert type(ref) is getattr(torch.optim, name)
    _train_torch(net, ref)
    if name == "SGD":
        # Per step each parameter moves by lr (g + mu v), g = grad + wd p and
        # v = mu v + g formed by products with public constants: 4
        # truncations, 1 unit of 2^-16 each. The gradient is within a few
        # units of float64 (the truncations of the forward and backward, on
        # values below 1, scaled by at most SCALE * 2 / 24), say 16, and
        # reaches the parameter times lr (1 + mu + mu^2)(1 + mu) < 0.11:
        # 2 units. At most 8 units per step (measured: 1.5 after 3 steps).
        tol = 8 * STEPS * ULP
    else:
        # test_adam.py's model: each step is within 1e-2 of lr of torch's
        # for gradients from 3e-4 (the floor of the scaled second moment
        # and ratio_inv_sqrt's 1e-4), summed over the steps.
        tol = STEPS * CASES[name]["lr"] * 1e-2
    for p, q in zip(model.parameters(), net.parameters()):
        assert_close(p.get_plain_text(dtype=torch.float64), q.detach(), tol)


def test_step_lr_on_a_torch_sgd_of_shared_parameters(session):
    net = _net()
    model = _private(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    ref = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5)
    _train(model, opt, steps=4, sched=sched)
    _train_torch(net, ref, steps=4, sched=ref_sched)
    assert sched.get_last_lr() == ref_sched.get_last_lr() == [0.005]
    assert opt.param_groups[0]["lr"] == 0.005
    # as the SGD case above (without decay and Nesterov: fewer truncations),
    # 8 units of 2^-16 per step (measured: 1.9 after 4 steps)
    for p, q in zip(model.parameters(), net.parameters()):
        assert_close(p.get_plain_text(dtype=torch.float64), q.detach(), 8 * 4 * ULP)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_and_checkpoint_resume_bit_for_bit(tmp_path, name):
    """A torch.optim optimiser of shared parameters saves and loads as
    cryptgpu's: resumed from cryptgpu.save / cryptgpu.load in a fresh
    session, the next step is the uninterrupted run's, bit for bit."""
    net, f = _net(), tmp_path / "ckpt"
    cryptgpu.init(seed=1)
    try:
        model = _private(net)
        opt = getattr(torch.optim, name)(model.parameters(), **CASES[name])
        _train(model, opt, steps=2)
        state = opt.state_dict()
        assert state.keys() == getattr(cryptgpu.optim, name)(model.parameters()).state_dict().keys()
        cryptgpu.save({"model": model.state_dict(), "optim": state}, f)
        _train(model, opt, steps=1)
        first = _shares(model)

        cryptgpu.init(seed=999)
        model = _private(net)
        opt = getattr(torch.optim, name)(model.parameters(), **CASES[name])
        ck = cryptgpu.load(f)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        assert opt.param_groups[0]["lr"] == CASES[name]["lr"]
        _train(model, opt, steps=1)
        assert _shares(model) == first
    finally:
        cryptgpu.uninit()


@pytest.mark.parametrize("name", list(CASES))
def test_the_same_call_on_torch_tensors_is_torchs_unchanged(session, name):
    """Given a generator of torch parameters, torch's optimiser: its own
    class, on the very parameters the generator gave, stepping them, its
    signature, copy and pickle; the same call on a private model: cryptgpu's."""
    sig = inspect.signature(getattr(torch.optim, name).__init__)
    assert str(inspect.signature(getattr(torch.optim, name))) == str(
        sig.replace(parameters=list(sig.parameters.values())[1:])
    )
    net = _net()
    params = list(net.parameters())
    gen = net.parameters()
    opt = getattr(torch.optim, name)(gen, **CASES[name])
    assert type(opt) is getattr(torch.optim, name)
    assert next(gen, None) is None  # read by torch, as before
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in params]
    before = [p.detach().clone() for p in params]
    _train_torch(net, opt, steps=1)
    assert any((p.detach() - b).abs().max() > 0 for p, b in zip(params, before))
    assert type(copy.deepcopy(opt)) is type(opt)
    assert type(pickle.loads(pickle.dumps(opt))) is type(opt)
    # and the same call on a private model: cryptgpu's
    private = getattr(torch.optim, name)(_private(net).parameters(), **CASES[name])
    assert type(private) is getattr(cryptgpu.optim, name)


def test_a_users_subclass_of_a_torch_optimiser(session):
    """A subclass of torch.optim.SGD stays torch's for torch tensors (it may
    read the generator itself, first); given shared parameters it is
    refused, pointing to cryptgpu.optim.SGD (its steps are torch's)."""

    class Counted(torch.optim.SGD):
        def __init__(self, params, **kw):
            params = list(params)
            self.count = len(params)
            super().__init__(params, **kw)

    net = _net()
    opt = Counted(net.parameters(), lr=0.1)
    assert type(opt) is Counted and isinstance(opt, torch.optim.SGD) and opt.count == 4
    _train_torch(net, opt, steps=1)
    with pytest.raises(TypeError, match=r"Counted subclasses torch.optim.SGD.*cryptgpu.optim.SGD"):
        Counted(_private(net).parameters(), lr=0.1)

    class MyAdamW(torch.optim.AdamW):  # torch's AdamW subclasses Adam: the nearest is named
        pass

    with pytest.raises(TypeError, match=r"subclasses torch.optim.AdamW.*cryptgpu.optim.AdamW "):
        MyAdamW(_private(net).parameters(), lr=0.1)
    assert usable()


def _other_torch_optimisers():
    ours = {getattr(torch.optim, n) for n in CASES}
    found = [
        c
        for c in vars(torch.optim).values()
        if isinstance(c, type)
        and issubclass(c, torch.optim.Optimizer)
        and c is not torch.optim.Optimizer
        and c not in ours
    ]
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _other_torch_optimisers(), ids=lambda c: c.__name__)
def test_other_torch_optimisers_refuse_shared_parameters_naming_what_works(session, cls):
    model = _private(_net())
    with pytest.raises(TypeError, match=rf"torch.optim.{cls.__name__} cannot optimise shared") as e:
        cls(model.parameters())
    assert "torch.optim.SGD, Adam, AdamW, RMSprop and Adagrad" in str(e.value)
    assert "cryptgpu.optim's SGD, Adam, AdamW, RMSprop and Adagrad" in str(e.value)
    assert usable()


@pytest.mark.parametrize(
    "mix",
    [
        lambda m, t: [*m.parameters(), t],
        lambda m, t: [{"params": m.parameters()}, {"params": [t], "lr": 0.2}],
    ],
    ids=["list", "groups"],
)
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_shared_and_plaintext_parameters_in_one_optimiser_are_refused(session, name, mix):
    """cryptgpu's optimisers keep only the shared parameters: the torch
    tensor would train not at all, silently."""
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=r"together with a torch.DoubleTensor: one optimiser"):
        getattr(torch.optim, name)(mix(_private(_net()), t), lr=0.1)
    assert usable()


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_cryptgpus_own_optimisers_refuse_a_plaintext_tensor_that_requires_grad(session, name):
    """cryptgpu.optim kept only the shared parameters of a group: a torch
    tensor that requires grad beside them never trained (until 2026-12-06).
    A frozen one is left out as before (torch would not move it either)."""
    net = _private(_net())
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=r"together with a torch Tensor that requires grad"):
        getattr(cryptgpu.optim, name)([*net.parameters(), t], lr=0.1)
    with pytest.raises(TypeError, match=r"together with a torch Tensor that requires grad"):
        getattr(cryptgpu.optim, name)([{"params": [*net.parameters(), t], "lr": 0.2}], lr=0.1)
    frozen = torch.zeros(3, dtype=torch.float64)
    opt = getattr(cryptgpu.optim, name)([*net.parameters(), frozen], lr=0.1)
    assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))
    assert usable()


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_frozen_torch_tensor_beside_shared_parameters_is_left_out_by_both(session, name):
    """torch's names and cryptgpu.optim take the same rule: a torch tensor
    that does not require grad is left out (torch would not move it), one
    that does is refused (test above)."""
    net = _private(_net())
    frozen = torch.zeros(3, dtype=torch.float64)
    for make in (getattr(torch.optim, name), getattr(cryptgpu.optim, name)):
        opt = make([*net.parameters(), frozen], lr=0.1)
        assert type(opt) is getattr(cryptgpu.optim, name)
        assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))
