"""cryptgpu.nn: layers for private inference, and ``from_pytorch`` to convert a
trained PyTorch model by torch.fx tracing.

A module holds plaintext torch parameters until ``encrypt(src)`` shares them
from party ``src`` (the model owner); the input is shared by whoever owns the
data. An unencrypted module also runs on a SharedTensor, with its weights as
public operands (the model is then not hidden).
"""

from __future__ import annotations

import contextlib
import operator
import secrets
import threading
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F

from . import _session, functions
from . import autograd as ag
from .tensor import SharedTensor, cat, cryptensor

# Layer kinds for the per-layer statistics (the paper's Table V columns).
LINEAR, POOLING, RELU, SOFTMAX, BATCHNORM, OTHER = (
    "linear",
    "pooling",
    "relu",
    "softmax",
    "batchnorm",
    "other",
)


class _LayerScope:
    """Adds one layer's time, rounds and bytes to the session's per-layer table."""

    def __init__(self, kind: str):
        self.kind = kind

    def __enter__(self):
        self.t = time.perf_counter()
        self.before = _totals()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        after = _totals()
        row = _session._ctx.layer_stats.setdefault(
            self.kind, {"calls": 0, "time_s": 0.0, "rounds": 0, "bytes_per_party": 0}
        )
        row["calls"] += 1
        row["time_s"] += time.perf_counter() - self.t
        row["rounds"] += after[0] - self.before[0]
        row["bytes_per_party"] += after[1] - self.before[1]
        return False


def _totals() -> tuple[int, int]:
    if _session._ctx.session is None:
        return (0, 0)
    raw = _session.current().stats()
    rounds = max(sum(op["rounds"] for op in p.values()) for p in raw)
    byts = max(sum(op["bytes"] for op in p.values()) for p in raw)
    return rounds, byts


def _track(kind: str, x):
    return _LayerScope(kind) if isinstance(x, SharedTensor) else contextlib.nullcontext()


class FixedPointOverflowError(RuntimeError):
    """A layer's output left the range set with :func:`check_overflow`."""


def check_overflow(bound: float | None = 2.0**14) -> None:
    """Check every layer output of a converted model in training mode against
    ``|value| < bound`` and raise :class:`FixedPointOverflowError` naming the
    first layer that exceeds it, instead of training on garbage. Off by
    default: each check costs one batched comparison (10 rounds) per layer
    and reveals to all parties how many values of that layer were out of
    range. ``check_overflow(None)`` turns it off again."""
    if bound is not None and not bound > 0:
        raise ValueError("the overflow bound must be positive")
    _session._ctx.overflow_bound = bound


def _check_range(y, where: str) -> None:
    bound = getattr(_session._ctx, "overflow_bound", None)
    if bound is None or not isinstance(y, SharedTensor):
        return
    with ag.no_grad():
        flags = cat([(y - bound).reshape(-1), (-y - bound).reshape(-1)]).neg()._ltz("overflow")
        count = flags.sum().get_plain_text(dtype=torch.float64).item()
    if count > 0.5:
        raise FixedPointOverflowError(
            f"{int(round(count))} values of layer {where} exceed +-{bound:g}: the fixed-point "
            "encoding would overflow (lower the learning rate or normalise the inputs)"
        )


class Module:
    """Base class: parameters, submodules, encrypt/decrypt, train/eval."""

    kind = OTHER

    def __init__(self) -> None:
        self._params: OrderedDict[str, object] = OrderedDict()
        self._modules: OrderedDict[str, Module] = OrderedDict()
        self.training = False
        self.encrypted = False

    # -- structure
    def register_parameter(self, name: str, value) -> None:
        """Add a parameter (torch tensor, SharedTensor or None) under ``name``."""
        self._params[name] = value

    def add_module(self, name: str, module: Module) -> None:
        """Add a child module under ``name``."""
        self._modules[name] = module

    def __getattr__(self, name):
        d = self.__dict__
        if "_params" in d and name in d["_params"]:
            return d["_params"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def named_parameters(self, prefix: str = ""):
        """Yield (dotted name, parameter) for this module and its children, skipping None."""
        for k, v in self._params.items():
            if v is not None:
                yield prefix + k, v
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    def parameters(self):
        """Yield every parameter of this module and its children."""
        for _, v in self.named_parameters():
            yield v

    def modules(self):
        """Yield this module and every descendant, depth first."""
        yield self
        for m in self._modules.values():
            yield from m.modules()

    # -- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) on this module and its children; returns self."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode; returns self."""
        return self.train(False)

    def encrypt(self, src: int = 0) -> Module:
        """Secret-share every parameter from party ``src`` (the model owner).
        Shared parameters are autograd leaves (``requires_grad``)."""
        for m in self.modules():
            for k, v in m._params.items():
                if v is not None and not isinstance(v, SharedTensor):
                    m._params[k] = cryptensor(v, src=src).requires_grad_()
            m.encrypted = True
        return self

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.parameters():
            if isinstance(p, SharedTensor):
                p.grad = None

    def update_parameters(self, learning_rate: float) -> None:
        """CrypTen's plain SGD step: p <- p - lr * p.grad."""
        from .optim import SGD

        SGD(self.parameters(), lr=learning_rate).step()

    def decrypt(self) -> Module:
        """Open every parameter back into a float64 torch tensor."""
        for m in self.modules():
            for k, v in m._params.items():
                if isinstance(v, SharedTensor):
                    m._params[k] = v.get_plain_text(dtype=torch.float64)
            m.encrypted = False
        return self

    # -- running
    def forward(self, x):
        """The computation of the layer; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        x = args[0] if args else None
        grad_ctx = ag.no_grad() if not self.training else contextlib.nullcontext()
        with grad_ctx:
            if self._modules or self.kind == OTHER:
                return self.forward(*args, **kwargs)
            with _track(self.kind, x):
                return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._params.items() if v is not None)
        return f"{type(self).__name__}({inner})"


def _as_operand(p):
    """A parameter as an operand: SharedTensor, or a float64 torch tensor."""
    return p if isinstance(p, SharedTensor) else torch.as_tensor(p, dtype=torch.float64)


def _fresh(layer: torch.nn.Module) -> tuple:
    """Weights of a freshly initialised PyTorch layer, as float64."""
    w = layer.weight.detach().double()
    b = None if layer.bias is None else layer.bias.detach().double()
    return w, b


def _is_size(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Linear(Module):
    """y = x W^T + b. ``Linear(weight, bias=None)`` wraps given parameters;
    ``Linear(in_features, out_features, bias=True)`` (CrypTen's and
    PyTorch's form) initialises them as ``torch.nn.Linear`` does."""

    kind = LINEAR

    def __init__(self, *args, **kwargs):
        super().__init__()
        if args and _is_size(args[0]):
            weight, bias = _fresh(torch.nn.Linear(*args, **kwargs))
        else:

            def given(weight, bias=None):
                return weight, bias

            weight, bias = given(*args, **kwargs)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)

    def forward(self, x):
        """x W^T + b on a SharedTensor (or a plaintext tensor)."""
        w, b = self._params["weight"], self._params["bias"]
        if isinstance(x, SharedTensor):
            return x.linear(_as_operand(w), None if b is None else _as_operand(b))
        return F.linear(x, w, b)


class Conv2d(Module):
    """2-D convolution. ``Conv2d(weight, bias=None, stride, padding, dilation,
    groups)`` wraps given parameters; ``Conv2d(in_channels, out_channels,
    kernel_size, stride=1, padding=0, ...)`` (CrypTen's and PyTorch's form)
    initialises them as ``torch.nn.Conv2d`` does."""

    kind = LINEAR

    def __init__(self, *args, **kwargs):
        super().__init__()
        if args and _is_size(args[0]):
            layer = torch.nn.Conv2d(*args, **kwargs)
            if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
                raise NotImplementedError("Conv2d with string padding or a padding_mode")
            weight, bias = _fresh(layer)
            stride, padding = layer.stride, layer.padding
            dilation, groups = layer.dilation, layer.groups
        else:

            def given(weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
                return weight, bias, stride, padding, dilation, groups

            weight, bias, stride, padding, dilation, groups = given(*args, **kwargs)
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x):
        """The convolution of a SharedTensor NCHW input (or a plaintext tensor)."""
        w, b = self._params["weight"], self._params["bias"]
        if isinstance(x, SharedTensor):
            return x.conv2d(
                _as_operand(w),
                None if b is None else _as_operand(b),
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)


class ReLU(Module):
    """max(x, 0), privately (10 rounds)."""

    kind = RELU

    def forward(self, x):
        """max(x, 0) element-wise."""
        return x.relu()


class MaxPool2d(Module):
    """2-D max pooling (kernel_size, stride=kernel_size, padding, dilation), as torch."""

    kind = POOLING

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.k, self.s, self.p, self.d = kernel_size, stride, padding, dilation

    def forward(self, x):
        """The maximum over each window, by a comparison tournament."""
        if isinstance(x, SharedTensor):
            return x.max_pool2d(self.k, self.s, self.p, self.d)
        return F.max_pool2d(x, self.k, self.s, self.p, self.d)


class AvgPool2d(Module):
    """2-D average pooling (kernel_size, stride=kernel_size, padding), as
    torch with count_include_pad."""

    kind = POOLING

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.k, self.s, self.p = kernel_size, stride, padding

    def forward(self, x):
        """The mean over each window (a local sum, then one division by a public integer)."""
        if isinstance(x, SharedTensor):
            return x.avg_pool2d(self.k, self.s, self.p)
        return F.avg_pool2d(x, self.k, self.s, self.p)


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling where the output size divides the input size
    (the case CNNs use: global pooling, or exact downsampling)."""

    kind = POOLING

    def __init__(self, output_size):
        super().__init__()
        self.out = output_size

    def forward(self, x):
        """Average pooling to ``output_size`` (sizes that divide the input)."""
        oh, ow = (self.out, self.out) if isinstance(self.out, int) else self.out
        h, w = x.shape[-2], x.shape[-1]
        oh, ow = oh or h, ow or w
        if h % oh or w % ow:
            raise NotImplementedError(
                f"AdaptiveAvgPool2d from {h}x{w} to {oh}x{ow}: only output sizes that divide "
                "the input size are supported"
            )
        if isinstance(x, SharedTensor):
            return x.avg_pool2d((h // oh, w // ow))
        return F.avg_pool2d(x, (h // oh, w // ow))


class BatchNorm(Module):
    """BatchNorm1d/2d.

    Eval: x * scale + shift per channel, with scale = gamma / sqrt(var + eps)
    and shift = beta - mean * scale. A converted model gets them from its
    owner in plaintext (exact); after private training they are recomputed
    privately with inv_sqrt from the shared running statistics.

    Training: batch statistics over (N, H, W), a private inv_sqrt of the
    variance (CrypTen's Newton iteration, accurate for var + eps in
    [0.1, 130]; see functions.py), the standard BatchNorm backward as one
    recorded operation, and running statistics updated like PyTorch's
    (momentum, unbiased variance)."""

    kind = BATCHNORM

    def __init__(self, weight, bias, running_mean, running_var, eps=1e-5, momentum=0.1):
        super().__init__()
        self.register_parameter("weight", weight)
        self.register_parameter("bias", bias)
        self._buffers = OrderedDict(running_mean=running_mean, running_var=running_var)
        self.eps, self.momentum = eps, momentum
        self._affine = None

    def encrypt(self, src: int = 0) -> Module:
        """Share the affine parameters and running statistics from party ``src``."""
        super().encrypt(src)
        for k, v in self._buffers.items():
            if not isinstance(v, SharedTensor):
                self._buffers[k] = cryptensor(v, src=src)
        if self._affine is not None and not isinstance(self._affine[0], SharedTensor):
            self._affine = tuple(cryptensor(t, src=src) for t in self._affine)
        return self

    def decrypt(self) -> Module:
        """Open the parameters and running statistics into float64 tensors."""
        super().decrypt()
        for k, v in self._buffers.items():
            if isinstance(v, SharedTensor):
                self._buffers[k] = v.get_plain_text(dtype=torch.float64)
        if self._affine is not None and isinstance(self._affine[0], SharedTensor):
            self._affine = tuple(t.get_plain_text(dtype=torch.float64) for t in self._affine)
        return self

    def _eval_affine(self):
        if self._affine is None:
            rv, rm = self._buffers["running_var"], self._buffers["running_mean"]
            w, b = self._params["weight"], self._params["bias"]
            if isinstance(rv, SharedTensor):
                inv = functions.inv_sqrt(rv + self.eps)
            else:
                inv = torch.rsqrt(torch.as_tensor(rv, dtype=torch.float64) + self.eps)
            scale = inv if w is None else inv * w
            shift = -(rm * scale) if b is None else b - rm * scale
            self._affine = (scale, shift)
        return self._affine

    def forward(self, x):
        """Batch statistics in training mode (updating the running ones), the
        running ones in eval mode."""
        shape = [1, -1] + [1] * (x.dim() - 2)
        if not self.training:
            sc, sh = self._eval_affine()
            return x * sc.reshape(shape) + sh.reshape(shape)
        if not isinstance(x, SharedTensor):
            raise NotImplementedError("BatchNorm training on plaintext input")
        return self._train_forward(x, shape)

    def _train_forward(self, x, shape):
        self._affine = None  # parameters and statistics are about to change
        dims = [0] + list(range(2, x.dim()))
        n = x.numel() // x.shape[1]
        w, b = self._params["weight"], self._params["bias"]
        with ag.no_grad():
            mean = x.mean(dims, keepdim=True)
            xc = x - mean
            var = (xc * xc).mean(dims, keepdim=True)
            inv = functions.inv_sqrt(var + self.eps)
            xhat = xc * inv
            y = xhat if w is None else xhat * w.reshape(shape)
            y = y if b is None else y + b.reshape(shape)
            m = self.momentum
            rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
            unbiased = var.reshape(-1) * (n / max(n - 1, 1))
            self._buffers["running_mean"] = rm * (1 - m) + mean.reshape(-1) * m
            self._buffers["running_var"] = rv * (1 - m) + unbiased * m
        if not ag.needs_grad(x, w, b):
            return y

        def back(g):
            # dxhat = g * gamma; dx = inv / n * (n dxhat - sum dxhat - xhat sum(dxhat xhat))
            dxhat = g if w is None else g * w.reshape(shape)
            s1 = dxhat.sum(dims, keepdim=True)
            s2 = (dxhat * xhat).sum(dims, keepdim=True)
            dx = (dxhat * n - s1 - xhat * s2) * inv
            dx = dx.div(n)
            gw = None if w is None else (g * xhat).sum(dims)
            gb = None if b is None else g.sum(dims)
            return dx, gw, gb

        parents = (x, w if w is not None else x, b if b is not None else x)
        return ag.record(y, parents, lambda g: _drop_missing(back(g), w, b))


def _drop_missing(grads, w, b):
    dx, gw, gb = grads
    return dx, (gw if w is not None else None), (gb if b is not None else None)


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one, as torch.nn.Flatten."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.a, self.b = start_dim, end_dim

    def forward(self, x):
        """The flattened view."""
        return x.flatten(self.a, self.b)


def _common_generator() -> torch.Generator:
    """A torch generator that the three parties seed alike, made at first use
    in a session from a joint coin: each party shares a random integer below
    2^28 and the sum is opened (one sharing round per party, one reveal), so
    no party chooses the seed. Used for dropout masks."""
    ctx, s = _session._ctx, _session.current()
    held = getattr(ctx, "common_rng", None)
    if held is None or held[0] is not s:
        total = None
        for i in range(3):
            t = cryptensor(torch.tensor([float(secrets.randbelow(2**28))]), src=i)
            total = t if total is None else total + t
        g = torch.Generator()
        g.manual_seed(int(round(total.get_plain_text(dtype=torch.float64).item())))
        ctx.common_rng = (s, g)
        held = ctx.common_rng
    return held[1]


class Dropout(Module):
    """``torch.nn.Dropout``: the identity at eval time; in training, each
    element is zeroed with probability ``p`` and the others are scaled by
    1 / (1 - p). The mask comes from randomness common to the three parties
    (:func:`_common_generator`), so every party knows it. It is drawn
    independently of all inputs and weights, so it reveals nothing about
    them (a simulator draws the same mask). Cost: one truncation for the
    scale, as a product by a public tensor."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x):
        """``x`` in eval mode; ``x`` times a fresh scaled 0/1 mask in training."""
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * torch.zeros(tuple(x.shape), dtype=torch.float64)
        g = _common_generator()
        keep = torch.rand(tuple(x.shape), generator=g, dtype=torch.float64) >= self.p
        return x * (keep.double() / (1 - self.p))


class Identity(Module):
    """Returns its input."""

    def forward(self, x):
        """Returns ``x`` unchanged."""
        return x


class Softmax(Module):
    """softmax over ``dim``, privately (CrypTen's approximation)."""

    kind = SOFTMAX

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        """softmax(x) over ``self.dim``."""
        return x.softmax(self.dim)


class LogSoftmax(Softmax):
    """log_softmax over ``dim``, privately."""

    def forward(self, x):
        """log_softmax(x) over ``self.dim``."""
        return x.log_softmax(self.dim)


class Sequential(Module):
    """Children applied in order, as torch.nn.Sequential."""

    def __init__(self, *mods: Module):
        super().__init__()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def forward(self, x):
        """Apply each child to the output of the previous one."""
        for m in self._modules.values():
            x = m(x)
        return x


# --------------------------------------------------------------- losses


def _one_hot(target, like: SharedTensor):
    """Targets as a one-hot: a SharedTensor one-hot is used as is; integer
    labels (plaintext, so known to all parties) are expanded."""
    if isinstance(target, SharedTensor):
        if tuple(target.shape) != tuple(like.shape):
            raise ValueError(f"one-hot target {tuple(target.shape)} != logits {tuple(like.shape)}")
        return target
    t = torch.as_tensor(target)
    if t.dim() == 1 and not t.is_floating_point():
        if t.numel() != like.shape[0]:
            raise ValueError(f"{t.numel()} labels for a batch of {like.shape[0]}")
        return F.one_hot(t.long(), like.shape[1]).double()
    if tuple(t.shape) != tuple(like.shape):
        raise ValueError(f"target {tuple(t.shape)} != logits {tuple(like.shape)}")
    return t.double()


class CrossEntropyLoss(Module):
    """Mean cross-entropy of logits [N, C] against labels or one-hot targets.

    The loss value is computed privately with log_softmax (for monitoring);
    the backward pass uses the exact shortcut d loss / d logits =
    (softmax(logits) - onehot) / N, as CryptGPU and CrypTen do, rather than
    differentiating through the approximations."""

    kind = SOFTMAX

    def forward(self, logits, target):
        """The mean cross-entropy of ``logits`` against ``target`` (labels or one-hot)."""
        if not isinstance(logits, SharedTensor):
            return F.cross_entropy(logits, torch.as_tensor(target))
        y = _one_hot(target, logits)
        n = logits.shape[0]
        want_grad = ag.needs_grad(logits)
        with ag.no_grad():
            loss = (logits.log_softmax(1) * y).sum().neg().div(n)
            if not want_grad:
                return loss
            probs = logits.softmax(1)
        return ag.record(loss, (logits,), lambda g: ((probs - y).div(n) * g,))

    def __call__(self, logits, target):
        with _track(self.kind, logits):
            return self.forward(logits, target)


class MSELoss(Module):
    """Mean squared error, differentiated by the recorded operations."""

    def forward(self, x, target):
        """mean((x - target)^2)."""
        d = x - target
        return (d * d).mean()

    def __call__(self, x, target):
        return self.forward(x, target)


# --------------------------------------------------------------- conversion


def _bn_affine(bn: torch.nn.modules.batchnorm._BatchNorm):
    if bn.running_mean is None or bn.running_var is None:
        raise NotImplementedError("BatchNorm without running statistics cannot be converted")
    var = bn.running_var.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def _plain(p):
    return None if p is None else p.detach().to(torch.float64).clone()


def _convert_module(m: torch.nn.Module, where: str) -> Module:
    t = torch.nn
    if isinstance(m, t.Linear):
        return Linear(_plain(m.weight), _plain(m.bias))
    if isinstance(m, t.Conv2d):
        if m.padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d padding_mode={m.padding_mode!r} at {where}")
        pad = m.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = 0
            else:
                raise NotImplementedError(f"Conv2d padding={pad!r} at {where}")
        return Conv2d(_plain(m.weight), _plain(m.bias), m.stride, pad, m.dilation, m.groups)
    if isinstance(m, t.ReLU):
        return ReLU()
    if isinstance(m, t.MaxPool2d):
        if m.ceil_mode or m.return_indices:
            raise NotImplementedError(f"MaxPool2d with ceil_mode/return_indices at {where}")
        return MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)
    if isinstance(m, t.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
            raise NotImplementedError(
                f"AvgPool2d with ceil_mode, count_include_pad=False or divisor_override at {where}"
            )
        return AvgPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, t.AdaptiveAvgPool2d):
        return AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, (t.BatchNorm1d, t.BatchNorm2d)):
        if m.running_mean is None:
            raise NotImplementedError(f"BatchNorm without running statistics at {where}")
        bn = BatchNorm(
            _plain(m.weight),
            _plain(m.bias),
            _plain(m.running_mean),
            _plain(m.running_var),
            m.eps,
            m.momentum if m.momentum is not None else 0.1,
        )
        bn._affine = _bn_affine(m)  # exact, from the owner's plaintext
        return bn
    if isinstance(m, t.Flatten):
        return Flatten(m.start_dim, m.end_dim)
    if isinstance(m, t.Dropout):
        return Dropout(m.p)
    if isinstance(m, t.Identity):
        return Identity()
    if isinstance(m, t.Softmax):
        return Softmax(m.dim)
    if isinstance(m, t.LogSoftmax):
        return LogSoftmax(m.dim)
    raise NotImplementedError(f"unsupported layer {type(m).__name__} at {where}")


def _relu(x, inplace=False):
    return x.relu()


def _max_pool2d(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if ceil_mode or return_indices:
        raise NotImplementedError("F.max_pool2d with ceil_mode or return_indices")
    return x.max_pool2d(kernel_size, stride, padding, dilation)


def _avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    if ceil_mode or not count_include_pad or divisor_override is not None:
        raise NotImplementedError("F.avg_pool2d with ceil_mode, count_include_pad=False or divisor")
    return x.avg_pool2d(kernel_size, stride, padding)


def _adaptive_avg_pool2d(x, output_size):
    return AdaptiveAvgPool2d(output_size).forward(x)


def _flatten(x, start_dim=0, end_dim=-1):
    return x.flatten(start_dim, end_dim)


def _cat(xs, dim=0):
    xs = list(xs)
    if all(isinstance(t, SharedTensor) for t in xs):
        return cat(xs, dim)
    raise NotImplementedError("torch.cat of shared and plaintext tensors")


def _softmax(x, dim=None, **kw):
    return x.softmax(dim)


def _log_softmax(x, dim=None, **kw):
    return x.log_softmax(dim)


_FUNCTIONS = {
    operator.add: (operator.add, OTHER),
    operator.sub: (operator.sub, OTHER),
    operator.mul: (operator.mul, OTHER),
    operator.truediv: (operator.truediv, OTHER),
    operator.neg: (operator.neg, OTHER),
    operator.getitem: (operator.getitem, OTHER),
    operator.matmul: (operator.matmul, LINEAR),
    torch.add: (operator.add, OTHER),
    torch.sub: (operator.sub, OTHER),
    torch.mul: (operator.mul, OTHER),
    torch.matmul: (operator.matmul, LINEAR),
    torch.flatten: (_flatten, OTHER),
    torch.cat: (_cat, OTHER),
    torch.relu: (_relu, RELU),
    F.relu: (_relu, RELU),
    F.max_pool2d: (_max_pool2d, POOLING),
    F.avg_pool2d: (_avg_pool2d, POOLING),
    F.adaptive_avg_pool2d: (_adaptive_avg_pool2d, POOLING),
    F.softmax: (_softmax, SOFTMAX),
    F.log_softmax: (_log_softmax, SOFTMAX),
    torch.softmax: (_softmax, SOFTMAX),
    torch.log_softmax: (_log_softmax, SOFTMAX),
}

_METHODS = {
    "view": OTHER,
    "reshape": OTHER,
    "flatten": OTHER,
    "size": OTHER,
    "dim": OTHER,
    "contiguous": OTHER,
    "permute": OTHER,
    "transpose": OTHER,
    "unsqueeze": OTHER,
    "squeeze": OTHER,
    "mean": POOLING,
    "sum": OTHER,
    "relu": RELU,
    "softmax": SOFTMAX,
    "log_softmax": SOFTMAX,
    "add": OTHER,
    "mul": OTHER,
}


def _first_shared(args):
    for a in args:
        if isinstance(a, SharedTensor):
            return a
        if isinstance(a, (list, tuple)):
            found = _first_shared(a)
            if found is not None:
                return found
    return None


class Graph(Module):
    """A converted torch.fx graph: nodes run in order on the converted layers."""

    def __init__(self, graph: torch.fx.Graph, modules: dict[str, Module], attrs: dict):
        super().__init__()
        self._graph = graph
        self._attrs = attrs
        for name, m in modules.items():
            self.add_module(name.replace(".", "_"), m)
        self._names = {name: name.replace(".", "_") for name in modules}

    def forward(self, *inputs):
        """Run the converted torch.fx graph on ``x``."""
        env: dict = {}
        it = iter(inputs)

        def load(a):
            return torch.fx.node.map_arg(a, lambda n: env[n.name])

        for node in self._graph.nodes:
            if node.op == "placeholder":
                try:
                    env[node.name] = next(it)
                except StopIteration:
                    raise TypeError(f"missing input {node.name!r}") from None
            elif node.op == "get_attr":
                env[node.name] = self._attrs[node.target]
            elif node.op == "call_module":
                m = self._modules[self._names[node.target]]
                env[node.name] = m(*load(node.args), **load(node.kwargs))
                if self.training:
                    _check_range(env[node.name], f"{node.target!r} ({type(m).__name__})")
            elif node.op == "call_function":
                fn, kind = _FUNCTIONS[node.target]
                args, kwargs = load(node.args), load(node.kwargs)
                shared = _first_shared(args)
                if shared is None:  # a plaintext run (the conversion check)
                    env[node.name] = node.target(*args, **kwargs)
                    continue
                with _track(kind, shared):
                    env[node.name] = fn(*args, **kwargs)
            elif node.op == "call_method":
                args, kwargs = load(node.args), load(node.kwargs)
                with _track(_METHODS[node.target], args[0]):
                    env[node.name] = getattr(args[0], node.target)(*args[1:], **kwargs)
            elif node.op == "output":
                return load(node.args[0])
        raise RuntimeError("graph has no output node")


def _graph_to_pytorch(self, model: torch.nn.Module) -> torch.nn.Module:
    """Copy this (decrypted) module's weights into the PyTorch model it was
    converted from, by layer name. Encrypted weights are opened first."""
    torch_mods = dict(model.named_modules())
    for target, name in self._names.items():
        m = self._modules[name]
        tm = torch_mods.get(target)
        if tm is None or not isinstance(m, (Linear, Conv2d, BatchNorm)):
            continue
        values = dict(m._params)
        if isinstance(m, BatchNorm):
            values.update(m._buffers)
        for k, v in values.items():
            if v is None or getattr(tm, k, None) is None:
                continue
            if isinstance(v, SharedTensor):
                v = v.get_plain_text(dtype=torch.float64)
            with torch.no_grad():
                getattr(tm, k).copy_(torch.as_tensor(v).to(getattr(tm, k).dtype))
    return model


Graph.to_pytorch = _graph_to_pytorch


_TRACE_LOCK = threading.Lock()


def _fold_batchnorm(gm: torch.fx.GraphModule, mods: dict) -> None:
    """Fold every BatchNorm whose only input is a Conv2d used nowhere else
    into that conv's weight and bias (one multiplication fewer per BN)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(mods.get(node.target), torch.nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(mods.get(src.target), torch.nn.Conv2d)
            and len(src.users) == 1
        ):
            continue
        conv, bn = mods[src.target], mods[node.target]
        scale, shift = _bn_affine(bn)
        w = conv.weight.detach().double() * scale.reshape(-1, 1, 1, 1)
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
        fused = torch.nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            True,
            conv.padding_mode,
        ).double()
        with torch.no_grad():
            fused.weight.copy_(w)
            fused.bias.copy_(b * scale + shift)
        mods[src.target] = fused
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)


def from_pytorch(model: torch.nn.Module, dummy_input=None, fold_batchnorm: bool = True) -> Graph:
    """Convert a trained PyTorch model into a cryptgpu module by torch.fx
    tracing. Handles nn layers (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d,
    AdaptiveAvgPool2d, BatchNorm1d/2d, Flatten, Dropout, Identity,
    Softmax/LogSoftmax), their functional forms, ``x.view``/``torch.flatten``,
    residual ``+`` and ``torch.cat``. An unsupported op raises
    NotImplementedError naming it and its graph node.

    ``dummy_input``, when given, is run through the converted model in
    plaintext and compared with the original, to catch conversion errors
    early (an input with undefined values, such as CrypTen's customary
    ``torch.empty(...)``, is replaced by uniform values of its shape).
    Call ``.encrypt(src=...)`` on the result to share the weights.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"from_pytorch expects a torch.nn.Module, got {type(model).__name__}")
    model = model.eval()
    if not list(model.children()):
        # A bare layer (nn.Linear, ...) traces to its functional form;
        # wrapped, it stays a module call with its parameters.
        model = torch.nn.Sequential(model)
    try:
        # torch.fx patches torch globals while it traces, so traces from the
        # party threads of an SPMD run (one process) must not overlap.
        with _TRACE_LOCK:
            gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # tracing errors come in many types
        raise NotImplementedError(f"torch.fx could not trace the model: {e}") from e
    mods = dict(gm.named_modules())
    if fold_batchnorm:
        _fold_batchnorm(gm, mods)
    converted: dict[str, Module] = {}
    attrs: dict = {}
    for node in gm.graph.nodes:
        where = f"node {node.name!r}"
        if node.op == "call_module":
            if node.target not in converted:
                converted[node.target] = _convert_module(mods[node.target], where)
        elif node.op == "call_function":
            if node.target not in _FUNCTIONS:
                name = getattr(node.target, "__name__", str(node.target))
                raise NotImplementedError(f"unsupported function {name} at {where}")
        elif node.op == "call_method":
            if node.target not in _METHODS:
                raise NotImplementedError(f"unsupported method .{node.target}() at {where}")
        elif node.op == "get_attr":
            v = gm
            for part in node.target.split("."):
                v = getattr(v, part)
            attrs[node.target] = v.detach().double() if isinstance(v, torch.Tensor) else v
    out = Graph(gm.graph, converted, attrs)
    if dummy_input is not None:
        x = torch.as_tensor(dummy_input, dtype=torch.float64)
        if not torch.isfinite(x).all():
            # CrypTen code passes torch.empty(...) as the dummy input: only
            # its shape matters then; check on values that are defined.
            g = torch.Generator().manual_seed(0)
            x = torch.rand(x.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            want = _run_double(model, x)
            got = out(x)
        if not torch.allclose(got, want, atol=1e-6, rtol=1e-6):
            raise RuntimeError(
                "conversion check failed: the converted model disagrees with the original"
            )
    return out


def _run_double(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import copy

    return copy.deepcopy(model).double()(x)
