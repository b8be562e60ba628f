"""``torch.nn.EmbeddingBag`` with a private table (PyTorch's text
classification tutorial: ``EmbeddingBag(V, D)(text, offsets)``): the rows
of every id, then one public product that sums or averages each bag's rows
(a [bags, ids] matrix of 1, 1/count or the per-sample weights: local, one
truncation). Ids are public integers or private one-hot rows, as for
:class:`Embedding`; the bags (offsets, or the rows of a 2-D input) are
public."""

from __future__ import annotations

import torch

from .._native import ShapeError
from ..tensor import SharedTensor
from .habits import borrowing
from .layers_extra import MAX_NORM, Embedding
from .module import Module
from .stats import LINEAR


class EmbeddingBag(Module):
    """``EmbeddingBag(num_embeddings, embedding_dim, mode="mean", ...)`` as
    torch's (or ``EmbeddingBag(weight=..., mode=..., padding_idx=,
    include_last_offset=)`` from a converted layer). ``forward(input,
    offsets=None, per_sample_weights=None)``: a 2-D input is one bag per row;
    a 1-D one is cut into bags at ``offsets``. ``padding_idx`` ids take no
    part (nor count in a mean). ``mode="max"`` takes equal bags only (a 2-D
    input); with private ids, a mean with ``padding_idx`` is refused (the
    counts would be private)."""

    kind = LINEAR

    def __init__(self, *args, weight=None, mode="mean", padding_idx=None, **kw):
        super().__init__()
        last = kw.pop("include_last_offset", False)
        if weight is None:
            layer = torch.nn.EmbeddingBag(*args, mode=mode, padding_idx=padding_idx, **kw)
            if layer.max_norm is not None:
                raise NotImplementedError(f"EmbeddingBag with max_norm {MAX_NORM}")
            if layer.scale_grad_by_freq:
                raise NotImplementedError("EmbeddingBag with scale_grad_by_freq")
            weight, padding_idx = layer.weight.detach().clone(), layer.padding_idx
        elif args or kw:
            raise TypeError(f"EmbeddingBag(weight=...) takes no other arguments, got {args} {kw}")
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
        if padding_idx is not None:  # torch's check (Embedding's, as torch's)
            with borrowing():
                padding_idx = Embedding(weight=weight, padding_idx=padding_idx).padding_idx
        self.register_parameter("weight", weight)  # torch's name: state dicts pair
        self.padding_idx, self.mode, self.include_last_offset = padding_idx, mode, bool(last)

    def rows(self, ids):
        """Each id's row of the table (Embedding's, on this parameter)."""
        with borrowing():  # this layer's parameter, its flags its own
            table = Embedding(weight=self._params["weight"], padding_idx=self.padding_idx)
            return table.forward(ids)

    def forward(self, input, offsets=None, per_sample_weights=None):  # noqa: A002 - torch's
        """Each bag's sum, mean or maximum of its ids' rows."""
        shared = isinstance(input, SharedTensor)
        v = self._params["weight"].shape[0]
        if shared and (input.dim() == 0 or input.shape[-1] != v):  # ids shared as numbers
            raise ShapeError(
                f"EmbeddingBag of {v} rows expects one-hot rows [..., {v}] as a SharedTensor "
                f"(ids shared as cryptensor(F.one_hot(ids, {v}))), got shape {list(input.shape)}"
            )
        ids_dims = input.dim() - 1 if shared else torch.as_tensor(input).dim()
        if per_sample_weights is not None and self.mode != "sum":
            raise NotImplementedError(
                "embedding_bag: per_sample_weights was not None. per_sample_weights is "
                f"only supported for mode='sum' (got mode='{self.mode}')"
            )
        if isinstance(per_sample_weights, SharedTensor):
            raise NotImplementedError("EmbeddingBag with private per_sample_weights")
        if ids_dims == 2:
            if offsets is not None:
                raise ValueError(
                    "if input is 2D, then offsets has to be None, as input is treated is a "
                    "mini-batch of fixed length sequences"
                )
            bags, length = tuple(input.shape)[:2]
            starts = list(range(0, bags * length + 1, length)) if length else [0] * (bags + 1)
            input = input.reshape(bags * length, -1) if shared else input.reshape(-1)
        elif ids_dims == 1:
            starts = self._starts(offsets, input.shape[0])
        else:
            raise ShapeError(
                f"EmbeddingBag expects 1-D or 2-D ids (one-hot rows: 2-D or 3-D), got "
                f"shape {list(input.shape)}"
            )
        keep = self._kept(input, shared)
        if shared and self.padding_idx is not None:
            input = input * keep  # a public column mask: the padding id adds nothing
        rows = self.rows(input)  # [N, D]
        if self.mode == "max":
            return self._max(rows, starts, ids_dims)
        mix = torch.zeros(len(starts) - 1, rows.shape[0], dtype=torch.float64)
        w = per_sample_weights
        w = torch.ones(rows.shape[0]) if w is None else torch.as_tensor(w).reshape(-1)
        if w.shape[0] != rows.shape[0]:
            raise ValueError(f"per_sample_weights has {w.shape[0]} entries for {rows.shape[0]} ids")
        # per id, 1 where it counts (private ids: all, their padding column
        # being zeroed in the one-hot rows instead)
        counts = keep if (keep is not None and not shared) else torch.ones(rows.shape[0])
        for b, (a, e) in enumerate(zip(starts, starts[1:])):
            part = w[a:e].double() * counts[a:e]
            if self.mode == "mean":
                part = part / counts[a:e].sum().clamp(min=1)
            mix[b, a:e] = part
        return rows.rmatmul(mix) if isinstance(rows, SharedTensor) else mix @ rows

    def _starts(self, offsets, n: int) -> list:
        """The bags' bounds [s0, s1, ..., n] from torch's offsets."""
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if isinstance(offsets, SharedTensor):
            raise NotImplementedError("EmbeddingBag offsets must be public")
        o = [int(v) for v in torch.as_tensor(offsets).reshape(-1)]
        if not o or o[0] != 0:
            raise RuntimeError(
                "offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to "
                f"start from position 0. However, got {o[0] if o else 'none'}"
            )
        if o[-1] > n:
            raise RuntimeError(
                f"offsets[-1] can not be greater than input's length {n} but got "
                f"offsets[-1] of {o[-1]}"
            )
        if any(b < a for a, b in zip(o, o[1:])):
            raise RuntimeError(f"offsets must be non-decreasing, got {o}")
        return o if self.include_last_offset else o + [n]

    def _kept(self, ids, shared: bool):
        """The padding id's mask: over the ids (public) or the one-hot
        columns (private); None without ``padding_idx``."""
        p = self.padding_idx
        if p is None:
            return None
        if shared:
            if self.mode == "mean":
                raise NotImplementedError(
                    "EmbeddingBag(mode='mean', padding_idx=...) with private ids: each "
                    "bag's count of non-padding ids would be private; give public ids"
                )
            keep = torch.ones(ids.shape[-1], dtype=torch.float64)
            keep[p] = 0
            return keep
        return (torch.as_tensor(ids) != p).double()

    def _max(self, rows, starts: list, ids_dims: int):
        sizes = {b - a for a, b in zip(starts, starts[1:])}
        if ids_dims != 2 or self.padding_idx is not None or 0 in sizes:
            raise NotImplementedError(
                "EmbeddingBag(mode='max') with bags of different lengths or padding_idx "
                "(equal bags, a 2-D input, only)"
            )
        return rows.reshape(len(starts) - 1, sizes.pop(), -1).amax(1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, mode={self.mode!r}"


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""

    def bag(m):
        if m.max_norm is not None or m.scale_grad_by_freq:
            raise NotImplementedError("EmbeddingBag with max_norm or scale_grad_by_freq")
        return EmbeddingBag(
            weight=plain(m.weight),
            mode=m.mode,
            padding_idx=m.padding_idx,
            include_last_offset=m.include_last_offset,
        )

    return {torch.nn.EmbeddingBag: bag}
