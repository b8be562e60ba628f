"""What probe KA (the CrypTen tutorials ported to cryptgpu) found: under
``run_multiprocess`` / ``spmd.run`` a party that found the others out of
step told no one, so the two others waited on each other for the whole
timeout (60 s) and the caller got a timeout that named a live party; NumPy
float32 hyperparameters (``lr``, ``weight_decay``, ``alpha``) were a
TypeError where torch takes them. Each test fails on the code before its
fix.
"""

import time

import numpy as np
import pytest
import torch

import cryptgpu
import cryptgpu.communicator as comm
import cryptgpu.mpc as mpc
from conftest import ENC, usable

D = torch.float64


def test_out_of_step_reaches_every_party_at_once(session):
    """Only party 0 runs an extra barrier: party 1 finds it out of step at
    once; parties 0 and 2, waiting on each other, now hear of it within
    the local transport's 20 ms poll (was: the whole timeout, here 20 s),
    and the caller gets party 1's finding, not a timeout."""

    def step():
        if comm.get().get_rank() == 0:
            comm.get().barrier()  # the program's bug
        return cryptgpu.cryptensor(torch.ones(2), src=0).get_plain_text()

    for run in (
        lambda: cryptgpu.spmd.run(step, timeout_s=20),
        mpc.run_multiprocess(world_size=3)(step),  # the session's timeout: conftest's
    ):
        t = time.monotonic()
        try:
            run()
            raised = None
        except cryptgpu.PeerError as e:
            raised = e
        took = time.monotonic() - t
        assert raised is not None and "out of step" in str(raised), raised
        assert took < 10, took  # far below a 20 s timeout (a loaded 2-core machine: seconds)
    assert usable()


def test_numpy_float32_hyperparameters_as_torch(session):
    """torch takes np.float32 for lr, weight_decay and alpha; the step and
    the sum are the same as with Python floats (0.5 and 2 are exact)."""
    w = cryptgpu.cryptensor(torch.ones(2, dtype=D), requires_grad=True)
    got = w.add(torch.ones(2, dtype=D), alpha=np.float32(2)).get_plain_text(dtype=D)
    assert torch.equal(got, torch.full((2,), 3.0, dtype=D))
    opt = cryptgpu.optim.SGD([w], lr=np.float32(0.5), momentum=0.9, weight_decay=np.float32(0))
    (w * w).sum().backward()  # gradient 2 w = 2
    opt.step()
    # 1 - 0.5 * 2 = 0: the product's truncation, within ENC
    assert (w.get_plain_text(dtype=D)).abs().max() <= 2 * ENC
    assert isinstance(cryptgpu.optim.Adam([w], lr=np.float32(0.1)).param_groups[0]["lr"], float)


def test_a_placeholder_of_another_shape_is_named_in_the_hint(session):
    """Bob's labels (4, 2), the others' placeholder (4,): out of step in
    'share', with a hint naming the placeholder's shape and broadcast_size
    (it named only shared modules, which are not involved)."""

    @mpc.run_multiprocess(world_size=3)
    def share_labels():
        labels = torch.eye(2)[torch.tensor([0, 1, 1, 0])]
        y = labels if comm.get().get_rank() == 1 else torch.empty(4)
        return cryptgpu.cryptensor(y, src=1).get_plain_text()

    try:
        share_labels()
        raised = None
    except cryptgpu.PeerError as e:
        raised = str(e)
    assert raised is not None and "src's shape" in raised and "broadcast_size=True" in raised
    assert usable()


def test_a_float_dim_is_torchs_type_error_with_its_words(session):
    """x.sum(dim=1.0): TypeError, as torch's, naming the argument (it said
    "object of type 'float' has no len()")."""
    x = cryptgpu.cryptensor(torch.ones(3, 4))
    for reduce in (x.sum, x.mean):
        with pytest.raises(TypeError, match=r"invalid combination of arguments - got \(dim=float"):
            reduce(dim=1.0)
    with pytest.raises(TypeError):
        torch.ones(3, 4).sum(dim=1.0)  # torch's own
    assert x.sum(dim=torch.tensor(1)).shape == (3,)  # a 0-d integer tensor is an int dim
    assert usable()
