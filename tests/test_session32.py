"""Checks of the thirty-second session (2026-12-08).

Optimiser steps batch a parameter group: until 2026-12-08 every optimiser
stepped one parameter tensor at a time, so a step's rounds grew with the
number of tensors (an Adam step 74 rounds per tensor: 740 for a LeNet's
ten; SGD with momentum 4 per tensor). The parameters whose state is alike
are now laid end to end (``optim_flat``) and stepped as one tensor: the
rounds of a step do not depend on how the elements are split into
tensors, and the results are torch's as before. A gradient set by hand
as a torch tensor (``p.grad = torch.tensor(...)``, which the setter takes)
made Adam, RMSprop and Adagrad raise TypeError inside the step; it is now
a public gradient, as SGD took it.
"""

import warnings

import pytest
import torch

import cryptgpu
from cryptgpu import optim

OPTIMISERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "SGD-nesterov-wd": lambda ps: optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01
    ),
    "Adam": lambda ps: optim.Adam(ps, lr=0.01),
    "AdamW-amsgrad": lambda ps: optim.AdamW(ps, lr=0.01, amsgrad=True),
    "RMSprop-centered-momentum": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.01, lr_decay=0.01),
}


def _step_costs(make, sizes, steps=3):
    """(rounds, bytes) of each of ``steps`` steps of parameters of ``sizes``."""
    g = torch.Generator().manual_seed(5)
    ps = [
        cryptgpu.cryptensor(torch.randn(n, generator=g, dtype=torch.float64), requires_grad=True)
        for n in sizes
    ]
    opt = make(ps)
    out = []
    for _ in range(steps):
        for p in ps:
            p.grad = cryptgpu.cryptensor(torch.randn(p.shape, generator=g, dtype=torch.float64))
        cryptgpu.reset_stats()
        opt.step()
        t = cryptgpu.stats()["total"]
        out.append((t["rounds"], t["bytes"]))
    return out


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_step_rounds_do_not_grow_with_the_number_of_tensors(session, name):
    make = OPTIMISERS[name]
    one = _step_costs(make, [600])
    # the same 600 elements as six tensors: the same work, end to end
    six = _step_costs(make, [100, 50, 150, 100, 120, 80])
    assert six == one
    if name == "SGD":
        # the design: each product by a public constant is one exact
        # truncation, 2 rounds (its correction round and its reveal);
        # step 1: p - lr g; later: v = mu v + g, p - lr v
        assert [r for r, _ in one] == [2, 4, 4]


def test_parameters_in_different_states_step_as_torch(session):
    # a, b, c in one group; c has no gradient at step 4 (torch skips it,
    # and its step count falls behind), d joins in its own group at step 3,
    # b is frozen for steps 5-6 with its gradient set to None
    g = torch.Generator().manual_seed(11)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in ((3, 4), (5,), (2, 2), (3,))]
    grads = [
        [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in init] for _ in range(6)
    ]
    ref = [t.clone().requires_grad_(True) for t in init]
    got = [cryptgpu.cryptensor(t, requires_grad=True) for t in init]
    ref_opt = torch.optim.Adam(ref[:3], lr=0.01)
    opt = optim.Adam(got[:3], lr=0.01)
    for step in range(6):
        if step == 2:
            ref_opt.add_param_group({"params": [ref[3]], "lr": 0.02})
            opt.add_param_group({"params": [got[3]], "lr": 0.02})
        for i, (r, s) in enumerate(zip(ref, got)):
            skip = (i == 2 and step == 3) or (i == 1 and step >= 4) or (i == 3 and step < 2)
            r.grad = None if skip else grads[step][i].clone()
            s.grad = None if skip else cryptgpu.cryptensor(grads[step][i])
        ref_opt.step()
        opt.step()
    for r, s in zip(ref, got):
        # each Adam step's ratio m_hat / sqrt(v_hat) (at most about 1 here)
        # within 0.5% of torch's for |g| >= 3e-4 (README), plus a 2^-16
        # rounding of the weight per step: 6 x (0.02 x 0.005 + 2^-16) < 7e-4
        torch.testing.assert_close(s.get_plain_text().double(), r.detach(), rtol=0, atol=7e-4)


def test_a_parameter_listed_twice_steps_twice_as_one_by_one(session):
    # torch warns and steps such a parameter at each of its places; the
    # batches keep the second step after the first
    w0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    gv = torch.tensor([0.25, 0.5, -0.75], dtype=torch.float64)
    ref = w0.clone().requires_grad_(True)
    got = cryptgpu.cryptensor(w0, requires_grad=True)
    other = cryptgpu.cryptensor(w0, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_opt = torch.optim.SGD([ref, ref], lr=0.1)
        opt = optim.SGD([got, other, got], lr=0.1)
    for _ in range(2):
        ref.grad, got.grad, other.grad = (
            gv.clone(),
            cryptgpu.cryptensor(gv),
            cryptgpu.cryptensor(gv),
        )
        ref_opt.step()
        opt.step()
    # four exact products by lr (each within one unit, 2^-16) per element
    torch.testing.assert_close(got.get_plain_text().double(), ref.detach(), rtol=0, atol=4 * 2**-16)
    torch.testing.assert_close(
        other.get_plain_text().double(), w0 - 0.2 * gv, rtol=0, atol=2 * 2**-16
    )


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop-centered-momentum"])
def test_gradients_set_as_torch_tensors_step_as_shared_ones(session, name):
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(2)]
    grads = [torch.randn(4, generator=g, dtype=torch.float64) for _ in range(2)]
    a = [cryptgpu.cryptensor(t, requires_grad=True) for t in init]
    b = [cryptgpu.cryptensor(t, requires_grad=True) for t in init]
    oa, ob = OPTIMISERS[name](a), OPTIMISERS[name](b)
    for _ in range(2):
        for p, q, gv in zip(a, b, grads):
            p.grad, q.grad = gv.clone(), cryptgpu.cryptensor(gv)
        oa.step()
        ob.step()
    for p, q in zip(a, b):
        # the same public gradient, shared or not: the two runs differ by
        # their own roundings only (a few units of 2^-16 per step; the
        # moment optimisers' ratios to 0.5%, times lr 0.01)
        torch.testing.assert_close(
            p.get_plain_text().double(), q.get_plain_text().double(), rtol=0, atol=2e-4
        )


def test_batches_hold_at_most_2_to_the_16_elements(session):
    # SGD: small tensors share a batch, past 65,536 elements a new one
    # starts and a larger tensor is a batch alone (optim_flat), each batch
    # an SGD step of its own: 2 rounds at step 1 and 4 later (the design)
    make = OPTIMISERS["SGD"]
    assert [r for r, _ in _step_costs(make, [30000, 30000], steps=2)] == [2, 4]
    assert [r for r, _ in _step_costs(make, [40000, 40000], steps=2)] == [4, 8]
    assert [r for r, _ in _step_costs(make, [70000], steps=2)] == [2, 4]
    # Adam cuts large tensors into pieces of 65,536 (filling each batch):
    # 140,000 elements in any split are three batches, each the rounds of a
    # small one
    small = [r for r, _ in _step_costs(OPTIMISERS["Adam"], [600], steps=2)]
    for sizes in ([140000], [100000, 500, 39500]):
        got = [r for r, _ in _step_costs(OPTIMISERS["Adam"], sizes, steps=2)]
        assert got == [3 * r for r in small]


def test_a_tensor_cut_over_batches_steps_as_torch(session):
    # a (300, 300) weight cut into pieces of 65,536 elements (the second
    # and the bias share a batch): weights and moments as torch's Adam
    g = torch.Generator().manual_seed(21)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in ((300, 300), (300,))]
    ref = [t.clone().requires_grad_(True) for t in init]
    got = [cryptgpu.cryptensor(t, requires_grad=True) for t in init]
    ref_opt, opt = torch.optim.Adam(ref, lr=0.01), optim.Adam(got, lr=0.01)
    for _ in range(3):
        for r, s in zip(ref, got):
            gv = torch.randn(r.shape, generator=g, dtype=torch.float64)
            # |g| >= 0.1: inside the range where Adam's steps are torch's
            # (README: below about 1e-4 a step is shorter than torch's)
            gv = gv + 0.1 * gv.sign()
            r.grad, s.grad = gv, cryptgpu.cryptensor(gv)
        ref_opt.step()
        opt.step()
    state = opt.state_dict()
    for i, (r, s) in enumerate(zip(ref, got)):
        # as in test_parameters_in_different_states_step_as_torch: 3 steps
        # of lr 0.01 with the ratio within 0.5%, plus 2^-16 a step
        torch.testing.assert_close(s.get_plain_text().double(), r.detach(), rtol=0, atol=3e-4)
        m = state["exp_avg"][i]
        assert tuple(m.shape) == tuple(r.shape)
        # the first moment in grad_scale (2^8) units: torch's exp_avg x 256,
        # beta1 encoded within half a unit (2^-17) so each of the 3 steps'
        # products m * beta1 off by up to 2^-17 |m| (m up to 256 max|g|),
        # plus a unit of 2^-16 a product, and 1 - beta1 (1e-4 relative,
        # README) on the new gradient's part
        want = ref_opt.state[r]["exp_avg"] * 256
        tol = 3 * 2**-17 * 256 * 5 + 6 * 2**-16
        torch.testing.assert_close(m.get_plain_text().double(), want, rtol=2e-4, atol=tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_an_unmasked_softmax_with_a_low_precision_public_bias(session, dtype):
    # a review of row_fills: a bias in bfloat16 (>= 128) or float16 (>= 1024)
    # was judged by its own dtype's eps, not that of the float32 sum torch
    # computes, and every score was dropped (weights 0.25 each)
    class M(torch.nn.Module):
        def forward(self, x, b):
            return (x @ x.transpose(-1, -2) + b).softmax(-1)

    torch.manual_seed(0)
    x = torch.randn(2, 4, 3)
    b = torch.full((4, 4), 200.0 if dtype == torch.bfloat16 else 1500.0, dtype=dtype)
    want = M()(x, b).double()
    pm = cryptgpu.nn.from_pytorch(M(), (x, b)).encrypt()
    got = pm(cryptgpu.cryptensor(x), b).get_plain_text(dtype=torch.float64)
    # softmax of scores up to about 10: its weights within 1e-4 of torch's
    # (the softmax's fixed-point error, as in test_fix_GJ)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
