"""torch layers and functions composed of a few private operations, which a
converted model refused until 2026-12-06 though their parts converted:
``nn.Bilinear`` / ``F.bilinear`` (two batched products), ``nn.RReLU`` /
``F.rrelu`` (in eval mode LeakyReLU with the mean slope; in training
random slopes drawn from the parties' joint generator, as dropout masks:
public, independent of the data, torch's distribution but not torch's
draws), and the table of the torch functions a converted forward calls
for these and for ``F.softshrink``, ``torch.linalg.vector_norm``,
``torch.var_mean`` and ``torch.std_mean`` (SharedTensor's own), and for
torch's comparisons by their short names, count_nonzero, nansum,
linalg.norm and the logical ops (``&``, ``|``, ``^``, ``~`` too).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from .. import _session
from .._plain import plain_requires_grad
from ..tensor import SharedTensor
from ..torch_dispatch import TABLE
from .layers import _fresh, _like
from .module import Module
from .stats import LINEAR, OTHER, RELU
from .user_attrs import InPlace


def _operand(x):
    """A SharedTensor as it is; anything else as a float64 torch tensor."""
    return x if isinstance(x, SharedTensor) else torch.as_tensor(x, dtype=torch.float64)


def _mm(a, b):
    """a @ b where either, both or neither is a SharedTensor."""
    if isinstance(a, SharedTensor):
        return a.matmul(b)
    if isinstance(b, SharedTensor):
        return b.rmatmul(a)
    return a @ b


def _check_bilinear(x1, x2, weight) -> None:
    """torch's RuntimeErrors of ``F.bilinear``."""
    for i, x in ((1, x1), (2, x2)):
        if x.shape[-1] != weight.shape[i]:
            raise RuntimeError(
                f"bilinear(): input{i} size does not match weight size: got "
                f"{x.shape[-1]} but expected {weight.shape[i]}"
            )
    a, b = tuple(x1.shape[:-1]), tuple(x2.shape[:-1])
    if a != b:
        d = next((i for i, (u, v) in enumerate(zip(a, b)) if u != v), min(len(a), len(b)))
        got = (a[d] if d < len(a) else None, b[d] if d < len(b) else None)
        raise RuntimeError(
            f"bilinear(): input batch dimensions do not match at dim {d}: got {got[0]} and {got[1]}"
        )


def bilinear(input1, input2, weight, bias=None):
    """``F.bilinear``: y[..., o] = x1 A[o] x2 + b[o] for A [out, in1, in2],
    as x1 times A laid out [in1, out * in2] (one product per output, one
    truncation), then each sample's [out, in2] block times its x2 (a
    batched product, one truncation): exact products of the shares, the
    gradient of each recorded; any operand may be public."""
    _check_bilinear(input1, input2, weight)
    if not any(isinstance(t, SharedTensor) for t in (input1, input2, weight, bias)):
        return F.bilinear(input1, input2, *_like(input1, weight, bias))
    x1, x2, w = _operand(input1), _operand(input2), _operand(weight)
    out, in1, in2 = w.shape
    lead = tuple(x1.shape[:-1])
    n = math.prod(lead)
    u = _mm(x1.reshape(n, in1), w.permute(1, 0, 2).reshape(in1, out * in2))
    y = _mm(u.reshape(n, out, in2), x2.reshape(n, in2, 1)).reshape(*lead, out)
    return y if bias is None else y + _operand(bias)


class Bilinear(Module):
    """``torch.nn.Bilinear(in1_features, in2_features, out_features,
    bias=True)`` (torch's initialisation), or ``Bilinear(weight=, bias=)``
    wrapping given parameters (a converted layer): :func:`bilinear`."""

    kind = LINEAR

    def __init__(self, *args, weight=None, bias=None, **kwargs):
        super().__init__()
        if weight is None:
            weight, bias = _fresh(torch.nn.Bilinear(*args, **kwargs), self)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)

    def forward(self, input1, input2):
        """x1 A x2 + b of the two inputs."""
        return bilinear(input1, input2, self._params["weight"], self._params["bias"])


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):  # noqa: A002
    """``F.rrelu``: x for x >= 0, a x below; in eval mode a = (lower +
    upper) / 2 (LeakyReLU's one ReLU and one public product); in training
    a ~ U(lower, upper) per element from the parties' joint generator
    (public, as dropout masks), gradient 1 above 0 and a below, as
    torch's for its draw. ``inplace``: x takes the result (``_in_place``)."""
    if lower > upper:
        raise RuntimeError("Lower bound should be less than or equal to the upper bound")
    if not isinstance(input, SharedTensor):
        return F.rrelu(input, lower, upper, training, inplace)
    for name, v in (("lower", lower), ("upper", upper)):  # torch's TypeError
        if isinstance(v, torch.Tensor) and v.requires_grad:
            raise TypeError(
                f"rrelu(): argument '{name}' must be Number, not Tensor: " + plain_requires_grad(v)
            )
    if inplace:
        return input._in_place("rrelu_", lambda t: rrelu(t, lower, upper, training))
    if not training:
        return input.leaky_relu((lower + upper) / 2)
    g = _session.common_generator()
    a = torch.rand(tuple(input.shape), generator=g, dtype=torch.float64)
    a = a * (upper - lower) + lower
    r = input.relu()
    return r + (input - r) * a


class RReLU(InPlace, Module):
    """``torch.nn.RReLU(lower=1/8, upper=1/3)``: :func:`rrelu` in the
    layer's mode."""

    kind = RELU

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False):
        super().__init__()
        self.lower, self.upper, self.inplace = float(lower), float(upper), inplace

    def forward(self, x):
        """The randomized leaky ReLU of ``x`` (fixed mean slope in eval mode)."""
        return rrelu(x, self.lower, self.upper, self.training, self._inplace)


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""
    t = torch.nn
    return {
        t.Bilinear: lambda m: Bilinear(weight=plain(m.weight), bias=plain(m.bias)),
        t.RReLU: lambda m: RReLU(m.lower, m.upper),
    }


TABLE.update({F.bilinear: bilinear, torch.bilinear: bilinear, F.rrelu: rrelu})

# the torch functions a converted forward calls (functional.FUNCTIONS)
FUNCTIONS = {
    F.bilinear: (bilinear, LINEAR),
    torch.bilinear: (bilinear, LINEAR),
    F.rrelu: (rrelu, RELU),
    F.softshrink: (TABLE[F.softshrink], RELU),
    torch.linalg.vector_norm: (TABLE[torch.linalg.vector_norm], OTHER),
    torch.var_mean: (TABLE[torch.var_mean], OTHER),
    torch.std_mean: (TABLE[torch.std_mean], OTHER),
    # torch's aliases, as the SharedTensor's (torch_dispatch.TABLE)
    **{f: (f, OTHER) for f in (torch.divide, torch.multiply, torch.subtract, torch.negative)},
    **{
        f: (f, RELU)
        for f in (torch.absolute, torch.greater, torch.greater_equal, torch.less)
        + (torch.less_equal, torch.not_equal)
        # torch's short names (refused until 2026-12-07, while the aliases ran)
        + (torch.gt, torch.lt, torch.ge, torch.le, torch.eq, torch.ne)
    },
    # SharedTensor's own (refused in a forward until 2026-12-07, though they
    # ran on a SharedTensor): torch's call, sent to the method of its name
    torch.count_nonzero: (torch.count_nonzero, RELU),
    torch.nansum: (torch.nansum, OTHER),
    torch.linalg.norm: (TABLE[torch.linalg.norm], OTHER),
    # of 0/1 values (comparison results; public masks as before): products
    **{f: (f, OTHER) for f in (torch.logical_and, torch.logical_or, torch.logical_xor)},
    **{f: (f, OTHER) for f in (torch.logical_not, operator.and_, operator.or_, operator.xor)},
    operator.invert: (operator.invert, OTHER),
}

# the tensor methods of these a converted forward calls (functional.METHODS)
METHODS = {
    "count_nonzero": RELU,
    "nansum": OTHER,
    **dict.fromkeys(("logical_and", "logical_or", "logical_xor", "logical_not"), OTHER),
}
