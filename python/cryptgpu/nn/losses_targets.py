"""What the losses check and prepare about their targets: torch's own
errors for a target's dtype and for ``ignore_index`` with probability
targets (torch's function run on stand-ins of the target's dtype), the
one-hot form of labels, the rows of [N, C, d1, ...] inputs, and the power
of two that brings small public class weights onto the fixed-point grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._native import ShapeError
from ..tensor import SharedTensor

# what cryptgpu adds to torch's refusal of ignore_index with probability targets
IGNORE_HINT = (
    " (cryptgpu: to leave a sample out with one-hot or probability targets, "
    "make its target row all zeros: it then adds nothing to the loss or the "
    "gradient, though reduction='mean' still divides by the batch size N, as "
    "torch's mean over probability targets does)"
)


def up_scale(values: torch.Tensor) -> float:
    """A power of two s >= 1 for public non-negative weights: 1 where their
    largest is 0 or at least 1, else the one that brings it into [1, 2).
    Weights below one unit of 2^-16 (inverse class frequencies, 1e-5) then
    keep their significant bits in fixed point, and the products by them
    are not lost under a unit; multiplying by a power of two is exact, and
    the caller divides a scale-dependent result by s once, at the end."""
    top = float(values.abs().max()) if values.numel() else 0.0
    if not math.isfinite(top) or top == 0.0 or top >= 1.0:
        return 1.0
    return 2.0 ** -math.floor(math.log2(top))


def _standin(shape, dtype, full: bool) -> torch.Tensor:
    """Zeros of ``dtype``: one element per dim, or ``shape`` itself (a
    zero-stride view, no copy) for an error message that names sizes."""
    if full:
        return torch.zeros((), dtype=dtype).expand(tuple(shape))
    return torch.zeros((1,) * len(shape), dtype=dtype)


def torch_refusal(fn, xshape, xdtype, tshape, tdtype, **kw) -> None:
    """Raise the error torch's loss ``fn`` raises for an input of
    ``xdtype`` and a target of ``tdtype`` (the dtype checks, ignore_index
    with probability targets): ``fn`` run on one-element zeros, then, where
    that refuses, on zero-stride stand-ins of the real shapes, so that the
    message is torch's own, sizes included. An ignore_index refusal names
    cryptgpu's way to leave a sample out."""
    err = None
    for full in (False, True):
        try:
            with torch.no_grad():
                fn(_standin(xshape, xdtype, full), _standin(tshape, tdtype, full), **kw)
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as e:
            err = e if err is None or type(e) is type(err) else err
            continue
        if err is None:
            return
    if "ignore_index" in str(err):
        raise type(err)(str(err) + IGNORE_HINT) from None
    raise err.with_traceback(None) from None


def check_class_target(fn, x, target, ignore_index: int) -> None:
    """torch's errors for ``fn`` (F.cross_entropy or F.nll_loss) of ``x``
    (shared or public) against ``target``: class indices of a dtype other
    than int64 (or uint8, as torch's); probability targets of an integer
    dtype, or with an ignore_index of 0 or more (torch's RuntimeError:
    shared targets are floating point); NLLLoss's plain [N, C] targets.
    Shared targets of NLLLoss (cryptgpu's one-hot selection) only check
    ignore_index, as cross-entropy's. Targets of other ranks are left to
    the shape checks."""
    shared = isinstance(target, SharedTensor)
    if not shared:
        target = torch.as_tensor(target)  # (a list of labels is taken, as before)
    k, tshape = len(x.shape), tuple(target.shape)
    if len(tshape) not in (k, k - 1):
        return
    if shared and fn is F.nll_loss:
        if ignore_index >= 0:
            raise RuntimeError(
                "ignore_index is not supported for floating point target" + IGNORE_HINT
            )
        return
    xdtype = x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float32
    tdtype = torch.float64 if shared else target.dtype
    torch_refusal(fn, tuple(x.shape), xdtype, tshape, tdtype, ignore_index=ignore_index)


def check_binary_target(fn, x, target) -> None:
    """torch's error for a binary cross-entropy's (``fn``) plain target of
    an integer or bool dtype (BCEWithLogits: RuntimeError, NotImplementedError
    for bool; BCELoss: RuntimeError). A shared x has no dtype: a floating
    target of any precision passes, as it would against its own dtype."""
    if isinstance(target, SharedTensor) or not isinstance(x, SharedTensor):
        return
    t = torch.as_tensor(target)
    xdtype = t.dtype if t.is_floating_point() else torch.float32
    torch_refusal(fn, tuple(t.shape), xdtype, tuple(t.shape), t.dtype)


def _one_hot(target, like: SharedTensor):
    """Targets as a one-hot: a SharedTensor one-hot is used as is; integer
    labels (plaintext, so known to all parties) are expanded."""
    if isinstance(target, SharedTensor):
        if tuple(target.shape) != tuple(like.shape):
            raise ShapeError(f"one-hot target {tuple(target.shape)} != logits {tuple(like.shape)}")
        return target
    t = torch.as_tensor(target)
    if t.dim() == 1 and not t.is_floating_point():
        if t.numel() != like.shape[0]:
            raise ShapeError(f"{t.numel()} labels for a batch of {like.shape[0]}")
        bad = t[(t < 0) | (t >= like.shape[1])]
        if bad.numel():
            raise IndexError(f"Target {int(bad[0])} is out of bounds.")
        return F.one_hot(t.long(), like.shape[1]).double()
    if tuple(t.shape) != tuple(like.shape):
        if t.is_floating_point() and t.dim() == like.dim() - 1:
            # torch: "expected target dtype to be Long or Byte, but got Double"
            raise RuntimeError(
                f"expected integer class indices (dtype long) of shape "
                f"{tuple(like.shape[:1])} or class probabilities of the logits' shape "
                f"{tuple(like.shape)}, got a {t.dtype} target of shape {tuple(t.shape)}"
            )
        raise ShapeError(f"target {tuple(t.shape)} != logits {tuple(like.shape)}")
    return t.double()


def _no_mean_over_nothing(total, what: str) -> None:
    """torch's mean over no kept samples (an empty batch, every label
    ignore_index, or the kept labels' class weights summing to 0) is NaN:
    refused (the labels are public), as an empty mean is."""
    if not total:
        raise ValueError(
            f"{what}: no sample counts toward the mean (an empty batch, every target "
            "ignore_index, or class weights summing to 0), so reduction='mean' is 0 / 0 = "
            "NaN, which is not representable in fixed point; use reduction='sum' or leave "
            "such a batch out"
        )


def _class_rows(x, target, what: str):
    """(x as rows [M, C], the target as M labels or [M, C] rows, the shape
    of a per-sample result) for x [N, C], [C] (one sample) or [N, C, d1,
    ...] (every position a sample, its target [N, d1, ...] labels or of
    x's shape), x and target public or shared."""
    shared_t = isinstance(target, SharedTensor)
    t = target if shared_t else torch.as_tensor(target)
    if x.dim() == 1:  # one sample, as torch takes it: a label or a [C] target
        t = t.unsqueeze(0) if shared_t or t.dim() else t.reshape(1)
        return x.unsqueeze(0), t, ()
    if x.dim() < 2:
        raise ShapeError(f"{what} expects [N, C], [C] or [N, C, d1, ...], got {tuple(x.shape)}")
    lead, k, c = (x.shape[0],) + tuple(x.shape[2:]), x.dim(), x.shape[1]
    if k == 2:
        return x, t, lead
    order, full = (0, *range(2, k), 1), tuple(x.shape)
    x = x.permute(*order).reshape(-1, c)
    if shared_t or t.dim() == k:
        if tuple(t.shape) != full:
            raise ShapeError(f"{what}: target {tuple(t.shape)} != input {full}")
        return x, t.permute(*order).reshape(-1, c), lead
    if tuple(t.shape) != lead:
        raise RuntimeError(f"Expected target size {list(lead)}, got {list(t.shape)}")
    return x, t.reshape(-1), lead
