"""More of torch's layers, composed from the private operations the others
use: LayerNorm (BatchNorm's private statistics over the last dims),
GroupNorm and InstanceNorm (LayerNorm's private statistics over each
group or channel), AdaptiveMaxPool2d (a max tournament over each window),
and the table converting torch's layers into them (with resize.py's
upsampling layers).
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F

from .. import _session
from .. import autograd as ag
from .. import functions as fx
from .._native import ShapeError
from ..tensor import SharedTensor
from . import user_attrs
from .layers import (
    _fresh,
    _is_size,
    _like,
    _public_input,
    _record_norm,
    _scale_shift,
    _statistics,
    _times_pow2,
    shift_bias,
)
from .module import Module
from .norm_checks import check_group_norm
from .stats import BATCHNORM, LINEAR, POOLING


class LayerNorm(Module):
    """torch.nn.LayerNorm: each sample normalised over its last
    ``len(normalized_shape)`` dims, then scaled and shifted elementwise.

    The statistics are private (the mean, the variance from chunked sums of
    squares as in BatchNorm, and a range-reduced 1/sqrt(var + eps):
    :func:`cryptgpu.nn.norm_stats.statistics`, 2^-24 absolute on the
    variance, right for every |x - mean| below 2^17 at f = 16, until
    2026-12-08 for variances up to 2^22 only); the same in
    training and eval, as in torch. The backward pass is one recorded
    operation (the standard LayerNorm gradient)."""

    kind = BATCHNORM

    def __init__(
        self,
        normalized_shape,
        eps=1e-5,
        elementwise_affine=True,
        bias=True,
        device=None,
        dtype=None,
    ):
        # torch's signature (until 2026-12-05 the second argument was the
        # weight: LayerNorm(4, 1e-6) scaled by 1e-6, and LayerNorm(4) had no
        # parameters to train)
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):  # NumPy's too, as torch
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(d) for d in normalized_shape)
        one = torch.ones(self.normalized_shape, dtype=torch.float64)
        zero = torch.zeros(self.normalized_shape, dtype=torch.float64)  # a leaf (one * 0 was not)
        self.register_parameter("weight", one if elementwise_affine else None)
        self.register_parameter("bias", zero if elementwise_affine and bias else None)
        self.eps = float(eps)

    @classmethod
    def _given(cls, normalized_shape, weight, bias, eps) -> LayerNorm:
        """A LayerNorm holding ``weight`` and ``bias`` (either None)."""
        m = cls(normalized_shape, eps, elementwise_affine=False)
        m.register_parameter("weight", weight)
        m.register_parameter("bias", bias)
        return m

    def forward(self, x):
        """The normalised, scaled and shifted ``x``."""
        w, b = self._params["weight"], self._params["bias"]
        return layer_norm(x, self.normalized_shape, w, b, self.eps)


def refuse_one_number(normalized_shape, what: str) -> None:
    """torch's TypeError for ``F.layer_norm`` / ``F.rms_norm`` given one
    number as the shape (the modules take one; the functions a tuple or
    list: until 2026-12-08 ``F.layer_norm(x, 4)`` was accepted)."""
    if isinstance(normalized_shape, (numbers.Integral, torch.Tensor)):
        raise TypeError(
            f"{what}(): argument 'normalized_shape' (position 2) must be tuple of ints, "
            f"not {type(normalized_shape).__name__}"
        )


def _dims(normalized_shape) -> tuple:
    """The dims to normalise over; none is torch's RuntimeError (until
    2026-12-07 ``F.layer_norm(x, ())`` returned about sign(x))."""
    if isinstance(normalized_shape, int):
        return (int(normalized_shape),)
    shape = tuple(int(d) for d in normalized_shape)
    if not shape:
        raise RuntimeError(
            "Expected normalized_shape to be at least 1-dimensional, i.e., containing at "
            "least one element, but got normalized_shape = []"
        )
    return shape


def layer_norm(x, normalized_shape, w, b, eps: float):
    """``F.layer_norm``: LayerNorm of ``x`` times ``w`` plus ``b`` (either
    None), torch tensors or SharedTensors taken as they are (until
    2026-12-06 ``F.layer_norm`` registered the caller's weight in a layer of
    its own, which made the caller's torch tensor require grad)."""
    shape = _dims(normalized_shape)
    k = len(shape)
    if tuple(x.shape[x.dim() - k :]) != shape or x.dim() < k:
        raise ShapeError(
            f"LayerNorm over {list(shape)} expects an input whose last "
            f"dims are {list(shape)}, got shape {list(x.shape)}"
        )
    if isinstance(x, SharedTensor) and x.numel() == 0:
        return x + 0.0  # an empty batch (or empty rows): empty, as torch
    x = _public_input(x, w if isinstance(w, SharedTensor) else b)
    if not isinstance(x, SharedTensor):
        return F.layer_norm(x, shape, w, b, eps)
    return normalize_last(x, k, float(eps), w, b)


def normalize_last(x, k: int, eps: float, w, b, center: bool = True):
    """LayerNorm (without ``center``: RMSNorm) of a shared x over its last k
    dims, times w plus b (either None), one recorded node. The statistics
    truncate exactly even in inference (sums of squared deviations reach
    2^30; one wrapped element corrupted a whole row: BERT logits off by
    2e8 in 2 of 400 sequences); xhat and xhat w are ordinary products."""
    dims = list(range(x.dim() - k, x.dim()))
    recorded = ag.needs_grad(x, w, b)
    with ag.inside(recorded):
        with _session.training_work():
            _, _, r, f, xc = _statistics(x, dims, eps, center=center)
            # exact too: xc r holds 256 xhat, whose probabilistic
            # truncation would fail 256x as often as a plain product's
            xhat = _times_pow2(xc, r, f)
        y = _scale_shift(xhat, w, b)
        if not recorded:
            return y
        inv = r * f
    lead = list(range(x.dim() - k))
    return _record_norm(y, x, w, b, xhat, inv, dims, None, lead, center=center)


class GroupNorm(Module):
    """``torch.nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)``:
    each sample's channels split into groups, each group normalised over its
    channels and positions (LayerNorm's private statistics and recorded
    backward), then a per-channel scale and shift."""

    kind = BATCHNORM

    def __init__(
        self, num_groups, num_channels=None, eps=1e-5, affine=True, weight=None, bias=None
    ):
        super().__init__()
        if num_channels is not None and num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.groups, self.eps = int(num_groups), float(eps)
        self.num_groups, self.num_channels, self.affine = self.groups, num_channels, affine
        if affine and weight is None and num_channels is not None:
            weight, bias = torch.ones(num_channels), torch.zeros(num_channels)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)

    def forward(self, x):
        """The normalised, scaled and shifted ``x`` [N, C, *]."""
        w, b = self._params["weight"], self._params["bias"]
        x = _public_input(x, w if isinstance(w, SharedTensor) else b)
        if not isinstance(x, SharedTensor):
            return F.group_norm(x, self.groups, _plain(w, x), _plain(b, x), self.eps)
        check_group_norm(x, self.groups, w)  # torch's (an IndexError for 1-D until 2026-12-06)
        return self._normed(x, self.groups, w, b)

    def _normed(self, x, groups: int, w, b):
        """GroupNorm of a shared ``x`` [N, C, *] in ``groups`` groups."""
        if x.numel() == 0:
            return x + 0.0  # an empty batch: empty, as torch
        n, c = x.shape[0], x.shape[1]
        if c % groups:
            raise RuntimeError(f"Expected number of channels {c} to be divisible by {groups}")
        rest = x.numel() // (n * groups)
        xg = x.reshape(n, groups, rest)
        y = layer_norm(xg, rest, None, None, self.eps).reshape(tuple(x.shape))
        shape = [1, c] + [1] * (x.dim() - 2)
        if w is not None:
            y = y * (w.reshape(shape) if isinstance(w, SharedTensor) else _plain(w).reshape(shape))
        if b is not None:
            y = y + (b.reshape(shape) if isinstance(b, SharedTensor) else _plain(b).reshape(shape))
        return y


def _plain(p, like=None):
    if p is None or isinstance(p, SharedTensor):
        return p
    return torch.as_tensor(p, dtype=torch.float64 if like is None else like.dtype)


class InstanceNorm(GroupNorm):
    """Instance normalisation: every channel of every sample normalised over
    its positions (GroupNorm with one channel per group), the base of
    :class:`InstanceNorm1d` and :class:`InstanceNorm2d`, which take torch's
    ranks; this base takes any [N, C, *] input. Without ``affine`` the
    channels are the input's (torch does not use ``num_features`` then);
    running statistics (``track_running_stats=True``) are not provided."""

    num_features = None  # (a layer pickled before it had one)
    _batched = 0  # the rank of a batched input (InstanceNorm1d: 3); 0: any

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=False,
        track_running_stats=False,
        weight=None,
        bias=None,
    ):
        if track_running_stats:
            raise NotImplementedError("InstanceNorm with track_running_stats=True")
        super().__init__(num_features, num_features, eps, affine, weight, bias)
        self.num_features = int(num_features)

    def forward(self, x):
        """The normalised (scaled and shifted if affine) ``x``; an unbatched
        input (one rank less than a batched one) as a batch of one, as
        torch's."""
        d, rank = x.dim(), self._batched
        if rank and d not in (rank - 1, rank):
            raise ValueError(f"expected {rank - 1}D or {rank}D input (got {d}D input)")
        w, b = self._params["weight"], self._params["bias"]
        at = 0 if rank and d == rank - 1 else 1  # the channels' dim: unbatched, dim 0
        c = x.shape[at] if d > at else 0
        if self.num_features is not None and c != self.num_features:
            msg = f"expected input's size at dim={at} to match num_features ({self.num_features})"
            if w is not None or b is not None:  # torch's check, when affine
                raise ValueError(f"{msg}, but got: {c}.")
            warnings.warn(f"{msg}; normalising each of its {c} channels", stacklevel=2)
        if at == 0:  # unbatched: a batch of one, as torch's
            return self._batch(x.unsqueeze(0), c, w, b).squeeze(0)
        return self._batch(x, c, w, b)

    def _batch(self, x, c: int, w, b):
        """The batched ``x`` [N, c, *] normalised, each channel apart."""
        x = _public_input(x, w if isinstance(w, SharedTensor) else b)
        if not isinstance(x, SharedTensor):
            return F.group_norm(x, c, _plain(w, x), _plain(b, x), self.eps)
        return self._normed(x, c, w, b)


class InstanceNorm1d(InstanceNorm):
    """``torch.nn.InstanceNorm1d(num_features, eps=1e-5, affine=False)``:
    a [N, C, L] input, or an unbatched [C, L] one."""

    _batched = 3


class InstanceNorm2d(InstanceNorm):
    """``torch.nn.InstanceNorm2d(num_features, eps=1e-5, affine=False)``:
    a [N, C, H, W] input, or an unbatched [C, H, W] one."""

    _batched = 4


class AdaptiveMaxPool2d(Module):
    """``torch.nn.AdaptiveMaxPool2d(output_size)`` (global max pooling: one
    tournament over H x W; uneven windows axis by axis). ``return_indices``
    is refused, as AdaptiveMaxPool1d's and MaxPool2d's are (until 2026-12-07
    a converted one returned the values alone: ``values, indices =
    self.pool(x)`` split the batch)."""

    kind = POOLING

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        if return_indices:
            raise NotImplementedError("AdaptiveMaxPool2d with return_indices")
        self.out = output_size

    def forward(self, x):
        """The maximum of each window (SharedTensor.adaptive_max_pool2d)."""
        if not isinstance(x, SharedTensor):
            return F.adaptive_max_pool2d(x, self.out)
        return x.adaptive_max_pool2d(self.out)


def local_response_norm(x, size: int, alpha=1e-4, beta=0.75, k=1.0):
    """``F.local_response_norm``: x / (k + alpha/size * (sum of x^2 over
    ``size`` neighbouring channels, zero-padded))^beta. The squares are one
    product, the channel window local shifted additions, d^beta is
    2^(beta log2 d) by the range-reduced log and exp2, and x / d^beta the
    range-reduced private division: within 1e-3 relative (2.3e-4 measured
    at d^-beta = 1e-3, alpha = 1, |x| ~ 100), 124 rounds. x times d^-beta
    (as until a second look on 2026-12-05: 78 rounds) held d^-beta to a
    few units of 2^-16, 3% relative there; torch's checks on a tensor with
    no storage."""
    F.local_response_norm(torch.empty(tuple(x.shape), device="meta"), size, alpha, beta, k)
    if not k > 0:
        raise NotImplementedError(f"local_response_norm with k={k} (a private power needs k > 0)")
    c, lo = x.shape[1], size // 2
    sq = x.square().movedim(1, -1)
    sq = sq.pad((lo, (size - 1) // 2)).movedim(-1, 1)
    window = sq.narrow(1, 0, c)
    for j in range(1, size):
        window = window + sq.narrow(1, j, c)
    d = window * (alpha / size) + k
    return x / fx.exp2(d.log() * (beta / math.log(2)))


class LocalResponseNorm(Module):
    """``torch.nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0)``:
    :func:`local_response_norm`."""

    kind = BATCHNORM

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), alpha, beta, k

    def forward(self, x):
        """x normalised over neighbouring channels."""
        fn = local_response_norm if isinstance(x, SharedTensor) else F.local_response_norm
        return fn(x, self.size, self.alpha, self.beta, self.k)


# why max_norm is refused, and what to do instead
MAX_NORM = (
    "is not supported: it renormalises each looked-up row in place by its norm, "
    "which would be private; renormalise the table before converting or set max_norm=None"
)


class IdsTypeError(TypeError, RuntimeError):
    """Ids of a dtype torch's embedding refuses (RuntimeError there; a
    TypeError here before): catchable as either."""


class Embedding(Module):
    """torch.nn.Embedding with a private table: ``Embedding(num_embeddings,
    embedding_dim, padding_idx=None, ...)`` as torch's, or
    ``Embedding(weight=..., padding_idx=, scale_grad_by_freq=)`` (from a
    converted layer). The input is either a SharedTensor of one-hot rows
    [..., num_embeddings] (private token ids, as the data owner shares them:
    ``cryptensor(F.one_hot(ids, V).double())``), giving one product with the
    table, or a plaintext tensor of ids (public positions), whose rows are
    selected by a public one-hot product (no messages beyond one
    truncation). As torch's, the ``padding_idx`` row gets no gradient, and
    ``scale_grad_by_freq`` divides each row's gradient by its id's count in
    the batch (public ids only: private counts would need a private
    division)."""

    kind = LINEAR

    def __init__(self, *args, weight=None, padding_idx=None, scale_grad_by_freq=False, **kw):
        super().__init__()
        if weight is None and args and not _is_size(args[0]):
            weight, args = args[0], args[1:]  # Embedding(weight): the old form
        if weight is None:
            layer = torch.nn.Embedding(*args, padding_idx=padding_idx, **kw)
            user_attrs.remember_settings(self, layer)  # num_embeddings, embedding_dim
            if layer.max_norm is not None:
                raise NotImplementedError(f"Embedding with max_norm {MAX_NORM}")
            weight, scale_grad_by_freq = layer.weight.detach().clone(), layer.scale_grad_by_freq
            padding_idx = layer.padding_idx
        elif args or kw:
            raise TypeError(f"Embedding(weight=...) takes no other arguments, got {args} {kw}")
        if padding_idx is not None:
            v = weight.shape[0]
            if not -v <= padding_idx < v:  # torch's check, its exception type
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx = padding_idx + v if padding_idx < 0 else padding_idx
        self.register_parameter("weight", weight)
        self.padding_idx, self.scale_grad_by_freq = padding_idx, bool(scale_grad_by_freq)

    def forward(self, x):
        """The embedding rows of ``x``."""
        w = self._params["weight"]
        v = w.shape[0]
        if isinstance(x, SharedTensor):
            if x.shape[-1] != v:
                raise ShapeError(
                    f"Embedding of {v} rows expects one-hot rows [..., {v}] as a SharedTensor, "
                    f"got shape {list(x.shape)}"
                )
            if self.scale_grad_by_freq and ag.needs_grad(w):
                raise NotImplementedError(
                    "Embedding(scale_grad_by_freq=True) with private one-hot ids: the counts "
                    "would need a private division; give public ids"
                )
            if self.padding_idx is not None and ag.needs_grad(w):
                # the same shares (no copy of the table), with the padding
                # row's gradient masked out (an exact, local product)
                keep = torch.ones(v, 1, dtype=torch.float64)
                keep[self.padding_idx] = 0
                w = ag.record(w._wrap(w._t), (w,), lambda g: (g * keep,))
            return x.matmul(w)
        ids = torch.as_tensor(x)
        if ids.dtype not in (torch.int64, torch.int32):  # torch's: Long or Int only
            raise IdsTypeError(
                "Embedding takes integer ids (plaintext, int64 or int32, as torch) or a "
                f"SharedTensor of one-hot rows, got a {ids.dtype} tensor"
            )
        ids = ids.long()  # one_hot takes int64 only
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= v):
            raise IndexError(f"index out of range in self (ids must be in [0, {v}))")
        if not isinstance(w, SharedTensor):
            return F.embedding(ids, w, self.padding_idx, scale_grad_by_freq=self.scale_grad_by_freq)
        onehot = F.one_hot(ids, v).double()
        if not ag.needs_grad(w) or (self.padding_idx is None and not self.scale_grad_by_freq):
            return w.rmatmul(onehot)
        with ag.no_grad():
            out = w.rmatmul(onehot)
        rows = onehot.reshape(-1, v)
        if self.scale_grad_by_freq:
            rows = rows / rows.sum(0).clamp(min=1)
        if self.padding_idx is not None:
            rows[:, self.padding_idx] = 0
        d = w.shape[1]
        ag.record(out, (w,), lambda g: (g.reshape(-1, d).rmatmul(rows.t().contiguous()),))
        return out

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, padding_idx={self.padding_idx}"


class ConvTranspose2d(Module):
    """``torch.nn.ConvTranspose2d(in_channels, out_channels, kernel_size,
    stride=1, padding=0, output_padding=0, groups=1, bias=True,
    dilation=1)`` (zero padding mode; the forward's ``output_size`` is not
    taken): :meth:`SharedTensor.conv_transpose2d`, the conv2d backward's
    one engine call. ``ConvTranspose1d`` is the same on a height-1 input."""

    kind = LINEAR
    _torch, _dims = torch.nn.ConvTranspose2d, 2

    def __init__(self, *args, weight=None, bias=None, conf=None, **kwargs):
        super().__init__()
        if weight is None:  # torch's (and CrypTen's) constructor: bias is its flag
            if bias is not None:  # bias=False was taken for "no tensor" (a bias came)
                kwargs["bias"] = bias
            layer = self._torch(*args, **kwargs)
            if layer.padding_mode != "zeros":
                raise NotImplementedError(f"{type(self).__name__} with a padding_mode")
            weight, bias = _fresh(layer, self)
            conf = tuple(
                getattr(layer, k)
                for k in ("stride", "padding", "output_padding", "groups", "dilation")
            )
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self.conf = conf

    def forward(self, x, output_size=None):
        """The transposed convolution of an N C (H) W input."""
        if output_size is not None:
            raise NotImplementedError(f"{type(self).__name__} with output_size")
        w, b = self._params["weight"], shift_bias(self, x.dim() == self._dims + 2)
        x = _public_input(x, w)
        name = f"conv_transpose{self._dims}d"
        if isinstance(x, SharedTensor):
            return getattr(x, name)(w, b, *self.conf)
        return getattr(F, name)(x, *_like(x, w, b), *self.conf)


class ConvTranspose1d(ConvTranspose2d):
    _torch, _dims = torch.nn.ConvTranspose1d, 1


class RMSNorm(Module):
    """``torch.nn.RMSNorm(normalized_shape, eps=None,
    elementwise_affine=True)``: x / sqrt(mean(x^2) + eps) * weight over the
    last dims (eps None: the float32 epsilon, as torch for a float32
    input). LayerNorm's private statistics without the mean (exact
    truncation, range-reduced 1/sqrt) and its recorded backward without
    the mean's term."""

    kind = BATCHNORM

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, weight=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):  # NumPy's too, as torch
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(d) for d in normalized_shape)
        self.eps = None if eps is None else float(eps)
        if elementwise_affine and weight is None:
            weight = torch.ones(self.normalized_shape)
        self.register_parameter("weight", weight)

    def extra_repr(self) -> str:
        """torch's description of the layer."""
        return f"{self.normalized_shape}, eps={self.eps}"

    def forward(self, x):
        """The normalised and scaled ``x``."""
        return _rms_norm(x, self.normalized_shape, self._params["weight"], self.eps)


def _rms_norm(x, normalized_shape, weight=None, eps=None):
    """``F.rms_norm``: x / sqrt(mean(x^2) + eps) * weight over the last
    dims, the caller's tensors taken as they are (as :func:`layer_norm`)."""
    refuse_one_number(normalized_shape, "rms_norm")
    shape = _dims(normalized_shape)
    k = len(shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != shape:
        raise RuntimeError(
            f"RMSNorm over {list(shape)} expects an input whose last "
            f"dims are {list(shape)}, got shape {list(x.shape)}"
        )
    x = _public_input(x, weight)
    if not isinstance(x, SharedTensor):
        return F.rms_norm(x, shape, _plain(weight, x), eps)
    if x.numel() == 0:
        return x + 0.0
    eps = torch.finfo(torch.float32).eps if eps is None else float(eps)
    return normalize_last(x, k, eps, weight, None, center=False)


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""
    t = torch.nn

    def instance(m):
        if m.track_running_stats:
            raise NotImplementedError("InstanceNorm with track_running_stats=True")
        w = plain(m.weight) if m.affine else None
        b = plain(m.bias) if m.affine else None
        cls = InstanceNorm1d if isinstance(m, t.InstanceNorm1d) else InstanceNorm2d
        return cls(m.num_features, m.eps, m.momentum, False, False, w, b)

    def transposed(cls, m):
        if m.padding_mode != "zeros":
            raise NotImplementedError(f"{type(m).__name__} padding_mode={m.padding_mode!r}")
        keys = ("stride", "padding", "output_padding", "groups", "dilation")
        conf = tuple(getattr(m, k) for k in keys)
        return cls(weight=plain(m.weight), bias=plain(m.bias), conf=conf)

    return {
        t.GroupNorm: lambda m: GroupNorm(
            m.num_groups, None, m.eps, False, plain(m.weight), plain(m.bias)
        ),
        t.InstanceNorm1d: instance,
        t.InstanceNorm2d: instance,
        t.AdaptiveMaxPool2d: lambda m: AdaptiveMaxPool2d(m.output_size, m.return_indices),
        t.LocalResponseNorm: lambda m: LocalResponseNorm(m.size, m.alpha, m.beta, m.k),
        t.ConvTranspose2d: lambda m: transposed(ConvTranspose2d, m),
        t.ConvTranspose1d: lambda m: transposed(ConvTranspose1d, m),
        t.RMSNorm: lambda m: RMSNorm(
            m.normalized_shape, m.eps, False, plain(m.weight) if m.weight is not None else None
        ),
    }
