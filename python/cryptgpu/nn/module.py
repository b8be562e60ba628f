"""The Module base class and the Sequential container of cryptgpu.nn.

Every layer (layers.py), loss (losses.py) and converted graph (conversion.py)
derives from :class:`Module`, which sits right above the statistics (stats.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from ..optim import SGD
from ..tensor import SharedTensor, cryptensor
from .stats import OTHER, _track

# The tensors encrypt()/decrypt() has already converted in this call, by
# id: a weight tied between layers becomes one shared (or opened) tensor.
_TIED = threading.local()


class Module:
    """Base class: parameters, submodules, encrypt/decrypt, train/eval."""

    kind = OTHER

    def __init__(self) -> None:
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        # A module built directly starts in training mode, as in torch and
        # CrypTen (from_pytorch's result starts in eval mode).
        self.training = True
        self.encrypted = False

    @property
    def _parameters(self):
        """The parameter table under torch's and CrypTen's name (CrypTen's
        tutorials read and assign ``layer._parameters["weight"]``)."""
        return self._params

    # -- structure
    def register_parameter(self, name: str, value) -> None:
        """Add a parameter (torch tensor, SharedTensor or None) under ``name``."""
        if "_params" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._modules.pop(name, None)
        self._params[name] = value

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a cryptgpu.nn.Module subclass")
        self._params.pop(name, None)
        self._modules[name] = module

    def __setattr__(self, name: str, value) -> None:
        # As torch.nn.Module: a module assigned to an attribute is a child
        # (encrypt, parameters(), train() and state_dict() reach it), a
        # torch.nn.Parameter is a parameter, and assigning to a registered
        # parameter replaces it.
        d = self.__dict__
        if isinstance(value, Module):
            if "_modules" not in d:
                raise AttributeError("cannot assign module before Module.__init__() call")
            d.pop(name, None)
            self.add_module(name, value)
        elif isinstance(value, torch.nn.Parameter):
            d.pop(name, None)
            self.register_parameter(name, value)
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} "
                    "(cryptgpu.nn.Module or None expected)"
                )
            d["_modules"][name] = None
        elif "_params" in d and name in d["_params"]:
            if value is not None and not isinstance(value, (torch.Tensor, SharedTensor)):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} "
                    "(a tensor, a SharedTensor or None expected)"
                )
            d["_params"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for table in (self.__dict__.get("_params"), self.__dict__.get("_modules")):
            if table is not None and name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def __getattr__(self, name):
        d = self.__dict__
        if "_params" in d and name in d["_params"]:
            return d["_params"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def children(self):
        """Yield the direct child modules."""
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_children(self):
        """Yield (name, child) for the direct child modules."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def named_parameters(self, prefix: str = "", _seen: set | None = None):
        """Yield (dotted name, parameter) for this module and its children,
        skipping None, each tensor once (a tied weight under its first
        name, as torch's)."""
        seen = set() if _seen is None else _seen
        for k, v in self._params.items():
            if v is not None and id(v) not in seen:
                seen.add(id(v))
                yield prefix + k, v
        for name, m in self.named_children():
            yield from m.named_parameters(prefix + name + ".", seen)

    def parameters(self):
        """Yield every parameter of this module and its children."""
        for _, v in self.named_parameters():
            yield v

    def modules(self):
        """Yield this module and every descendant, depth first (each once)."""
        for _, m in self.named_modules():
            yield m

    def named_modules(self, memo=None, prefix: str = ""):
        """Yield (dotted name, module) for this module and every descendant,
        as torch's (each module once)."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def apply(self, fn) -> Module:
        """Call ``fn`` on every child (recursively) and then on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _named_state(self, prefix: str = ""):
        """(dotted name, owning module, table, key) for every parameter and
        buffer (BatchNorm's running statistics), skipping None."""
        for table in (self._params, self.__dict__.get("_buffers") or {}):
            for k, v in table.items():
                if v is not None:
                    yield prefix + k, self, table, k
        if "num_batches_tracked" in self.__dict__:  # BatchNorm, as torch lists it
            yield prefix + "num_batches_tracked", self, _Counter(self), "num_batches_tracked"
        for name, m in self.named_children():
            yield from m._named_state(prefix + name + ".")

    def state_dict(self) -> OrderedDict:
        """Parameters and buffers by dotted name, as ``torch.nn.Module.state_dict``
        (SharedTensors once encrypted). Save it with :func:`cryptgpu.save`."""
        return OrderedDict((name, table[k]) for name, _, table, k in self._named_state())

    def load_state_dict(self, state: dict, strict: bool = True):
        """Load parameters and buffers from ``state`` (e.g. from :func:`cryptgpu.load`,
        or a torch model's ``state_dict()``). A shared parameter is updated in
        place, so optimisers built on it keep working; plaintext values into
        an encrypted model are shared from party 0 (as ``encrypt()``). With
        ``strict`` (the default), missing or unexpected names and shape
        mismatches raise RuntimeError as in torch; returns the missing and
        unexpected names."""
        own = {name: (m, table, k) for name, m, table, k in self._named_state()}
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: missing keys "
                f"{missing}, unexpected keys {unexpected}"
            )
        for name, (m, table, k) in own.items():
            if name not in state:
                continue
            new, old = state[name], table[k]
            if tuple(new.shape) != tuple(old.shape):
                raise RuntimeError(
                    f"size mismatch for {name}: copying a param with shape {tuple(new.shape)}, "
                    f"the shape in the current model is {tuple(old.shape)}"
                )
            if isinstance(old, SharedTensor) and not isinstance(new, SharedTensor):
                # plaintext values (a torch model's state_dict) into an
                # encrypted model: shared from party 0, as encrypt() does,
                # in place (optimisers keep their parameters)
                new = cryptensor(torch.as_tensor(new).detach(), src=0)
            if isinstance(old, SharedTensor) and isinstance(new, SharedTensor):
                new._s()  # refuses a tensor of an earlier session
                old._t, old._session = new._t, new._session
            elif isinstance(new, SharedTensor) and table is m._params:
                _as_param(new, m.training, getattr(old, "_frozen", False))
                table[k] = new
            else:
                table[k] = new
            if hasattr(m, "_affine"):
                m._affine = None  # BatchNorm's eval affine, recomputed from the new statistics
        return missing, unexpected

    # -- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) on this module and its children;
        returns self. As in CrypTen, the shared parameters require grad in
        training mode and not in eval mode (where the forward records no
        tape for them, and inference stays as fast as under ``no_grad``; an
        input that requires grad still gets its gradient). Raises
        RuntimeError, changing nothing, when a module below cannot train
        (see :meth:`_why_not_trainable`)."""
        mode = bool(mode)
        if mode:
            for m in self.modules():
                why = m._why_not_trainable()
                if why:
                    raise RuntimeError(why)
        for m in self.modules():
            m.training = mode
            for v in m._params.values():
                if isinstance(v, SharedTensor):
                    v._rg = mode and not v._frozen
        return self

    def _why_not_trainable(self) -> str | None:
        """Why this module cannot be put in training mode (None: it can)."""
        return None

    def eval(self) -> Module:
        """Set evaluation mode; returns self."""
        return self.train(False)

    def encrypt(self, src: int = 0) -> Module:
        """Secret-share every parameter from party ``src`` (the model owner).
        Shared parameters are autograd leaves, requiring grad in training
        mode (see :meth:`train`)."""
        # one sharing per tensor: a weight tied between layers (converted
        # from one torch Parameter) stays one shared parameter
        outer = getattr(_TIED, "memo", None)
        if outer is None:
            _TIED.memo = {}
        try:
            for m in self.modules():
                m._encrypt_own(src)
        finally:
            if outer is None:
                _TIED.memo = None
        return self

    def _encrypt_own(self, src: int) -> None:
        """Share this module's own parameters (not its children's); a layer
        with more state (BatchNorm's running statistics) extends it."""
        memo = getattr(_TIED, "memo", None)
        for k, v in self._params.items():
            if v is not None and not isinstance(v, SharedTensor):
                if memo is not None and id(v) in memo:
                    self._params[k] = memo[id(v)][1]
                    continue
                frozen = bool(getattr(v, "_frozen", False))
                self._params[k] = _as_param(cryptensor(v, src=src), self.training, frozen)
                if memo is not None:
                    memo[id(v)] = (v, self._params[k])  # v kept: its id stays unique
        self.encrypted = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients (a zero gradient and none are the
        same to the next backward here)."""
        for p in self.parameters():
            if isinstance(p, SharedTensor):
                p.grad = None

    def update_parameters(self, learning_rate: float) -> None:
        """CrypTen's plain SGD step: p <- p - lr * p.grad."""
        SGD(self.parameters(), lr=learning_rate).step()

    def decrypt(self) -> Module:
        """Open every parameter (and BatchNorm's running statistics) back
        into float64 torch tensors."""
        outer = getattr(_TIED, "memo", None)
        if outer is None:
            _TIED.memo = {}
        try:
            for m in self.modules():
                m._decrypt_own()
        finally:
            if outer is None:
                _TIED.memo = None
        return self

    def _decrypt_own(self) -> None:
        """Open this module's own parameters (not its children's)."""
        memo = getattr(_TIED, "memo", None)
        for k, v in self._params.items():
            if isinstance(v, SharedTensor):
                if memo is not None and id(v) in memo:
                    self._params[k] = memo[id(v)][1]  # a tied weight: opened once
                    continue
                self._params[k] = v.get_plain_text(dtype=torch.float64)
                if v._frozen:
                    self._params[k]._frozen = True  # for the next encrypt()
                if memo is not None:
                    memo[id(v)] = (v, self._params[k])
        self.encrypted = False

    # -- running
    def forward(self, x):
        """The computation of the layer; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        x = args[0] if args else None
        if self._modules or self.kind == OTHER:
            return self.forward(*args, **kwargs)
        with _track(self.kind, x):
            return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._params.items() if v is not None)
        return f"{type(self).__name__}({inner})"


class _Indexed(Module):
    """Children numbered 0, 1, ...: indexing (a slice gives the same kind of
    container), ``len``, iteration, as torch's Sequential and ModuleList."""

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

    def append(self, module: Module):
        """Add ``module`` at the end."""
        self.add_module(str(len(self)), module)
        return self


class Sequential(_Indexed):
    """Children applied in order, as torch.nn.Sequential."""

    def __init__(self, *mods: Module):
        super().__init__(mods)

    @classmethod
    def _from_list(cls, mods):
        return cls(*mods)

    def forward(self, x):
        """Apply each child to the output of the previous one."""
        for m in self._modules.values():
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


class _Counter:
    """BatchNorm's ``num_batches_tracked`` (a Python int on the layer) as a
    state entry: a 0-d int64 tensor, as in torch's state_dict."""

    def __init__(self, m: Module) -> None:
        self.m = m

    def __getitem__(self, key: str) -> torch.Tensor:
        return torch.tensor(self.m.num_batches_tracked, dtype=torch.int64)

    def __setitem__(self, key: str, value) -> None:
        self.m.num_batches_tracked = int(value)


def _as_param(t: SharedTensor, training: bool, frozen: bool) -> SharedTensor:
    """``t`` as a module's parameter: requiring grad in training mode unless
    frozen (a torch parameter with requires_grad=False, or one the user set
    so), as torch's ``train()`` leaves a frozen parameter frozen."""
    t._frozen = frozen
    t._rg = training and not frozen
    return t
