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


# ---- finding 1: hand-written attention, -inf beside finite fills ----

T, D = 5, 8
UNIT = 2.0**-16
TRIL = torch.tril(torch.ones(T, T, dtype=torch.float64))
# a left-padded sequence (0 = pad) and a full one: the first rows of the
# padded one see only pads among their causally allowed keys
# (float64, as the scores: a float32 mask's -1e9 absorbs the scores, and
# ours follows the mask's dtype, README)
PAD = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
# the softmax's 3e-4 per weight (test_functions); V is the identity, so the
# output is the weights themselves, plus a few units of 2^-16 for the
# products (scores, weights times V)
W_TOL = 3e-4 + 8 * UNIT


class _Causal(nn.Module):
    """GPT-style attention written by hand: a causal -inf fill (masked_fill,
    torch.where or + triu(-inf)) and a padding mask, additive
    ``(1 - pad) * fill`` or ``masked_fill(pad == 0, fill)``, in either order."""

    def __init__(self, causal, pad_how, fill, pad_first=False, how="method"):
        super().__init__()
        self.causal, self.pad_how, self.fill = causal, pad_how, fill
        self.pad_first, self.how, self.sm = pad_first, how, nn.Softmax(dim=-1)

    def _causal(self, att):
        if self.causal == "masked_fill":
            return att.masked_fill(TRIL == 0, float("-inf"))
        if self.causal == "where":
            return torch.where(TRIL.bool(), att, float("-inf"))
        return att + torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    def _pad(self, att, pad):
        if self.pad_how == "add":
            return att + (1.0 - pad[:, None, :]) * self.fill
        return att.masked_fill(pad[:, None, :] == 0, self.fill)

    def forward(self, q, k, v, pad):
        att = (q @ k.transpose(-1, -2)) / D**0.5
        if self.pad_first:
            att = self._causal(self._pad(att, pad))
        else:
            att = self._pad(self._causal(att), pad)
        if self.how == "F":
            w = torch.nn.functional.softmax(att, dim=-1)
        elif self.how == "module":
            w = self.sm(att)
        else:
            w = att.softmax(-1)
        return w @ v


def _qkv():
    torch.manual_seed(0)
    q, k = torch.randn(2, T, D, dtype=torch.float64), torch.randn(2, T, D, dtype=torch.float64)
    return q, k, torch.eye(T, dtype=torch.float64).expand(2, T, T).contiguous()


def _private_run(m, *xs, pad=PAD):
    pm = cryptgpu.nn.from_pytorch(m, (*xs, pad)).encrypt()
    return pt(pm(*[cryptgpu.cryptensor(x) for x in xs], pad))


@pytest.mark.parametrize("causal", ["masked_fill", "where", "triu"])
@pytest.mark.parametrize("fill", [-1e4, -1e5, -1e9])
def test_causal_minus_inf_beside_additive_padding(session, causal, fill):
    """Probe OX finding 1: torch gives a left-padded row 0 weight 1 on key
    0 and row 1 softmax(s) over keys 0..1; until 2026-12-08 ours put 0.72
    of those rows' weight on future keys (the -inf became -1e4 and tied
    with the padding's fill)."""
    q, k, v = _qkv()
    how = {"masked_fill": "method", "where": "F", "triu": "module"}[causal]
    m = _Causal(causal, "add", fill, how=how)
    got, want = _private_run(m, q, k, v), m(q, k, v, PAD)
    assert (got - want).abs().max() <= W_TOL  # the weights (module constants)


@pytest.mark.parametrize("pad_first", [True, False])
@pytest.mark.parametrize("fill", [-1e4, -1e9])
def test_causal_minus_inf_beside_padding_masked_fill(session, pad_first, fill):
    """Variant 1a: two masked_fills, a finite padding fill and the causal
    -inf, in either order (torch: [1, 0, 0, 0, 0] for row 0 padding first...
    [0.5, 0.5, 0, 0, 0] causal first, the padding fill overwriting the
    -inf); until 2026-12-08 ours gave [0.2] * 5, future keys included."""
    q, k, v = _qkv()
    m = _Causal("masked_fill", "masked_fill", fill, pad_first=pad_first)
    got, want = _private_run(m, q, k, v), m(q, k, v, PAD)
    assert (got - want).abs().max() <= W_TOL  # the weights (module constants)


class _Additive(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("m", mask)

    def forward(self, q, k, v):
        return ((q @ k.transpose(-1, -2)) / 8**0.5 + self.m).softmax(-1) @ v


@pytest.mark.parametrize(
    "row", [[-1e9, -1e4, -1e9, -1e9], [-1e9, -2e4, -1e9, -1e9], [-1e5, -1e4, -1e5, -1e5]]
)
def test_rows_of_two_fill_levels(session, row):
    """Variant 1b: every key filled, at two levels 1e4 or more apart: torch
    weighs only the highest (weight 1 on key 1), as our
    scaled_dot_product_attention with the same mask; until 2026-12-08 the
    hand-written form gave the low keys 0.2 each (at -2e4 all the weight)."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 8, dtype=torch.float64), torch.randn(1, 4, 8, dtype=torch.float64)
    v = torch.eye(4, dtype=torch.float64)[None]
    m = _Additive(torch.tensor([row] * 4, dtype=torch.float64))
    pm = cryptgpu.nn.from_pytorch(m, (q, k, v)).encrypt()
    got = pt(pm(*[cryptgpu.cryptensor(t) for t in (q, k, v)]))
    assert (got - m(q, k, v)).abs().max() <= W_TOL  # the weights (module constants)


class _Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, q, k, v):
        att = (q @ k.transpose(-1, -2)).masked_fill(TRIL == 0, float("-inf"))
        return (att * self.scale).softmax(-1) @ v  # a temperature after the mask


@pytest.mark.parametrize("scale", [1e-3, 1e-4])
def test_scale_after_minus_inf_fill(session, scale):
    """Variant 1c: -inf times a small scale stays -inf in torch; until
    2026-12-08 ours was -1e4 * 1e-4 = -1 and took 0.6 of the row."""
    q, k, v = _qkv()
    q = q * 3
    m = _Scaled(scale)
    pm = cryptgpu.nn.from_pytorch(m, (q, k, v)).encrypt()
    got = pt(pm(*[cryptgpu.cryptensor(t) for t in (q, k, v)]))
    assert (got - m(q, k, v)).abs().max() <= W_TOL  # the weights (module constants)


def test_left_padded_causal_rows_gradient(session):
    """The query's gradient through those rows follows float64 torch's.
    Bound: the softmax's backward is within 3e-4 per score times the
    largest |dL/dW| (g V^T, V the identity: |g|), and dL/dq sums T scores'
    errors times |k| / sqrt(D), plus 8 units for the products."""
    q, k, v = _qkv()
    g = torch.randn(2, T, T, dtype=torch.float64)
    m = _Causal("masked_fill", "add", -1e4)
    pm = cryptgpu.nn.from_pytorch(m, (q, k, v, PAD)).encrypt()
    qs = cryptgpu.cryptensor(q, requires_grad=True)
    (
        pm(qs, cryptgpu.cryptensor(k), cryptgpu.cryptensor(v), PAD) * cryptgpu.cryptensor(g)
    ).sum().backward()
    qt = q.clone().requires_grad_(True)
    (m(qt, k, v, PAD) * g).sum().backward()
    bound = T * k.abs().max().item() / D**0.5 * 3e-4 * g.abs().max().item() + 8 * UNIT
    assert (pt(qs.grad) - qt.grad).abs().max() <= bound
