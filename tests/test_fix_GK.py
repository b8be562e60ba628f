"""LayerNorm, RMSNorm and BatchNorm's statistics at large deviations
(probe OX, finding 2): once a row's variance (RMSNorm: mean square) passed
2^22 at f = 16 the chunked sums of squares reached the inverse square
root's top (2^30) and wrapped beyond 2^31, and the outputs were silent
garbage (-7e6 for +-1 at a std of 4000; RMSNorm of a row of 3000 gave
3.6e6 for 1), inside README's per-element bound (|x - mean| up to 2^13
in rows of 16), and ``init(check_range=True)`` did not see it. The
statistics now also take the deviations divided by 2^6, which hold every
|x - mean| below 2^17; beyond, check_range raises.

Tolerances (f = 16, ULP = 2^-16), forward: the range-reduced 1/sqrt is
within 1e-4 relative (functions.ratio_inv_sqrt), times |xhat|; r =
2^14 / std is held to 2^-16 absolute, 2^-30 std relative, times |xhat|;
each input's encoding (ENC) and the mean's rounding (one ULP) over the
std, twice; xhat's own truncation and the affine's product, 2 ULP."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def forward_tol(x, dims, want):
    """The module docstring's bound for a normalisation of x over dims."""
    sd = x.std(dims, unbiased=False).min().item()
    big = x.std(dims, unbiased=False).max().item()
    top = want.abs().max().item()
    return (1e-4 + 2.0**-30 * big) * top + 2 * (2 * ENC + ULP) / sd + 2 * ULP


def rows(n, scale, gen):
    """Rows of n at |x - mean| = scale (+-scale alternating), a random row
    of std scale, and a row of unit values beside one deviation of scale."""
    alt = torch.tensor([1.0, -1.0] * (n // 2), dtype=D) * scale
    rnd = torch.randn(n, generator=gen, dtype=D)
    rnd = (rnd - rnd.mean()) / rnd.std(unbiased=False) * scale + 7.0
    one = torch.randn(n, generator=gen, dtype=D)
    one[3] = scale
    return torch.stack([alt, rnd, one])


@pytest.mark.parametrize(
    "n,scale",
    # README's old per-element bounds (2^13 from 16 elements, 2^14 from 64,
    # 2^15 from 256) reached by every element of a row, and 3000 / 2^16
    [(16, 3000.0), (16, 8000.0), (64, 16000.0), (256, 32000.0), (32, 65536.0)],
)
def test_layernorm_forward_and_backward_at_large_deviations(session, n, scale):
    """F.layer_norm with a weight and bias against float64 torch, forward
    and input/weight gradients (the old code: garbage beyond a variance of
    2^22 or so, here 2^23 to 2^32). Input gradient: dx = inv / n (n dxhat -
    sum dxhat - xhat sum(dxhat xhat)) with inv = 1/std held to 2^-16 plus
    1e-4 relative, the bracket's terms from xhat's errors (each within the
    forward's tol) over n, sum(dxhat xhat) carrying n |dxhat| tol and
    xhat up to sqrt(n) times it: (2^-16 + 1e-4 / sd) |bracket| / n +
    inv (2 + sqrt(n)) |dxhat| tol, plus 4 ULP of truncations."""
    gen = torch.Generator().manual_seed(5)
    x = rows(n, scale, gen)
    w = torch.randn(n, generator=gen, dtype=D)
    b = torch.randn(n, generator=gen, dtype=D)
    g = torch.randn(x.shape, generator=gen, dtype=D)
    xt, wt = x.clone().requires_grad_(), w.clone().requires_grad_()
    want = F.layer_norm(xt, (n,), wt, b)
    (want * g).sum().backward()
    sx = cryptgpu.cryptensor(x, requires_grad=True)
    sw = cryptgpu.cryptensor(w, requires_grad=True)
    got = F.layer_norm(sx, (n,), sw, cryptgpu.cryptensor(b))
    tol = forward_tol(x, -1, F.layer_norm(x, (n,)))
    # times |w| (the affine) plus its product's truncation
    assert (opened(got) - want.detach()).abs().max() <= tol * w.abs().max() + ULP
    (got * cryptgpu.cryptensor(g)).sum().backward()
    sd = x.std(-1, unbiased=False, keepdim=True)
    xhat = (x - x.mean(-1, keepdim=True)) / sd
    dxhat = g * w
    bracket = n * dxhat - dxhat.sum(-1, keepdim=True) - xhat * (dxhat * xhat).sum(-1, keepdim=True)
    tol_g = (2.0**-16 + 1e-4 / sd.min()) * bracket.abs().max() / n
    tol_g = tol_g + (2 + n**0.5) * dxhat.abs().max() * tol / sd.min() + 4 * ULP
    assert (opened(sx.grad) - xt.grad).abs().max() <= tol_g
    # the weight's gradient: sum over the rows of g xhat, each within tol
    assert (opened(sw.grad) - wt.grad).abs().max() <= x.shape[0] * g.abs().max() * tol + ULP


@pytest.mark.parametrize("value", [3000.0, 5000.0, 30000.0, 100000.0])
def test_rmsnorm_of_large_rows(session, value):
    """nn.RMSNorm converted, and F.rms_norm, on rows of a constant 3000 to
    1e5 (mean square 9e6 to 1e10; the old code: 3.6e6, -1.5, garbage) and
    on a random row whose largest |x| is that value (inside the bound,
    2^17): within the forward's bound (the mean square in place of the
    variance)."""
    gen = torch.Generator().manual_seed(6)
    r = torch.randn(16, generator=gen, dtype=D)
    x = torch.stack([torch.full((16,), value, dtype=D), r / r.abs().max() * value])
    m = tnn.RMSNorm(16).double()
    pm = cryptgpu.nn.from_pytorch(tnn.Sequential(m), x).encrypt()
    want = m(x).detach()
    rms = x.pow(2).mean(-1).sqrt().min().item()
    tol = (1e-4 + 2.0**-30 * value * 2) * want.abs().max().item() + 4 * ENC / rms + 2 * ULP
    assert (opened(pm(cryptgpu.cryptensor(x))) - want).abs().max() <= tol
    got = F.rms_norm(cryptgpu.cryptensor(x), (16,))
    assert (opened(got) - F.rms_norm(x, (16,))).abs().max() <= tol


def test_batchnorm_training_at_a_large_variance(session):
    """BatchNorm2d in training shares the statistics: a batch whose channel
    std is 5000 (variance 2.5e7 > 2^24, over 128 values a channel: their
    sum of squares passed 2^31) was garbage; now within the forward's
    bound, the running variance within 1e-4 relative plus its encoding."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(8, 2, 4, 4, generator=gen, dtype=D) * 5000
    m = tnn.BatchNorm2d(2).double().train()
    pm = cryptgpu.nn.from_pytorch(tnn.BatchNorm2d(2).double().train(), x[:1])
    pm.encrypt().train()
    got = opened(pm(cryptgpu.cryptensor(x)))
    want = m(x).detach()
    assert (got - want).abs().max() <= forward_tol(x, (0, 2, 3), want)
    rv = opened(pm.state_dict()["running_var"])
    assert (rv - m.running_var).abs().max() <= 1e-4 * m.running_var.max().item() + 1.0


def test_check_range_refuses_deviations_beyond_the_bound(session):
    """With check_range on, a LayerNorm (converted) or RMSNorm row whose
    |x - mean| reaches 2^17 raises FixedPointOverflowError (a RuntimeError)
    instead of garbage (the old code returned -7e6 at 4000 with the check
    on); just inside, the result is right; the session stays usable."""
    cryptgpu.init(seed=0, check_range=True)
    m = tnn.LayerNorm(16).double()
    pm = cryptgpu.nn.from_pytorch(tnn.Sequential(m), torch.zeros(1, 16, dtype=D)).encrypt()
    base = torch.tensor([[1.0, -1.0] * 8], dtype=D)
    inside = opened(pm(cryptgpu.cryptensor(base * 120000.0)))
    # the forward's bound at std 1.2e5, |xhat| = 1
    assert (inside - base).abs().max() <= 1e-4 + 2.0**-30 * 120000.0 + 2 * ULP
    for bad in (base * 140000.0, base * 1e6 + 3.0):
        with pytest.raises(cryptgpu.nn.FixedPointOverflowError, match="2\\^17"):
            pm(cryptgpu.cryptensor(bad))
    with pytest.raises(RuntimeError, match="x - mean"):
        F.rms_norm(cryptgpu.cryptensor(torch.full((2, 16), 2.0e5, dtype=D)), (16,))
    assert usable()
