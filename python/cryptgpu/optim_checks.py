"""Checks around cryptgpu's optimisers: a saved state of the wrong layout,
and torch optimisers holding parameters that ``encrypt()`` replaced."""

from __future__ import annotations

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
