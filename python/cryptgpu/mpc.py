"""CrypTen's ``crypten.mpc`` entry point for multi-party functions.

>>> import cryptgpu as crypten, torch
>>> @crypten.mpc.run_multiprocess(world_size=3)
... def job():
...     x = crypten.cryptensor(torch.tensor([1.0, -2.0]))
...     return crypten.comm.get().get_rank(), x.relu().get_plain_text().tolist()
>>> job()
[(0, [1.0, 0.0]), (1, [1.0, 0.0]), (2, [1.0, 0.0])]
"""

from __future__ import annotations

import copy
import functools
import types

import torch

from . import _session, spmd
from . import autograd as ag
from ._native import CryptGPUError
from .nn.module import Module
from .tensor import SharedTensor, cat, check_ptype, cryptensor, ptype, stack


class _EveryShared(type):
    """The metaclass of :class:`MPCTensor`: every SharedTensor is an instance."""

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, SharedTensor)

    def __subclasscheck__(cls, sub) -> bool:
        return isinstance(sub, type) and issubclass(sub, SharedTensor)


arithmetic = ptype.arithmetic
binary = ptype.binary


class MPCTensor(metaclass=_EveryShared):
    """CrypTen's class of an encrypted tensor. ``MPCTensor(data, src=0)``
    secret-shares ``data`` from party ``src``, as CrypTen's constructor
    does (it is :func:`cryptgpu.cryptensor`: the result is a
    :class:`cryptgpu.SharedTensor`), and ``isinstance(x, MPCTensor)`` holds
    for every SharedTensor. ``ptype`` must be None or the default:
    arithmetic sharing is the only kind here (no binary shares);
    ``requires_grad``, ``precision`` and ``device`` are cryptensor's."""

    # CrypTen's CrypTensor.set_grad_enabled / no_grad / enable_grad (its
    # tests' setUp calls the first): the module's own
    set_grad_enabled = ag.set_grad_enabled
    no_grad = staticmethod(ag.no_grad)
    enable_grad = staticmethod(ag.enable_grad)
    # CrypTen's static MPCTensor.cat / MPCTensor.stack (crypten.cat's)
    cat = staticmethod(cat)
    stack = staticmethod(stack)

    def __new__(cls, tensor, ptype=None, device=None, *, src: int = 0, **kwargs):
        if tensor is None:
            raise ValueError("Cannot initialize tensor with None.")
        check_ptype(ptype, "MPCTensor")
        return cryptensor(tensor, src=src, device=device, **kwargs)


def ttp_required() -> bool:
    """CrypTen's ``crypten.mpc.ttp_required()``: False. Replicated sharing
    among three parties needs no trusted third party (CrypTen's launcher
    starts a TTP process only when this is True)."""
    return False


class _NoProviders(types.ModuleType):
    """CrypTen's ``crypten.mpc.provider``: its triple providers (TFP, TTP)
    have no counterpart here; any name raises AttributeError saying why."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"crypten.mpc.provider.{name}: cryptgpu has no randomness providers and no "
            "trusted third party (replicated sharing among three parties needs none; "
            "crypten.mpc.ttp_required() is False)"
        )


provider = _NoProviders("cryptgpu.mpc.provider", _NoProviders.__doc__)


def __getattr__(name: str):
    if name == "ConfigManager":
        raise AttributeError(
            "module 'cryptgpu.mpc' has no attribute 'ConfigManager': CrypTen's "
            "ConfigManager(key, value) overrides a configuration entry in a with-block; "
            "there are no configuration entries here: reciprocal_all_pos is "
            "x.reciprocal(all_pos=True), the approximations' iteration counts have no "
            "counterpart (they take their own steps), and the session's settings are "
            "crypten.init()'s arguments (precision_bits, truncation, seed, ...)"
        )
    raise AttributeError(f"module 'cryptgpu.mpc' has no attribute {name!r}")


def run_multiprocess(world_size: int = 3, maxsize: int | None = None):
    """Decorator: run the function once per party, SPMD, and return the
    parties' results as a list in rank order (as CrypTen does).

    CrypTen forks ``world_size`` processes; here the three parties are
    threads of this process, each with its own single-party session over
    in-process channels (:func:`cryptgpu.spmd.run`), so the function's
    results and the communication counters are those of a real three-party
    run. For real separate processes use ``python -m cryptgpu.launch``.

    As after CrypTen's fork, each party works on its own copy of the
    ``cryptgpu.nn`` modules, torch modules (``torch.nn.Module``) and torch
    tensors the function names (global names it reads, and variables of
    enclosing functions, also as items of a list, tuple or dict held there)
    or is passed (arguments, and the items of a list, tuple or dict
    argument): CrypTen's Tutorial 5 encrypts one global layer in every
    party, and a non-owner that zeroes "its" dummy copy of a global torch
    model in place changes only its own copy (until 2026-12-07 the threads
    shared the torch model: the owner's was zeroed, silently). The copies
    are made before the parties start (memory: three copies of what the
    function names, for the run); the caller's objects are left as they
    were, and objects named both ways, or a model and a tensor of it, stay
    one object in each party. Other objects (a module or tensor reached
    through another object's attributes, such as ``self.model`` or an
    optimizer's parameters; numpy arrays; a tensor that is not a graph
    leaf, which torch cannot copy) are shared by the threads. The parties' sessions
    have the settings of the caller's :func:`cryptgpu.init`
    (precision_bits, seed, timeout_s, device, truncation, check_range), as
    CrypTen's forked processes inherit its configuration. Sessions are per
    thread: called from a thread without one, the parties take the
    settings of the latest ``init()`` whose session another thread of this
    process holds (the main thread's, for a worker thread); with no session
    anywhere, :func:`cryptgpu.spmd.run`'s defaults. The function's arguments all
    reach the function (one named ``seed`` or ``timeout_s`` too).
    ``world_size`` must be 3 (replicated sharing is a three-party protocol);
    ``maxsize`` is accepted for compatibility and ignored.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int):
        raise TypeError(f"world_size must be an int, got {type(world_size).__name__}")
    if world_size != 3:
        raise ValueError(
            f"cryptgpu runs exactly three parties (replicated sharing), got world_size={world_size}"
        )
    del maxsize

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            # Each party's own copy of the function and of its arguments,
            # made here, before the party threads start.
            copies = [_with_own_modules(func, args, kwargs) for _ in range(3)]
            # the caller's gradient mode too (thread-local: the party
            # threads started with recording on, whatever the caller's
            # set_grad_enabled(False) or no_grad said; a review)
            grad = ag.is_grad_enabled()

            def party():
                f, a, k = copies[_session.rank()]
                with ag.set_grad_enabled(grad):
                    return f(*a, **k)

            # The caller's init() settings, as CrypTen's forked processes
            # inherit them; the function's own arguments never reach
            # spmd.run's keywords (a parameter named seed stays the function's).
            try:
                return spmd._parties(party, **(_session.settings_for_parties() or {}))
            except CryptGPUError as e:
                if not any(m in str(e) for m in ("out of step", "not held by this process")):
                    raise
                hint = _SHARE_HINT if "in 'share'" in str(e) else _SHARED_HINT
                raise type(e)(f"{e}\n{hint}") from e

        return wrapper

    return decorator


# what an out-of-step error (or a share of another party) inside
# run_multiprocess most often means
_SHARED_HINT = (
    "Inside run_multiprocess the parties are threads of one process: a "
    "cryptgpu.nn or torch module (or a torch tensor) reached through another object's "
    "attribute (self.model, trainer.model) is one object shared by the three parties, and "
    "encrypt() or training it from each party runs its operations three times over; "
    "name the module in the function (a global or enclosing variable, or an item of a "
    "list, tuple or dict held there), or pass it as an argument, so that each party gets "
    "its own copy"
)


# an out-of-step sharing: most often a placeholder of another shape (probe KA)
_SHARE_HINT = (
    "Parties out of step in 'share' (cryptensor(x, src=...), encrypt(src=...)) most "
    "often pass tensors of different shapes: every party must give a tensor of src's "
    "shape (the others' values are not read: a placeholder such as torch.empty(shape)), "
    "or pass broadcast_size=True to cryptensor so that src's shape is sent; a model "
    "encrypted from src must have src's layer sizes on every party. " + _SHARED_HINT
)


# What each party gets its own deep copy of, as after a fork: cryptgpu
# modules, and (since 2026-12-07) torch modules and tensors. A torch model
# named in the function was one object of the three threads: a party
# zeroing "its" dummy copy in place (CrypTen's habit: each forked process
# mutates its own) silently zeroed the owner's model, or, by thread timing,
# raised a misleading ModelStateChanged (user probe OO).
# Optimisers too (a review): one named beside its model, shared, stepped the
# caller's parameters while each party's model was its own copy; with the
# party's one memo, the copy steps that party's copy of the model.
_COPIED = (Module, torch.nn.Module, torch.Tensor, torch.optim.Optimizer)


def _copied(v) -> bool:
    """One object a party gets its own copy of (:data:`_COPIED`)."""
    return isinstance(v, _COPIED)


def _holds_module(v) -> bool:
    """A cryptgpu or torch module or a torch tensor, or a list, tuple or
    dict holding one (what :func:`_own` copies)."""
    if isinstance(v, dict):
        v = list(v.values())
    if isinstance(v, (list, tuple)):
        return any(_copied(x) for x in v)
    return _copied(v)


def _deep(v, memo: dict):
    """A deep copy of ``v`` (one of :data:`_COPIED`), or ``v`` itself (shared,
    as before) where it cannot be copied: a tensor that is not a graph leaf
    (torch refuses to deep-copy one), or a module holding such a tensor or
    another object that copy refuses."""
    try:
        return copy.deepcopy(v, memo)
    except (RuntimeError, TypeError):
        return v


def _names_read(code: types.CodeType) -> set:
    """Global names ``code`` and the functions and comprehensions nested in
    it may read."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names_read(c)
    return names


def _own(obj, memo: dict):
    """``obj`` with the modules and tensors in it deep-copied (:func:`_deep`):
    ``obj`` itself when one, or a list, tuple or dict holding them (one
    level deep, a copy of the container); anything else as it is (shared)."""
    if _copied(obj):
        return _deep(obj, memo)
    if not _holds_module(obj):
        return obj
    if isinstance(obj, dict):
        out = copy.copy(obj)
        for k, v in obj.items():
            out[k] = _deep(v, memo) if _copied(v) else v
        return out
    if isinstance(obj, (list, tuple)):
        items = [_deep(v, memo) if _copied(v) else v for v in obj]
        if isinstance(obj, list):
            out = copy.copy(obj)
            out[:] = items
            return out
        # a named tuple takes its fields one by one
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def _with_own_modules(func, args: tuple = (), kwargs: dict | None = None):
    """``(f, args, kwargs)`` for one party: ``f`` is ``func`` reading deep
    copies of the cryptgpu and torch modules and torch tensors it names (as
    globals or from enclosing functions), or ``func`` itself when it names
    none; ``args`` and ``kwargs`` hold deep copies of those passed (also in
    a list, tuple or dict argument). Globals are copied shallowly: other objects
    stay shared, and a ``global`` assignment inside stays in the copy, as
    in a forked party. One module reached both ways is one copy."""
    memo: dict = {}
    args = tuple(_own(a, memo) for a in args)
    kwargs = {k: _own(v, memo) for k, v in (kwargs or {}).items()}
    if not isinstance(func, types.FunctionType):
        return func, args, kwargs
    g = func.__globals__
    hits = {n: g[n] for n in _names_read(func.__code__) if _holds_module(g.get(n))}
    cells = func.__closure__ or ()

    def held(c):
        try:
            return c.cell_contents
        except ValueError:  # an empty cell
            return None

    if not hits and not any(_holds_module(held(c)) for c in cells):
        return func, args, kwargs
    own = dict(g)
    own.update({n: _own(m, memo) for n, m in hits.items()})
    closure = tuple(
        types.CellType(_own(held(c), memo)) if _holds_module(held(c)) else c for c in cells
    )
    out = types.FunctionType(func.__code__, own, func.__name__, func.__defaults__, closure or None)
    out.__kwdefaults__ = func.__kwdefaults__
    return out, args, kwargs
