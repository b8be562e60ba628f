"""User probe OO: data and models owned by different parties.

- run_multiprocess gives each party its own copy of the torch models and
  tensors the function names, as CrypTen's forked processes have: a
  non-owner zeroing "its" dummy copy of a global torch model in place
  silently zeroed the owner's (the threads shared one object);
- a caught EncodingError on the data owner's ``cryptensor(x, src=k)`` leaves
  the multi-party session usable (it ended it for every party);
- parties whose ``requires_grad`` differs (a placeholder that does not
  require grad, src's tensor that does) are told what to check.
"""

import time

import pytest
import torch

import cryptgpu
import cryptgpu as crypten
from conftest import ENC, TRUNC, prod_tol

torch.manual_seed(0)
# the owner's trained model and a tensor of the caller, as module globals
# (CrypTen's tutorials name them in the party function)
NET = torch.nn.Linear(3, 2).double()
DATA = torch.randn(4, 3, dtype=torch.float64)


@pytest.fixture
def caller_session():
    cryptgpu.init(seed=1)
    yield
    cryptgpu.uninit()


def test_a_non_owner_zeroing_its_copy_of_a_global_torch_model_leaves_the_owners(caller_session):
    """Probe OO section 0: each party zeroes nothing but its own copy, as in
    a forked process; party 0's model is encrypted (it was the zeroed one,
    error 1.29, silently, or a misleading ModelStateChanged)."""
    ref = NET(DATA).detach()
    before = [p.detach().clone() for p in NET.parameters()]

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        r = crypten.comm.get().get_rank()
        if r != 0:  # non-owners hold a dummy: wipe their weights
            with torch.no_grad():
                NET.weight.zero_()
                NET.bias.zero_()
        else:
            time.sleep(0.2)  # the others zero first (with shared threads: the owner's)
        pm = crypten.nn.from_pytorch(NET, torch.empty(1, 3)).encrypt(src=0)
        x = crypten.cryptensor(DATA if r == 1 else torch.empty(4, 3), src=1)
        return pm(x).get_plain_text(dtype=torch.float64)

    outs = job()
    # 3 products of encoded inputs (|x| <= 3, |w| <= 1/sqrt(3)) truncated
    # once, plus the bias's encoding
    tol = prod_tol(3, DATA.abs().max().item(), 0.6) + ENC
    for got in outs:
        assert (got - ref).abs().max().item() <= tol
    # the caller's model is as it was (a forked party leaves it so)
    assert all(torch.equal(p, b) for p, b in zip(NET.parameters(), before))


def test_an_in_place_change_of_a_named_torch_tensor_is_each_partys_own(caller_session):
    """``X.mul_(2)`` in every party doubles each party's copy once (it
    multiplied one shared tensor three times), and a closure's tensor
    likewise; the caller's tensors are left as they were."""
    x0 = DATA.clone()
    w = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        r = crypten.comm.get().get_rank()
        DATA.mul_(2)
        w.add_(1)
        if r == 0:
            time.sleep(0.2)  # the others' changes come first
        x = crypten.cryptensor(DATA if r == 0 else torch.empty(4, 3), src=0)
        v = crypten.cryptensor(w if r == 0 else torch.empty(3, 1), src=0)
        return x.matmul(v).get_plain_text(dtype=torch.float64)

    outs = job()
    want = (2 * x0) @ (torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 1)
    # 3 products of encoded inputs (|2x| <= 6, |w + 1| <= 2), one truncation
    tol = prod_tol(3, 2 * x0.abs().max().item(), 2.0)
    for got in outs:
        assert (got - want).abs().max().item() <= tol
    assert torch.equal(DATA, x0)
    assert torch.equal(w, torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("nan"), 3e9])
def test_an_owner_catching_an_encoding_error_then_shares_clean_data(bad):
    """Probe OO section 1: the owner's bad value is refused before the
    share starts (nothing sent, no randomness drawn, the session left in
    step); it shares cleaned data and every party goes on. The session
    failed for all three before ("call init() again")."""
    clean = torch.tensor([1.0, -2.5], dtype=torch.float64)

    def job():
        r = cryptgpu.rank()
        data = torch.tensor([1.0, bad]) if r == 0 else torch.empty(2)
        try:
            x = cryptgpu.cryptensor(data, src=0)
        except cryptgpu.EncodingError:  # only the owner reads (and encodes) its data
            assert r == 0
            x = cryptgpu.cryptensor(clean, src=0)
        y = cryptgpu.cryptensor(torch.tensor([0.5, 4.0]) if r == 2 else torch.empty(2), src=2)
        return (x * 2 + x * y).get_plain_text(dtype=torch.float64)

    outs = cryptgpu.spmd.run(job, seed=3, timeout_s=20)
    want = clean * 2 + clean * torch.tensor([0.5, 4.0], dtype=torch.float64)
    # x * 2: twice x's encoding error; x * y: one product (|x| <= 2.5,
    # |y| <= 4) truncated once
    tol = 2 * ENC + prod_tol(1, 2.5, 4.0)
    for got in outs:
        assert (got - want).abs().max().item() <= tol


def test_a_bad_owner_value_not_caught_still_fails_the_others_at_once():
    """The owner's check now comes before the share: an uncaught
    EncodingError ends its program, and its neighbours are told at once
    (spmd.run aborts a failing party's session), not after the timeout."""

    def job():
        d = torch.tensor([float("nan")]) if cryptgpu.rank() == 1 else torch.zeros(1)
        return cryptgpu.cryptensor(d, src=1).get_plain_text()

    t0 = time.monotonic()
    with pytest.raises(cryptgpu.EncodingError):
        cryptgpu.spmd.run(job, seed=1, timeout_s=30)
    assert time.monotonic() - t0 < 10


W = torch.tensor([[0.5], [-1.5]], dtype=torch.float64).requires_grad_(True)
X = torch.tensor([[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0]], dtype=torch.float64)


def test_a_requires_grad_placeholder_mismatch_names_requires_grad():
    """Probe OO section 3: requires_grad is each party's own argument's; the
    owner's True and a placeholder's False run different protocols. The
    out-of-step error now says to check requires_grad (it said only "the
    same program on the same shapes")."""

    def job():
        r = cryptgpu.rank()
        w = cryptgpu.cryptensor(W if r == 0 else torch.empty(2, 1), src=0)
        x = cryptgpu.cryptensor(X if r == 1 else torch.empty(3, 2), src=1)
        loss = x.matmul(w).square().sum()
        loss.backward()
        return w.grad.get_plain_text()

    with pytest.raises(cryptgpu.PeerError, match="requires_grad"):
        cryptgpu.spmd.run(job, seed=1, timeout_s=20)


def test_requires_grad_given_alike_on_every_party_trains():
    """The documented way: ``requires_grad=True`` on every party."""

    def job():
        r = cryptgpu.rank()
        w = cryptgpu.cryptensor(W if r == 0 else torch.empty(2, 1), src=0, requires_grad=True)
        x = cryptgpu.cryptensor(X if r == 1 else torch.empty(3, 2), src=1)
        x.matmul(w).square().sum().backward()
        return w.grad.get_plain_text(dtype=torch.float64)

    w = W.detach().clone().requires_grad_(True)
    (X @ w).square().sum().backward()
    # d/dw = 2 X^T (X w): a matmul (2 terms, |x| <= 3, |w| <= 1.5), a
    # product by 2 and a matmul (3 terms, |x| <= 3, |Xw| <= 4.5) with
    # the first's error carried through |x| <= 3 for 3 rows
    e1 = prod_tol(2, 3.0, 1.5)
    tol = 2 * (prod_tol(3, 3.0, 4.5) + 3 * 3.0 * e1) + TRUNC
    for got in cryptgpu.spmd.run(job, seed=1, timeout_s=20):
        assert (got - w.grad).abs().max().item() <= tol


def test_with_broadcast_size_requires_grad_comes_from_src():
    """With ``broadcast_size=True`` src's shape is sent, and its
    requires_grad now rides in the same word (no extra round): the
    placeholders' own (False) no longer decide it (an out-of-step
    PeerError before)."""

    def job():
        r = cryptgpu.rank()
        w = cryptgpu.cryptensor(W if r == 0 else torch.empty(0), src=0, broadcast_size=True)
        x = cryptgpu.cryptensor(X if r == 1 else torch.empty(3, 2), src=1)
        x.matmul(w).square().sum().backward()
        return w.requires_grad, w.grad.get_plain_text(dtype=torch.float64)

    w = W.detach().clone().requires_grad_(True)
    (X @ w).square().sum().backward()
    e1 = prod_tol(2, 3.0, 1.5)  # as in the test above
    tol = 2 * (prod_tol(3, 3.0, 4.5) + 3 * 3.0 * e1) + TRUNC
    for flag, got in cryptgpu.spmd.run(job, seed=1, timeout_s=20):
        assert flag
        assert (got - w.grad).abs().max().item() <= tol
