"""Probe OD (2026-12-07): defects of that day's features.

1. ``nan_to_num(softmax(s.masked_fill(mask, torch.finfo(torch.float64).min)))``:
   the fill was tested for -inf in float32 (torch.as_tensor of a Python
   float), where float64's lowest value overflows, so a fully masked row
   came out as 0 where torch gives the mean of V (a finite fill: no NaN).
2. A Python bool (int, float) given in the dummy input became a tensor in
   the conversion check: ``sum(keepdim=flag)`` and
   ``F.dropout(training=flag)`` then refused it.
3. ``nn.SmoothL1Loss`` converted with a dummy input: an AttributeError
   (``'Tensor' object has no attribute '_s'``) on the check's plain tensors.
4. The refusal of an in-place method on a view whose base is read later
   (``h[:, :2].mul_(0)``) named no line and suggested ``inplace=False``.

Tolerances (f = 16, conftest): ENC for an encoded input, ULP = TRUNC per
truncation, prod_tol for a truncated sum of products; each is derived next
to its assertion from the values of the test.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cryptgpu
from conftest import ENC, ULP, prod_tol, usable

D = torch.float64
TRUNC = ULP
SM = 3e-4  # softmax's documented bound (README, functions.py): absolute, rows <= 512


def _x(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D) * 2) - 1


def _enc(a):
    return cryptgpu.cryptensor(a) if torch.is_tensor(a) and a.is_floating_point() else a


def _plain(y):
    return y.get_plain_text(dtype=D) if hasattr(y, "get_plain_text") else y


# ------------------------------------------- 1. nan_to_num after a finite fill


class Guarded(nn.Module):
    """Hand-written attention with torch's usual NaN guard and a fill."""

    def __init__(self, fill):
        super().__init__()
        self.fill = fill

    def forward(self, s, v, mask):
        p = torch.softmax(s.masked_fill(mask, self.fill), -1)
        return torch.nan_to_num(p) @ v


FILLS = {
    "float64_min": torch.finfo(torch.float64).min,
    "float32_min": torch.finfo(torch.float32).min,
    "minus_1e9": -1e9,
    "minus_inf": float("-inf"),
}


@pytest.mark.parametrize("fill", list(FILLS.values()), ids=list(FILLS))
@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_nan_to_num_keeps_a_finite_fills_mean(session, fill, dummy):
    s, v = _x(2, 3, 4, seed=1), _x(2, 4, 3, seed=2)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[0, 1, :] = True  # row 1 of batch 0 masked entirely
    mask[1, :, 2] = True  # and one column of batch 1
    m = Guarded(fill)
    want = m(s, v, mask)  # float64 torch: a finite fill gives the mean of V, -inf gives 0
    if fill == float("-inf"):
        assert (want[0, 1] == 0).all()
    else:
        assert torch.allclose(want[0, 1], v[0].mean(0))
    pm = cryptgpu.nn.from_pytorch(m, (s, v, mask) if dummy else None).encrypt()
    got = pm(cryptgpu.cryptensor(s), cryptgpu.cryptensor(v), mask).get_plain_text(dtype=D)
    # p @ v: 4 products of weights (within SM of torch's, |p| <= 1) and
    # encoded v (|v| <= 1), truncated once: 4 (|v| SM + |p| ENC + SM ENC) + TRUNC
    tol = 4 * (1.0 * SM + 1.0 * ENC + SM * ENC) + TRUNC
    assert (got - want).abs().max().item() <= tol
    assert usable()


# ------------------------------------------- 2. Python arguments in the dummy


class KeepDim(nn.Module):
    """A bool argument passed on to a torch op (never branched on)."""

    def forward(self, x, keepdim=False):
        return (x * 2).sum(-1, keepdim=keepdim)


class Drop(nn.Module):
    """``F.dropout(x, p, training=flag)``: a bool and a float argument."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(6, 6)

    def forward(self, x, p=0.5, flag=False):
        return F.dropout(self.l(x), p, training=flag)


class Pool(nn.Module):
    """A flag branched on (traced as a constant) and also passed on."""

    def forward(self, x, pool=False):
        h = x * 2
        if pool:
            return h.mean(1, keepdim=pool)
        return h


class Cut(nn.Module):
    """An int and a float the forward only computes with."""

    def forward(self, x, n=3, scale=0.5):
        return x[:, :n] * scale


# (x * 2).sum over 6: 2 x is exact on the encoding (2 ENC each, a public
# integer factor, no truncation): 6 * 2 ENC
SUM_TOL = 6 * 2 * ENC


@pytest.mark.parametrize("flag", [False, True])
def test_bool_in_the_dummy_passed_to_sum_keepdim(session, flag):
    x = _x(4, 6, seed=3)
    pm = cryptgpu.nn.from_pytorch(KeepDim(), (x, flag)).encrypt()
    for k in (flag, not flag):  # not branched on: any value at a call (README)
        want = KeepDim()(x, k)
        got = pm(cryptgpu.cryptensor(x), k).get_plain_text(dtype=D)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= SUM_TOL  # SUM_TOL: derived above
    assert usable()


def test_bool_and_float_in_the_dummy_passed_to_dropout(session):
    torch.manual_seed(0)
    x = _x(4, 6, seed=4)
    m = Drop().double().eval()
    pm = cryptgpu.nn.from_pytorch(m, (x, 0.5, False)).encrypt()
    with torch.no_grad():
        want = m(x, 0.3, False)  # training=False: the Linear's output
    got = pm(cryptgpu.cryptensor(x), 0.3, False).get_plain_text(dtype=D)
    # a Linear of 6 encoded inputs (|x| <= 1), truncated once, plus its bias's encoding
    tol = prod_tol(6, 1.0, m.l.weight.abs().max().item()) + ENC
    assert (got - want).abs().max().item() <= tol
    assert usable()


def test_branched_flag_also_passed_on(session):
    x = _x(3, 4, 2, seed=5)
    pm = cryptgpu.nn.from_pytorch(Pool(), (x, True)).encrypt()
    want = Pool()(x, True)
    got = pm(cryptgpu.cryptensor(x), True).get_plain_text(dtype=D)
    assert got.shape == want.shape == (3, 1, 2)
    # the mean of 4 values 2 x (2 ENC each): 2 ENC, one truncation of the division
    assert (got - want).abs().max().item() <= 2 * ENC + TRUNC
    with pytest.raises(TypeError, match="converted with pool=True"):
        pm(cryptgpu.cryptensor(x), False)  # a branch flag: one value per conversion
    assert usable()


def test_int_and_float_in_the_dummy_take_any_value(session):
    x = _x(3, 6, seed=6)
    pm = cryptgpu.nn.from_pytorch(Cut(), (x, 3, 0.5)).encrypt()
    for n, scale in ((3, 0.5), (2, 0.25), (5, 3.0)):
        want = Cut()(x, n, scale)
        got = pm(cryptgpu.cryptensor(x), n, scale).get_plain_text(dtype=D)
        assert got.shape == want.shape
        # encoded x times an encoded public scale, truncated once:
        # |x| ENC_scale + |scale| ENC_x + ENC^2 + TRUNC
        assert (got - want).abs().max().item() <= prod_tol(1, 1.0, scale)
    assert usable()


# ------------------------------------------- 3. SmoothL1Loss with a dummy input


class WithLoss(nn.Module):
    """A model holding the loss, as the probe's."""

    def __init__(self, beta, reduction):
        super().__init__()
        self.loss = nn.SmoothL1Loss(beta=beta, reduction=reduction)

    def forward(self, a, b):
        return self.loss(a * 2, b)


def _sl1_tol(n: int, reduction: str) -> float:
    """d = a - b carries e_d = 2 ENC (2 a: 4 ENC in WithLoss, taken for
    both). Below beta, c (c / (2 beta)) + |d| - |c| (beta < 1) or
    (0.5 c^2 + beta (|d| - |c|)) / beta (beta >= 1) is within 3 e_d plus
    three truncations and the encoding of 1/beta times the value (|value|
    <= 3 here, 2 ENC at most counted): per element 3 e_d + 4 TRUNC + 3 ENC;
    a sum adds n of them, a mean one more truncation."""
    e_d = 4 * ENC
    per = 3 * e_d + 4 * TRUNC + 3 * ENC
    return {"none": per, "mean": per + TRUNC, "sum": n * per}[reduction]


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_smooth_l1_loss_converts_with_a_dummy(session, beta, reduction, dummy):
    a, b = _x(4, 3, seed=7), _x(4, 3, seed=8)
    bare = nn.SmoothL1Loss(beta=beta, reduction=reduction)
    held = WithLoss(beta, reduction)
    for m, want in ((bare, bare(a, b)), (held, held(a, b))):
        pm = cryptgpu.nn.from_pytorch(m, (a, b) if dummy else None).encrypt()
        got = pm(cryptgpu.cryptensor(a), cryptgpu.cryptensor(b)).get_plain_text(dtype=D)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= _sl1_tol(12, reduction)  # derived above
    assert usable()


def test_smooth_l1_loss_on_plain_tensors_is_torchs():
    a, b = _x(4, 3, seed=9), _x(4, 3, seed=10)
    for beta in (0.0, 0.5, 1.0, 2.0):
        for reduction in ("mean", "sum", "none"):
            ours = cryptgpu.nn.SmoothL1Loss(reduction=reduction, beta=beta)(a, b)
            want = F.smooth_l1_loss(a, b, reduction=reduction, beta=beta)
            assert torch.equal(ours, want)  # torch's own function on public tensors: exact


def test_smooth_l1_loss_negative_beta_is_refused(session):
    with pytest.raises(RuntimeError, match="negative values for beta"):
        nn.SmoothL1Loss(beta=-1.0)(_x(2), _x(2))  # torch's own refusal
    with pytest.raises(RuntimeError, match="negative values for beta"):
        cryptgpu.nn.SmoothL1Loss(beta=-1.0)
    assert usable()


# ------------------------------------------- 4. in-place methods on a view


class MulSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        h = self.l(x)
        h[:, :2].mul_(0)
        return h


class MulView(MulSlice):
    def forward(self, x):
        h = self.l(x)
        h.view(-1).mul_(3)
        return h


class ZeroMask(MulSlice):
    def forward(self, x):
        m = torch.empty((x.size(0), 4)).fill_(1.0)
        m[:, :2].zero_()
        return self.l(x) * m


class ReluSlice(MulSlice):
    def __init__(self):
        super().__init__()
        self.r = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.l(x)
        self.r(h[:, :2])
        return h


@pytest.mark.parametrize(
    "model, line, fix",
    [
        (MulSlice, r"`h\[:, :2\]\.mul_\(0\)`", r"`h\[:, :2\]\.mul\(0\)`.*torch\.cat"),
        (MulView, r"`h\.view\(-1\)\.mul_\(3\)`", r"`h\.view\(-1\)\.mul\(3\)`"),
        (ZeroMask, r"`m\[:, :2\]\.zero_\(\)`", r"torch\.where"),
        (ReluSlice, r"`self\.r\(h\[:, :2\]\)`", r"inplace=False"),
    ],
    ids=["mul_slice", "mul_view", "zero_mask", "relu_module"],
)
def test_in_place_method_on_a_view_names_its_line(session, model, line, fix):
    x = torch.zeros(2, 4, dtype=D)
    for dummy in (x, None):
        with pytest.raises(NotImplementedError) as err:
            cryptgpu.nn.from_pytorch(model().double(), dummy)
        text = str(err.value)
        assert re.search(line + r" \(test_probe_od\.py:\d+\)", text), text
        assert re.search(fix, text), text
        if model is not ReluSlice:  # mul_ and zero_ have no inplace= argument
            assert "inplace=False" not in text
    assert usable()
