"""Reductions of SharedTensor (sum, mean) and the approximated functions
(exp, reciprocal, log, sigmoid, softmax, ...), which delegate to
:mod:`cryptgpu.functions`.
"""

from __future__ import annotations

import functools
import math

import torch

from . import autograd as ag
from . import functions as fx
from . import gradients as gr
from ._plain import _index, _norm_dim
from .tensor_base import TensorBase

_UNSET = object()


def _crypten_counts(name: str, **counts) -> None:
    """Older CrypTen's iteration counts of an approximation: accepted (an
    int, or None) and unused, since ours take their own fixed steps."""
    for k, v in counts.items():
        if v is not None and (isinstance(v, bool) or _index(v) is None):
            raise TypeError(f"{name}(): {k} must be an int, got {type(v).__name__}")


def axis_alias(method):
    """torch's ``axis=``, its alias of ``dim=`` (numpy's name), for a method
    whose first argument is ``dim``: x.sum(axis=1), torch.mean(x, axis=0);
    and ``keepdims=`` for ``keepdim=``."""

    @functools.wraps(method)
    def call(self, *args, axis=_UNSET, keepdims=_UNSET, **kwargs):
        if axis is not _UNSET:
            if args or "dim" in kwargs:
                raise TypeError(f"{method.__name__}() got multiple values for argument 'dim'")
            kwargs["dim"] = axis
        if keepdims is not _UNSET:  # numpy's name too (torch's parser takes it)
            if "keepdim" in kwargs:
                raise TypeError(f"{method.__name__}() got multiple values for argument 'keepdim'")
            kwargs["keepdim"] = keepdims
        return method(self, *args, **kwargs)

    return call


def check_dtype(dtype, what: str) -> None:
    """A reduction's ``dtype=``: a floating torch dtype is accepted and has
    no effect (shares are fixed point; ``get_plain_text(dtype=)`` chooses
    the opened dtype); an integer, bool or complex one is refused."""
    if dtype is None:
        return
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"{what}(dtype={dtype}): a SharedTensor holds fixed-point values, so only a "
            "floating dtype (which changes nothing here) is accepted; open the result "
            "with get_plain_text(dtype=...) and convert that instead"
        )


def _dim_keepdim(dim, keepdim, what: str) -> tuple:
    """A reduction's (dim, keepdim), defaults None and False; keepdim
    without dim is torch's TypeError (``x.sum(keepdim=True)``; an explicit
    ``dim=None`` is taken)."""
    if dim is _UNSET:
        if keepdim is not _UNSET:
            raise TypeError(
                f"{what}() received an invalid combination of arguments - got (keepdim=bool, ): "
                "keepdim needs a dim (dim=None for all dims)"
            )
        return None, False
    return dim, (False if keepdim is _UNSET else keepdim)


class ReductionOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: sums and means."""

    __slots__ = ()

    # ------------------------------------------------------------ reductions
    def _dims(self, dim) -> list[int]:
        if _index(dim) is not None:
            dim = [dim]
        elif dim is not None and not isinstance(dim, (list, tuple, torch.Size)):
            raise TypeError(  # x.sum(dim=1.0): torch's words (it said "float has no len()")
                "reduction received an invalid combination of arguments - got "
                f"(dim={type(dim).__name__}): dim must be an int, a tuple of ints or None"
            )
        # torch: None and an empty list of dims both reduce every dim.
        if dim is None or len(dim) == 0:
            return list(range(self.dim()))
        dims = [_norm_dim(d, self.dim()) for d in dim]
        for d in set(dims):
            if dims.count(d) > 1:
                raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        # A scalar's dim 0 / -1 is itself: reducing over it reduces nothing.
        return sorted(dims) if self.dim() else []

    @axis_alias
    def sum(self, dim=_UNSET, keepdim=_UNSET, *, dtype=None) -> TensorBase:
        """Sum over ``dim`` (an int, a tuple, or all dims); no communication.
        ``dtype`` as :func:`check_dtype` says."""
        dim, keepdim = _dim_keepdim(dim, keepdim, "sum")
        check_dtype(dtype, "sum")
        dims = self._dims(dim)
        out = self._wrap(self._s().sum(self._t, dims, bool(keepdim)))
        if ag.needs_grad(self):
            gr.record_sum(out, self, dims)
        return out

    @axis_alias
    def mean(self, dim=_UNSET, keepdim=_UNSET, *, dtype=None) -> TensorBase:
        """Mean over ``dim``: a local sum, then one exact division (2 rounds).
        Its gradient divides after broadcasting, each element rounded on
        its own: g / n rounded once and broadcast would give every element
        the same rounding, a gradient up to 1.5x torch's for n = 98304.
        ``dtype`` as :func:`check_dtype` says."""
        dim, keepdim = _dim_keepdim(dim, keepdim, "mean")
        check_dtype(dtype, "mean")
        dims = self._dims(dim)
        n = 1
        for d in dims:
            n *= self._t.shape[d]
        if n == 0:
            out = self.sum(dims, keepdim)
            if out.numel():
                # torch answers NaN, which fixed point cannot hold
                raise ValueError(
                    f"mean over an empty dimension of shape {tuple(self.shape)} is NaN, "
                    "which is not representable in fixed point"
                )
            return out
        recorded = ag.needs_grad(self)
        # one recorded operation (its own backward below), its division
        # still truncated as training work when recorded
        with ag.inside(recorded):
            out = self.sum(dims, keepdim).div(n)
        if recorded:
            gr.record_mean(out, self, dims, n)
        return out

    def _div_fresh(self, n: int) -> TensorBase:
        """self / n (a positive integer) with every element rounded
        independently, also where the elements hold equal shares (after
        ``expand``), and without bias: the same rounds and bytes as
        ``div(n)``. (Until 2026-12-06 the exact division by an integer that
        is not a power of two kept a bias of up to 0.1 units, 12% of a
        gradient of 1 / 98304, and this multiplied by round(2^e / n) and
        divided by 2^e instead, at a relative error of up to 2^-15.)"""
        return self._wrap(self._s().div_public_int_fresh(self._t, n))


class FunctionOps:
    """Mixin of :class:`cryptgpu.SharedTensor`: CrypTen's function approximations."""

    __slots__ = ()

    # ------------------------------------------------------------ functions
    def exp(self, iterations=None) -> TensorBase:
        """e^x, range-reduced (:func:`cryptgpu.functions.exp`: 1e-3 relative
        plus a few units of 2^-16 for x in [-16, 20.8] at f = 16). Older
        CrypTen's ``iterations`` (the squarings of its limit (1 + x/2^n)^(2^n))
        is accepted and changes nothing: this exp takes its own fixed steps
        (CrypTen's limit is :func:`cryptgpu.functions.exp_crypten`)."""
        _crypten_counts("exp", iterations=iterations)
        return fx.exp(self)

    def exp2(self) -> TensorBase:
        """2^x, range-reduced (:func:`cryptgpu.functions.exp2`: a few units
        plus 2^-15 relative for 2^x up to 2^30 at f = 16); also torch.exp2."""
        return fx.exp2(self)

    def reciprocal(
        self,
        input_in_01: bool = False,
        *,
        all_pos: bool = False,
        method: str | None = None,
        nr_iters=None,
        log_iters=None,
        exp_iters=None,
    ) -> TensorBase:
        """1/x, range-reduced (:func:`cryptgpu.functions.reciprocal`: 1e-9
        relative plus the rounding for |x| in [2^-16, 2^30)). CrypTen's
        ``input_in_01`` (which rescales its Newton iteration for inputs in
        (0, 1]) is accepted and changes nothing: the reciprocal is
        range-reduced either way.

        ``all_pos=True`` (older CrypTen's keyword, newer CrypTen's
        ``cfg.functions.reciprocal_all_pos``) promises that every x is
        positive: the sign is not computed (12 rounds fewer of 48 at f =
        16, a quarter). As in CrypTen, an x <= 0 then gives garbage.
        Older CrypTen's ``method`` ("NR" or "log"), ``nr_iters``,
        ``log_iters`` and ``exp_iters`` are accepted and change nothing:
        this reciprocal chooses its own steps (another method raises
        ValueError, as CrypTen's)."""
        del input_in_01
        _crypten_counts("reciprocal", nr_iters=nr_iters, log_iters=log_iters, exp_iters=exp_iters)
        if method is not None and str(method).lower() not in ("nr", "log"):
            raise ValueError(
                f"reciprocal(method={method!r}): CrypTen's methods are 'NR' and 'log' (accepted, "
                "and the same here: the reciprocal is range-reduced either way)"
            )
        if not isinstance(all_pos, bool):
            raise TypeError(f"reciprocal(): all_pos must be a bool, got {type(all_pos).__name__}")
        return fx.reciprocal_pos(self) if all_pos else fx.reciprocal(self)

    def sqrt(self) -> TensorBase:
        """sqrt(x) for x > 0, as x * inv_sqrt(x)."""
        return fx.sqrt(self)

    def inv_sqrt(self) -> TensorBase:
        """1/sqrt(x) for x in [2^-16, 2^30), range-reduced
        (:func:`cryptgpu.functions.inv_sqrt`: 1e-4 relative)."""
        return fx.inv_sqrt(self)

    def log(
        self, input_in_01: bool = False, *, iterations=None, exp_iterations=None, order=None
    ) -> TensorBase:
        """ln(x) for x > 0, range-reduced (:func:`cryptgpu.functions.log`):
        within a few units of 2^-16 on [2^-16, 2^30]. CrypTen's
        ``input_in_01`` (which shifts its Householder iteration's domain for
        inputs in (0, 1]) is accepted and changes nothing: the range
        reduction is accurate there already. So are older CrypTen's
        ``iterations``, ``exp_iterations`` and ``order`` (of its Householder
        iteration, :func:`cryptgpu.functions.log_crypten` here): this log
        takes its own fixed steps."""
        del input_in_01
        _crypten_counts("log", iterations=iterations, exp_iterations=exp_iterations, order=order)
        # Under autograd one recorded node whose backward is g / x = g
        # 2^(-log2 x) (one exp2, in the backward): through the range
        # reduction's own steps, whose 2^-j scaled the rounding of small
        # gradients up, log at 0.01 with g = 1e-3 was 3% off until 2026-12-07
        recorded = ag.needs_grad(self)
        with ag.inside(recorded):
            out = fx.log(self)
        if recorded:
            kept = out._wrap(out._t)
            ag.record(out, (self,), lambda g: (g * fx.exp2(kept * (-1 / math.log(2))),))
        return out

    def sigmoid(self) -> TensorBase:
        """1 / (1 + e^-x), privately."""
        return fx.sigmoid(self)

    def tanh(self) -> TensorBase:
        """tanh(x) = 2 sigmoid(2x) - 1, privately."""
        return fx.tanh(self)

    def erf(self) -> TensorBase:
        """The error function, as ``torch.erf``: a fitted polynomial on
        |x| < 2 sqrt(2), +-1 beyond; within 1.1e-4 (functions.erf)."""
        return fx.erf(self)

    def gelu(self, approximate: str = "none") -> TensorBase:
        """GELU like ``F.gelu`` (exact-erf or ``approximate="tanh"``): a
        fitted polynomial on |x| < 4, relu beyond; within 2e-4."""
        return fx.gelu(self, approximate)

    @axis_alias
    def softmax(self, dim: int, dtype=None) -> TensorBase:
        """softmax over ``dim`` (max-shifted exp, then a private reciprocal)."""
        check_dtype(dtype, "softmax")
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0:
            return self - self + 1.0  # torch: a scalar's softmax is 1
        if self.shape[d] == 0:
            return self + 0.0
        return fx.softmax(self, d)

    @axis_alias
    def logsumexp(self, dim, keepdim: bool = False) -> TensorBase:
        """log(sum(exp(x))) over ``dim`` (an int or a tuple of them), as
        ``torch.logsumexp``: the largest element plus the range-reduced log
        of the max-shifted sum (one max tournament, exp, one log). Within
        4e-4 + n e^-16 + 2 sqrt(n) 2^-16 over rows of n entries (each term
        below e^-16 counts as e^-16, and each is rounded to about a unit of
        2^-16, unbiased: 6e-3 at n = 16384; 4e-4 to about n = 512)."""
        dims = self._dims(dim)
        if self.dim() == 0:
            return self + 0.0
        rest = [d for d in range(self.dim()) if d not in dims]
        x = self.permute(*rest, *dims) if dims != list(range(len(rest), self.dim())) else self
        lead = [self.shape[d] for d in rest]
        x = x.reshape(*lead, math.prod(self.shape[d] for d in dims))  # not -1: lead may hold a 0
        if x.shape[-1] == 0:
            raise NotImplementedError("logsumexp over an empty dim (torch gives -inf)")
        out = fx.logsumexp(x, x.dim() - 1).reshape(lead)
        if keepdim:
            out = out.reshape([1 if d in dims else n for d, n in enumerate(self.shape)])
        return out

    @axis_alias
    def log_softmax(self, dim: int, dtype=None) -> TensorBase:
        """log_softmax over ``dim``: x - :meth:`logsumexp` (its bound,
        4e-4 + n e^-16 + 2 sqrt(n) 2^-16 over rows of n entries)."""
        check_dtype(dtype, "log_softmax")
        d = _norm_dim(dim, self.dim())
        if self.dim() == 0:
            return self - self
        if self.shape[d] == 0:
            return self + 0.0
        return fx.log_softmax(self, d)
