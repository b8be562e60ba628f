"""torch's own optimisers given shared parameters.

``torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)`` on a private
model, the PyTorch habit, failed with torch's "optimizer can only optimize
Tensors, but one of the params is cryptgpu.tensor.SharedTensor", which did
not point to :mod:`cryptgpu.optim` (a user probe). When cryptgpu is
imported, two things are installed in torch (once; a reload replaces them):

- ``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and ``Adagrad``
  get a ``__new__``. Called on the class itself with shared parameters (a
  list or a generator of SharedTensors, or parameter-group dicts of them),
  it returns ``cryptgpu.optim``'s class of the same name built with the
  same arguments: the object *is* a ``cryptgpu.optim.SGD`` (``isinstance(opt,
  torch.optim.SGD)`` is False), with its steps, ``state_dict`` and
  checkpoints, and ``torch.optim.lr_scheduler`` works on it as on any
  cryptgpu optimiser. torch's ``__init__`` is not run for it (Python runs
  ``__init__`` only on an instance of the class called). To know what it
  was given, ``__new__`` reads a generator (or a group's generator, which
  torch's ``add_param_group`` lists in the dict itself anyway); when it
  holds torch tensors, the list read is what torch's ``__init__`` then
  takes in its place (kept by instance until ``Optimizer.__init__``), so
  torch's optimiser is built on the same parameters as before (one
  difference: a generator is read before torch's checks of the other
  arguments, so a refused ``lr`` leaves it read). Lists, tuples and sets
  are only looked at. A subclass (a user's ``class
  MySGD(torch.optim.SGD)``) and ``copy``/``pickle`` (``__new__(cls)``
  without arguments) get ``object.__new__`` without anything read.
- ``torch.optim.Optimizer.__init__`` is wrapped: besides taking that list,
  an optimiser that adds its groups with torch's own ``add_param_group``
  (every torch optimiser, a user's subclass of one) and is given a shared
  parameter raises a TypeError that names what works (torch's would say
  "can only optimize Tensors"): LBFGS, NAdam, RAdam, Adamax, ASGD, Rprop,
  SparseAdam, Adadelta..., a user's subclass of torch.optim.SGD (its steps
  are torch's, on torch tensors: subclass cryptgpu.optim.SGD instead). A
  generator is listed there as torch's ``__init__`` lists it next.
  Optimisers with their own ``add_param_group`` (cryptgpu's) pass through.

Shared parameters mixed with torch tensors (or anything else) in one of
these optimisers are refused (TypeError): torch refused the shared ones,
and cryptgpu's optimisers would keep only the shared ones, training the
others silently not at all.
"""

from __future__ import annotations

import functools
import os
import weakref

import torch

from . import optim, optim_checks
from .tensor import SharedTensor

_NAMES = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
_OURS = {getattr(torch.optim, n): getattr(optim, n) for n in _NAMES}
_SUPPORTED = (
    "torch.optim.SGD, Adam, AdamW, RMSprop and Adagrad given shared parameters build "
    "cryptgpu.optim's SGD, Adam, AdamW, RMSprop and Adagrad"
)

_PACKAGE = os.path.dirname(__file__) + os.sep

# a generator that __new__ read, and the list read, by the torch optimiser built on them
_READ: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _members(params) -> tuple:
    """(what to pass on in place of ``params``, its members): ``params``
    itself unless it is an iterator (a generator), which is read into a list."""
    if isinstance(params, (torch.Tensor, SharedTensor)):
        return params, [params]
    try:
        it = iter(params)
    except TypeError:
        return params, []
    if it is params:
        params = list(it)
    return params, params


def _read(params) -> tuple:
    """(what to pass on in place of ``params``, whether a shared parameter is
    among them, the first other member or None); each group dict's iterator
    of parameters is listed in the dict, as torch's add_param_group does."""
    params, items = _members(params)
    shared, other = False, None
    for item in items:
        if isinstance(item, dict) and "params" in item:
            item["params"], ps = _members(item["params"])
        else:
            ps = [item]
        for p in ps:
            if isinstance(p, tuple) and len(p) == 2:  # (name, parameter), as torch takes
                p = p[1]
            if isinstance(p, SharedTensor):
                shared = True
            elif other is None and not (isinstance(p, torch.Tensor) and not p.requires_grad):
                other = p  # (a frozen torch tensor is left out, as cryptgpu.optim does)
    return params, shared, other


def _empty_private(given, params) -> bool:
    """Whether ``given`` was a cryptgpu model's ``parameters()`` (or
    ``named_parameters()``), or ``filter(...)`` of one, that held nothing:
    ``filter(lambda p: p.requires_grad, model.parameters())`` of a model
    in eval mode, as from_pytorch returns it (torch's bare "empty parameter
    list" did not say why: a user probe)."""
    if not isinstance(params, list) or params:
        return False
    if isinstance(given, filter):
        given = given.__reduce__()[1][1]  # (filter, (function, iterator))
    code = getattr(given, "gi_code", None)
    return code is not None and code.co_filename.startswith(_PACKAGE)


def _name(cls) -> str:
    module = "torch.optim" if cls.__module__.startswith("torch.optim") else cls.__module__
    return f"{module}.{cls.__qualname__}"


def _refusal(cls, other) -> TypeError:
    name = _name(cls)
    if other is not None:
        return TypeError(
            f"{name} was given shared parameters (SharedTensor) together with a "
            f"{torch.typename(other)}: one optimiser takes one kind (encrypt the whole model, "
            f"or build one optimiser for each kind). {_SUPPORTED}."
        )
    # the nearest: AdamW subclasses Adam in torch
    base = next((t for t in cls.__mro__[1:] if t in _OURS), None)
    if base is not None:
        return TypeError(
            f"{name} subclasses {_name(base)}, whose steps work on torch tensors, and cannot "
            f"optimise shared parameters (SharedTensor): subclass "
            f"cryptgpu.optim.{base.__name__} instead. {_SUPPORTED}."
        )
    return TypeError(
        f"{name} cannot optimise shared parameters (SharedTensor): it has no private "
        f"counterpart. {_SUPPORTED}."
    )


def _new_for(torch_cls):
    """The ``__new__`` of ``torch_cls``: cryptgpu's optimiser for shared parameters."""
    ours = _OURS[torch_cls]

    def __new__(cls, *args, **kwargs):
        if cls is not torch_cls or not (args or "params" in kwargs):
            return object.__new__(cls)  # a subclass; copy and pickle's __new__(cls)
        given = args[0] if args else kwargs["params"]
        params, shared, other = _read(given)
        if shared and other is not None:
            raise _refusal(cls, other)
        if not shared and _empty_private(given, params):
            raise ValueError(optim_checks.EMPTY_PARAMS)
        if shared:
            rest = {k: v for k, v in kwargs.items() if k != "params"}
            return ours(params, *args[1:], **rest)
        obj = object.__new__(cls)
        if params is not given:  # a generator read here: torch's __init__ takes the list
            _READ[obj] = (given, params)
        return obj

    __new__.__qualname__ = f"{torch_cls.__qualname__}.__new__"
    __new__.__wrapped__ = torch_cls.__init__  # inspect.signature(torch.optim.SGD) as before
    return staticmethod(__new__)


def _install() -> None:
    Optimizer = torch.optim.Optimizer
    init = getattr(Optimizer.__init__, "_cryptgpu_wraps", Optimizer.__init__)
    torch_add = Optimizer.add_param_group

    @functools.wraps(init)
    def __init__(self, params, defaults):
        read = _READ.pop(self, None) if type(self) in _OURS else None  # others may not hash
        if read is not None and read[0] is params:
            params = read[1]
        elif type(self).add_param_group is torch_add:
            params, shared, other = _read(params)
            if shared:
                raise _refusal(type(self), other)
        init(self, params, defaults)

    __init__._cryptgpu_wraps = init
    Optimizer.__init__ = __init__
    for torch_cls in _OURS:
        torch_cls.__new__ = _new_for(torch_cls)


_install()
