"""Losses of cryptgpu.nn for private training: cross-entropy and binary
cross-entropy (with the exact prediction-minus-target gradients), mean
squared and absolute error; and torch's functional losses on SharedTensors.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.nn.functional as F

from .. import autograd as ag
from .. import functions, torch_dispatch
from .. import gradients as gr
from .._native import InvalidArgumentError
from ..tensor import SharedTensor
from .habits import InputTypeError
from .losses_targets import (
    _class_rows,
    _no_mean_over_nothing,
    _one_hot,
    check_binary_target,
    check_class_target,
    up_scale,
)
from .module import Module
from .stats import SOFTMAX, _track


def _reduction(r) -> str:
    allowed = ("mean", "sum", "none")
    if r not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {r!r}")
    return r


def _reduce(per, reduction: str, s: float = 1.0):
    """per reduced; ``s``: the scale of up-scaled public weights in per,
    divided out once (exact: by a whole power of two, with the mean's N)."""
    if s == 1:
        return per if reduction == "none" else (per.sum() if reduction == "sum" else per.mean())
    if reduction == "none":
        return per.div(s)
    return per.sum().div(s * (per.numel() if reduction == "mean" else 1))


def _same_shape(x, target, what: str):
    t = target if isinstance(target, SharedTensor) else torch.as_tensor(target, dtype=torch.float64)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(
            f"{what}: using a target size ({tuple(t.shape)}) that is different to the input "
            f"size ({tuple(x.shape)})"
        )
    return t


def _warn_broadcast(x, target) -> None:
    """torch's error for an input that is no tensor (a NumPy array gave a
    NumPy float; InputTypeError); its warning where the shapes differ."""
    if not isinstance(x, (SharedTensor, torch.Tensor)):
        raise InputTypeError(f"argument 'input' must be Tensor, not {type(x).__name__}")
    shape = getattr(target, "shape", None)
    if shape is not None and tuple(shape) != tuple(x.shape):
        level, f = 1, sys._getframe(0)  # the caller outside cryptgpu and torch
        while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_LIBS):
            level, f = level + 1, f.f_back
        warnings.warn(
            f"Using a target size ({torch.Size(tuple(shape))}) that is different to the input "
            f"size ({torch.Size(tuple(x.shape))}). This will likely lead to incorrect results "
            "due to broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=level,
        )


# torch's package and cryptgpu's (nn's parent): the frames a warning skips
_LIBS = tuple(
    os.path.dirname(os.path.abspath(f)) + os.sep
    for f in (torch.__file__, os.path.dirname(__file__))
)


def _with_gradient(loss, x, diff, reduction: str, s: float = 1.0):
    """``loss`` recorded with the gradient ``diff`` (per element of x, the
    closed form of d loss / d x), divided by N for a mean and by the
    weights' scale ``s`` (see _reduce)."""
    k = s * (x.numel() if reduction == "mean" else 1)
    if k != 1:
        diff = diff.div(k)
    return ag.record(loss, (x,), lambda g: (diff * g,))


class _Tracked(Module):
    """A loss whose cost is counted under its kind in per-layer statistics."""

    kind = SOFTMAX

    def __call__(self, x, target):
        if target is None or isinstance(target, str):  # torch's TypeError, not as_tensor's
            raise TypeError(
                f"{type(self).__name__}: argument 'target' (position 2) must be Tensor, not "
                f"{type(target).__name__}"
            )
        if isinstance(x, SharedTensor) and isinstance(target, torch.Tensor):
            x._plain(target, f"{type(self).__name__} target")  # one requiring grad: noted
        with _track(self.kind, x):
            return self.forward(x, target)


class _ClassLoss(_Tracked):
    """What the class-label losses share with torch's: ``weight`` (public
    class weights), ``ignore_index``, ``reduction`` (and the deprecated
    size_average / reduce, refused unless None)."""

    def __init__(self, weight, size_average, ignore_index, reduce, reduction) -> None:
        super().__init__()
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))
        if isinstance(weight, SharedTensor):
            raise NotImplementedError(f"{type(self).__name__} with shared class weights")
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)
        self.ignore_index = int(ignore_index)

    def _label_rows(self, t, like):
        """(one-hot [N, C] of the labels, each row's weight: the label's
        class weight, 0 for ignore_index rows)."""
        c = like.shape[1]
        if self.weight is not None and self.weight.numel() != c:
            raise RuntimeError(f"weight tensor should be defined for all {c} classes")
        keep = t != self.ignore_index
        safe = torch.where(keep, t, torch.zeros_like(t))
        w = torch.ones(c, dtype=torch.float64) if self.weight is None else self.weight
        return _one_hot(safe, like), w[safe.long()] * keep.double()


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy of logits [N, C] (or [C], or [N, C, d1, ...]) against
    labels or one-hot / probability targets, as ``torch.nn.CrossEntropyLoss``:
    ``weight`` (public class weights), ``ignore_index`` (with public
    labels), ``reduction`` ("mean", "sum" or "none") and ``label_smoothing``
    (the targets mixed with the uniform distribution). Plaintext logits
    against a shared target give a SharedTensor (no gradient).

    The loss value is computed privately with log_softmax (for monitoring);
    the backward pass uses the exact shortcut d loss / d logits =
    ((sum_c y_c) softmax(logits) - y) / N, as CryptGPU and CrypTen do (their
    rows sum to 1), rather than differentiating through the approximations;
    y is the target row times the class weights, and a labelled mean divides
    by the kept labels' weights instead of N. A row sum is plaintext for a
    public target (no product where each is 1) and the target's own local
    sum for a shared one (one private product of N x C values). Class
    weights below 1 are taken times a power of two (exact), which a mean
    cancels and "sum" / "none" divide out once; torch's RuntimeError for an
    ignore_index >= 0 with probability targets and for label dtypes it
    refuses (int32, bool, floats: int64 or uint8 only)."""

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise InvalidArgumentError(
                f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)

    def _targets(self, logits, target):
        """(target rows y [N, C], the mean's divisor, each row's sum or None
        where every row provably sums to 1, the scale s) for labels (with
        ignore_index and class weights), or one-hot / probability targets
        (shared or public), label smoothing applied. With labels the rows
        carry the weights, as torch's: (1 - e) w[y] at the label plus e / C
        times every class's weight, zero for an ignored row; the divisor is
        the sum of the kept labels' weights. With probability targets, as
        torch's: y w (the smoothed rows times the class weights), the
        divisor N. The row sums give the gradient (sum_c y_c) softmax - y:
        public ones are plaintext, a shared target's its own local sum.
        Weights below 1 are taken times s (up_scale: a power of two that
        brings the kept labels' largest, or the largest class weight, into
        [1, 2)), so that small ones (1e-5) keep their bits: y and the
        divisor carry s, which a mean over the weights cancels; "sum" and
        "none" divide by s once, at the end (until 2026-12-07 the weights
        were encoded as given: losses 0.6% off at 1e-5, random at 1e-6)."""
        c, eps, n = logits.shape[1], self.label_smoothing, logits.shape[0]
        t = None if isinstance(target, SharedTensor) else torch.as_tensor(target)
        if t is not None and t.dim() == 1 and not t.is_floating_point():
            y, rows = self._label_rows(t, logits)
            if self.weight is None and bool((t != self.ignore_index).all()):
                return y * (1.0 - eps) + eps / c, n, None, 1.0  # plain labels
            w = torch.ones(c, dtype=torch.float64) if self.weight is None else self.weight
            s = up_scale(rows)
            rows, w = rows * s, w * s
            keep = (t != self.ignore_index).double().reshape(-1, 1)
            y = y * (rows.reshape(-1, 1) * (1.0 - eps)) + keep * w.reshape(1, c) * (eps / c)
            return y, float(rows.sum()), y.sum(1, keepdim=True), s
        y = _one_hot(target, logits)
        y = y * (1.0 - eps) + eps / c if eps else y
        s = 1.0
        if self.weight is not None:
            if self.weight.numel() != c:
                raise RuntimeError(f"weight tensor should be defined for all {c} classes")
            s = up_scale(self.weight)
            y = y * (self.weight * s).reshape(1, c)
        if isinstance(y, SharedTensor):
            return y, n * s, y.sum(1, keepdim=True), s
        sums = y.sum(1, keepdim=True)
        # rows within a quarter unit of the encoding of 1: the product by
        # their sum would not change the gradient's encoding
        if bool(((sums - 1.0).abs() <= 2.0 ** -(logits._s().precision_bits + 2)).all()):
            return y, n * s, None, s
        return y, n * s, sums, s

    def forward(self, logits, target):
        """The cross-entropy of ``logits`` against ``target``: averaged over
        the batch (``reduction="mean"``; with class weights or ignored rows,
        over the weights kept, as torch's), summed (``"sum"``) or per sample
        (``"none"``). Plaintext logits against a shared target give a
        SharedTensor (torch's log_softmax, then products by the target)."""
        if not isinstance(logits, SharedTensor) and not isinstance(target, SharedTensor):
            return F.cross_entropy(
                logits,
                torch.as_tensor(target),
                weight=self.weight,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
                label_smoothing=self.label_smoothing,
            )
        check_class_target(F.cross_entropy, logits, target, self.ignore_index)
        logits, target, shape = _class_rows(logits, target, "CrossEntropyLoss")
        out = self._forward2d(logits, target)
        return out.reshape(shape) if self.reduction == "none" else out

    def _reduced(self, per_sample, denom, s):
        # s: the weights' scale, which "sum" and "none" divide out (exact:
        # the division by a whole power of two)
        if self.reduction != "mean":
            out = per_sample if self.reduction == "none" else per_sample.sum()
            return out if s == 1 else out.div(s)
        if denom == 1:
            return per_sample.sum()
        # div: the exact division by a whole-number count of kept rows
        # (times 1/denom was 1e-3 off at a loss of 43)
        return per_sample.sum().div(denom)

    def _forward2d(self, logits, target):
        # y: the target rows (weights folded in, times s); denom: the mean's
        # divisor, N s, or the sum of the kept labels' weights (times s);
        # sums: y's row sums (None where each is 1)
        y, denom, sums, s = self._targets(logits, target)
        if self.reduction == "mean":
            _no_mean_over_nothing(denom, "cross_entropy")
        if not isinstance(logits, SharedTensor):  # public logits, shared target
            _note_public_prediction(logits, "cross_entropy")
            lsm = torch.log_softmax(logits.detach().to(torch.float64), 1)
            return self._reduced((y * lsm).sum(1).neg(), denom, s)
        want_grad = ag.needs_grad(logits)
        with ag.inside(want_grad):
            per_sample = (logits.log_softmax(1) * y).sum(1).neg()
            if isinstance(y, SharedTensor) or bool((y >= 0).all()):
                # Each sample's loss is >= 0 in exact arithmetic (targets
                # >= 0); the log and exp approximations can make it slightly
                # negative (-0.0009 was seen), so each is clamped at 0: one
                # comparison of N values.
                per_sample = per_sample.relu()
            loss = self._reduced(per_sample, denom, s)
            if not want_grad:
                return loss
            # d loss_i / d logits_i = (sum_c y_ic) softmax_i - y_i: a product
            # by the row sums unless each is 1 (a shared target's: private)
            sm = logits.softmax(1)
            diff = (sm if sums is None else sm * sums) - y
            scale = denom if self.reduction == "mean" else s
            if scale not in (0, 1):
                diff = diff.div(scale)
        n = logits.shape[0]

        def back(g):
            if self.reduction == "none":
                g = g.reshape(n, 1)
            return (diff * g,)

        return ag.record(loss, (logits,), back)


def _note_public_prediction(x, what: str) -> None:
    """Plaintext predictions that require grad meet a shared target: the
    loss is private, so their gradient cannot be had; a backward() then
    names them (autograd.note_unrecorded) rather than only "no input
    requires grad"."""
    if isinstance(x, torch.Tensor) and x.requires_grad and ag.is_grad_enabled():
        ag.note_unrecorded(x, what)


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities [N, C] (or [C], or [N,
    C, d1, ...]; a LogSoftmax's output) against labels, as
    ``torch.nn.NLLLoss``: -x[i, y_i] times the label's weight, averaged over
    the weights (``reduction="mean"``), summed or per sample; ``ignore_index``
    rows count for nothing. Exact products by a public mask: the gradient
    comes from them. Shared one-hot targets select privately (one product),
    from shared or plaintext log-probabilities."""

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)

    def forward(self, x, target):
        """reduction(-weight[y_i] x[i, y_i]) over x [N, C], [C] or [N, C,
        d1, ...] (every position a sample, as torch's)."""
        if not isinstance(x, SharedTensor) and not isinstance(target, SharedTensor):
            return F.nll_loss(
                x,
                torch.as_tensor(target),
                weight=self.weight,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        check_class_target(F.nll_loss, x, target, self.ignore_index)
        x, target, shape = _class_rows(x, target, "NLLLoss")
        out = self._forward2d(x, target)
        return out.reshape(shape) if self.reduction == "none" else out

    def _forward2d(self, x, target):
        if isinstance(target, SharedTensor):  # x shared or public
            if self.weight is not None:
                raise NotImplementedError("NLLLoss with class weights and shared targets")
            return _reduce((_one_hot(target, x) * x).sum(1).neg(), self.reduction)
        y, rows = self._label_rows(torch.as_tensor(target), x)
        # weights below 1 times a power of two s (as CrossEntropyLoss's):
        # a mean cancels it, "sum" and "none" divide it out at the end
        s = up_scale(rows)
        rows = rows * s
        if self.reduction == "mean":
            total = float(rows.sum())
            _no_mean_over_nothing(total, "nll_loss")
            want = ag.needs_grad(x)
            with ag.inside(want):
                loss = (x * (y * rows.reshape(-1, 1))).sum(1).neg().sum() * (1.0 / total)
            # the gradient -w_y / total as one public factor (until 2026-12-07
            # 1 / total was rounded to 2^-f, then times w_y: 6.8% off at 1e4)
            diff = (y * (rows / total).reshape(-1, 1)).neg()
            return ag.record(loss, (x,), lambda g: (g * diff,)) if want else loss
        per = (x * (y * rows.reshape(-1, 1))).sum(1).neg()
        out = _reduce(per, self.reduction)
        return out if s == 1 else out.div(s)


class MSELoss(Module):
    """Squared error: mean (one recorded step: gradients.mean_square), sum or each."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _reduction(reduction)

    def forward(self, x, target):
        """reduction((x - target)^2)."""
        _warn_broadcast(x, target)
        d = x - target
        return gr.mean_square(d) if self.reduction == "mean" else _reduce(d * d, self.reduction)

    def __call__(self, x, target):
        return self.forward(x, target)


class BCEWithLogitsLoss(_Tracked):
    """Binary cross-entropy of logits x against targets y in [0, 1], as
    ``torch.nn.BCEWithLogitsLoss``: relu(x) - x y + log(1 + e^-|x|), the
    last term by e^-|x| on (0, 1] (``functions.exp_nonpos``) and log1p's
    degree-8 polynomial on it. The backward is the exact shortcut (sigmoid(x) - y) / N, as for
    cross-entropy. Public ``weight`` (per element, broadcast) and
    ``pos_weight`` (per class, the last dim) as torch's: w (pw y
    softplus(-x) + (1 - y) softplus(x)), gradient w (sigmoid(x) (pw y + 1
    - y) - pw y)."""

    def __init__(
        self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None
    ) -> None:
        super().__init__()
        for name, v in (("weight", weight), ("pos_weight", pos_weight)):
            if isinstance(v, SharedTensor):
                raise NotImplementedError(f"BCEWithLogitsLoss with a shared {name}")
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)
        self.pos_weight = (
            None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float64)
        )

    def forward(self, x, target):
        """reduction(relu(x) - x y + log(1 + e^-|x|)), weighted as torch's."""
        check_binary_target(F.binary_cross_entropy_with_logits, x, target)
        if not isinstance(x, SharedTensor) and isinstance(target, SharedTensor):
            # public logits: torch's softplus terms, linear in the shared y
            # (a y + b), one product by a public factor
            _note_public_prediction(x, "binary_cross_entropy_with_logits")
            xd = x.detach().to(torch.float64)
            y, sp = _same_shape(xd, target, "BCEWithLogitsLoss"), F.softplus(xd)
            pw = 1.0 if self.pos_weight is None else self.pos_weight
            a, b = pw * F.softplus(-xd) - sp, sp
            w, s = self._scaled_weight()
            if w is not None:
                a, b = a * w, b * w
            return _reduce(y * a + b, self.reduction, s)
        if not isinstance(x, SharedTensor):
            t = torch.as_tensor(target)
            w, pw = (None if v is None else v.to(x.dtype) for v in (self.weight, self.pos_weight))
            return F.binary_cross_entropy_with_logits(
                x, t, weight=w, reduction=self.reduction, pos_weight=pw
            )
        y = _same_shape(x, target, "BCEWithLogitsLoss")
        w, s = self._scaled_weight()
        want_grad = ag.needs_grad(x)
        with ag.inside(want_grad):
            a, neg = functions._abs_and_ltz(x)
            e = functions.exp_nonpos(a.neg())  # in (0, 1]
            one_plus_e = e + 1.0
            lg = functions.log1p_unit(e)
            if self.weight is None and self.pos_weight is None:
                per, coef, pw_y = (x + a) * 0.5 - x * y + lg, None, None
            else:
                pw_y = y if self.pos_weight is None else y * self.pos_weight
                coef = pw_y + (1.0 - y)  # sigmoid's factor in the gradient
                soft_neg = (a - x) * 0.5 + lg  # softplus(-x)
                per = soft_neg * coef + x * (1.0 - y)
                if w is not None:
                    per = per * w
            loss = _reduce(per, self.reduction, s)
            if not want_grad:
                return loss
            sig = functions.sigmoid_from_parts(one_plus_e, neg)
            diff = sig - y if coef is None else sig * coef - pw_y
            if w is not None:
                diff = diff * w
            return _with_gradient(loss, x, diff, self.reduction, s)

    def _scaled_weight(self):
        """(weight times s, s): small public weights up-scaled by a power of
        two s (see losses_targets.up_scale), divided out at the end."""
        if self.weight is None:
            return None, 1.0
        s = up_scale(self.weight)
        return self.weight * s, s


class BCELoss(_Tracked):
    """Binary cross-entropy of probabilities p against targets y, as
    ``torch.nn.BCELoss``: -(y log p + (1 - y) log(1 - p)), each log clamped
    at -100 as torch's. The private log is range-reduced (within 3e-5 of
    ln of the encoded p; an encoded 1e-4 is itself 5% off, 7 units of
    2^-16); the gradient (p - y) / (p (1 - p)) / N
    uses a private reciprocal over p (1 - p)'s range (2^-16 .. 1/4). Prefer
    BCEWithLogitsLoss on logits. A public ``weight`` (broadcast to p's
    shape) multiplies each element's loss and gradient, as torch's."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean") -> None:
        super().__init__()
        if isinstance(weight, SharedTensor):
            raise NotImplementedError("BCELoss with a shared weight")
        self.reduction = _reduction(_legacy(size_average, reduce, reduction))
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)

    def _weighted(self, per, shape):  # torch's error where it does not broadcast
        # small weights up-scaled (see _reduce, _scale)
        return per if self.weight is None else per * (self.weight * self._scale()).expand(shape)

    def _scale(self) -> float:
        return 1.0 if self.weight is None else up_scale(self.weight)

    def forward(self, p, target):
        """reduction(-(y log p + (1 - y) log(1 - p)))."""
        check_binary_target(F.binary_cross_entropy, p, target)
        if not isinstance(p, SharedTensor) and isinstance(target, SharedTensor):
            # public probabilities: torch's clamped logs, linear in the
            # shared y, one product by a public factor
            _note_public_prediction(p, "binary_cross_entropy")
            pd = p.detach().to(torch.float64)
            if bool(((pd < 0) | (pd > 1)).any()):
                raise RuntimeError("all elements of input should be between 0 and 1")
            y = _same_shape(pd, target, "BCELoss")
            lp, lq = pd.log().clamp(min=-100.0), (1.0 - pd).log().clamp(min=-100.0)
            per = self._weighted(y * (lq - lp) - lq, pd.shape)
            return _reduce(per, self.reduction, self._scale())
        if not isinstance(p, SharedTensor):
            w = None if self.weight is None else self.weight.to(p.dtype)
            t = torch.as_tensor(target)
            return F.binary_cross_entropy(p, t, weight=w, reduction=self.reduction)
        y = _same_shape(p, target, "BCELoss")
        if not isinstance(y, SharedTensor) and bool(((y < 0) | (y > 1)).any()):
            raise RuntimeError("all elements of target should be between 0 and 1")  # torch's
        want_grad = ag.needs_grad(p)
        with ag.inside(want_grad):
            q = 1.0 - p
            lp = p.log().clamp(min=-100.0)
            lq = q.log().clamp(min=-100.0)
            per = self._weighted((y * lp + (1.0 - y) * lq).neg(), p.shape)
            loss = _reduce(per, self.reduction, self._scale())
            if not want_grad:
                return loss
            # p (1 - p) is in (0, 1/4]: the reciprocal's octaves 2^-16..2^-2
            # only (15 thresholds instead of 45)
            inv = functions.reciprocal(p * q, -16, -1)
            diff = self._weighted((p - y) * inv, p.shape)
            return _with_gradient(loss, p, diff, self.reduction, self._scale())


class HuberLoss(Module):
    """torch's Huber loss: 0.5 d^2 where |d| < delta, delta (|d| - delta/2)
    beyond, as 0.5 c^2 + delta (|d| - |c|) with c = d clamped to
    [-delta, delta] (one batched clamp and one comparison for |d|);
    differentiated by the recorded operations."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__()
        if delta <= 0:
            raise RuntimeError("huber_loss does not support non-positive values for delta.")
        self.reduction, self.delta = _reduction(reduction), float(delta)

    def _elementwise(self, d):
        c = d.clamp(-self.delta, self.delta)
        return c * c * 0.5 + (d.abs() - c.abs()) * self.delta

    def forward(self, x, target):
        """reduction(huber(x - target))."""
        _warn_broadcast(x, target)
        return _reduce(self._elementwise(x - target), self.reduction)

    def __call__(self, x, target):
        return self.forward(x, target)


class SmoothL1Loss(HuberLoss):
    """torch's smooth L1 loss: the Huber loss with delta = beta, divided by
    beta (0.5 d^2 / beta below beta, |d| - beta / 2 beyond)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta=1.0):
        if beta < 0:
            raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
        if beta == 0:  # torch's L1 loss
            Module.__init__(self)
            self.reduction, self.delta = _reduction(_legacy(size_average, reduce, reduction)), 0.0
            return
        super().__init__(_legacy(size_average, reduce, reduction), beta)

    def _elementwise(self, d):
        if not isinstance(d, SharedTensor):  # plain tensors (the conversion check): torch's
            return F.smooth_l1_loss(d, torch.zeros_like(d), reduction="none", beta=self.delta)
        unit = 2.0 ** -d._s().precision_bits
        if self.delta < unit:  # the quadratic zone is below one unit (torch's |d| - beta/2)
            return d.abs()
        if self.delta >= 1:
            return super()._elementwise(d) * (1.0 / self.delta)
        # c (c / 2 beta) + |d| - |c|: c / (2 beta) is within 1/2, so one
        # unit of error stays one; (the Huber loss) / beta multiplied the
        # product's unit by 1/beta (a loss of -1.5 for beta = 1e-5 until
        # 2026-12-07: a probe)
        c = d.clamp(-self.delta, self.delta)
        return c * (c * (0.5 / self.delta)) + (d.abs() - c.abs())


class L1Loss(Module):
    """Mean (or sum, or every) absolute error, differentiated by the
    recorded operations (|d| = d sign(d): one comparison)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _reduction(reduction)

    def forward(self, x, target):
        """reduction(|x - target|)."""
        _warn_broadcast(x, target)
        return _reduce((x - target).abs(), self.reduction)

    def __call__(self, x, target):
        return self.forward(x, target)


# torch's functional losses on a SharedTensor (F.cross_entropy, F.mse_loss,
# and so torch.nn.CrossEntropyLoss / MSELoss modules called on one): the
# forms above, or a clear NotImplementedError for what they lack.
def _legacy(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:
        raise NotImplementedError("size_average / reduce (deprecated in torch): use reduction=")
    return reduction


def _cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    return CrossEntropyLoss(weight, size_average, ignore_index, reduce, reduction, label_smoothing)(
        input, target
    )


def _nll_loss(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
):
    return NLLLoss(weight, size_average, ignore_index, reduce, reduction)(input, target)


def _huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    if weight is not None:
        raise NotImplementedError("huber_loss with weight")
    return HuberLoss(reduction, delta)(input, target)


def _smooth_l1_loss(
    input, target, size_average=None, reduce=None, reduction="mean", beta=1.0, weight=None
):
    if weight is not None:
        raise NotImplementedError("smooth_l1_loss with weight")
    return SmoothL1Loss(size_average, reduce, reduction, beta)(input, target)


def _mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy(size_average, reduce, reduction)
    if weight is not None:
        raise NotImplementedError("mse_loss with weight")
    return MSELoss(reduction)(input, target)


def _bce_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    return BCEWithLogitsLoss(weight, size_average, reduce, reduction, pos_weight)(input, target)


def _bce(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    return BCELoss(weight, size_average, reduce, reduction)(input, target)


def _l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    if weight is not None:
        raise NotImplementedError("l1_loss with weight")
    return L1Loss(_legacy(size_average, reduce, reduction))(input, target)


torch_dispatch.TABLE.update(
    {
        F.cross_entropy: _cross_entropy,
        F.mse_loss: _mse_loss,
        F.binary_cross_entropy_with_logits: _bce_with_logits,
        F.binary_cross_entropy: _bce,
        F.l1_loss: _l1_loss,
        F.nll_loss: _nll_loss,
        F.huber_loss: _huber_loss,
        F.smooth_l1_loss: _smooth_l1_loss,
    }
)
