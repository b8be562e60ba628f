"""Per-layer statistics and the overflow check of cryptgpu.nn.

Lowest module of the nn package: layers open a :class:`_LayerScope` around
their forward pass to add its time, rounds and bytes to the session's table.
"""

from __future__ import annotations

import contextlib
import operator
import time

import torch
import torch.nn.functional as F

from .. import _session
from .. import autograd as ag
from ..tensor import SharedTensor, cat
from . import inplace

# Layer kinds for the per-layer statistics (the paper's Table V columns).
LINEAR, POOLING, RELU, SOFTMAX, BATCHNORM, OTHER = (
    "linear",
    "pooling",
    "relu",
    "softmax",
    "batchnorm",
    "other",
)


class _LayerScope:
    """Adds one layer's time, rounds and bytes to the session's per-layer
    table, and marks what autograd records inside it as that layer's, so
    the backward pass is charged to the same kind (``backward_*`` keys)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __enter__(self):
        self.t = time.perf_counter()
        self.before = _session.comm_totals()
        _session._ctx.layer_kinds.append(self.kind)
        return self

    def __exit__(self, *exc):
        _session._ctx.layer_kinds.pop()
        if exc[0] is not None:
            return False
        _session.add_layer_stats(
            self.kind, "", time.perf_counter() - self.t, self.before, _session.comm_totals()
        )
        return False


def _track(kind: str, x):
    return _LayerScope(kind) if isinstance(x, SharedTensor) else contextlib.nullcontext()


class FixedPointOverflowError(RuntimeError):
    """A layer's output left the range set with :func:`check_overflow`."""


def check_overflow(bound: float | None = 2.0**14) -> None:
    """Check every layer output of a converted model (training or inference),
    and each function or method call's output that can leave the range
    (:func:`check_node`), against ``|value| < bound`` and raise
    :class:`FixedPointOverflowError` naming the first layer or node that
    exceeds it, instead of training on garbage.
    Off by default (``cryptgpu.init(check_range=True)`` turns it on with the
    bound 2^(62-2f)): each check costs one batched comparison (10 rounds) per
    layer and reveals to all parties how many values of that layer were out
    of range. ``check_overflow(None)`` turns it off again."""
    if bound is not None and not bound > 0:
        raise ValueError("the overflow bound must be positive")
    _session._ctx.overflow_bound = bound


def _check_range(y, where: str) -> None:
    """Raise FixedPointOverflowError where a value of ``y`` (the output of
    ``where``: "layer 'fc' (Linear)", "node 'mul' (mul)") is beyond the
    bound: one batched comparison (10 rounds) and one opening of a count."""
    bound = getattr(_session._ctx, "overflow_bound", None)
    if bound is None or not isinstance(y, SharedTensor):
        return
    recorded = ag.needs_grad(y)  # the truncations of y's operation were exact in "auto"
    with ag.no_grad():
        flags = cat([(y - bound).reshape(-1), (-y - bound).reshape(-1)]).neg()._ltz("overflow")
        count = flags.sum().get_plain_text(dtype=torch.float64).item()
    if count > 0.5:
        msg = f"{int(round(count))} values of {where} exceed +-{bound:g}: "
        if _session.exact_truncation(recorded):
            why = "the fixed-point encoding would overflow "
            why += "(lower the learning rate or normalise the inputs)"
        else:
            e, mode = 64 - 2 * y._s().precision_bits, _session.truncation()
            used = " (truncation='auto' uses it at inference)" if mode == "auto" else ""
            why = (
                "either the fixed-point encoding would overflow (normalise the inputs) or, more "
                f"likely if the values should be far below the bound, the probabilistic "
                f"truncation failed{used}: a failed element is off by about 2^{e}, with chance "
                f'|value| / 2^{e} each; cryptgpu.init(truncation="exact") rules that out'
            )
        raise FixedPointOverflowError(msg + why)


def check_node(graph, node, y, env=None) -> None:
    """An in-place node's result of its target's shape (inplace.kept_shape:
    ``env``, the values so far); then check_range for the output of one node
    of a converted graph: every
    module call, and every function or method call whose output can leave
    the range when its inputs are inside it (products, sums, exp, division,
    normalisations, ...). Data movement (views, reshapes, indexing, cat)
    and the outputs bounded by an input or by 1 (relu, max, clamp,
    comparisons, where, sigmoid, tanh, softmax) are not checked: each check
    costs a comparison (10 rounds) and an opening."""
    if env is not None and inplace.SHAPE in node.meta:
        inplace.kept_shape(node, y, env)
    if getattr(_session._ctx, "overflow_bound", None) is None or not isinstance(y, SharedTensor):
        return
    if node.op == "call_module":
        where = f"layer {node.target!r} ({type(graph._layer(node.target)).__name__})"
    elif node.op == "call_function" and node.target not in _UNCHECKED_FUNCTIONS:
        where = f"node {node.name!r} ({getattr(node.target, '__name__', node.target)})"
    elif node.op == "call_method" and node.target not in _UNCHECKED_METHODS:
        where = f"node {node.name!r} (.{node.target}())"
    else:
        return
    _check_range(y, where)


# Methods (and below, functions) whose outputs stay in range where their
# inputs are: moved, selected or bounded values.
_UNCHECKED_METHODS = frozenset(
    """view reshape flatten contiguous permute transpose unsqueeze squeeze expand expand_as
    view_as reshape_as to cpu float double half bfloat16 type_as type t clone detach flip roll
    chunk split unbind narrow repeat gather index_select movedim diagonal unflatten select
    ravel moveaxis swapaxes swapdims broadcast_to take take_along_dim tile repeat_interleave
    tensor_split hsplit vsplit dsplit unfold triu tril long bool int relu relu6 hardtanh clamp
    clip clamp_min clamp_max max min amax amin maximum minimum masked_fill where sign abs
    eq ne lt le gt ge sigmoid tanh softmax nan_to_num""".split()
)
_UNCHECKED_FUNCTIONS = frozenset(
    [
        *(f for f in (getattr(torch, n, None) for n in _UNCHECKED_METHODS) if callable(f)),
        *(getattr(operator, n) for n in ("getitem", "eq", "ne", "lt", "le", "gt", "ge")),
        *(F.relu, F.relu6, F.hardtanh, F.sigmoid, F.tanh, F.softmax, F.pad, getattr),
        *(torch.cat, torch.stack, torch.concat, torch.zeros_like, torch.ones_like),
        *(F.pixel_shuffle, F.pixel_unshuffle, F.channel_shuffle, torch.channel_shuffle),
    ]
)
