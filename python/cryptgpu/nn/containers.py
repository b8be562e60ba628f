"""The containers of cryptgpu.nn: Sequential, ModuleList and ModuleDict
as torch's, and the containers a converted model keeps where the torch
model had one (indexed by torch's child names, so ``model.block[0]`` and
``len(model.layers)`` work as on the torch model).
"""

from __future__ import annotations

import contextlib
import operator
from collections import OrderedDict

from . import shifts
from .module import Module


class _ByPosition:
    """Children reached by position under torch's names "0", "1", ...
    (``_seq_names``): indexing, ``len`` and iteration of a converted
    Sequential. A layer folded away at conversion (BatchNorm into its
    convolution) keeps its position and raises IndexError when asked for."""

    _seq_names: list = []
    _folded_names: frozenset = frozenset()  # set by the conversion

    def __len__(self) -> int:
        return len(self._seq_names)

    def __iter__(self):
        return (self._modules[k] for k in self._seq_names if k in self._modules)

    def _name_at(self, idx, change: bool = False) -> str:
        """The child name at position ``idx``; a layer folded away at
        conversion (BatchNorm into its conv) raises: reading it, since it is
        gone, and changing it, since its effect stays in the conv."""
        try:
            name = self._seq_names[operator.index(idx)]
        except TypeError:
            raise TypeError(f"{type(self).__name__} indices must be integers") from None
        except IndexError:
            raise IndexError(f"index {idx} is out of range") from None
        if name in self._folded_names:
            if change:
                raise NotImplementedError(
                    f"layer {name} was folded into the one before it at conversion: its "
                    "effect stays there; convert with fold_batchnorm=False to change it"
                )
            raise IndexError(f"layer {name} was folded into the one before it at conversion")
        return name

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            raise NotImplementedError("slicing a converted Sequential: convert model[a:b] instead")
        name = self._name_at(idx)
        if name not in self._modules:
            raise IndexError(f"layer {name} was deleted")
        return self._modules[name]

    def __setitem__(self, idx, module: Module) -> None:
        """``model[i] = layer``: the layer at position i replaced, as torch's."""
        self.add_module(self._name_at(idx, change=True), module)

    def __delitem__(self, idx) -> None:
        """``del model[i]``: that layer removed (a converted model whose
        graph calls it then raises AttributeError, as after ``del``)."""
        name = self._name_at(idx, change=True)
        self._modules.pop(name, None)
        self._seq_names = [n for n in self._seq_names if n != name]

    def append(self, module: Module):
        """Add ``module`` at the end (under the next free number)."""
        name = str(len(self._seq_names))
        while name in self._modules:
            name += "_"
        self.add_module(name, module)
        return self

    def add_module(self, name: str, module: Module | None) -> None:
        """A child added after conversion is also the last by position (a
        converted Sequential runs it last, as torch's runs its new layers)."""
        super().add_module(name, module)
        if "_seq_names" in self.__dict__ and name not in self._seq_names:
            self._seq_names = self._seq_names + [name]


class _Indexed(Module):
    """Children numbered 0, 1, ...: indexing (a slice gives the same kind of
    container), ``len``, iteration, as torch's Sequential and ModuleList."""

    _tensor_first = False

    def __init__(self, mods=()):
        super().__init__()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return type(self)._from_list(mods[idx])
        try:
            return mods[idx]
        except TypeError:
            raise TypeError(f"{type(self).__name__} indices must be integers or slices") from None
        except IndexError:
            raise IndexError(f"index {idx} is out of range") from None

    @classmethod
    def _from_list(cls, mods):
        return cls(mods)

    def __delitem__(self, idx) -> None:
        """``del seq[i]`` (or a slice), the rest renumbered 0, 1, ... as torch's."""
        names = list(self._modules)
        picked = names[idx] if isinstance(idx, slice) else [names[operator.index(idx)]]
        kept = [m for n, m in self._modules.items() if n not in picked]
        self._modules.clear()
        for i, m in enumerate(kept):
            self._modules[str(i)] = m

    def __setitem__(self, idx: int, module: Module) -> None:
        """``seq[i] = layer``, as torch's (a negative i counts from the end)."""
        names = list(self._modules)
        try:
            self.add_module(names[operator.index(idx)], module)
        except TypeError:
            raise TypeError(f"{type(self).__name__} indices must be integers") from None
        except IndexError:
            raise IndexError(f"index {idx} is out of range") from None

    def append(self, module: Module):
        """Add ``module`` at the end."""
        self.add_module(str(len(self)), module)
        return self


class Sequential(_Indexed):
    """Children applied in order, as torch.nn.Sequential."""

    def __init__(self, *mods: Module):
        if len(mods) == 1 and isinstance(mods[0], OrderedDict):  # torch's named form
            super().__init__([])
            for name, m in mods[0].items():
                self.add_module(name, m)
            return
        super().__init__(mods)

    @classmethod
    def _from_list(cls, mods):
        return cls(*mods)

    def forward(self, x):
        """Apply each child to the output of the previous one; a layer whose
        bias the next one (a norm) cancels gives it an exactly zero gradient,
        as in a converted model (shifts)."""
        mods = list(self._modules.values())
        for m, nxt in zip(mods, mods[1:] + [None]):
            with shifts.cancelled(m, nxt) if nxt is not None else contextlib.nullcontext():
                x = m(x)
        return x


class ModuleList(_Indexed):
    """A list of registered modules (their parameters are the list's), as
    torch.nn.ModuleList; it has no forward of its own."""

    def __init__(self, modules=None):
        super().__init__(list(modules or []))

    def extend(self, modules) -> ModuleList:
        """Add each of ``modules`` at the end."""
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    """Modules by name, registered (their parameters are the dict's), as
    torch.nn.ModuleDict; it has no forward of its own."""

    _tensor_first = False

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        """The names, in insertion order."""
        return self._modules.keys()

    def items(self):
        """(name, module) pairs."""
        return self._modules.items()

    def values(self):
        """The modules."""
        return self._modules.values()

    def update(self, modules) -> None:
        """Add the modules of a mapping or of (name, module) pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, m in pairs:
            self.add_module(key, m)

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        return self._modules.pop(key)

    def clear(self) -> None:
        """Remove every module."""
        self._modules.clear()


class _TracedList(_ByPosition, Module):
    """A torch ModuleList (or a Sequential whose forward was traced
    through) inside a converted model: its converted children under
    torch's names, by position."""

    _traced = True  # its layers run inline in the converted graph

    def __init__(self, names):
        super().__init__()
        self._seq_names = list(names)


class _TracedSequential(_TracedList):
    """A torch Sequential inside a converted model: called on its own, it
    applies its children in order as torch's."""

    def forward(self, x):
        """Each child on the output of the one before."""
        for m in self:
            x = m(x)
        return x


def traced(kind: str | None, names) -> Module:
    """The container standing for a torch module a converted model traced
    through: ``kind`` "sequential", "list" or "dict" for torch's
    containers, None for any other module (a plain Module)."""
    if kind == "sequential":
        return _TracedSequential(names)
    if kind == "list":
        return _TracedList(names)
    m = ModuleDict() if kind == "dict" else Module()
    m.__dict__["_traced"] = True  # its layers run inline in the converted graph
    return m
