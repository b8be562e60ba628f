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
import warnings
from collections import OrderedDict

import torch
from torch.utils.hooks import RemovableHandle

from .._plain import tensor_type
from ..tensor_base import TensorBase
from .param_state import PlainParameter, own


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

    def extra_repr(self) -> str:
        """What ``repr`` shows inside the parentheses: the parameters' shapes."""
        return ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._params.items() if v is not None)

    def __repr__(self) -> str:
        # torch's layout: the extra line, then one "(name): child" line each
        lines = [self.extra_repr()] if self.extra_repr() else []
        for k, m in self._modules.items():
            lines.append(f"({k}): " + repr(m).replace("\n", "\n  "))
        if not self._modules:
            return f"{type(self).__name__}({''.join(lines)})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

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
        """``call(*args, **kwargs)`` with the forward hooks around it: the
        global ones (``torch.nn.modules.module.register_module_forward_hook``
        and ``register_module_forward_pre_hook``) first, as torch's (until
        2026-12-07 they never fired on a private module)."""
        d = self.__dict__
        g = torch.nn.modules.module
        if g._global_backward_hooks or g._global_backward_pre_hooks:
            # a warning, not a refusal: a profiler's global hook is for the
            # torch modules beside ours (each call raised, review 3)
            warnings.warn(
                "torch's global module backward hooks (register_module_full_backward_hook, "
                "register_module_full_backward_pre_hook, register_module_backward_hook) are "
                "not called on cryptgpu modules: their gradients flow through recorded private "
                "operations; read the parameters' .grad after backward()",
                RuntimeWarning,
                stacklevel=3,
            )
        pre = [(h, False) for h in g._global_forward_pre_hooks.values()]
        post = [(h, i in g._global_forward_hooks_with_kwargs) for i, h in _items(g)]
        for hook, with_kwargs in pre + list(d.get("_pre_hooks", {}).values()):
            if with_kwargs:
                out = hook(self, args, kwargs)
                if out is not None:
                    args, kwargs = out
            else:
                out = hook(self, args)
                if out is not None:
                    args = out if isinstance(out, tuple) else (out,)
        result = call(*args, **kwargs)
        for hook, with_kwargs in post + list(d.get("_post_hooks", {}).values()):
            out = hook(self, args, kwargs, result) if with_kwargs else hook(self, args, result)
            if out is not None:
                result = out
        return result

    def register_state_dict_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, prefix, keep_vars)`` before ``state_dict()``
        collects (this module's, or one holding it), as torch's."""
        return _add(self, "_sd_pre", (hook, True))

    def register_state_dict_post_hook(self, hook) -> RemovableHandle:
        """``hook(module, state_dict, prefix, local_metadata)`` after
        ``state_dict()`` collects; it may change the dict in place and
        returns None, as torch's."""
        return _add(self, "_sd_post", (hook, True))

    def _register_state_dict_hook(self, hook) -> RemovableHandle:
        """torch's older form of :meth:`register_state_dict_post_hook`: a
        dict the hook returns (on the module ``state_dict()`` is called on)
        replaces the state dict."""
        return _add(self, "_sd_post", (hook, False))

    def register_load_state_dict_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, state_dict, prefix, local_metadata, strict,
        missing_keys, unexpected_keys, error_msgs)`` before
        ``load_state_dict`` loads (renaming an old checkpoint's keys in
        ``state_dict``, a copy of the caller's; a message added to
        ``error_msgs`` makes it raise), as torch's."""
        return _add(self, "_ld_pre", (hook, True))

    def _register_load_state_dict_pre_hook(self, hook, with_module=False) -> RemovableHandle:
        """torch's older form of :meth:`register_load_state_dict_pre_hook`:
        the hook without the module unless ``with_module``."""
        return _add(self, "_ld_pre", (hook, bool(with_module)))

    def register_load_state_dict_post_hook(self, hook) -> RemovableHandle:
        """``hook(module, incompatible_keys)`` after ``load_state_dict``
        loads; emptying ``incompatible_keys.missing_keys`` (or
        ``unexpected_keys``) in place lets a strict load pass, as torch's."""
        return _add(self, "_ld_post", (hook, True))

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

    def cpu(self):
        """``to("cpu")``: the module itself in a CPU session."""
        return self.to("cpu")

    def cuda(self, device=None):
        """``to("cuda")``: the module itself in a CUDA session."""
        return self.to("cuda")

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


def _add(module, name: str, entry) -> RemovableHandle:
    table = _table(module, name)
    handle = RemovableHandle(table)
    table[handle.id] = entry
    return handle


def _hooks(root, name: str, prefix: str, post: bool) -> list:
    """(module, its prefix, hook, flag) for the hooks ``name`` below ``root``:
    parents first, or (``post``) children first, as torch's recursion."""
    mods = list(root.named_modules())
    out = [
        (m, prefix + n + "." if n else prefix, hook, flag)
        for n, m in mods
        for hook, flag in list(m.__dict__.get(name, {}).values())
    ]
    return out[::-1] if post else out


def state_dict_hooks(root, prefix: str, keep_vars: bool, collect):
    """``collect()``'s state dict with the state-dict hooks of ``root`` and
    the modules below it around it (module.py's ``state_dict``)."""
    for m, pre, hook, _ in _hooks(root, "_sd_pre", prefix, False):
        hook(m, pre, keep_vars)
    out = collect()
    for m, pre, hook, public in _hooks(root, "_sd_post", prefix, True):
        result = hook(m, out, pre, {"version": 1})
        if result is not None and public:
            raise RuntimeError("state_dict post-hook must return None")
        if result is not None and m is root:
            out = result
    return out


def load_pre_hooks(root, state: dict, strict: bool) -> tuple:
    """Run the load pre-hooks on ``state`` (changed in place); returns the
    missing keys, unexpected keys and error messages they added."""
    missing: list = []
    unexpected: list = []
    errors: list = []
    for m, pre, hook, with_module in _hooks(root, "_ld_pre", "", False):
        args = (state, pre, {"version": 1}, strict, missing, unexpected, errors)
        hook(m, *args) if with_module else hook(*args)
    if errors:
        raise RuntimeError(
            f"Error(s) in loading state_dict for {type(root).__name__}:\n\t" + "\n\t".join(errors)
        )
    return missing, unexpected


def load_post_hooks(root, keys) -> bool:
    """Run the load post-hooks with ``keys`` (torch's named tuple, changed in
    place); whether there were any."""
    hooks = _hooks(root, "_ld_post", "", True)
    for m, _, hook, _ in hooks:
        if hook(m, keys) is not None:
            raise AssertionError(
                "Hooks registered with ``register_load_state_dict_post_hook`` are not expected "
                "to return new values, if incompatible_keys need to be modified, it should be "
                "done inplace."
            )
    return bool(hooks)


def strict_check(m, keys) -> None:
    """A strict load's RuntimeError for missing or unexpected keys."""
    if keys.missing_keys or keys.unexpected_keys:
        raise RuntimeError(
            f"Error(s) in loading state_dict for {type(m).__name__}: missing keys "
            f"{keys.missing_keys}, unexpected keys {keys.unexpected_keys}"
        )


def _items(g) -> list:
    """torch's global forward hooks, (id, hook) in order."""
    return list(g._global_forward_hooks.items())


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
    if isinstance(v, torch.nn.Parameter) and not isinstance(v, PlainParameter):
        out = torch.nn.Parameter(out, requires_grad=v.requires_grad)
    elif v.requires_grad and dtype.is_floating_point:
        out.requires_grad_(True)  # a fresh or decrypted one that trains
    for flag in ("_frozen", "_on"):
        if hasattr(v, flag):
            setattr(out, flag, getattr(v, flag))
    return own(out) if isinstance(v, PlainParameter) else out


def flagged(value, flag: str) -> bool:
    """A shared tensor that nn.Parameter / nn.Buffer flagged (an object
    answering every attribute, a config dict, is none)."""
    return isinstance(value, TensorBase) and getattr(value, flag, False) is True
