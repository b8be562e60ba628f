"""torch's data-movement layers on SharedTensors: the padding layers
(constant, reflection, replication, circular), PixelShuffle/Unshuffle,
ChannelShuffle, Unflatten, Softmax2d, the alpha dropouts (the identity in
eval mode), and Conv1d/Conv2d with a non-zero ``padding_mode``. Every
movement is the torch layer itself applied to the tensor of flat positions
(public), then one local copy of the shares (SharedTensor._moved): no
communication, gradients by the copy's backward. The table converting
torch's layers into them.
"""

from __future__ import annotations

import copy

import torch

from ..tensor import SharedTensor
from .layers import Conv2d, Softmax
from .layers1d import Conv1d
from .module import Module
from .stats import OTHER

_MOVES = (
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
    "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
    "PixelShuffle", "PixelUnshuffle", "ChannelShuffle",
)  # fmt: skip


class Moved(Module):
    """A torch data-movement layer (``torch.nn.ReflectionPad2d(2)``,
    ``PixelShuffle(2)``, ...) on a SharedTensor: the layer run on the
    public positions picks each output element; a constant pad's fill is
    added in public (``SharedTensor.pad``). On a plaintext input, the layer
    itself."""

    kind = OTHER

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = copy.deepcopy(layer)

    def extra_repr(self) -> str:
        """The torch layer's description."""
        return repr(self.layer)

    def forward(self, x):
        """The moved ``x``."""
        if not isinstance(x, SharedTensor):
            return self.layer(x)
        value = getattr(self.layer, "value", None)
        if value is not None:  # ZeroPad / ConstantPad: zeros, then the fill
            return x.pad(list(self.layer.padding), value)  # (pad checks it, as F.pad)
        return x._moved(self.layer)


def _named(name: str) -> type:
    """``cryptgpu.nn.<name>(...)``: torch's constructor, as :class:`Moved`."""

    def __init__(self, *args, **kwargs):
        Moved.__init__(self, getattr(torch.nn, name)(*args, **kwargs))

    doc = f"``torch.nn.{name}`` on SharedTensors (public positions, one local copy)."
    return type(name, (Moved,), {"__init__": __init__, "__doc__": doc})


# cryptgpu.nn.ReflectionPad2d(2), cryptgpu.nn.PixelShuffle(2), ...
LAYERS = {n: _named(n) for n in _MOVES if hasattr(torch.nn, n)}


class Unflatten(Module):
    """``torch.nn.Unflatten(dim, unflattened_size)``: a view."""

    kind = OTHER

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        """``x.unflatten(dim, unflattened_size)``."""
        return x.unflatten(self.dim, self.unflattened_size)


class AlphaDropout(Module):
    """``torch.nn.AlphaDropout`` / ``FeatureAlphaDropout``: the identity in
    eval mode, as torch's; training mode is not provided (its affine
    correction of the dropped values)."""

    kind = OTHER

    def __init__(self, p: float = 0.5, feature: bool = False):
        super().__init__()
        self.p, self.feature = float(p), feature

    def forward(self, x):
        """``x`` in eval mode."""
        if self.training and self.p > 0:
            name = "FeatureAlphaDropout" if self.feature else "AlphaDropout"
            raise NotImplementedError(f"{name} in training mode (use Dropout)")
        return x


class ModePaddedConv2d(Conv2d):
    """A Conv2d with ``padding_mode`` "reflect", "replicate" or "circular":
    the padding as torch applies it (public positions; Conv2d's forward),
    then the convolution without padding; torch's parameter names."""

    def __init__(self, layer: torch.nn.Conv2d, weight, bias):
        super().__init__(weight, bias, layer.stride, 0, layer.dilation, layer.groups)
        self.pad, self.padding_mode = (
            list(layer._reversed_padding_repeated_twice),
            layer.padding_mode,
        )


class ModePaddedConv1d(Conv1d):
    """Conv1d with a non-zero ``padding_mode`` (as ModePaddedConv2d)."""

    def __init__(self, layer: torch.nn.Conv1d, weight, bias):
        conf = (layer.stride[0], 0, layer.dilation[0], layer.groups)
        super().__init__(weight, bias, *conf)
        self.pad, self.padding_mode = (
            list(layer._reversed_padding_repeated_twice),
            layer.padding_mode,
        )


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""
    t = torch.nn
    table = {getattr(t, n): Moved for n in _MOVES if hasattr(t, n)}
    table.update(
        {
            t.Unflatten: lambda m: Unflatten(m.dim, m.unflattened_size),
            t.Softmax2d: lambda m: Softmax(-3),
            t.AlphaDropout: lambda m: AlphaDropout(m.p),
            t.FeatureAlphaDropout: lambda m: AlphaDropout(m.p, True),
        }
    )
    return table


def mode_padded(m: torch.nn.Module, plain):
    """Our conv for a torch Conv1d/Conv2d with a non-zero padding_mode."""
    kind = ModePaddedConv2d if isinstance(m, torch.nn.Conv2d) else ModePaddedConv1d
    return kind(m, plain(m.weight), plain(m.bias))
