"""Conversion of forwards whose operations depend on the module's mode
(``F.dropout(x, p, self.training)``, attention dropout ``p if
self.training else 0``), bare attention layers, ``masked_fill`` with minus
infinity, and the conversion check against torch's fast paths.

Tolerances (f = 16): products of k encoded values within prod_tol; a
softmax within 3e-4 (tests/test_functions.py); dropout's masks are exact
0 or 1/(1 - p) factors.
"""

import warnings

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import assert_close, prod_tol, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class FunctionalDropout(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(8, 8)

    def forward(self, x):
        return F.dropout(self.lin(x), 0.5, self.training)


class AttentionDropout(tnn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = tnn.Linear(8, 24)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        p = 0.5 if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)


@pytest.mark.parametrize("cls", [FunctionalDropout, AttentionDropout])
def test_mode_dependent_dropout_follows_the_converted_models_mode(session, cls):
    """The forward was traced in eval mode only, so self.training was
    frozen at False: private training never dropped (outputs varied by
    1.5e-5 across calls where torch's vary by 3). Now the constants that
    differ between the eval and train traces follow .train()/.eval()."""
    torch.manual_seed(0)
    m = cls().double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    # eval: deterministic and torch's (a linear layer of 8 products of
    # |x| < 4 by |w| < 0.4; the attention's softmax within 3e-4 of values
    # below 3)
    e = pt(pm(cryptgpu.cryptensor(x)))
    assert_close(e, m.eval()(x).detach(), prod_tol(8, 4, 0.4) * 8 + 3e-4 * 3 * 4)
    pm.train()
    a, b = pt(pm(cryptgpu.cryptensor(x))), pt(pm(cryptgpu.cryptensor(x)))
    # two masks of p = 0.5 over 64 values: differing outputs (equal only
    # with probability 2^-64 for the functional form)
    assert (a - b).abs().max() > 0.01
    if cls is FunctionalDropout:
        # every element is dropped (0) or doubled
        kept = (a - 2 * e).abs() <= 4 * prod_tol(8, 4, 0.4) * 8
        assert bool((kept | (a.abs() <= 2.0**-16)).all())
    pm.eval()
    assert_close(pt(pm(cryptgpu.cryptensor(x))), e, 4 * prod_tol(8, 4, 0.4) * 8 + 3e-4 * 3 * 4)


class TrainingBranch(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)

    def forward(self, x):
        if self.training:
            x = x * 2
        return self.lin(x)


def test_a_training_only_branch_warns(session):
    m = TrainingBranch().double()
    with pytest.warns(UserWarning, match="eval mode's operations"):
        cryptgpu.nn.from_pytorch(m, torch.randn(2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cryptgpu.nn.from_pytorch(FunctionalDropout().double(), torch.randn(2, 8))


def test_bare_multihead_attention_converts(session):
    """A bare nn.MultiheadAttention failed to trace (control flow on its
    inputs); it converts whole as the encoder layers do."""
    torch.manual_seed(1)
    mha = tnn.MultiheadAttention(16, 2, batch_first=True).double().eval()
    q = torch.randn(2, 5, 16, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(mha, (q, q, q)).encrypt()
    out, w = pm(cryptgpu.cryptensor(q), cryptgpu.cryptensor(q), cryptgpu.cryptensor(q))
    want, ww = mha(q, q, q)
    # projections of 16 products (|x| < 4, |w| < 0.5) into a softmax (3e-4
    # of values below 8) and the output projection (row sums below 4)
    tol = (prod_tol(16, 4, 0.5) * 16 + 3e-4 * 8) * 4
    assert_close(pt(out), want.detach(), tol)
    assert_close(pt(w), ww.detach(), 3e-4 + prod_tol(16, 4, 0.5) * 16)


class MinusInfMask(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(8, 8)

    def forward(self, x, pad):
        att = self.lin(x) @ x.transpose(-2, -1)
        att = att.masked_fill(pad[:, None, :] == 0, float("-inf"))
        return F.softmax(att, -1) @ x


def test_masked_fill_with_minus_infinity(session):
    """The nanoGPT idiom: masked_fill(mask, float('-inf')) raised
    EncodingError; minus infinity becomes the attention masks' -1e4 (a
    weight of e^-16 after the max shift)."""
    torch.manual_seed(2)
    m = MinusInfMask().double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    pad = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    pm = cryptgpu.nn.from_pytorch(m, (x, pad)).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x), pad))
    # the scores' products (8 and 8 of |x| < 4), the softmax (3e-4) times
    # the values (|x| < 4, 4 of them)
    tol = (prod_tol(8, 4, 0.4) * 8 * 4 + 3e-4) * 4 * 4
    assert_close(got, m(x, pad).detach(), tol)


def test_conversion_check_uses_torchs_slow_path(session):
    """Under no_grad torch's encoder layer takes a fast path that ignores
    GELU's approximate="tanh"; the check compared with it and refused a
    correct conversion (largest difference 2.5e-4)."""
    torch.manual_seed(3)
    layer = tnn.TransformerEncoderLayer(
        16, 2, 32, dropout=0.0, activation=tnn.GELU("tanh"), batch_first=True
    ).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    cryptgpu.nn.from_pytorch(layer.eval(), x)  # raised RuntimeError


def test_conversion_check_names_nan_outputs(session):
    m = tnn.Linear(3, 2).double()
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="NaN"):
        cryptgpu.nn.from_pytorch(m, torch.randn(2, 3))


class OwnMaskWhenNone(tnn.Module):
    """PyTorch's nn.Transformer tutorial idiom: the forward builds a causal
    mask itself when none is given (sizes read with x.size, which fx traces)."""

    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(8, 8)

    def forward(self, x, mask=None):
        if mask is None:
            mask = torch.triu(torch.full((x.size(1), x.size(1)), -1e4), diagonal=1)
        att = self.lin(x) @ x.transpose(-2, -1) + mask
        return F.softmax(att, -1) @ x


class PassesMaskOn(tnn.Module):
    """A forward that hands an optional mask on as it is (no branch)."""

    def __init__(self):
        super().__init__()
        self.attn = tnn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, mask=None):
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]


class UntraceableNoneBranch(OwnMaskWhenNone):
    def forward(self, x, mask=None):
        if mask is None:  # len() of a traced tensor: fx refuses it
            mask = torch.triu(torch.full((len(x[0]), len(x[0])), -1e4), diagonal=1)
        return self.lin(x) + mask.sum()


# scores: 8 products of |x| < 4, |w| < 0.4 (prod_tol) and 8 of |x| < 4; the
# softmax 3e-4; times 4 values below 4
_ATT_TOL = (prod_tol(8, 4, 0.4) * 8 * 4 + 3e-4) * 4 * 4


def test_an_input_left_none_takes_the_forwards_none_branch(session):
    """A forward argument defaulting to None was traced as a value, so the
    `if mask is None:` branch was dropped: converted with the mask, called
    without it, the private model ran unmasked (0.29 off, no error); the
    tutorial's from_pytorch(model, src) failed the conversion check. Left
    out of the dummy input, it is traced as None; given there, leaving it
    out at a call raises."""
    torch.manual_seed(3)
    m = OwnMaskWhenNone().double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    causal = torch.triu(torch.full((4, 4), -1e4, dtype=torch.float64), diagonal=1)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert_close(pt(pm(cryptgpu.cryptensor(x))), m(x).detach(), _ATT_TOL)
    with pytest.raises(TypeError, match="left out of the dummy input"):
        pm(cryptgpu.cryptensor(x), causal)
    for dummy in ((x, None), (x,)):  # an explicit None leaves it out too
        pm = cryptgpu.nn.from_pytorch(m, dummy).encrypt()
        assert_close(pt(pm(cryptgpu.cryptensor(x), mask=None)), m(x).detach(), _ATT_TOL)
    full = torch.zeros(4, 4, dtype=torch.float64)  # no mask at all: differs from causal
    assert (m(x, full) - m(x)).abs().max() > 10 * _ATT_TOL
    for dummy in ((x, full), None):
        pm = cryptgpu.nn.from_pytorch(m, dummy).encrypt()
        assert_close(pt(pm(cryptgpu.cryptensor(x), full)), m(x, full).detach(), _ATT_TOL)
        with pytest.raises(TypeError, match="forward needs 'mask'"):
            pm(cryptgpu.cryptensor(x))
    assert usable()


def test_an_optional_input_passed_on_stays_optional(session):
    """Without a branch on None, the argument stays an input either way."""
    torch.manual_seed(4)
    m = PassesMaskOn().double().eval()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    causal = tnn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    for mask in (None, causal):
        assert_close(pt(pm(cryptgpu.cryptensor(x), mask)), m(x, mask).detach(), _ATT_TOL)


def test_an_untraceable_none_branch_is_named(session):
    m = UntraceableNoneBranch().double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="mask=None .* could not be traced"):
        cryptgpu.nn.from_pytorch(m, x)
    pm = cryptgpu.nn.from_pytorch(m, (x, torch.zeros(4, 4, dtype=torch.float64)))
    with pytest.raises(TypeError, match="fx cannot trace that branch"):
        pm(x)
    assert usable()


def test_the_check_keeps_float64s_tolerance_for_mixed_dtype_inputs(session):
    """The check's float64 reference watches the forward for steps computed
    in a narrower float (then float32's tolerance, 1e-4); copying inputs of
    float64 and float32 is no such step (until 2026-12-06 the watch covered
    the copy, and such inputs loosened the check to 1e-4)."""

    class Two(tnn.Module):
        def forward(self, a, b):
            return a * 2 + b

    xs = (torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float32))
    assert cryptgpu.nn.check.reference(Two(), xs)[2] == 1e-6
