"""Probe OS (2026-12-07, order statistics and comparisons): ``x.max(t)`` /
``torch.max(x, t)`` / ``min`` with a 0-dim torch tensor ``t`` reduced over
dim ``int(t)`` (a float ``t``: TypeError) where torch takes ``t`` as
``other``; torch.gt/lt/ge/le/eq/ne, count_nonzero, nansum, linalg.norm and
the logical ops (``&``, ``|``, ``^``, ``~``) ran on a SharedTensor but were
refused in a converted forward; the in-place comparisons (gt_ ...) and
cumsum_ / cumprod_ were not offered."""

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import ENC, usable

D = torch.float64
# values on the fixed-point grid (multiples of 2^-16): encoded exactly, so a
# selection (max, min) or a 0/1 comparison of them is exact
X = torch.tensor([[-2.0, 0.5, 3.0], [1.0, 0.0, -4.0]], dtype=D)


def opened(t):
    return t.get_plain_text(dtype=D)


@pytest.mark.parametrize("t", [torch.tensor(1), torch.tensor(0), torch.tensor(0.5)])
def test_a_0_dim_tensor_alone_is_other_as_torchs(session, t):
    s = cryptgpu.cryptensor(X)
    for got, want in (
        (s.max(t), X.max(t)),
        (s.min(t), X.min(t)),
        (torch.max(s, t), torch.max(X, t)),
        (torch.min(s, t), torch.min(X, t)),
        (s.max(other=t), X.max(other=t)),
        (torch.min(s, other=t), torch.min(X, other=t)),
    ):
        assert not isinstance(got, tuple)  # the element-wise form, not (values, indices)
        assert tuple(got.shape) == tuple(want.shape)
        # a selection of grid values: exact (ENC bounds an off-grid encoding)
        assert (opened(got) - want).abs().max() <= ENC
    assert usable()


def test_a_0_dim_int_tensor_as_dim_keyword_or_with_keepdim_is_a_dim(session):
    s = cryptgpu.cryptensor(X)
    t = torch.tensor(1)
    for got, want in (
        (s.max(dim=t), X.max(dim=t)),
        (s.min(t, True), X.min(t, True)),
        (torch.max(s, t, keepdim=True), torch.max(X, t, keepdim=True)),
    ):
        assert isinstance(got, tuple)  # torch's (values, indices) too
        assert (opened(got[0]) - want[0]).abs().max() <= ENC  # a selection: exact
    with pytest.raises(TypeError):
        X.min(dim=torch.tensor(0.5))  # torch's own
    with pytest.raises(TypeError):
        s.min(dim=torch.tensor(0.5))
    with pytest.raises(TypeError):
        s.max(other=0.5)  # torch: other must be a Tensor
    assert usable()


class _Fn(tnn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def _converted(f, x):
    """f's converted forward on a private x, opened; and torch's f(x)."""
    m = cryptgpu.nn.from_pytorch(_Fn(f).eval(), torch.zeros_like(x)).encrypt(src=0)
    return opened(m(cryptgpu.cryptensor(x))), f(x.clone())


def test_short_comparison_names_convert(session):
    x = torch.tensor([[0.25, -1.0, 0.1], [2.0, 0.1, -0.5]], dtype=D)
    for f in (
        lambda h: torch.gt(h, 0.1),
        lambda h: torch.lt(h, 0.1),
        lambda h: torch.ge(h, 0.1),
        lambda h: torch.le(h, torch.tensor([0.0, 0.0, 0.1], dtype=D)),
        lambda h: torch.eq(h, 0.1),
        lambda h: torch.ne(h, h * 2),
    ):
        got, want = _converted(f, x)
        assert (got - want.to(D)).abs().max() == 0  # 0/1 of grid values: exact
    assert usable()


def test_counts_sums_norms_and_logical_ops_convert(session):
    x = torch.tensor([[0.25, -1.0, 0.0, 3.0], [2.0, 0.0, -0.5, 0.75]], dtype=D)
    exact = (
        lambda h: torch.count_nonzero(h > 0, dim=1),
        lambda h: h.count_nonzero(1),
        lambda h: torch.logical_and(h > 0, h < 1),
        lambda h: (h > 0).logical_or(h < -0.75),
        lambda h: torch.logical_xor(h > 0, h < 1),
        lambda h: torch.logical_not(h > 0),
        lambda h: (h > 0) & (h < 0.5),
        lambda h: (h > 0) | (h < -0.75),
        lambda h: (h > 0) ^ (h < 1),
        lambda h: ~(h > 0),
        lambda h: h * ((torch.ones(2, 4) > 0) & (torch.arange(4) < 3)),  # public masks
    )
    for f in exact:
        got, want = _converted(f, x)
        assert (got - want.to(D)).abs().max() == 0  # counts and 0/1 of grid values: exact
    got, want = _converted(lambda h: h.nansum(1), x)
    assert (got - want).abs().max() <= 4 * ENC  # 4 grid values added: exact (bound 4 ENC)
    got, want = _converted(lambda h: torch.linalg.norm(h, dim=1), x)
    # the range-reduced sqrt, about 1e-4 relative (test_activations' norm bound)
    assert (got - want).abs().max() <= 3e-4 * want.abs().max().item() + x.numel() * ENC
    assert usable()


@pytest.mark.parametrize("name", ["gt_", "lt_", "ge_", "le_", "eq_", "ne_"])
def test_in_place_comparisons(session, name):
    y = torch.tensor([[1.0, 4.0, 3.0]], dtype=D)
    for other, plain in ((0.5, 0.5), (cryptgpu.cryptensor(y), y)):
        s = cryptgpu.cryptensor(X).clone()
        assert getattr(s, name)(other) is s
        want = getattr(X.clone(), name)(plain)
        assert (opened(s) - want).abs().max() == 0  # 0/1: exact
        b = cryptgpu.cryptensor(X).clone()
        getattr(b[1], name)(0.5)  # a view's change reaches its base, as torch's
        w = X.clone()
        getattr(w[1], name)(0.5)
        assert (opened(b) - w).abs().max() == 0
    with pytest.raises(RuntimeError):  # torch's: the output would broadcast
        getattr(cryptgpu.cryptensor(X[0]).clone(), name)(torch.zeros(2, 3))
    assert usable()


def test_in_place_cumsum_and_cumprod(session):
    for name in ("cumsum_", "cumprod_"):
        for dim in (0, 1, -1):
            s = cryptgpu.cryptensor(X).clone()
            assert getattr(s, name)(dim) is s
            want = getattr(X.clone(), name)(dim)
            # grid values with few bits: sums and products stay on the grid
            # (a product truncated once: within 2 ENC a step)
            assert (opened(s) - want).abs().max() <= 6 * ENC
        b = cryptgpu.cryptensor(X).clone()
        getattr(b[:, 1], name)(0)
        w = X.clone()
        getattr(w[:, 1], name)(0)
        assert (opened(b) - w).abs().max() <= 2 * ENC  # (a view's change in its base)
    leaf = cryptgpu.cryptensor(X, requires_grad=True)
    for name in ("cumsum_", "gt_"):
        with pytest.raises(RuntimeError):  # torch's: a leaf that requires grad
            getattr(leaf, name)(0)
    y = leaf * 2
    y.cumsum_(1)  # on a recorded result: its gradient, as torch's
    y.sum().backward()
    t = X.clone().requires_grad_()
    (t * 2).cumsum_(1).sum().backward()
    assert (opened(leaf.grad) - t.grad).abs().max() <= 6 * ENC  # public factors: ~exact
    assert usable()


def test_a_0_dim_tensor_alone_is_other_in_a_converted_forward(session):
    for f in (
        lambda h: torch.max(h, torch.tensor(0)),
        lambda h: h.min(torch.tensor(0.5, dtype=D)),
    ):
        got, want = _converted(f, X)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= ENC  # a selection of grid values: exact
    assert usable()
