"""Fixes of the thirtieth session (2026-12-07) that came from its own
known-defect list rather than a probe.

- ``register_parameter`` over a child's or a buffer's name, and
  ``register_module`` over a parameter's or a buffer's name, replaced
  them silently (a buffer and a child's parameters under one name in
  ``state_dict()``); torch raises KeyError. Assignment (``m.fc = p``)
  still replaces, as torch's ``__setattr__`` does.
"""

import math

import pytest
import torch

import cryptgpu.nn as cnn
from conftest import ULP, usable
from cryptgpu import cryptensor


def _tables(m):
    return (
        list(dict(m.named_parameters())),
        list(dict(m.named_children())),
        list(dict(m.named_buffers())),
        sorted(m.state_dict()),
    )


def _build(lib):
    m = lib.Module()
    m.fc = lib.Linear(2, 2)
    m.register_buffer("b", torch.zeros(2))
    m.w = torch.nn.Parameter(torch.ones(2))
    return m


@pytest.mark.parametrize(
    "call",
    [
        lambda m, lib: m.register_parameter("fc", torch.nn.Parameter(torch.ones(1))),
        lambda m, lib: m.register_parameter("b", torch.nn.Parameter(torch.ones(1))),
        lambda m, lib: m.register_module("w", lib.Linear(1, 1)),
        lambda m, lib: m.register_module("b", lib.Linear(1, 1)),
    ],
)
def test_register_over_another_kind_of_entry_is_refused(session, call):
    with pytest.raises(KeyError, match="already exists"):
        call(_build(torch.nn), torch.nn)  # torch's behaviour, for reference
    m = _build(cnn)
    before = _tables(m)
    with pytest.raises(KeyError, match="already exists"):
        call(m, cnn)
    assert _tables(m) == before  # nothing replaced
    assert usable()


def test_assignment_still_replaces_as_torch(session):
    got = []
    for lib in (torch.nn, cnn):
        m = _build(lib)
        m.fc = torch.nn.Parameter(torch.ones(3))  # a child replaced by a parameter
        m.b = lib.Linear(1, 1)  # a buffer replaced by a child
        got.append(_tables(m))
    assert got[0] == got[1]


def test_a_stuck_party_is_named_on_the_threaded_runtime():
    """spmd.run (and run_multiprocess) with party 2 busy in its own code
    past the timeout: the error said "party 0 got no answer from party 1"
    (alive, itself waiting on party 2) in 3 of 3 runs of probe OO; the
    party that times out now tells its other neighbour at once, which
    names party 2 in turn."""
    import time

    import cryptgpu

    def job():
        x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), src=0)
        if cryptgpu.rank() == 2:
            time.sleep(4)  # stuck past the 1 s timeout
        return (x * x).get_plain_text()

    for _ in range(3):
        with pytest.raises(cryptgpu.PeerError) as got:
            cryptgpu.spmd.run(job, timeout_s=1)
        assert "no answer from party 2" in str(got.value), str(got.value)
        assert "in the middle of the session" in str(got.value), str(got.value)


def test_add_module_over_a_tensor_and_a_module_over_a_parameter_as_torch(session):
    """A review of the first fix: ``add_module`` over a buffer still left a
    buffer and a child's parameters under one name in ``state_dict()``,
    and a module assigned over a parameter replaced it; torch raises
    KeyError and TypeError."""
    for lib in (torch.nn, cnn):
        m = lib.Module()
        m.register_buffer("y", torch.zeros(2))
        m.w = torch.nn.Parameter(torch.zeros(2))
        with pytest.raises(KeyError, match="already exists"):
            m.add_module("y", lib.Linear(2, 2))
        with pytest.raises(KeyError, match="already exists"):
            m.add_module("w", lib.Linear(2, 2))
        with pytest.raises(TypeError, match="as parameter 'w'"):
            m.w = lib.Linear(2, 2)
        assert sorted(m.state_dict()) == ["w", "y"]
    assert usable()


def test_update_bn_on_a_folded_model_changes_nothing(session):
    """A review: update_bn reset every running statistic, then train()
    refused the model (a BatchNorm folded at conversion), leaving an
    unfolded BatchNorm1d at mean 0, variance 1: later outputs moved."""
    from torch.optim import swa_utils

    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),  # folded into the conv (eval conversion)
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
        torch.nn.BatchNorm1d(3),  # not folded
    )
    tm.train()
    for _ in range(3):
        tm(torch.randn(4, 1, 4, 4))
    tm.eval()
    m = cnn.from_pytorch(tm, torch.randn(1, 1, 4, 4))
    x = torch.randn(2, 1, 4, 4)
    before = m(x)
    with pytest.raises(RuntimeError, match="folded"):
        swa_utils.update_bn([x], m)
    assert torch.equal(m(x), before)  # plaintext model: nothing changed at all
    assert usable()


@pytest.mark.parametrize(
    "case",
    ["few columns", "fweights 1e6", "aweights 1000", "large aweights", "mixed weights"],
)
def test_cov_with_weights_and_few_columns(session, case):
    """A review of the session's cov: dividing both sides by isqrt(sum of
    weights) made fweights of 1e6 1.3% off, and with few columns (isqrt
    rounding down) a covariance of 1.6e9 wrapped; a product by a large
    weight (aweights 1.5e6) wrapped past 2^31 on the session-start code."""
    torch.manual_seed(0)
    kw: dict = {}
    if case == "few columns":
        x = torch.tensor([[4e4, -4e4, 0.0], [3e4, -3e4, 1.0]], dtype=torch.float64)
    elif case == "fweights 1e6":
        x, kw = torch.randn(2, 100, dtype=torch.float64), {"fweights": torch.full((100,), 10**6)}
    elif case == "aweights 1000":
        x, kw = torch.randn(2, 100, dtype=torch.float64), {"aweights": torch.full((100,), 1e3)}
    elif case == "large aweights":
        x = torch.randn(2, 100, dtype=torch.float64) * 10
        kw = {"aweights": torch.full((100,), 1.5e6 + 0.25, dtype=torch.float64)}
    else:
        x = torch.randn(3, 50, dtype=torch.float64) * 5
        kw = {"fweights": torch.randint(1, 5, (50,)), "aweights": torch.rand(50) + 0.1}
    x = torch.round(x * 2**16) / 2**16  # torch's reference at the encoded input
    ref = torch.cov(x, **kw)
    got = torch.cov(cryptensor(x), **kw).get_plain_text(dtype=torch.float64)
    # each side's deviations within 1 ULP after its division (or 1.5 ULP
    # plus 2^-15 relative after the product by a weight fraction): the sum
    # off by sqrt(n) (max|dev_i| + max|dev_j|) ULP at most, times p q /
    # norm <= ~1.1 here; the weights' fractions add 2^-15 relative, a
    # non-whole norm's factor 2^-16; a few units of truncation
    dev = (x - x.mean(1, keepdim=True)).abs().amax()
    n = x.shape[1]
    bound = 1.1 * math.sqrt(n) * 2 * dev * ULP + 2.0**-14 * ref.abs().max() + 4 * ULP
    assert (got - ref).abs().max().item() <= bound


def test_run_multiprocess_copies_an_optimiser_with_its_model():
    """A review of the session's per-party copies: a torch model named in
    the function was copied for each party, but its optimiser, named
    beside it, stayed shared and stepped the caller's parameters (each
    party's model copy never moved); under CrypTen's fork each party steps
    its own copy once."""
    import cryptgpu as crypten

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w0 = net.weight.detach().clone()
    x = torch.randn(4, 3, dtype=torch.float64)
    crypten.init()
    try:

        @crypten.mpc.run_multiprocess(world_size=3)
        def job():
            opt.zero_grad()
            net(x).sum().backward()
            opt.step()
            return net.weight.detach().clone()

        out = job()
    finally:
        crypten.uninit()
    assert torch.equal(net.weight.detach(), w0)  # the caller's model as it was
    for w in out:  # plaintext float64 steps: exact up to float64 rounding
        assert torch.allclose(w, w0 - 0.1 * x.sum(0), rtol=0, atol=1e-12)


def test_a_caught_encoding_error_with_broadcast_size_keeps_the_parties_in_step():
    """A review of fix GE: with broadcast_size=True the owner sent its shape
    before its values failed to encode, so after a caught EncodingError
    its retry was out of step with the others (waiting for the values);
    the values are now checked before the shape goes out."""
    import cryptgpu

    good = torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.float64)

    def job():
        if cryptgpu.rank() == 0:
            try:
                cryptgpu.cryptensor(torch.tensor([[1.0, float("nan")]]), src=0, broadcast_size=True)
            except ValueError:
                pass  # the owner cleans its data and shares again
            x = cryptgpu.cryptensor(good, src=0, broadcast_size=True)
        else:
            x = cryptgpu.cryptensor(torch.empty(0), src=0, broadcast_size=True)
        return (x * 2).get_plain_text(dtype=torch.float64)

    for got in cryptgpu.spmd.run(job, timeout_s=20):
        # x encoded exactly (multiples of 2^-2), times a whole 2: exact
        assert torch.equal(got, good * 2)


def test_a_shape_sent_with_broadcast_size_is_checked_before_it_sizes_anything():
    """A review: the dimension count src sends for broadcast_size=True sized
    the next message and the placeholder unchecked (a src claiming 2^40
    dims, or a shape larger than the host, made the others allocate it)."""
    import cryptgpu
    from cryptgpu import _session
    from cryptgpu.tensor import broadcast_shape

    def job(shape):
        s = _session.current()
        mine = shape if cryptgpu.rank() == 0 else None
        try:
            broadcast_shape(s, 0, mine)
        except ValueError as e:
            return str(e)
        return "accepted"

    for shape, says in [((1,) * 100, "100 dimensions"), ((2**40, 2**30), "more than this host")]:
        got = cryptgpu.spmd.run(job, shape, timeout_s=20)
        assert all(says in g for g in got[1:]), got  # parties 1 and 2 refuse it
