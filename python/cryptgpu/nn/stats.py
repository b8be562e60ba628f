"""Per-layer statistics and the overflow check of cryptgpu.nn.

Lowest module of the nn package: layers open a :class:`_LayerScope` around
their forward pass to add its time, rounds and bytes to the session's table.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .. import _session
from .. import autograd as ag
from ..tensor import SharedTensor, cat

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
    """Check every layer output of a converted model (training or inference)
    against ``|value| < bound`` and raise :class:`FixedPointOverflowError`
    naming the first layer that exceeds it, instead of training on garbage.
    Off by default (``cryptgpu.init(check_range=True)`` turns it on with the
    bound 2^(62-2f)): each check costs one batched comparison (10 rounds) per
    layer and reveals to all parties how many values of that layer were out
    of range. ``check_overflow(None)`` turns it off again."""
    if bound is not None and not bound > 0:
        raise ValueError("the overflow bound must be positive")
    _session._ctx.overflow_bound = bound


def _check_range(y, where: str) -> None:
    bound = getattr(_session._ctx, "overflow_bound", None)
    if bound is None or not isinstance(y, SharedTensor):
        return
    with ag.no_grad():
        flags = cat([(y - bound).reshape(-1), (-y - bound).reshape(-1)]).neg()._ltz("overflow")
        count = flags.sum().get_plain_text(dtype=torch.float64).item()
    if count > 0.5:
        raise FixedPointOverflowError(
            f"{int(round(count))} values of layer {where} exceed +-{bound:g}: the fixed-point "
            "encoding would overflow (lower the learning rate or normalise the inputs)"
        )
