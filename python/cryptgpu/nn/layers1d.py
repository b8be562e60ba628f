"""1-D convolution and pooling layers (sequences, audio, time series) and
the channel-wise dropouts, each the 2-D operation on a height-1 input
(tensor_layers.py): Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d,
Dropout1d, Dropout2d, Dropout3d (channel_dropout); and the table
converting torch's layers into them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _session
from .._native import ShapeError
from ..tensor import SharedTensor
from ..tensor_layers import adaptive_length
from .layers import (
    AvgPool2d,
    _as_operand,
    _fresh,
    _is_size,
    _like,
    _padded,
    _public_input,
    _settings,
    _tensor_input,
    shift_bias,
)
from .module import Module
from .stats import LINEAR, POOLING
from .user_attrs import InPlace


class Conv1d(Module):
    """``Conv1d(in_channels, out_channels, kernel_size, stride=1, padding=0,
    dilation=1, groups=1, bias=True)`` (torch's form) or ``Conv1d(weight,
    bias=None, stride, padding, dilation, groups)`` wrapping given
    parameters; a non-zero ``padding_mode`` pads first, as Conv2d."""

    kind = LINEAR
    padding_mode = "zeros"

    def __init__(self, *args, **kwargs):
        super().__init__()
        if (args and _is_size(args[0])) or "in_channels" in kwargs:
            layer = torch.nn.Conv1d(*args, **kwargs)
            weight, bias = _fresh(layer, self)
            pad = layer.padding if isinstance(layer.padding, str) else layer.padding[0]
            if layer.padding_mode != "zeros":  # padded first, as torch (_padded)
                self.pad, self.padding_mode, pad = (
                    list(layer._reversed_padding_repeated_twice),
                    layer.padding_mode,
                    0,
                )
            conf = (layer.stride[0], pad, layer.dilation[0], layer.groups)
        else:

            def given(weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
                return weight, bias, (stride, padding, dilation, groups)

            weight, bias, conf = given(*args, **kwargs)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self.stride, self.padding, self.dilation, self.groups = conf

    def forward(self, x):
        """The convolution of an NCL SharedTensor (or plaintext tensor)."""
        _tensor_input(x, "conv1d")
        w, b = self._params["weight"], shift_bias(self, x.dim() == 3)  # unbatched: not per channel
        conf = (self.stride, self.padding, self.dilation, self.groups)
        x = _public_input(_padded(x, self), w)
        if isinstance(x, SharedTensor):
            return x.conv1d(_as_operand(w), None if b is None else _as_operand(b), *conf)
        return F.conv1d(x, *_like(x, w, b), *conf)


class MaxPool1d(Module):
    """``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0, dilation=1,
    ceil_mode=False)``."""

    kind = POOLING
    ceil_mode = False  # (a layer pickled before it had one)

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool1d with return_indices")
        self.k, self.s, self.p, self.d = kernel_size, stride, padding, dilation
        self.ceil_mode = bool(ceil_mode)
        _settings(self, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)

    def forward(self, x):
        """Max over each window."""
        c = self.ceil_mode
        if isinstance(x, SharedTensor):
            return x.max_pool1d(self.k, self.s, self.p, self.d, ceil_mode=c)
        return F.max_pool1d(x, self.k, self.s, self.p, self.d, ceil_mode=c)


class AvgPool1d(AvgPool2d):
    """``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0,
    ceil_mode=False, count_include_pad=True)``."""

    _method, _plain = "avg_pool1d", staticmethod(F.avg_pool1d)


class AdaptiveAvgPool1d(Module):
    """``torch.nn.AdaptiveAvgPool1d(output_size)`` (global pooling: the mean
    over the length; uneven windows as torch's)."""

    kind = POOLING

    def __init__(self, output_size):
        super().__init__()
        self.out = output_size

    def forward(self, x):
        """Average pooling to ``output_size`` (uneven windows as torch's)."""
        if not isinstance(x, SharedTensor):
            return F.adaptive_avg_pool1d(x, self.out)
        n, o = x.shape[-1], adaptive_length(self.out, "adaptive_avg_pool1d")
        if o == 1 and n:
            return x.mean(-1, keepdim=True)
        if 0 < o <= n and n % o == 0:
            return x.avg_pool1d(n // o)
        return x.unsqueeze(-2).adaptive_avg_pool2d((1, o)).squeeze(-2)


class AdaptiveMaxPool1d(Module):
    """``torch.nn.AdaptiveMaxPool1d(output_size)`` (TextCNN's max over time
    at 1; uneven windows as torch's), as a 1 x L 2-D adaptive pooling."""

    kind = POOLING

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        if return_indices:
            raise NotImplementedError("AdaptiveMaxPool1d with return_indices")
        self.out = output_size

    def forward(self, x):
        """Max pooling to ``output_size``."""
        if not isinstance(x, SharedTensor):
            return F.adaptive_max_pool1d(x, self.out)
        if x.dim() not in (2, 3):
            raise ShapeError(f"adaptive_max_pool1d expects 2-D or 3-D input, got {x.dim()}-D")
        o = adaptive_length(self.out, "adaptive_max_pool1d")
        return x.unsqueeze(-2).adaptive_max_pool2d((1, o)).squeeze(-2)


def channel_dropout(x, p=0.5, training=True, inplace=False, dims: int = 2):
    """``F.dropout1d``/``dropout2d``/``dropout3d`` (``dims``) on a
    SharedTensor, as torch's: in training, whole channels zeroed with
    probability p (one mask value per sample and channel, from the parties'
    common randomness, as ``dropout``) and the rest scaled by 1 / (1 - p);
    x itself otherwise. dropout1d and dropout3d take an unbatched input
    ([C, L]; [C, D, H, W]) as a batch of one (dropout1d on an unbatched
    input zeroed single elements until 2026-12-05); dropout2d reads every
    input as [N, C, *] (a 3-D one as [N, C, L], with torch's warning).
    torch's own checks and warnings, run on a tensor with no storage."""
    fn = (F.dropout1d, F.dropout2d, F.dropout3d)[dims - 1]
    fn(torch.empty(tuple(x.shape), device="meta"), p, training)
    if not training or p == 0:
        return x
    if not isinstance(x, SharedTensor):
        return fn(x, p, training, inplace)
    batched = {1: 3, 3: 5}.get(dims)
    shape = (1,) + tuple(x.shape) if batched and x.dim() != batched else tuple(x.shape)
    scale = _session.dropout_scale(shape[:2] + (1,) * (len(shape) - 2), p)
    scale = scale.expand(shape).reshape(tuple(x.shape))
    return x._in_place(f"dropout{dims}d_", lambda t: t * scale) if inplace else x * scale


class _ChannelDropout(InPlace, Module):
    """Dropout of whole channels in training (:func:`channel_dropout`)."""

    _dims = 2

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        """``x`` in eval mode; channels zeroed with probability p in training."""
        if not self.training or self.p == 0:
            return x
        return channel_dropout(x, self.p, True, self._inplace, self._dims)


class Dropout1d(_ChannelDropout):
    """``torch.nn.Dropout1d(p)``: whole channels of an [N, C, L] or
    unbatched [C, L] input."""

    _dims = 1


class Dropout2d(_ChannelDropout):
    """``torch.nn.Dropout2d(p)``: whole channels of an [N, C, H, W] input
    (a 3-D input is [N, C, L], as torch's)."""

    _dims = 2


class Dropout3d(_ChannelDropout):
    """``torch.nn.Dropout3d(p)``: whole channels of an [N, C, D, H, W] or
    unbatched [C, D, H, W] input."""

    _dims = 3


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""
    t = torch.nn

    def conv1d(m):
        if m.padding_mode != "zeros":  # conversion takes these to layers_moves first
            raise NotImplementedError(f"Conv1d padding_mode={m.padding_mode!r}")
        pad = m.padding if isinstance(m.padding, str) else m.padding[0]  # "valid", "same"
        return Conv1d(plain(m.weight), plain(m.bias), m.stride[0], pad, m.dilation[0], m.groups)

    def pool(cls, m, *extra):
        if getattr(m, "return_indices", False):
            raise NotImplementedError(f"{type(m).__name__} with return_indices")
        if cls is MaxPool1d:
            return cls(m.kernel_size, m.stride, m.padding, *extra, ceil_mode=m.ceil_mode)
        return cls(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)

    return {
        t.Conv1d: conv1d,
        t.MaxPool1d: lambda m: pool(MaxPool1d, m, m.dilation),
        t.AvgPool1d: lambda m: pool(AvgPool1d, m),
        t.AdaptiveAvgPool1d: lambda m: AdaptiveAvgPool1d(m.output_size),
        t.AdaptiveMaxPool1d: lambda m: AdaptiveMaxPool1d(m.output_size, m.return_indices),
        t.Dropout1d: lambda m: Dropout1d(m.p),
        t.Dropout2d: lambda m: Dropout2d(m.p),
        t.Dropout3d: lambda m: Dropout3d(m.p),
    }
