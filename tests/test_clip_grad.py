"""cryptgpu.nn.utils.clip_grad_norm_ / clip_grad_value_ on shared gradients,
against torch.nn.utils on the same gradients in float64.

Tolerances (f = 16): each gradient is encoded within ENC = 2^-17; the norm
comes from a dot product and ratio_inv_sqrt (1e-4 relative plus a few
units, functions.py); the derivation of each bound is next to it.
"""

import math

import pytest
import torch

import cryptgpu
from conftest import ENC, ULP, assert_close


def _params(grads):
    """Shared parameters (zeros) holding the given gradients."""
    ps = []
    for g in grads:
        p = cryptgpu.cryptensor(torch.zeros_like(g))
        p.grad = cryptgpu.cryptensor(g)
        ps.append(p)
    return ps


def _torch_clip(grads, max_norm, norm_type):
    ts = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for t, g in zip(ts, grads):
        t.grad = g.clone()
    n = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    return n, [t.grad for t in ts]


@pytest.mark.parametrize(
    "scale,max_norm,norm_type",
    [(1.0, 0.5, 2.0), (0.05, 1.0, 2.0), (40.0, 1.0, 2.0), (3e-3, 1e-3, 2.0), (2.0, 0.3, math.inf)],
)
def test_clip_grad_norm_matches_torch(session, rng, scale, max_norm, norm_type):
    grads = [
        torch.randn(4, 3, generator=rng, dtype=torch.float64) * scale,
        torch.randn(7, generator=rng, dtype=torch.float64) * scale,
    ]
    want_norm, want = _torch_clip(grads, max_norm, norm_type)
    ps = _params(grads)
    norm = cryptgpu.nn.utils.clip_grad_norm_(iter(ps), max_norm, norm_type=norm_type)
    assert isinstance(norm, cryptgpu.SharedTensor) and norm.shape == ()
    got_norm = norm.get_plain_text(dtype=torch.float64)
    # The sum of squares is one dot product: within ULP (its truncation)
    # plus 2 sum|g| ENC (the encodings); that moves the 2-norm by
    # d_sq / (2 norm). The inf norm is one encoded value (ENC). Then the
    # range-reduced inverse square root: 1e-4 relative plus a few units.
    flat = torch.cat([g.reshape(-1) for g in grads])
    d_sq = ULP + 2 * float(flat.abs().sum()) * ENC
    d_norm = d_sq / (2 * float(want_norm)) if norm_type == 2.0 else ENC
    assert_close(got_norm, want_norm, d_norm + 1e-4 * float(want_norm) + 4 * ULP)
    clipped = bool(want_norm > max_norm)
    c = max_norm / float(want_norm) if clipped else 1.0
    for p, w in zip(ps, want):
        got = p.grad.get_plain_text(dtype=torch.float64)
        # g (within ENC) times the factor c: relative d_norm / norm + 1e-4
        # when clipped (the factor carries 14 extra fractional bits), one
        # truncation's ULP on a factor of 1 otherwise, and two truncations
        rel = d_norm / float(want_norm) + 1e-4 if clipped else ULP
        assert_close(got, w, float(w.abs().max()) * rel + c * ENC + 2 * ULP)


def test_clip_grad_value_and_plaintext_and_errors(session, rng):
    g = torch.randn(5, 4, generator=rng, dtype=torch.float64)
    (p,) = _params([g])
    cryptgpu.nn.utils.clip_grad_value_(p, 0.25)
    # clamp is exact on the encoded values: only the encoding error is left
    assert_close(p.grad.get_plain_text(dtype=torch.float64), g.clamp(-0.25, 0.25), ENC)

    # plaintext parameters go to torch's own
    t = torch.zeros(3, requires_grad=True)
    t.grad = torch.tensor([3.0, 4.0, 0.0])
    n = cryptgpu.nn.utils.clip_grad_norm_([t], 1.0)
    assert float(n) == pytest.approx(5.0) and torch.allclose(t.grad, torch.tensor([0.6, 0.8, 0]))

    (q,) = _params([g])
    with pytest.raises(TypeError, match="mix"):
        cryptgpu.nn.utils.clip_grad_norm_([q, t], 1.0)
    with pytest.raises(NotImplementedError, match="norm_type"):
        cryptgpu.nn.utils.clip_grad_norm_([q], 1.0, norm_type=1)
    # the session stays usable and q's gradient untouched
    assert_close(q.grad.get_plain_text(dtype=torch.float64), g, ENC)
    # parameters without gradients are skipped; none at all: a zero norm
    r = cryptgpu.cryptensor(torch.zeros(2))
    assert float(cryptgpu.nn.utils.clip_grad_norm_([r], 1.0)) == 0.0


def test_clipped_training_step_follows_torch(session):
    """The PyTorch habit: loss.backward(), clip_grad_norm_, optimizer.step()."""
    torch.manual_seed(5)
    m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).double()
    x = torch.randn(8, 4, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1])
    pm = cryptgpu.nn.from_pytorch(m, x).train().encrypt()
    opt_t = torch.optim.SGD(m.parameters(), lr=0.5)
    opt_p = cryptgpu.optim.SGD(pm.parameters(), lr=0.5)
    for _ in range(3):
        opt_t.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1)
        opt_t.step()
        opt_p.zero_grad()
        cryptgpu.nn.CrossEntropyLoss()(pm(cryptgpu.cryptensor(x)), y).backward()
        cryptgpu.nn.utils.clip_grad_norm_(pm.parameters(), 0.1)
        opt_p.step()
    # Each step moves a weight by at most lr * max_norm = 0.05, so the
    # private and torch weights agree within the gradients' fixed-point
    # error (a few 1e-5 after a cross-entropy backward) times lr and steps.
    for (_, w), pw in zip(m.named_parameters(), pm.parameters()):
        assert_close(pw.get_plain_text(dtype=torch.float64), w.detach(), 3 * 0.5 * 2e-4 + 8 * ULP)


def test_torch_clip_functions_take_a_private_model(session, rng):
    """The PyTorch habit, torch.nn.utils.clip_grad_norm_(model.parameters(),
    max_norm) on a private model, failed deep in torch's C++ grouping
    routine ("incompatible function arguments"): cryptgpu wraps torch's two
    clipping functions so that shared parameters go to its own, and torch
    tensors to torch's, unchanged. Tolerances as in
    test_clip_grad_norm_matches_torch (a norm of about 3: 1e-4 relative
    plus the encodings' few units)."""
    tm = torch.nn.Linear(4, 3).double()
    pm = cryptgpu.nn.from_pytorch(tm, torch.zeros(1, 4)).encrypt().train()
    x = torch.randn(5, 4, generator=rng, dtype=torch.float64)
    (tm(x) ** 2).sum().backward()
    (pm(cryptgpu.cryptensor(x)) ** 2).sum().backward()
    want = torch.nn.utils.clip_grad_norm_(tm.parameters(), max_norm=0.5)
    got = torch.nn.utils.clip_grad_norm_(pm.parameters(), max_norm=0.5)
    assert isinstance(got, cryptgpu.SharedTensor)
    assert_close(got.get_plain_text(dtype=torch.float64), want, 1e-4 * float(want) + 1e-3)
    for p, q in zip(tm.parameters(), pm.parameters()):
        assert_close(q.grad.get_plain_text(dtype=torch.float64), p.grad, 1e-4 + 4 * ENC)
    torch.nn.utils.clip_grad.clip_grad_value_(pm.parameters(), clip_value=0.05)
    torch.nn.utils.clip_grad_value_(tm.parameters(), clip_value=0.05)
    for p, q in zip(tm.parameters(), pm.parameters()):
        assert_close(q.grad.get_plain_text(dtype=torch.float64), p.grad, 1e-4 + 4 * ENC)
    # torch tensors: torch's own, its result and its errors
    t = torch.zeros(3, requires_grad=True)
    t.grad = torch.tensor([3.0, 4.0, 0.0])
    assert float(torch.nn.utils.clip_grad_norm_(t, 1.0)) == pytest.approx(5.0)
    assert torch.allclose(t.grad, torch.tensor([0.6, 0.8, 0.0]))
    t.grad = torch.tensor([float("nan"), 1.0, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_([t], 1.0, error_if_nonfinite=True)
