"""``torch.<function>(x)`` and ``torch.nn.functional.<function>(x)`` on a
SharedTensor, through torch's ``__torch_function__`` protocol: ``torch.cat``,
``torch.matmul(plain, shared)``, ``F.relu``, ``torch.exp``... run the
SharedTensor operation of the same meaning. torch.Tensor's own operators
(``t + x``, ``t @ x``, ``t < x``) are left to Python's reflected operators
of SharedTensor, as before. A function with no SharedTensor counterpart
raises NotImplementedError naming it.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np
import torch
import torch.nn.functional as F

from . import autograd as ag
from ._keywords import positional
from ._plain import _float64, _varargs, in_augmented_assignment, softmax_dim
from .einsum import einsum
from .tensor_base import SecretValueError, TensorBase
from .tensor_compare import where
from .tensor_more import TABLE as _MORE
from .tensor_more import unit
from .tensor_shape import cat, stack
from .tensor_torchlike import check_product


def _first_shared(args, cls):
    for a in args:
        if isinstance(a, cls):
            return a
    return None


def _product(name):
    """torch.<name>(a, b) (mm, bmm, outer, dot, matmul) with a SharedTensor
    on either side: torch's rank checks, then the product."""

    def call(a, b=None, *, out=None, **kw):
        if out is not None:
            raise NotImplementedError(f"torch.{name}(..., out=) on a SharedTensor")
        b = _second(b, kw, _SECOND[name], name)
        if isinstance(a, TensorBase):
            return getattr(a, name)(b)
        if name in ("mm", "bmm", "outer"):
            check_product(name, getattr(a, "shape", np.shape(a)), b.shape)
        if name == "dot":
            return b.dot(a)
        if name == "outer":  # a[i] b[j]: the plaintext column times the shared row
            return b.reshape(1, -1) * _float64(a, "outer").reshape(-1, 1)
        return b.rmatmul(a)

    return call


# torch's keyword names of the two factors
_PRODUCT_NAMES = {
    "addmm": ("mat1", "mat2"),
    "baddbmm": ("batch1", "batch2"),
    "addbmm": ("batch1", "batch2"),
    "addmv": ("mat", "vec"),
}


def _added_product(name, product):
    """torch.<name>(input, a, b, *, beta=1, alpha=1) (addmm, baddbmm,
    addbmm, addmv): beta * input + alpha * the product (addbmm's summed
    over the batch), with a SharedTensor anywhere; beta=0 ignores input's
    values, as torch does (its shape must still broadcast)."""

    names = _PRODUCT_NAMES[name]

    def call(input, *ab, beta=1, alpha=1, out=None, **named):
        if out is not None:
            raise NotImplementedError(f"torch.{name}(..., out=) on a SharedTensor")
        ab = ab + tuple(named.pop(n) for n in names[len(ab) :] if n in named)
        if named or len(ab) != 2:
            raise TypeError(f"{name}() takes input, {names[0]} and {names[1]}")
        a, b = ab
        shapes = [tuple(getattr(t, "shape", np.shape(t))) for t in (a, b)]
        if name == "addmv" and (len(shapes[0]), len(shapes[1])) != (2, 1):
            raise RuntimeError(
                f"addmv: expected a matrix and a vector, got {len(shapes[0])}-D and "
                f"{len(shapes[1])}-D"
            )
        if isinstance(a, TensorBase) or isinstance(b, TensorBase):
            p = _product(product)(a, b)
        else:  # public matrices, a shared input: the product in plaintext
            p = getattr(torch, product)(_float64(a, name), _float64(b, name))
        p = p.sum(0) if name == "addbmm" else p
        shape = tuple(p.shape)
        try:
            wide = torch.broadcast_shapes(tuple(getattr(input, "shape", np.shape(input))), shape)
        except RuntimeError:
            wide = None
        if wide != shape:
            raise RuntimeError(
                f"{name}: input of shape {list(input.shape)} does not "
                f"broadcast to the product's {list(shape)}"
            )
        alpha, beta = (
            _float64(v, f"{name}'s {w}").item() for v, w in ((alpha, "alpha"), (beta, "beta"))
        )
        p = p if alpha == 1 else p * alpha
        return p if beta == 0 else p + (input if beta == 1 else input * beta)

    return call


def _pow(a, b):
    """torch.pow(a, b) and t ** x: x.pow(p), or b ** x for a public base."""
    return a.pow(b) if isinstance(a, TensorBase) else b.__rpow__(a)


# the keyword name torch gives the second operand of each product
_SECOND = {"mm": "mat2", "bmm": "mat2", "outer": "vec2", "dot": "tensor", "matmul": "other"}


def _second(b, kw, name, what):
    """The second operand, given positionally or by torch's keyword ``name``."""
    if kw:
        (b,) = _varargs(() if b is None else (b,), kw, name, what)
    if b is None:
        raise TypeError(f"{what}() missing 1 required positional argument: '{name}'")
    return b


def _add(a, b=None, *, alpha=1, out=None, **kw):
    b = _second(b, kw, "other", "add")
    b = b * alpha if alpha != 1 else b
    return a.add(b) if isinstance(a, TensorBase) else b.add(a)


def _sub(a, b=None, *, alpha=1, out=None, **kw):
    b = _second(b, kw, "other", "sub")
    b = b * alpha if alpha != 1 else b
    return a.sub(b) if isinstance(a, TensorBase) else b.__rsub__(a)


def _mul(a, b=None, *, out=None, **kw):
    b = _second(b, kw, "other", "mul")
    return a.mul(b) if isinstance(a, TensorBase) else b.mul(a)


def _div(a, b=None, *, rounding_mode=None, out=None, **kw):
    b = _second(b, kw, "other", "div")
    if rounding_mode is not None:
        if not isinstance(a, TensorBase):
            raise NotImplementedError(
                f"torch.div with rounding_mode={rounding_mode!r} by a SharedTensor: only a "
                "public divisor is exact"
            )
        return a.div(b, rounding_mode=rounding_mode)
    return a.div(b) if isinstance(a, TensorBase) else b.__rtruediv__(a)


def _rounding(name):
    """torch.remainder / fmod / floor_divide: a shared dividend's method; a
    shared divisor (``torch.remainder(7.0, x)``) is refused as the method's."""

    def call(a, b=None, *, out=None, **kw):
        b = _second(b, kw, "other", name)
        if isinstance(a, TensorBase):
            return getattr(a, name)(b)
        raise NotImplementedError(
            f"torch.{name} by a SharedTensor: only a public divisor is exact (x % 2, x // 1.5)"
        )

    return call


def _where(condition, input=None, other=None):  # noqa: A002 - torch's names
    """torch.where(condition, x, y): a plaintext condition must be a bool
    tensor, as torch's (a shared 0/1 one, a comparison's result, is the
    private form)."""
    if isinstance(condition, torch.Tensor) and condition.dtype != torch.bool:
        kind = condition.detach().cpu().new_empty(0).type().split(".")[-1]
        raise RuntimeError(
            "where expected condition to be a boolean tensor, but got a tensor with "
            f"dtype {kind.replace('Tensor', '')}"
        )
    if input is None or other is None:
        raise NotImplementedError("torch.where(condition) (the nonzero form) on a SharedTensor")
    return where(condition, input, other)


def _dim_or_axis(dim, axis, what):
    """torch's ``axis=`` alias of ``dim=`` in cat and stack."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError(f"{what}() got multiple values for argument 'dim'")
    return axis


def _cat(tensors, dim=None, *, axis=None, out=None):
    d = _dim_or_axis(dim, axis, "cat")
    return cat(tensors, 0 if d is None else d)


def _stack(tensors, dim=None, *, axis=None, out=None):
    d = _dim_or_axis(dim, axis, "stack")
    return stack(tensors, 0 if d is None else d)


def _softmax(x, dim=None, _stacklevel=3, dtype=None):
    # no dim: torch's legacy choice, with its warning (until 2026-12-06 a
    # TypeError here, where nn.Softmax() and F.softmin followed torch)
    return x.softmax(softmax_dim("softmax", dim, x.dim(), 4), dtype)


def _log_softmax(x, dim=None, _stacklevel=3, dtype=None):
    return x.log_softmax(softmax_dim("log_softmax", dim, x.dim(), 4), dtype)


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
    return shared._public(_float64(x, "convolution input").detach().numpy())


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = _shared_input(x, weight, bias)
    return x.conv2d(weight, bias, stride, padding, dilation, groups)


def _compare(name: str, flipped: str):
    """torch.lt(a, b) and the like with a SharedTensor on either side."""

    def call(a, b=None, *, out=None, **kw):
        if out is not None:
            raise NotImplementedError(f"torch.{name}(..., out=) on a SharedTensor")
        b = _second(b, kw, _SECOND.get(name, "other"), name)
        if isinstance(a, TensorBase):
            return getattr(a, name)(b)
        return getattr(b, flipped)(a)

    return call


def _max_pool2d_with_indices(x, *args, **kwargs):
    raise NotImplementedError(
        "F.max_pool2d(..., return_indices=True) on a SharedTensor: torch's flat indices of "
        "the maxima would be secret positions (and MaxUnpool2d would need them public); "
        "x.max_pool2d(kernel, padding, stride, return_indices=True) gives the one-hot mask "
        "of each window's maximum instead"
    )


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


def _avg_pool2d(x, *args, **kwargs):
    # the method takes torch's signature (ceil_mode, count_include_pad,
    # divisor_override included)
    return x.avg_pool2d(*args, **kwargs)


def _pad(x, pad, mode="constant", value=None):
    if value is not None and (isinstance(value, (str, bytes)) or not hasattr(value, "__float__")):
        raise TypeError(
            f"pad(): argument 'value' (position 4) must be float, not {type(value).__name__}"
        )
    return x.pad(pad, 0.0 if value is None else value, mode=mode)


def _alpha_dropout(x, p=0.5, training=False, inplace=False):
    if training and p > 0:
        raise NotImplementedError("alpha_dropout in training mode on a SharedTensor")
    return x


def _unary(name):
    """F.<name>(x, ...) as x.<name>(...); with torch's ``inplace=True``
    (by keyword or in its position) x takes the result, as x.<name>_()
    does (on a recorded result as ``_in_place`` takes it; refused on a
    leaf that requires grad)."""
    fn = getattr(F, name, None) or getattr(torch, name)
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    at = params.index("inplace") - 1 if "inplace" in params else None

    def call(x, *args, **kwargs):
        inplace = kwargs.pop("inplace", False)
        if at is not None and len(args) > at:
            args, inplace = args[:at] + args[at + 1 :], args[at]
        if inplace:
            return x._in_place(name + "_", lambda t: getattr(t, name)(*args, **kwargs))
        return getattr(x, name)(*args, **kwargs)

    return call


_relu = _unary("relu")


def _in_place_f(name):
    """F.<name>_(x, ...) (F.hardtanh_, F.elu_, ...): x.<name>(...) taken in place."""
    return lambda x, *a, **k: x._in_place(name + "_", lambda t: getattr(t, name)(*a, **k))


def _conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = _shared_input(x, weight, bias)
    return x.conv1d(weight, bias, stride, padding, dilation, groups)


def _conv_transpose(name):
    def call(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        x = _shared_input(x, weight, bias)
        return getattr(x, name)(weight, bias, stride, padding, output_padding, groups, dilation)

    return call


def _max_pool1d(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if return_indices:
        raise NotImplementedError("max_pool1d with return_indices on a SharedTensor")
    return x.max_pool1d(kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return x.avg_pool1d(kernel_size, stride, padding, ceil_mode, count_include_pad)


def _dropout(x, p=0.5, training=True, inplace=False):
    return x.dropout(p, training, inplace)


def _public_like(fill):
    """torch.zeros_like / ones_like / full_like (empty_like) of a SharedTensor: a public
    torch tensor of its shape (the values are public, only the shape is used)."""

    def call(x, *args, dtype=None, **kwargs):
        value = args[0] if fill is None else fill
        if isinstance(value, TensorBase):  # a private fill value stays private
            return x * 0 + value
        return torch.full(tuple(x.shape), float(value), dtype=dtype or torch.get_default_dtype())

    return call


def _normalize(x, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) over ``dim``: for p = 2 the row's sum of
    squares range-reduced once (:func:`cryptgpu.unit_rows.unit`: 1e-4
    relative plus two units for elements below 2^(31 - f) and sums of squares
    in [2^-16, 2^46), rows of norm 4e-3 to 2^23; until 2026-12-06 sums of
    squares above 2^30 gave garbage)."""
    if p != 2:
        raise NotImplementedError(f"F.normalize with p={p} on a SharedTensor (p=2 only)")
    u = unit(x, dim)  # one range reduction per row, x broadcast
    if eps * eps < 2.0 ** -x._s().precision_bits:  # below the squares' resolution: no effect
        return u
    # a row shorter than eps is x / eps, as torch's max(||x||, eps): its sum
    # of squares against eps^2 (until 2026-12-07 eps was ignored), of x
    # clamped to +-eps first (the same answer: an element past eps makes
    # the row long either way) so that no square can fail its truncation
    xc = x.clamp(-eps, eps)
    short = (xc * xc).sum(dim, keepdim=True) < eps * eps
    return torch.where(short, x * (1.0 / eps), u)


def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):  # noqa: A002
    return x.norm(ord, dim, keepdim)


def _seq(v):
    return [v] if v is None or not isinstance(v, (list, tuple)) else list(v)


def _autograd_grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    only_inputs=True,
    allow_unused=None,
    is_grads_batched=False,
    materialize_grads=False,
):
    """``torch.autograd.grad`` on SharedTensors: the gradients of
    ``outputs`` with respect to ``inputs``, returned (shared), without
    touching any ``.grad``; the graph is freed unless ``retain_graph``."""
    if create_graph:
        raise NotImplementedError("torch.autograd.grad(create_graph=True): higher-order gradients")
    if is_grads_batched:
        raise NotImplementedError("torch.autograd.grad(is_grads_batched=True)")
    outs, ins = _seq(outputs), _seq(inputs)
    gos = _seq(grad_outputs) if grad_outputs is not None else [None] * len(outs)
    got = ag.backward(outs, gos, bool(retain_graph), ins, collect=True)
    if not (allow_unused or materialize_grads) and any(g is None for g in got):
        raise RuntimeError(
            "One of the differentiated Tensors appears to not have been used in the graph. "
            "Set allow_unused=True if this is the desired behavior."
        )
    if materialize_grads:
        with ag.no_grad():  # zeros, not a recorded product
            got = [t * 0 if g is None else g for g, t in zip(got, ins)]
    return tuple(got)


def _autograd_backward(
    tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None, **kw
):
    """``torch.autograd.backward`` on SharedTensors (several outputs at once)."""
    if create_graph:
        raise NotImplementedError("torch.autograd.backward(create_graph=True)")
    outs = _seq(tensors)
    gs = _seq(grad_tensors) if grad_tensors is not None else [None] * len(outs)
    ag.backward(outs, gs, bool(retain_graph), None if inputs is None else _seq(inputs))


TABLE = {
    torch.einsum: einsum,
    torch.autograd.grad: _autograd_grad,
    torch.autograd.backward: _autograd_backward,
    torch.matmul: _product("matmul"),
    torch.mm: _product("mm"),
    torch.bmm: _product("bmm"),
    torch.addmm: _added_product("addmm", "mm"),
    torch.baddbmm: _added_product("baddbmm", "bmm"),
    torch.addbmm: _added_product("addbmm", "bmm"),
    torch.addmv: _added_product("addmv", "matmul"),
    # the same as methods of a public tensor (alibi.baddbmm(q, k) in Bloom)
    torch.Tensor.addmm: _added_product("addmm", "mm"),
    torch.Tensor.baddbmm: _added_product("baddbmm", "bmm"),
    torch.Tensor.addbmm: _added_product("addbmm", "bmm"),
    torch.Tensor.addmv: _added_product("addmv", "matmul"),
    torch.outer: _product("outer"),
    torch.ger: _product("outer"),
    torch.dot: _product("dot"),
    torch.add: _add,
    torch.sub: _sub,
    torch.subtract: _sub,
    torch.mul: _mul,
    torch.multiply: _mul,
    torch.div: _div,
    **{getattr(torch, n): _rounding(n) for n in ("remainder", "fmod", "floor_divide")},
    torch.true_divide: _div,
    torch.divide: _div,
    torch.negative: lambda x, *, out=None: x.neg(),
    torch.absolute: lambda x, *, out=None: x.abs(),
    torch.where: _where,
    torch.cat: _cat,
    torch.concat: _cat,
    getattr(torch, "concatenate", torch.concat): _cat,  # torch 2.1's alias of cat
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
    torch.greater: _compare("gt", "lt"),
    torch.greater_equal: _compare("ge", "le"),
    torch.less: _compare("lt", "gt"),
    torch.less_equal: _compare("le", "ge"),
    torch.not_equal: _compare("ne", "ne"),
    # torch.Tensor's methods with a SharedTensor argument (t.dot(x), t.add(x))
    torch.Tensor.dot: _product("dot"),
    torch.Tensor.matmul: _product("matmul"),
    torch.Tensor.mm: _product("mm"),
    torch.Tensor.bmm: _product("bmm"),
    torch.Tensor.outer: _product("outer"),
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
    **{getattr(F, n + "_"): _in_place_f(n) for n in ("hardtanh", "elu", "leaky_relu", "celu")},
    **{getattr(F, n + "_"): _in_place_f(n) for n in ("threshold", "selu")},
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
    F.conv_transpose1d: _conv_transpose("conv_transpose1d"),
    F.conv_transpose2d: _conv_transpose("conv_transpose2d"),
    F.max_pool1d: _max_pool1d,
    F.avg_pool1d: _avg_pool1d,
    F.normalize: _normalize,
    torch.linalg.vector_norm: _vector_norm,
    torch.zeros_like: _public_like(0.0),
    torch.empty_like: _public_like(0.0),  # torch's values are unspecified: zeros are some
    torch.ones_like: _public_like(1.0),
    torch.full_like: _public_like(None),
    F.linear: _linear,
    F.conv2d: _conv2d,
    F.max_pool2d: _max_pool2d,
    F.max_pool2d_with_indices: _max_pool2d_with_indices,
    F.avg_pool2d: _avg_pool2d,
    F.pad: _pad,
    F.alpha_dropout: _alpha_dropout,
    F.feature_alpha_dropout: _alpha_dropout,
    F.channel_shuffle: lambda x, groups: x._moved(lambda i: F.channel_shuffle(i, groups)),
    torch.channel_shuffle: lambda x, groups: x._moved(lambda i: torch.channel_shuffle(i, groups)),
    F.pixel_shuffle: lambda x, r: x._moved(lambda i: F.pixel_shuffle(i, r)),
    F.pixel_unshuffle: lambda x, r: x._moved(lambda i: F.pixel_unshuffle(i, r)),
    torch.special.erf: _unary("erf"),
    torch.pow: _pow,
    torch.Tensor.pow: _pow,
    torch.Tensor.__pow__: _pow,
    F.logsigmoid: _unary("logsigmoid"),
    F.softsign: _unary("softsign"),
    F.tanhshrink: _unary("tanhshrink"),
    F.hardshrink: _unary("hardshrink"),
    F.softshrink: _unary("softshrink"),
    F.threshold: _unary("threshold"),
    F.softmin: lambda x, dim=None, _stacklevel=3, dtype=None: x.softmin(dim, dtype),
    torch.special.expit: _unary("sigmoid"),
    torch.special.logsumexp: lambda x, dim, keepdim=False: x.logsumexp(dim, keepdim),
    **_MORE,
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


# t.<name>(x) with t public and x private: t shaped by x's public shape
_SHAPED_LIKE = {"expand_as": "expand", "view_as": "view", "reshape_as": "reshape"}


def _public_self(cls, name, x, rest, kwargs):
    """``t.scatter(1, idx, s)``, ``t.lerp(s, 0.5)``, ``torch.addcmul(t, s, s)``:
    a public torch tensor ``t`` in the place of self, a SharedTensor among
    the other arguments. ``t`` is taken as a sharing of its public value (no
    messages; one that requires grad is noted as any plaintext operand) and
    the SharedTensor method of that name runs (torch's dispatch said only
    "Multiple dispatch failed ... returned NotImplemented")."""
    shared = _first_shared((*rest, *kwargs.values()), cls)
    method = getattr(cls, name, None)
    if not callable(method) or getattr(method, "unsupported", False):
        # no SharedTensor method to run once t is shared: no such hint
        raise NotImplementedError(
            f"{name} is not supported on SharedTensors (README, 'What is supported', lists what is)"
        )
    if shared is None:
        raise NotImplementedError(
            f"{name} with a public torch tensor as self and a SharedTensor argument is not "
            "supported (README, 'What is supported', lists what is); share the torch "
            "tensor first (cryptgpu.cryptensor(t))"
        )
    public = shared._public(shared._plain(x, name))
    return getattr(public, name)(*rest, **kwargs)


# torch.Tensor's methods that t += s, -=, *=, /=, **= call (t's __iadd__
# took our SecretValueError for a TypeError, then tried t + s)
_AUGMENTED = ("add", "sub", "mul", "div", "pow")


def _augmented(cls, args, kwargs) -> bool:
    """A torch tensor's ``t + s`` for ``t += s`` (frame 3: the caller's)."""
    if len(args) != 2 or kwargs or isinstance(args[0], cls) or not isinstance(args[1], cls):
        return False
    return isinstance(args[0], torch.Tensor) and in_augmented_assignment(sys._getframe(3))


def torch_function(cls, func, types, args=(), kwargs=None):
    """SharedTensor.__torch_function__ (see the module docstring)."""
    args, kwargs = positional(func, args, kwargs or {})  # torch.mean(input=x): _keywords.py
    name = getattr(func, "__name__", None) or str(func)
    if kwargs.get("out") is not None:
        raise NotImplementedError(
            f"torch.{name}(..., out=) with a SharedTensor: assign the result instead "
            f"(y = torch.{name}(...))"
        )
    kwargs.pop("out", None)
    if name in _AUGMENTED and _augmented(cls, args, kwargs):
        return NotImplemented  # t += s: the reflected operator refuses (tensor.py)
    impl = TABLE.get(func)
    if impl is not None:
        return impl(*args, **kwargs)
    if name in ("to", "type_as") and isinstance(args[0], torch.Tensor) and len(args) > 1:
        if isinstance(args[1], cls):
            # t.to(x) / t.type_as(x) with x private (h0 = torch.zeros(...).to(x)):
            # a public tensor of x's dtype (the default one; public values stay on
            # the host), as torch's: t itself where that is t's dtype
            copy = kwargs.get("copy", args[3] if len(args) > 3 else False)
            return args[0].to(args[1].dtype, copy=name == "to" and bool(copy))
    if name in _SHAPED_LIKE and isinstance(args[0], torch.Tensor) and isinstance(args[1], cls):
        # a public mask shaped like private scores (HF DistilBERT's eager
        # attention: (mask == 0).view(...).expand_as(scores)): a public result
        return getattr(args[0], _SHAPED_LIKE[name])(tuple(args[1].shape))
    if (
        len(args) == 2
        and not kwargs
        and name in _MIRRORED
        and not isinstance(args[0], cls)
        and isinstance(args[1], cls)
    ):
        return getattr(args[1], _MIRRORED[name])(args[0])
    if name in ("copy_", "set_") and isinstance(args[0], torch.Tensor):
        # t.copy_(x): a torch model's load_state_dict(private.state_dict())
        raise SecretValueError(
            f"Tensor.{name} from a SharedTensor: its value is secret; open it with "
            "get_plain_text() (a private model: model.decrypt() before state_dict(), or "
            "model.decrypt().to_pytorch(torch_model))"
        )
    if (
        args
        and isinstance(args[0], torch.Tensor)
        and (name == "__setitem__" or (name.endswith("_") and not name.startswith("_")))
        and _first_shared((*args[1:], *kwargs.values()), cls) is not None
    ):
        # t.add_(x), t[0] = x[0]: were torch's "Multiple dispatch failed"
        raise SecretValueError(
            f"Tensor.{name} with a SharedTensor operand: a torch tensor cannot hold a "
            "secret value; share it first (s = cryptgpu.cryptensor(t), then change s), "
            "or open the SharedTensor with get_plain_text()"
        )
    if name.startswith("__"):
        # torch.Tensor's operators: Python then tries SharedTensor's
        # reflected operator (t + x, t @ x, t < x).
        return NotImplemented
    x = args[0] if args else None
    method = getattr(torch.Tensor, name, None) is func
    if (
        isinstance(x, torch.Tensor)
        and not isinstance(x, cls)
        and (method or getattr(torch, name, None) is func)
    ):
        return _public_self(cls, name, x, args[1:], kwargs)
    if method:  # a SharedTensor as self of torch.Tensor's method: torch's TypeError
        return NotImplemented
    if (
        isinstance(x, cls)
        and getattr(torch, name, None) is func
        and callable(getattr(cls, name, None))
    ):
        return getattr(x, name)(*args[1:], **kwargs)
    raise NotImplementedError(
        f"{name} on a SharedTensor is not supported (README, 'What is supported', lists what is)"
    )
