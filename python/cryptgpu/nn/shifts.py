"""A bias that a BatchNorm cancels, in a converted graph: a Linear, Conv1d
or Conv2d whose output goes only into a BatchNorm that normalises with
batch statistics (training, or no running statistics) adds a per-channel
shift the BatchNorm removes, so the bias's gradient is 0 in exact
arithmetic (torch's ~1e-17); the layer then gives it exactly 0
(layers.shift_bias), rather than fixed-point noise that adaptive
optimisers scale to full steps."""

from __future__ import annotations

import contextlib

import torch

from .layers import BatchNorm, Conv2d, Linear
from .layers1d import Conv1d


def pairs(graph: torch.fx.Graph, converted: dict) -> dict:
    """call node -> the BatchNorm target that call's output goes (only)
    into: by call, since a layer called twice (weights shared) adds its
    bias elsewhere too."""
    out = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(converted.get(node.target), BatchNorm):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        if isinstance(converted.get(src.target), (Linear, Conv1d, Conv2d)):
            out[src.name] = node.target
    return out


@contextlib.contextmanager
def cancelled(layer, bn):
    """Around a call of ``layer``: its bias's gradient is exactly 0 while
    ``bn`` (the layer it runs into, looked up at the call: it may have been
    replaced) is a BatchNorm using batch statistics."""
    batch = isinstance(bn, BatchNorm) and (bn.training or bn._buffers.get("running_mean") is None)
    if not batch or not isinstance(layer, (Linear, Conv1d, Conv2d)):
        yield
        return
    layer.__dict__["_shift_cancelled"] = True
    try:
        yield
    finally:
        layer.__dict__.pop("_shift_cancelled", None)
