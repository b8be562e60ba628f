"""torch.nn.Module's habits that a cryptgpu Module keeps too (a mixin of
:class:`cryptgpu.nn.Module`): forward hooks and pre-hooks, ``get_submodule``
and ``get_parameter``, and the dtype casts ``float()``/``double()``/
``half()`` (shares are fixed point: they stay as they are; plaintext
parameters are cast, as ``to(dtype)`` does). Backward hooks are refused
with a clear error: a module's gradient flows through recorded private
operations, not through a call a hook could wrap. :func:`borrowing`: layers
built around a caller's tensors for one functional call.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict

import torch
from torch.utils.hooks import RemovableHandle

from .._plain import tensor_type
from ..tensor_base import TensorBase


def _table(module, name: str) -> OrderedDict:
    d = module.__dict__
    if name not in d:
        object.__setattr__(module, name, OrderedDict())
    return d[name]


class InputTypeError(TypeError, AttributeError):
    """A layer given a list, str or None: torch raises TypeError from most
    layers and AttributeError from those calling a tensor method first
    (Softmax, Flatten, GLU); this is both."""


class ModuleHabits:
    """The methods above; :meth:`_hooked` runs a call through the hooks."""

    # A layer of this library whose first input must be a tensor; Identity,
    # containers and converted graphs take anything, as torch's do.
    _tensor_first = True

    def _check_tensor_first(self, x) -> None:
        """torch's TypeError for a list, str or None given to one of this
        library's layers (a user's own Module subclass may take anything)."""
        own = type(self).__module__.startswith("cryptgpu.")
        if own and self._tensor_first and not self.__dict__.get("_modules"):
            raise InputTypeError(
                f"{type(self).__name__}: argument 'input' (position 1) must be Tensor, "
                f"not {type(x).__name__}"
            )

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """``hook(module, args)`` (or ``(module, args, kwargs)`` with
        ``with_kwargs``) before each forward; it may return new args (or
        (args, kwargs)), as torch's. Returns a handle with ``remove()``."""
        return self._add_hook("_pre_hooks", hook, prepend, with_kwargs)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        """``hook(module, args, output)`` (or ``(module, args, kwargs,
        output)``) after each forward; it may return a new output, as
        torch's. Returns a handle with ``remove()``."""
        return self._add_hook("_post_hooks", hook, prepend, with_kwargs)

    def _add_hook(self, name, hook, prepend, with_kwargs) -> RemovableHandle:
        if getattr(self, "_traced", False):
            # a block the conversion traced through is never called: its
            # layers run inline, so its hook would silently never fire
            raise NotImplementedError(
                f"a forward hook on a {type(self).__name__} that from_pytorch traced "
                "through: its layers run inline in the converted graph, so it is never "
                "called; hook the model itself or one of its layers (a module the graph "
                "calls: one converted as a layer)"
            )
        table = _table(self, name)
        handle = RemovableHandle(table)
        table[handle.id] = (hook, bool(with_kwargs))
        if prepend:
            table.move_to_end(handle.id, last=False)
        return handle

    def _refuse_backward_hook(self, *args, **kwargs):
        raise NotImplementedError(
            "backward hooks on a cryptgpu module: its gradients flow through recorded "
            "private operations; read the parameters' .grad after backward() instead "
            "(or register_hook on a SharedTensor where provided)"
        )

    register_full_backward_hook = _refuse_backward_hook
    register_full_backward_pre_hook = _refuse_backward_hook
    register_backward_hook = _refuse_backward_hook

    def _hooked(self, call, args: tuple, kwargs: dict):
        """``call(*args, **kwargs)`` with the forward hooks around it."""
        d = self.__dict__
        for hook, with_kwargs in list(d.get("_pre_hooks", {}).values()):
            if with_kwargs:
                out = hook(self, args, kwargs)
                if out is not None:
                    args, kwargs = out
            else:
                out = hook(self, args)
                if out is not None:
                    args = out if isinstance(out, tuple) else (out,)
        result = call(*args, **kwargs)
        for hook, with_kwargs in list(d.get("_post_hooks", {}).values()):
            out = hook(self, args, kwargs, result) if with_kwargs else hook(self, args, result)
            if out is not None:
                result = out
        return result

    def get_submodule(self, target: str):
        """The module at dotted path ``target`` ("" for this one), as torch's."""
        m = self
        for part in target.split(".") if target else []:
            sub = m.__dict__.get("_modules", {})
            if part not in sub or sub[part] is None:
                raise AttributeError(f"{type(m).__name__} has no attribute `{part}`")
            m = sub[part]
        return m

    def get_parameter(self, target: str):
        """The parameter at dotted path ``target``, as torch's."""
        owner, _, name = target.rpartition(".")
        m = self.get_submodule(owner)
        if name not in m._params:
            raise AttributeError(f"{type(m).__name__} has no attribute `{name}`")
        return m._params[name]

    def float(self):
        """``model.float()``: shares as they are, plaintext parameters in float32."""
        return self.to(torch.float32)

    def double(self):
        """``model.double()``: shares as they are, plaintext parameters in float64."""
        return self.to(torch.float64)

    def half(self):
        """``model.half()``: shares as they are, plaintext parameters in float16."""
        return self.to(torch.float16)

    def bfloat16(self):
        """``model.bfloat16()``: shares as they are, plaintext ones in bfloat16."""
        return self.to(torch.bfloat16)

    def type(self, dst_type):
        """``model.type(torch.float64)`` (or a type name such as
        "torch.DoubleTensor"), torch's: as ``to(dtype)``: shares as they
        are, plaintext parameters cast."""
        target = tensor_type(dst_type)  # a tensor type class was ignored, silently
        if not isinstance(target[-1], torch.dtype):
            raise TypeError(f"type(): expected a dtype or a tensor type, got {dst_type!r}")
        return self.to(*target)

    def share_memory(self):
        """torch's ``share_memory()``, for a model handed to other processes:
        plaintext parameters and buffers moved to shared memory; an
        encrypted model is refused (its shares belong to the three parties
        and cannot be pickled to another process)."""
        values = [
            v
            for m in self.modules()
            for table in (m._params, m.__dict__.get("_buffers") or {})
            for v in table.values()
            if v is not None
        ]
        if not all(isinstance(v, torch.Tensor) for v in values):
            raise NotImplementedError(
                "share_memory() of an encrypted model: its shares cannot be passed to "
                "another process; run the parties with cryptgpu.spmd.run or "
                "run_multiprocess instead"
            )
        for v in values:
            v.share_memory_()
        return self


_BORROWED = contextvars.ContextVar("cryptgpu_borrowed", default=False)


@contextlib.contextmanager
def borrowing():
    """Layers built inside hold the caller's plaintext tensors as they are,
    their requires_grad untouched: a functional call (``F.group_norm(x, 2,
    w, b)``) builds a layer around the caller's tensors for one forward
    (until 2026-12-06 F.layer_norm, F.rms_norm, F.batch_norm,
    F.group_norm, F.instance_norm and F.embedding made them require grad,
    and the caller's own torch code then accumulated gradients into them)."""
    token = _BORROWED.set(True)
    try:
        yield
    finally:
        _BORROWED.reset(token)


def cast_plain(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A plaintext parameter or buffer in ``dtype`` (a parameter stays one)."""
    if v.dtype == dtype:
        return v
    out = v.detach().to(dtype)
    if isinstance(v, torch.nn.Parameter):
        out = torch.nn.Parameter(out, requires_grad=v.requires_grad)
    elif v.requires_grad and dtype.is_floating_point:
        out.requires_grad_(True)  # a fresh or decrypted one that trains
    for flag in ("_frozen", "_on"):
        if hasattr(v, flag):
            setattr(out, flag, getattr(v, flag))
    return out


def flagged(value, flag: str) -> bool:
    """A shared tensor that nn.Parameter / nn.Buffer flagged (an object
    answering every attribute, a config dict, is none)."""
    return isinstance(value, TensorBase) and getattr(value, flag, False) is True
