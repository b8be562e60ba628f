"""torch's BatchNorm1d / BatchNorm2d / BatchNorm3d classes over
:class:`cryptgpu.nn.layers.BatchNorm`: built directly (torch's and
CrypTen's form), and what a converted torch BatchNorm layer becomes, so
that ``isinstance(m, cryptgpu.nn.BatchNorm1d)`` selects converted layers as
torch's class selects torch's (until 2026-12-07 a converted one was a bare
``BatchNorm``, and BatchNorm2d and 3d were BatchNorm1d subclasses)."""

from __future__ import annotations

import torch

from .layers import BatchNorm


class _BatchNormNd(BatchNorm):
    """``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)``: weight 1, bias 0, running mean 0 and
    variance 1; statistics over every dim but the channels."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum=0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        n = int(num_features)
        ones, zeros = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        w, b = (ones.clone(), zeros.clone()) if affine else (None, None)
        stats = (zeros, ones) if track_running_stats else (None, None)
        super().__init__(w, b, *stats, eps, momentum)
        self._ranks = self._RANKS  # torch's input ranks (norm_checks.check_rank)
        kept = {"num_features": n, "affine": affine, "track_running_stats": track_running_stats}
        self.__dict__["_torch_settings"] = kept  # as torch's (user_attrs.setting)

    _RANKS: tuple = ()


class BatchNorm1d(_BatchNormNd):
    """torch's ``BatchNorm1d``: input [N, C] or [N, C, L]."""

    _RANKS = (2, 3)


class BatchNorm2d(_BatchNormNd):
    """torch's ``BatchNorm2d``: input [N, C, H, W]."""

    _RANKS = (4,)  # with torch's rank check (until 2026-12-06 one class for all)


class BatchNorm3d(_BatchNormNd):
    """torch's ``BatchNorm3d``: input [N, C, D, H, W]."""

    _RANKS = (5,)


def classed(bn: BatchNorm, m: torch.nn.Module) -> BatchNorm:
    """A converted layer as the class of the torch layer ``m`` it came from
    (the same object: the classes add no state)."""
    for theirs, ours in (
        (torch.nn.BatchNorm1d, BatchNorm1d),
        (torch.nn.BatchNorm2d, BatchNorm2d),
        (torch.nn.BatchNorm3d, BatchNorm3d),
    ):
        if isinstance(m, theirs):
            bn.__class__ = ours
    return bn
