"""Custom ``torch.autograd.Function``s on SharedTensors, torch's way.

``MyFn.apply(*args)`` with a SharedTensor argument runs ``MyFn.forward``
(with ``ctx``, or without it and then ``MyFn.setup_context``) on the
shares, unrecorded, as torch runs it with gradients off, and records one
node whose backward calls ``MyFn.backward(ctx, *grads)`` on the shared
gradients (:func:`apply`). A converted model's forward keeps such a call
as one graph step (:func:`traced`, :func:`run`), so that it gets the
Function's backward too: torch.fx recorded the forward's operations, run
by torch with gradients off, and the converted model trained as if the
Function were ``detach()`` (until 2026-12-07: DANN's gradient reversal
gave the features the head's gradient only, a straight-through
estimator left the layers before it with no gradient at all).

What cannot be done on shares is refused, naming the Function: a
``ctx.mark_dirty`` or an in-place change of an input, forward-mode
gradients (``ctx.save_for_forward``), and opening a value (``get_plain_text``,
``reveal``) inside its forward or backward."""

from __future__ import annotations

import contextlib
import inspect
import threading

import torch
from torch.autograd.function import FunctionCtx

from . import _session
from . import autograd as ag
from ._plain import _float64
from .tensor import SharedTensor


def _name(cls) -> str:
    return getattr(cls, "__qualname__", getattr(cls, "__name__", str(cls)))


class Context(FunctionCtx):
    """The ``ctx`` a Function's forward, setup_context and backward see on
    SharedTensors: torch's ``save_for_backward``/``saved_tensors``,
    ``needs_input_grad``, ``mark_non_differentiable``,
    ``set_materialize_grads`` and any attribute the Function sets."""

    def __init__(self, cls, needs_input_grad: tuple) -> None:
        self._cls = cls
        self.needs_input_grad = needs_input_grad
        self.to_save = ()
        self.non_differentiable = ()
        self.materialize_grads = True

    @property
    def saved_tensors(self) -> tuple:
        """What the forward (or setup_context) passed to save_for_backward."""
        return tuple(self.to_save)

    def mark_dirty(self, *args) -> None:
        """Refused: a Function that changes its inputs in place."""
        raise NotImplementedError(
            f"{_name(self._cls)}: a custom autograd.Function that changes its input in place "
            "(ctx.mark_dirty) is not supported on SharedTensors: return a new tensor"
        )

    def save_for_forward(self, *args) -> None:
        """Refused: forward-mode gradients are not provided."""
        raise NotImplementedError(
            f"{_name(self._cls)}: ctx.save_for_forward (forward-mode gradients, jvp) is not "
            "supported on SharedTensors"
        )


class _Grads:
    """The gradients of a Function's outputs, one slot each (None where no
    gradient reached it), summed slot by slot as the backward pass sums a
    node's gradients."""

    __slots__ = ("slots",)

    def __init__(self, slots: list) -> None:
        self.slots = slots

    def __add__(self, other: _Grads) -> _Grads:
        def add(a, b):
            return b if a is None else a if b is None else a + b

        return _Grads([add(a, b) for a, b in zip(self.slots, other.slots)])


@contextlib.contextmanager
def _sealed(cls, what: str):
    """Opening a SharedTensor refused (:func:`autograd.refuse_opening`)
    while the Function's ``what`` runs."""
    ctx = _session._ctx
    was = getattr(ctx, "sealed", None)
    ctx.sealed = f"{_name(cls)}.{what}"
    try:
        yield
    finally:
        ctx.sealed = was


def apply(cls, args: tuple, kwargs: dict):
    """``cls.apply(*args, **kwargs)`` on SharedTensors: the forward run on
    the shares, unrecorded, and one recorded node for ``cls.backward``."""
    new_style = torch.autograd.function._is_setup_context_defined(cls.setup_context)
    if new_style:  # as torch's: keywords and defaults bound to positions (setup_context's inputs)
        bound = inspect.signature(cls.forward).bind(*args, **kwargs)
        bound.apply_defaults()
        args, kwargs = tuple(bound.args), bound.kwargs
    elif kwargs:  # keywords bound to positions, as torch's: a tensor by keyword gets its gradient
        bound = inspect.signature(cls.forward).bind(None, *args, **kwargs)  # (None: ctx)
        args, kwargs = tuple(bound.args[1:]), bound.kwargs
    recording = ag.is_grad_enabled()
    needs = tuple(isinstance(a, ag.Node) and a.requires_grad and recording for a in args)
    ctx = Context(cls, needs)
    states = [(a, a._t) for a in args if isinstance(a, SharedTensor)]
    with ag.inside(any(needs)), ag.torch_grad(False), _sealed(cls, "forward"):
        if new_style:
            out = cls.forward(*args, **kwargs)
            cls.setup_context(ctx, args, out)
        else:
            out = cls.forward(ctx, *args, **kwargs)
    for a, t in states:
        if a._t is not t:  # changed in place: put back (in a view's base too), then refuse
            a._t = t
            a._write_back()
            ctx.mark_dirty()
    many = isinstance(out, tuple)
    outs = list(out) if many else [out]
    fixed = {id(t) for t in ctx.non_differentiable}
    known = {id(a) for a in args}
    for i, o in enumerate(outs):
        if isinstance(o, SharedTensor) and (id(o) in known or o._back is not None or o._rg):
            outs[i] = o.detach()  # an input, or a tensor made before: a new alias, as torch's
            if id(o) in fixed:
                fixed.add(id(outs[i]))
    if not any(needs):
        return tuple(outs) if many else outs[0]
    for t in args:  # a plaintext torch tensor that requires grad: its gradient is lost
        if isinstance(t, torch.Tensor) and t.requires_grad:
            first = next(a for a, need in zip(args, needs) if need)
            ag.lose_gradient(first, t, f"{_name(cls)}.apply")
    joint = ag.Node.__new__(ag.Node)
    joint._grad, joint._lost, joint._hooks = None, None, None
    slots = [o if isinstance(o, (SharedTensor, torch.Tensor)) else None for o in outs]
    ag.record(
        joint,
        [a if isinstance(a, ag.Node) else None for a in args],
        _backward(cls, ctx, slots, args),
    )
    name = ag.GradFn(f"{cls.__name__}Backward")
    for i, o in enumerate(outs):
        if isinstance(o, SharedTensor) and id(o) not in fixed:
            ag.record(o, (joint,), _one(i, len(outs)))
            o._gfn = name
    return tuple(outs) if many else outs[0]


def _one(i: int, n: int):
    def back(g):
        slots = [None] * n
        slots[i] = g
        return (_Grads(slots),)

    back.__qualname__ = "custom_function"
    return back


def _backward(cls, ctx: Context, outs: list, args: tuple):
    """The recorded node's gradient rule: ``cls.backward`` on the output
    gradients (missing ones as zeros unless ``set_materialize_grads(False)``),
    its results checked as torch checks them."""

    def back(grads: _Grads):
        given = []
        for o, g in zip(outs, grads.slots):
            if g is None and o is not None and ctx.materialize_grads:
                g = o._public_like(0.0) if isinstance(o, SharedTensor) else torch.zeros_like(o)
            given.append(g)
        with ag.torch_grad(False), _sealed(cls, "backward"):
            res = cls.backward(ctx, *given)
        res = list(res) if isinstance(res, tuple) else [res]
        if len(res) > len(args) and all(r is None for r in res[len(args) :]):
            res = res[: len(args)]  # trailing Nones are allowed, as torch's
        if len(res) != len(args):
            raise RuntimeError(
                f"function {cls.__name__}Backward returned an incorrect number of gradients "
                f"(expected {len(args)}, got {len(res)})"
            )
        return tuple(_gradient(cls, i, a, r) for i, (a, r) in enumerate(zip(args, res)))

    back.__qualname__ = "custom_function"
    return back


def _gradient(cls, i: int, a, r):
    """The backward's result ``r`` for input ``a`` (position ``i``), as a
    SharedTensor of ``a``'s shape (summed over broadcast dims, as torch's)."""
    if r is None:
        return None
    if not isinstance(a, (ag.Node, torch.Tensor)):
        raise RuntimeError(
            f"function {cls.__name__}Backward returned a gradient different than None at "
            f"position {i + 1}, but the corresponding forward input was not a Variable"
        )
    if not isinstance(r, (ag.Node, torch.Tensor)):
        raise TypeError(
            f"function {cls.__name__}Backward returned a {type(r).__name__} at position "
            f"{i + 1}: a gradient is a tensor or None"
        )
    if not isinstance(a, ag.Node):
        return None  # a plaintext input: no gradient kept
    want, got = tuple(a.shape), tuple(r.shape)
    if got != want:
        try:
            ok = torch.Size(torch.broadcast_shapes(want, got)) == torch.Size(got)
        except RuntimeError:
            ok = False
        if not ok:
            raise RuntimeError(
                f"Function {cls.__name__}Backward returned an invalid gradient at index {i} - "
                f"got {list(got)} but expected shape compatible with {list(want)}"
            )
    if not isinstance(r, ag.Node):  # a public gradient
        r = a._public(_float64(r, "gradient").detach().contiguous().numpy())
    return ag.unbroadcast(r, want) if got != want else r


# --------------------------------------------------------------- conversion

_KEYS: dict = {}  # registry key -> Function class (fx node arguments cannot hold a class)
_LOCK = threading.Lock()


def key_of(cls) -> str:
    """The registry key naming ``cls`` in a converted graph."""
    base = f"{cls.__module__}.{_name(cls)}"
    with _LOCK:
        key, n = base, 1
        while _KEYS.get(key, cls) is not cls:
            n += 1
            key = f"{base}#{n}"
        _KEYS[key] = cls
    return key


def run(key: str, *args, **kwargs):
    """A converted graph's step for ``MyFn.apply(*args)``: the Function
    applied to the step's values, public (torch's own ``apply``) or shared
    (:func:`apply`)."""
    cls = _KEYS.get(key)
    if cls is None:
        raise RuntimeError(
            f"custom autograd.Function {key!r} is not known in this process: convert the "
            "model here (from_pytorch) rather than loading a converted graph"
        )
    return cls.apply(*args, **kwargs)


def traced(cls, args: tuple, kwargs: dict):
    """During cryptgpu's conversion trace, ``cls.apply(...)`` on traced
    values as one graph step (a Proxy), else None (not traced by us)."""
    proxies = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.fx.Proxy)]
    if not proxies or not getattr(proxies[0].tracer, "cryptgpu_functions", False):
        return None
    try:
        return proxies[0].tracer.create_proxy("call_function", run, (key_of(cls), *args), kwargs)
    except NotImplementedError as e:  # an argument a graph cannot hold (a function)
        raise NotImplementedError(
            f"{_name(cls)}.apply in a converted forward: an argument cannot be held by the "
            f"graph ({e}); pass tensors and constants only"
        ) from None
