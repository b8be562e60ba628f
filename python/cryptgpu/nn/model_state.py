"""The caller's model left as it was by a conversion, and a forward that
changes the model's own tensors in place refused.

torch.fx traces a forward by running it: with buffers read as constants
(tracing._GradTracer), ``self.count += 1`` ran on the model's real buffer
at each trace (eval and train mode: 0 became 2), and the converted model
kept the traced value as a constant (probe OH, 2026-12-07: the caller's
model changed, and the converted model's output was 0.9 off torch's with no
error). :func:`kept` saves the model's parameters, buffers and tensor
attributes around a conversion and puts back any that a trace changed;
tracing._trace calls :func:`unchanged` after each trace, which refuses such
a forward (the trace with buffers as graph values names its line:
inplace.in_place).
"""

from __future__ import annotations

import contextlib
import types

import torch

from . import inplace

# id(tensor) -> (the tensor, a copy of its value before the conversion),
# and the modules' entries (parameters, buffers, tensor attributes), while a
# conversion runs (under tracing.LOCK)
_SAVED: dict = {}
# the attribute torch.fx sets on its patches (tests/test_review_s29.py
# checks that the installed torch still sets it)
FX_MARK = "_Patcher__fx_already_patched"
_ENTRIES: list = []


class ModelStateChanged(NotImplementedError):
    """A forward that changes the model's own tensors in place, refused."""


def _tensors(model: torch.nn.Module) -> dict:
    """{qualified name: tensor} of the model's parameters, buffers and
    plain tensor attributes (``self.scale = torch.tensor(2.)``)."""
    out = {}
    for prefix, m in model.named_modules():
        for k, v in [*m._parameters.items(), *m._buffers.items(), *vars(m).items()]:
            if isinstance(v, torch.Tensor) and not k.startswith("_"):
                out.setdefault(f"{prefix}.{k}" if prefix else k, v)
    return out


def versions(model: torch.nn.Module) -> dict:
    """{name: (the tensor's id, its in-place version counter)} of the
    model's tensors."""
    return {name: (id(t), t._version) for name, t in _tensors(model).items()}


@contextlib.contextmanager
def kept(model: torch.nn.Module):
    """Save the model's tensors, and put back after the block any that
    changed in it (a trace ran a forward that changes them in place, or
    assigned a traced value to a buffer: ``self.count += 1``)."""
    mine = {}
    for t in _tensors(model).values():
        if id(t) not in _SAVED:  # (a nested conversion: the outer copy)
            mine[id(t)] = (t, t._version, _copy(t))
    entries = [(m, d, dict(d)) for m in model.modules() for d in _dicts(m)]
    _SAVED.update(mine)
    _ENTRIES.extend(entries)
    try:
        yield
    finally:
        _put_entries(entries)
        _put_attributes(entries)
        del _ENTRIES[len(_ENTRIES) - len(entries) :]
        for key, (t, version, copy) in mine.items():
            _SAVED.pop(key, None)
            if t._version != version or not _same(t, copy):
                _put_back(t, copy)


@contextlib.contextmanager
def fx_undone(model: torch.nn.Module):
    """A torch.fx trace of ``model`` in the block, and after it none of
    fx's patches left in place, whatever exception ended it
    (:func:`_fx_put_back`)."""
    spaces = _fx_spaces(model)
    try:
        yield
    finally:
        _fx_put_back(spaces)


def _fx_spaces(model: torch.nn.Module) -> list:
    """What torch.fx patches while it traces (``torch.nn.Module``'s
    ``__call__`` and ``__getattr__``, the globals of ``torch.fx.wrap``'s
    functions and of the forwards it autowraps ``math`` functions in), as
    (namespace, a copy of its entries) pairs."""
    from torch.fx import _symbolic_trace

    spaces = {id(g): g for g in getattr(_symbolic_trace, "_wrapped_fns_to_patch", {}).values()}
    for m in model.modules():
        g = getattr(type(m).forward, "__globals__", None)
        if isinstance(g, dict):
            spaces[id(g)] = g
    out = [(g, dict(g)) for g in spaces.values()]
    names = ("__call__", "__getattr__")
    out.append((torch.nn.Module, {k: torch.nn.Module.__dict__.get(k) for k in names}))
    return out


def _fx_put_back(spaces: list) -> None:
    """Undo the torch.fx patches still in place after a trace, to the
    entries :func:`_fx_spaces` saw: fx's own undo runs in its context
    manager's ``__exit__``, and an exception raised there (Ctrl-C, a
    timer's signal handler) left ``torch.nn.Module.__call__`` patched for
    the whole process, every later torch model call then raising
    NameError "module is not installed as a submodule" (probe OJ,
    2026-12-07; plain ``torch.fx.symbolic_trace`` does the same). Only
    values fx marks as its patches are touched."""

    def patched(v) -> bool:
        # fx's mark (True or False), set inside its class _Patcher: mangled;
        # fx's patches are plain functions, and only their own __dict__ is
        # read (hasattr ran a user's global's __getattr__: a KeyError there
        # broke every conversion of a model in that file, review s29 S2-a)
        return isinstance(v, types.FunctionType) and FX_MARK in v.__dict__

    for space, was in spaces:
        if isinstance(space, dict):
            for k, v in list(space.items()):
                if patched(v) and was.get(k) is not v:
                    if k in was:
                        space[k] = was[k]
                    else:
                        del space[k]
        else:
            for k, v in was.items():
                if patched(space.__dict__.get(k)) and v is not None:
                    setattr(space, k, v)


def _dicts(m: torch.nn.Module) -> tuple:
    return m._parameters, m._buffers, m.__dict__


def _put_entries(entries) -> None:
    """The modules' parameters, buffers and tensor attributes, the objects
    they were (a trace may have assigned a traced value to one)."""
    for _, d, was in entries:
        for k, v in was.items():
            if isinstance(v, torch.Tensor) and d.get(k) is not v:
                d[k] = v


def _put_attributes(entries) -> None:
    """Every module's entries as they were, not only its tensors: a
    forward's ``self.last = h`` left a torch.fx Proxy on the caller's model,
    ``self.steps += 1`` a count of the traces, and fx its
    ``_tensor_constant0`` (review s29 S3-a)."""
    for _, d, was in entries:
        # key by key, so that another thread reading the module meanwhile
        # never finds it empty; not `training`: from_pytorch puts the
        # modes back through the model's own train() after this, which a
        # class swapping its graph with the mode (DualGraphModule) needs
        # to see the mode it is leaving
        for k in [k for k in d if k not in was]:
            del d[k]
        for k, v in was.items():
            if k != "training" and (k not in d or d[k] is not v):
                d[k] = v
        if list(d) != list(was):  # a key the block removed came back last
            mode = d.get("training")
            d.clear()
            d.update(was)
            if mode is not None:
                d["training"] = mode


def _copy(t: torch.Tensor) -> torch.Tensor:
    """``t``'s value, kept in the CPU's memory: a model on a GPU copied
    there doubled its GPU memory at conversion (review s29 S4-a)."""
    if t.device.type in ("cpu", "meta"):
        return t.detach().clone()
    return t.detach().to("cpu", copy=True)


def _same(t: torch.Tensor, copy: torch.Tensor) -> bool:
    """Whether ``t`` still holds ``copy``'s values (a change through
    ``p.data`` moves no version counter), NaN equal to NaN."""
    if t.shape != copy.shape or t.dtype != copy.dtype:
        return False
    with torch.no_grad():
        t = t.detach().to(copy.device)  # (one tensor at a time off the GPU)
        return torch.equal(t, copy) or bool(((t == copy) | ((t != t) & (copy != copy))).all())


def _put_back(t: torch.Tensor, copy: torch.Tensor) -> None:
    with torch.no_grad():
        if t.shape == copy.shape and t.dtype == copy.dtype:
            t.copy_(copy)
        else:  # (resize_: the saved tensor itself)
            t.data = copy.to(t.device, copy=True)


def unchanged(model: torch.nn.Module, before: dict, again=None) -> None:
    """Raise NotImplementedError naming the model's tensors whose version
    counters moved since ``before`` (:func:`versions`), after putting their
    values back (a trace ran a forward that changes them in place), and the
    forward's line that changed the first: found by running ``again`` (the
    trace) once more, watched by :class:`_Watch`."""
    now = _tensors(model)
    moved = [
        name
        for name, t in now.items()
        if before.get(name, (id(t), t._version)) != (id(t), t._version)
        or (id(t) in _SAVED and not _same(t, _SAVED[id(t)][2]))
    ]
    moved += [name for name in before if name not in now]  # (a buffer set to a traced value)
    if not moved:
        return
    _put_entries(_ENTRIES)
    now = _tensors(model)
    _put_back_all(now[name] for name in moved if name in now)
    where = ""
    if again is not None:
        watch = _Watch([now[name] for name in moved if name in now])
        try:
            with watch:
                again()
        except Exception:  # the line is a hint: the refusal stands without it
            pass
        finally:
            _put_entries(_ENTRIES)
            _put_back_all(now[name] for name in moved if name in now)
        where = inplace._shown(watch.found)
    some = "s" if len(moved) > 1 else ""
    raise ModelStateChanged(
        f"{where or 'the forward'} changes the model's own tensor{some} "
        f"{', '.join(repr(n) for n in moved)} in place in its forward: torch's model "
        "keeps that change for its next call, and a converted model's parameters and buffers "
        "do not change in its forward. Change it outside the forward (under torch.no_grad(), "
        "between calls), or compute a new tensor out of place and use that"
    )


def _put_back_all(tensors) -> None:
    for t in tensors:
        saved = _SAVED.get(id(t))
        if saved is not None:
            _put_back(t, saved[2])


class _Watch(torch.overrides.TorchFunctionMode):
    """Notes the forward's line (file, line) of the first torch call that
    changes one of ``tensors`` (their version counters move)."""

    def __init__(self, tensors):
        super().__init__()
        self.tensors, self.found = tensors, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """Run ``func``; note the line where it changed a watched tensor."""
        out = func(*args, **(kwargs or {}))
        if self.found is not None:
            return out
        name = getattr(func, "__name__", "")
        named = name.startswith("__i") or (name.endswith("_") and not name.startswith("_"))
        # (the watched tensors start at their saved values, unchanged(): the
        # first call that leaves one off it changed it; no copy per call)
        if any(id(t) in _SAVED and not _same(t, _SAVED[id(t)][2]) for t in self.tensors) or (
            named and self.found is None and bool(args) and any(args[0] is t for t in self.tensors)
        ):  # (a traced value added in place to a buffer: recorded, not run)
            self.found = inplace._user_frame()
        return out
