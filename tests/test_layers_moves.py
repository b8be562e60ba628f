"""torch's data-movement layers on SharedTensors (nn/layers_moves.py): the
padding layers and F.pad modes, pixel and channel shuffles, Unflatten,
Softmax2d, the alpha dropouts in eval mode, convolutions with a non-zero
padding_mode; and, in the conversion, models that cast to float32
themselves.

Data movement is exact: each output element is one input element, so the
private result is within the input's encoding (ENC) of torch's, and the
gradient of a sum is an exact count. A padded conv adds its products'
rounding (conftest.prod_tol over C k k terms).
"""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, prod_tol

D = torch.float64
X4 = torch.randn(2, 8, 6, 6, dtype=D, generator=torch.Generator().manual_seed(0))
X3 = torch.randn(2, 4, 7, dtype=D, generator=torch.Generator().manual_seed(1))

MOVES = [
    (tnn.ZeroPad2d((1, 2, 0, 1)), X4),
    (tnn.ConstantPad2d(1, 3.5), X4),
    (tnn.ReflectionPad2d(2), X4),
    (tnn.ReplicationPad2d((1, 0, 2, 1)), X4),
    (tnn.CircularPad2d(1), X4),
    (tnn.ReflectionPad1d(2), X3),
    (tnn.PixelShuffle(2), X4),
    (tnn.PixelUnshuffle(2), X4),
    (tnn.ChannelShuffle(2), X4),
    (tnn.Unflatten(1, (2, 4)), X4),
    (tnn.AlphaDropout(0.2), X4),
]


@pytest.mark.parametrize("layer,x", MOVES, ids=lambda v: type(v).__name__)
def test_movement_layers_are_exact(session, layer, x):
    """All of these were refused by from_pytorch (not supported)."""
    m = tnn.Sequential(layer).eval()
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    assert got.shape == m(x).shape
    assert (got - m(x)).abs().max() <= ENC


def test_pad_modes_and_their_gradient(session):
    """F.pad(mode="reflect" / "replicate" / "circular") raised
    NotImplementedError; the gradient of a sum counts how often each
    element was copied, exactly."""
    for mode in ("reflect", "replicate", "circular"):
        y = cryptgpu.cryptensor(X4, requires_grad=True)
        F.pad(y, (1, 2, 2, 1), mode=mode).sum().backward()
        xt = X4.clone().requires_grad_()
        F.pad(xt, (1, 2, 2, 1), mode=mode).sum().backward()
        assert torch.equal(y.grad.get_plain_text(dtype=D), xt.grad), mode
        got = F.pad(cryptgpu.cryptensor(X4), (1, 2, 2, 1), mode=mode).get_plain_text(dtype=D)
        assert (got - F.pad(X4, (1, 2, 2, 1), mode=mode)).abs().max() <= ENC


@pytest.mark.parametrize(
    "conv,x",
    [
        (tnn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect"), X4),
        (tnn.Conv2d(8, 3, 3, padding=2, padding_mode="circular", dilation=2), X4),
        (tnn.Conv2d(8, 3, 3, padding="same", padding_mode="replicate"), X4),
        (tnn.Conv1d(4, 2, 3, padding=1, padding_mode="reflect"), X3),
    ],
    ids=["reflect", "circular-dilated", "same-replicate", "conv1d-reflect"],
)
def test_convolutions_with_a_padding_mode(session, conv, x):
    """Conv1d/Conv2d with padding_mode other than "zeros" were refused.
    Same parameter names as torch's; within the products' rounding."""
    m = conv.double()
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert list(pm.state_dict()) == list(m.state_dict())
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    k = m.weight[0].numel()
    tol = prod_tol(k, float(x.abs().max()), float(m.weight.detach().abs().max())) + ENC
    assert (got - m(x).detach()).abs().max() <= tol


def test_softmax2d_alpha_dropout_training_and_pixel_shuffle_function(session):
    m = tnn.Sequential(tnn.Softmax2d())
    got = cryptgpu.nn.from_pytorch(m, X4).encrypt()(cryptgpu.cryptensor(X4))
    # softmax over the 8 channels: within 3e-4 (test_functions)
    assert (got.get_plain_text(dtype=D) - m(X4)).abs().max() <= 3e-4

    class Shuffle(tnn.Module):
        def forward(self, x):
            return F.pixel_shuffle(x, 2) + 1

    p = cryptgpu.nn.from_pytorch(Shuffle(), X4).encrypt()
    assert (p(cryptgpu.cryptensor(X4)).get_plain_text(dtype=D) - Shuffle()(X4)).abs().max() <= ENC
    a = cryptgpu.nn.from_pytorch(tnn.Sequential(tnn.AlphaDropout(0.2)), X4).encrypt().train()
    with pytest.raises(NotImplementedError, match="training mode"):
        a(cryptgpu.cryptensor(X4))


class _CastsItself(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = tnn.Conv2d(4, 6, 3, padding=1), tnn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.conv(x).float().mean((2, 3)))


def test_a_model_casting_to_float32_converts(session):
    """x.float() in a forward made the float64 conversion check fail with
    torch's 'mat1 and mat2 must have the same dtype' (the check now runs
    such a model in float32, within 1e-4). Tolerance: the conv's 36
    products and the Linear's 6 of a mean, inputs below 4.5 and weights
    below 0.5: prod_tol bounds, 1e-3 in all."""
    m = _CastsItself().eval()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert (pm(cryptgpu.cryptensor(x)).get_plain_text() - m(x)).abs().max() <= 1e-3
