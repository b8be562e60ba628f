"""Parties whose programs differ only in a local step or a public constant
are out of step at their next message (the session's history digest,
runtime/history.rs, rides in every message's step tag).

A user probe ran three processes whose programs differed in a step that
sends no message: party 1's model used Sigmoid where the others' used
Tanh, party 2 computed ``x.flip(0) * x`` or built the same-shaped [4, 2]
as ``x.reshape(2, 4).t()``, party 0 multiplied by 2.5 where the others
multiplied by 3.5, or party 0 shared from src 0 where the others shared
from src 1. The parties exchanged the same messages with the same step
tags and every one printed the same garbage (1e14 for the src case) with
exit status 0. Now each such party raises PeerError at its next message,
saying that the operations or public constants differ.

The parties run in ``cryptgpu.spmd.run`` (one single-party session per
thread, each with its own digest, as in separate processes); each party
catches its own error so that the test sees every party's outcome.
"""

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import prod_tol

D = torch.float64


def _outcome(fn):
    """Each party's (kind, value): ("ok", plaintext result) or ("PeerError",
    message)."""

    def party():
        try:
            return "ok", fn(cryptgpu.rank()).double()
        except cryptgpu.PeerError as e:
            return "PeerError", str(e)

    return cryptgpu.spmd.run(party, seed=5, timeout_s=20)


X = torch.arange(1.0, 9.0, dtype=D)


def _x():
    return cryptgpu.cryptensor(X, src=0)


def _net(r):
    torch.manual_seed(0)  # each party thread has its own generator: alike here
    act = tnn.Sigmoid() if r == 1 else tnn.Tanh()
    return tnn.Sequential(tnn.Linear(10, 16), act, tnn.Linear(16, 4))


def _inputs():
    return torch.randn(3, 10, generator=torch.Generator().manual_seed(1))


def _tanh_or_sigmoid(r):
    m = cryptgpu.nn.from_pytorch(_net(r), torch.empty(1, 10)).encrypt(src=0)
    x = cryptgpu.cryptensor(_inputs() if r == 1 else torch.empty(3, 10), src=1)
    return m(x).get_plain_text()


def _flip(r):
    x = _x()
    return (x.flip(0) * x if r == 2 else x * x).get_plain_text()


def _reshape_t(r):
    x = _x()
    a = x.reshape(2, 4).t() if r == 2 else x.reshape(4, 2)
    return (a @ a.t()).get_plain_text()


def _constant(r):
    return (_x() * (2.5 if r == 0 else 3.5)).get_plain_text()


def _src(r):
    x = cryptgpu.cryptensor(torch.full((8,), float(r)), src=0 if r == 0 else 1)
    return (x * 2).get_plain_text()


def _threshold(r):
    # a comparison threshold: x < 3 on party 1, x < 4 on the others
    return (_x() < (3.0 if r == 1 else 4.0)).get_plain_text()


def _pow2_constant(r):
    # 0.06 and 0.03, both below 1/4: the second is encoded with one more
    # fractional bit, so both are the same ring word (a user probe, all
    # three parties opened 1e13 and exited 0 until the digest noted the bits)
    return (_x() * (0.06 if r == 1 else 0.03)).get_plain_text()


def _mixed_factor(r):
    # a factor of mixed magnitudes (two steps, per-entry bits): [1e-5, c, 1]
    c = 0.2 if r == 1 else 0.1
    return (_x()[:3] * torch.tensor([1e-5, c, 1.0], dtype=D)).get_plain_text()


def _lr(r):
    # SGD's lr 0.2 on one party, 0.1 on the others: weights of 1e14
    w = cryptgpu.cryptensor(X[:4].clone(), src=0, requires_grad=True)
    opt = cryptgpu.optim.SGD([w], lr=0.2 if r == 1 else 0.1)
    (w * w).sum().backward()
    opt.step()
    return w.get_plain_text()


def _own_net(r):
    return _net(r).double()(_inputs().double()).detach()


def _own_reshape(r):
    a = X.reshape(2, 4).t() if r == 2 else X.reshape(4, 2)
    return a @ a.t()


# case: (each party's program, what that program computes in plaintext
# (float64), the parties that printed garbage before: they must raise)
CASES = {
    "tanh_vs_sigmoid": (_tanh_or_sigmoid, _own_net, {0, 1, 2}),
    "flip": (_flip, lambda r: X.flip(0) * X if r == 2 else X * X, {0, 1, 2}),
    "reshape_t": (_reshape_t, _own_reshape, {0, 1, 2}),
    "constant": (_constant, lambda r: X * (2.5 if r == 0 else 3.5), {0, 1, 2}),
    # party 0 shares its 0s from src 0, parties 1 and 2 party 1's 1s: party
    # 0 opened 1e14 (party 1 raised); party 2 may open its own program's 2s
    "src": (_src, lambda r: torch.full((8,), 0.0 if r == 0 else 2.0, dtype=D), {0, 1}),
    "pow2_constant": (_pow2_constant, lambda r: X * (0.06 if r == 1 else 0.03), {0, 1, 2}),
    "mixed_factor": (
        _mixed_factor,
        lambda r: X[:3] * torch.tensor([1e-5, 0.2 if r == 1 else 0.1, 1.0], dtype=D),
        {0, 1, 2},
    ),
    "lr": (_lr, lambda r: X[:4] * (1 - 2 * (0.2 if r == 1 else 0.1)), {0, 1, 2}),
    "threshold": (_threshold, lambda r: (X < (3.0 if r == 1 else 4.0)).double(), {0, 1, 2}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_local_step_or_public_constant_that_differs_is_caught(case):
    fn, own, must_raise = CASES[case]
    out = _outcome(fn)
    # No party opens garbage: a party that returns a value returns what its
    # own program computes, and the parties that opened garbage before
    # raise PeerError (out of step) at once. Tolerance (f = 16): the Tanh or
    # Sigmoid approximation's 4e-3 (tests/test_activations.py) times the
    # second Linear's sum of |w| <= 16 * 0.25, about 2e-2; the other cases
    # are products of small integers, within a truncation (2^-16) of them.
    for r, (kind, got) in enumerate(out):
        if kind == "ok":
            assert r not in must_raise, out
            assert (got - own(r)).abs().max().item() <= 2e-2, (r, got, own(r))
    assert any(k == "PeerError" and "out of step" in m for k, m in out), out


def test_the_message_names_the_local_steps_not_another_operation():
    """Same operation, same round, another history: the error says that
    what the parties did before differs, not that one is in another
    operation (both are in the same multiplication)."""
    out = _outcome(_flip)
    msgs = [m for k, m in out if k == "PeerError" and "the operations or public constants" in m]
    assert msgs, out
    assert "a local step (reshape, view, flip, transpose, slicing, indexing)" in msgs[0]
    assert "both are in 'mul'" in msgs[0]


def test_the_same_program_with_party_specific_placeholders_and_seeds_agrees():
    """What may differ between parties does not enter the digest: the
    values a non-src party passes to ``cryptensor`` and to ``encrypt``
    (placeholder models of other random weights), and each party's own
    torch seed under a training step with dropout (its masks come from
    the parties' joint coin, not from a party's own generator)."""
    torch.manual_seed(1)
    owner = tnn.Sequential(tnn.Linear(6, 8), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(8, 2))
    x_plain = torch.randn(4, 6)
    target = torch.randn(4, 2)

    def party():
        r = cryptgpu.rank()
        torch.manual_seed(100 + r)  # another seed on each party
        net = (
            owner
            if r == 0
            else tnn.Sequential(tnn.Linear(6, 8), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(8, 2))
        )
        m = cryptgpu.nn.from_pytorch(net, torch.empty(1, 6)).encrypt(src=0)
        x = cryptgpu.cryptensor(x_plain if r == 1 else torch.randn(4, 6), src=1)
        m.eval()
        pred = m(x).get_plain_text(dtype=D)
        m.train()
        loss = cryptgpu.nn.MSELoss()(m(x), cryptgpu.cryptensor(target, src=2))
        opt = cryptgpu.optim.SGD(m.parameters(), lr=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w = [p.get_plain_text(dtype=D) for p in m.parameters()]
        return pred, w

    out = cryptgpu.spmd.run(party, seed=9, timeout_s=30)
    want = owner.double().eval()(x_plain.double())
    # Linear 6 -> 8 and 8 -> 2 with |x|, |w| <= 3: prod_tol per layer, the
    # first layer's error carried by the second's 8 weights (<= 1 each)
    tol = 8 * prod_tol(6, 3.0, 1.0) + prod_tol(8, 10.0, 1.0)
    for pred, w in out:
        assert (pred - want).abs().max().item() <= tol
        # every party holds the same updated parameters (one set of masks)
        for a, b in zip(w, out[0][1]):
            assert torch.equal(a, b)


def test_src_data_that_requires_grad_beside_placeholders_that_do_not_agree():
    """Only src's data requires grad (the others pass ``torch.empty``): the
    default "auto" mode then picks the exact truncation on src alone,
    which the digest noted, so a correct program (a local add, then a
    reveal) raised PeerError (a review). The mode is not in the digest;
    every party opens x + 1 exactly (one encoding of integers: exact)."""

    def prog(r):
        d = torch.arange(4.0, dtype=D).requires_grad_() if r == 0 else torch.empty(4, dtype=D)
        x = cryptgpu.cryptensor(d, src=0)
        return (x + 1).get_plain_text()

    got = _outcome(prog)
    assert all(kind == "ok" for kind, _ in got), got
    for _, value in got:
        assert torch.equal(value, torch.arange(1.0, 5.0, dtype=D))
