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
SharedTensor is a NotImplementedError. Without SharedTensors torch's own
``apply`` runs, untouched."""

from __future__ import annotations

import torch
import torch.utils.checkpoint

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
    if not (_shared(args) or _shared(kwargs.values())):
        return _TORCH_APPLY.__get__(None, cls)(*args, **kwargs)
    if cls is getattr(torch.utils.checkpoint, "CheckpointFunction", None):
        run, _preserve_rng, *inputs = args  # checkpoint(fn, *inputs), reentrant
        return run(*inputs)
    raise NotImplementedError(
        f"{cls.__name__}.apply on a SharedTensor: torch runs a custom autograd.Function's "
        "forward with gradients off and calls its own backward, which shares cannot reach; "
        "write the operation with cryptgpu's tensor operations (they record their gradients)"
    )


# named as torch's: torch.compile recognises an aliased ``f = MyFn.apply``
# by that name (it graph-broke on ``_apply``: a review)
_apply.__name__, _apply.__qualname__ = "apply", "Function.apply"
torch.autograd.Function.apply = classmethod(_apply)
