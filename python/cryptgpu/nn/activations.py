"""torch's activation layers beyond ReLU, Sigmoid, Tanh and GELU: LeakyReLU,
ReLU6, Hardtanh, ELU, SELU, CELU, SiLU, Mish, Hardswish, Hardsigmoid,
Softplus, LogSigmoid, Softsign, Tanhshrink, Hardshrink, Softshrink,
Threshold, Softmin, PReLU (a learnable slope per channel), and the
distances CosineSimilarity and PairwiseDistance, each the SharedTensor
method of the same meaning (tensor_activations.py: costs and accuracy), and
the table that converts torch's layers into them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._plain import plain_requires_grad
from ..tensor import SharedTensor
from .module import Module
from .stats import RELU, SOFTMAX
from .user_attrs import InPlace


class _Elementwise(InPlace, Module):
    """An activation: the SharedTensor method ``_method`` with the layer's
    arguments; torch's function of the same meaning on a plaintext tensor."""

    kind = RELU
    _method = ""
    _plain = None

    def __init__(self, inplace: bool = False, **kwargs):
        super().__init__()
        self._kwargs, self.inplace = kwargs, inplace

    def forward(self, x):
        """The activation of a SharedTensor (or of a plaintext tensor); with
        ``inplace``, x takes the result as torch's layer changes its input
        (``x.<method>_()``: refused on a leaf that requires grad, as torch;
        until 2026-12-07 a new tensor and x unchanged)."""
        method, kwargs = self._method, self._kwargs
        if isinstance(x, SharedTensor):
            if self._inplace:
                return x._in_place(method + "_", lambda t: getattr(t, method)(**kwargs))
            return getattr(x, method)(**kwargs)
        if self._inplace:
            return type(self)._plain(x, **kwargs, inplace=True)
        return type(self)._plain(x, **kwargs)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self._kwargs.items())
        inner += ", inplace=True" if self._inplace else ""
        return f"{type(self).__name__}({inner.lstrip(', ')})"


class LeakyReLU(_Elementwise):
    """``torch.nn.LeakyReLU(negative_slope=0.01)``."""

    _method, _plain = "leaky_relu", F.leaky_relu

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace, negative_slope=_number(negative_slope, "negative_slope"))


class Hardtanh(_Elementwise):
    """``torch.nn.Hardtanh(min_val=-1, max_val=1)``."""

    _method, _plain = "hardtanh", F.hardtanh

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(
            inplace, min_val=_number(min_val, "min_val"), max_val=_number(max_val, "max_val")
        )


class ELU(_Elementwise):
    """``torch.nn.ELU(alpha=1.0)``."""

    _method, _plain = "elu", F.elu

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace, alpha=_number(alpha, "alpha"))


class CELU(_Elementwise):
    """``torch.nn.CELU(alpha=1.0)``."""

    _method, _plain = "celu", F.celu

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace, alpha=_number(alpha, "alpha"))


class Softplus(_Elementwise):
    """``torch.nn.Softplus(beta=1, threshold=20)``."""

    _method, _plain = "softplus", F.softplus

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__(beta=_number(beta, "beta"), threshold=_number(threshold, "threshold"))


def _no_args(name: str, method: str, plain, inplace: bool = True):
    """A layer class without arguments (``inplace`` only where torch's has it)."""

    def with_inplace(self, inplace: bool = False):
        _Elementwise.__init__(self, inplace)

    def without(self):  # torch's LogSigmoid() takes no argument
        _Elementwise.__init__(self)

    __init__ = with_inplace if inplace else without
    __init__.__qualname__ = f"{name}.__init__"  # (a TypeError names the layer)

    doc = f"``torch.nn.{name}()``."
    return type(
        name,
        (_Elementwise,),
        {"_method": method, "_plain": plain, "__doc__": doc, "__init__": __init__},
    )


ReLU6 = _no_args("ReLU6", "relu6", F.relu6)
SELU = _no_args("SELU", "selu", F.selu)
SiLU = _no_args("SiLU", "silu", F.silu)
Mish = _no_args("Mish", "mish", F.mish)
Hardswish = _no_args("Hardswish", "hardswish", F.hardswish)
Hardsigmoid = _no_args("Hardsigmoid", "hardsigmoid", F.hardsigmoid)


LogSigmoid = _no_args("LogSigmoid", "logsigmoid", F.logsigmoid, inplace=False)
Softsign = _no_args("Softsign", "softsign", F.softsign, inplace=False)
Tanhshrink = _no_args("Tanhshrink", "tanhshrink", F.tanhshrink, inplace=False)


class Hardshrink(_Elementwise):
    """``torch.nn.Hardshrink(lambd=0.5)``."""

    _method, _plain = "hardshrink", F.hardshrink

    def __init__(self, lambd: float = 0.5):
        super().__init__(lambd=_number(lambd, "lambd"))


class Softshrink(_Elementwise):
    """``torch.nn.Softshrink(lambd=0.5)``: x - clamp(x, -lambd, lambd)."""

    _method, _plain = "softshrink", F.softshrink

    def __init__(self, lambd: float = 0.5):
        super().__init__(lambd=_number(lambd, "lambd"))


class Threshold(_Elementwise):
    """``torch.nn.Threshold(threshold, value)``: x above the threshold,
    ``value`` elsewhere."""

    _method, _plain = "threshold", F.threshold

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__(
            inplace, threshold=_number(threshold, "threshold"), value=_number(value, "value")
        )


class Softmin(_Elementwise):
    """``torch.nn.Softmin(dim=None)``: softmax(-x)."""

    _method, _plain = "softmin", F.softmin
    kind = SOFTMAX

    def __init__(self, dim=None):
        super().__init__(dim=dim)


class GLU(_Elementwise):
    """``torch.nn.GLU(dim=-1)``: a * sigmoid(b) of the two halves of ``dim``."""

    _method, _plain = "glu", F.glu

    def __init__(self, dim: int = -1):
        super().__init__(dim=dim)


class CosineSimilarity(Module):
    """``torch.nn.CosineSimilarity(dim=1, eps=1e-8)`` of two inputs."""

    kind = SOFTMAX

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        """The cosine of the angle between x1 and x2 along ``dim``."""
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """``torch.nn.PairwiseDistance(p=2.0, eps=1e-6, keepdim=False)`` of two
    inputs: ``F.pairwise_distance``'s, the module form."""

    kind = SOFTMAX

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        """The p-norm of x1 - x2 + eps along the last dim."""
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class PReLU(Module):
    """``torch.nn.PReLU(num_parameters=1, init=0.25)``: x for x >= 0, a x
    below, with a learnable slope a per channel (dim 1) or one for all;
    ``PReLU(weight)`` wraps a given slope tensor. One ReLU and one product."""

    kind = RELU

    def __init__(self, num_parameters=1, init: float = 0.25):
        super().__init__()
        if isinstance(num_parameters, int) and not isinstance(num_parameters, bool):
            weight = torch.full((num_parameters,), float(init))
        else:
            weight = num_parameters
        self.register_parameter("weight", weight)

    def forward(self, x):
        """relu(x) + a (x - relu(x)), a broadcast over dim 1."""
        w = self._params["weight"]
        if not isinstance(x, SharedTensor):
            return F.prelu(x, torch.as_tensor(w, dtype=x.dtype))
        n = w.shape[0] if w.dim() else 1
        shape = [n] + [1] * (x.dim() - 2) if x.dim() >= 2 and n > 1 else [n]
        a = (
            w.reshape(shape)
            if isinstance(w, SharedTensor)
            else torch.as_tensor(w, dtype=torch.float64).reshape(shape)
        )
        r = x.relu()
        return r + (x - r) * a


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer (``plain`` copies a
    torch parameter, keeping its frozen flag)."""
    t = torch.nn
    return {
        t.LeakyReLU: lambda m: LeakyReLU(m.negative_slope),
        t.GLU: lambda m: GLU(m.dim),
        t.CosineSimilarity: lambda m: CosineSimilarity(m.dim, m.eps),
        t.ReLU6: lambda m: ReLU6(),
        t.Hardtanh: lambda m: Hardtanh(m.min_val, m.max_val),
        t.ELU: lambda m: ELU(m.alpha),
        t.CELU: lambda m: CELU(m.alpha),
        t.SELU: lambda m: SELU(),
        t.SiLU: lambda m: SiLU(),
        t.Mish: lambda m: Mish(),
        t.Hardswish: lambda m: Hardswish(),
        t.Hardsigmoid: lambda m: Hardsigmoid(),
        t.Softplus: lambda m: Softplus(m.beta, m.threshold),
        t.PReLU: lambda m: PReLU(plain(m.weight)),
        t.LogSigmoid: lambda m: LogSigmoid(),
        t.Softsign: lambda m: Softsign(),
        t.Tanhshrink: lambda m: Tanhshrink(),
        t.Hardshrink: lambda m: Hardshrink(m.lambd),
        t.Softshrink: lambda m: Softshrink(m.lambd),
        t.PairwiseDistance: lambda m: PairwiseDistance(m.norm, m.eps, m.keepdim),
        t.Threshold: lambda m: Threshold(m.threshold, m.value),
        t.Softmin: lambda m: Softmin(m.dim),
    }


def _number(v, name: str) -> float:
    """A layer's number argument; a plaintext torch tensor that requires
    grad is torch's TypeError (its layer raises it in forward) at once:
    float() dropped its gradient with only torch's warning."""
    if isinstance(v, torch.Tensor) and v.requires_grad:
        raise TypeError(f"argument '{name}' must be Number, not Tensor: " + plain_requires_grad(v))
    return float(v)
