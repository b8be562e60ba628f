"""Checks around cryptgpu's optimisers: a saved state of the wrong layout,
and torch optimisers holding parameters that ``encrypt()`` replaced;
torch's state-dict hooks around their own ``state_dict``; and their copies
(:class:`Copyable`: ``copy.deepcopy``); the default ``grad_scale``."""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from . import _session

# torch's ValueError for an optimiser without parameters, and why a
# converted model's filter(requires_grad) gives one (a user probe)
EMPTY_PARAMS = (
    "optimizer got an empty parameter list (if they came from a converted cryptgpu "
    "model: it is in eval mode, where its parameters do not require grad; call "
    "model.train() before building the optimizer)"
)

# where warnings point past: this package and torch
_INSIDE = tuple(os.path.dirname(f) + os.sep for f in (__file__, torch.__file__))


def warn_duplicates(params: list) -> None:
    """torch's UserWarning for a parameter group that holds a parameter
    twice (until 2026-12-07 cryptgpu's optimisers were silent; each copy is
    updated in turn, as by torch's), pointing at the caller's line."""
    if len({id(p) for p in params}) == len(params):
        return
    frame, level = sys._getframe(1), 2  # (warn's stacklevel 1 is this function)
    while frame is not None and frame.f_code.co_filename.startswith(_INSIDE):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        "optimizer contains a parameter group with duplicate parameters; "
        "in future, this will cause an error; "
        "see github.com/pytorch/pytorch/issues/40967 for more information",
        stacklevel=level,
    )


def check_flags(name: str, foreach=None, fused=None, **refused) -> None:
    """torch's implementation flags: ``fused`` and ``foreach`` choose how
    torch computes the same step, so they are accepted and ignored (a
    fused=True torch accepts on CPU was refused until 2026-12-06), with
    torch's RuntimeError for both at once; those that change what a step
    means (``differentiable``, ``capturable``) are not provided."""
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    unsupported = [k for k, v in refused.items() if v]
    if unsupported:
        raise NotImplementedError(f"{name}({unsupported[0]}=True) is not provided")


def no_plain_trainables(name: str, params: list, shared: list) -> None:
    """Plaintext tensors in a group of shared parameters are not updated
    (a frozen one, which torch would not move either, is left out); one that
    requires grad would silently never train (until 2026-12-06): a TypeError."""
    ours = {id(p) for p in shared}
    plain = [p for p in params if id(p) not in ours and getattr(p, "requires_grad", False)]
    if shared and plain:
        raise TypeError(
            f"{name} was given shared parameters (SharedTensor) together with a torch "
            f"{type(plain[0]).__name__} that requires grad, which it would not train: one "
            "optimiser takes one kind (encrypt the whole model, or give the torch "
            "parameters to a torch optimiser)"
        )


def saved_state(opt, state, *keys) -> list:
    """``state[k]`` for each key of a state dict that ``opt.load_state_dict``
    is given: a torch optimiser's state dict (its ``state`` and
    ``param_groups`` with ``params``) or one of another optimiser raised a
    bare KeyError (a user probe); now a ValueError saying what it is."""
    if not isinstance(state, dict):
        raise TypeError(f"load_state_dict expects a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if not missing:
        return [state[k] for k in keys]
    name = type(opt).__name__
    if "state" in state and any("params" in g for g in state.get("param_groups", ())):
        raise ValueError(
            f"cryptgpu.optim.{name}.load_state_dict was given a torch.optim state dict: it "
            f"loads what a cryptgpu {name}'s state_dict() saved (its moments are shared); "
            "start from torch's hyperparameters instead (lr, momentum, ...)"
        )
    raise ValueError(
        f"cryptgpu.optim.{name}.load_state_dict: the saved state lacks {missing} (was it "
        "saved by another optimiser?)"
    )


def check_shapes(params, what: str, saved) -> None:
    """Refuse saved per-parameter state (``saved``: by parameter index, None
    where a parameter has none) of another shape than its parameter's, as
    SGD's momentum buffers were: Adam's, RMSprop's and Adagrad's moments
    of another model loaded in silence, and the next step broadcast them
    and changed the parameters' shapes (torch raises at that step)."""
    for p, v in zip(params, saved):
        if v is not None and tuple(v.shape) != tuple(p.shape):
            raise ValueError(
                f"a saved {what} of shape {tuple(v.shape)} does not fit a parameter of "
                f"shape {tuple(p.shape)}"
            )


def check_group_sizes(param_groups, saved_groups) -> None:
    """Refuse saved parameter groups other in number or size than the optimiser's
    (torch's ValueError): the hyperparameters went to other parameters than
    they were saved for. Files of earlier versions do not say the sizes."""
    if len(saved_groups) != len(param_groups):
        raise ValueError(
            f"the saved optimiser state has {len(saved_groups)} parameter groups, this "
            f"optimiser {len(param_groups)}"
        )
    for g, saved in zip(param_groups, saved_groups):
        if "params" in saved and len(saved["params"]) != len(g["params"]):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size "
                f"of optimizer's group ({len(saved['params'])} parameters saved, "
                f"{len(g['params'])} in this optimiser's group)"
            )


def _refuse_replaced_parameters(opt, args, kwargs) -> None:
    """A global step pre-hook on every torch optimiser: one built on a
    model's plaintext parameters before ``encrypt()`` holds tensors the
    model no longer uses and would train nothing, silently (torch's
    parameters keep their identity through ``model.to(...)``; shares
    cannot be those tensors)."""
    for group in opt.param_groups:
        for p in group["params"]:
            if getattr(p, "_replaced_by_encrypt", False):
                raise RuntimeError(
                    f"{type(opt).__name__} holds a parameter that the model replaced by its "
                    "shares in encrypt(): build the optimiser after encrypt(), on "
                    "model.parameters() (cryptgpu.optim.SGD or Adam)"
                )


register_optimizer_step_pre_hook(_refuse_replaced_parameters)


def state_hooks(cls) -> None:
    """``cls.state_dict`` and ``cls.load_state_dict``, where ``cls`` defines
    them, running the hooks of torch's ``register_state_dict_pre_hook``,
    ``register_state_dict_post_hook``, ``register_load_state_dict_pre_hook``
    and ``register_load_state_dict_post_hook`` as torch's own methods do
    (ours replace torch's, in whose bodies they ran: until 2026-12-06 they
    were accepted and never called). A post hook's or a load pre hook's
    result, when not None, replaces the state dict; once per call, also
    where a subclass's method calls its base's."""
    own = vars(cls)
    if "state_dict" in own and not hasattr(own["state_dict"], "hooked"):
        cls.state_dict = _hooked_save(own["state_dict"])
    if "load_state_dict" in own and not hasattr(own["load_state_dict"], "hooked"):
        cls.load_state_dict = _hooked_load(own["load_state_dict"])


def _outermost(method):
    """``method``, called with the hooks (``around``) only where no hooked
    method of the same name is running on the object already."""

    def wrap(around):
        @functools.wraps(method)
        def hooked(self, *args, **kwargs):
            flag = "_in_" + method.__name__
            if getattr(self, flag, False):
                return method(self, *args, **kwargs)
            setattr(self, flag, True)
            try:
                return around(self, *args, **kwargs)
            finally:
                setattr(self, flag, False)

        hooked.hooked = True
        return hooked

    return wrap


def _hooked_save(method):
    @_outermost(method)
    def state_dict(self, *args, **kwargs):  # (a subclass's own arguments pass)
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        out = method(self, *args, **kwargs)
        for hook in self._optimizer_state_dict_post_hooks.values():
            changed = hook(self, out)
            out = out if changed is None else changed
        return out

    return state_dict


def _hooked_load(method):
    @_outermost(method)
    def load_state_dict(self, state, *args, **kwargs):
        if isinstance(state, Mapping):  # torch's: hooks see a copy
            state = dict(state)
            for hook in self._optimizer_load_state_dict_pre_hooks.values():
                changed = hook(self, state)
                state = state if changed is None else changed
        method(self, state, *args, **kwargs)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    return load_state_dict


class _ByParam(list):
    """A table keyed by ``id(p)`` in a copied optimiser's state: its
    (parameter, value) pairs, so that the copy keys it by the copied
    parameters."""


class _Slots(list):
    """A dict of such tables (``_state``'s slots): its (name, table) pairs."""


# what torch's own copy leaves out too: the hooks, and an LR scheduler's
# wrapper of this optimiser's step (it calls the original through a weak
# reference: a copy holding it stepped the original, silently)
_HOOKS = tuple(
    f"_optimizer_{kind}_hooks"
    for kind in (
        "step_pre",
        "step_post",
        "state_dict_pre",
        "state_dict_post",
        "load_state_dict_pre",
        "load_state_dict_post",
    )
)
_NOT_COPIED = (*_HOOKS, "step", "_opt_called")


class Copyable:
    """``copy.deepcopy`` (and pickling's state) of a cryptgpu optimiser:
    every attribute, its per-parameter tables (momentum buffers, moments,
    step counts, kept by ``id(p)``) re-keyed by the copied parameters.
    Torch's ``Optimizer.__getstate__`` keeps only ``defaults``, ``state``
    and ``param_groups``: the copy had none of ours, and its step() and
    state_dict() raised AttributeError (until 2026-12-06). As torch's,
    the copy has no hooks of its own (torch's ``__setstate__`` starts
    them empty); copied together with its model (``deepcopy((model,
    opt))``) its parameters and state are the copied model's."""

    def __getstate__(self) -> dict:
        ids = {id(p): p for g in self.param_groups for p in g["params"]}
        return {k: _keyed_out(v, ids) for k, v in self.__dict__.items() if k not in _NOT_COPIED}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: _keyed_in(v) for k, v in state.items()})
        for name in _HOOKS:
            self.__dict__.setdefault(name, OrderedDict())


def _keyed_out(v, ids: dict):
    """A table keyed by parameter ids as :class:`_ByParam` (one level of
    nesting: ``_state``'s slots), anything else as it is."""
    if not isinstance(v, dict) or not v:
        return v
    if all(type(k) is int and k in ids for k in v):
        return _ByParam((ids[k], x) for k, x in v.items())
    if all(isinstance(x, dict) for x in v.values()):
        inner = {k: _keyed_out(x, ids) for k, x in v.items()}
        if any(isinstance(x, _ByParam) for x in inner.values()):
            return _Slots(inner.items())
    return v


def _keyed_in(v):
    """:func:`_keyed_out` undone, by the ids of the (copied) parameters."""
    if isinstance(v, _Slots):
        return {k: _keyed_in(x) for k, x in v}
    return {id(p): x for p, x in v} if isinstance(v, _ByParam) else v


def check_grad_scale(grad_scale, betas=None) -> int:
    """``grad_scale``, or for None the default: 2^8 up to f = 16 bits,
    2^(24 - f) above, so that the scaled second moment (g s)^2 / (1 - beta2)
    stays within the fixed-point range 2^(63 - 2f) for gradients up to about
    4 at every precision (2^8 at f = 20 overflowed from |g| = 0.35: an Adam
    weight at -1.5e6 after 100 steps of g = 1, a user probe); for an Adam
    ``beta2`` (RMSprop's alpha) above 0.999 (``betas``, read when the
    optimiser is built), smaller by sqrt(1e-3 / (1 - beta2)),
    rounded up to a power of two, for the same top (2^8 at beta2 = 0.9999
    overflowed from |g| = 1.3: a weight at -1.5e8 after 3,200 steps of
    g = 2.5, until 2026-12-06). A value that is not a power of two is
    refused (ValueError): the scaling must be an exact integer factor."""
    if grad_scale is None:
        session = _session._ctx.session
        k = min(8, 24 - (16 if session is None else session.precision_bits))
        try:
            b2 = float(betas[1]) if betas is not None else 0.999
        except (TypeError, ValueError, IndexError):  # None, or refused by the optimiser
            b2 = 0.999
        if 0.999 < b2 < 1.0:
            k -= math.ceil(math.log2(math.sqrt(1e-3 / (1.0 - b2))) - 1e-9)
        return 2 ** max(k, 0)
    # a whole float (4.0, 2.0**2) is the integer it equals; a bool is not a scale
    whole = isinstance(grad_scale, float) and grad_scale.is_integer() and grad_scale >= 1
    value = int(grad_scale) if whole else grad_scale
    if isinstance(grad_scale, bool) or not (
        isinstance(value, int) and value >= 1 and value & (value - 1) == 0
    ):
        raise ValueError(f"grad_scale must be a power of two, got {grad_scale!r}")
    return value
