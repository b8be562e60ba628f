"""F.interpolate / nn.Upsample in every separable mode (nearest,
nearest-exact, linear, bilinear, bicubic, trilinear, area; align_corners,
antialias, recompute_scale_factor) on SharedTensors and in converted
models, against float64 torch; until 2026-12-05 only "nearest" with whole
scale factors was provided and every other mode refused.

Tolerance (f = 16), derived per case by `bound`: an axis resampled with
public weights W (n_in x n_out) is one product truncated once, so an
error e on its input becomes at most |W|_1 e (|W|_1: the largest column
absolute sum, 1 for linear and area, up to 1.6 for bicubic) plus the
weights' encoding (k ENC |x|max, k the most non-zero weights of a column)
plus one truncation (TRUNC); an axis where each output copies one input
adds nothing. The input's own encoding starts it at ENC.
"""

import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close, usable

X4 = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1


def _weights(n, mode, size=None, scale=None, **kw):
    """torch's weights of one axis of length n (the last of a 4-D or 3-D
    input; torch's own, read from the identity basis)."""
    dims = 1 if mode in ("linear",) else 3 if mode == "trilinear" else 2
    basis = torch.eye(n, dtype=torch.float64).reshape((1, n) + (1,) * (dims - 1) + (n,))
    if size is not None:
        arg = {"size": (1,) * (dims - 1) + (size,)}
    else:
        arg = {"scale_factor": (1.0,) * (dims - 1) + (scale,)}
    return F.interpolate(basis, mode=mode, **arg, **kw).reshape(n, -1)


def bound(x, axes) -> float:
    """The error bound of the module docstring over the given axes' weights."""
    err, mag = ENC, x.abs().max().item()
    for w in axes:
        if bool(((w == 0) | (w == 1)).all()) and bool((w.sum(0) == 1).all()):
            continue  # copies
        l1 = w.abs().sum(0).max().item()
        k = int((w != 0).sum(0).max())
        err, mag = l1 * err + k * ENC * mag + TRUNC, l1 * mag
    return err


CASES = [
    (mode, ac, aa, kw)
    for mode, ac, aa in [
        ("nearest", None, False),
        ("nearest-exact", None, False),
        ("bilinear", False, False),
        ("bilinear", True, False),
        ("bicubic", False, False),
        ("bicubic", True, False),
        ("bilinear", False, True),
        ("bicubic", False, True),
        ("area", None, False),
    ]
    for kw in [
        {"scale_factor": 2},
        {"scale_factor": 1.7},
        {"size": (3, 4)},
        {"size": (11, 6)},
        {"scale_factor": (0.5, 2.5), "recompute_scale_factor": True},
    ]
]


@pytest.mark.parametrize("mode,ac,aa,kw", CASES)
def test_interpolate_2d_modes_match_torch(session, mode, ac, aa, kw):
    want = F.interpolate(X4, mode=mode, align_corners=ac, antialias=aa, **kw)
    got = F.interpolate(cryptgpu.cryptensor(X4), mode=mode, align_corners=ac, antialias=aa, **kw)
    extra = {"align_corners": ac, "antialias": aa}
    if "size" in kw:
        axes = [_weights(n, mode, size=o, **extra) for n, o in zip((5, 7), kw["size"])]
    else:
        sf = kw["scale_factor"]
        sf = sf if isinstance(sf, tuple) else (sf, sf)
        rc = {"recompute_scale_factor": kw.get("recompute_scale_factor")}
        axes = [_weights(n, mode, scale=s, **extra, **rc) for n, s in zip((5, 7), sf)]
    assert_close(got.get_plain_text(dtype=torch.float64), want, bound(X4, axes))


@pytest.mark.parametrize(
    "shape,mode,ac,kw",
    [
        ((2, 3, 6), "linear", False, {"scale_factor": 1.5}),
        ((2, 3, 6), "linear", True, {"size": 4}),
        ((2, 3, 6), "nearest", None, {"scale_factor": 1.5}),
        ((2, 3, 6), "area", None, {"size": 4}),
        ((1, 2, 3, 4, 5), "trilinear", False, {"size": (4, 3, 7)}),
        ((1, 2, 3, 4, 5), "trilinear", True, {"scale_factor": 1.5}),
        ((1, 2, 3, 4, 5), "nearest", None, {"size": (4, 3, 7)}),
    ],
)
def test_interpolate_1d_and_3d(session, shape, mode, ac, kw):
    """Tolerance: three axes of linear weights (|W|_1 = 1, k <= 2) from
    inputs below 1: under 3 (ENC + 2 ENC + TRUNC) + ENC, so 40 ENC bounds it."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = F.interpolate(x, mode=mode, align_corners=ac, **kw)
    got = F.interpolate(cryptgpu.cryptensor(x), mode=mode, align_corners=ac, **kw)
    assert_close(got.get_plain_text(dtype=torch.float64), want, 40 * ENC)


class _Decoder(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3)
        self.up = tnn.Upsample(scale_factor=2, mode="bilinear")
        self.up2 = tnn.UpsamplingBilinear2d(scale_factor=1.5)
        self.up3 = tnn.Upsample(size=(10, 10), mode="bicubic", align_corners=True)

    def forward(self, x):
        y = self.up2(self.up(self.conv(x)))
        return self.up3(y) + F.interpolate(y, size=(10, 10), mode="nearest-exact")


def test_upsampling_models_convert_and_train(session):
    """A model with bilinear and bicubic upsampling (refused by
    from_pytorch until 2026-12-05) converts; output and input gradient
    match torch's. Tolerance: the conv's 27 products of inputs below 1 and
    weights below 0.2 (prod_tol: under 4e-4 with the bias), then three
    resampling axes of weights with |W|_1 <= 1.6, each adding k ENC |y|
    (k <= 4, |y| < 2) and a truncation: below 5e-3 in all; the gradient
    runs the same products backwards, 5e-3 too."""
    torch.manual_seed(0)
    m = _Decoder().double()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    sx = cryptgpu.cryptensor(x, requires_grad=True)
    out = pm(sx)
    xt = x.clone().requires_grad_()
    want = m(xt)
    assert_close(out.get_plain_text(dtype=torch.float64), want.detach(), 5e-3)
    g = torch.rand(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (out * g).sum().backward()
    (want * g).sum().backward()
    assert_close(sx.grad.get_plain_text(dtype=torch.float64), xt.grad, 5e-3)


def test_costs_copies_are_free_and_each_weighted_axis_is_one_truncation(session):
    """Nearest and area upsampling copy (no communication); a weighted axis
    is one product with public weights: one truncation of its output (2
    rounds, one word per output element per party)."""
    x = cryptgpu.cryptensor(torch.rand(1, 2, 4, 6, dtype=torch.float64))
    for kw in ({"scale_factor": 1.5, "mode": "nearest"}, {"scale_factor": 2, "mode": "area"}):
        cryptgpu.reset_stats()
        F.interpolate(x, **kw)
        assert cryptgpu.stats()["total"]["rounds"] == 0, kw
    cryptgpu.reset_stats()
    F.interpolate(x, size=(4, 9), mode="bilinear")  # only the last axis changes
    assert cryptgpu.stats()["total"]["rounds"] == 2
    assert cryptgpu.stats()["total"]["bytes_per_party"] == 8 * 2 * 4 * 9
    cryptgpu.reset_stats()
    F.interpolate(x, scale_factor=2, mode="bilinear")
    assert cryptgpu.stats()["total"]["rounds"] == 4
    assert cryptgpu.stats()["total"]["bytes_per_party"] == 8 * (2 * 4 * 12 + 2 * 8 * 12)


@pytest.mark.parametrize(
    "kw,exc",
    [
        ({"size": 3, "scale_factor": 2}, ValueError),
        ({}, ValueError),
        ({"scale_factor": 2, "mode": "trilinear"}, NotImplementedError),
        ({"scale_factor": 2, "mode": "nearest", "align_corners": True}, ValueError),
        ({"scale_factor": 2, "mode": "nearest", "antialias": True}, ValueError),
        ({"size": (0, 3)}, RuntimeError),
        ({"size": (0, 3), "mode": "bilinear"}, RuntimeError),  # it was ZeroDivisionError
        ({"scale_factor": math.nan}, RuntimeError),  # it was OutOfMemoryError
        ({"scale_factor": 2, "mode": "spline"}, NotImplementedError),
    ],
)
def test_bad_arguments_raise_torchs_exceptions(session, kw, exc):
    with pytest.raises(exc) as plain:
        F.interpolate(X4, **kw)
    with pytest.raises(exc) as private:
        F.interpolate(cryptgpu.cryptensor(X4), **kw)
    # the same words (a size error names the shapes its own way on a meta tensor)
    assert str(private.value)[:40] == str(plain.value)[:40]
    assert usable()
