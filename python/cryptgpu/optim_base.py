"""The base of cryptgpu's optimisers, :class:`Optimizer` (CrypTen's
``crypten.optim.Optimizer``, which a user's own optimiser subclasses):
torch's ``Optimizer`` interface over shared parameters."""

from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np
import torch

from . import _session, optim_checks
from . import autograd as ag
from .optim_checks import EMPTY_PARAMS, check_group_sizes, no_plain_trainables, warn_duplicates
from .public_factors import products_only
from .tensor import SharedTensor
from .tensor_base import SecretValueError


class Optimizer(optim_checks.Copyable, torch.optim.Optimizer):
    """The base class of cryptgpu's optimisers and of your own, as CrypTen's
    ``crypten.optim.Optimizer``: ``Optimizer(params, defaults)`` with
    ``params`` the shared parameters (or dicts of parameter groups) and
    ``defaults`` the hyperparameters a group does not set. A subclass
    defines ``step(closure=None)`` over ``self.param_groups`` (each group's
    ``"params"`` and hyperparameters), reading ``p.grad`` and updating
    ``p`` in place (``p.sub_(...)``); its step runs as cryptgpu's own:
    without recording (``no_grad``; a ``closure`` it is given records),
    with exact truncation, and with ``x * (1/k)`` a product. Per-parameter
    state goes in ``self.state[p]`` (or CrypTen's ``self.state[id(p)]``:
    the same entry); :meth:`zero_grad`, :meth:`state_dict` and
    :meth:`load_state_dict` are provided.

    State that accumulates gradients must be shared: start it with
    ``p.clone().zero_()`` (or CrypTen's
    ``cryptgpu.cryptensor(torch.zeros(p.shape))``), not with
    torch's idiom ``torch.zeros_like(p)`` / ``p.new_zeros(p.shape)``: of a
    SharedTensor those are public torch tensors (as everywhere: sizes and
    constants are public), and a torch tensor cannot hold a secret value,
    so ``state.add_(p.grad)`` raises SecretValueError (naming these forms
    when it is raised inside a step).

    What SGD and Adam share: torch's ``Optimizer`` interface over shared
    parameters (``param_groups`` with per-group hyperparameters, so
    ``torch.optim.lr_scheduler`` and ``for g in opt.param_groups: g["lr"] =
    ...`` work; ``add_param_group``; ``zero_grad``; ``step(closure)``), and
    the walk over the gradients (with L2 weight decay) that every step
    makes, inside no_grad and as training work (so "auto" truncation is
    exact). Per-parameter state lives in this object (by parameter), not in
    torch's ``state``: shares are not torch tensors."""

    # hyperparameters saved at the top level of state_dict (one-group form)
    _LEGACY: tuple = ()

    def __init__(self, params, defaults: dict, name: str | None = None):
        self._name = name or type(self).__name__
        if isinstance(params, (SharedTensor, torch.Tensor)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of "
                f"SharedTensors or dicts, but got {type(params).__name__}"
            )
        if not isinstance(defaults, dict):
            raise TypeError(f"defaults must be a dict, got {type(defaults).__name__}")
        params = list(params)
        if not params:  # torch's ValueError, with the usual cause
            raise ValueError(EMPTY_PARAMS)
        super().__init__(params, defaults)
        self.state = _ParamState(self.state)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        optim_checks.state_hooks(cls)  # torch's state-dict hooks around ours
        if "step" in vars(cls) and cls._update is Optimizer._update:
            cls.step = _stepping(vars(cls)["step"])  # a user's optimiser's own step

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.state = _ParamState(self.__dict__.get("state") or {})

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of shared parameters with its own hyperparameters
        (the rest from the optimiser's defaults), as torch's."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        ps = param_group.get("params")
        ps = [ps] if isinstance(ps, (SharedTensor, torch.Tensor)) else list(ps or [])
        ps = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in ps]
        shared = [p for p in ps if isinstance(p, SharedTensor)]
        no_plain_trainables(self._name, ps, shared)
        if not shared:
            raise ValueError(
                f"{self._name} got no SharedTensor parameters: call model.encrypt() first"
            )
        group = {**self.defaults, **param_group, "params": shared}
        self._check(group)
        warn_duplicates(shared)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in shared):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check(self, group: dict) -> None:
        """Refuse a group's hyperparameters as torch does (ValueError)."""
        for key in ("lr", "weight_decay"):
            if key not in group:  # (a user's optimiser may have neither)
                continue
            v = group[key]
            if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.requires_grad:
                v = group[key] = float(v)  # torch takes a one-element tensor lr
            if isinstance(v, (np.floating, np.integer)):  # np.float32(0.5), as torch
                v = group[key] = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{key} must be a number, got {type(v).__name__}")
            if v < 0:
                raise ValueError(f"Invalid {'learning rate' if key == 'lr' else key}: {v}")

    @property
    def params(self) -> list:
        """Every shared parameter, group by group."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self) -> float:
        """The first group's learning rate (setting it sets every group's)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.param_groups:
            g["lr"] = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (``set_to_none=False``:
        zero them in place, as torch, so that a parameter the next backward
        does not reach still takes its momentum and weight decay step)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.zero_()

    def step(self, closure=None):
        """One update of each parameter with a gradient; ``closure`` (torch's) first."""
        loss = None
        if closure is not None:
            # recording on, ours and torch's, as torch's step (its torch.enable_grad()
            # has a Python __exit__ that a Ctrl-C could interrupt: autograd.torch_grad)
            with ag.enable_grad():
                loss = closure()
        with products_only():  # lr g stays a product (tensor_arith)
            for group in self.param_groups:
                self._update(group)
        return loss

    def _update(self, group: dict) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must define step(closure=None), as torch's and CrypTen's "
            "optimisers do"
        )

    def state_dict(self) -> dict:
        """``{"state", "param_groups"}`` as torch's: per-parameter state by
        parameter index, each group's hyperparameters and its parameters'
        indices (a SharedTensor in it is saved by :func:`cryptgpu.save`)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        state = {index[k]: v for k, v in self.state.items() if k in index}
        return {"state": state, "param_groups": self._settings()["param_groups"]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved, for the same parameters in
        the same order (torch's rules: the groups' sizes must match)."""
        self._load_settings(state)
        params = self.params
        saved = state.get("state", {})
        if any(not (isinstance(i, int) and 0 <= i < len(params)) for i in saved):
            raise ValueError("the saved optimiser state names parameters this optimiser lacks")
        self.state = _ParamState({id(params[i]): v for i, v in saved.items()})

    def _settings(self) -> dict:
        """Each group's hyperparameters (``param_groups``, its parameters
        by index, as torch's) and, at the top level, the first group's under
        the names of one-group files of earlier versions (``_LEGACY``): what
        state_dict saves besides the per-parameter state."""
        groups, n = [], 0
        for g in self.param_groups:
            groups.append({k: v for k, v in g.items() if k != "params"})
            groups[-1]["params"] = list(range(n, n + len(g["params"])))
            n += len(g["params"])
        return {**{k: groups[0][k] for k in self._LEGACY}, "param_groups": groups}

    def _load_settings(self, state: dict) -> None:
        groups = state.get("param_groups")
        if groups is None:  # a file of an earlier version: one group
            groups = [{k: state[k] for k in self._LEGACY}]
        check_group_sizes(self.param_groups, groups)
        for g, saved in zip(self.param_groups, groups):
            g.update(
                {k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k != "params"}
            )


# checkpoint.py's name
_Optimizer = Optimizer


class _ParamState(defaultdict):
    """``Optimizer.state``: per-parameter dicts, where ``state[p]`` and
    CrypTen's ``state[id(p)]`` are the same entry (kept by ``id(p)``)."""

    def __init__(self, items=()):
        super().__init__(dict, items)

    def __reduce__(self):
        return (type(self), (dict(self),))

    @staticmethod
    def _key(k):
        return id(k) if isinstance(k, SharedTensor) else k

    def __getitem__(self, k):
        return super().__getitem__(self._key(k))

    def __setitem__(self, k, v) -> None:
        super().__setitem__(self._key(k), v)

    def __delitem__(self, k) -> None:
        super().__delitem__(self._key(k))

    def __contains__(self, k) -> bool:
        return super().__contains__(self._key(k))

    def get(self, k, default=None):
        """``state.get(p)`` or ``state.get(id(p))``."""
        return super().get(self._key(k), default)


def _stepping(step):
    """A user's ``step``, run as cryptgpu's optimisers run theirs: not
    recorded (an in-place update of a parameter that requires grad is
    allowed), as training work (exact truncation), with ``x * (1/k)`` a
    product; a closure it is given records (torch's ``enable_grad``)."""

    @functools.wraps(step)
    def wrapped(self, *args, **kwargs):
        if args and args[0] is not None:
            args = (_recording(args[0]), *args[1:])
        if kwargs.get("closure") is not None:
            kwargs["closure"] = _recording(kwargs["closure"])
        try:
            with ag.no_grad(), _session.training_work(), products_only():
                return step(self, *args, **kwargs)
        except SecretValueError as e:  # torch's state idiom (probe OH): the form that works
            if "a torch tensor cannot hold a secret value" not in str(e):
                raise
            raise SecretValueError(
                f"{e}; in an optimiser's step, torch.zeros_like(p) and p.new_zeros(...) of a "
                "SharedTensor parameter are public torch tensors: start state that adds "
                "gradients as a shared zero, p.clone().zero_() or "
                "cryptgpu.cryptensor(torch.zeros(p.shape))"
            ).with_traceback(e.__traceback__) from None  # (the user's step line: review s29)

    return wrapped


def _recording(closure):
    @functools.wraps(closure)
    def run():
        with ag.enable_grad():
            return closure()

    return run


def threshold_grads(params, t) -> dict:
    """CrypTen's ``grad_threshold``: ``{id(p): g}`` for each shared parameter
    with a gradient, g its gradient with the elements of magnitude at least
    ``t`` set to 0 (CrypTen's ``g * (g^2 < t^2)``; here one batched
    comparison of [g > -t] and [g < t] and one product), ``p.grad`` itself
    left as it is."""
    held = [p for p in params if isinstance(p, SharedTensor) and p.grad is not None]
    if not held:
        return {}
    from .tensor import cat

    with ag.no_grad(), _session.training_work():
        flat = cat([p.grad.reshape(-1) for p in held])
        # [g > -t] and [g < t] in one comparison; both hold where |g| < t
        above, below = (cat([flat + t, flat.neg() + t]) > 0).split(flat.numel())
        kept = flat * (above + below - 1.0)
    out, at = {}, 0
    for p in held:
        out[id(p)] = kept[at : at + p.grad.numel()].reshape(tuple(p.grad.shape))
        at += p.grad.numel()
    return out


def check_threshold(grad_threshold):
    """``grad_threshold`` as a positive float, or None."""
    if grad_threshold is None:
        return None
    if isinstance(grad_threshold, bool) or not isinstance(
        grad_threshold, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"grad_threshold must be a number, got {type(grad_threshold).__name__}")
    if not float(grad_threshold) > 0:
        raise ValueError(f"grad_threshold must be positive, got {grad_threshold!r}")
    return float(grad_threshold)
