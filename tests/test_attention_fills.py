"""Hand-written additive attention masks in a converted forward (a row
masked everywhere by a finite fill) and the module names of a bare torch
transformer module converted on its own, against float64 torch.

Tolerances (f = 16): a softmax row is within 3e-4 per weight
(test_functions); the attention output is the weights times V, so a row
of S keys is within S * 3e-4 * max|V| plus 8 units of 2^-16 for the
products on the way (V's projection, the scores, the weighted sum).
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cryptgpu

S, D = 5, 8
UNIT = 2.0**-16


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class _Att(nn.Module):
    """BERT-style extended mask written by hand: (1 - mask) * fill added to
    the scores, then a softmax (as a method, F.softmax or nn.Softmax)."""

    def __init__(self, fill, how="method"):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.fill, self.how, self.sm = fill, how, nn.Softmax(dim=-1)

    def forward(self, x, mask):
        if self.fill == float("-inf"):
            ext = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(mask == 0, self.fill)
            ext = ext[:, None, :]
        else:
            ext = (1.0 - mask[:, None, :].to(x.dtype)) * self.fill
        att = self.q(x) @ self.k(x).transpose(-1, -2) / D**0.5
        if self.how == "F":
            w = F.softmax(ext + att, dim=-1)
        elif self.how == "module":
            w = self.sm(att + ext)
        else:
            w = (att + ext).softmax(-1)
        return w @ self.v(x)


def _tol(m, x) -> float:
    vmax = m.v(x).abs().max().item()
    return S * 3e-4 * vmax + 8 * UNIT


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("fill", [-1e9, -1e5])
@pytest.mark.parametrize("how", ["method", "F", "module"])
def test_fully_masked_row_by_finite_fill_keeps_its_scores_in_float64(
    session, float64_default, fill, how
):
    """A sequence padded everywhere, masked by ``s + (1 - mask) * fill``:
    float64 torch keeps the score differences (spacing 1e-7 at 1e9), so the
    row weighs its keys by softmax(s), as our MultiheadAttention does for
    the same fill. Until 2026-12-07 every score became -1e4: equal weights,
    0.16 off at -1e9 (0.5 at -1e5)."""
    torch.manual_seed(32)
    m = _Att(fill, how)
    x = torch.randn(2, S, D)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    pm = cryptgpu.nn.from_pytorch(m, (x, torch.ones(2, S, dtype=torch.long))).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x), mask))
    want = m(x, mask).detach()
    tol = _tol(m, x)  # S * 3e-4 * max|V| + 8 units of 2^-16 (module docstring)
    assert (got[0] - want[0]).abs().max() <= tol  # partly masked: as before
    assert (got[1] - want[1]).abs().max() <= tol  # masked everywhere (failed before: 0.16)


def test_fully_masked_row_gradient_follows_float64_torch(session, float64_default):
    """The input's gradient through a row masked everywhere by -1e9: torch's
    ``s + fill`` passes it to every score of the row, ours too."""
    torch.manual_seed(5)
    m = _Att(-1e9)
    x = torch.randn(2, S, D)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    pm = cryptgpu.nn.from_pytorch(m, (x, torch.ones(2, S, dtype=torch.long))).encrypt()
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    pm(xs, mask).sum().backward()
    xt = x.clone().requires_grad_(True)
    m(xt, mask).sum().backward()
    # the softmax's backward is within 3e-4 per weight too, reaching x through
    # the q, k and v projections (row sums of |W| below 3 at D = 8, one
    # truncation each): 3 * the forward's bound per projection
    bound = 3 * max(m.q.weight.abs().sum(0).max().item(), 1.0) * _tol(m, x)
    assert (pt(xs.grad)[1] - xt.grad[1]).abs().max() <= bound  # failed before: 0.4


@pytest.mark.parametrize("fill", ["min", float("-inf")])
def test_fully_masked_row_by_absorbing_fill_weighs_equally(session, float64_default, fill):
    """A fill that absorbs the scores (the dtype's minimum: torch's
    ``s + min`` is min) gives equal weights, the mean of V, as torch; -inf
    gives the same where torch gives NaN (README)."""
    torch.manual_seed(3)
    value = torch.finfo(torch.float64).min if fill == "min" else fill
    m = _Att(value)
    x = torch.randn(2, S, D)
    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
    pm = cryptgpu.nn.from_pytorch(m, (x, torch.ones(2, S, dtype=torch.long))).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x), mask))
    want = m(x, mask).detach()
    tol = _tol(m, x)  # S * 3e-4 * max|V| + 8 units of 2^-16 (module docstring)
    assert (got[0] - want[0]).abs().max() <= tol
    mean_v = m.v(x)[1].mean(0).detach().expand(S, D)
    assert (got[1] - mean_v).abs().max() <= tol
    if fill == "min":
        assert (got[1] - want[1]).abs().max() <= tol


def test_float32_model_fill_absorbs_scores_as_float32_torch(session):
    """In a float32 model, torch's ``s + (-1e9)`` absorbs the scores
    (spacing 64 at 1e9): a row masked everywhere weighs equally; ours
    follows the model's dtype (the mask built by ``mask.to(x.dtype)``)."""
    torch.manual_seed(32)
    m = _Att(-1e9).float()
    x = torch.randn(2, S, D)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    pm = cryptgpu.nn.from_pytorch(m, (x, torch.ones(2, S, dtype=torch.long))).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x), mask))
    want = m(x, mask).detach().double()
    # float32 torch's own rounding (1e-7 relative) adds nothing at this scale
    assert (got - want).abs().max() <= _tol(m.double(), x.double())


_X = torch.randn(2, 5, 8, dtype=torch.float64)


def _bare_cases():
    enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    gelu = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, activation=nn.GELU())
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, norm_first=True)
    return [
        ("mha", nn.MultiheadAttention(8, 2, batch_first=True), (_X, _X, _X)),
        ("encoder_layer", enc, (_X,)),
        ("encoder_layer_gelu_module", gelu, (_X,)),
        ("encoder", nn.TransformerEncoder(enc, 2, norm=nn.LayerNorm(8)), (_X,)),
        ("decoder", nn.TransformerDecoder(dec, 2), (_X, _X)),
        ("transformer", nn.Transformer(8, 2, 1, 1, 16, batch_first=True), (_X, _X)),
        ("lstm", nn.LSTM(8, 4, batch_first=True), (_X,)),
    ]


@pytest.mark.parametrize("case", range(len(_bare_cases())))
def test_bare_module_names_are_torchs(session, case):
    """A bare torch transformer (or recurrent) module converted on its
    own: named_modules, named_children, children, modules and get_submodule
    as torch's (until 2026-12-07 an extra "m." level: ['', 'm', 'm.layers',
    ...]); parameters, state_dict, output and training unchanged."""
    torch.manual_seed(case)
    _, tm, xs = _bare_cases()[case]
    tm = tm.double().eval()
    pm = cryptgpu.nn.from_pytorch(tm, xs if len(xs) > 1 else xs[0])
    names = [n for n, _ in tm.named_modules()]
    assert [n for n, _ in pm.named_modules()] == names  # failed before: ['', 'm', ...]
    assert [n for n, _ in pm.named_children()] == [n for n, _ in tm.named_children()]
    assert len(list(pm.children())) == len(list(tm.children()))
    assert len(list(pm.modules())) == len(list(tm.modules()))
    assert [n for n, _ in pm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert list(pm.state_dict()) == list(tm.state_dict())
    ours = dict(pm.named_modules())
    for n in names[1:]:
        assert pm.get_submodule(n) is ours[n]  # (failed before: AttributeError)
    pm.encrypt()
    out = pm(*(cryptgpu.cryptensor(t) for t in xs))
    want = tm(*xs)
    got, want = (out[0], want[0]) if isinstance(want, tuple) else (out, want)
    # attention, LayerNorm and the feed-forward block at unit scale: the
    # softmax's 3e-4 per weight over 5 keys times |V| below 3, through
    # out_proj and LayerNorm (test_transformer's bounds), below 1e-3
    assert (pt(got) - want.detach()).abs().max() <= 1e-3
    pm.train()
    assert all(m.training for m in pm.modules())
    assert all(p.requires_grad for p in pm.parameters())
    pm.eval()
    assert not any(m.training for m in pm.modules())


def test_bare_encoder_layers_by_attribute_and_in_a_model(session):
    """``pm.layers[0]`` of a bare encoder is its first layer (callable
    alone, as torch's); the same layers inside a model keep torch's names."""
    torch.manual_seed(7)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2).double().eval()
    pm = cryptgpu.nn.from_pytorch(enc, _X).encrypt()
    assert pm.get_submodule("layers.0.self_attn") is pm.layers[0].self_attn
    got = pt(pm.layers[0](cryptgpu.cryptensor(_X)))
    # one encoder layer: as in test_bare_module_names_are_torchs, below 1e-3
    assert (got - enc.layers[0](_X).detach()).abs().max() <= 1e-3

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.enc = enc

        def forward(self, x):
            return self.enc(self.attn(x, x, x)[0])

    tm = Model().double().eval()
    pm = cryptgpu.nn.from_pytorch(tm, _X)
    assert [n for n, _ in pm.named_modules()] == [n for n, _ in tm.named_modules()]
