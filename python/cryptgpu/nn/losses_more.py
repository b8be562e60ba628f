"""More of torch's losses on SharedTensors, each composed from operations
the package has (so every gradient is the recorded operations' own, as
torch's autograd gives it): the metric-learning losses (triplet margin,
with or without a distance function; cosine embedding; margin ranking;
hinge embedding) and the count and Gaussian negative log-likelihoods.
As classes of cryptgpu.nn, as torch's loss modules and functional forms
on a SharedTensor (torch_dispatch), and inside a converted forward
(``FUNCTIONS``, and loss_layers for the modules a model holds).

What each costs: a pairwise distance is a norm (p = 2: a range-reduced
square root), a cosine similarity two unit rows; each ``clamp_min(., 0)``
one comparison (a ReLU); a shared target of the margin ranking loss one
private product; the Poisson loss an exp (log_input) or a log, the
Gaussian one a log and a division (of public values when ``var`` is
public: no private log or division then).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import torch_dispatch
from ..tensor import SharedTensor
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    _legacy,
    _note_public_prediction,
)
from .module import Module
from .stats import OTHER

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction) -> str:
    """torch's ValueError for a reduction it does not know (its words)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(per, reduction: str):
    if reduction == "mean":
        return per.mean()
    return per.sum() if reduction == "sum" else per


def _operand(v):
    """A SharedTensor as it is; anything else as a float64 torch tensor."""
    return v if isinstance(v, SharedTensor) else torch.as_tensor(v, dtype=torch.float64)


def _relu(v):
    """max(v, 0): one comparison for a SharedTensor."""
    return v.relu() if isinstance(v, SharedTensor) else v.clamp_min(0)


def _public_target(target, what: str) -> torch.Tensor:
    if isinstance(target, SharedTensor):
        raise NotImplementedError(
            f"{what} with a shared target: its +1 / -1 targets must be public (torch compares "
            "them with 1 and -1)"
        )
    return torch.as_tensor(target, dtype=torch.float64)


class _Loss(Module):
    """A loss called directly (torch's loss-module semantics, no layer
    bookkeeping): ``forward``."""

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


class TripletMarginWithDistanceLoss(_Loss):
    """``torch.nn.TripletMarginWithDistanceLoss(distance_function=None,
    margin=1.0, swap=False, reduction="mean")``: max(d(a, p) - d(a, n) +
    margin, 0) per triplet, d the ``distance_function`` (a callable on
    SharedTensors, e.g. ``lambda x, y: 1 - F.cosine_similarity(x, y)``;
    ``F.pairwise_distance`` by default); ``swap`` takes min(d(a, n),
    d(p, n)) (one comparison). The max is one comparison (a ReLU)."""

    def __init__(
        self, *, distance_function=None, margin: float = 1.0, swap=False, reduction="mean"
    ):
        super().__init__()
        if margin <= 0:
            raise ValueError(
                f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, got "
                f"{margin} instead"
            )
        self.distance_function = distance_function
        self.margin, self.swap, self.reduction = margin, bool(swap), _reduction(reduction)

    def _distance(self, x, y):
        f = self.distance_function
        return torch.pairwise_distance(x, y) if f is None else f(x, y)

    def _distances(self, pairs) -> list:
        if self.distance_function is None:  # torch's default, pairwise_distance
            return _stacked_distances(pairs, 2.0, 1e-6) or [self._distance(x, y) for x, y in pairs]
        return [self._distance(x, y) for x, y in pairs]

    def forward(self, anchor, positive, negative):
        """reduction(max(d(anchor, positive) - d(anchor, negative) + margin, 0))."""
        return _triplet(self._distances, anchor, positive, negative, self)


class TripletMarginLoss(TripletMarginWithDistanceLoss):
    """``torch.nn.TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False,
    reduction="mean")``: the triplet loss over ``F.pairwise_distance(x, y,
    p, eps)`` (the p-norm of x - y + eps over the last dim, p = 2, 1 or
    inf: a p = 2 norm is a range-reduced square root, 1e-4 relative for
    squared distances from 2^-16 to 2^30; torch's default eps, 1e-6, is
    below 2^-16 and adds nothing in fixed point)."""

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        size_average=None,
        reduce=None,
        reduction: str = "mean",
    ):
        reduction = _legacy(size_average, reduce, reduction)
        if margin <= 0:
            raise ValueError(f"margin must be greater than 0, got {margin}")
        super().__init__(margin=margin, swap=swap, reduction=reduction)
        self.p, self.eps = p, eps

    def _distance(self, x, y):
        return torch.pairwise_distance(x, y, self.p, self.eps)

    def _distances(self, pairs) -> list:
        stacked = _stacked_distances(pairs, self.p, self.eps)
        return stacked or [self._distance(x, y) for x, y in pairs]


def _stacked_distances(pairs, p, eps):
    """``F.pairwise_distance(x, y, p, eps)`` of each pair as one norm of
    their stacked differences where each is shared (p = 2: one norm call
    for the two or three distances of a triplet, 118 rounds where one
    at a time took 224, measured); None where that does not apply (then
    pairwise_distance's own, with its errors)."""
    diffs = [x - y if isinstance(x, SharedTensor) else (y - x).neg() for x, y in pairs]
    if (
        isinstance(p, bool)
        or p not in (1, 2, math.inf)
        or not all(isinstance(d, SharedTensor) and d.dim() > 0 for d in diffs)
    ):
        return None
    shape = torch.broadcast_shapes(*(tuple(d.shape) for d in diffs))  # torch's RuntimeError
    stacked = torch.stack([d if tuple(d.shape) == shape else d.expand(shape) for d in diffs])
    return list((stacked + float(eps)).norm(p, -1).unbind(0))


def _triplet(distances, anchor, positive, negative, loss):
    dims = [_operand(t).dim() for t in (anchor, positive, negative)]
    if not dims[0] == dims[1] == dims[2]:
        raise RuntimeError(
            "The anchor, positive, and negative tensors are expected to have the same number "
            f"of dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative "
            f"{dims[2]}D inputs"
        )
    anchor, positive, negative = (_operand(t) for t in (anchor, positive, negative))
    pairs = [(anchor, positive), (anchor, negative)]
    d_pos, d_neg, *d_swap = distances(pairs + [(positive, negative)] if loss.swap else pairs)
    if d_swap:
        d_neg = torch.minimum(d_neg, d_swap[0])
    # d_pos - d_neg + margin, with a SharedTensor on either side
    diff = d_pos - d_neg if isinstance(d_pos, SharedTensor) else (d_neg - d_pos).neg()
    return _reduce(_relu(diff + float(loss.margin)), loss.reduction)


class CosineEmbeddingLoss(_Loss):
    """``torch.nn.CosineEmbeddingLoss(margin=0.0, reduction="mean")``: with
    c the cosine similarity of x1 and x2 over the last dim
    (``F.cosine_similarity``: within about 2e-4), 1 - c where the target
    is 1 and max(0, c - margin) where it is -1 (0 for any other target
    value, as torch's). Targets are public (a [N] target with [N, D]
    inputs, a 0-d one with [D] inputs); the max is one comparison."""

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.margin = float(margin)
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))

    def forward(self, input1, input2, target):
        """reduction(where(t == 1, 1 - cos, where(t == -1, max(0, cos - margin), 0)))."""
        t = _public_target(target, "cosine_embedding_loss")
        x1, x2 = _operand(input1), _operand(input2)
        if t.dim() not in (0, 1):
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        want = 2 if t.dim() == 1 else 1
        if x1.dim() != want or x2.dim() != want:
            raise RuntimeError(
                f"{t.dim()}D target tensor expects {want}D input tensors, but found inputs with "
                f"sizes {list(x1.shape)} and {list(x2.shape)}."
            )
        rows = torch.broadcast_shapes(tuple(x1.shape), tuple(x2.shape))[:-1]
        torch.broadcast_shapes(rows, tuple(t.shape))  # torch's RuntimeError
        cos = torch.cosine_similarity(x1, x2, t.dim())
        pos, neg = (t == 1).double(), (t == -1).double()
        per = (1.0 - cos) * pos if bool(pos.any()) else cos * pos
        if bool(neg.any()):  # no comparison where no target is -1
            per = per + _relu(cos - self.margin) * neg
        return _reduce(per, self.reduction)


class MarginRankingLoss(_Loss):
    """``torch.nn.MarginRankingLoss(margin=0.0, reduction="mean")``:
    max(0, -y (x1 - x2) + margin), broadcasting as torch's; the target
    y (+1 / -1) public or shared (then one private product, and y gets
    torch's gradient too). The max is one comparison."""

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.margin = float(margin)
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))

    def forward(self, input1, input2, target):
        """reduction(max(0, -target (input1 - input2) + margin))."""
        x1, x2, y = (_operand(v) for v in (input1, input2, target))
        if x1.dim() != x2.dim() or x1.dim() != y.dim():
            raise RuntimeError(
                "margin_ranking_loss : All input tensors should have same dimension but got "
                f"sizes: input1: {torch.Size(x1.shape)}, input2: {torch.Size(x2.shape)}, "
                f"target: {torch.Size(y.shape)} "
            )
        torch.broadcast_shapes(tuple(x1.shape), tuple(x2.shape), tuple(y.shape))
        if isinstance(y, SharedTensor):  # public inputs requiring grad: named at backward
            _note_public_prediction(input1, "margin_ranking_loss")
            _note_public_prediction(input2, "margin_ranking_loss")
        d = x1 - x2 if isinstance(x1, SharedTensor) else (x2 - x1).neg()
        p = d * y if isinstance(d, SharedTensor) else y * d
        return _reduce(_relu(float(self.margin) - p), self.reduction)


class HingeEmbeddingLoss(_Loss):
    """``torch.nn.HingeEmbeddingLoss(margin=1.0, reduction="mean")``: x
    where the target is 1, max(0, margin - x) where it is -1 (torch's
    where on a public target: both terms for any other value), broadcast
    as torch's. Targets are public; the max is one comparison, left out
    where no target differs from 1."""

    def __init__(self, margin: float = 1.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.margin = float(margin)
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))

    def forward(self, input, target):  # noqa: A002 - torch's names
        """reduction(where(t != 1, max(0, margin - x), 0) + where(t != -1, x, 0))."""
        t = _public_target(target, "hinge_embedding_loss")
        if not isinstance(input, SharedTensor):
            return F.hinge_embedding_loss(
                torch.as_tensor(input), t, self.margin, reduction=self.reduction
            )
        torch.broadcast_shapes(tuple(input.shape), tuple(t.shape))  # torch's RuntimeError
        m_margin, m_self = (t != 1).double(), (t != -1).double()
        per = input * m_self
        if bool(m_margin.any()):
            per = per + _relu(self.margin - input) * m_margin
        return _reduce(per, self.reduction)


class PoissonNLLLoss(_Loss):
    """``torch.nn.PoissonNLLLoss(log_input=True, full=False, eps=1e-8,
    reduction="mean")``: e^x - t x for log-rates x (``log_input``; the
    range-reduced exp: x in [-16, 20.8], 1e-3 relative), x - t log(x +
    eps) for rates (the range-reduced log: x + eps in [2^-16, 2^30],
    within 4e-5; torch's eps, 1e-8, is below 2^-16 and adds nothing in
    fixed point); ``full`` adds torch's Stirling term t log t - t +
    log(2 pi t) / 2 for targets above 1 (computed in plaintext from a
    public target; with a shared one ``full`` is refused). A shared target
    costs one private product, and is differentiated as torch's."""

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        size_average=None,
        eps: float = 1e-8,
        reduce=None,
        reduction: str = "mean",
    ):
        super().__init__()
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))

    def forward(self, log_input, target):
        """reduction(e^x - t x) (or x - t log(x + eps)), plus the Stirling term."""
        x, t = _operand(log_input), _operand(target)
        torch.broadcast_shapes(tuple(x.shape), tuple(t.shape))  # torch's RuntimeError
        if self.full and isinstance(t, SharedTensor):
            raise NotImplementedError(
                "poisson_nll_loss(full=True) with a shared target (the Stirling term is "
                "computed from a public one)"
            )
        if isinstance(t, SharedTensor):
            _note_public_prediction(log_input, "poisson_nll_loss")
        if self.log_input:
            per = torch.exp(x) - (x * t if isinstance(x, SharedTensor) else t * x)
        else:
            lg = torch.log(x + self.eps)
            per = x - (lg * t if isinstance(lg, SharedTensor) else t * lg)
        if self.full:
            st = t * t.log() - t + 0.5 * (2 * math.pi * t).log()
            per = per + st.masked_fill(t <= 1, 0)
        return _reduce(per, self.reduction)


class GaussianNLLLoss(_Loss):
    """``torch.nn.GaussianNLLLoss(full=False, eps=1e-6, reduction="mean")``:
    (log v + (x - t)^2 / v) / 2 (plus log(2 pi) / 2 with ``full``), v the
    variance clamped at ``eps`` (as torch's: the clamp passes the gradient
    on unchanged). ``var`` shared or public, of the input's shape, one dim
    short of it, or with one dim of size 1 where the input's is not (as
    torch's; torch's ValueError otherwise, and for a negative public
    variance: a shared one cannot be checked). A shared variance takes the
    range-reduced log (within 4e-5) and a private division (a few units of
    2^-16 relative), for v in [2^-16, 2^30]: it is clamped at max(eps,
    2^-16) (one comparison), since torch's 1e-6 is 0 in fixed point; a
    public one is clamped, logged and inverted in plaintext."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__()
        self.full, self.eps = bool(full), float(eps)
        if reduction not in _REDUCTIONS:
            raise ValueError(reduction + " is not valid")
        self.reduction = reduction

    def forward(self, input, target, var):  # noqa: A002 - torch's names
        """reduction((log v + (input - target)^2 / v) / 2)."""
        x, t = _operand(input), _operand(target)
        var = _checked_var(x, var)
        if isinstance(var, SharedTensor):
            lo = max(self.eps, 2.0 ** -var._s().precision_bits)
            v0 = var.detach()  # the clamp, outside the tape: its gradient
            v = var + (v0.clamp(min=lo) - v0)  # passes on to var unchanged, as torch's
            log_v = v.log()
        else:
            _note_public_prediction(var, "gaussian_nll_loss")
            v = var.clamp(min=self.eps)
            log_v = v.log()
        d = x - t if isinstance(x, SharedTensor) else (t - x).neg()
        sq = d * d
        per = (log_v + sq / v) * 0.5 if isinstance(log_v, SharedTensor) else (sq / v + log_v) * 0.5
        if self.full:
            per = per + 0.5 * math.log(2 * math.pi)
        return _reduce(per, self.reduction)


def _checked_var(x, var):
    """torch's checks and broadcast of the variance: a number (>= 0) as a
    tensor like the input; a public tensor checked for negative entries;
    one dim short of the input unsqueezed at the end."""
    if isinstance(var, float):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = torch.full(tuple(x.shape), var, dtype=torch.float64)
    elif not isinstance(var, SharedTensor):
        if torch.any(var < 0):  # an int: torch's TypeError, from torch.any
            raise ValueError("var has negative entry/entries")
        var = torch.as_tensor(var, dtype=torch.float64)
    xs, vs = tuple(x.shape), tuple(var.shape)
    if vs != xs:
        if xs[:-1] == vs:
            var = var.unsqueeze(-1)
        elif not (len(xs) == len(vs) and sum(b for a, b in zip(xs, vs) if a != b) == 1):
            raise ValueError("var is of incorrect size")
    return var


# the functional forms, torch's signatures
def _triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2,
    eps=1e-6,
    swap=False,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    loss = TripletMarginLoss(margin, p, eps, swap, size_average, reduce, _reduction(reduction))
    return loss(anchor, positive, negative)


def _triplet_margin_with_distance_loss(
    anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False, reduction="mean"
):
    _reduction(reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    loss = TripletMarginWithDistanceLoss(
        distance_function=distance_function, margin=margin, swap=swap, reduction=reduction
    )
    return loss(anchor, positive, negative)


def _cosine_embedding_loss(
    input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"
):
    return CosineEmbeddingLoss(margin, size_average, reduce, reduction)(input1, input2, target)


def _margin_ranking_loss(
    input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"
):
    return MarginRankingLoss(margin, size_average, reduce, reduction)(input1, input2, target)


def _hinge_embedding_loss(
    input,  # noqa: A002 - torch's names
    target,
    margin=1.0,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    return HingeEmbeddingLoss(margin, size_average, reduce, reduction)(input, target)


def _poisson_nll_loss(
    input,  # noqa: A002 - torch's names
    target,
    log_input=True,
    full=False,
    size_average=None,
    eps=1e-8,
    reduce=None,
    reduction="mean",
):
    loss = PoissonNLLLoss(log_input, full, size_average, eps, reduce, reduction)
    return loss(input, target)


def _gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):  # noqa: A002
    return GaussianNLLLoss(full=full, eps=eps, reduction=reduction)(input, target, var)


_FORMS = {
    F.triplet_margin_loss: _triplet_margin_loss,
    F.triplet_margin_with_distance_loss: _triplet_margin_with_distance_loss,
    F.cosine_embedding_loss: _cosine_embedding_loss,
    F.margin_ranking_loss: _margin_ranking_loss,
    F.hinge_embedding_loss: _hinge_embedding_loss,
    F.poisson_nll_loss: _poisson_nll_loss,
    F.gaussian_nll_loss: _gaussian_nll_loss,
}
torch_dispatch.TABLE.update(_FORMS)

# the same functions called in a converted forward (functional.FUNCTIONS)
FUNCTIONS = {f: (f, OTHER) for f in _FORMS}


def converters(plain) -> dict:
    """torch loss class -> function(module) -> our loss (loss_layers')."""
    del plain
    t = torch.nn
    return {
        t.TripletMarginLoss: lambda m: TripletMarginLoss(
            m.margin, m.p, m.eps, m.swap, reduction=m.reduction
        ),
        t.TripletMarginWithDistanceLoss: lambda m: TripletMarginWithDistanceLoss(
            distance_function=m.distance_function,
            margin=m.margin,
            swap=m.swap,
            reduction=m.reduction,
        ),
        t.CosineEmbeddingLoss: lambda m: CosineEmbeddingLoss(m.margin, reduction=m.reduction),
        t.MarginRankingLoss: lambda m: MarginRankingLoss(m.margin, reduction=m.reduction),
        t.HingeEmbeddingLoss: lambda m: HingeEmbeddingLoss(m.margin, reduction=m.reduction),
        t.PoissonNLLLoss: lambda m: PoissonNLLLoss(
            m.log_input, m.full, eps=m.eps, reduction=m.reduction
        ),
        t.GaussianNLLLoss: lambda m: GaussianNLLLoss(full=m.full, eps=m.eps, reduction=m.reduction),
    }


# CrypTen's loss methods of an encrypted tensor (``pred.cross_entropy(target)``):
# the losses of losses.py, attached to SharedTensor here (the tensor layer cannot
# import nn), as the functional losses are registered with torch_dispatch.
def _cross_entropy_method(self, target):
    """CrypTen's ``pred.cross_entropy(target)``: the softmax over dim 1 (dim
    0 of a 1-D pred) against one-hot or probability targets of pred's shape
    (integer labels are also taken), summed and divided by ``target.size(0)``,
    as CrypTen's: for [N, C] logits the batch mean, torch's
    ``F.cross_entropy``; a 1-D pred is divided by its C, as CrypTen's is.
    The gradient is the exact (softmax - target) / size(0)."""
    if self.dim() == 2:
        return CrossEntropyLoss()(self, target)
    return CrossEntropyLoss(reduction="sum")(self, target).div(self.shape[0])


def _binary_cross_entropy_method(self, target):
    """CrypTen's ``pred.binary_cross_entropy(target)``: the mean of
    -(y log p + (1 - y) log(1 - p)) over every element (:class:`BCELoss`)."""
    return BCELoss()(self, target)


def _binary_cross_entropy_with_logits_method(self, target):
    """CrypTen's ``logits.binary_cross_entropy_with_logits(target)``: the
    mean binary cross-entropy of sigmoid(logits) (:class:`BCEWithLogitsLoss`)."""
    return BCEWithLogitsLoss()(self, target)


for _name, _method in (
    ("cross_entropy", _cross_entropy_method),
    ("binary_cross_entropy", _binary_cross_entropy_method),
    ("binary_cross_entropy_with_logits", _binary_cross_entropy_with_logits_method),
):
    _method.__name__, _method.__qualname__ = _name, f"SharedTensor.{_name}"
    setattr(SharedTensor, _name, _method)
