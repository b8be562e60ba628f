"""Optimisers for private training."""

from __future__ import annotations

import numpy as np

from . import _session, functions
from . import autograd as ag
from .tensor import SharedTensor


class _Optimizer:
    """What SGD and Adam share: the shared parameters, zero_grad, and the
    walk over the gradients (with L2 weight decay) that every step makes,
    inside no_grad and as training work (so "auto" truncation is exact)."""

    def __init__(self, params, weight_decay: float, name: str):
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        self.params = [p for p in params if isinstance(p, SharedTensor)]
        if not self.params:
            raise ValueError(f"{name} got no SharedTensor parameters: call model.encrypt() first")
        self.wd = weight_decay

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter."""
        for p in self.params:
            p.grad = None

    def _gradients(self):
        """(parameter, gradient + weight_decay * parameter) for each parameter
        that has a gradient; run the update inside the caller's loop."""
        with ag.no_grad(), _session.training_work():
            for p in self.params:
                if p.grad is None:
                    continue
                g = p.grad
                if self.wd:
                    g = g + p * self.wd
                yield p, g


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and
    weight decay, as ``torch.optim.SGD``: g = grad + wd p;
    v = mu v + (1 - dampening) g (v = g at the first step); then
    g = g + mu v with Nesterov, else g = v; p <- p - lr g. Each update
    multiplies by public constants (one truncation each)."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0 <= dampening <= 1:
            raise ValueError(f"dampening must be in [0, 1], got {dampening}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            # torch's rule
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, weight_decay, "SGD")
        self.dampening, self.nesterov = dampening, bool(nesterov)
        self.lr, self.momentum = lr, momentum
        self._buf: dict[int, SharedTensor] = {}

    def state_dict(self) -> dict:
        """Hyperparameters and momentum buffers (by parameter index), as
        ``torch.optim.Optimizer.state_dict``; save it with :func:`cryptgpu.save`."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "weight_decay": self.wd,
            "nesterov": self.nesterov,
            "momentum_buffers": [self._buf.get(id(p)) for p in self.params],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (for the same parameters, in
        the same order)."""
        bufs = state["momentum_buffers"]
        if len(bufs) != len(self.params):
            raise ValueError(
                f"the saved optimiser state has {len(bufs)} momentum buffers for "
                f"{len(self.params)} parameters"
            )
        for p, b in zip(self.params, bufs):
            if b is not None and tuple(b.shape) != tuple(p.shape):
                raise ValueError(
                    f"a saved momentum buffer of shape {tuple(b.shape)} does not fit a "
                    f"parameter of shape {tuple(p.shape)}"
                )
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.dampening, self.wd = state["dampening"], state["weight_decay"]
        self.nesterov = state["nesterov"]
        self._buf = {id(p): b for p, b in zip(self.params, bufs) if b is not None}

    def step(self) -> None:
        """One update: p <- p - lr (g + weight_decay p), with momentum when set."""
        for p, g in self._gradients():
            if self.momentum:
                prev = self._buf.get(id(p))
                if prev is None:
                    v = g
                elif self.dampening:
                    v = prev * self.momentum + g * (1 - self.dampening)
                else:
                    v = prev * self.momentum + g
                self._buf[id(p)] = v
                g = g + v * self.momentum if self.nesterov else v
            new = p - g * self.lr
            p._t = new._t  # update in place: modules keep the same object


class Adam(_Optimizer):
    """Adam (Kingma & Ba) with torch.optim.Adam's rules and defaults (bias
    correction, L2 ``weight_decay`` added to the gradient; ``amsgrad`` and
    ``maximize`` are not provided), on shares.

    Fixed point cannot hold Adam's second moment directly: a gradient of
    1e-3 squares to 1e-6, below the 2^-16 resolution. The update
    m / sqrt(v) is invariant to scaling the gradient, so each step works on
    g * ``grad_scale`` (a public power of two, default 2^8), keeps the second
    moment without its (1 - beta2) factor (w = beta2 w + g^2, which has no
    small factor), and computes m / sqrt(w) with
    :func:`cryptgpu.functions.ratio_inv_sqrt`, a range-reduced inverse square
    root accurate over 2^-14 .. 2^30. What that bounds, with the default
    scale: per-element gradients between about 1e-4 and 4 in magnitude are
    handled like torch's (within 5% of the step at 1e-4, 0.5% from 3e-4);
    smaller ones get a smaller step than torch's (the denominator has a
    floor of 2^-14 in scaled units, 4 units of the encoding, which plays
    the part of eps: with 2^-10 a gradient of 1.7e-4 got 0.81 of torch's
    step), and larger ones overflow the second moment (lower
    ``grad_scale`` for them). Each step costs, per parameter element, one
    batched comparison of 21 thresholds and about 60 products.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        grad_scale: int = 2**8,
    ):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        b1, b2 = betas
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {b1}")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {b2}")
        if amsgrad:
            raise NotImplementedError("Adam(amsgrad=True) is not provided")
        if not (
            isinstance(grad_scale, int) and grad_scale >= 1 and grad_scale & (grad_scale - 1) == 0
        ):
            raise ValueError(f"grad_scale must be a power of two, got {grad_scale!r}")
        super().__init__(params, weight_decay, "Adam")
        self.lr, self.betas, self.eps = lr, (b1, b2), eps
        self.grad_scale = grad_scale
        self.t = 0
        self._m: dict[int, SharedTensor] = {}
        self._w: dict[int, SharedTensor] = {}

    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        b1, b2 = self.betas
        self.t += 1
        t, s = self.t, self.grad_scale
        c1 = 1.0 / (1.0 - b1**t)  # bias corrections
        c2 = (1.0 - b2) / (1.0 - b2**t)  # v_hat = c2 * w / s^2
        # torch: m_hat / (sqrt(v_hat) + eps); here m_hat / sqrt(v_hat + eps^2),
        # with the floor 2^-14 on the scaled w: the same wherever v_hat >> eps^2.
        floor = max((s * self.eps) ** 2 / c2, 2.0**-14)
        for p, g in self._gradients():
            g = g * np.int64(s)  # exact: an integer factor
            m, w = self._m.get(id(p)), self._w.get(id(p))
            m = g * (1 - b1) if m is None else m * b1 + g * (1 - b1)
            w = g * g if w is None else w * b2 + g * g
            self._m[id(p)], self._w[id(p)] = m, w
            # m_hat / sqrt(v_hat) = (c1 / sqrt(c2)) m / sqrt(w)
            r = functions.ratio_inv_sqrt(m, w + floor, lo_exp=-14)
            new = p - r * (self.lr * c1 / np.sqrt(c2))
            p._t = new._t

    def state_dict(self) -> dict:
        """Hyperparameters, the step count and both moments (by parameter index)."""
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.wd,
            "grad_scale": self.grad_scale,
            "step": self.t,
            "exp_avg": [self._m.get(id(p)) for p in self.params],
            "exp_avg_sq_unscaled": [self._w.get(id(p)) for p in self.params],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved, for the same parameters in order."""
        ms, ws = state["exp_avg"], state["exp_avg_sq_unscaled"]
        if len(ms) != len(self.params) or len(ws) != len(self.params):
            raise ValueError(
                f"the saved optimiser state has {len(ms)} moments for {len(self.params)} parameters"
            )
        self.lr, self.betas, self.eps = state["lr"], tuple(state["betas"]), state["eps"]
        self.wd, self.grad_scale, self.t = state["weight_decay"], state["grad_scale"], state["step"]
        self._m = {id(p): m for p, m in zip(self.params, ms) if m is not None}
        self._w = {id(p): w for p, w in zip(self.params, ws) if w is not None}
