"""``torch.<function>(x)`` and ``torch.nn.functional.<function>(x)`` on a
SharedTensor, through torch's ``__torch_function__`` protocol: ``torch.cat``,
``torch.matmul(plain, shared)``, ``F.relu``, ``torch.exp``... run the
SharedTensor operation of the same meaning. torch.Tensor's own operators
(``t + x``, ``t @ x``, ``t < x``) are left to Python's reflected operators
of SharedTensor, as before. A function with no SharedTensor counterpart
raises NotImplementedError naming it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .functions import ratio_inv_sqrt
from .tensor_base import TensorBase
from .tensor_compare import where
from .tensor_shape import cat, stack


def _first_shared(args, cls):
    for a in args:
        if isinstance(a, cls):
            return a
    return None


def _product(name):
    def call(a, b, *, out=None):
        if out is not None:
            raise NotImplementedError(f"torch.{name}(..., out=) on a SharedTensor")
        if isinstance(a, TensorBase):
            return getattr(a, name)(b)
        return b.rmatmul(a) if name != "dot" else b.dot(a)

    return call


def _add(a, b, *, alpha=1, out=None):
    b = b * alpha if alpha != 1 else b
    return a.add(b) if isinstance(a, TensorBase) else b.add(a)


def _sub(a, b, *, alpha=1, out=None):
    b = b * alpha if alpha != 1 else b
    return a.sub(b) if isinstance(a, TensorBase) else b.neg().add(a)


def _mul(a, b, *, out=None):
    return a.mul(b) if isinstance(a, TensorBase) else b.mul(a)


def _div(a, b, *, rounding_mode=None, out=None):
    if rounding_mode is not None:
        raise NotImplementedError("torch.div with a rounding_mode on a SharedTensor")
    return a.div(b) if isinstance(a, TensorBase) else b.__rtruediv__(a)


def _where(cond, x, y):
    return where(cond, x, y)


def _cat(tensors, dim=0, *, out=None):
    return cat(tensors, dim)


def _stack(tensors, dim=0, *, out=None):
    return stack(tensors, dim)


def _softmax(x, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        raise TypeError("softmax: give dim (torch's implicit choice is deprecated)")
    return x.softmax(dim)


def _log_softmax(x, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        raise TypeError("log_softmax: give dim (torch's implicit choice is deprecated)")
    return x.log_softmax(dim)


def _linear(x, weight, bias=None):
    if isinstance(x, TensorBase):
        return x.linear(weight, bias)
    # a plaintext input: shared weights, or plaintext ones and a shared bias
    y = weight.t().rmatmul(x) if isinstance(weight, TensorBase) else x @ weight.t()
    return y if bias is None else y + bias


def _shared_input(x, weight, bias):
    """A convolution's input as a SharedTensor: a public torch input (with
    shared weights or bias) becomes a sharing of the public value (no
    messages)."""
    if isinstance(x, TensorBase):
        return x
    shared = weight if isinstance(weight, TensorBase) else bias
    return shared._public(torch.as_tensor(x, dtype=torch.float64).detach().numpy())


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = _shared_input(x, weight, bias)
    return x.conv2d(weight, bias, stride, padding, dilation, groups)


def _compare(name: str, flipped: str):
    """torch.lt(a, b) and the like with a SharedTensor on either side."""

    def call(a, b, *, out=None):
        if out is not None:
            raise NotImplementedError(f"torch.{name}(..., out=) on a SharedTensor")
        if isinstance(a, TensorBase):
            return getattr(a, name)(b)
        return getattr(b, flipped)(a)

    return call


def _max_pool2d(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    return x.max_pool2d(
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        return_indices=return_indices,
    )


def _avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    if ceil_mode or not count_include_pad or divisor_override is not None:
        raise NotImplementedError(
            "avg_pool2d with ceil_mode, count_include_pad=False or divisor_override"
        )
    return x.avg_pool2d(kernel_size, stride, padding)


def _pad(x, pad, mode="constant", value=None):
    if mode != "constant":
        raise NotImplementedError(f"F.pad with mode={mode!r} on a SharedTensor (only 'constant')")
    return x.pad(pad, 0.0 if value is None else value)


def _relu(x, inplace=False):
    if inplace:
        raise NotImplementedError("F.relu(..., inplace=True) on a SharedTensor")
    return x.relu()


def _unary(name):
    def call(x, *args, inplace=False, **kwargs):
        if inplace:
            raise NotImplementedError(f"F.{name}(..., inplace=True) on a SharedTensor")
        return getattr(x, name)(*args, **kwargs)

    return call


def _conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = _shared_input(x, weight, bias)
    return x.conv1d(weight, bias, stride, padding, dilation, groups)


def _max_pool1d(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if return_indices:
        raise NotImplementedError("max_pool1d with return_indices on a SharedTensor")
    return x.max_pool1d(kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if ceil_mode or not count_include_pad:
        raise NotImplementedError("avg_pool1d with ceil_mode or count_include_pad=False")
    return x.avg_pool1d(kernel_size, stride, padding)


def _dropout(x, p=0.5, training=True, inplace=False):
    return x.dropout(p, training, inplace)


def _public_like(fill):
    """torch.zeros_like / ones_like / full_like of a SharedTensor: a public
    torch tensor of its shape (the values are public, only the shape is used)."""

    def call(x, *args, dtype=None, **kwargs):
        value = args[0] if fill is None else fill
        return torch.full(tuple(x.shape), float(value), dtype=dtype or torch.get_default_dtype())

    return call


def _normalize(x, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) over ``dim``: for p = 2 one range-reduced
    ratio x / sqrt(sum x^2) (1e-4 relative, any scale of x)."""
    if p != 2:
        raise NotImplementedError(f"F.normalize with p={p} on a SharedTensor (p=2 only)")
    sq = (x * x).sum(dim, keepdim=True)
    return ratio_inv_sqrt(x, sq.expand_as(x), -16, 30)


def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):  # noqa: A002
    return x.norm(ord, dim, keepdim)


TABLE = {
    torch.matmul: _product("matmul"),
    torch.mm: _product("matmul"),
    torch.bmm: _product("matmul"),
    torch.dot: _product("dot"),
    torch.add: _add,
    torch.sub: _sub,
    torch.subtract: _sub,
    torch.mul: _mul,
    torch.multiply: _mul,
    torch.div: _div,
    torch.true_divide: _div,
    torch.where: _where,
    torch.cat: _cat,
    torch.concat: _cat,
    torch.stack: _stack,
    torch.softmax: _softmax,
    torch.log_softmax: _log_softmax,
    F.softmax: _softmax,
    F.log_softmax: _log_softmax,
    torch.lt: _compare("lt", "gt"),
    torch.le: _compare("le", "ge"),
    torch.gt: _compare("gt", "lt"),
    torch.ge: _compare("ge", "le"),
    torch.eq: _compare("eq", "eq"),
    torch.ne: _compare("ne", "ne"),
    # torch.Tensor's methods with a SharedTensor argument (t.dot(x), t.add(x))
    torch.Tensor.dot: _product("dot"),
    torch.Tensor.matmul: _product("matmul"),
    torch.Tensor.mm: _product("matmul"),
    torch.Tensor.add: _add,
    torch.Tensor.sub: _sub,
    torch.Tensor.mul: _mul,
    torch.Tensor.div: _div,
    F.relu: _relu,
    torch.relu: _relu,
    F.gelu: _unary("gelu"),
    F.sigmoid: _unary("sigmoid"),
    F.tanh: _unary("tanh"),
    F.hardtanh: _unary("hardtanh"),
    F.relu6: _unary("relu6"),
    F.leaky_relu: _unary("leaky_relu"),
    F.elu: _unary("elu"),
    F.selu: _unary("selu"),
    F.celu: _unary("celu"),
    F.silu: _unary("silu"),
    F.mish: _unary("mish"),
    F.hardswish: _unary("hardswish"),
    F.hardsigmoid: _unary("hardsigmoid"),
    F.softplus: _unary("softplus"),
    F.dropout: _dropout,
    F.conv1d: _conv1d,
    F.max_pool1d: _max_pool1d,
    F.avg_pool1d: _avg_pool1d,
    F.normalize: _normalize,
    torch.linalg.vector_norm: _vector_norm,
    torch.zeros_like: _public_like(0.0),
    torch.ones_like: _public_like(1.0),
    torch.full_like: _public_like(None),
    F.linear: _linear,
    F.conv2d: _conv2d,
    F.max_pool2d: _max_pool2d,
    F.avg_pool2d: _avg_pool2d,
    F.pad: _pad,
}


# torch functions (and torch.Tensor methods) of two tensors whose first is
# plaintext and second shared: the shared one's method of the mirrored name
_MIRRORED = {
    "maximum": "maximum",
    "minimum": "minimum",
    "max": "maximum",
    "min": "minimum",
    "fmax": "maximum",
    "fmin": "minimum",
    "eq": "eq",
    "ne": "ne",
    "lt": "gt",
    "le": "ge",
    "gt": "lt",
    "ge": "le",
    "less": "gt",
    "greater": "lt",
}


def torch_function(cls, func, types, args=(), kwargs=None):
    """SharedTensor.__torch_function__ (see the module docstring)."""
    kwargs = kwargs or {}
    name = getattr(func, "__name__", None) or str(func)
    if kwargs.get("out") is not None:
        raise NotImplementedError(
            f"torch.{name}(..., out=) with a SharedTensor: assign the result instead "
            f"(y = torch.{name}(...))"
        )
    kwargs.pop("out", None)
    impl = TABLE.get(func)
    if impl is not None:
        return impl(*args, **kwargs)
    if name in ("to", "type_as") and isinstance(args[0], torch.Tensor) and len(args) > 1:
        if _first_shared(args[1:], cls) is not None:
            # t.to(x) / t.type_as(x) with x private (h0 = torch.zeros(...).to(x)):
            # x's dtype and device for a public tensor, float64 here
            return args[0].to(torch.float64)
    if (
        len(args) == 2
        and not kwargs
        and name in _MIRRORED
        and not isinstance(args[0], cls)
        and isinstance(args[1], cls)
    ):
        return getattr(args[1], _MIRRORED[name])(args[0])
    if name.startswith("__") or getattr(torch.Tensor, name, None) is func:
        # torch.Tensor's operators and methods: Python then tries
        # SharedTensor's reflected operator (t + x, t @ x, t < x).
        return NotImplemented
    x = args[0] if args else None
    if (
        isinstance(x, cls)
        and getattr(torch, name, None) is func
        and callable(getattr(cls, name, None))
    ):
        return getattr(x, name)(*args[1:], **kwargs)
    raise NotImplementedError(
        f"{name} on a SharedTensor is not supported (README, 'What is supported', lists what is)"
    )
