"""GroupNorm, InstanceNorm2d, AdaptiveMaxPool2d and nearest-neighbour
Upsample / F.interpolate, converted from PyTorch and called directly,
against float64 torch: inference and one backward pass.

Tolerances (f = 16): the normalisation's private statistics are LayerNorm's
(within 1e-4 relative of the inverse std, test_transformer), so a
normalised value (|xhat| < 3 here) is within 3e-4 plus a few units; the
affine scales (below 1.5) and a conv of 18 products carry it; the final
linear has row sums below 2. Upsampling and max pooling copy or select
values exactly.
"""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, assert_close, prod_tol, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 4, 3, padding=1)
        self.gn = tnn.GroupNorm(2, 4)
        self.inorm = tnn.InstanceNorm2d(4, affine=True)
        self.up = tnn.Upsample(scale_factor=2)
        self.pool = tnn.AdaptiveMaxPool2d(1)
        self.fc = tnn.Linear(4, 3)

    def forward(self, x):
        y = F.relu(self.gn(self.conv(x)))
        y = self.inorm(self.up(y)) + F.interpolate(y, scale_factor=2)
        return self.fc(self.pool(y).flatten(1))


def test_group_instance_norm_upsample_and_global_max(session):
    torch.manual_seed(0)
    m = Net().double()
    with torch.no_grad():
        m.gn.weight.uniform_(0.5, 1.5)
        m.inorm.weight.uniform_(0.5, 1.5)
        m.inorm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    norm = 3 * 1e-4 + 8 * 2.0**-16  # one normalised value
    conv = prod_tol(18, 4, 0.4)
    # conv error through a normalisation (divided by a std above 0.2 here),
    # two normalisations and their scales, then the linear's row sum
    tol = 2 * (1.5 * (conv / 0.2 + norm) * 1.5 + norm) * 1.5
    cm = cryptgpu.nn.from_pytorch(m.eval(), x).encrypt()
    assert_close(pt(cm(cryptgpu.cryptensor(x))), m(x).detach(), tol)
    cm = cryptgpu.nn.from_pytorch(m.train(), x).encrypt().train()
    y = torch.tensor([0, 2])
    cryptgpu.nn.CrossEntropyLoss()(cm(cryptgpu.cryptensor(x)), y).backward()
    F.cross_entropy(m(x), y).backward()
    for p, w in zip(cm.parameters(), m.parameters()):
        # gradients: the same chain backwards on an output gradient below
        # 1/2 (a mean over 2 samples of softmax - onehot), softmax's 3e-4
        assert_close(pt(p.grad), w.grad, 0.5 * tol + 3e-4)


def test_direct_forms(session, rng):
    a = torch.rand(2, 3, 2, 2, generator=rng, dtype=torch.float64) * 4 - 2
    e = cryptgpu.cryptensor(a)
    assert_close(pt(F.interpolate(e, size=(4, 6))), F.interpolate(a, size=(4, 6)), ENC)
    assert_close(pt(F.adaptive_max_pool2d(e, 1)), F.adaptive_max_pool2d(a, 1), ENC)
    assert_close(pt(e.repeat_interleave(2, 1)), a.repeat_interleave(2, 1), ENC)
    assert_close(pt(e.repeat_interleave(3)), a.repeat_interleave(3), ENC)
    gn = cryptgpu.nn.GroupNorm(3, 3)
    assert_close(pt(gn(e)), F.group_norm(a, 3), 3 * 1e-4 + 8 * 2.0**-16)


@pytest.mark.parametrize(
    "shape,size,kw",
    [
        ((2, 6, 4, 4), 5, {}),
        ((2, 5, 7), 3, {"alpha": 0.01, "beta": 0.5, "k": 2.0}),
        ((1, 4, 3, 3), 2, {"alpha": 1.0, "beta": 0.75, "k": 1.0}),
        ((1, 3, 2, 2, 2), 4, {}),
    ],
)
def test_local_response_norm(session, shape, size, kw):
    """F.local_response_norm and nn.LocalResponseNorm (refused until
    2026-12-05: AlexNet's original normalisation), forward and backward.
    Tolerance: d^-beta is 2^(-beta log2 d), the log within about 1e-4
    absolute (so beta ln2 1e-4 < 1e-4 relative after exp2) and exp2 within
    2^-14 relative plus a few units; the squares and the window sum stay
    within a few units of d >= k; the product by |x| <= 4 adds a
    truncation: 1e-3 relative plus 8 units of 2^-16 bounds the output;
    the backward composes the derivatives of the same approximations,
    each as precise, times |x| and the output gradient (< 1): 2e-3."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 8 - 4
    xt = x.clone().requires_grad_()
    want = F.local_response_norm(xt, size, **kw)
    sx = cryptgpu.cryptensor(x, requires_grad=True)
    got = cryptgpu.nn.LocalResponseNorm(size, **kw)(sx)
    err = (pt(got) - want.detach()).abs()
    assert (err <= 1e-3 * want.detach().abs() + 8 * 2.0**-16).all(), err.max()
    w = torch.rand(shape, generator=g, dtype=torch.float64)
    (got * w).sum().backward()
    (want * w).sum().backward()
    assert_close(pt(sx.grad), xt.grad, 2e-3)


def test_local_response_norm_converts_and_checks_as_torch(session):
    """A conv then LocalResponseNorm converts; a 2-D input raises torch's
    ValueError and the session goes on. Tolerance: the conv's 27 products
    (prod_tol, inputs below 3, weights below 0.2) carried through a factor
    d^-beta <= 1, plus LRN's own 1e-3 relative of outputs below 4: 5e-3."""
    torch.manual_seed(3)
    m = tnn.Sequential(tnn.Conv2d(3, 6, 3), tnn.LocalResponseNorm(3, alpha=0.1)).double()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 6 - 3
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert_close(pt(pm(cryptgpu.cryptensor(x))), m(x).detach(), 5e-3)
    with pytest.raises(ValueError, match="3D or higher"):
        F.local_response_norm(cryptgpu.cryptensor(torch.ones(2, 3)), 2)
    assert usable()


def test_local_response_norm_keeps_relative_precision_where_d_is_large(session):
    """x times d^-beta held d^-beta to a few units of 2^-16: at alpha = 1
    and |x| ~ 100 (d^-beta ~ 1e-3) it was 3% off; x / d^beta is the
    private division, within 1e-3 relative plus a few units (tolerance as
    test_local_response_norm's)."""
    x = torch.tensor([[[[200.0]], [[-80.0]], [[30.0]], [[-150.0]]]], dtype=torch.float64)
    want = F.local_response_norm(x, 1, 1.0, 0.75, 1.0)
    got = pt(F.local_response_norm(cryptgpu.cryptensor(x), 1, 1.0, 0.75, 1.0))
    assert ((got - want).abs() <= 1e-3 * want.abs() + 8 * 2.0**-16).all(), (got, want)


@pytest.mark.parametrize("dims", [1, 2])
def test_instance_norm_unbatched_input_and_torchs_ranks(session, dims):
    """InstanceNorm1d/2d were one class, a GroupNorm reading every input
    as [N, C, *]: an unbatched [C, H, W] (or [C, L]) input was normalised
    over the wrong axes (0.83 off torch; InstanceNorm1d's rows all 0),
    and a 5-D input ran. Now torch's: the unbatched input as a batch of
    one, and ValueError for other ranks (the session goes on)."""
    torch.manual_seed(4)
    tcls = tnn.InstanceNorm1d if dims == 1 else tnn.InstanceNorm2d
    spatial = (5,) if dims == 1 else (3, 5)
    x = torch.randn(3, *spatial, dtype=torch.float64) * 2 + 1
    for affine in (False, True):
        m = tnn.Sequential(tcls(3, affine=affine)).double().eval()
        if affine:
            with torch.no_grad():
                m[0].weight.uniform_(0.5, 1.5)
                m[0].bias.uniform_(-0.5, 0.5)
        pm = cryptgpu.nn.from_pytorch(m, x[None]).encrypt()
        assert isinstance(pm[0], cryptgpu.nn.layers_extra.InstanceNorm)
        # one normalised value (|xhat| < 3): 1e-4 relative of the inverse
        # std plus a few units of 2^-16, times an affine scale below 1.5
        tol = 1.5 * (3 * 1e-4 + 8 * 2.0**-16)
        for inp in (x, x[None]):  # unbatched and batched
            assert_close(pt(pm(cryptgpu.cryptensor(inp))), m(inp).detach(), tol)
    direct = (cryptgpu.nn.InstanceNorm1d if dims == 1 else cryptgpu.nn.InstanceNorm2d)(3)
    assert_close(pt(direct(cryptgpu.cryptensor(x))), F.instance_norm(x[None])[0], tol)
    for bad in (x[0], x[None, None]):  # one rank too few, one too many
        with pytest.raises(ValueError, match=rf"expected {dims + 1}D or {dims + 2}D input"):
            m(bad)
        with pytest.raises(ValueError, match=rf"expected {dims + 1}D or {dims + 2}D input"):
            pm(cryptgpu.cryptensor(bad))
    assert usable()


class _FunctionalNorm(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(4, 4, 1)
        self.w = tnn.Parameter(torch.linspace(0.5, 1.5, 4))

    def forward(self, x):
        h = F.instance_norm(self.conv(x), weight=self.w, bias=-self.w)
        return F.channel_shuffle(h, 2) + F.instance_norm(x)


def test_functional_instance_norm_and_channel_shuffle_convert(session):
    """F.instance_norm and F.channel_shuffle raised "unsupported function"
    in a converted forward (their layers converted). Tolerance: the conv's
    4 products (|x| < 4, |w| < 0.5) divided by an instance std above 0.2,
    plus one normalised value (1e-4 relative of |xhat| < 3 and a few
    units), times the weight (< 1.5), and the second normalisation's."""
    torch.manual_seed(2)
    m = _FunctionalNorm().double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    norm = 3 * 1e-4 + 8 * 2.0**-16
    tol = 1.5 * (prod_tol(4, 4, 0.5) / 0.2 + norm) + norm
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert_close(pt(pm(cryptgpu.cryptensor(x))), m(x).detach(), tol)
    e = cryptgpu.cryptensor(x)
    assert_close(pt(F.instance_norm(e)), F.instance_norm(x), norm)  # outside a graph
    with pytest.raises(NotImplementedError, match="running statistics"):
        F.instance_norm(e, torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="more than 1 spatial element"):  # torch's
        F.instance_norm(cryptgpu.cryptensor(torch.ones(2, 4, 1)))
    assert usable()


def _norm_pairs():
    t = tnn
    return {
        "conv2d-instance2d": (
            lambda: t.Sequential(t.Conv2d(2, 3, 3), t.InstanceNorm2d(3, affine=True)),
            (4, 2, 5, 5),
            True,
        ),
        "conv1d-instance1d": (
            lambda: t.Sequential(t.Conv1d(2, 3, 3), t.InstanceNorm1d(3)),
            (4, 2, 9),
            True,
        ),
        "conv2d-groupnorm-per-channel": (
            lambda: t.Sequential(t.Conv2d(2, 4, 3), t.GroupNorm(4, 4)),
            (4, 2, 5, 5),
            True,
        ),
        "conv1d-groupnorm-per-channel": (
            lambda: t.Sequential(t.Conv1d(2, 4, 3), t.GroupNorm(4, 4)),
            (4, 2, 9),
            True,
        ),
        # transposed convolutions (a generator's upsampling blocks)
        "convtranspose2d-batchnorm": (
            lambda: t.Sequential(t.ConvTranspose2d(2, 3, 2, stride=2), t.BatchNorm2d(3)),
            (4, 2, 3, 3),
            True,
        ),
        "convtranspose1d-instance1d": (
            lambda: t.Sequential(t.ConvTranspose1d(2, 3, 3), t.InstanceNorm1d(3)),
            (4, 2, 5),
            True,
        ),
        "convtranspose2d-groups-groupnorm-per-channel": (
            lambda: t.Sequential(t.ConvTranspose2d(2, 4, 3, groups=2), t.GroupNorm(4, 4)),
            (4, 2, 3, 3),
            True,
        ),
        "convtranspose2d-groupnorm-2-per-group": (
            lambda: t.Sequential(t.ConvTranspose2d(2, 4, 3), t.GroupNorm(2, 4)),
            (4, 2, 3, 3),
            False,
        ),
        # a per-channel shift moves a group's two channels apart: kept
        "conv2d-groupnorm-2-per-group": (
            lambda: t.Sequential(t.Conv2d(2, 4, 3), t.GroupNorm(2, 4)),
            (4, 2, 5, 5),
            False,
        ),
        # [N, F] into InstanceNorm1d is an unbatched [C, L]: the bias is along L
        "linear-instance1d": (
            lambda: t.Sequential(t.Linear(3, 5), t.InstanceNorm1d(4)),
            (4, 3),
            False,
        ),
        # a 3-D input to InstanceNorm2d is unbatched [C, H, W]: channels are H
        "conv1d-instance2d": (
            lambda: t.Sequential(t.Conv1d(2, 3, 3), t.InstanceNorm2d(4)),
            (4, 2, 9),
            False,
        ),
        # unbatched: the conv does not mark its bias per channel (as before
        # a BatchNorm: shift_bias's rule), so its noise stays, within tol
        "unbatched-conv2d-instance2d": (
            lambda: t.Sequential(t.Conv2d(2, 3, 3), t.InstanceNorm2d(3)),
            (2, 5, 5),
            False,
        ),
        "conv2d-layernorm": (
            lambda: t.Sequential(t.Conv2d(2, 3, 3), t.LayerNorm([3, 3, 3])),
            (4, 2, 5, 5),
            False,
        ),
    }


@pytest.mark.parametrize("case", list(_norm_pairs()))
def test_a_bias_an_instance_norm_cancels_gets_an_exactly_zero_gradient(session, case):
    """A conv's bias straight before an InstanceNorm (instance statistics)
    or a GroupNorm of one channel per group (a transposed conv's also before
    a training BatchNorm, fixed 2026-12-05) is a per-channel shift the norm
    removes: torch's gradient is ~1e-15, ours was fixed-point noise, which
    Adam scales to full steps (0.025 off torch after 3 steps at lr 0.01).
    Now exactly 0, as before a training BatchNorm; the pairings that do
    not cancel the bias (groups of several channels, a Linear's [N, F] or
    a 3-D input read as unbatched by the norm, LayerNorm) keep theirs."""
    make, shape, cancelled = _norm_pairs()[case]
    torch.manual_seed(6)
    tm = make().double().train()
    x = torch.randn(shape, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(tm, x).encrypt().train()
    w = torch.randn(tm(x).shape, dtype=torch.float64)
    if not cancelled:
        (pm(cryptgpu.cryptensor(x)) * w).sum().backward()
        (tm(x) * w).sum().backward()
        got, want = pt(pm[0].bias.grad), tm[0].bias.grad
        # a sum over <= 98 positions of the norm's input gradient: 1e-4
        # relative (the inverse std's, carried once) plus 64 units of 2^-16
        # (each position's few truncations, |w| < 4)
        assert_close(got, want, 1e-4 * float(want.abs().max()) + 64 * 2.0**-16)
        return
    topt = torch.optim.Adam(tm.parameters(), lr=0.01)
    popt = cryptgpu.optim.Adam(pm.parameters(), lr=0.01)
    for _ in range(3):
        topt.zero_grad()
        popt.zero_grad()
        (pm(cryptgpu.cryptensor(x)) * w).sum().backward()
        (tm(x) * w).sum().backward()
        assert bool((pt(pm[0].bias.grad) == 0).all())
        topt.step()
        popt.step()
    # torch's gradient ~1e-15 moves its bias by Adam's g / (|g| + eps) ~ 1e-7
    # of lr; ours stays put: within the bias's encoding (ENC) of torch's
    assert_close(pt(pm[0].bias), tm[0].bias.detach(), ENC + 1e-8)


@pytest.mark.parametrize(
    "layers,shape",
    [
        (("Conv2d", (2, 3, 3)), (4, 2, 5, 5)),
        (("ConvTranspose2d", (2, 3, 2, 2)), (4, 2, 3, 3)),
        (("Linear", (3, 5)), (4, 3)),
    ],
)
@pytest.mark.parametrize("norm", ["BatchNorm", "InstanceNorm2d"])
def test_a_built_sequential_zeroes_a_bias_its_norm_cancels(session, layers, shape, norm):
    """Built directly as cryptgpu.nn.Sequential(Conv2d, BatchNorm2d), the
    conv's bias got fixed-point noise as its gradient (Adam: 0.05 off
    torch's after 5 steps, a user probe's GAN), where the same model
    converted got exactly 0. A Sequential pairs neighbours as the
    conversion pairs graph nodes; a norm in eval mode with running
    statistics does not cancel the bias, and it keeps its gradient."""
    name, args = layers
    if norm == "InstanceNorm2d" and name == "Linear":
        pytest.skip("a Linear's [N, F] into InstanceNorm is unbatched: no cancel (tested above)")
    width = args[1]
    nname = f"BatchNorm{1 if name == 'Linear' else 2}d" if norm == "BatchNorm" else norm
    torch.manual_seed(8)
    tm = tnn.Sequential(getattr(tnn, name)(*args), getattr(tnn, nname)(width)).double()
    ours = cryptgpu.nn.Sequential(
        getattr(cryptgpu.nn, name)(*args), getattr(cryptgpu.nn, nname)(width)
    )
    ours.load_state_dict(tm.state_dict())
    ours.encrypt().train()
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(tm.eval()(x).shape, dtype=torch.float64)  # no running-stat update
    tm.train()
    (ours(cryptgpu.cryptensor(x)) * w).sum().backward()
    (tm(x) * w).sum().backward()
    assert bool((pt(ours[0].bias.grad) == 0).all())  # torch's: ~1e-16
    assert float(tm[0].bias.grad.abs().max()) < 1e-9
    if norm == "BatchNorm":  # eval mode, running statistics: the bias counts
        ours.zero_grad()
        tm.zero_grad()
        ours[1].eval()
        tm[1].eval()
        (ours(cryptgpu.cryptensor(x)) * w).sum().backward()
        (tm(x) * w).sum().backward()
        # a sum over <= 144 positions of w / sqrt(var + eps) (|w| < 4, the
        # running variance near 1): one unit of 2^-16 each times |w|, plus
        # ENC (measured 1.5e-4 at most)
        assert_close(pt(ours[0].bias.grad), tm[0].bias.grad, 144 * 4 * 2.0**-16 + ENC)
