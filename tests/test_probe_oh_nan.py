"""Probe OH (2026-12-07), items 1-3: NaN guards of hand-written masked
attention in converted models, silently wrong before.

1. ``torch.nan_to_num`` not directly on the softmax (after ``@ v``, a
   dropout, a scale, a sum, a transpose, ``+ 1``, a LayerNorm): a row that
   the public mask fills entirely with -inf kept the mean of V where
   torch's is 0. Now the NaN rows are followed to the guard; through an op
   not followed the guard raises NotImplementedError naming its line.
2. A -inf fill made by ``torch.full_like(s, -inf)`` / ``s.new_full(shape,
   -inf)`` was not seen as -inf (it became -1e4 first): the guard did
   nothing.
3. ``p.isnan()`` of such a softmax was all False (``torch.isnan(p)``
   refused), so ``p.masked_fill(p.isnan(), 0)`` did nothing.

Tolerances (f = 16, conftest): SM is softmax's documented bound, ENC the
encoding error of an input, TRUNC one truncation; each assertion derives
its bound from these next to it.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cryptgpu
from conftest import ENC, ULP, usable

D = torch.float64
TRUNC = ULP
SM = 3e-4  # softmax's documented bound (README, functions.py): absolute, rows <= 512
NI = float("-inf")

S = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, 0.0, -1.0]], dtype=D)
MASK = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=D)  # row 1 masked entirely
V = torch.tensor([[1.0, -0.5, 0.75], [0.5, 1.0, -1.0], [-0.25, 0.0, 1.0]], dtype=D)


def _sm(a, m):
    return F.softmax(a.masked_fill(m == 0, NI), -1)


class Fn(nn.Module):
    """A forward given as a function of (scores, mask, v)."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.drop = nn.Dropout(0.1)
        self.ln = nn.LayerNorm(3)

    def forward(self, a, m, v):
        return self.f(self, a, m, v)


def _run(f, mask=MASK, dummy=True):
    m = Fn(f).double().eval()
    want = m(S, mask, V)
    pm = cryptgpu.nn.from_pytorch(m, (S, mask, V) if dummy else None).encrypt().eval()
    got = pm(cryptgpu.cryptensor(S), mask, cryptgpu.cryptensor(V)).get_plain_text(dtype=D)
    return got, want


# p @ v: 3 products of weights (within SM of torch's, |p| <= 1) and encoded
# v (|v| <= 1), truncated once: 3 (|v| SM + |p| ENC + SM ENC) + TRUNC
PV = 3 * (SM + ENC + SM * ENC) + TRUNC
LATE = {  # (forward, bound on |ours - torch|)
    "pv": (lambda s, a, m, v: torch.nan_to_num(_sm(a, m) @ v), PV),
    "pv_transposed": (lambda s, a, m, v: torch.nan_to_num((_sm(a, m) @ v).transpose(0, 1)), PV),
    "pv_plus_1": (lambda s, a, m, v: torch.nan_to_num(_sm(a, m) @ v + 1), PV + TRUNC),
    "dropout_fn": (lambda s, a, m, v: torch.nan_to_num(F.dropout(_sm(a, m), 0.0)), SM),
    "dropout_layer_pv": (lambda s, a, m, v: torch.nan_to_num(s.drop(_sm(a, m)) @ v), PV),
    "scaled": (lambda s, a, m, v: torch.nan_to_num(_sm(a, m) * 2), 2 * SM + TRUNC),
    "sum_rows": (lambda s, a, m, v: torch.nan_to_num(_sm(a, m).sum(-1)), 3 * SM),
    "sum_cols": (lambda s, a, m, v: torch.nan_to_num(_sm(a, m).sum(0)), 3 * SM),
    "method": (lambda s, a, m, v: (_sm(a, m) @ v).nan_to_num(nan=0.5), PV),
    # LayerNorm's private rsqrt: the 1e-3 absolute bound of its tests
    # (test_probe_parity) on rows of norm sqrt(3)
    "layer_norm": (lambda s, a, m, v: torch.nan_to_num(s.ln(_sm(a, m) @ v)), 1e-3),
}


@pytest.mark.parametrize("name", list(LATE))
def test_guard_after_the_softmax_gives_torchs_zero_rows(session, name):
    f, tol = LATE[name]
    got, want = _run(f)
    assert not torch.isnan(want).any()  # torch's guard removed its NaN row
    assert (got - want).abs().max().item() <= tol


def test_guard_through_an_op_not_followed_raises_naming_the_line(session):
    def f(s, a, m, v):
        return torch.nan_to_num((_sm(a, m) @ v).pow(2))  # pow: not followed

    with pytest.raises(NotImplementedError, match="test_probe_oh_nan.py"):
        _run(f)
    assert usable()
    got, want = _run(f, mask=torch.ones(3, 3, dtype=D))  # no row masked entirely: runs
    # (p @ v)^2 with |p @ v| <= 1: twice PV, plus a truncation
    assert (got - want).abs().max().item() <= 2 * PV + TRUNC


def test_no_guard_keeps_the_documented_mean_of_v(session):
    """Without any guard a fully masked row is the mean of V (README)."""
    got, want = _run(lambda s, a, m, v: _sm(a, m) @ v, dummy=False)  # (torch's NaN: no check)
    assert torch.isnan(want[1]).all()
    assert (got[1] - V.mean(0)).abs().max().item() <= PV


FILLS = {
    "full_like": lambda a, m: torch.where(m.bool(), a, torch.full_like(a, NI)),
    "new_full": lambda a, m: torch.where(m.bool(), a, a.new_full(a.shape, NI)),
    "added_mask": lambda a, m: (
        a + torch.where(m.bool(), torch.zeros_like(a), torch.full_like(a, NI))
    ),
    "masked_fill_full_like": lambda a, m: torch.where(m == 0, torch.full_like(a, NI), a),
}


@pytest.mark.parametrize("name", list(FILLS))
def test_full_like_minus_inf_is_a_minus_inf_fill(session, name):
    fill = FILLS[name]
    got, want = _run(lambda s, a, m, v: torch.nan_to_num(F.softmax(fill(a, m), -1)))
    assert (want[1] == 0).all()
    assert (got - want).abs().max().item() <= SM  # softmax's bound


ISNAN = {
    "masked_fill_method": lambda p: p.masked_fill(p.isnan(), 0.0),
    "where_method": lambda p: torch.where(p.isnan(), 0.0, p),
    "where_function": lambda p: torch.where(torch.isnan(p), 0.0, p),
    "isfinite": lambda p: torch.where(torch.isfinite(p), p, 0.0),
}


@pytest.mark.parametrize("name", list(ISNAN))
def test_isnan_of_a_masked_softmax_is_torchs(session, name):
    guard = ISNAN[name]
    got, want = _run(lambda s, a, m, v: guard(_sm(a, m)))
    assert (want[1] == 0).all()
    assert (got - want).abs().max().item() <= SM  # softmax's bound


def test_isnan_after_the_product(session):
    got, want = _run(lambda s, a, m, v: (lambda o: o.masked_fill(o.isnan(), 0.0))(_sm(a, m) @ v))
    assert (want[1] == 0).all()
    assert (got - want).abs().max().item() <= PV


class SelfAttention(nn.Module):
    """Hand-written multi-head attention with a key padding mask and
    torch's guard after the output projection (nanoGPT's layout)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.proj = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, keep):
        b, t, c = x.size()
        q, k, v = self.qkv(x).split(8, dim=2)
        q, k, v = (z.view(b, t, 2, 4).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * 0.5
        att = att.masked_fill(~keep[:, None, None, :], NI)
        att = self.drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return torch.nan_to_num(self.proj(y)).type_as(x)


def test_multi_head_attention_with_a_fully_padded_sequence(session):
    torch.manual_seed(0)
    m = SelfAttention().double().eval()
    x = torch.rand(2, 3, 8, dtype=D) * 2 - 1
    keep = torch.tensor([[True, True, False], [False, False, False]])  # sequence 1: all padding
    want = m(x, keep)
    assert (want[1] == 0).all() and not (want[0] == 0).any()
    pm = cryptgpu.nn.from_pytorch(m, (x, keep)).encrypt().eval()
    got = pm(cryptgpu.cryptensor(x), keep).get_plain_text(dtype=D)
    # two Linear layers of 8 products (|w| <= 0.36, |x| <= 1) around softmax
    # weights (SM) times v (|v| <= 3): measured 1e-4; the bound: 8 * 0.36 * 3 SM
    # + 2 * 8 (0.36 ENC + TRUNC) for the products, about 3e-3
    assert (got - want).abs().max().item() <= 8 * 0.36 * 3 * SM + 16 * (0.36 * ENC + TRUNC)
    assert (got[1] == 0).all()  # exactly torch's zeros


def test_nan_tests_of_a_masked_log_softmax(session):
    """isnan / isinf / isfinite directly on a log_softmax: torch's NaN
    rows, and its -inf at the masked entries of the other rows."""

    def f(s, a, m, v):
        p = F.log_softmax(a.masked_fill(m == 0, NI), -1)
        guarded = torch.where(p.isnan(), 0.0, p.clamp(min=-50.0))
        return guarded, torch.isinf(p).double(), p.isfinite().double()

    m = Fn(f).double().eval()
    want = m(S, MASK, V)
    pm = cryptgpu.nn.from_pytorch(m, (S, MASK, V)).encrypt()
    got = pm(cryptgpu.cryptensor(S), MASK, cryptgpu.cryptensor(V))
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])  # public, exact
    # log_softmax: about 1e-4 absolute (README), here with a 10x margin; the
    # clamped -50 (our masked entry is about -1e4) exact up to ENC
    assert (got[0].get_plain_text(dtype=D) - want[0]).abs().max().item() <= 1e-3


# -- a review's finds (2026-12-07): guards as functions, chained masked softmaxes

MASK2 = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=D)  # row 2 masked entirely


class _Chain(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, a, m, m2, v):
        return self.f(a, m, m2, v)


@pytest.mark.parametrize(
    "form",
    [
        # a guard written as a function before a later guard: the first
        # counted as an op not followed, and the later one raised
        lambda a, m, m2, v: torch.nan_to_num(torch.nan_to_num(_sm(a, m)) @ v + 0),
        lambda a, m, m2, v: torch.nan_to_num(
            torch.where(torch.isnan(_sm(a, m)), 0.0, _sm(a, m)) @ v
        ),
        # a masked softmax of a value with NaN rows from one above: each
        # softmax's rows (its own mask's, its input's) are NaN in torch
        lambda a, m, m2, v: torch.nan_to_num(_sm(_sm(a, m) @ v, m2) @ v),
        lambda a, m, m2, v: torch.nan_to_num(_sm(_sm(a, m) @ v, m2)),
        lambda a, m, m2, v: _sm(_sm(a, m) @ v, m2).isnan().double(),
    ],
)
def test_function_guards_and_chained_masked_softmaxes_are_torchs(session, form):
    model = _Chain(form).double().eval()
    want = model(S, MASK, MASK2, V)
    pm = cryptgpu.nn.from_pytorch(model).encrypt().eval()
    got = pm(cryptgpu.cryptensor(S), MASK, MASK2, cryptgpu.cryptensor(V))
    got = got.double() if torch.is_tensor(got) else got.get_plain_text().double()
    # two softmaxes (SM each) and products with |v| <= 1 over 3 terms: the
    # rows torch has as 0 (NaN guarded) are exactly 0 here; before, a
    # missed row was 0.17-1.0 off and the function guards raised
    assert (got - want).abs().max() <= 2 * SM + 3 * (ENC + TRUNC) * 3
    assert usable()
