"""The CNN operations of SharedTensor: conv2d, linear, average and max
pooling, as ``torch.nn.functional`` has them. cryptgpu.nn's layers call
these; their gradients are in :mod:`cryptgpu.gradients`.
"""

from __future__ import annotations

from . import autograd as ag
from . import gradients as gr
from ._native import InvalidArgumentError, ShapeError
from ._plain import _buf, _pair, _plain_array
from .tensor_base import TensorBase


class LayerOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: convolution, linear and pooling."""

    __slots__ = ()

    # ------------------------------------------------------------ layers
    def conv2d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> TensorBase:
        """2-D convolution of an NCHW (or CHW) input, like ``torch.nn.functional.conv2d``.
        ``weight`` and ``bias`` may be shared or plaintext."""
        stride, padding, dilation = (
            _pair(stride, "stride"),
            _pair(padding, "padding"),
            _pair(dilation, "dilation"),
        )
        if stride[0] == 0 or stride[1] == 0 or dilation[0] == 0 or dilation[1] == 0:
            raise InvalidArgumentError("stride and dilation must be positive")
        if not isinstance(groups, int) or groups < 1:
            raise InvalidArgumentError(f"groups must be a positive int, got {groups!r}")
        x, squeeze = (self.unsqueeze(0), True) if self.dim() == 3 else (self, False)
        if x.dim() == 4 and 0 in tuple(x.shape)[1:]:
            # torch refuses empty H or W, and answers zero input channels with
            # an output of zero channels whatever the weight: refused here.
            raise ShapeError(
                "conv2d expects non-zero input channels, height and width (a batch of 0 "
                f"is allowed), got input shape {tuple(x.shape)}"
            )
        ws, wp = self._other(weight, "conv2d weight")
        s = x._s(self, ws)  # sets the truncation protocol: nothing runs in between
        if ws is not None:
            out = self._wrap(s.conv2d(x._t, ws._t, stride, padding, dilation, groups))
        else:
            out = self._wrap(
                s.conv2d_public(x._t, _buf(wp), list(wp.shape), stride, padding, dilation, groups)
            )
        if ag.needs_grad(x, ws):
            gr._record_conv(out, x, ws, wp, stride, padding, dilation, groups)
        if bias is not None:
            o = (ws if ws is not None else wp).shape[0]
            b = bias if isinstance(bias, TensorBase) else _plain_array(bias, "conv2d bias")
            if tuple(b.shape) != (o,):
                # torch refuses a bias that is not one value per output channel
                # (broadcasting a length-1 bias would silently add it everywhere).
                raise RuntimeError(
                    f"conv2d: expected bias to be 1-dimensional with {o} elements, "
                    f"but got bias of size {list(b.shape)}"
                )
            out = out + b.reshape(1, -1, 1, 1)
        return out.squeeze(0) if squeeze else out

    def conv1d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        """1-D convolution of an NCL (or CL) input, like ``F.conv1d``: the
        2-D convolution of [N, C, 1, L] by a [O, C/g, 1, K] kernel (the
        same products, the same cost)."""
        if self.dim() not in (2, 3):
            raise ShapeError(f"conv1d expects a 2-D or 3-D input, got {tuple(self.shape)}")
        one = _single(stride, "stride"), _single(padding, "padding"), _single(dilation, "dilation")
        w = (
            weight.unsqueeze(-2)
            if isinstance(weight, TensorBase)
            else _plain_array(weight, "conv1d weight")[..., None, :]
        )
        out = self.unsqueeze(-2).conv2d(w, bias, (1, one[0]), (0, one[1]), (1, one[2]), groups)
        return out.squeeze(-2)

    def max_pool1d(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        """``F.max_pool1d`` on an NCL (or CL) input, as a 1 x k 2-D pooling."""
        k = _single(kernel_size, "kernel_size")
        st = k if stride is None else _single(stride, "stride")
        return (
            self.unsqueeze(-2)
            .max_pool2d(
                (1, k),
                stride=(1, st),
                padding=(0, _single(padding, "padding")),
                dilation=(1, _single(dilation, "dilation")),
                ceil_mode=ceil_mode,
            )
            .squeeze(-2)
        )

    def avg_pool1d(self, kernel_size, stride=None, padding=0):
        """``F.avg_pool1d`` (count_include_pad) on an NCL (or CL) input."""
        k = _single(kernel_size, "kernel_size")
        st = k if stride is None else _single(stride, "stride")
        pad = _single(padding, "padding")
        return self.unsqueeze(-2).avg_pool2d((1, k), (1, st), (0, pad)).squeeze(-2)

    def linear(self, weight, bias=None) -> TensorBase:
        """x @ weight.T + bias, like ``torch.nn.functional.linear``."""
        if isinstance(weight, TensorBase) and weight.dim() == 2 and self.dim() >= 1:
            # Leading dims flattened into rows: one product reading W in
            # place, instead of a transposed (and per-batch expanded) copy.
            if self.shape[-1] != weight.shape[1]:
                raise ShapeError(
                    f"linear: input {tuple(self.shape)} does not match weight {tuple(weight.shape)}"
                )
            rows = self if self.dim() == 2 else self.reshape(-1, self.shape[-1])
            out = rows._matmul_t(weight)
            if self.dim() != 2:
                out = out.reshape(*self.shape[:-1], weight.shape[0])
        elif isinstance(weight, TensorBase):
            out = self.matmul(weight.t())
        else:
            out = self.matmul(_plain_array(weight, "linear weight").T)
        return out if bias is None else out + bias

    def avg_pool2d(self, kernel_size, stride=None, padding=0) -> TensorBase:
        """Average pooling (count_include_pad=True), like ``F.avg_pool2d``."""
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        if 0 in k or 0 in st:
            raise InvalidArgumentError("kernel_size and stride must be positive")
        x, squeeze = _pool_input(self)
        pad = _pair(padding, "padding")
        if ag.needs_grad(x) and pad == (0, 0) and k == tuple(x.shape[-2:]):
            # Global pooling (one window): the mean, whose gradient rounds
            # every input element on its own; the pooling backward divides
            # each window's gradient once for all of its k elements, which
            # for a 7x7 or 8x8 window is a shared rounding of a few units
            # (up to 5% of the gradient, the same sign for the whole map).
            out = x.mean((2, 3), keepdim=True)
            return out.squeeze(0) if squeeze else out
        out = self._wrap(self._s().avg_pool2d(x._t, k, st, pad))
        if ag.needs_grad(x):
            gr.record_avg_pool2d(out, x, k, st, pad)
        return out.squeeze(0) if squeeze else out

    def max_pool2d(
        self,
        kernel_size,
        padding=0,
        stride=None,
        dilation=1,
        ceil_mode=False,
        return_indices=False,
    ):
        """Max pooling (padding acts as -inf), with CrypTen's argument order
        (kernel_size, padding, stride, ...: ``x.max_pool2d(3, 1, 2)`` pads by
        1 with stride 2, as in CrypTen; ``F.max_pool2d(x, ...)`` keeps
        torch's order). With ``return_indices`` also returns the one-hot
        argmax of every window, shape [N, C, OH, OW, kh*kw], as kept for the
        backward pass. ``ceil_mode`` is not supported."""
        if ceil_mode:
            raise NotImplementedError("max_pool2d with ceil_mode on a SharedTensor")
        k = _pair(kernel_size, "kernel_size")
        st = k if stride is None else _pair(stride, "stride")
        dil = _pair(dilation, "dilation")
        if 0 in k or 0 in st or 0 in dil:
            raise InvalidArgumentError("kernel_size, stride and dilation must be positive")
        x, squeeze = _pool_input(self)
        pad = _pair(padding, "padding")
        grad = ag.needs_grad(x)
        with ag.inside(grad):
            win = x._wrap(x._s().pool_windows(x._t, (k, st, pad, dil)))
            v, a = win._tournament(return_indices or grad, "max_pool2d")
        if grad:
            gr.record_max_pool2d(v, x, a, (k, st, pad, dil))
            a = a if return_indices else None
        if squeeze:
            v = v.squeeze(0)
            a = a.squeeze(0) if a is not None else None
        return (v, a) if return_indices else v


def _pool_input(x):
    """(NCHW input, whether it was CHW) for pooling, refusing what torch
    refuses: other ranks, and zero channels, height or width."""
    if x.dim() not in (3, 4) or 0 in tuple(x.shape)[-3:]:
        raise ShapeError(
            "pooling expects a 3-D (CHW) or 4-D (NCHW) input with non-zero C, H and W "
            f"(a batch of 0 is allowed), got shape {tuple(x.shape)}"
        )
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _single(v, name: str) -> int:
    """A 1-D layer's size argument: an int or a 1-tuple of one."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise InvalidArgumentError(f"{name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgumentError(f"{name} must be an int, got {v!r}")
    return v
