"""Probe OC (2026-12-07), in-place operations in a converted forward.

1. ``g = h; h += 1; return g * h``: torch's ``+=`` on a tensor is in place
   (``h.add_(1)``), so the alias ``g`` sees the change; torch.fx recorded it
   as ``h = h + 1``, and the converted model gave ``g`` the old value: 1.9
   off torch's with no error without a dummy input, an unexplained
   "disagrees" with one. ``t = x.size(1); t += 1`` rebinds a number and
   must stay so.
2. ``fill_``, ``zero_``, ``copy_``, ``fill_diagonal_`` in a converted
   forward: an AttributeError (``'Tensor' object has no attribute 'fill'``)
   on public values, a refusal naming ``.fill()`` on private ones (the
   converter dropped the ``_``). The causal mask
   ``torch.empty((T, T)).fill_(float("-inf")).triu_(1)`` now converts.

Tolerances (f = 16, conftest): ENC for an encoded input, ULP = TRUNC per
truncation, prod_tol for a truncated sum of products; each is derived
next to its assertion from the values of the test.
"""

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


def _run(model, x, dummy):
    pm = cryptgpu.nn.from_pytorch(model, x if dummy else None).encrypt()
    return pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)


def _linear_err(lin: nn.Linear, xmax: float) -> float:
    """A Linear of encoded x (|x| <= xmax) and encoded weights: its k
    products truncated once, plus the bias's encoding."""
    return prod_tol(lin.in_features, xmax, lin.weight.abs().max().item()) + ENC


# ------------------------------------------------------------ 1. h += y


class Alias(nn.Module):
    """The probe's case: ``g`` is ``h``, so it sees ``h += 1``."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        h = self.l(x)
        g = h
        h += 1
        return g * h


class Chain(Alias):
    """``-=``, ``*=``, ``/=`` in turn, with the alias read at the end."""

    def forward(self, x):
        h = self.l(x)
        g = h
        h -= 0.5
        h *= 2
        h /= 4
        return g + h


@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_augmented_assignment_on_an_alias_is_in_place_as_torch(session, dummy):
    torch.manual_seed(0)
    x = _x(3, 4)
    m = Alias().double().eval()
    with torch.no_grad():
        want = m(x)
        h1 = (m.l(x) + 1).abs().max().item()
    got = _run(m, x, dummy)
    e = _linear_err(m.l, 1.0)  # h's error; h + 1 adds none (1 is exact)
    # (h + 1)^2 from two copies of h + 1: |a| e + |b| e + e^2, one truncation
    assert (got - want).abs().max().item() <= 2 * h1 * e + e * e + TRUNC
    assert usable()


@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_sub_mul_div_assignments_reach_the_alias(session, dummy):
    torch.manual_seed(1)
    x = _x(3, 4, seed=1)
    m = Chain().double().eval()
    with torch.no_grad():
        want = m(x)  # g + h = 2 ((h - 0.5) * 2 / 4)
    got = _run(m, x, dummy)
    e = _linear_err(m.l, 1.0)  # -= 0.5: exact
    e = 2 * e + TRUNC  # *= 2: the error doubles, one truncation at most
    e = e / 4 + TRUNC  # /= 4: a division by a public integer, one truncation
    assert (got - want).abs().max().item() <= 2 * e  # g + h: the same value twice


class Residual(nn.Module):
    """The residual habit with the alias read afterwards: ``identity`` is
    ``out``, so torch's identity holds the sum too."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        out = self.l1(x)
        identity = out
        out += self.l2(x)
        return torch.cat([identity, out], -1)


@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_residual_alias_holds_the_sum(session, dummy):
    torch.manual_seed(2)
    x = _x(3, 4, seed=2)
    m = Residual().double().eval()
    with torch.no_grad():
        want = m(x)
    got = _run(m, x, dummy)
    tol = _linear_err(m.l1, 1.0) + _linear_err(m.l2, 1.0)  # the sum of two Linears
    assert (got - want).abs().max().item() <= tol


class BasicBlock(nn.Module):
    """torchvision's BasicBlock habit: ``out += identity`` after a folded
    BatchNorm, then ``ReLU(inplace=True)``."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.b1, self.b2 = nn.BatchNorm2d(2), nn.BatchNorm2d(2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.b1(self.c1(x)))
        out = self.b2(self.c2(out))
        out += identity
        return self.relu(out)


def test_basic_block_residual_is_unchanged(session):
    torch.manual_seed(3)
    x = _x(2, 2, 5, 5, seed=3)
    m = BasicBlock().double().eval()  # BatchNorm's default statistics: a factor <= 1
    with torch.no_grad():
        want = m(x.clone())
        o1 = m.relu(m.b1(m.c1(x))).abs().max().item()
    got = _run(m, x, True)
    k = 2 * 9  # products per output of each conv
    w1, w2 = m.c1.weight.abs(), m.c2.weight.abs()
    e1 = prod_tol(k, 1.0, w1.max().item()) + ENC  # conv1 (+ bias); relu adds none
    # conv2 on out1: its own products, plus out1's error through its weights
    e2 = prod_tol(k, o1, w2.max().item()) + w2.sum((1, 2, 3)).max().item() * e1 + ENC
    assert (got - want).abs().max().item() <= e2 + ENC  # + identity's encoding


class Sizes(nn.Module):
    """``t += 1`` on a size rebinds a number: ``s`` keeps x.size(1)."""

    def forward(self, x):
        b, n = x.shape
        t = x.size(1)
        s = t
        t += 1
        t *= 2
        return F.pad(x, (0, t - s - n)).reshape(b, -1)  # pads by 2(n + 1) - 2n = 2


def test_size_arithmetic_stays_out_of_place(session):
    m = Sizes()
    x, y = _x(3, 4, seed=4), _x(2, 7, seed=5)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    for v in (x, y):  # the dummy's sizes and others: sizes are read at each call
        got = pm(cryptgpu.cryptensor(v)).get_plain_text(dtype=D)
        want = m(v)
        assert got.shape == want.shape == (v.shape[0], v.shape[1] + 2)
        assert (got - want).abs().max().item() <= ENC  # moved and zero-padded: encoding only


class PublicAugmented(nn.Module):
    """``//=`` and ``&=`` on public tensors built in the forward, aliased."""

    def forward(self, x):
        n = x.size(1)
        idx = torch.arange(n)
        same = idx
        idx //= 2
        keep = torch.ones((n,), dtype=torch.bool)
        kept = keep
        keep &= idx > 0
        return x * (same + idx) * kept


@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_public_floordiv_and_and_assignments_reach_the_alias(session, dummy):
    x = _x(3, 6, seed=6)
    m = PublicAugmented()
    want = m(x)  # x * 2 (i // 2) where i // 2 > 0
    got = _run(m, x, dummy)
    p = 2 * ((6 - 1) // 2)  # the largest public factor
    e = p * ENC + TRUNC  # x times a public integer, one truncation
    assert (got - want).abs().max().item() <= e + TRUNC  # times the 0/1 mask: one more


class ChunkPiece(nn.Module):
    """``q *= 0.5`` on one piece of a chunk: the other pieces do not see it."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 12)

    def forward(self, x):
        q, k, v = self.l(x).chunk(3, -1)
        q *= 0.5
        return q + k * v


class ViewOfRead(ChunkPiece):
    """``q *= 0.5`` changes h, which is read afterwards: refused."""

    def forward(self, x):
        h = self.l(x)
        q, k, v = h.chunk(3, -1)
        q *= 0.5
        return h + k


def test_augmented_assignment_on_a_view(session):
    torch.manual_seed(7)
    x = _x(3, 4, seed=7)
    m = ChunkPiece().double().eval()
    with torch.no_grad():  # torch refuses an in-place change of a chunk with autograd on
        want = m(x)
        hmax = m.l(x).abs().max().item()
    got = _run(m, x, False)
    e = _linear_err(m.l, 1.0)
    # q * 0.5 (e / 2 + one truncation) + k * v (a product of two pieces)
    assert (got - want).abs().max().item() <= e / 2 + TRUNC + 2 * hmax * e + e * e + TRUNC
    with pytest.raises(NotImplementedError, match=r"`q \*= 0\.5` \(test_probe_oc_inplace"):
        cryptgpu.nn.from_pytorch(ViewOfRead())
    assert usable()


# ------------------------------------------------------------ 2. fill_, zero_, copy_


class CausalMask(nn.Module):
    """The causal mask built in forward from x.size(1)."""

    def forward(self, x):
        mask = torch.empty((x.size(1), x.size(1))).fill_(float("-inf")).triu_(1)
        return torch.softmax(x @ x.transpose(1, 2) + mask, -1)


def test_causal_mask_from_fill_and_triu(session):
    m = CausalMask()
    x = _x(2, 4, 3, seed=8)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    for v in (x, _x(1, 6, 3, seed=9)):  # another T than the dummy's
        got = pm(cryptgpu.cryptensor(v)).get_plain_text(dtype=D)
        want = m(v)
        # scores: 3 products of encoded |x| <= 1; a softmax moves by at most
        # twice its scores' error, plus its own documented SM
        assert (got - want).abs().max().item() <= SM + 2 * prod_tol(3, 1.0, 1.0)


class ZeroPublic(nn.Module):
    def forward(self, x):
        return torch.ones((x.size(2),)).zero_() + x


class FillPrivate(nn.Module):
    def forward(self, x):
        return x.clone().fill_(1.0) * x


class ZeroAlias(nn.Module):
    """``h.zero_()`` on a private tensor: the alias g reads zeros too."""

    def forward(self, x):
        h = x * 2
        g = h
        h.zero_()
        return g + x


class CopyPrivate(nn.Module):
    """A public zeros tensor takes a private value."""

    def forward(self, x):
        return torch.zeros_like(x).copy_(x) * 2


class CopyBroadcast(nn.Module):
    """A public buffer-like tensor takes a private row, broadcast; alias z."""

    def forward(self, x):
        y = torch.zeros((x.size(1), x.size(2)))
        z = y
        y.copy_(x[0, 0])
        return z + x


class CopyIntoPrivate(nn.Module):
    """A private copy takes a public row, broadcast."""

    def forward(self, x):
        return x.clone().copy_(torch.ones((x.size(2),))) + x


class FillDiagonalPublic(nn.Module):
    def forward(self, x):
        return torch.ones((x.size(1), x.size(2))).fill_diagonal_(0.0) * x


@pytest.mark.parametrize(
    "model, tol",
    [
        pytest.param(ZeroPublic, ENC, id="zero_public"),  # x + public zeros: x's encoding
        pytest.param(FillPrivate, prod_tol(1, 1.0, 1.0), id="fill_private"),  # 1 * x, truncated
        pytest.param(ZeroAlias, ENC, id="zero_alias"),  # zeros (exact: t * 0) + x
        pytest.param(CopyPrivate, 2 * ENC + TRUNC, id="copy_private"),  # 2 x, one truncation
        pytest.param(CopyBroadcast, 2 * ENC, id="copy_broadcast"),  # x[0, 0] + x: 2 encodings
        pytest.param(CopyIntoPrivate, ENC, id="copy_into_private"),  # ones (exact) + x
        pytest.param(FillDiagonalPublic, ENC + TRUNC, id="fill_diagonal_public"),  # x * 0/1
    ],
)
@pytest.mark.parametrize("dummy", [False, True], ids=["no_dummy", "dummy"])
def test_fill_zero_copy_in_a_converted_forward(session, model, tol, dummy):
    m = model()
    x = _x(2, 4, 3, seed=10)
    want = m(x.clone())
    got = _run(m, x, dummy)
    assert (got - want).abs().max().item() <= tol


def test_copy_and_fill_gradients_are_torchs(session):
    """copy_'s gradient reaches its source; fill_'s receiver gets none."""
    for model, grad in ((CopyPrivate, 2.0), (FillPrivate, None)):
        x = _x(2, 3, seed=11)
        pm = cryptgpu.nn.from_pytorch(model()).encrypt()
        xs = cryptgpu.cryptensor(x, requires_grad=True)
        pm(xs).sum().backward()
        xt = x.clone().requires_grad_()
        model()(xt).sum().backward()
        want = xt.grad if grad is None else torch.full_like(x, grad)
        # 2 exactly; fill_'s: 1 * x's gradient of ones (the filled ones, encoded exactly)
        assert (xs.grad.get_plain_text(dtype=D) - want).abs().max().item() <= ENC


class FillDiagonalPrivate(nn.Module):
    def forward(self, x):
        return x.clone().fill_diagonal_(0.0) + x


class IndexPutPrivate(nn.Module):
    def forward(self, x):
        return x.clone().index_put_((torch.tensor([0]),), torch.tensor(1.0, dtype=D))


class NormalPublic(nn.Module):
    """Noise drawn in the forward: refused (each party would draw its own)."""

    def forward(self, x):
        return x + torch.empty((x.size(1),)).normal_()


@pytest.mark.parametrize(
    "model, name",
    [
        (FillDiagonalPrivate, "fill_diagonal_"),
        (IndexPutPrivate, "index_put_"),
        (NormalPublic, "normal_"),
    ],
    ids=["fill_diagonal_", "index_put_", "normal_"],
)
def test_unsupported_in_place_method_is_refused_by_its_written_name(session, model, name):
    x = _x(3, 3, seed=12)
    model()(x.clone())  # torch runs it
    for dummy in (None, x):  # refused at conversion, before any call
        with pytest.raises(NotImplementedError, match=rf"unsupported method \.{name}\(\) at node"):
            cryptgpu.nn.from_pytorch(model(), dummy)
        assert usable()
