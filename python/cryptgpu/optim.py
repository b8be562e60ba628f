"""Optimisers for private training."""

from __future__ import annotations

from . import _session
from . import autograd as ag
from .tensor import SharedTensor


class SGD:
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
        self.dampening, self.nesterov = dampening, bool(nesterov)
        self.params = [p for p in params if isinstance(p, SharedTensor)]
        if not self.params:
            raise ValueError("SGD got no SharedTensor parameters: call model.encrypt() first")
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
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

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update: p <- p - lr (g + weight_decay p), with momentum when set."""
        with ag.no_grad(), _session.training_work():
            for p in self.params:
                if p.grad is None:
                    continue
                g = p.grad
                if self.wd:
                    g = g + p * self.wd
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
