"""Forms that CrypTen's own unit tests use (test_mpc, test_gradients,
test_nn, test_crypten), missing until a probe of 2026-12-06 ran them:
``shallow_copy``, the method ``cosine_similarity``, the methods
``dropout2d``/``dropout3d``, ``crypten.nn.BatchNorm3d`` built directly,
the cryptensor-type functions and ``CrypTensor.set_grad_enabled``.

Tolerances (f = 16): inputs are encoded within ENC = 2^-17; copies and
selections are exact on the encoded values; each assertion states its own.
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu as crypten
from conftest import ENC, ULP, assert_close, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def test_shallow_copy_shares_the_value(session):
    """CrypTen's test_copy_clone: a new tensor on the same shares, no grad."""
    a = torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.float64)
    x = crypten.cryptensor(a, requires_grad=True)
    y = x.shallow_copy()
    assert y is not x and not y.requires_grad
    assert_close(pt(y), a, ENC)
    y.add_(1.0)  # an in-place change shows in both, as CrypTen's shared share
    assert_close(pt(x), a + 1, ENC)


def test_cosine_similarity_method(session):
    """CrypTen's method form of F.cosine_similarity, forward and backward
    (F.cosine_similarity's accuracy: two unit vectors within 1e-4 relative
    each, a dot product of 4 terms, the encodings relative to the smaller
    norm)."""
    g = torch.Generator().manual_seed(3)
    a, b = (torch.randn(3, 4, generator=g, dtype=torch.float64) * 2 for _ in range(2))
    x, y = crypten.cryptensor(a, requires_grad=True), crypten.cryptensor(b)
    got = x.cosine_similarity(y, dim=1)
    tol = 3e-4 + 4 * ULP + 8 * ENC  # row norms from 2.0 up
    assert_close(pt(got), F.cosine_similarity(a, b, dim=1), tol)
    # over dim 0: 3 terms, column norms from 1.25 up
    tol0 = 3e-4 + 3 * ULP + 8 * ENC / 1.25
    assert_close(pt(x.cosine_similarity(b, dim=0)), F.cosine_similarity(a, b, dim=0), tol0)
    got.sum().backward()
    t = a.clone().requires_grad_()
    F.cosine_similarity(t, b, dim=1).sum().backward()
    # b / (|a| |b|) - cos a / |a|^2: two terms like the forward's over |a| >= 2
    assert_close(pt(x.grad), t.grad, 2 * tol)


@pytest.mark.parametrize(
    "name,shape", [("dropout2d", (4, 6, 3, 3)), ("dropout3d", (2, 6, 2, 2, 2))]
)
def test_channel_dropout_methods(session, name, shape):
    """CrypTen's x.dropout2d / x.dropout3d: F's channel dropout (whole
    channels zeroed, the rest scaled by 1 / (1 - p): one exact selection
    and a public factor, a truncation); the identity in eval."""
    x = crypten.cryptensor(torch.ones(shape))
    assert getattr(x, name)(0.5, training=False) is x
    d = pt(getattr(x, name)(0.5)).reshape(shape[0] * shape[1], -1)
    kept = d[:, 0] != 0
    assert ((d == 0).all(1) | (d != 0).all(1)).all()  # whole channels
    assert 0 < int(kept.sum()) < len(kept)  # 24 or 12 channels at p = 0.5
    assert_close(d[kept], torch.full_like(d[kept], 2.0), ULP)


def test_batchnorm3d_built_directly(session):
    """CrypTen's test_batchnorm_module builds nn.BatchNorm3d(c): the layer
    BatchNorm1d/2d are (statistics over every dim but the channels), in
    training (output and running statistics) and eval, against torch's.
    Tolerance: BatchNorm's at input std 1 (test_layers): the encoding over
    the std, |x - mean| units of 2^-16 for 1/std, 1e-4 from the range-
    reduced 1/sqrt; the running statistics one product each more."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    m = torch.nn.BatchNorm3d(4).double()
    want = m(x)
    bn = crypten.nn.BatchNorm3d(4).encrypt().train()
    tol = 8 * ENC + 3 * 4 * ULP + 1e-4
    assert_close(pt(bn(crypten.cryptensor(x))), want.detach(), tol)
    assert_close(pt(bn.running_mean), m.running_mean, tol)
    assert_close(pt(bn.running_var), m.running_var, tol)
    bn.eval()
    m.eval()
    assert_close(pt(bn(crypten.cryptensor(x))), m(x).detach(), 4 * tol)


def test_cryptensor_type_functions_and_crypten_grad_mode(session):
    """test_crypten's cryptensor registration calls and TestMPC's setUp:
    "mpc" is the only kind; CrypTensor.set_grad_enabled is the module's."""
    assert crypten.get_default_cryptensor_type() == "mpc"
    crypten.set_default_cryptensor_type("mpc")
    with pytest.raises(ValueError, match="does not exist"):
        crypten.set_default_cryptensor_type("binary")
    x = crypten.cryptensor(torch.ones(2))
    assert crypten.get_cryptensor_type(x) == "mpc"
    with pytest.raises(ValueError, match="not a CrypTensor"):
        crypten.get_cryptensor_type(torch.ones(2))
    y = crypten.cryptensor(torch.ones(2), requires_grad=True)
    try:
        crypten.CrypTensor.set_grad_enabled(False)
        assert not (y * 2).requires_grad
        with crypten.CrypTensor.enable_grad():
            assert (y * 2).requires_grad
        with crypten.CrypTensor.no_grad():
            assert not (y * 2).requires_grad
    finally:
        crypten.CrypTensor.set_grad_enabled(True)
    assert (y * 2).requires_grad
    assert usable()
