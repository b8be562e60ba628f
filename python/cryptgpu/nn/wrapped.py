"""What torch.fx's tracer cannot see through, made convertible where that
is safe, and named where it is not (probe NB, 2026-12-07).

* A plain-Python function marked with ``torch.fx.wrap`` outside torch
  (torchvision's ``stochastic_depth``, its Swin helpers): fx records each
  call as one leaf node, which the conversion cannot run, so torchvision's
  EfficientNet, ConvNeXt and MaxViT were refused even in eval mode, where
  ``StochasticDepth`` is the identity. The tracer traces through such a
  body instead (ordinary torch operations); where the body does not trace
  (control flow on a traced size: torchvision's ``shifted_window_attention``)
  the leaf node stays, with why (:func:`refusal`).
* A branch on a traced value's ``requires_grad`` (gradient checkpointing:
  torchvision's ``DenseNet(memory_efficient=True)``, whose
  ``any_requires_grad`` ended the trace with an fx error naming nothing)
  follows ``requires_grad=False``, with a warning: checkpointing only saves
  torch's memory in training, the values are the same, and the conversion
  check (a dummy input) compares them with the torch model's.
* A tracing error names the module whose forward raised it (:func:`where`).
* A tensor hook registered in the forward (``h.register_hook(fn)``) is
  refused naming the hook, the module and the line (until 2026-12-07 fx's
  "argument of type: <class 'function'>").
"""

from __future__ import annotations

import linecache
import os
import sys
import types
import warnings

import torch
from torch.fx import _symbolic_trace

# node.meta key: why a torch.fx.wrap'ped function's body did not trace
INLINE_ERROR = "cryptgpu_inline_error"


def _wrapped_functions() -> dict:
    """id -> function, for the plain-Python functions registered with
    ``torch.fx.wrap`` outside torch (torch's own stay leaves)."""
    out = {}
    table = getattr(_symbolic_trace, "_wrapped_fns_to_patch", {})
    for (_, name), frame in list(table.items()):
        fn = frame.get(name)
        home = getattr(fn, "__module__", None) or ""
        if isinstance(fn, types.FunctionType) and not (home == "torch" or home[:6] == "torch."):
            out[id(fn)] = fn
    return out


class Inlining:
    """A torch.fx Tracer mixin: traces through ``torch.fx.wrap``'ped
    functions (rolled back to fx's leaf node where a body does not trace),
    answers ``requires_grad`` branches with False, and tags an error with
    the module whose forward raised it (``error._cryptgpu_where``)."""

    def trace(self, root, concrete_args=None):
        self._inline, self._returned, self._grad_branches = _wrapped_functions(), [], []
        self._cache = None
        graph = super().trace(root, concrete_args)
        # fx's wrapper marks what a call returned as a wrapped call (its
        # code then re-registers the name): not what a body returned
        plain = {id(n): n for n, had in self._returned if not had}
        for node in plain.values():
            node.meta.pop("is_wrapped", None)
        branches = list(dict.fromkeys(self._grad_branches))
        if branches and isinstance(root, torch.nn.Module) and not root.training:  # once
            more = f" and {len(branches) - 1} more" if len(branches) > 1 else ""
            warnings.warn(
                f"the forward of {branches[0]}{more} branches on a traced value's "
                "requires_grad (gradient checkpointing, such as torchvision's "
                "DenseNet(memory_efficient=True)); the converted model computes the "
                "requires_grad=False branch in both modes (the same values where the other "
                "branch only saves torch's memory)",
                stacklevel=7,
            )
        return graph

    _STATE = ("module_stack", "num_calls", "_cache")  # the tracer's, put back at a rollback

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        self._cache = parameter_proxy_cache  # the trace's own: rolled back too
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_proxy(self, kind, target, args, kwargs, *rest, **kw):
        if kind == "call_method" and target in _TENSOR_HOOKS:
            stack = list(self.module_stack.values())
            raise NotImplementedError(
                f"{target}({getattr(args[1], '__qualname__', type(args[1]).__name__)}) on a "
                f"traced tensor in the forward of {_named(stack[-1]) if stack else 'the model'}"
                f", at {_forward_line()}: a converted forward cannot record a tensor hook "
                "(torch.fx records no function argument); take it out of the forward and "
                "register it on the converted model's SharedTensor output instead "
                "(out = model(x); out.register_hook(fn))"
            )
        fn = self._inline.get(id(target)) if kind == "call_function" else None
        if fn is None or fn is not target:
            return super().create_proxy(kind, target, args, kwargs, *rest, **kw)
        count = len(self.graph.nodes)
        saved = [dict(getattr(self, k, None) or {}) for k in self._STATE]
        try:
            out = fn(*args, **(kwargs or {}))
            if isinstance(out, torch.fx.Proxy) and out.tracer is self:
                self._returned.append((out.node, bool(out.node.meta.get("is_wrapped"))))
                return out
            why = f"it returned a {type(out).__name__}, not one traced tensor"
        except Exception as e:  # its body does not trace: fx's leaf node, with why
            why = f"{type(e).__name__}: {e}"
        self._rollback(count, saved)
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
        proxy.node.meta[INLINE_ERROR] = why
        return proxy

    def _rollback(self, count: int, saved: list) -> None:
        """Erase the nodes made since the graph had ``count`` nodes, and
        put the tracer's module stack, call counts and parameter proxies
        back as they were."""
        made = list(self.graph.nodes)[count:]
        for node in reversed(made):
            self.graph.erase_node(node)
        for have, was in zip((getattr(self, k, None) for k in self._STATE), saved):
            if have is not None:
                have.clear()
                have.update(was)

    def to_bool(self, obj):
        if isinstance(obj, torch.fx.proxy.Attribute) and obj.attr == "requires_grad":
            stack = list(self.module_stack.values())
            self._grad_branches.append(_named(stack[-1]) if stack else "the model")
            return False
        return super().to_bool(obj)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:
            if not hasattr(e, "_cryptgpu_where"):  # the innermost module
                try:
                    e._cryptgpu_where = _named((self.path_of_module(m), type(m)))
                except Exception:  # an exception that takes no attributes
                    pass
            raise


_TENSOR_HOOKS = {"register_hook", "register_post_accumulate_grad_hook"}
_LIBRARY_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))


def _forward_line() -> str:
    """'`<source line>` (file:line)' of the innermost frame outside torch and
    cryptgpu (the forward being traced)."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_LIBRARY_DIRS):
        f = f.f_back
    if f is None:
        return "an unknown line"
    name, no = f.f_code.co_filename, f.f_lineno
    text = linecache.getline(name, no).strip()
    return f"`{text}` ({os.path.basename(name)}:{no})" if text else f"{name}:{no}"


def _named(entry) -> str:
    """'name' (module.Class) of a module stack entry (path, class)."""
    path, kind = entry if isinstance(entry, tuple) else (str(entry), None)
    kind = f" ({kind.__module__}.{kind.__qualname__})" if isinstance(kind, type) else ""
    return f"{path!r}{kind}"


def where(e: BaseException) -> str:
    """ " (in the forward of 'block.0' (pkg.Class))" for a tracing error
    tagged by :class:`Inlining`, and ", at `line` (file:no): ..." for a
    branch tagged by :class:`guards.SizeChecks`; else ""."""
    tag, at = getattr(e, "_cryptgpu_where", None), getattr(e, "_cryptgpu_at", None)
    return (f" (in the forward of {tag})" if tag else "") + (f", at {at}" if at else "")


def refusal(node) -> str:
    """The words after "unsupported function f at node 'n'" for a
    ``torch.fx.wrap``'ped function whose body did not trace, else ""."""
    why = node.meta.get(INLINE_ERROR) if node.op == "call_function" else None
    if why is None:
        return ""
    msg = f": a torch.fx.wrap'ped function whose body torch.fx cannot trace ({why})"
    if getattr(node.target, "__module__", "").startswith("torchvision.models.swin"):
        msg += (
            "; torchvision's Swin Transformer (v1 and v2) is not supported: its window "
            "attention branches on the feature map's traced size. Hugging Face's Swin "
            "(transformers' SwinModel, SwinForImageClassification) converts"
        )
    return msg
