"""The torch functions a converted graph (conversion.py) calls, mapped to
their cryptgpu counterparts on shared tensors, and the functions of public
values (shapes, masks) that run in plaintext.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from ..torch_dispatch import TABLE
from . import transformer
from .layers import AdaptiveAvgPool2d, Dropout, LayerNorm
from .stats import BATCHNORM, LINEAR, OTHER, POOLING, RELU, SOFTMAX


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return LayerNorm(normalized_shape, weight, bias, eps).forward(x)


def _adaptive_avg_pool2d(x, output_size):
    return AdaptiveAvgPool2d(output_size).forward(x)


def _flatten(x, start_dim=0, end_dim=-1):
    return x.flatten(start_dim, end_dim)


def _dropout(x, p=0.5, training=True, inplace=False):
    d = Dropout(p)
    return d.train(bool(training)).forward(x)


def _sum(x, dim=None, keepdim=False, *, dtype=None):
    return x.sum(dim, keepdim)


def _mean(x, dim=None, keepdim=False, *, dtype=None):
    return x.mean(dim, keepdim)


def _clamp(x, min=None, max=None):  # noqa: A002 - torch's names
    return x.clamp(min, max)


def _method(name):
    """``torch.<name>(x, *args)`` as the SharedTensor method ``x.<name>(*args)``."""

    def call(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)

    call.__name__ = name
    return call


# The torch functions SharedTensor itself dispatches (torch_dispatch), the
# same code either way.
_relu, _gelu, _tanh, _sigmoid = (TABLE[f] for f in (F.relu, F.gelu, F.tanh, F.sigmoid))
_max_pool2d, _avg_pool2d, _pad, _linear = (
    TABLE[f] for f in (F.max_pool2d, F.avg_pool2d, F.pad, F.linear)
)
_softmax, _log_softmax, _cat, _stack = (
    TABLE[f] for f in (F.softmax, F.log_softmax, torch.cat, torch.stack)
)

FUNCTIONS = {
    operator.add: (operator.add, OTHER),
    operator.sub: (operator.sub, OTHER),
    operator.mul: (operator.mul, OTHER),
    operator.truediv: (operator.truediv, OTHER),
    operator.neg: (operator.neg, OTHER),
    operator.getitem: (operator.getitem, OTHER),
    operator.matmul: (operator.matmul, LINEAR),
    torch.add: (operator.add, OTHER),
    torch.sub: (operator.sub, OTHER),
    torch.mul: (operator.mul, OTHER),
    torch.matmul: (operator.matmul, LINEAR),
    torch.flatten: (_flatten, OTHER),
    torch.cat: (_cat, OTHER),
    torch.relu: (_relu, RELU),
    F.relu: (_relu, RELU),
    F.gelu: (_gelu, RELU),
    F.layer_norm: (_layer_norm, BATCHNORM),
    F.scaled_dot_product_attention: (transformer.scaled_dot_product_attention, SOFTMAX),
    F.max_pool2d: (_max_pool2d, POOLING),
    F.avg_pool2d: (_avg_pool2d, POOLING),
    F.adaptive_avg_pool2d: (_adaptive_avg_pool2d, POOLING),
    F.softmax: (_softmax, SOFTMAX),
    F.log_softmax: (_log_softmax, SOFTMAX),
    torch.softmax: (_softmax, SOFTMAX),
    torch.log_softmax: (_log_softmax, SOFTMAX),
    torch.tanh: (_tanh, RELU),
    torch.sigmoid: (_sigmoid, RELU),
    F.tanh: (_tanh, RELU),
    F.sigmoid: (_sigmoid, RELU),
    getattr: (getattr, OTHER),
    operator.pow: (operator.pow, OTHER),
    torch.pow: (operator.pow, OTHER),
    torch.square: (_method("square"), OTHER),
    torch.sqrt: (_method("sqrt"), OTHER),
    torch.exp: (_method("exp"), OTHER),
    torch.abs: (_method("abs"), RELU),
    torch.t: (_method("t"), OTHER),
    torch.transpose: (_method("transpose"), OTHER),
    torch.permute: (_method("permute"), OTHER),
    torch.reshape: (_method("reshape"), OTHER),
    torch.unsqueeze: (_method("unsqueeze"), OTHER),
    torch.squeeze: (_method("squeeze"), OTHER),
    torch.sum: (_sum, OTHER),
    torch.mean: (_mean, POOLING),
    torch.stack: (_stack, OTHER),
    torch.clamp: (_clamp, RELU),
    torch.cumsum: (_method("cumsum"), OTHER),
    torch.triu: (_method("triu"), OTHER),
    torch.tril: (_method("tril"), OTHER),
    torch.flip: (_method("flip"), OTHER),
    torch.roll: (_method("roll"), OTHER),
    torch.chunk: (_method("chunk"), OTHER),
    torch.split: (_method("split"), OTHER),
    torch.unbind: (_method("unbind"), OTHER),
    torch.narrow: (_method("narrow"), OTHER),
    torch.gather: (_method("gather"), OTHER),
    torch.index_select: (_method("index_select"), OTHER),
    torch.var: (_method("var"), OTHER),
    torch.std: (_method("std"), OTHER),
    torch.prod: (_method("prod"), OTHER),
    torch.maximum: (_method("maximum"), RELU),
    torch.minimum: (_method("minimum"), RELU),
    torch.mm: (_method("mm"), LINEAR),
    torch.bmm: (_method("bmm"), LINEAR),
    torch.movedim: (_method("movedim"), OTHER),
    torch.diagonal: (_method("diagonal"), OTHER),
    torch.outer: (_method("outer"), LINEAR),
    F.linear: (_linear, LINEAR),
    F.dropout: (_dropout, OTHER),
    F.pad: (_pad, OTHER),
    operator.floordiv: (operator.floordiv, OTHER),
}

# Functions that build or inspect public values (the masks and position ids
# of a transformers model): run in plaintext; a private argument is refused.
PUBLIC_FUNCTIONS = {
    torch.tensor,
    torch.finfo,
    torch.ones,
    torch.zeros,
    torch.full,
    torch.arange,
    torch.where,
    torch.eye,
    torch.ones_like,
    torch.zeros_like,
    torch.full_like,
    torch.logical_not,
    torch.logical_and,
    torch.logical_or,
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.not_,
    operator.invert,
    operator.and_,
    operator.or_,
    operator.mod,
    math.sqrt,
    math.log,
    math.exp,
    math.floor,
    math.ceil,
    math.pow,
}
