"""cryptgpu.optim.RMSprop and Adagrad against torch.optim in float64, with
their options, inside the gradient range their docstrings state, and
their state_dict round trip.

Tolerance of a step (as test_adam's): the update is lr times a ratio
g / (sqrt(v) + eps) computed by the range-reduced ratio_inv_sqrt (relative
error below 2e-4 beyond the encoding) with a floor 2^-14 on the scaled
second moment; for |g| >= 0.05 (scaled 12.8, squared 164) the floor is
1e-6 of it. Per step the error is below 1e-3 of the step's size (ratio
bound 2e-4, the encodings of g and p, and lr times a truncation), so
below 1e-3 lr / sqrt(1 - alpha) per RMSprop step (its steps are up to
1 / sqrt(1 - alpha) = 10 times lr early on) and 1e-3 lr per Adagrad step:
summed over the steps. With momentum the buffer adds the previous steps'
errors once more each step: mu / (1 - mu) times, bounded by the sum again
(mu = 0.5 here). A large eps takes three chained inverse square roots
instead of one (Adam's faithful form): three times the ratio's error.
"""

import pytest
import torch

import cryptgpu
from conftest import usable

D = torch.float64


def _run(make_torch, make_ours, steps, gen, lo=-1.3, hi=0.3):
    """Both optimisers on one parameter vector fed the same gradients of
    magnitude 10^lo .. 10^hi; the largest parameter difference."""
    n = 200
    p_t = torch.randn(n, dtype=D, generator=gen).requires_grad_()
    p_s = cryptgpu.cryptensor(p_t.detach()).requires_grad_()
    opt, ours = make_torch([p_t]), make_ours([p_s])
    for _ in range(steps):
        mag = 10.0 ** torch.empty(n, dtype=D).uniform_(lo, hi, generator=gen)
        g = torch.where(torch.rand(n, generator=gen) < 0.5, -mag, mag)
        p_t.grad = g.clone()
        opt.step()
        p_s.grad = cryptgpu.cryptensor(g)
        ours.step()
    return (p_s.get_plain_text(dtype=D) - p_t.detach()).abs().max().item(), ours


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.5},
        {"centered": True},
        {"weight_decay": 0.01, "maximize": True},
        {"eps": 1e-2, "alpha": 0.9},  # a large eps: divided as torch's
    ],
)
def test_rmsprop_matches_torch(session, kw):
    gen = torch.Generator().manual_seed(2)
    lr, steps = 1e-3, 12
    err, _ = _run(
        lambda ps: torch.optim.RMSprop(ps, lr=lr, **kw),
        lambda ps: cryptgpu.optim.RMSprop(ps, lr=lr, **kw),
        steps,
        gen,
    )
    per_step = 1e-3 * lr / (1 - kw.get("alpha", 0.99)) ** 0.5
    momentum = 1 + kw.get("momentum", 0) / (1 - kw.get("momentum", 0))
    chained = 3 if kw.get("eps", 0) > 1e-3 else 1
    assert err < steps * per_step * momentum * chained, err


@pytest.mark.parametrize(
    "kw",
    [{}, {"lr_decay": 0.1}, {"initial_accumulator_value": 0.5, "weight_decay": 0.01}],
)
def test_adagrad_matches_torch(session, kw):
    gen = torch.Generator().manual_seed(3)
    lr, steps = 1e-2, 12
    err, _ = _run(
        lambda ps: torch.optim.Adagrad(ps, lr=lr, **kw),
        lambda ps: cryptgpu.optim.Adagrad(ps, lr=lr, **kw),
        steps,
        gen,
    )
    assert err < steps * 1e-3 * lr, err


def test_state_dict_resumes_and_arguments_are_checked(session):
    gen = torch.Generator().manual_seed(4)
    p = cryptgpu.cryptensor(torch.randn(5, dtype=D, generator=gen)).requires_grad_()
    opt = cryptgpu.optim.RMSprop([p], lr=1e-2, momentum=0.9, centered=True)
    p.grad = cryptgpu.cryptensor(torch.randn(5, dtype=D, generator=gen))
    opt.step()
    state = opt.state_dict()
    q = cryptgpu.cryptensor(p.get_plain_text(dtype=D)).requires_grad_()
    again = cryptgpu.optim.RMSprop([q], lr=5.0)
    again.load_state_dict(state)
    assert again.param_groups[0]["lr"] == 1e-2 and again.param_groups[0]["centered"]
    g = torch.randn(5, dtype=D, generator=gen)
    p.grad, q.grad = cryptgpu.cryptensor(g), cryptgpu.cryptensor(g)
    opt.step()
    again.step()
    # the same state and gradient: equal up to the re-encoding of p (ENC)
    # and each run's own truncations (a few units of 2^-16)
    diff = (p.get_plain_text(dtype=D) - q.get_plain_text(dtype=D)).abs().max().item()
    assert diff < 1e-4
    with pytest.raises(ValueError, match="alpha"):
        cryptgpu.optim.RMSprop([p], alpha=1.0)
    with pytest.raises(ValueError, match="lr_decay"):
        cryptgpu.optim.Adagrad([p], lr_decay=-1)
    with pytest.raises(ValueError, match="power of two"):
        cryptgpu.optim.Adagrad([p], grad_scale=3)
    with pytest.raises(ValueError, match="entries"):
        cryptgpu.optim.Adagrad([p, q]).load_state_dict(cryptgpu.optim.Adagrad([p]).state_dict())


@pytest.mark.parametrize(
    "name,change",
    [
        ("Adam", {"betas": (0.9, 0.99)}),
        ("Adam", {"grad_scale": 2**4}),
        ("RMSprop", {"alpha": 0.9}),
        ("RMSprop", {"grad_scale": 2**4}),
        ("Adagrad", {"grad_scale": 2**4}),
    ],
)
def test_changing_moment_hyperparameters_mid_run_follows_torch(session, name, change):
    """The scaled second moment is kept without its (1 - beta2) factor and
    in grad_scale units; a change of either between steps rescales it
    (it was re-read under the new factor: Adam's steps 0.53x torch's after
    beta2 0.999 -> 0.99). Tolerance as the runs above: 1e-3 of each step,
    summed (steps of at most lr / sqrt(1 - beta2) = 10 lr for RMSprop at
    alpha 0.99), plus the rescaling's one truncation per moment."""
    gen = torch.Generator().manual_seed(5)
    n, lr, steps = 100, 1e-2, 8
    p_t = torch.randn(n, dtype=D, generator=gen).requires_grad_()
    p_s = cryptgpu.cryptensor(p_t.detach()).requires_grad_()
    opt = getattr(torch.optim, name)([p_t], lr=lr)
    ours = getattr(cryptgpu.optim, name)([p_s], lr=lr)
    for k in range(steps):
        if k == 4:
            for key, v in change.items():
                ours.param_groups[0][key] = v
                if key != "grad_scale":
                    opt.param_groups[0][key] = v
        g = torch.randn(n, dtype=D, generator=gen)
        g = g.sign() * (g.abs() + 0.1)  # |g| >= 0.1: inside the documented range
        p_t.grad = g.clone()
        opt.step()
        p_s.grad = cryptgpu.cryptensor(g)
        ours.step()
    err = (p_s.get_plain_text(dtype=D) - p_t.detach()).abs().max().item()
    assert err < steps * 1e-3 * lr * 10 + 8 * 2.0**-16, err


@pytest.mark.parametrize("make", ["cryptgpu", "torch"])
@pytest.mark.parametrize("init", [0.0, 0.25])
def test_adagrad_sums_start_from_the_constructors_value_as_torch(session, make, init):
    """torch.optim.Adagrad fills every sum with the constructor's
    initial_accumulator_value (at construction; a parameter added by
    add_param_group from ``defaults`` at its first step): a group's own
    value is ignored. Until 2026-12-06 ours used each group's (a user
    probe: a first step of 0.58 lr where torch's was lr). Gradients on the
    grid (exact in fixed point) and a sign each, so the only error is the
    ratio's: 1e-3 lr per step, summed (the module's model)."""
    lr, steps = 1e-2, 6
    grads = [
        torch.tensor([0.5, -0.25, 1.0, 0.125, -2.0], dtype=D),
        torch.tensor([-0.5, 0.75, 0.0625, 1.5], dtype=D),
        torch.tensor([1.0, -0.375, 0.25], dtype=D),
    ]
    starts = [torch.linspace(-1, 1, len(g), dtype=D) for g in grads]
    p_t = [w.clone().requires_grad_() for w in starts]
    p_s = [cryptgpu.cryptensor(w).requires_grad_() for w in starts]
    opt_t = torch.optim.Adagrad(
        [{"params": [p_t[0]], "initial_accumulator_value": 0.5}, {"params": [p_t[1]]}],
        lr=lr,
        initial_accumulator_value=init,
    )
    cls = torch.optim.Adagrad if make == "torch" else cryptgpu.optim.Adagrad
    opt_s = cls(  # torch's name on shared parameters gives ours
        [{"params": [p_s[0]], "initial_accumulator_value": 0.5}, {"params": [p_s[1]]}],
        lr=lr,
        initial_accumulator_value=init,
    )
    assert isinstance(opt_s, cryptgpu.optim.Adagrad)
    for k in range(steps):
        if k == 2:  # a group with its own value, added mid-run
            opt_t.add_param_group({"params": [p_t[2]], "initial_accumulator_value": 1.0})
            opt_s.add_param_group({"params": [p_s[2]], "initial_accumulator_value": 1.0})
        for i in range(3 if k >= 2 else 2):
            p_t[i].grad, p_s[i].grad = grads[i].clone(), cryptgpu.cryptensor(grads[i])
        opt_t.step()
        opt_s.step()
    for pt, ps in zip(p_t, p_s):
        err = (ps.get_plain_text(dtype=D) - pt.detach()).abs().max().item()
        # each step's ratio within 1e-3 of its size (at most lr), summed
        assert err < steps * 1e-3 * lr, err
    assert opt_s.param_groups[2]["initial_accumulator_value"] == 1.0  # kept, as torch's
    bad = [{"params": [p_s[0]], "initial_accumulator_value": 0.5}]
    with pytest.raises(ValueError, match="initial_accumulator_value"):  # torch's check
        cryptgpu.optim.Adagrad(bad, initial_accumulator_value=-1.0)
    assert usable()
