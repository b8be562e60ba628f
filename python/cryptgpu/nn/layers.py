"""The layers of cryptgpu.nn: linear and convolution, activations, pooling,
BatchNorm, Dropout and shape layers, each a :class:`Module` whose forward pass
calls SharedTensor operations (or torch ones on a plaintext input).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from .. import _session, functions
from .. import autograd as ag
from .._plain import _index, _plain_array
from ..tensor import SharedTensor, cryptensor
from . import user_attrs
from .identity import Identity  # noqa: F401 (its home until 2026-12-07)
from .module import Module
from .norm_checks import check_batchnorm, check_rank
from .norm_stats import statistics as _statistics
from .softmax_layers import LogSoftmax, Softmax  # noqa: F401 (their home until 2026-12-06)
from .stats import BATCHNORM, LINEAR, POOLING, RELU


def _as_operand(p):
    """A parameter as an operand: SharedTensor, or a float64 torch tensor."""
    return p if isinstance(p, SharedTensor) else torch.as_tensor(p, dtype=torch.float64)


def _fresh(layer: torch.nn.Module, into=None) -> tuple:
    """Weights of a freshly initialised PyTorch layer, in its dtype (the
    default float dtype, as CrypTen's and torch's layers have them; the
    layer computes in float64 whatever they hold); ``into``, our layer,
    answers its settings (``in_features``: user_attrs.remember_settings)."""
    if into is not None:
        user_attrs.remember_settings(into, layer)
    w = layer.weight.detach().clone()
    b = None if layer.bias is None else layer.bias.detach().clone()
    return w, b


def _is_size(v) -> bool:
    """A first argument that is torch's size (any integer), not a weight
    (tensor, array, list): a str or float goes to torch's TypeError too."""
    if _index(v) is not None:
        return True
    return not isinstance(v, (torch.Tensor, SharedTensor, np.ndarray, list, tuple))


class Linear(Module):
    """y = x W^T + b. ``Linear(weight, bias=None)`` wraps given parameters;
    ``Linear(in_features, out_features, bias=True)`` (CrypTen's and
    PyTorch's form) initialises them as ``torch.nn.Linear`` does."""

    kind = LINEAR

    def __init__(self, *args, **kwargs):
        super().__init__()
        if (args and _is_size(args[0])) or "in_features" in kwargs:
            weight, bias = _fresh(torch.nn.Linear(*args, **kwargs), self)
        else:

            def given(weight, bias=None):
                return weight, bias

            weight, bias = given(*args, **kwargs)
            shape = tuple(weight.shape)  # settings from the weight (a transformer's inner ones)
            kept = {"in_features": shape[-1], "out_features": shape[0]} if len(shape) == 2 else {}
            self.__dict__["_torch_settings"] = kept
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)

    def forward(self, x):
        """x W^T + b on a SharedTensor (or a plaintext tensor)."""
        _tensor_input(x, "linear")
        w = self._params["weight"]
        b = shift_bias(self, x.dim() == 2)  # [N, F]: the bias is per channel
        x = _public_input(x, w)
        if isinstance(x, SharedTensor):
            return x.linear(_as_operand(w), None if b is None else _as_operand(b))
        return F.linear(x, *_like(x, w, b))


def shift_bias(layer, per_channel: bool = True):
    """A layer's bias, with an exactly zero gradient where a following norm
    cancels it (shifts.cancels: Graph sets ``_shift_cancelled`` around the
    call), or 0 for the entries feeding an attention's keys (shifts.keys: a
    0/1 mask): torch's gradient is ~1e-17 there, ours was fixed-point noise
    that Adam, RMSprop and Adagrad scaled to full steps (0.03-0.37 in 40
    steps, a user probe)."""
    b = layer._params["bias"]
    keep = layer.__dict__.get("_shift_cancelled")  # True, or a 0/1 mask per output
    if keep is None or (keep is True and not per_channel):
        return b
    return gradient_masked(b, 0 if keep is True else keep)


def gradient_masked(b, factor):
    """``b`` (its own shares) with its gradient times ``factor``, 0 or a 0/1
    mask (an exact integer product); ``b`` itself where nothing records."""
    if not isinstance(b, SharedTensor) or not ag.needs_grad(b):
        return b
    return ag.record(b._wrap(b._t), (b,), lambda g: (g * factor,))


def _tensor_input(x, what: str):
    """torch's TypeError for a layer input that is not a tensor (a str, None)."""
    if not isinstance(x, (SharedTensor, torch.Tensor)):
        raise TypeError(
            f"{what}(): argument 'input' (position 1) must be Tensor, not {type(x).__name__}"
        )


def _public_input(x, w):
    """A plaintext input to a layer whose weight is shared (a public input
    to a private model) as a sharing of the public value (no messages);
    anything else unchanged."""
    if isinstance(w, SharedTensor) and isinstance(x, torch.Tensor):
        return w._public(_plain_array(x, "input"))  # (a sparse one as its dense value)
    return x


def _like(x, *params):
    """Plaintext parameters (kept in float64) in a plaintext input's float
    dtype, as an unencrypted torch or CrypTen layer computes on float32."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return tuple(p.to(x.dtype) if isinstance(p, torch.Tensor) else p for p in params)
    return params


def _padded(x, layer):
    """x padded as a conv with a non-zero padding_mode pads it (its ``pad``)."""
    if layer.padding_mode == "zeros":
        return x
    pad, mode = layer.pad, layer.padding_mode
    return x.pad(pad, mode=mode) if isinstance(x, SharedTensor) else F.pad(x, pad, mode=mode)


class Conv2d(Module):
    """2-D convolution. ``Conv2d(weight, bias=None, stride, padding, dilation,
    groups)`` wraps given parameters; ``Conv2d(in_channels, out_channels,
    kernel_size, stride=1, padding=0, ..., padding_mode)`` (CrypTen's and
    PyTorch's form) initialises them as ``torch.nn.Conv2d`` does."""

    kind = LINEAR
    padding_mode = "zeros"

    def __init__(self, *args, **kwargs):
        super().__init__()
        if (args and _is_size(args[0])) or "in_channels" in kwargs:
            layer = torch.nn.Conv2d(*args, **kwargs)
            weight, bias = _fresh(layer, self)
            stride, padding = layer.stride, layer.padding
            dilation, groups = layer.dilation, layer.groups
            if layer.padding_mode != "zeros":  # padded first, as torch (_padded)
                self.pad, self.padding_mode = (
                    layer._reversed_padding_repeated_twice,
                    layer.padding_mode,
                )
                padding = 0
        else:

            def given(weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
                return weight, bias, stride, padding, dilation, groups

            weight, bias, stride, padding, dilation, groups = given(*args, **kwargs)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x):
        """The convolution of a SharedTensor NCHW input (or a plaintext tensor)."""
        _tensor_input(x, "conv2d")
        check_rank(self, x)  # a BatchNorm folded into this conv at conversion: its check
        w, b = self._params["weight"], shift_bias(self, x.dim() == 4)  # unbatched: not per channel
        x = _public_input(_padded(x, self), w)
        if isinstance(x, SharedTensor):
            return x.conv2d(
                _as_operand(w),
                None if b is None else _as_operand(b),
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        w, b = _like(x, w, b)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)


class ReLU(user_attrs.InPlace, Module):
    """max(x, 0), privately (10 rounds); ``inplace``: x takes the result, as
    torch's (``x.relu_()``; until 2026-12-07 x was left unchanged)."""

    kind = RELU

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        """max(x, 0) element-wise."""
        return x.relu_() if self._inplace else x.relu()


class GELU(Module):
    """GELU (``approximate="none"`` or ``"tanh"``, as torch.nn.GELU): a
    fitted polynomial on |x| < 4 and relu beyond (cryptgpu.functions.gelu),
    within 2e-4; its backward is the fitted derivative, within 7e-4."""

    kind = RELU

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        """GELU element-wise."""
        if not isinstance(x, SharedTensor):
            return F.gelu(x, approximate=self.approximate)
        return x.gelu(self.approximate)


class Tanh(Module):
    """tanh element-wise, privately (2 sigmoid(2x) - 1)."""

    kind = RELU

    def forward(self, x):
        """tanh(x) element-wise."""
        return x.tanh()


class Sigmoid(Module):
    """1 / (1 + e^-x) element-wise, privately."""

    kind = RELU

    def forward(self, x):
        """sigmoid(x) element-wise."""
        return x.sigmoid()


def _settings(layer, **given) -> None:
    """A pooling layer's torch settings (``kernel_size``, ``stride``,
    ``padding``, ...), stride defaulting to the kernel as torch's; a
    converted layer's come from its torch layer (remember_settings)."""
    if given.get("stride") is None:
        given["stride"] = given["kernel_size"]
    layer.__dict__["_torch_settings"] = given


def _one_tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


class MaxPool2d(Module):
    """2-D max pooling (kernel_size, stride=kernel_size, padding, dilation,
    ceil_mode), as torch."""

    kind = POOLING
    ceil_mode = False  # (a layer pickled before it had one)

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d with return_indices")
        self.k, self.s, self.p, self.d = kernel_size, stride, padding, dilation
        self.ceil_mode = bool(ceil_mode)
        _settings(self, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)

    def forward(self, x):
        """The maximum over each window, by a comparison tournament."""
        c = self.ceil_mode
        if isinstance(x, SharedTensor):
            return x.max_pool2d(self.k, stride=self.s, padding=self.p, dilation=self.d, ceil_mode=c)
        return F.max_pool2d(x, self.k, self.s, self.p, self.d, ceil_mode=c)


class AvgPool2d(Module):
    """2-D average pooling (kernel_size, stride=kernel_size, padding,
    ceil_mode, count_include_pad, divisor_override), as torch."""

    kind = POOLING

    # the SharedTensor method and the torch function it stands for
    # (AvgPool1d: the 1-D pair)
    _method, _plain = "avg_pool2d", staticmethod(F.avg_pool2d)
    opts = (False, True, None)  # ceil_mode, count_include_pad, divisor_override

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        super().__init__()
        self.k, self.s, self.p = kernel_size, stride, padding
        self.opts = (ceil_mode, count_include_pad, divisor_override)
        _settings(self, kernel_size=kernel_size, stride=stride, padding=padding)
        kept = self._torch_settings
        if self._method == "avg_pool1d":  # torch's AvgPool1d keeps 1-tuples
            kept.update({k: _one_tuple(kept[k]) for k in ("kernel_size", "stride", "padding")})
        kept.update(ceil_mode=ceil_mode, count_include_pad=count_include_pad)
        kept.update(divisor_override=divisor_override)

    def forward(self, x):
        """The mean over each window (a local sum, then one division by a
        public integer; other options: ``SharedTensor.avg_pool2d``)."""
        opts = self.opts
        if self._method == "avg_pool1d":  # no divisor_override in 1-D, as torch
            opts = opts[:2]
        if isinstance(x, SharedTensor):
            return getattr(x, self._method)(self.k, self.s, self.p, *opts)
        return self._plain(x, self.k, self.s, self.p, *opts)


class AdaptiveAvgPool2d(Module):
    """``torch.nn.AdaptiveAvgPool2d(output_size)``: one average pooling where
    the output size divides the input (global pooling, exact downsampling),
    torch's uneven windows otherwise."""

    kind = POOLING

    def __init__(self, output_size):
        super().__init__()
        self.out = output_size

    def forward(self, x):
        """Average pooling to ``output_size`` (SharedTensor.adaptive_avg_pool2d)."""
        if isinstance(x, SharedTensor):
            return x.adaptive_avg_pool2d(self.out)
        return F.adaptive_avg_pool2d(x, self.out)


class BatchNorm(Module):
    """BatchNorm1d/2d.

    Eval: x * scale + shift per channel, with scale = gamma / sqrt(var + eps)
    and shift = beta - mean * scale. A converted model gets them from its
    owner in plaintext (exact); after private training they are recomputed
    privately from the shared running statistics.

    Training: batch statistics over (N, H, W), the variance from chunked
    sums of squares (``norm_stats.statistics``: 2^-24 absolute, every
    |x - mean| below 2^17 at f = 16), a range-reduced 1/sqrt(var + eps),
    the standard BatchNorm backward as one
    recorded operation, and running statistics updated like PyTorch's
    (momentum, unbiased variance)."""

    kind = BATCHNORM

    def __init__(
        self,
        weight,
        bias,
        running_mean,
        running_var,
        eps=1e-5,
        momentum=0.1,
        num_batches_tracked: int = 0,
    ):
        super().__init__()
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self._buffers = OrderedDict(running_mean=running_mean, running_var=running_var)
        # momentum None: the cumulative average, 1 / batches seen (torch's)
        self.eps, self.momentum = eps, momentum
        if running_mean is not None:  # torch lists it only with running statistics
            self.num_batches_tracked = int(num_batches_tracked)
        self._affine = None

    def _encrypt_own(self, src: int) -> None:
        """Share the affine parameters and running statistics from party
        ``src`` (also when a model holding this layer is encrypted: they
        are the model owner's, and every party must use the owner's)."""
        super()._encrypt_own(src)
        for k, v in self._buffers.items():
            if v is not None and not isinstance(v, SharedTensor):
                self._buffers[k] = cryptensor(v, src=src)
        if self._affine is not None and not isinstance(self._affine[0], SharedTensor):
            self._affine = tuple(cryptensor(t, src=src) for t in self._affine)
            self._affine_key = self._state_key()
        self._inv = None  # computed from the plaintext statistics

    def _decrypt_own(self) -> None:
        """Open the parameters and running statistics into float64 tensors."""
        super()._decrypt_own()
        for k, v in self._buffers.items():
            if isinstance(v, SharedTensor):
                self._buffers[k] = v.get_plain_text(dtype=torch.float64)
        if self._affine is not None and isinstance(self._affine[0], SharedTensor):
            self._affine = tuple(t.get_plain_text(dtype=torch.float64) for t in self._affine)
            self._affine_key = self._state_key()
        self._inv = None  # computed from the shared statistics

    def _state_key(self) -> tuple:
        """What the eval affine is computed from: each parameter and running
        statistic by identity and version (an in-place write, ``copy_``,
        ``mul_`` or ``.data =``, bumps the version), and eps."""
        vs = list(self._params.values()) + list(self._buffers.values())
        # a torch tensor's .data = swaps its storage without a version bump
        ptr = [v.data_ptr() if isinstance(v, torch.Tensor) else None for v in vs]
        ids = [(id(v), getattr(v, "_version", None)) for v in vs]
        return tuple(zip(ids, ptr)) + (self.eps,)

    def _set_affine(self, scale, shift) -> None:
        """Keep an eval affine computed from the current state (conversion
        computes it exactly from the owner's plaintext)."""
        self._affine, self._affine_key = (scale, shift), self._state_key()

    def _running_inv(self):
        """1 / sqrt(running_var + eps), kept while the running variance is
        the same tensor at the same version (not one private inverse
        square root per forward of an eval layer whose affine trains)."""
        rv = self._buffers["running_var"]
        kept = self.__dict__.get("_inv")
        if kept is not None and kept[0] is rv and kept[1:3] == (rv._version, self.eps):
            return kept[3]
        if isinstance(rv, SharedTensor):
            inv = _inv_std(rv, self.eps, 1)
        else:
            inv = torch.rsqrt(torch.as_tensor(rv, dtype=torch.float64) + self.eps)
        self._inv = (rv, rv._version, self.eps, inv)
        return inv

    def _eval_affine(self):
        """(scale, shift) from the running statistics and the affine
        parameters; kept while the parameters are not trained. A layer put
        in eval mode inside a training model (torch's way of freezing the
        statistics during fine-tuning) still trains its weight and bias:
        then they are recomputed, on the tape, at every call."""
        w, b = self._params["weight"], self._params["bias"]
        # requires_grad, not needs_grad: under no_grad (a monitoring forward
        # between a backward and the optimiser's step) the parameters are
        # still about to change, so nothing is cached from them
        trained = any(getattr(p, "requires_grad", False) for p in (w, b))
        stale = self._affine is not None and self.__dict__.get("_affine_key") != self._state_key()
        if self._affine is None or trained or stale:
            rm, inv = self._buffers["running_mean"], self._running_inv()
            scale = inv if w is None else inv * w
            shift = -(rm * scale) if b is None else b - rm * scale
            if trained:
                self._affine = None  # the parameters are about to change
                return scale, shift
            self._set_affine(scale, shift)
        return self._affine

    def forward(self, x):
        """Batch statistics in training mode (updating the running ones), the
        running ones in eval mode."""
        check_batchnorm(self, x)  # torch's rank and channels (a converted layer's)
        if isinstance(x, SharedTensor) and x.numel() == 0:
            return x + 0.0  # torch: an empty batch gives an empty output
        shape = [1, -1] + [1] * (x.dim() - 2)
        if not self.training and self._buffers["running_mean"] is not None:
            sc, sh = _like(x, *self._eval_affine())  # a plaintext x keeps its dtype
            return x * sc.reshape(shape) + sh.reshape(shape)
        if not isinstance(x, SharedTensor):
            return self._plain_train_forward(x)
        if x.numel() // max(x.shape[1], 1) == 1:  # torch's check and message
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{torch.Size(tuple(x.shape))}"
            )
        return self._train_forward(x, shape)

    def _plain_train_forward(self, x):
        """Training mode on a plaintext input (an unencrypted model): torch's
        batch normalisation, updating the plaintext running statistics."""
        rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
        if any(isinstance(t, SharedTensor) for t in (rm, *self._params.values())):
            msg = "BatchNorm training on a plaintext input with shared (encrypted) state: share"
            raise NotImplementedError(msg + " the input first, x = cryptgpu.cryptensor(x)")
        self._affine = None
        w, b = self._params["weight"], self._params["bias"]
        if rm is None:  # no running statistics (track_running_stats=False)
            return F.batch_norm(x, None, None, *_like(x, w, b), training=True, eps=self.eps)
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
        stats = [torch.as_tensor(t, dtype=x.dtype).clone() for t in (rm, rv)]
        y = F.batch_norm(
            x, stats[0], stats[1], *_like(x, w, b), training=True, momentum=m, eps=self.eps
        )
        self._buffers["running_mean"], self._buffers["running_var"] = (
            t.to(torch.float64) for t in stats
        )
        return y

    def _train_forward(self, x, shape):
        self._affine = None  # parameters and statistics are about to change
        dims = [0] + list(range(2, x.dim()))
        n = x.numel() // x.shape[1]
        w, b = self._params["weight"], self._params["bias"]
        recorded = ag.needs_grad(x, w, b)
        with ag.inside(recorded):
            # exact even in inference, as LayerNorm's (normalize_last): one
            # wrapped squared deviation corrupted its whole channel (until
            # 2026-12-07, track_running_stats=False in eval, or no grad:
            # channels off by 4.3e9 at input stds of 200 and more); the
            # running statistics' update too (C values, a persistent state)
            with _session.training_work():
                mean, var, inv, xhat = _normalise(x, dims, self.eps)
            y = _scale_shift(xhat, w, b, shape)
            rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
            if rm is not None and self.training:
                with _session.training_work():
                    self.num_batches_tracked += 1
                    m = self.momentum
                    if m is None:
                        m = 1.0 / self.num_batches_tracked
                    unbiased = var.reshape(-1) * (n / max(n - 1, 1))
                    # torch's (1 - m) * r + m * s as r + (s - r) * m: (1 - m)
                    # rounded to 16 fractional bits biased a small momentum's
                    # steady state by about 2^-17 / m (0.5% at m = 0.001)
                    self._buffers["running_mean"] = rm + (mean.reshape(-1) - rm) * m
                    self._buffers["running_var"] = rv + (unbiased - rv) * m
        if not recorded:
            return y
        return _record_norm(y, x, w, b, xhat, inv, dims, shape, dims)


def _normalise(x, dims, eps: float):
    """(mean, var, 1/sqrt(var + eps), xhat) over ``dims``, shared by
    BatchNorm and LayerNorm (see :func:`_statistics`)."""
    mean, var, r, f, xc = _statistics(x, dims, eps, want_var=True)
    return mean, var, r * f, _times_pow2(xc, r, f)


def _times_pow2(xc, r, f: float):
    """xc * r * f for a public power of two f <= 1, with one truncation
    (by 2^(precision + log2(1/f)))."""
    a, b = xc._aligned(r)
    return xc._wrap(xc._s(r).mul_shift(a._t, b._t, round(-math.log2(f))))


def _scale_shift(xhat, w, b, shape=None):
    """xhat * w + b, the parameters reshaped to ``shape`` when given."""
    y = xhat if w is None else xhat * (w if shape is None else w.reshape(shape))
    return y if b is None else y + (b if shape is None else b.reshape(shape))


def _record_norm(y, x, w, b, xhat, inv, dims, shape, param_dims, center: bool = True):
    """Record ``y = xhat * w + b`` (normalised over ``dims``) with the
    closed-form backward: dxhat = g w; dx = inv / n (n dxhat - sum dxhat -
    xhat sum(dxhat xhat)); the parameters' gradients summed over
    ``param_dims`` (those they are broadcast along); without ``center``
    (RMSNorm) the sum dxhat term is not there."""
    n = 1
    for d in dims:
        n *= x.shape[d]

    def back(g):
        dxhat = g if w is None else g * (w if shape is None else w.reshape(shape))
        s2 = (dxhat * xhat).sum(dims, keepdim=True)
        dx = dxhat * n - xhat * s2
        dx = (dx - dxhat.sum(dims, keepdim=True) if center else dx) * inv
        dx = dx.div(n)
        gw = None if w is None else _sum_over(g * xhat, param_dims)
        gb = None if b is None else _sum_over(g, param_dims)
        return _drop_missing((dx, gw, gb), w, b)

    parents = (x, w if w is not None else x, b if b is not None else x)
    return ag.record(y, parents, back)


def _sum_over(t, dims):
    return t.sum(dims) if dims else t


def _inv_std(var_s, eps_s, s: float):
    """s / sqrt(var_s + eps_s), i.e. 1 / sqrt(var + eps) for var_s = s^2 var,
    for a shared var_s anywhere in 2^-16 .. 2^30 (range-reduced:
    functions.ratio_inv_sqrt; CrypTen's inv_sqrt, accurate only on
    [0.1, 130], made BatchNorm wrong by 0.2 at a std of 0.1 and wrapped at a
    std of 30). The numerator 256 s keeps 8 more bits than s would; the
    power of two is taken off after (exact)."""
    r, f = _inv_std_parts(var_s, eps_s, s)
    return r * f


def _inv_std_parts(var_s, eps_s, s: float):
    """(r, 1/256) with r / 256 = s / sqrt(var_s + eps_s): r carries 8 bits
    more than the quotient itself (a std of 1000 leaves 1 / std with
    2^-16 / 1e-3 = 1.5% relative precision; r has it at 6e-5)."""
    f = var_s._s().precision_bits
    extra = 2.0 ** max(0, min(8, 26 - f))  # r must fit 2^(63 - 2f) too
    num = var_s._public_like(extra * s)
    r = functions.ratio_inv_sqrt(num, var_s + eps_s, lo_exp=-32, hi_exp=30)
    return r, 1.0 / extra


def _drop_missing(grads, w, b):
    dx, gw, gb = grads
    return dx, (gw if w is not None else None), (gb if b is not None else None)


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one, as torch.nn.Flatten;
    CrypTen's keyword ``axis=k`` flattens to 2-D, (prod(size[:k]), -1)."""

    def __init__(self, start_dim=1, end_dim=-1, *, axis=None):
        super().__init__()
        self.a, self.b, self.axis = start_dim, end_dim, axis

    def forward(self, x):
        """The flattened view."""
        if self.axis is not None:  # CrypTen's Flatten(axis)
            return x.reshape(math.prod(x.shape[: self.axis]), -1)
        return x.flatten(self.a, self.b)


class Dropout(user_attrs.InPlace, Module):
    """``torch.nn.Dropout``: the identity at eval time; in training, each
    element is zeroed with probability ``p`` and the others are scaled by
    1 / (1 - p). The mask comes from randomness common to the three parties
    (:func:`cryptgpu._session.common_generator`), so every party knows it. It is drawn
    independently of all inputs and weights, so it reveals nothing about
    them (a simulator draws the same mask). Cost: one truncation for the
    scale, as a product by a public tensor."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        """``x`` in eval mode; ``x`` times a fresh scaled 0/1 mask in training
        (taken by x with ``inplace``, as torch's)."""
        if not self.training or self.p == 0:
            return x
        scale = _like(x, _session.dropout_scale(x.shape, self.p))[0]
        if not self._inplace:
            return x * scale
        if isinstance(x, SharedTensor):
            return x._in_place("dropout_", lambda t: t * scale)
        return x.mul_(scale)
