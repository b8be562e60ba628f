"""What a converted model answers beyond its layers (since 2026-12-06;
until then an AttributeError): the torch model's own plain attributes
(``model.nhid``, ``model.rnn_type``: not tensors or modules), as they were
at conversion, and the methods, properties, static and class methods its
own classes define (``model.init_hidden(bsz)``: those of the classes in
its ``__mro__`` that are not torch's, transformers' or cryptgpu's), bound
to the converted model, so that ``self.parameters()`` and ``self.rnn`` in
them read the converted (shared) model. They are looked up last: what the
converted model answers itself (its layers, ``forward``, ``parameters``,
a transformers model's accessors) comes first. The converted model is no
instance of the torch model's class: a method calling ``super()`` without
arguments, or checking ``isinstance(self, ...)``, fails as in Python for
an object of another class; call those on the torch model."""

from __future__ import annotations

import copy
import numbers
import pickle
import types

import torch

# torch.nn.Module's own instance attributes (hooks, tables, training)
_TORCH_OWN = frozenset(torch.nn.Module().__dict__)
# the packages whose classes' methods stay theirs (not re-bound)
_LIBRARIES = ("torch", "transformers", "cryptgpu", "builtins", "abc", "typing", "lightning")
_LIBRARIES += ("pytorch_lightning", "huggingface_hub")  # (their base classes' machinery)


def _library(cls: type) -> bool:
    return (cls.__module__ or "").split(".")[0] in _LIBRARIES


def _plain(v, depth: int = 0) -> bool:
    """Whether ``v`` holds no tensor and no module (through containers)."""
    if isinstance(v, (torch.Tensor, torch.nn.Module)) or depth > 4:
        return False
    if isinstance(v, dict):
        return all(_plain(k, depth + 1) and _plain(x, depth + 1) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_plain(x, depth + 1) for x in v)
    return True


def _snapshot(v):
    try:
        return copy.deepcopy(v)
    except Exception:  # an object that does not copy (a lock, a file): itself
        return v


class Own:
    """The torch model's plain attributes and its own classes' members."""

    def __init__(self, model: torch.nn.Module):
        self.cls_name = type(model).__name__
        self.attrs = {
            k: _snapshot(v)
            for k, v in vars(model).items()
            if k not in _TORCH_OWN and not k.startswith("__") and _plain(v)
        }
        # each name as Python finds it on the model's class: the first class
        # of the __mro__ that defines it, kept where that one is the user's
        self.members: dict = {}
        seen: set = set()
        for cls in type(model).__mro__:
            mine = not _library(cls)
            for k, v in vars(cls).items():
                if k in seen or k.startswith("__") or k == "forward":
                    continue
                seen.add(k)
                if mine and isinstance(
                    v, (types.FunctionType, property, staticmethod, classmethod)
                ):
                    self.members[k] = v
        self.cls = type(model)  # (for the class methods)

    def has(self, name: str) -> bool:
        return name in self.attrs or name in self.members

    def answer(self, graph, name: str):
        if name in self.attrs:
            return self.attrs[name]
        v = self.members[name]
        if isinstance(v, property):
            if v.fget is None:
                raise AttributeError(f"property {name!r} of {self.cls_name} has no getter")
            return v.fget(graph)
        if isinstance(v, staticmethod):
            return v.__func__
        if isinstance(v, classmethod):
            return types.MethodType(v.__func__, self.cls)
        return types.MethodType(v, graph)

    def __getstate__(self):
        # pickling (torch.save of a converted model): members of a class
        # pickle cannot find again (one defined inside a function) are left
        # out, rather than failing the whole save
        state = dict(self.__dict__)
        state["members"] = {k: v for k, v in self.members.items() if _picklable(v)}
        state["attrs"] = {k: v for k, v in self.attrs.items() if _picklable(v)}
        if state["cls"] is not None and not _picklable(state["cls"]):
            state["cls"] = None
            state["members"] = {
                k: v for k, v in state["members"].items() if not isinstance(v, classmethod)
            }
        return state

    def __deepcopy__(self, memo):
        out = Own.__new__(Own)
        out.__dict__.update(self.__dict__)
        out.attrs = {k: _snapshot(v) for k, v in self.attrs.items()}
        out.members = dict(self.members)
        return out


def _picklable(v) -> bool:
    try:
        pickle.dumps(v)
        return True
    except Exception:
        return False


def remember_settings(layer, m: torch.nn.Module) -> None:
    """Keeps the torch layer ``m``'s plain settings (``in_features``,
    ``out_features``, ``kernel_size``, ``num_features``, ``affine``, ...)
    for :func:`setting`, as they were when ``layer`` was made from it."""
    layer.__dict__["_torch_settings"] = {
        k: _snapshot(v)
        for k, v in vars(m).items()
        if k not in _TORCH_OWN and not k.startswith("_") and _simple(v)
    }


class InPlace:
    """``inplace`` of an activation or dropout layer (ReLU, LeakyReLU,
    Dropout, ...). Built directly with ``inplace=True``, the layer changes
    its input as torch's does (``_inplace``; since 2026-12-07). A converted
    layer runs out of place (the converted graph's later readers read its
    result: tracing.in_place) and answers its torch layer's setting."""

    _inplace = False  # (a layer pickled before 2026-12-07 has none)

    @property
    def inplace(self) -> bool:
        """Whether the layer changes its input (a converted one: torch's setting)."""
        kept = self.__dict__.get("_torch_settings") or {}
        return kept.get("inplace", self.__dict__.get("_inplace", False))

    @inplace.setter
    def inplace(self, value) -> None:
        self.__dict__["_inplace"] = bool(value)
        (self.__dict__.get("_torch_settings") or {}).pop("inplace", None)


def _simple(v, depth: int = 0) -> bool:
    """A number (NumPy's too), a 0-d integer tensor, string, bool or None,
    or a tuple or list of them (a layer's setting; a config object or a
    callable is none)."""
    if isinstance(v, (tuple, list)):
        return depth < 2 and all(_simple(x, depth + 1) for x in v)
    if isinstance(v, torch.Tensor):  # a 0-d size, kept as torch keeps it
        return v.dim() == 0 and not v.is_floating_point()
    # numbers.Number: NumPy's integers too (a setting given as np.int64(4)
    # was dropped, and in_features raised AttributeError: probe OL)
    return v is None or isinstance(v, (numbers.Number, str))


def setting(layer, name: str):
    """A layer's attribute ``name`` found nowhere else: the torch layer's
    setting it was made from (:func:`remember_settings`), else torch's
    AttributeError."""
    kept = layer.__dict__.get("_torch_settings")
    if kept is not None and name in kept:
        return kept[name]
    raise AttributeError(f"{type(layer).__name__} has no attribute {name!r}")


def attach(graph, model: torch.nn.Module) -> None:
    """Keeps what :func:`getattr_` answers from the torch ``model``."""
    graph._own = Own(model)


def getattr_(graph, name: str, base):
    """A converted model's attribute ``name`` not found the usual way: a
    wrapped bare layer's parameters and settings (``lin.weight``,
    ``conv.stride``, as torch's), else ``base(name)`` (its layers), else the
    torch model's own (:class:`Own`); else ``base``'s AttributeError."""
    d = graph.__dict__
    root = d.get("_root_target")
    if "_bare" in d:  # a bare transformer's: its tables are the graph's (bare.py)
        return getattr(d["_bare"], name)
    if root is not None and root in d.get("_modules", {}):
        return getattr(d["_modules"][root], name)
    try:
        return base(name)
    except AttributeError as e:
        own = d.get("_own")
        if own is None or name.startswith("__") or not own.has(name):
            raise e from None
        return own.answer(graph, name)
