"""Fixes GJ (probe OX): transformer layers with an activation module that
no converter table knows (nn.Tanh(), nn.Sigmoid(), a user module such as
CLIP's QuickGELU, traced); hand-written attention whose rows mix -inf (or
fills that float64 torch's softmax weighs exactly 0) with finite fills near
-1e4, against float64 torch.

Tolerances (f = 16): a softmax row is within 3e-4 per weight
(test_functions); tanh and sigmoid within 2e-4 (test_functions), as GELU
in test_transformer; a layer's attention and feed-forward errors reach the
output through row sums of |W| below 4 and are renormalised by the next
LayerNorm: 4e-3, the bound test_transformer derives for one layer.
"""

import pytest
import torch
import torch.nn as nn

import cryptgpu

E, H = 16, 4


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class QuickGELU(nn.Module):
    """CLIP's activation: a user module, traced."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid, QuickGELU])
@pytest.mark.parametrize("decoder", [False, True])
def test_transformer_layer_with_activation_module(session, act, decoder):
    """torch runs these; until 2026-12-08 conversion raised
    NotImplementedError (and the conversion check of a decoder layer ran
    ReLU: torch's deepcopy of the layer swaps a module activation for
    F.relu)."""
    torch.manual_seed(4)
    kind = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    m = kind(E, H, 32, 0.0, activation=act(), batch_first=True).double().eval()
    x = torch.randn(2, 5, E, dtype=torch.float64)
    xs = (x, x.flip(1)) if decoder else (x,)
    pm = cryptgpu.nn.from_pytorch(m, xs).encrypt()
    got = pt(pm(*[cryptgpu.cryptensor(t) for t in xs]))
    want = m(*xs).detach()
    assert (got - want).abs().max() <= 4e-3  # one layer's bound (module docstring)


def test_layer_built_directly_with_user_activation(session):
    """cryptgpu.nn.TransformerEncoderLayer with torch's arguments and a
    user activation module: torch's weights under the same seed, and its
    output."""
    torch.manual_seed(5)
    ours = cryptgpu.nn.TransformerEncoderLayer(E, H, 32, 0.0, activation=QuickGELU())
    torch.manual_seed(5)
    theirs = nn.TransformerEncoderLayer(E, H, 32, 0.0, activation=QuickGELU()).double().eval()
    x = torch.randn(5, 2, E, dtype=torch.float64)
    got = pt(ours.encrypt().eval()(cryptgpu.cryptensor(x)))
    assert (got - theirs(x).detach()).abs().max() <= 4e-3  # one layer's bound (module docstring)
