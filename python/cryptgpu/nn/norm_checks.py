"""torch's input checks of its normalisation layers, kept by the converted
layers: a BatchNorm1d/2d/3d refuses an input of another rank (ValueError,
torch's message) and one of another channel count (RuntimeError), in
training and in eval mode; where a BatchNorm2d was folded into the
convolution before it at conversion, that convolution refuses what the
BatchNorm would have refused (until 2026-12-06 a converted BatchNorm1d
took an unbatched [C] input as a batch of one in eval mode, raised
IndexError in training, and took a 4-D input; a folded one let an unbatched
image through to an unrelated ShapeError later). GroupNorm's checks are
torch's too (``group_norm``)."""

from __future__ import annotations

import torch

_TORCH_RANKS = (
    (torch.nn.BatchNorm1d, (2, 3)),
    (torch.nn.BatchNorm2d, (4,)),
    (torch.nn.BatchNorm3d, (5,)),
    (torch.nn.SyncBatchNorm, AT_LEAST_2 := tuple(range(2, 65))),  # BatchNorm on one process
)


def bn_ranks(m: torch.nn.Module) -> tuple | None:
    """The input ranks torch's BatchNorm ``m`` takes (None: any, for a
    BatchNorm class of no fixed rank)."""
    for kind, ranks in _TORCH_RANKS:
        if isinstance(m, kind):
            return ranks
    return None


def check_rank(layer, x) -> None:
    """torch's ValueError where ``x``'s rank is not one that ``layer``'s
    torch BatchNorm took (``layer._ranks``, set at conversion on the
    BatchNorm layer, or on the convolution it was folded into)."""
    ranks = layer.__dict__.get("_ranks")
    if ranks is None or not hasattr(x, "dim") or x.dim() in ranks:
        return
    want = "at least 2D" if ranks == AT_LEAST_2 else " or ".join(f"{r}D" for r in ranks)
    raise ValueError(f"expected {want} input (got {x.dim()}D input)")


def check_batchnorm(layer, x) -> None:
    """A converted BatchNorm's checks of ``x``, before any work: its rank
    (:func:`check_rank`), then its channels against the running statistics
    (or the affine weight without them), with torch's RuntimeError."""
    check_rank(layer, x)
    if layer.__dict__.get("_ranks") is None or x.dim() < 2:
        return
    for name in ("running_mean", "weight"):
        held = layer._buffers.get(name) if name == "running_mean" else layer._params.get(name)
        if held is not None:
            n = held.shape[0]
            if x.shape[1] != n:
                raise RuntimeError(f"{name} should contain {x.shape[1]} elements not {n}")
            return


def check_group_norm(x, groups: int, weight) -> None:
    """torch's RuntimeErrors of ``group_norm`` for ``x`` in ``groups``
    groups with a per-channel ``weight`` (or None): a rank below 2, no
    channels, channels not divisible, a weight of another size."""
    if x.dim() < 2:
        raise RuntimeError(
            f"Expected at least 2 dimensions for input tensor but received {x.dim()}"
        )
    shape, c = list(x.shape), x.shape[1]
    if c == 0:
        raise RuntimeError("Expected number of channels to be greater than 0, got 0")
    if c % groups:
        raise RuntimeError(
            "Expected number of channels in input to be divisible by num_groups, but got "
            f"input of shape {shape} and num_groups={groups}"
        )
    if weight is not None and (weight.dim() != 1 or weight.shape[0] != c):
        raise RuntimeError(
            "Expected weight to be a vector of size equal to the number of channels in "
            f"input, but got weight of shape {list(weight.shape)} and input of shape {shape}"
        )
