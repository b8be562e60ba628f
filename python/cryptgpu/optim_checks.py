"""Checks around cryptgpu's optimisers: a saved state of the wrong layout,
and torch optimisers holding parameters that ``encrypt()`` replaced; and
torch's state-dict hooks around their own ``state_dict``."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from torch.optim.optimizer import register_optimizer_step_pre_hook


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
