"""The torch functions a converted graph (conversion.py) calls, mapped to
their cryptgpu counterparts on shared tensors, and the functions of public
values (shapes, masks) that run in plaintext.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from .. import custom_functions
from ..einsum import einsum
from ..tensor import SharedTensor
from ..torch_dispatch import TABLE
from . import attention, flags, indices, layers_more, losses_more, wrapped
from .habits import borrowing
from .inplace import WRITTEN
from .layers import AdaptiveAvgPool2d, BatchNorm
from .layers1d import AdaptiveAvgPool1d, AdaptiveMaxPool1d, channel_dropout
from .layers_extra import (
    MAX_NORM,
    AdaptiveMaxPool2d,
    Embedding,
    GroupNorm,
    InstanceNorm,
    _rms_norm,
    layer_norm,
    local_response_norm,
    refuse_one_number,
)
from .resize import interpolate
from .stats import BATCHNORM, LINEAR, OTHER, POOLING, RELU, SOFTMAX


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    refuse_one_number(normalized_shape, "layer_norm")
    return layer_norm(x, normalized_shape, weight, bias, eps)


def _adaptive_avg_pool2d(x, output_size):
    return AdaptiveAvgPool2d(output_size).forward(x)


def _flatten(x, start_dim=0, end_dim=-1):
    return x.flatten(start_dim, end_dim)


def _sum(x, dim=None, keepdim=False, *, dtype=None):
    return x.sum(dim, keepdim)


def _mean(x, dim=None, keepdim=False, *, dtype=None):
    return x.mean(dim, keepdim)


def _clamp(x, min=None, max=None):  # noqa: A002 - torch's names
    return x.clamp(min, max)


def _adaptive_avg_pool1d(x, output_size):
    return AdaptiveAvgPool1d(output_size).forward(x)


def _batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """``F.batch_norm`` on a SharedTensor: BatchNorm's layer on the given
    tensors. In training, shared running statistics are updated in place
    (torch updates its own in place too); plaintext ones cannot take a
    private update."""
    stats = (running_mean, running_var)
    if training and any(isinstance(t, torch.Tensor) for t in stats):
        raise NotImplementedError(
            "F.batch_norm in training with plaintext running statistics: their update would "
            "be private. A converted model's own buffers (F.batch_norm(x, self.running_mean, "
            "...) in its forward) stay public: use an nn.BatchNorm1d/2d layer in the PyTorch "
            "model instead (converted, it updates its running statistics privately, as torch), "
            "or pass running_mean=None, running_var=None in training (batch statistics, no "
            "running update). Outside a converted model, shared running statistics "
            "(cryptgpu.cryptensor) are updated in place"
        )
    if not training and running_mean is None:
        raise RuntimeError("running_mean must be defined in evaluation mode")  # torch's
    with borrowing():
        bn = BatchNorm(weight, bias, running_mean, running_var, eps, momentum)
    bn.training = bool(training)
    y = bn.forward(x)  # not __call__: the caller's tensors keep their grad flags
    for t, k in zip(stats, ("running_mean", "running_var")):
        if isinstance(t, SharedTensor) and training:
            t._assign(bn._buffers[k], "F.batch_norm running statistics")  # in place
    return y


def _batchnorm_method(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    training=False,
    eps=1e-5,
    momentum=0.1,
    inv_var=None,
):
    """CrypTen's ``x.batchnorm(weight, bias, running_mean, running_var,
    training, eps, momentum)`` (``inv_var`` is not taken)."""
    if inv_var is not None:
        raise NotImplementedError("batchnorm(inv_var=): pass running_var instead")
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


SharedTensor.batchnorm = _batchnorm_method


def _group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    with borrowing():
        return GroupNorm(num_groups, None, eps, False, weight, bias).forward(x)


def _instance_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
):
    """``F.instance_norm`` on a SharedTensor: each channel of each sample
    normalised over its positions (InstanceNorm's layer on the given
    weight and bias), after torch's checks on a tensor with no storage.
    Running statistics are refused: their update (or their use) is
    BatchNorm's, which InstanceNorm's track_running_stats is not here."""
    if running_mean is not None or running_var is not None or not use_input_stats:
        raise NotImplementedError(
            "F.instance_norm with running statistics on a SharedTensor: pass "
            "running_mean=None, running_var=None, use_input_stats=True"
        )
    w = None if weight is None else torch.empty(tuple(weight.shape), device="meta")
    F.instance_norm(torch.empty(tuple(x.shape), device="meta"), weight=w, eps=eps)
    c = x.shape[1]
    with borrowing():
        return InstanceNorm(c, eps, weight=weight, bias=bias).forward(x)


def _dropouts(dims: int):
    def dropout(x, p=0.5, training=True, inplace=False):
        return channel_dropout(x, p, training, inplace, dims)

    dropout.__name__ = f"_dropout{dims}d"
    return dropout


_dropout1d, _dropout2d, _dropout3d = (_dropouts(d) for d in (1, 2, 3))


def _embedding(
    ids,
    weight,
    padding_idx=None,
    max_norm=None,
    norm_type=2.0,
    scale_grad_by_freq=False,
    sparse=False,
):
    """F.embedding (in a graph, and on a private table or one-hot ids
    outside one): the :class:`Embedding` layer's forward on ``weight``."""
    if max_norm is not None:
        raise NotImplementedError(f"F.embedding with max_norm {MAX_NORM}")
    with borrowing():
        emb = Embedding(
            weight=weight, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq
        )
        return emb.forward(ids)


def _adaptive_max_pool1d(x, output_size, return_indices=False):
    return AdaptiveMaxPool1d(output_size, return_indices).forward(x)


def _adaptive_max_pool2d(x, output_size, return_indices=False):
    if return_indices:
        raise NotImplementedError(
            "F.adaptive_max_pool2d(..., return_indices=True) on a SharedTensor: torch's flat "
            "indices would be secret positions; x.adaptive_max_pool2d(size, return_indices=True) "
            "gives the one-hot mask of each window's maximum instead"
        )
    return AdaptiveMaxPool2d(output_size).forward(x)


# The torch functions SharedTensor itself dispatches (torch_dispatch), the
# same code either way.
_relu, _gelu, _tanh, _sigmoid = (TABLE[f] for f in (F.relu, F.gelu, F.tanh, F.sigmoid))
_max_pool2d, _avg_pool2d, _pad, _linear = (
    TABLE[f] for f in (F.max_pool2d, F.avg_pool2d, F.pad, F.linear)
)
_softmax, _log_softmax, _cat, _stack, _dropout = (
    TABLE[f] for f in (F.softmax, F.log_softmax, torch.cat, torch.stack, F.dropout)
)

# torch.<name>(shared, ...) in a graph runs as torch's own call: SharedTensor's
# __torch_function__ (torch_dispatch) sends it to the method of that name.
# exact rounding of private values by public divisors (cryptgpu.rounding)
ROUNDING = ("floor", "ceil", "trunc", "fix", "round", "frac", "floor_divide", "remainder", "fmod")

FUNCTIONS = {
    operator.add: (operator.add, OTHER),
    operator.sub: (operator.sub, OTHER),
    operator.mul: (operator.mul, OTHER),
    operator.truediv: (operator.truediv, OTHER),
    operator.neg: (operator.neg, OTHER),
    operator.getitem: (operator.getitem, OTHER),
    operator.matmul: (operator.matmul, LINEAR),
    torch.add: (torch.add, OTHER),  # with its alpha=
    torch.sub: (torch.sub, OTHER),
    torch.mul: (operator.mul, OTHER),
    torch.matmul: (operator.matmul, LINEAR),
    torch.einsum: (einsum, LINEAR),
    torch.flatten: (_flatten, OTHER),
    torch.cat: (_cat, OTHER),
    torch.relu: (_relu, RELU),
    F.relu: (_relu, RELU),
    F.gelu: (_gelu, RELU),
    F.layer_norm: (_layer_norm, BATCHNORM),
    F.rms_norm: (_rms_norm, BATCHNORM),
    F.scaled_dot_product_attention: (attention.scaled_dot_product_attention, SOFTMAX),
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
    torch.square: (torch.square, OTHER),
    torch.sqrt: (torch.sqrt, OTHER),
    torch.exp: (torch.exp, OTHER),
    torch.abs: (torch.abs, RELU),
    torch.t: (torch.t, OTHER),
    torch.transpose: (torch.transpose, OTHER),
    torch.permute: (torch.permute, OTHER),
    torch.reshape: (torch.reshape, OTHER),
    torch.unsqueeze: (torch.unsqueeze, OTHER),
    torch.squeeze: (torch.squeeze, OTHER),
    torch.sum: (_sum, OTHER),
    torch.mean: (_mean, POOLING),
    torch.stack: (_stack, OTHER),
    torch.clamp: (_clamp, RELU),
    torch.cumsum: (torch.cumsum, OTHER),
    torch.triu: (torch.triu, OTHER),
    torch.tril: (torch.tril, OTHER),
    torch.flip: (torch.flip, OTHER),
    torch.roll: (torch.roll, OTHER),
    torch.chunk: (torch.chunk, OTHER),
    torch.split: (torch.split, OTHER),
    torch.unbind: (torch.unbind, OTHER),
    torch.narrow: (torch.narrow, OTHER),
    torch.gather: (torch.gather, OTHER),
    torch.index_select: (torch.index_select, OTHER),
    torch.var: (torch.var, OTHER),
    torch.std: (torch.std, OTHER),
    torch.prod: (torch.prod, OTHER),
    torch.maximum: (torch.maximum, RELU),
    torch.minimum: (torch.minimum, RELU),
    torch.mm: (torch.mm, LINEAR),
    torch.bmm: (torch.bmm, LINEAR),
    torch.addmm: (torch.addmm, LINEAR),
    F.glu: (F.glu, RELU),
    F.cosine_similarity: (F.cosine_similarity, OTHER),
    # losses computed in a forward (nanoGPT's): torch_dispatch's
    F.cross_entropy: (F.cross_entropy, OTHER),
    F.nll_loss: (F.nll_loss, OTHER),
    F.mse_loss: (F.mse_loss, OTHER),
    F.l1_loss: (F.l1_loss, OTHER),
    F.kl_div: (F.kl_div, OTHER),
    F.binary_cross_entropy: (F.binary_cross_entropy, OTHER),
    F.binary_cross_entropy_with_logits: (F.binary_cross_entropy_with_logits, OTHER),
    F.huber_loss: (F.huber_loss, OTHER),
    F.smooth_l1_loss: (F.smooth_l1_loss, OTHER),
    torch.baddbmm: (torch.baddbmm, LINEAR),
    torch.addbmm: (torch.addbmm, LINEAR),
    torch.addmv: (torch.addmv, LINEAR),
    torch.movedim: (torch.movedim, OTHER),
    torch.diagonal: (torch.diagonal, OTHER),
    torch.outer: (torch.outer, LINEAR),
    F.linear: (_linear, LINEAR),
    F.dropout: (_dropout, OTHER),
    F.dropout1d: (_dropout1d, OTHER),
    F.dropout2d: (_dropout2d, OTHER),
    F.dropout3d: (_dropout3d, OTHER),
    F.channel_shuffle: (TABLE[F.channel_shuffle], OTHER),  # torch_dispatch's movement
    torch.channel_shuffle: (TABLE[torch.channel_shuffle], OTHER),
    F.instance_norm: (_instance_norm, BATCHNORM),
    F.interpolate: (interpolate, OTHER),
    torch.nan_to_num: (torch.nan_to_num, OTHER),  # SharedTensor.nan_to_num (a copy)
    # run on nan_guard's public stand-in (torch's NaN positions): never a share
    torch.isnan: (torch.isnan, OTHER),
    torch.isinf: (torch.isinf, OTHER),
    torch.isfinite: (torch.isfinite, OTHER),
    flags.same: (flags.same, OTHER),  # a flag argument's check (TypeError for a private one)
    F.pixel_shuffle: (TABLE[F.pixel_shuffle], OTHER),  # torch_dispatch's movement
    F.pixel_unshuffle: (TABLE[F.pixel_unshuffle], OTHER),
    F.group_norm: (_group_norm, BATCHNORM),
    F.batch_norm: (_batch_norm, BATCHNORM),
    F.local_response_norm: (local_response_norm, BATCHNORM),
    F.adaptive_max_pool2d: (_adaptive_max_pool2d, POOLING),
    # activations beyond ReLU (torch_dispatch's table: the SharedTensor methods)
    **{
        f: (TABLE[f], RELU)
        for f in (
            F.leaky_relu,
            F.relu6,
            F.hardtanh,
            F.elu,
            F.selu,
            F.celu,
            F.silu,
            F.mish,
            F.hardswish,
            F.hardsigmoid,
            F.softplus,
            F.normalize,
            F.conv1d,
            F.max_pool1d,
            F.avg_pool1d,
        )
    },
    F.adaptive_avg_pool1d: (_adaptive_avg_pool1d, POOLING),
    F.adaptive_max_pool1d: (_adaptive_max_pool1d, POOLING),
    # comparisons and selections on private values (also public ones: the
    # masks a transformers model builds run in plaintext, as before)
    operator.eq: (operator.eq, RELU),
    operator.ne: (operator.ne, RELU),
    operator.lt: (operator.lt, RELU),
    operator.le: (operator.le, RELU),
    operator.gt: (operator.gt, RELU),
    operator.ge: (operator.ge, RELU),
    torch.where: (torch.where, RELU),
    torch.zeros_like: (torch.zeros_like, OTHER),
    torch.ones_like: (torch.ones_like, OTHER),
    torch.full_like: (torch.full_like, OTHER),
    torch.max: (torch.max, RELU),
    torch.min: (torch.min, RELU),
    torch.amax: (torch.amax, RELU),
    torch.norm: (torch.norm, OTHER),
    torch.sign: (torch.sign, RELU),
    F.pad: (_pad, OTHER),
    operator.floordiv: (operator.floordiv, OTHER),
    F.embedding: (_embedding, LINEAR),
    # torch's own call: SharedTensor's method of the same name
    **{
        f: (f, kind)
        for f, kind in (
            (torch.log, OTHER),
            (torch.rsqrt, OTHER),
            (torch.reciprocal, OTHER),
            (torch.erf, RELU),
            (torch.special.erf, RELU),
            (torch.sin, OTHER),
            (torch.cos, OTHER),
            *((getattr(torch, n), RELU) for n in ROUNDING),
            (operator.mod, RELU),
            (torch.logsumexp, SOFTMAX),
            (torch.clamp_min, RELU),
            (torch.clamp_max, RELU),
            (torch.unflatten, OTHER),
            (F.conv2d, LINEAR),
            (F.conv_transpose1d, LINEAR),
            (F.conv_transpose2d, LINEAR),
            (F.logsigmoid, RELU),
            (F.softsign, RELU),
            (F.tanhshrink, RELU),
            (F.hardshrink, RELU),
            (F.threshold, RELU),
            (F.softmin, SOFTMAX),
            (torch.index_add, OTHER),
            (torch.index_copy, OTHER),
            (torch.index_fill, OTHER),
            (torch.scatter, OTHER),
            (torch.scatter_add, OTHER),
            (torch.masked_select, OTHER),
            (torch.trace, OTHER),
            # found missing by a probe (a Llama's repeat_interleave for
            # grouped-query attention); each a SharedTensor method
            (torch.repeat_interleave, OTHER),
            (torch.tile, OTHER),
            (torch.take, OTHER),
            (torch.take_along_dim, OTHER),
            (torch.select, OTHER),
            (torch.ravel, OTHER),
            (torch.moveaxis, OTHER),
            (torch.swapaxes, OTHER),
            (torch.swapdims, OTHER),
            (torch.broadcast_to, OTHER),
            (torch.diag, OTHER),
            (torch.diff, OTHER),
            (torch.cumprod, OTHER),
            (torch.clone, OTHER),
            (torch.detach, OTHER),
            (torch.div, OTHER),
            (torch.true_divide, OTHER),
            (torch.exp2, OTHER),
            (torch.log1p, OTHER),
            (torch.lerp, OTHER),
            (torch.addcmul, OTHER),
            (torch.addcdiv, OTHER),
            (torch.masked_fill, RELU),
            (torch.clip, RELU),
            (torch.threshold, RELU),
            (torch.amin, RELU),
            (torch.dot, LINEAR),
            (torch.mv, LINEAR),
            (torch.ger, LINEAR),
            (torch.tensor_split, OTHER),
            (torch.hsplit, OTHER),
            (torch.vsplit, OTHER),
            (torch.dsplit, OTHER),
            (torch.log2, OTHER),
            (torch.log10, OTHER),
            (torch.expm1, OTHER),
            (torch.logaddexp, SOFTMAX),
            (torch.xlogy, OTHER),
            (torch.rsub, OTHER),
            (torch.scatter_reduce, OTHER),
            (torch.inner, LINEAR),
            (torch.kron, LINEAR),
            (torch.tensordot, LINEAR),
            (torch.cdist, LINEAR),
            (F.pairwise_distance, OTHER),
        )
    },
    torch.special.expit: (TABLE[torch.special.expit], RELU),
    torch.special.logsumexp: (TABLE[torch.special.logsumexp], SOFTMAX),
    **indices.FUNCTIONS,  # argmax and max(dim).indices as torch's (indices.py)
    **layers_more.FUNCTIONS,  # bilinear, rrelu, softshrink, vector_norm, var_mean, std_mean
    **losses_more.FUNCTIONS,  # triplet, cosine / hinge embedding, ranking, Poisson, Gaussian
    torch.cosh: (torch.cosh, OTHER),
    torch.sinh: (torch.sinh, OTHER),
    custom_functions.run: (custom_functions.run, OTHER),  # MyFn.apply: its own backward
}

# The tensor methods a converted graph calls (x.view(...), x.relu()), by
# the layer kind their cost is counted under.
METHODS = {
    **dict.fromkeys(
        (
            "repeat_interleave",
            "tile",
            "take",
            "take_along_dim",
            "select",
            "ravel",
            "moveaxis",
            "swapaxes",
            "swapdims",
            "broadcast_to",
            "diag",
            "diff",
            "cumprod",
            "true_divide",
            "exp2",
            "log1p",
            "lerp",
            "addcmul",
            "addcdiv",
            "tensor_split",
            "hsplit",
            "vsplit",
            "dsplit",
            "log2",
            "log10",
            "expm1",
            "xlogy",
            "scatter_reduce",
        ),
        OTHER,
    ),
    "logaddexp": SOFTMAX,
    "inner": LINEAR,
    "kron": LINEAR,
    "amin": RELU,
    **dict.fromkeys(("dot", "mv", "ger"), LINEAR),
    "view": OTHER,
    "reshape": OTHER,
    "flatten": OTHER,
    "size": OTHER,
    "dim": OTHER,
    "numel": OTHER,
    "ndimension": OTHER,
    "contiguous": OTHER,
    "permute": OTHER,
    "transpose": OTHER,
    "unsqueeze": OTHER,
    "squeeze": OTHER,
    "mean": POOLING,
    "sum": OTHER,
    "relu": RELU,
    "softmax": SOFTMAX,
    "log_softmax": SOFTMAX,
    "add": OTHER,
    "mul": OTHER,
    "expand": OTHER,
    "tanh": RELU,
    "sigmoid": RELU,
    "to": OTHER,
    "cpu": OTHER,  # the session's device is where shares stay (x.to(device))
    "float": OTHER,
    "double": OTHER,
    "half": OTHER,  # as to(torch.float16): shares stay fixed point
    "bfloat16": OTHER,
    "isnan": OTHER,  # public answers (shares are finite)
    "isinf": OTHER,
    "isfinite": OTHER,
    "nan_to_num": OTHER,  # the identity on shares (finite); nan_to_num_ runs it too
    "type_as": OTHER,
    "type": OTHER,  # x.type(dtype): a cast (GPT-2's eager attention)
    "pow": OTHER,
    "square": OTHER,
    "sqrt": OTHER,
    "exp": OTHER,
    "abs": RELU,
    "clamp": RELU,
    "t": OTHER,
    "clone": OTHER,
    "detach": OTHER,
    "amax": POOLING,
    "flip": OTHER,
    "roll": OTHER,
    "chunk": OTHER,
    "split": OTHER,
    "unbind": OTHER,
    "narrow": OTHER,
    "repeat": OTHER,
    "gather": OTHER,
    "index_select": OTHER,
    "var": OTHER,
    "std": OTHER,
    "prod": OTHER,
    "maximum": RELU,
    "minimum": RELU,
    "mm": LINEAR,
    "bmm": LINEAR,
    "movedim": OTHER,
    "diagonal": OTHER,
    "expand_as": OTHER,
    "view_as": OTHER,
    "reshape_as": OTHER,
    "rsqrt": OTHER,
    "outer": LINEAR,
    "masked_fill": RELU,  # a private or public mask
    "ne": RELU,
    "eq": RELU,
    "lt": RELU,
    "le": RELU,
    "gt": RELU,
    "ge": RELU,
    "max": RELU,
    "min": RELU,
    "sign": RELU,
    "norm": OTHER,
    "where": RELU,
    "leaky_relu": RELU,
    "relu6": RELU,
    "hardtanh": RELU,
    "silu": RELU,
    "clip": RELU,
    "sub": OTHER,
    "div": OTHER,
    "neg": OTHER,
    "matmul": LINEAR,
    **dict.fromkeys(("addmm", "baddbmm", "addbmm", "addmv"), LINEAR),
    "log": OTHER,
    "reciprocal": OTHER,
    "erf": RELU,
    "sin": OTHER,
    "cos": OTHER,
    **dict.fromkeys(ROUNDING, RELU),
    "logsumexp": SOFTMAX,
    "clamp_min": RELU,
    "clamp_max": RELU,
    "unflatten": OTHER,
    "hardshrink": RELU,
    "softshrink": RELU,
    "index_add": OTHER,
    "index_copy": OTHER,
    "masked_select": OTHER,
    "trace": OTHER,
    "index_fill": OTHER,
    "scatter": OTHER,
    "scatter_add": OTHER,
    "unfold": OTHER,
    "new_zeros": OTHER,
    "new_ones": OTHER,
    "new_full": OTHER,
    "new_empty": OTHER,
    "new_tensor": OTHER,
    **dict.fromkeys(("fill_", "zero_", "copy_"), OTHER),  # on a copy (inplace.py)
    # public only (masks, indices): a private receiver is refused
    **dict.fromkeys(("bincount", "unique", "argsort", "sort", "nonzero"), OTHER),
    **indices.METHODS,  # argmax, argmin: torch's indices (indices.py)
    **layers_more.METHODS,  # count_nonzero, nansum, logical_* (SharedTensor's)
    "cumsum": OTHER,
    "triu": OTHER,
    "tril": OTHER,
    "long": OTHER,
    "bool": OTHER,
    "int": OTHER,
    **dict.fromkeys(("divide", "multiply", "subtract", "negative"), OTHER),  # torch's aliases
    **dict.fromkeys(("cosh", "sinh"), OTHER),
    **dict.fromkeys(
        ("absolute", "greater", "greater_equal", "less", "less_equal", "not_equal"), RELU
    ),
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
    torch.eye,
    operator.not_,  # (logical_* and & | ~: layers_more.FUNCTIONS, private too)
    math.sqrt,
    math.log,
    math.exp,
    math.floor,
    math.ceil,
    math.pow,
    # of public indices (a graph's degrees, torch.bincount(edge_index[1])),
    # in plaintext: sorting or counting private values would open them
    torch.bincount,
    torch.unique,
    torch.argsort,
    torch.sort,
    torch.nonzero,
    F.one_hot,  # of public ids (private ones: one-hot rows shared by their owner)
}

# random draws, which the parties cannot make inside a converted forward
RANDOM = {torch.randn_like, torch.rand_like, torch.randint_like, torch.bernoulli, torch.normal}
RANDOM.update(("normal_", "uniform_", "bernoulli", "bernoulli_", "exponential_", "random_"))


def unsupported(node, where: str) -> str:
    """The conversion's refusal of a function or method of private values
    (for a random draw: how to pass the noise in instead)."""
    name = node.meta.get(WRITTEN) or getattr(node.target, "__name__", str(node.target))
    what = f"method .{name}()" if node.op == "call_method" else f"function {name}"
    msg = f"unsupported {what} at {where}" + wrapped.refusal(node)  # a torch.fx.wrap'ped one
    if node.target not in RANDOM:
        return msg
    return msg + (
        ": a converted model cannot draw random noise in its forward (the parties need the "
        "same fresh draw); draw it outside the model at every call and pass it as an input "
        "(forward(self, x, eps), model(x, torch.randn(batch, latent))): noise fixed inside "
        "the model would repeat at every call"
    )


# the same for torch functions called on a SharedTensor outside a graph
TABLE.update(
    {
        F.interpolate: interpolate,
        F.group_norm: _group_norm,
        F.instance_norm: _instance_norm,
        F.dropout1d: _dropout1d,
        F.dropout2d: _dropout2d,
        F.dropout3d: _dropout3d,
        F.batch_norm: _batch_norm,
        F.local_response_norm: local_response_norm,
        F.adaptive_max_pool2d: _adaptive_max_pool2d,
        F.layer_norm: _layer_norm,
        F.rms_norm: _rms_norm,
        F.scaled_dot_product_attention: attention.scaled_dot_product_attention,
        F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
        F.adaptive_avg_pool1d: _adaptive_avg_pool1d,
        F.adaptive_max_pool1d: _adaptive_max_pool1d,
        F.embedding: _embedding,
    }
)
