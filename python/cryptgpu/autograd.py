"""Reverse-mode autograd for SharedTensor: a tape of recorded operations.

Each differentiable operation that has an input with ``requires_grad`` records
its parents and a function from the output's gradient to the parents'
gradients; ``backward()`` walks the tape in reverse topological order. The
gradients are SharedTensors computed by the same protocols (one more
multiplication per product, an im2col/col2im pair per convolution, a
multiplication by the kept mask per ReLU and max-pool).
"""

from __future__ import annotations

import collections
import contextlib
import dis
import functools
import os
import sys
import time

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

from . import _native, _session
from ._plain import _float64


class Node:
    """A value on the tape: SharedTensor derives from it. ``_back`` holds the
    parents and the gradient function of a recorded operation (None for a
    leaf); ``grad`` receives a leaf's accumulated gradient."""

    # (_uses: how many recorded operations read it)
    __slots__ = ("_rg", "_frozen", "_grad", "_back", "_kind", "_lost", "_retain", "_hooks")
    __slots__ += ("_gfn", "_uses", "_acc_hooks")

    def retain_grad(self) -> None:
        """As torch's: a result computed from a tensor that requires grad
        (not a leaf) also receives its gradient in ``.grad`` at backward."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        self._retain = self._back is not None

    @property
    def retains_grad(self) -> bool:
        """Whether :meth:`retain_grad` was called on this non-leaf."""
        return getattr(self, "_retain", False)

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for (or through) this value."""
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag) -> None:
        # Set by the user: also whether Module.train() may turn it back on
        # (a parameter frozen with requires_grad = False stays frozen).
        if not isinstance(flag, (bool, np.bool_)):
            raise RuntimeError("requires_grad must be a bool")
        if self._back is not None:
            # a recorded result: torch's error (turning it off detached it
            # silently, and backward() then missed its inputs' gradients)
            if flag:
                return
            raise RuntimeError(_NOT_A_LEAF)
        self._rg = bool(flag)
        self._frozen = not flag

    @property
    def grad_fn(self):
        """As torch's: None for a leaf (and a tensor that does not require
        grad); for a recorded result, the node that computes its inputs'
        gradients (``name()``; torch's ``next_functions`` is not provided)."""
        back = self._back
        if back is None:
            return None
        gf = getattr(self, "_gfn", None)
        if gf is None:
            gf = self._gfn = GradFn(_fn_name(back[1]))
        return gf

    def register_hook(self, hook):
        """As torch's: ``hook(grad)`` is called with this tensor's gradient
        when backward() computes it (before a leaf accumulates it into
        ``.grad``, before a result passes it on); a tensor it returns
        replaces the gradient. Returns a handle whose ``remove()`` removes it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if not callable(hook):
            raise TypeError(f"register_hook expects a callable, got {type(hook).__name__}")
        return self._add_hook("_hooks", hook)

    def _add_hook(self, attr: str, hook):
        """``hook`` added to this tensor's hooks dict ``attr`` (made on first
        use); its removable handle."""
        hooks = getattr(self, attr, None)
        if hooks is None:
            hooks = collections.OrderedDict()
            setattr(self, attr, hooks)
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def register_post_accumulate_grad_hook(self, hook):
        """As torch's: ``hook(tensor)`` is called on this leaf after
        backward() accumulates its gradient into ``.grad`` (an optimiser
        step per parameter); returns a handle whose ``remove()`` removes it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._back is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        return self._add_hook("_acc_hooks", hook)

    @property
    def grad(self):
        """The accumulated gradient of a leaf (None before a backward)."""
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        # torch's checks: a tensor of this shape, or None (the wrong shape
        # failed only later, inside a backward, as a ShapeError)
        if value is not None:
            if not hasattr(value, "shape") or isinstance(value, np.ndarray):
                raise TypeError(
                    "assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}"
                )
            if tuple(value.shape) != tuple(self.shape):
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(value.shape)}' to a "
                    f"tensor of size '{list(self.shape)}'. Please ensure that the gradient "
                    "and the tensor are the same size"
                )
        self._grad = value


_NOT_A_LEAF = (
    "you can only change requires_grad flags of leaf variables. If you want to use a "
    "computed variable in a subgraph that doesn't require differentiation use "
    "var_no_grad = var.detach()."
)


class GradFn:
    """What ``grad_fn`` returns for a recorded result: its name, torch-like
    (``MulBackward0``), from the gradient rule that recorded it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        """The node's name, as torch's ``grad_fn.name()``."""
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name} object at {hex(id(self))}>"


def _fn_name(fn) -> str:
    """``MulBackward0`` for the gradient function that ``record_mul``
    (``exp``, ``Linear.forward``) defined."""
    parts = (getattr(fn, "__qualname__", "") or "").split(".<locals>")[0].split(".")
    name = parts[-1]
    if name in ("forward", "__call__", "back", "<lambda>", "") and len(parts) > 1:
        name = parts[-2]
    if name.startswith("record_"):
        name = name[len("record_") :]
    words = [w for w in name.strip("_<>").split("_") if w and w != "public"]
    return "".join(w[:1].upper() + w[1:] for w in words) + "Backward0"


def is_grad_enabled() -> bool:
    """False inside :func:`no_grad` or ``torch.no_grad()``, True otherwise."""
    return _session._ctx.grad_enabled and torch.is_grad_enabled()


def no_grad(fn=None):
    """Do not record operations (inference, optimiser updates, backward): a
    context manager, or a decorator with or without parentheses (as
    torch's and CrypTen's)."""
    if callable(fn):
        return _no_grad()(fn)
    return _no_grad()


class _no_grad(_native.RestoreOnExit, contextlib.ContextDecorator):
    """A class, as torch's: a generator-based manager interrupted (Ctrl-C)
    right after it switched recording off, before its ``with`` block began,
    put back its stale mode when the generator was collected, long after
    the outer block had restored recording: recording stayed off for good
    (a user probe: 1 interrupt in 400 during backward()). Here nothing
    runs after the switch, so no signal handler can come between; and the
    ``__exit__`` is native (``_native.RestoreOnExit``): a Python one could
    be interrupted at its first line, before it restored anything."""

    def __enter__(self):
        ctx = _session._ctx
        self._restore = ((ctx, "grad_enabled", ctx.grad_enabled),)
        ctx.grad_enabled = False

    def _recreate_cm(self):
        return _no_grad()  # a decorated function's calls may nest


class set_grad_enabled(_native.RestoreOnExit, contextlib.ContextDecorator):
    """CrypTen's and torch's ``set_grad_enabled(mode)``: recording on or off
    at once (a call), until the ``with`` block ends (a context manager) or
    around a function (a decorator), for shared and torch tensors alike.

    In ``with set_grad_enabled(mode):`` the switch is made by the native
    ``__enter__`` (``_native.RestoreOnExit``), so a Ctrl-C cannot land
    between it and the block (it switched in the constructor: an interrupt
    right after torch's switch returned, before the ``with`` statement
    began, left recording off for good). Any other use (a call, a manager
    made first and entered later) switches in the constructor, as torch's
    ``set_grad_enabled``, and has its window: an interrupt between the
    constructor and the block leaves the mode switched."""

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):  # torch's TypeError ("yes" enabled recording)
            raise TypeError(
                f"set_grad_enabled(): argument 'mode' must be bool, not {type(mode).__name__}"
            )
        self._switch(mode, sys._getframe(1))

    def _switch(self, mode: bool, caller) -> None:
        ctx = _session._ctx  # put back by the native __exit__ (see _no_grad)
        self._mode = mode
        self._enter = ((ctx, "grad_enabled", mode), (*_TORCH_GRAD, mode))
        if not _opens_with(caller):  # a call: now (the constructor's window, as torch's)
            self.__enter__()
            del self._enter  # entered later, it changes nothing (as torch's)

    def __call__(self, fn):
        # as a decorator: set on each call, not once at decoration
        self.__exit__(None, None, None)
        mode = self._mode

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapped


# torch's grad-mode switch and its reader, both native: a (setter, getter)
# pair of an ``_enter`` entry of _native.RestoreOnExit
_TORCH_GRAD = (torch._C._set_grad_enabled, torch._C.is_grad_enabled)


def _opens_with(frame) -> bool:
    """Whether the call that ``frame`` is making is the expression of a
    ``with`` statement: its next instruction enters the result
    (``SETUP_WITH`` in CPython 3.9 and 3.10, ``BEFORE_WITH`` in 3.11 to
    3.13; for any other, False: the constructor switches at once)."""
    return _next_op(frame.f_code, frame.f_lasti) in ("BEFORE_WITH", "SETUP_WITH")


@functools.lru_cache(maxsize=1024)
def _next_op(code, lasti: int):
    found = False
    for ins in dis.get_instructions(code):
        if found:
            return ins.opname
        found = ins.offset == lasti
    return None


class torch_grad(_native.RestoreOnExit):
    """torch's grad mode set to ``mode`` for a ``with`` block, for the
    library's plaintext torch work (a conversion's reference run, a copy
    into a torch parameter, a step's closure): ``torch.no_grad()`` and
    ``torch.enable_grad()`` have a Python ``__exit__``, which a Ctrl-C
    can interrupt at its first line, leaving torch's mode switched for
    good. Here ``__enter__`` and ``__exit__`` are both native
    (``_native.RestoreOnExit``): no signal handler runs between the switch
    and the block, nor between the block and the restore. ``mode=None``
    keeps the mode and puts it back at the end: a guard around torch's own
    code (a conversion builds and runs torch layers, whose ``no_grad``
    blocks torch interrupts as any; the interrupt passes through here)."""

    def __init__(self, mode: bool | None = None) -> None:
        self._enter = ((*_TORCH_GRAD, torch.is_grad_enabled() if mode is None else mode),)


def enable_grad(fn=None):
    """Record operations again inside a ``no_grad`` block (CrypTen's and
    torch's ``enable_grad``; a context manager or a decorator, with or
    without parentheses)."""
    on = set_grad_enabled.__new__(set_grad_enabled)
    if callable(fn):  # switched at each call only
        on._mode = True
        return on(fn)
    on._switch(True, sys._getframe(1))  # ``with enable_grad():``: in the native __enter__
    return on


class inside(_native.RestoreOnExit):
    """The inside of one recorded operation (a loss, BatchNorm's batch
    statistics, max-pool's tournament): nothing is recorded, and when the
    operation itself is recorded (``recorded``) its truncations count as
    training work, exact in "auto" mode, as if autograd recorded each.
    Plain ``no_grad`` here made them probabilistic, and one wrapped element
    of a loss gradient or a BatchNorm output wrecked a training run. A
    class with a native ``__exit__``, as ``_no_grad``, for the same reason."""

    def __init__(self, recorded: bool) -> None:
        self._recorded = recorded

    def __enter__(self):
        ctx = _session._ctx
        self._restore = (
            (ctx, "grad_enabled", ctx.grad_enabled),
            (ctx, "training_depth", ctx.training_depth),
        )
        if self._recorded:
            ctx.training_depth += 1
        ctx.grad_enabled = False


def refuse_opening() -> None:
    """Raise while a custom autograd.Function's forward or backward runs on
    shares (custom_functions.py): what it opened would be known to all."""
    where = getattr(_session._ctx, "sealed", None)
    if where:
        raise NotImplementedError(
            f"{where} opens a SharedTensor: a custom autograd.Function runs on the shares, "
            "and what it opened would be known to every party; compute with the tensor's "
            "own operations (comparisons, torch.where) instead"
        )


def needs_grad(*xs) -> bool:
    """True when ``x`` is a SharedTensor that is, or depends on, a leaf that requires grad."""
    if not is_grad_enabled():
        note = getattr(_session._ctx, "unrecorded", None)
        if note is not None and not note[2] and any(getattr(x, "requires_grad", False) for x in xs):
            # a tensor that requires grad used under no_grad since the note:
            # a backward() from a result of this is no longer the note's doing
            _session._ctx.unrecorded = (note[0], note[1], True)
        return False
    return any(getattr(x, "requires_grad", False) for x in xs)


def lose_gradient(x, t, what: str) -> None:
    """A plaintext torch tensor ``t`` that requires grad meets ``x`` (which
    does) in ``what``: the node this operation records from ``x`` carries
    the news, and a backward through it raises. The note holds the
    operation's entry frame (the outermost of this package's frames: the
    user called it from outside): once that has returned or raised, the
    note is stale (an operation that raised before recording must not pass
    its note to the next one on ``x``)."""
    f = entry = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PACKAGE):
        entry, f = f, f.f_back
    _session._ctx.lost = (x, _lost_message(t, what), entry)


def note_unrecorded(t, what: str) -> None:
    """A plaintext torch tensor ``t`` that requires grad met SharedTensors
    that do not in ``what``: nothing is recorded (inference with plaintext
    weights is fine), but a backward() from a tensor that does not require
    grad names this, the most recent such use, as the likely cause (until
    2026-12-05 it said only that no input requires grad). Once a tensor
    that requires grad is used under no_grad (``needs_grad``), the note is
    named only as one possible cause beside no_grad (it was blamed for a
    loss computed under no_grad)."""
    _session._ctx.unrecorded = (
        _session.current().id,
        f"{what}: a plaintext torch tensor that requires grad (shape {list(t.shape)}) was "
        "used with SharedTensors that do not, so nothing was recorded: its gradient cannot be "
        "computed (it would be private, and a torch tensor's .grad cannot hold it). "
        "Encrypt it (cryptgpu.cryptensor(w, requires_grad=True), or model.encrypt()) to "
        "train it, or detach it to keep it fixed",
        False,  # no tensor that requires grad used under no_grad since
    )


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _lost_message(t, what: str) -> str:
    return (
        f"{what}: a plaintext torch tensor that requires grad (shape {list(t.shape)}) was "
        "used with a SharedTensor that requires grad; its gradient would be private, and "
        "a torch tensor's .grad cannot hold it. Encrypt it (cryptgpu.cryptensor(w, "
        "requires_grad=True), or model.encrypt()) to train it, or detach it to keep it fixed "
        "(a plaintext model's weights: model.requires_grad_(False) or model.eval())"
    )


def _on_stack(frame) -> bool:
    f = sys._getframe(2)
    while f is not None:
        if f is frame:
            return True
        f = f.f_back
    return False


def record(out, parents, fn):
    """Mark ``out`` as computed from ``parents``; ``fn(g)`` returns one
    gradient (or None) per parent. A shared parent that does not require
    grad now is kept as None: the graph's edges are fixed here, as torch's,
    so one that requires grad later (``requires_grad_()``, ``acc += x * 2``
    in place) does not receive, and pass on, this result's gradient."""
    lost = getattr(_session._ctx, "lost", None)
    if lost is not None:
        if not _on_stack(lost[2]):
            _session._ctx.lost = None  # its operation is over (it raised)
        elif any(p is lost[0] for p in parents):
            out._lost, _session._ctx.lost = lost[1], None
    out._rg, out._frozen = True, False
    out._back = (tuple(None if isinstance(p, Node) and not p._rg else p for p in parents), fn)
    for p in out._back[0]:
        if isinstance(p, Node):
            p._uses = getattr(p, "_uses", 0) + 1  # read by a recorded operation
    if _holds(fn, out):  # its own rule reads it: an in-place change would reach that
        out._uses = getattr(out, "_uses", 0) + 1
    kinds = _session._ctx.layer_kinds
    out._kind = kinds[-1] if kinds else None
    return out


def _holds(fn, out) -> bool:
    """Whether the gradient rule ``fn`` holds the result ``out`` itself."""
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            if cell.cell_contents is out:
                return True
        except ValueError:  # an empty cell
            continue
    return False


def unbroadcast(g, shape):
    """Sum a gradient over the dims that broadcasting expanded."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.dim() - len(shape)
    dims = list(range(lead)) + [
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1
    ]
    out = g.sum(dims, keepdim=True) if dims else g
    return out.reshape(shape)


# What a recorded node's ``_back`` becomes once backward() has used and freed
# it: a second backward through it is an error, as in torch (not a silent
# no-op that treats the node as a leaf).
_FREED = ((), None)

_SECOND_TIME = (
    "Trying to backward through the graph a second time: backward() frees the "
    "recorded operations; recompute the forward pass"
)


def _run_back(t, fn, g):
    """fn(g), timed and charged to the layer kind ``t`` was recorded in."""
    kind = getattr(t, "_kind", None)
    if kind is None:
        return fn(g)
    t0, before = time.perf_counter(), _session.comm_totals()
    out = fn(g)
    _session.add_layer_stats(
        kind, "backward_", time.perf_counter() - t0, before, _session.comm_totals()
    )
    return out


def backward(root, grad=None, retain_graph: bool = False, inputs=None, collect: bool = False):
    """Back-propagate ``grad`` (default 1) from ``root`` (or a list of roots
    and of their gradients) to every leaf's ``.grad``; the recorded graph
    is freed unless ``retain_graph``. With ``inputs`` only those tensors
    (leaves or not) receive a gradient, in ``.grad``, or, with ``collect``
    (``torch.autograd.grad``), returned as a list (None where unused)."""
    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    seeds = list(grad) if isinstance(root, (list, tuple)) else [grad]
    for t in roots + list(inputs or ()):
        if not isinstance(t, Node):
            raise NotImplementedError(
                f"a backward from or to a {type(t).__name__} together with SharedTensors: "
                "call torch's backward (or autograd.grad) on the torch tensors and "
                "cryptgpu's on the SharedTensors separately"
            )
    if len(seeds) != len(roots):
        raise RuntimeError(f"got {len(seeds)} gradients for {len(roots)} outputs")
    seeds = [_seed(r, g) for r, g in zip(roots, seeds)]
    if inputs is not None and not inputs:
        raise RuntimeError("'inputs' argument to 'backward()' cannot be empty.")
    targets = None if inputs is None else {id(t): t for t in inputs}
    for t in (targets or {}).values():
        if not isinstance(t, Node) or not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    # Topological order without recursion (deep networks).
    order, seen, stack = [], set(), [(r, False) for r in roots]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._back is _FREED:
            raise RuntimeError(_SECOND_TIME)
        if t._lost is not None and targets is None:  # (with inputs: not asked for)
            raise RuntimeError(t._lost)
        if t._back is not None:
            for p in t._back[0]:
                if isinstance(p, Node) and p.requires_grad and id(p) not in seen:
                    stack.append((p, False))
                elif isinstance(p, torch.Tensor) and p.requires_grad and targets is None:
                    # a layer's plaintext parameter (a model left in plaintext)
                    raise RuntimeError(_lost_message(p, "a layer"))
    grads: dict = {}
    for r, g in zip(roots, seeds):
        grads[id(r)] = g if id(r) not in grads else grads[id(r)] + g
    given = {id(g) for g in seeds}  # gradient objects a leaf's .grad must not share
    found: dict = {}
    # no_grad and training work, inline: the finally below makes no call,
    # so a Ctrl-C cannot land before recording is back on (a with block's
    # __exit__ can be interrupted at its start, leaving recording off for
    # good, as torch's no_grad can)
    ctx = _session._ctx
    was = ctx.grad_enabled
    ctx.grad_enabled = False
    ctx.training_depth += 1
    try:
        for t in reversed(order):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if getattr(t, "_hooks", None):
                g = _run_hooks(t, g)
                given.add(id(g))  # a hook may keep it: a leaf's .grad is a copy
            if targets is not None and id(t) in targets:
                if collect:
                    found[id(t)] = g.clone() if id(g) in given else g
                else:
                    _accumulate(t, g, given)
            elif targets is None and (t._back is None or getattr(t, "_retain", False)):
                _accumulate(t, g, given)
            asked = targets is None or id(t) in targets
            if t._back is None and getattr(t, "_acc_hooks", None) and asked and not collect:
                for hook in list(t._acc_hooks.values()):  # after .grad, as torch's
                    hook(t)
            if t._back is None:
                continue
            parents, fn = t._back
            for p, pg in zip(parents, _run_back(t, fn, g)):
                if pg is None or not isinstance(p, Node) or not p.requires_grad:
                    continue
                prev = grads.get(id(p))
                grads[id(p)] = pg if prev is None else prev + pg
    finally:
        ctx.training_depth -= 1
        ctx.grad_enabled = was
    if not retain_graph:
        # Free the tape: intermediate tensors keep no references to their
        # parents (grad_fn keeps its name).
        for t in order:
            if t._back is not None and t._back is not _FREED:
                t.grad_fn  # noqa: B018 - named now, while its function is known
                t._back = _FREED
    if collect:
        return [found.get(id(t)) for t in inputs]
    return None


def _seed(root, grad):
    """The gradient a backward starts from at ``root``, checked as torch's."""
    if grad is not None and not isinstance(grad, (Node, torch.Tensor)):
        # torch's TypeError (a list or a number was taken as a public gradient)
        raise TypeError(f"gradients can be either Tensors or None, but got {type(grad).__name__}")
    if not root.requires_grad:
        raise RuntimeError(_no_grad_message())
    if root._back is _FREED:
        raise RuntimeError(_SECOND_TIME)
    if grad is not None and hasattr(grad, "shape") and tuple(grad.shape) != tuple(root.shape):
        raise RuntimeError(
            f"Mismatch in shape: grad has a shape of {tuple(grad.shape)} and the output "
            f"has a shape of {tuple(root.shape)}"
        )
    if grad is None:
        if root.numel() != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        return root._public_like(1.0)
    if not isinstance(grad, Node):  # a plaintext gradient: public, known to all
        g = _float64(grad, "backward gradient").detach()
        return root._public(g.expand(tuple(root.shape)).contiguous().numpy())
    return grad


def _no_grad_message() -> str:
    """Why a backward() starts from a tensor that does not require grad:
    the most recent plaintext tensor that requires grad and met SharedTensors
    that do not (``note_unrecorded``) is the likely cause, unless a tensor
    that requires grad was used under no_grad since (then both are named)."""
    why = (
        "no input requires grad and no parameter does: a model in eval mode, as "
        "from_pytorch returns it, has parameters that do not require grad, as CrypTen's; "
        "call model.train() to train; a model after decrypt() holds plaintext "
        "parameters: encrypt() it again"
    )
    under = (
        "it was computed under torch.no_grad() or cryptgpu.no_grad(), where nothing is "
        "recorded: compute the loss outside it"
    )
    head = "backward() on a tensor that does not require grad"
    note = getattr(_session._ctx, "unrecorded", None)
    if note is None or note[0] != _session.current().id:
        return f"{head} (perhaps {under}; or {why})"
    if note[2]:
        earlier = f"or the cause is an earlier use: {note[1]}"
        return f"{head}; perhaps {under}; {earlier} (or else: {why})"
    return f"{head}; the likely cause: {note[1]} (or else: {under}; or {why})"


def _run_hooks(t, g):
    """``t``'s hooks (register_hook) on its gradient ``g``, in order; a
    tensor one returns replaces it (a plaintext one is taken as public)."""
    for hook in list(t._hooks.values()):
        out = hook(g)
        if out is None:
            continue
        if not isinstance(out, (Node, torch.Tensor)):
            raise TypeError(
                f"hook '{getattr(hook, '__name__', hook)}' returned a {type(out).__name__}: "
                "a hook returns a tensor or None"
            )
        if tuple(out.shape) != tuple(g.shape):
            raise RuntimeError(
                f"hook '{getattr(hook, '__name__', hook)}' has changed the size of value"
            )
        if not isinstance(out, Node):
            out = g._public(_float64(out, "hook result").detach().contiguous().numpy())
        g = out
    return g


def _accumulate(t, g, given: set) -> None:
    """Add ``g`` to ``t.grad``: in place for a leaf whose gradient is a
    SharedTensor of its own (as torch's: ``g = p.grad`` held across two
    backward passes sees their sum), else as a new tensor."""
    old = t.grad
    if old is not None:
        if (
            t._back is None
            and isinstance(old, Node)
            and getattr(old, "_view", True) is None
            and not old._rg
            and tuple(old.shape) == tuple(g.shape)
        ):
            new = old + g
            old._t, old._session = new._t, new._session  # views of it re-read it
        else:  # a plaintext or view .grad, or a retained non-leaf's (torch: out of place)
            t.grad = old + g
    else:  # each leaf its own tensor, as torch (a.grad.zero_() after a + b):
        # a copy of one another leaf or the caller holds, or of a view
        shared = id(g) in given or getattr(g, "_view", None) is not None
        t.grad = g.clone() if shared else g
        given.add(id(t.grad))
