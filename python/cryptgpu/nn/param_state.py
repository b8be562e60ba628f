"""A module's parameters as torch's users expect them (module.py's helpers).

- :class:`PlainParameter`: the class of a module's own plaintext parameter
  (converted, fresh or decrypted), so that ``p.requires_grad = False`` is
  the user's freeze in any mode: in eval mode such a parameter already
  reads False (CrypTen's convention), and torch's own setter records
  nothing (until 2026-12-07 a freeze set there was lost at ``encrypt()``
  and the layer trained). It deep-copies without ``.grad``, as
  ``torch.nn.Parameter``.
- :func:`inside_training`: whether a module sits inside one in training
  mode (``model[1].eval()`` in a training model changes no
  ``requires_grad``, as torch's).
- the state-dict and loading helpers of :class:`cryptgpu.nn.Module`.
"""

from __future__ import annotations

import copy
import threading
import weakref

import torch

from ..tensor import SharedTensor

_SET_RG = torch._C.TensorBase.requires_grad_
_RG = torch._C.TensorBase.requires_grad


class PlainParameter(torch.nn.Parameter):
    """A module's own plaintext parameter: a ``torch.nn.Parameter`` (as
    torch's layers hold; ``torch.testing.assert_close`` pairs it with one)
    whose ``requires_grad`` setters also record the user's choice
    (``_frozen``), which ``train()``, ``encrypt()`` and ``decrypt()`` keep.
    Operations on it give plain tensors."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def requires_grad(self) -> bool:
        """torch's flag."""
        return _RG.__get__(self)

    @requires_grad.setter
    def requires_grad(self, flag) -> None:
        _RG.__set__(self, flag)  # torch's checks and errors first
        self._frozen = not flag

    def requires_grad_(self, requires_grad: bool = True) -> PlainParameter:
        """torch's, recording a freeze (or an unfreeze) that modes keep."""
        _SET_RG(self, requires_grad)
        self._frozen = not requires_grad
        return self

    def __deepcopy__(self, memo) -> PlainParameter:
        # as torch.nn.Parameter's: the value and requires_grad, not .grad
        if id(self) in memo:
            return memo[id(self)]
        out = own(self.detach().clone(memory_format=torch.preserve_format))
        _SET_RG(out, self.requires_grad)
        out.__dict__.update(copy.deepcopy(self.__dict__, memo))
        memo[id(self)] = out
        return out

    def __reduce_ex__(self, protocol):
        # pickled as a plain tensor with its flags (torch.load with
        # weights_only reads it); Module.__setstate__ makes it one of ours
        plain = self.detach()
        _SET_RG(plain, self.requires_grad)
        plain.__dict__.update(self.__dict__)
        return plain.__reduce_ex__(protocol)

    def __repr__(self, *, tensor_contents=None) -> str:
        plain = self.detach()
        _SET_RG(plain, self.requires_grad)
        return repr(plain)


def own(v):
    """``v`` (a plaintext tensor the module owns) as a PlainParameter, in
    place: the same object (a tied weight stays one tensor)."""
    if type(v) is torch.Tensor:
        v.__class__ = PlainParameter
    return v


def set_rg(v, flag: bool) -> None:
    """Set a plaintext parameter's requires_grad for a mode (not the user's
    freeze)."""
    _SET_RG(v, flag)


# every live module by id, for inside_training
_LIVE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def note(m) -> None:
    """Remember a new module (Module.__new__: also a copy's and an unpickled one's)."""
    with _LOCK:
        _LIVE[id(m)] = m


def inside_training(m) -> bool:
    """Whether a live module in training mode holds ``m`` (at any depth)."""
    with _LOCK:
        live = list(_LIVE.values())
    parents: dict = {}
    for p in live:
        for c in (p.__dict__.get("_modules") or {}).values():
            if c is not None and c is not p:
                parents.setdefault(id(c), []).append(p)
    seen, todo = {id(m)}, [m]
    while todo:
        for p in parents.get(id(todo.pop()), ()):
            if p.training:
                return True
            if id(p) not in seen:
                seen.add(id(p))
                todo.append(p)
    return False


class Counter:
    """BatchNorm's ``num_batches_tracked`` (a Python int on the layer) as a
    state entry: a 0-d int64 tensor, as in torch's state_dict."""

    def __init__(self, m) -> None:
        self.m = m

    def __getitem__(self, key: str) -> torch.Tensor:
        return torch.tensor(self.m.num_batches_tracked, dtype=torch.int64)

    def __setitem__(self, key: str, value) -> None:
        self.m.num_batches_tracked = int(value)


def owned_plain(v) -> bool:
    """A plaintext parameter the module made (a converted, fresh or decrypted
    copy), not a torch Parameter passed in (``Linear(t.weight, t.bias)``)."""
    plain = isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter)
    plain = plain or isinstance(v, PlainParameter)
    return plain and v.is_leaf and v.is_floating_point()


def copy_of(v: SharedTensor) -> SharedTensor:
    """A loaded SharedTensor as the model's own: a copy, out of autograd
    (one of an earlier session refused)."""
    v._s()
    return v.detach().clone()


def as_param(t: SharedTensor, training: bool, frozen: bool) -> SharedTensor:
    """``t`` as a module's parameter: requiring grad in training mode unless
    frozen (a torch parameter with requires_grad=False, or one the user set
    so), as torch's ``train()`` leaves a frozen parameter frozen."""
    t._frozen = frozen
    t._rg = training and not frozen
    return t


_INSIDE = threading.local()


def register_inside(module, name: str, value) -> None:
    """``module.register_parameter(name, value)`` made by a conversion
    (aliases.py, tracing.py): a torch model's parameter named as an
    attribute of cryptgpu's class (``kind``, ``encrypt``) converts, as it
    did before torch's name checks (review s29 S2-b); the checks stay for
    the user's own calls."""
    was, _INSIDE.on = getattr(_INSIDE, "on", False), True
    try:
        module.register_parameter(name, value)
    finally:
        _INSIDE.on = was


def check_entry(module, name, what: str, taken: bool = True) -> None:
    """torch's checks of a name given to ``register_parameter`` /
    ``register_module`` / ``add_module`` (``what``: "parameter" or
    "module"): TypeError for a name that is not a string, KeyError for
    "a.b", "" and (``taken``) an attribute the module already has that is
    not its own parameter or child (``forward``); until 2026-12-07
    ``register_parameter`` took them all and ``state_dict()`` failed later
    (probe OH)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name should be a string. Got {torch.typename(name)}")
    if "." in name:
        raise KeyError(f'{what} name can\'t contain ".", got: {name}')
    if name == "":
        raise KeyError(f'{what} name can\'t be empty string ""')
    d = module.__dict__
    mine = name in d.get("_params" if what == "parameter" else "_modules", ())
    other = name in d.get("_modules" if what == "parameter" else "_params", ())
    # (until the 30th session a child's or a buffer's name was taken over:
    # register_parameter("fc", p) dropped the child ``fc``; torch: KeyError)
    if (
        taken
        and not mine
        and not getattr(_INSIDE, "on", False)
        and (other or name in d.get("_buffers", ()) or name in d or hasattr(type(module), name))
    ):
        raise KeyError(f"attribute '{name}' already exists")


def check_param_value(name: str, value) -> None:
    """torch's TypeError for a parameter that is not one (a float): a
    torch tensor or Parameter, a SharedTensor or None is taken."""
    if value is not None and not isinstance(value, (torch.Tensor, SharedTensor)):
        raise TypeError(
            f"cannot assign '{torch.typename(value)}' object to parameter '{name}' "
            "(torch.nn.Parameter, a tensor, a SharedTensor or None required)"
        )


def drop_entry(d: dict, name: str, *tables: str) -> None:
    """Remove ``name`` from the instance dict and the given tables: an
    assignment replaces what had the name, as torch's ``__setattr__``."""
    d.pop(name, None)
    for t in tables:
        if name in (d.get(t) or ()):
            del d[t][name]
            d.get("_transient", set()).discard(name)


def refuse_over_tensor(module, name: str, value=None) -> None:
    """torch's refusals, outside a conversion's own calls: ``add_module``
    over ``module``'s own parameter or buffer (KeyError), and a module
    ``value`` assigned over a parameter (TypeError); until the thirtieth
    session both replaced it, leaving a buffer and a child's parameters
    under one name in ``state_dict()`` (a review)."""
    d = module.__dict__
    if getattr(_INSIDE, "on", False):
        return
    if value is not None:
        if name in d.get("_params", ()):
            raise TypeError(
                f"cannot assign '{torch.typename(value)}' as parameter '{name}' "
                "(torch.nn.Parameter or None expected)"
            )
    elif name in d.get("_params", ()) or name in d.get("_buffers", ()):
        raise KeyError(f"attribute '{name}' already exists")
