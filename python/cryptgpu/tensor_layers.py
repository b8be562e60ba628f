"""The CNN operations of SharedTensor: conv2d, linear, average and max
pooling, as ``torch.nn.functional`` has them. cryptgpu.nn's layers call
these; their gradients are in :mod:`cryptgpu.gradients`.
"""

from __future__ import annotations

import math

import torch

from . import autograd as ag
from . import gradients as gr
from ._native import InvalidArgumentError, ShapeError
from ._plain import _buf, _index, _ints, _pair, check_positions
from .pool_masks import adaptive_bounds, adaptive_max_with_mask, off_padding
from .tensor_base import TensorBase


class LayerOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: convolution, linear and pooling."""

    __slots__ = ()

    # ------------------------------------------------------------ layers
    def conv2d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> TensorBase:
        """2-D convolution of an NCHW (or CHW) input, like ``torch.nn.functional.conv2d``.
        ``weight`` and ``bias`` may be shared or plaintext; ``padding`` may
        be torch's "valid" or "same" (see :func:`_string_padding`)."""
        text = padding if isinstance(padding, str) else None
        stride, padding, dilation = (
            _pair(stride, "stride"),
            (0, 0) if text is not None else _pair(padding, "padding"),
            _pair(dilation, "dilation"),
        )
        if stride[0] == 0 or stride[1] == 0 or dilation[0] == 0 or dilation[1] == 0:
            raise InvalidArgumentError("stride and dilation must be positive")
        if _index(groups) is None or _index(groups) < 1:
            raise InvalidArgumentError(f"groups must be a positive int, got {groups!r}")
        groups = _index(groups)
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        if x.dim() == 4 and 0 in tuple(x.shape)[1:]:
            # torch refuses empty H or W, and answers zero input channels with
            # an output of zero channels whatever the weight: refused here.
            raise ShapeError(
                "conv2d expects non-zero input channels, height and width (a batch of 0 "
                f"is allowed), got input shape {tuple(x.shape)}"
            )
        ws, wp = x._other(weight, "conv2d weight")  # x: the batched input it records
        wshape = tuple((ws if ws is not None else wp).shape)
        if wshape and wshape[0] == 0:  # torch's RuntimeError (a ShapeError is one)
            raise ShapeError(
                f"Given groups={groups}, expected weight to be at least 1 at dimension 0, but "
                f"got weight of size {list(wshape)} instead"
            )
        if text is not None:
            kernel = wshape[-2:]
            x, padding = _string_padding(x, text, kernel, stride, dilation)
        s = x._s(self, ws)  # sets the truncation protocol: nothing runs in between
        if ws is not None:
            out = self._wrap(s.conv2d(x._t, ws._t, stride, padding, dilation, groups))
        else:
            out = self._wrap(
                s.conv2d_public(x._t, _buf(wp), list(wp.shape), stride, padding, dilation, groups)
            )
        if ag.needs_grad(x, ws):
            gr._record_conv(out, x, ws, wp, stride, padding, dilation, groups)
        if bias is not None:
            out = _add_channel_bias(out, bias, wshape[0], "conv2d")
        return out.squeeze(0) if squeeze else out

    def conv_transpose2d(
        self, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
    ) -> TensorBase:
        """Transposed 2-D convolution of an NCHW (or CHW) input, as
        ``torch.nn.functional.conv_transpose2d``: the gradient of a conv2d
        with respect to its input, so one engine call (col2im of W^T x,
        truncated once), the conv2d backward's. ``weight`` is
        [C_in, C_out / groups, kh, kw], shared or plaintext; the output has
        (H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1
        rows (likewise columns)."""
        stride, padding, dilation, outpad = (
            _pair(stride, "stride"),
            _pair(padding, "padding"),
            _pair(dilation, "dilation"),
            _pair(output_padding, "output_padding"),
        )
        if min(stride + dilation) <= 0 or min(padding + outpad) < 0:
            raise InvalidArgumentError("stride and dilation must be positive, padding not negative")
        if _index(groups) is None or _index(groups) < 1:
            raise InvalidArgumentError(f"groups must be a positive int, got {groups!r}")
        groups = _index(groups)
        if any(o >= max(s, d) for o, s, d in zip(outpad, stride, dilation)):
            raise InvalidArgumentError(
                "output padding must be smaller than either stride or dilation, got "
                f"output_padding={outpad}, stride={stride}, dilation={dilation}"
            )
        if self.dim() not in (3, 4):
            raise ShapeError(
                f"conv_transpose2d expects a 3-D or 4-D input, got {tuple(self.shape)}"
            )
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        ws, wp = x._other(weight, "conv_transpose2d weight")  # x: the batched input
        wshape = list((ws if ws is not None else wp).shape)
        if len(wshape) != 4 or wshape[0] != x.shape[1] or wshape[0] % groups:
            raise ShapeError(
                f"conv_transpose2d: weight of shape {wshape} for an input of "
                f"{tuple(x.shape)} ({x.shape[1]} channels, groups={groups})"
            )
        out_hw = [
            (n - 1) * s - 2 * p + d * (k - 1) + o + 1
            for n, s, p, d, k, o in zip(x.shape[2:], stride, padding, dilation, wshape[2:], outpad)
        ]
        if min(out_hw) <= 0 or 0 in tuple(x.shape)[1:]:
            raise ShapeError(f"conv_transpose2d: an output of size {out_hw} from {tuple(x.shape)}")
        if any(o >= s for o, s in zip(outpad, stride)):
            conf = (stride, padding, outpad, groups, dilation)
            out = _wide_output_padding(x, weight, wshape[2:], conf, out_hw)
        else:
            out_shape = [x.shape[0], wshape[1] * groups] + out_hw
            win = ((wshape[2], wshape[3]), stride, padding, dilation)
            s = x._s(self, ws)  # sets the truncation protocol: nothing runs in between
            w_t = ws._t if ws is not None else None
            wbuf = None if ws is not None else _buf(wp)
            try:
                t = s.conv_transpose2d(x._t, w_t, wbuf, wshape, out_shape, win, groups)
            except ShapeError as e:  # the engine names its conv2d backward
                raise ShapeError(
                    f"conv_transpose2d of {tuple(x.shape)} by a weight of {wshape} (stride="
                    f"{stride}, padding={padding}, output_padding={outpad}, dilation="
                    f"{dilation}, groups={groups}): {e}"
                ) from e
            out = self._wrap(t)
            if ag.needs_grad(x, ws):
                gr.record_conv_transpose(out, x, ws, weight, wshape, win, groups)
        if bias is not None:
            out = _add_channel_bias(out, bias, wshape[1] * groups, "conv_transpose2d")
        return out.squeeze(0) if squeeze else out

    def conv_transpose1d(
        self, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
    ) -> TensorBase:
        """``torch.nn.functional.conv_transpose1d``: the 2-D one on a height-1
        input (the same products, the same cost)."""
        if self.dim() not in (2, 3):
            raise ShapeError(
                f"conv_transpose1d expects a 2-D or 3-D input, got {tuple(self.shape)}"
            )
        w = (
            weight.unsqueeze(-2)
            if isinstance(weight, TensorBase)
            else self._plain(weight, "conv_transpose1d weight")[..., None, :]
        )
        one = [_single(v, n) for v, n in ((stride, "stride"), (padding, "padding"),
               (output_padding, "output_padding"), (dilation, "dilation"))]  # fmt: skip
        out = self.unsqueeze(-2).conv_transpose2d(
            w, bias, (1, one[0]), (0, one[1]), (0, one[2]), groups, (1, one[3])
        )
        return out.squeeze(-2)

    def conv1d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        """1-D convolution of an NCL (or CL) input, like ``F.conv1d``: the
        2-D convolution of [N, C, 1, L] by a [O, C/g, 1, K] kernel (the
        same products, the same cost)."""
        if self.dim() not in (2, 3):
            raise ShapeError(f"conv1d expects a 2-D or 3-D input, got {tuple(self.shape)}")
        st, dil = _single(stride, "stride"), _single(dilation, "dilation")
        pad = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
        w = (
            weight.unsqueeze(-2)
            if isinstance(weight, TensorBase)
            else self._plain(weight, "conv1d weight")[..., None, :]
        )
        out = self.unsqueeze(-2).conv2d(w, bias, (1, st), pad, (1, dil), groups)
        return out.squeeze(-2)

    def max_pool1d(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
    ):
        """``F.max_pool1d`` on an NCL (or CL) input, as a 1 x k 2-D pooling;
        ``return_indices`` also returns the one-hot mask of each window's
        maximum, shape [N, C, OL, k] (as :meth:`max_pool2d`'s)."""
        k = _single(kernel_size, "kernel_size")
        st = k if stride is None else _single(stride, "stride")
        if ceil_mode and _single(dilation, "dilation") != 1:  # named max_pool2d until 2026-12-06
            raise NotImplementedError("max_pool1d with ceil_mode and dilation on a SharedTensor")
        out = self.unsqueeze(-2).max_pool2d(
            (1, k),
            stride=(1, st),
            padding=(0, _single(padding, "padding")),
            dilation=(1, _single(dilation, "dilation")),
            ceil_mode=ceil_mode,
            return_indices=return_indices,
        )
        if return_indices:
            return out[0].squeeze(-2), out[1].squeeze(-2).squeeze(-3)
        return out.squeeze(-2)

    def avg_pool1d(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        """``F.avg_pool1d`` on an NCL (or CL) input, as a 1 x k 2-D pooling."""
        k = _single(kernel_size, "kernel_size")
        st = k if stride is None else _single(stride, "stride")
        pad = _single(padding, "padding")
        x = self.unsqueeze(-2)
        return x.avg_pool2d((1, k), (1, st), (0, pad), ceil_mode, count_include_pad).squeeze(-2)

    def linear(self, weight, bias=None) -> TensorBase:
        """x @ weight.T + bias, like ``torch.nn.functional.linear``: a 2-D
        weight, or a 1-D one (a dot product; not with a bias on a 2-D
        input, as torch); other weights raise torch's RuntimeError (a 3-D
        one was multiplied as a batch of matrices)."""
        if not isinstance(weight, TensorBase):
            weight = self._plain(weight, "linear weight")
        wdim = weight.dim() if isinstance(weight, TensorBase) else weight.ndim
        if wdim == 0 or self.dim() == 0:
            raise ShapeError(
                "both arguments to linear need to be at least 1D, "
                f"but they are {self.dim()}D and {wdim}D"
            )
        if wdim > 2:
            raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but self is {wdim}D")
        if wdim == 1 and bias is not None and self.dim() == 2:
            raise ShapeError("addmm: mat2 must be a matrix, got 1-D tensor")
        if isinstance(weight, TensorBase) and weight.dim() == 2 and self.dim() >= 1:
            # Leading dims flattened into rows: one product reading W in
            # place, instead of a transposed (and per-batch expanded) copy.
            if self.shape[-1] != weight.shape[1]:
                raise ShapeError(
                    f"linear: input {tuple(self.shape)} does not match weight {tuple(weight.shape)}"
                )
            lead = math.prod(self.shape[:-1])  # (not -1: ambiguous for 0 elements)
            rows = self if self.dim() == 2 else self.reshape(lead, self.shape[-1])
            out = rows._matmul_t(weight)
            if self.dim() != 2:
                out = out.reshape(*self.shape[:-1], weight.shape[0])._own_result()
        elif isinstance(weight, TensorBase):
            out = self.matmul(weight.t())
        else:
            out = self.matmul(weight.T)
        return out if bias is None else out + bias

    def avg_pool2d(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ) -> TensorBase:
        """Average pooling, like ``F.avg_pool2d``. With ``ceil_mode``,
        ``count_include_pad=False`` or a ``divisor_override``: each window's
        sum (zero padding, extended at the end as far as ceil_mode's windows
        reach) times a public factor per window, k / torch's divisor, read
        from torch on a tensor of ones (one truncation more)."""
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        if 0 in k or 0 in st:
            raise InvalidArgumentError("kernel_size and stride must be positive")
        x, squeeze = _pool_input(self)
        pad = _pair(padding, "padding")
        if ceil_mode or not count_include_pad or divisor_override is not None:
            opts = (ceil_mode, count_include_pad, divisor_override)
            out = _avg_pool_weighted(x, k, st, pad, *opts)
            return out.squeeze(0) if squeeze else out
        if ag.needs_grad(x) and pad == (0, 0) and k == tuple(x.shape[-2:]):
            # Global pooling (one window): the mean, whose gradient rounds
            # every input element on its own; the pooling backward divides
            # each window's gradient once for all of its k elements, which
            # for a 7x7 or 8x8 window is a shared rounding of a few units
            # (up to 5% of the gradient, the same sign for the whole map).
            out = x.mean((2, 3), keepdim=True)
            return out.squeeze(0) if squeeze else out
        out = self._wrap(self._s().avg_pool2d(x._t, k, st, pad))
        if ag.needs_grad(x):
            gr.record_avg_pool2d(out, x, k, st, pad)
        return out.squeeze(0) if squeeze else out

    def adaptive_avg_pool2d(self, output_size) -> TensorBase:
        """Average pooling of [N, C, H, W] (or [C, H, W]) to ``output_size``
        (an int, or a pair whose None entries keep the input size), as
        ``F.adaptive_avg_pool2d``: where the output size divides the input,
        one :meth:`avg_pool2d` of window = stride = input / output; else
        torch's windows (start floor(i n / o), end ceil((i + 1) n / o)),
        axis by axis, as a product with their public averaging weights (one
        truncation per axis)."""
        oh, ow = _adaptive_size(self, output_size, "adaptive_avg_pool2d")
        h, w = self.shape[-2], self.shape[-1]
        if oh == 0 or ow == 0:
            return _empty_pool(self, oh, ow)
        if h % oh == 0 and w % ow == 0:
            return self.avg_pool2d((h // oh, w // ow))
        return _adaptive_axis_mean(_adaptive_axis_mean(self, -2, oh), -1, ow)

    def adaptive_max_pool2d(self, output_size, return_indices=False):
        """``F.adaptive_max_pool2d``: where the output size divides the input,
        one :meth:`max_pool2d` (one tournament over H x W when global); else
        torch's windows, axis by axis (the maximum over a rectangle is the
        maximum over its rows of the maximum over its columns): each window
        gathered at public positions, a short one repeating its last element
        (the maximum is unchanged), one tournament per axis.
        ``return_indices`` (CrypTen's keyword) also returns the one-hot mask
        of each window's maximum, [N, C, OH, OW, kh, kw] (kh x kw the
        largest window; torch's index: the first maximum in row-major
        window order), one tournament over each whole window
        (:func:`cryptgpu.pool_masks.adaptive_max_with_mask`)."""
        oh, ow = _adaptive_size(self, output_size, "adaptive_max_pool2d")
        h, w = self.shape[-2], self.shape[-1]
        if oh == 0 or ow == 0:
            out = _empty_pool(self, oh, ow)
            return (out, out.unsqueeze(-1).unsqueeze(-1)) if return_indices else out
        if return_indices:
            if h % oh == 0 and w % ow == 0:
                return self.max_pool2d((h // oh, w // ow), return_indices=True)
            x, squeeze = _pool_input(self)
            v, a = adaptive_max_with_mask(x, oh, ow)
            return (v.squeeze(0), a.squeeze(0)) if squeeze else (v, a)
        if (oh, ow) == (1, 1):  # global: one tournament over H x W
            return self.flatten(-2).amax(-1, keepdim=True).unsqueeze(-1)
        if h % oh == 0 and w % ow == 0:
            return self.max_pool2d((h // oh, w // ow))
        return _adaptive_axis_max(_adaptive_axis_max(self, -2, oh), -1, ow)

    def max_pool2d(
        self,
        kernel_size,
        padding=0,
        stride=None,
        dilation=1,
        ceil_mode=False,
        return_indices=False,
    ):
        """Max pooling (padding acts as -inf), with CrypTen's argument order
        (kernel_size, padding, stride, ...: ``x.max_pool2d(3, 1, 2)`` pads by
        1 with stride 2, as in CrypTen; ``F.max_pool2d(x, ...)`` keeps
        torch's order). With ``return_indices`` also returns CrypTen's
        one-hot mask of every window's maximum, shape [N, C, OH, OW, kh, kw]
        (the window position of torch's index: the first in-bounds maximum
        in row-major window order; a padding slot is never hot; see
        :mod:`cryptgpu.pool_masks`). ``ceil_mode`` (torch's: a last window that starts
        inside the input or its left padding counts even where it runs past
        the end) repeats the last row and column as far as such windows
        reach: a window past the end always holds that row or column, so
        its maximum is torch's (dilation 1 only)."""
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        dil = _pair(dilation, "dilation")
        if 0 in k or 0 in st or 0 in dil:
            raise InvalidArgumentError("kernel_size, stride and dilation must be positive")
        x, squeeze = _pool_input(self)
        pad = _pair(padding, "padding")
        if ceil_mode:
            if dil != (1, 1):
                raise NotImplementedError(
                    "max_pool2d with ceil_mode and dilation on a SharedTensor"
                )
            x = _ceil_pad(x, k, st, pad, "replicate")
        grad = ag.needs_grad(x)
        with ag.inside(grad):
            win = x._wrap(x._s().pool_windows(x._t, (k, st, pad, dil)))
            v, a = win._tournament(return_indices or grad, "max_pool2d")
        if grad:
            gr.record_max_pool2d(v, x, a, (k, st, pad, dil))
        a = off_padding(a, tuple(x.shape[-2:]), k, st, pad, dil) if return_indices else None
        if squeeze:
            v = v.squeeze(0)
            a = a.squeeze(0) if a is not None else None
        return (v, a) if return_indices else v


def _avg_pool_weighted(x, k, st, pad, ceil_mode, count_include_pad, divisor_override):
    """torch's average pooling with its other options (avg_pool2d's docstring)."""
    h, w = tuple(x.shape)[-2:]
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    opts = (ceil_mode, count_include_pad, divisor_override)
    want = torch.nn.functional.avg_pool2d(ones, k, st, pad, *opts)  # count / divisor
    count = torch.nn.functional.avg_pool2d(ones, k, st, pad, ceil_mode, True, 1)
    factor = torch.where(count > 0, want * (k[0] * k[1]) / count.clamp(min=1), 0.0)
    if ceil_mode:
        x = _ceil_pad(x, k, st, pad, "constant")  # zeros: they add nothing to a sum
    out = x.avg_pool2d(k, st, pad)
    return out if bool((factor == 1).all()) else out * factor


def _adaptive_size(x, output_size, what: str) -> tuple[int, int]:
    """(oh, ow) of an adaptive 2-D pooling, None entries keeping the input's,
    refused as torch refuses it (RuntimeError: not two sizes, a negative
    one, an empty input plane), and OutOfMemoryError for one whose result
    or windows could not be held, before anything is built (torch raises
    at once; the windows of a size of 2**40 would fill memory)."""
    if x.dim() not in (3, 4):
        raise ShapeError(f"{what} expects 3-D or 4-D input, got {x.dim()}-D")
    pair = (output_size, output_size) if _index(output_size) is not None else output_size
    if len(pair) != 2:
        raise ShapeError(f"{what}: output_size must be 2, got {output_size!r}")
    h, w = x.shape[-2], x.shape[-1]
    oh, ow = (n if o is None else _ints([o], "output_size")[0] for n, o in zip((h, w), pair))
    if oh < 0 or ow < 0:
        raise ShapeError(
            f"{what}: elements of output_size must be greater than or equal to 0 "
            f"but received {(oh, ow)}"
        )
    if h == 0 or w == 0:
        raise ShapeError(
            f"{what}(): Expected input to have non-zero size for non-batch dimensions, "
            f"but input has sizes {list(x.shape)}"
        )
    check_positions(math.prod(tuple(x.shape)[:-2]) * oh * ow + h * oh + w * ow, what)
    return oh, ow


def _empty_pool(x, oh: int, ow: int):
    """The empty result of an adaptive pooling to oh x ow (one of them 0)."""
    return x.flatten(-2)[..., :0].reshape(tuple(x.shape)[:-2] + (oh, ow))


def adaptive_length(output_size, what: str) -> int:
    """The output length of a 1-D adaptive pooling: an int (a NumPy integer,
    a 0-d integer tensor) or a 1-tuple of one, as torch takes it (a 0 is
    an empty output, not "keep the input's")."""
    v = output_size
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ShapeError(
                f"{what}() argument 'output_size' should contain one int (got {len(v)})"
            )
        v = v[0]
    o = _index(v)
    if o is None:
        raise TypeError(
            f"{what}(): argument 'output_size' (position 2) must be tuple of ints, "
            f"not {type(v).__name__}"
        )
    return o


def _adaptive_axis_mean(x, dim: int, o: int):
    """x averaged over torch's adaptive windows along ``dim``."""
    n = x.shape[dim]
    if n == o:
        return x
    w = torch.zeros(n, o, dtype=torch.float64)
    for i, (a, b) in enumerate(adaptive_bounds(n, o)):
        w[a:b, i] = 1.0 / (b - a)
    return (x.movedim(dim, -1) @ w).movedim(-1, dim)


def _adaptive_axis_max(x, dim: int, o: int):
    """x's maximum over torch's adaptive windows along ``dim``."""
    n = x.shape[dim]
    if n == o:
        return x
    bounds = adaptive_bounds(n, o)
    k = max(b - a for a, b in bounds)
    idx = torch.tensor([[a + min(j, b - a - 1) for j in range(k)] for a, b in bounds])
    y = x.movedim(dim, -1).index_select(-1, idx.reshape(-1))
    return y.reshape(tuple(y.shape[:-1]) + (o, k)).amax(-1).movedim(-1, dim)


def _ceil_pad(x, k, st, pad, mode: str):
    """x extended after its last row and column (``mode``: "replicate" for a
    maximum, "constant" zeros for a sum) as far as torch's ceil_mode
    windows reach past the padded input."""
    e = [_ceil_extra(n, *a) for n, a in zip(tuple(x.shape)[-2:], zip(k, st, pad))]
    return x.pad((0, e[1], 0, e[0]), mode=mode) if any(e) else x


def _ceil_extra(n: int, k: int, s: int, p: int) -> int:
    """How far torch's ceil_mode windows run past the padded input (dilation
    1): the rows beyond ``n + 2p`` its last window covers."""
    out = (n + 2 * p - k + s - 1) // s + 1
    if (out - 1) * s >= n + p:  # a window must start inside the input or its left pad
        out -= 1
    return max(0, (out - 1) * s + k - (n + 2 * p))


def _pool_input(x):
    """(NCHW input, whether it was CHW) for pooling, refusing what torch
    refuses: other ranks, and zero channels, height or width."""
    if x.dim() not in (3, 4) or 0 in tuple(x.shape)[-3:]:
        raise ShapeError(
            "pooling expects a 3-D (CHW) or 4-D (NCHW) input with non-zero C, H and W "
            f"(a batch of 0 is allowed), got shape {tuple(x.shape)}"
        )
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _wide_output_padding(x, weight, kernel, conf, out_hw):
    """conv_transpose2d where an output_padding o reaches the stride s (torch
    allows o < max(s, dilation)): the engine's transpose is a conv2d
    backward, whose geometry can make at most s - 1 extra rows. Rows of
    index r of the unpadded full transpose (size F = (H - 1) s + d (k - 1)
    + 1) fill output row r - p; rows r >= F get nothing (only the bias).
    So the transpose is taken with padding p' = max(0, p - (o - s + 1))
    and output_padding s - 1 (rows [p', F - p' + s - 1) of the full one,
    which hold all rows [p, min(F, F - p + o)) wanted), then cropped to
    start at p and cropped or zero-padded at the end to F - 2 p + o rows:
    a local pad (negative: a crop) whose gradient is the adjoint slice.
    The same products and truncation as any conv_transpose2d of this
    input: the rounds and bytes depend only on the input and weight."""
    stride, padding, outpad, groups, dilation = conf
    pad2, op2, crop = [], [], []
    for n, s, p, d, k, o, want in zip(
        x.shape[2:], stride, padding, dilation, kernel, outpad, out_hw
    ):
        if o < s:
            pad2.append(p), op2.append(o), crop.append((0, 0))
            continue
        p2 = max(0, p - (o - s + 1))
        rows = (n - 1) * s - 2 * p2 + d * (k - 1) + s  # output_padding s - 1
        pad2.append(p2), op2.append(s - 1), crop.append((p - p2, want - (rows - (p - p2))))
    out = x.conv_transpose2d(weight, None, stride, tuple(pad2), tuple(op2), groups, dilation)
    (top, bottom), (left, right) = crop
    return out.pad((-left, right, -top, bottom))


def _add_channel_bias(out, bias, channels: int, what: str):
    """out + bias per output channel; torch refuses a bias that is not one
    value per channel (broadcasting a length-1 bias would silently add it
    everywhere)."""
    b = bias if isinstance(bias, TensorBase) else out._plain(bias, f"{what} bias")
    if tuple(b.shape) != (channels,):
        raise RuntimeError(
            f"{what}: expected bias to be 1-dimensional with {channels} elements, "
            f"but got bias of size {list(b.shape)}"
        )
    return out + b.reshape(1, -1, 1, 1)


def _string_padding(x, mode: str, kernel, stride, dilation):
    """torch's string padding of a convolution, as (input, padding): "valid"
    is none; "same" (stride 1 only, as torch) keeps the size: dilation
    (k - 1) in all per dim, half on each side and the odd one after (right,
    bottom), as torch pads; that odd one by an explicit ``pad`` first."""
    # InvalidArgumentError: a RuntimeError (F.conv2d's type) and a
    # ValueError (torch.nn.Conv2d's)
    if mode == "valid":
        return x, (0, 0)
    if mode != "same":
        raise InvalidArgumentError(f"Invalid padding string: {mode!r}")
    if tuple(stride) != (1, 1):
        raise InvalidArgumentError("padding='same' is not supported for strided convolutions")
    if len(kernel) != 2:
        raise ShapeError(f"conv2d: expected a 4-D weight, got kernel dims {kernel}")
    total = [d * (k - 1) for d, k in zip(dilation, kernel)]
    if total[0] % 2 or total[1] % 2:
        x = x.pad([0, total[1] % 2, 0, total[0] % 2])
    return x, (total[0] // 2, total[1] // 2)


def _single(v, name: str) -> int:
    """A 1-D layer's size argument: an int or a 1-tuple of one."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise InvalidArgumentError(f"{name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    i = _index(v)  # NumPy integers and 0-d integer tensors too, as torch
    if i is None:
        raise InvalidArgumentError(f"{name} must be an int, got {v!r}")
    return i
