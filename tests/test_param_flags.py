"""A module's parameters, flags and hooks as torch's (probe LA, 2026-12-07).

- a parameter frozen with ``p.requires_grad = False`` on a converted model
  in eval mode (plaintext, as from_pytorch returns it) stays frozen through
  ``encrypt()``/``train()`` (it trained: those parameters already read
  False, and torch's setter recorded nothing);
- ``model[1].eval()`` inside a training model leaves requires_grad True, as
  torch's (a ``filter(requires_grad)`` optimiser skipped it);
- ``copy.deepcopy(model)`` drops the parameters' ``.grad``, as torch's
  Parameters (the copy's first backward added onto stale gradients);
- ``register_post_accumulate_grad_hook``, the module state-dict hooks and
  torch's global forward hooks (they raised AttributeError, or never fired).

Tolerance: two Linear layers of k <= 8 products of inputs below 3 and
weights below 1, a few SGD steps: each step's error is a few units of
2^-16 (conftest.prod_tol(8, 3, 1) < 4e-4 per layer); 2e-3 bounds three
steps with lr 0.5 (the probe saw 3e-5), far below the 0.04-0.2 the
defects gave.
"""

import copy

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import usable

TOL = 2e-3


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (16,), generator=g
    )


def mlp(bn=False):
    torch.manual_seed(0)
    layers = (
        [tnn.Linear(6, 8)] + ([tnn.BatchNorm1d(8)] if bn else []) + [tnn.ReLU(), tnn.Linear(8, 3)]
    )
    return tnn.Sequential(*layers).double()


def steps(m, x, y, n=2, lr=0.5):
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=lr)
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()


@pytest.mark.parametrize("how", ["attr", "method", "after_decrypt"])
def test_a_freeze_in_eval_mode_survives_encrypt(session, how):
    tm = mlp()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(2, 6))
    if how == "after_decrypt":
        pm = pm.encrypt().train().eval().decrypt()
    for p in pm[0].parameters():
        if how == "method":
            p.requires_grad_(False)
        else:
            p.requires_grad = False
    for p in tm[0].parameters():
        p.requires_grad = False
    pm = pm.encrypt(src=0).train()
    # old code: [True, True, True, True]
    assert [p.requires_grad for p in pm.parameters()] == [False, False, True, True]
    X, Y = data()
    steps(tm, X, Y)
    steps(pm, cryptgpu.cryptensor(X), Y)
    for (name, a), b in zip(pm.named_parameters(), tm.parameters()):
        assert (pt(a) - b.detach()).abs().max() <= TOL, name  # the frozen layer did not move
    pm.eval().decrypt().train()
    assert [p.requires_grad for p in pm.parameters()] == [False, False, True, True]


def test_an_unfreeze_in_eval_mode_is_kept_too(session):
    tm = mlp()
    tm[0].weight.requires_grad = False
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(2, 6))
    pm[0].weight.requires_grad = True  # the user's unfreeze, in eval mode
    assert [p.requires_grad for p in pm.encrypt().train().parameters()] == [True] * 4
    # the whole model's eval() still stops requiring grad (CrypTen's convention)
    assert [p.requires_grad for p in pm.eval().parameters()] == [False] * 4


@pytest.mark.parametrize("encrypted", [True, False])
def test_a_submodule_put_in_eval_mode_keeps_requires_grad(session, encrypted):
    tm = mlp(bn=True)
    pm = cryptgpu.nn.from_pytorch(
        copy.deepcopy(tm).float(), torch.zeros(2, 6), fold_batchnorm=False
    )
    if encrypted:
        pm.encrypt(src=0)
    for m in (tm, pm):
        m.train()
        m[1].eval()
    # old code: [True, True, False, False, True, True]
    assert [p.requires_grad for p in pm.parameters()] == [p.requires_grad for p in tm.parameters()]
    assert not pm[1].training
    pm.eval()  # the whole model: CrypTen's convention, as documented
    assert not any(p.requires_grad for p in pm.parameters())
    pm.train()
    pm[1].eval()
    if not encrypted:
        return
    X, Y = data()
    steps(tm, X, Y, 3, 0.1)  # (lr 0.5 moves a ReLU input across 0 within the noise)
    steps(pm, cryptgpu.cryptensor(X), Y, 3, 0.1)
    for (name, a), b in zip(pm.named_parameters(), tm.parameters()):
        assert (pt(a) - b.detach()).abs().max() <= TOL, name


def test_a_deepcopy_drops_the_gradients(session):
    tm = tnn.Linear(4, 2).double()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(1, 4)).encrypt().train()
    g = torch.Generator().manual_seed(5)
    X, Y = (
        torch.randn(8, 4, generator=g, dtype=torch.float64),
        torch.randint(0, 2, (8,), generator=g),
    )
    F.cross_entropy(tm(X), Y).backward()
    F.cross_entropy(pm(cryptgpu.cryptensor(X)), Y).backward()
    tc, pc = copy.deepcopy(tm), copy.deepcopy(pm)
    assert tc.weight.grad is None
    assert pc.weight.grad is None and pc.bias.grad is None  # old code: the copied gradient
    assert pm.weight.grad is not None  # the original keeps its own
    for m, x in ((tc, X), (pc, cryptgpu.cryptensor(X))):
        F.cross_entropy(m(x), Y).backward()
        torch.optim.SGD(m.parameters(), lr=1.0).step()
    assert (pt(pc.weight) - tc.weight.detach()).abs().max() <= TOL
    # a plaintext (decrypted) model's parameters too, as torch's Parameters
    pp = copy.deepcopy(pm).eval().decrypt().train()
    F.cross_entropy(pp(X.float()), Y).backward()
    assert copy.deepcopy(pp).weight.grad is None
    # a plain tensor keeps its gradient, as torch's
    s = cryptgpu.cryptensor(X, requires_grad=True)
    s.sum().backward()
    assert copy.deepcopy(s).grad is not None


def test_post_accumulate_grad_hooks(session):
    tm = mlp()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(2, 6)).encrypt().train()
    X, Y = data()
    for m, x in ((tm, X), (pm, cryptgpu.cryptensor(X))):
        # the torch idiom: an optimiser step per parameter, in the backward
        opts = {p: torch.optim.SGD([p], lr=0.5) for p in m.parameters()}

        def step(p, opts=opts):
            opts[p].step()
            opts[p].zero_grad()

        handles = [p.register_post_accumulate_grad_hook(step) for p in m.parameters()]
        for _ in range(2):
            F.cross_entropy(m(x), Y).backward()  # old code: AttributeError at registration
        for h in handles:
            h.remove()
    for (name, a), b in zip(pm.named_parameters(), tm.parameters()):
        assert (pt(a) - b.detach()).abs().max() <= TOL, name
        assert a.grad is None
    y = cryptgpu.cryptensor(X) * 2
    with pytest.raises(RuntimeError):
        y.register_post_accumulate_grad_hook(lambda p: None)  # torch's: no requires_grad
    assert usable()


def test_state_dict_hooks(session):
    tm = mlp()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(2, 6)).encrypt()
    logs = []
    for m in (tm, pm):
        log = []
        logs.append(log)
        # old code: AttributeError
        m.register_state_dict_pre_hook(lambda mod, prefix, kv, log=log: log.append(("pre", prefix)))
        m[2].register_state_dict_post_hook(
            lambda mod, sd, prefix, meta, log=log: log.append(("post", prefix, sorted(sd)))
        )
        m._register_state_dict_hook(
            lambda mod, sd, prefix, meta: {"x." + k: v for k, v in sd.items()}
        )
        keys = list(m.state_dict())
        log.append(keys)
    assert logs[0] == logs[1]
    # loading an old checkpoint whose keys a pre-hook renames; a post hook
    # forgives the missing last layer (strict)
    fresh = mlp()
    old = {"old." + k: v for k, v in fresh.state_dict().items() if not k.startswith("2.")}
    results = []
    for m in (tm, pm):

        def rename(mod, sd, prefix, meta, strict, missing, unexpected, errors):
            for k in list(sd):
                if k.startswith("old."):
                    sd[k[4:]] = sd.pop(k)

        def forgive(mod, keys):
            results.append(list(keys.missing_keys))
            keys.missing_keys.clear()

        m.register_load_state_dict_pre_hook(rename)
        m.register_load_state_dict_post_hook(forgive)
        m.load_state_dict(old)
    assert results[0] == results[1] == ["2.weight", "2.bias"]
    assert (pt(pm[0].weight) - fresh[0].weight.detach()).abs().max() <= TOL
    assert "old.0.weight" in old  # the caller's dict unchanged, as torch's


def test_global_forward_hooks_fire(session):
    tm = mlp()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(tm).float(), torch.zeros(2, 6)).encrypt()
    calls = []
    g = torch.nn.modules.module
    h1 = g.register_module_forward_pre_hook(lambda m, a: calls.append("pre"))
    h2 = g.register_module_forward_hook(lambda m, a, o: calls.append("post"))
    try:
        tm(torch.zeros(1, 6, dtype=torch.float64))
        n = list(calls)
        calls.clear()
        pm(cryptgpu.cryptensor(torch.zeros(1, 6)))
        assert calls == n  # old code: []
    finally:
        h1.remove()
        h2.remove()
    h = g.register_module_full_backward_hook(lambda m, gi, go: None)
    try:
        with pytest.warns(RuntimeWarning, match="not called on cryptgpu modules"):
            pm(cryptgpu.cryptensor(torch.zeros(1, 6)))  # said, not silently skipped
    finally:
        h.remove()
    assert usable()
