"""Probe ON (training-loop tools): torch.optim.swa_utils.update_bn on a
cryptgpu model, duplicate parameters in one optimiser group, and the
message for an optimiser over a just-converted (eval-mode) model."""

import warnings

import pytest
import torch
from torch.optim.swa_utils import update_bn

import cryptgpu
from conftest import ULP, usable

# torch's warning for a parameter group holding a parameter twice
DUPLICATES = (
    "optimizer contains a parameter group with duplicate parameters; in future, this will "
    "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information"
)


def _on_grid(t: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """``t`` rounded to multiples of 2^-bits (encoded exactly at 16 bits,
    and products of two such values are on the 2^-16 grid)."""
    return torch.round(t * 2**bits) / 2**bits


def _bn_models():
    """A torch float64 model with a BatchNorm1d (momentum 0.3) whose running
    statistics are far from a reset's (so a reset shows), and its cryptgpu
    conversion (BatchNorm kept), both in eval mode."""
    gen = torch.Generator().manual_seed(3)
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.BatchNorm1d(8, momentum=0.3),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    ).double()
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(_on_grid(torch.rand(p.shape, generator=gen, dtype=torch.float64) - 0.5))
        tm[1].running_mean.fill_(5.0)
        tm[1].running_var.fill_(9.0)
        tm[1].num_batches_tracked.fill_(7)
    tm.eval()
    pm = cryptgpu.nn.from_pytorch(tm, torch.zeros(2, 6), fold_batchnorm=False)
    return tm, pm


def _batches():
    """Three batches of 8 on the 2^-8 grid in [-2, 2] (+ an offset per batch:
    the batch statistics differ, so a momentum other than None shows); the
    second as (input, target), as a DataLoader of pairs yields them."""
    gen = torch.Generator().manual_seed(4)
    xs = [_on_grid(torch.rand(8, 6, generator=gen, dtype=torch.float64) * 4 - 2) for _ in "abc"]
    return [x + k for k, x in enumerate(xs)]


def _mean_var_tols(tm, xs):
    """(mean, variance) tolerances. Inputs and weights on the 2^-8 grid are
    encoded exactly, so a BatchNorm input h = W x + b is within one
    truncation (1 ULP = 2^-16) and a batch mean within 2 (its own
    truncation); the running mean r + (s - r) m (m = 1, 1/2, 1/3; 1/3
    encoded within ULP/2, times |s - r| <= 2 H) adds a truncation and
    H ULP per batch: mean tolerance (4 + 2 H) ULP. Each centred value
    h - mean is within 3 ULP, so the batch variance is within 2 H 3 ULP
    + 2^-24 (the chunked sums of squares, tests/test_layers.py), times
    8/7 (encoded within ULP/2 relative) for the unbiased variance, and
    the running update adds a truncation and V ULP (V the variance, times
    the encoding of m): variance tolerance (7 H + V + 4) ULP. H is the
    largest |h - batch mean| and V the largest batch variance here."""
    h = [tm[0](x).detach() for x in xs]
    big_h = max((t - t.mean(0)).abs().max().item() for t in h)
    big_v = max(t.var(0).max().item() for t in h)
    return (4 + 2 * big_h) * ULP, (7 * big_h + big_v + 4) * ULP


def test_update_bn_recomputes_a_private_models_statistics_as_torch(session):
    """torch's update_bn looks for torch _BatchNorm layers only: on a
    cryptgpu model it returned None and changed nothing (a user probe).
    Now the running statistics are reset and recomputed as the cumulative
    average over the loader, in training mode, as torch's; the momentum,
    the eval mode and the parameters' requires_grad come back."""
    tm, pm = _bn_models()
    pm.encrypt(src=0)
    xs = _batches()
    update_bn([xs[0], (xs[1], torch.zeros(8)), [xs[2]]], tm)
    loader = [
        cryptgpu.cryptensor(xs[0]),
        (cryptgpu.cryptensor(xs[1]), 0),
        [cryptgpu.cryptensor(xs[2])],
    ]
    assert update_bn(loader, pm) is None
    tol_mean, tol_var = _mean_var_tols(tm, xs)
    bn = pm[1]
    got_mean = bn.running_mean.get_plain_text(dtype=torch.float64)
    got_var = bn.running_var.get_plain_text(dtype=torch.float64)
    # tolerances derived in _mean_var_tols from the fixed-point precision (16 bits)
    assert (got_mean - tm[1].running_mean).abs().max().item() <= tol_mean
    assert (got_var - tm[1].running_var).abs().max().item() <= tol_var
    assert int(pm.state_dict()["1.num_batches_tracked"]) == 3 == int(tm[1].num_batches_tracked)
    assert bn.momentum == 0.3 and not pm.training and not bn.training
    assert not any(p.requires_grad for p in pm.parameters())  # eval mode, as before
    assert usable()


def test_update_bn_on_a_decrypted_model_and_restores_training_mode(session):
    """A decrypted (plaintext) cryptgpu model: torch's update_bn was a no-op
    there too. Its float64 statistics, and the eval output computed from
    them (the kept eval affine is recomputed), now equal torch's to float64
    rounding (1e-9: the weights and inputs are exact binary fractions); a
    model in training mode stays in it."""
    tm, pm = _bn_models()
    xs = _batches()
    update_bn(xs, tm)
    pm.eval()
    pm(xs[0])  # an eval forward keeps an affine from the old statistics
    update_bn(xs, pm)
    bn = pm[1]
    assert (torch.as_tensor(bn.running_mean) - tm[1].running_mean).abs().max().item() <= 1e-9
    assert (torch.as_tensor(bn.running_var) - tm[1].running_var).abs().max().item() <= 1e-9
    assert bn.num_batches_tracked == 3 and bn.momentum == 0.3 and not pm.training
    want = tm(xs[1]).detach()
    assert (torch.as_tensor(pm(xs[1])).double() - want).abs().max().item() <= 1e-9
    pm.train()
    update_bn(xs[:1], pm)
    assert pm.training and bn.training and bn.momentum == 0.3 and bn.num_batches_tracked == 1


def test_update_bn_of_a_torch_model_is_torchs(session):
    """Given a torch model, torch's own update_bn runs (unchanged)."""
    tm, _ = _bn_models()
    xs = _batches()
    update_bn(xs, tm)
    assert int(tm[1].num_batches_tracked) == 3
    assert torch.allclose(tm[1].running_mean, tm[0](torch.cat(xs)).mean(0).detach())


SGD_CASES = [
    {"momentum": 0.5},
    {"momentum": 0.5, "dampening": 0.25},
    {"momentum": 0.5, "nesterov": True},
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_with_a_parameter_twice_in_a_group_warns_and_steps_as_torch(session, kw):
    """torch.optim.SGD([p, p], momentum=...) on a shared p gave no warning
    and updated the momentum buffer twice per step (-0.905 where torch's
    is -0.661, a user probe): torch's UserWarning now, pointing at the
    caller's line, and torch's (deprecated) double update, whose buffers
    start from the gradient at both places in the first step.

    Tolerance: lr 1/8, momentum 1/2, dampening 1/4 and the gradient
    [1, 2, 3] are encoded exactly, so each product is within one
    truncation (1 ULP); at most 4 products per place and step (momentum,
    dampening, Nesterov, lr), 2 places, 3 steps: 24 products, each
    reaching p with a factor at most lr / (1 - momentum) = 1/4 < 1, so
    24 ULP."""
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    pt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    ps = cryptgpu.cryptensor(torch.zeros(3), requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ot = torch.optim.SGD([pt, pt], lr=0.125, **kw)  # torch's warning
        op = torch.optim.SGD([ps, ps], lr=0.125, **kw)
    assert isinstance(op, cryptgpu.optim.SGD)
    assert [str(w.message) for w in caught] == [DUPLICATES, DUPLICATES]
    assert caught[1].category is UserWarning and caught[1].filename == __file__
    for _ in range(3):
        ot.zero_grad()
        (pt * g).sum().backward()
        ot.step()
        op.zero_grad()
        (ps * g).sum().backward()
        op.step()
    got = ps.get_plain_text(dtype=torch.float64)
    assert (got - pt.detach()).abs().max().item() <= 24 * ULP  # see the docstring


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adagrad"])
def test_every_optimiser_warns_about_duplicates_as_torch(session, name):
    """The warning in cryptgpu.optim's own classes and add_param_group."""
    p, q = (cryptgpu.cryptensor(torch.zeros(2), requires_grad=True) for _ in "pq")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = getattr(cryptgpu.optim, name)([p, p], lr=0.01)
        opt.add_param_group({"params": [q, q]})
    assert [str(w.message) for w in caught] == [DUPLICATES, DUPLICATES]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(cryptgpu.optim, name)([p, q], lr=0.01)
    assert caught == []


def test_an_optimiser_over_an_eval_models_trainable_parameters_names_train(session):
    """filter(lambda p: p.requires_grad, model.parameters()) right after
    from_pytorch(...).encrypt() (eval mode: no parameter requires grad)
    raised torch's bare "optimizer got an empty parameter list" (a user
    probe): the same ValueError, now naming model.train(). A torch
    model's empty filter keeps torch's message."""
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    pm = cryptgpu.nn.from_pytorch(tm.train(), torch.zeros(2, 6)).encrypt(src=0)
    hint = r"empty parameter list \(if they came from a converted cryptgpu model: it is in eval mode.*model\.train\(\)"
    with pytest.raises(ValueError, match=hint):
        torch.optim.SGD(filter(lambda p: p.requires_grad, pm.parameters()), lr=0.1)
    with pytest.raises(ValueError, match=hint):
        torch.optim.Adam(filter(lambda p: p.requires_grad, pm.parameters()))
    with pytest.raises(ValueError, match=hint):
        cryptgpu.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer got an empty parameter list$"):
        torch.optim.SGD(filter(lambda p: not p.requires_grad, tm.parameters()), lr=0.1)
    assert usable()
    opt = torch.optim.SGD(filter(lambda p: p.requires_grad, pm.train().parameters()), lr=0.1)
    assert len(opt.params) == 4
