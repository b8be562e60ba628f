"""Probe MB (2026-12-07: autoencoders, GANs, metric learning, sequence
models): ``F.normalize``'s ``eps`` was ignored (a row shorter than eps was
scaled to length 1; torch divides by max(||x||, eps)); ``x.new(x.size())``
shared the sizes as data (the old VAE example's noise), ``x.new(3, 4)``
said "src must be 0, 1 or 2"; a helper recursing into what is not a
torch.Tensor (word_language_model's ``repackage_hidden``) ended in a bare
"iteration over a 0-d tensor"."""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, usable

D = torch.float64


@pytest.mark.parametrize("eps", [1.0, 0.1])
def test_normalize_takes_eps_as_torch(session, eps):
    x = torch.tensor([[0.03, 0.04], [3.0, 4.0], [0.5, 0.0], [1.2, -1.6]], dtype=D)
    w = torch.arange(8.0, dtype=D).reshape(4, 2)
    s = cryptgpu.cryptensor(x, requires_grad=True)
    got = F.normalize(s, dim=1, eps=eps)
    (got * w).sum().backward()
    t = x.clone().requires_grad_()
    want = F.normalize(t, dim=1, eps=eps)
    (want * w).sum().backward()
    # long rows: unit's 1e-4 relative plus two units; short rows: x's
    # encoding times 1/eps (an integer factor here: exact) plus a unit
    tol = max(1e-4 + 4 * ENC, ENC / eps + 2 * ENC)
    assert (got.get_plain_text(dtype=D) - want.detach()).abs().max() <= tol
    # gradients: unit's backward (1e-4 relative of |w| / ||x|| <= 7 / 0.5 =
    # 14: 1.4e-3 plus units) for long rows, w / eps exactly scaled for short
    assert (s.grad.get_plain_text(dtype=D) - t.grad).abs().max() <= 1.5e-3


def test_new_with_sizes_is_torchs_new_empty(session):
    std = cryptgpu.cryptensor(torch.rand(3, 4, dtype=D) + 0.5)
    eps = std.new(std.size()).normal_()  # the old VAE example's noise: public
    assert isinstance(eps, torch.Tensor) and eps.shape == (3, 4)
    assert std.new(3, 4).shape == (3, 4)
    # CrypTen's form stays: data (a list, a tensor, one number) shared
    assert torch.equal(
        std.new([1.0, 2.0]).get_plain_text(dtype=D), torch.tensor([1.0, 2.0], dtype=D)
    )
    assert std.new(torch.tensor([5.0]), src=1).get_plain_text().item() == 5.0
    assert usable()


def test_recursing_into_a_shared_tensor_says_why(session):
    def repackage_hidden(h):  # pytorch/examples word_language_model
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    with pytest.raises(TypeError, match="iteration over a 0-d tensor.*repackage_hidden"):
        repackage_hidden((cryptgpu.cryptensor(torch.ones(2, 3)),))
    assert usable()


def test_normalize_eps_on_long_rows_of_large_elements():
    """eps's test squared x under the session's truncation: in "auto" a
    square of elements near 2000 could fail and make a long row "short",
    x / eps, 2e5 off (review, 2026-12-07); x is clamped to +-eps first.
    Rows of elements up to 30000 (below unit's 2^15; norms far above eps):
    unit's bound (58 of 200 rows were wrong before)."""
    cryptgpu.init(seed=2)
    try:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand((200, 16), generator=g, dtype=D) * 2 - 1) * 30000
        got = F.normalize(cryptgpu.cryptensor(x), dim=1, eps=0.01).get_plain_text(dtype=D)
        # unit's 1e-4 relative (of values up to 1) plus two units
        assert (got - F.normalize(x, dim=1, eps=0.01)).abs().max() <= 1e-4 + 4 * ENC
    finally:
        cryptgpu.uninit()
