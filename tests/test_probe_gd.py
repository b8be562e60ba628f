"""What a model-zoo probe (GD) found different from torch in converted
models: BatchNorm (also folded into its conv), GroupNorm and InstanceNorm
taking inputs torch refuses, argmax / max(dim).indices inside a forward
giving CrypTen's one-hot where torch gives integer indices, softmax without
a dim, torch layers and functions refused though their parts convert
(Softshrink, RReLU, PairwiseDistance, Bilinear, linalg.vector_norm,
var_mean, std_mean, F.one_hot of public ids) and F.batch_norm's advice in
training. Each test fails on the code before its fix. Tolerances follow
conftest's model (ENC, TRUNC, prod_tol) and are derived next to each
assertion.
"""

import copy
import warnings

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, prod_tol, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def _torch_error(model, x):
    """The exception torch's ``model`` raises on ``x`` (None if it runs)."""
    try:
        model(x)
    except Exception as e:  # noqa: BLE001 - whatever torch raises is the reference
        return e
    return None


def _stats(bn):
    """Running statistics far from the defaults (a folded BN then matters)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(bn.num_features, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return bn


@pytest.mark.parametrize(
    "layer, good, bad",
    [
        (tnn.BatchNorm1d, (2, 3), [(3,), (2, 3, 4, 1)]),
        (tnn.BatchNorm2d, (2, 3, 4, 4), [(3, 4, 4), (2, 3, 4, 4, 1)]),
        (tnn.BatchNorm3d, (2, 3, 2, 2, 2), [(3, 2, 2, 2)]),
    ],
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_converted_batchnorm_refuses_the_ranks_torch_refuses(session, layer, good, bad, mode):
    """A converted BatchNorm1d took an unbatched [C] input as a batch of one
    in eval mode (and raised IndexError in training), and 4-D inputs;
    BatchNorm2d an unbatched image went to an unrelated ShapeError, and a
    5-D input through. Torch's ValueError and message now, in both modes,
    before any work; the session stays usable. (BatchNorm3d was refused as
    an unsupported layer: it converts now, its values below.)"""
    m = _stats(layer(3)).double()
    p = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.zeros(good, dtype=D))
    p.encrypt(src=0)
    getattr(p, mode)()
    getattr(m, mode)()
    for shape in bad:
        x = torch.randn(shape, dtype=D)
        want = _torch_error(m, x)
        assert isinstance(want, ValueError)
        with pytest.raises(ValueError) as got:
            p(cryptgpu.cryptensor(x))
        assert str(got.value) == str(want)  # "expected 4D input (got 3D input)"
        assert usable()
    # the channels: torch's RuntimeError (a ShapeError from the product before)
    wrong = (good[0], 4) + good[2:]
    want = _torch_error(m, torch.randn(wrong, dtype=D))
    with pytest.raises(RuntimeError, match="running_mean should contain 4 elements not 3"):
        p(cryptgpu.cryptensor(torch.randn(wrong, dtype=D)))
    assert "running_mean should contain 4 elements not 3" in str(want)
    assert usable()
    # a right input as before; eval: x * scale + shift, one product of |x| <= 4
    # by |scale| <= 1.5 plus the shift's encoding; training: the batch
    # statistics' tolerance of test_layers (std 1: 8 ENC + 3 |x - mean| ULP + 1e-4)
    x = torch.randn(good, generator=torch.Generator().manual_seed(1), dtype=D).clamp(-4, 4)
    tol = prod_tol(1, 4, 1.5) + ENC if mode == "eval" else 8 * ENC + 3 * 8 * 2.0**-16 + 1e-4
    assert (opened(p(cryptgpu.cryptensor(x))) - m(x).detach()).abs().max() <= tol


def test_a_batchnorm_folded_into_its_conv_still_refuses_an_unbatched_image(session):
    """With BatchNorm2d folded into the Conv2d before it (eval mode), an
    unbatched [3, 8, 8] image went through the conv (torch's conv takes
    it) and failed only at the Linear, with an unrelated ShapeError, where
    torch's BatchNorm raises ValueError. The folded conv keeps the check."""
    torch.manual_seed(0)
    m = tnn.Sequential(
        tnn.Conv2d(3, 4, 3),
        _stats(tnn.BatchNorm2d(4)),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(144, 2),
    ).eval()
    p = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.zeros(2, 3, 8, 8))
    p.encrypt(src=0)
    assert p._folded == {"1": "0"}  # folded indeed
    x = torch.randn(3, 8, 8)
    want = _torch_error(m, x)
    with pytest.raises(ValueError) as got:
        p(cryptgpu.cryptensor(x))
    assert str(got.value) == str(want) == "expected 4D input (got 3D input)"
    assert usable()
    out = p(cryptgpu.cryptensor(x[None]))
    assert out.shape == (1, 2)


def test_group_norm_and_instance_norm_refuse_as_torch(session):
    """GroupNorm of a 1-D input raised IndexError (torch: RuntimeError),
    one of the wrong channel count a ShapeError about a reshape; an
    unbatched InstanceNorm1d input of the wrong channel count named dim=1
    (torch: dim=0). Torch's types and messages now."""
    cases = [
        (tnn.GroupNorm(2, 4), (4,)),
        (tnn.GroupNorm(2, 4), (2, 6, 3)),
        (tnn.GroupNorm(2, 4), (2, 3, 3)),
        (tnn.InstanceNorm1d(4, affine=True), (5, 3)),
    ]
    for m, shape in cases:
        m = m.double()
        shape_in = (2, 4, 3)
        p = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.zeros(shape_in, dtype=D))
        p.encrypt(src=0)
        x = torch.randn(shape, dtype=D)
        want = _torch_error(m, x)
        with pytest.raises(type(want)) as got:
            p(cryptgpu.cryptensor(x))
        assert str(got.value) == str(want)
        assert usable()


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape", [(4, 6), (3, 4, 6), (6,)])
def test_softmax_without_dim_follows_torchs_legacy_dim_with_its_warning(session, fn, shape):
    """F.softmax(x) / F.log_softmax(x) without dim converted, then raised
    TypeError ("give dim") at the first private call, where nn.Softmax()
    and F.softmin(x) followed torch's legacy choice (dim 0 for 0-, 1- and
    3-D inputs, else 1). All follow it now, with torch's warning: in a
    converted forward, on a SharedTensor, and in the nn.Softmax() layer."""
    name = fn.__name__

    class Fn(tnn.Module):
        def forward(self, x):
            return fn(x)

    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=D)
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
        want = fn(x)
    # softmax: functions.py's documented 3e-4 absolute; log_softmax: its
    # log over the sum's octaves adds test_functions' 8x, within 2.4e-3
    tol = 3e-4 if fn is F.softmax else 8 * 3e-4
    layer = tnn.Softmax() if fn is F.softmax else tnn.LogSoftmax()
    for model in (Fn(), tnn.Sequential(tnn.Identity(), layer)):
        p = cryptgpu.nn.from_pytorch(model).encrypt(src=0)
        with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
            got = opened(p(cryptgpu.cryptensor(x)))
        assert (got - want).abs().max() <= tol
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
        got = opened(fn(cryptgpu.cryptensor(x)))
    assert (got - want).abs().max() <= tol
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        got = opened(F.softmin(cryptgpu.cryptensor(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (got - F.softmin(x)).abs().max() <= 3e-4  # softmax of -x
