"""``F.interpolate`` and ``nn.Upsample`` in every mode torch separates by
axis (nearest, nearest-exact, linear, bilinear, bicubic, trilinear, area;
align_corners, antialias, recompute_scale_factor as torch's).

Each of those modes resamples one spatial axis after the other with
weights that depend only on the shapes: public. The weights of an axis are
read from torch itself, by resampling the identity basis along that axis
alone in float64, so they are torch's to the last bit whatever the mode.
A shared input is then resampled axis by axis: where every output takes
exactly one input (nearest, nearest-exact, area upsampling) by public
index copies, local and exact; otherwise by a product with the public
(n_in x n_out) weight matrix, one truncation (2 rounds) per axis, within
a few units of 2^-f of torch's result scaled by the weights' absolute sum
(1 for linear and area, at most 1.5 for bicubic).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._native import OutOfMemoryError
from .._plain import _index, check_positions
from ..tensor import SharedTensor
from .module import Module
from .stats import OTHER


def _axis_weights(x_ndim: int, n: int, axis: int, size, scale, mode, **kw) -> torch.Tensor:
    """torch's (n x n_out) weights of ``mode`` along spatial ``axis`` of an
    input of ``x_ndim`` dims: the identity basis resampled along the last
    spatial axis only, the others of length 1 (kept by size 1 or scale 1).
    Every mode weighs an axis by its own lengths and scale alone, so the
    last axis stands for any; and torch's antialiased CPU kernels mishandle
    an input whose last axis has length 1 (every output is the first), so
    the axis resampled is always the last."""
    spatial = x_ndim - 2
    basis = torch.eye(n, dtype=torch.float64).reshape((1, n) + (1,) * (spatial - 1) + (n,))
    if size is not None:
        args = {"size": (1,) * (spatial - 1) + (size[axis],)}
    else:
        args = {"scale_factor": (1.0,) * (spatial - 1) + (scale[axis],)}
    return F.interpolate(basis, mode=mode, **args, **kw).reshape(n, -1)


def interpolate(
    x,
    size=None,
    scale_factor=None,
    mode="nearest",
    align_corners=None,
    recompute_scale_factor=None,
    antialias=False,
):
    """``F.interpolate`` on a SharedTensor (module docstring); arguments,
    checks and exceptions as torch's."""
    kw = {
        "align_corners": align_corners,
        "recompute_scale_factor": recompute_scale_factor,
        "antialias": antialias,
    }
    # torch's own checks and output shape, on a tensor with no storage
    meta = torch.empty(tuple(x.shape), device="meta")
    try:
        shape = F.interpolate(meta, size, scale_factor, mode, **kw).shape
    except ZeroDivisionError:  # torch's meta kernels divide by a zero output size
        raise RuntimeError(
            f"Input and output sizes should be greater than 0, but got input size "
            f"{list(x.shape)[2:]} and output size {size}"
        ) from None
    except RuntimeError as e:
        if "Storage size calculation overflowed" in str(e):  # a MemoryError too, as the engine's
            raise OutOfMemoryError(f"interpolate: {e}") from None
        raise
    check_positions(math.prod(shape), "interpolate")
    spatial = x.dim() - 2
    if size is not None:
        one = _index(size)  # NumPy integers and 0-d integer tensors too, as torch
        size = (one,) * spatial if one is not None else tuple(_index(s) for s in size)
        scale = None
    else:
        scale = (
            scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * spatial
        )
    out = x
    for axis in range(spatial):
        n, d = x.shape[2 + axis], 2 + axis
        w = _axis_weights(x.dim(), n, axis, size, scale, mode, **kw)
        if w.shape[1] == n and torch.equal(w, torch.eye(n, dtype=w.dtype)):
            continue  # this axis is unchanged
        if bool(((w == 0) | (w == 1)).all()) and bool((w.sum(0) == 1).all()):
            out = out.index_select(d, w.argmax(0))  # each output copies one input
        else:
            out = (out.movedim(d, -1) @ w).movedim(-1, d)
    return out


class Upsample(Module):
    """``torch.nn.Upsample(size=None, scale_factor=None, mode="nearest",
    align_corners=None, recompute_scale_factor=None)``: :func:`interpolate`."""

    kind = OTHER

    def __init__(
        self,
        size=None,
        scale_factor=None,
        mode="nearest",
        align_corners=None,
        recompute_scale_factor=None,
    ):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, x):
        """x resampled as torch's Upsample would."""
        fn = interpolate if isinstance(x, SharedTensor) else F.interpolate
        return fn(
            x,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
        )


class UpsamplingBilinear2d(Upsample):
    """``torch.nn.UpsamplingBilinear2d``: bilinear with align_corners=True."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", True)


class UpsamplingNearest2d(Upsample):
    """``torch.nn.UpsamplingNearest2d``."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


def converters(plain=None) -> dict:
    """torch's upsampling layers to these (``plain``: unused, the other
    tables' signature; these layers hold no parameters)."""
    t = torch.nn

    def upsample(m):
        return Upsample(m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor)

    return {
        t.Upsample: upsample,
        t.UpsamplingNearest2d: lambda m: UpsamplingNearest2d(m.size, m.scale_factor),
        t.UpsamplingBilinear2d: lambda m: UpsamplingBilinear2d(m.size, m.scale_factor),
    }
