"""``torch.autograd.Function.apply`` given SharedTensors, patched at import.

torch runs a custom Function's ``forward`` with gradients off and records
its own node for the ``backward``; a SharedTensor cannot join torch's
graph, and our autograd, which follows torch's grad mode, recorded
nothing there: the gradients stopped at the Function, silently (until
2026-12-06). That cut a user's ``torch.utils.checkpoint.checkpoint(block,
x)`` in its default, reentrant form (the block's weights got no gradient)
and every custom Function. Now the reentrant checkpoint runs its block
recorded (as ``use_reentrant=False`` does; recomputation saves nothing
here, the shares are kept either way), and another Function on a
SharedTensor runs as torch runs it, on the shares (custom_functions.py:
its forward unrecorded, its backward on the shared gradients; until
2026-12-07 a NotImplementedError). Inside cryptgpu's conversion trace a
Function's ``apply`` is one graph step, run by the converted model with
the same apply (it was traced through, as if ``detach()``). Without
SharedTensors or the trace torch's own ``apply`` runs, untouched."""

from __future__ import annotations

import torch
import torch.utils.checkpoint

from . import custom_functions
from .tensor import SharedTensor

_TORCH_APPLY = torch.autograd.Function.__dict__["apply"]


def _shared(values) -> bool:
    for v in values:
        if isinstance(v, SharedTensor):
            return True
        if isinstance(v, (list, tuple)) and _shared(v):
            return True
        if isinstance(v, dict) and _shared(v.values()):
            return True
    return False


def _apply(cls, *args, **kwargs):
    checkpoint = cls is getattr(torch.utils.checkpoint, "CheckpointFunction", None)
    if not (_shared(args) or _shared(kwargs.values())):
        step = None if checkpoint else custom_functions.traced(cls, args, kwargs)
        if step is not None:  # in a conversion's trace: one graph step
            return step
        return _TORCH_APPLY.__get__(None, cls)(*args, **kwargs)
    if checkpoint:
        run, _preserve_rng, *inputs = args  # checkpoint(fn, *inputs), reentrant
        return run(*inputs)
    return custom_functions.apply(cls, args, kwargs)


# named as torch's: torch.compile recognises an aliased ``f = MyFn.apply``
# by that name (it graph-broke on ``_apply``: a review)
_apply.__name__, _apply.__qualname__ = "apply", "Function.apply"
torch.autograd.Function.apply = classmethod(_apply)
