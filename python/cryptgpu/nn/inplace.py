"""In-place operations in a traced forward (``x.relu_()``,
``F.relu(x, inplace=True)``, ``h += y``, ``mask.fill_(v)``).

torch.fx records an in-place operation as an ordinary node, so the graph's
later readers of the changed tensor would read its value from before the
change. :func:`in_place` has each later reader read the in-place node
instead, and runs the operation out of place: its out-of-place twin
(``relu_`` -> ``relu``), or, for a method that has none (``fill_``,
``zero_``, ``copy_``, ``fill_diagonal_``), torch's (or the SharedTensor's)
own in-place method on a copy, so that a model's constants and a caller's
inputs stay as they were.

Python's augmented assignment on a traced tensor (``h += y``) is in place
in torch (``h.add_(y)``: an alias ``g = h`` sees the change), but fx's
Proxy has no ``__iadd__``, so Python recorded it as ``h = h + y`` and an
alias kept the old value (probe OC, 2026-12-07: 1.9 off torch's, with no
error, converted without a dummy input). :class:`AugmentingTracer`'s
proxies record it as the out-of-place operation marked :data:`AUGMENTED`,
which :func:`in_place` treats as in place, unless the left side is a
Python number (``t = x.size(1); t += 1``), which ``+=`` rebinds.
"""

from __future__ import annotations

import builtins
import inspect
import linecache
import operator
import os
import sys

import torch

from . import guards

# node.meta keys: the augmented assignment a node was written as ("+="),
# the name of an in-place method or function as written ("fill_"), and the
# (file, line) of the forward's code that made the node (AugmentingTracer)
AUGMENTED = "cryptgpu_augmented"
WRITTEN = "cryptgpu_written"
SOURCE = "cryptgpu_source"
# node.meta key: the name of the tensor an in-place node changes, whose
# shape its result must keep (kept_shape)
SHAPE = "cryptgpu_kept_shape"

# Python's in-place operators, as torch's tensors run them (in place):
# special method -> (out-of-place operator, symbol). ``@=`` is not in place
# in torch (no Tensor.__imatmul__: ``a @= b`` rebinds a), so fx's own
# ``a = a @ b`` is right.
_OPERATORS = {
    "__iadd__": (operator.add, "+="),
    "__isub__": (operator.sub, "-="),
    "__imul__": (operator.mul, "*="),
    "__itruediv__": (operator.truediv, "/="),
    "__ifloordiv__": (operator.floordiv, "//="),
    "__imod__": (operator.mod, "%="),
    "__ipow__": (operator.pow, "**="),
    "__iand__": (operator.and_, "&="),
    "__ior__": (operator.or_, "|="),
    "__ixor__": (operator.xor, "^="),
    "__ilshift__": (operator.lshift, "<<="),
    "__irshift__": (operator.rshift, ">>="),
}

# the reads of a tensor's metadata, which give Python numbers (or sizes)
_NUMBER_METHODS = frozenset(
    ("size", "dim", "ndimension", "numel", "nelement", "stride", "element_size", "item", "tolist")
)
_NUMBER_ATTRS = frozenset(("shape", "ndim"))
_NUMBER_HOMES = frozenset(("_operator", "operator", "builtins", "math"))


def is_number(node) -> bool:
    """Whether ``node``'s value is a Python number or size, not a tensor:
    a read of a tensor's metadata (``x.size(1)``, ``x.shape``), or Python's
    arithmetic (operators, builtins, ``math``) on such values and
    constants alone."""
    return guards.every_path_stops(node, _number_read, _not_arithmetic)


def _number_read(n) -> bool:
    if n.op == "call_method":
        return n.target in _NUMBER_METHODS
    return n.op == "call_function" and n.target is builtins.getattr and n.args[1] in _NUMBER_ATTRS


def _not_arithmetic(n) -> bool:
    """Not Python's arithmetic (an operator, builtin or ``math`` function;
    a getattr other than a size's)."""
    if n.op != "call_function" or n.target is builtins.getattr:
        return True
    return (getattr(n.target, "__module__", None) or "") not in _NUMBER_HOMES


def _augmented(name: str, op, symbol: str):
    def method(self, other):
        out = self.tracer.create_proxy("call_function", op, (self, other), {})
        if not is_number(self.node):  # a tensor: torch changes it in place
            f = sys._getframe(1)  # the forward's line, for a refusal
            line = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
            where = f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
            out.node.meta[AUGMENTED] = (symbol, f"`{line}` ({where})" if line else where)
        return out

    method.__name__ = name
    method.__doc__ = f"``{symbol}``: recorded in place on a tensor, as torch runs it."
    return method


class Augmenting:
    """A torch.fx Proxy mixin: Python's augmented assignments
    (``h += y``) recorded as in place on a tensor (see the module's text)."""


for _name, (_op, _symbol) in _OPERATORS.items():
    setattr(Augmenting, _name, _augmented(_name, _op, _symbol))


class _Proxy(Augmenting, guards.SizeUnpacking, torch.fx.Proxy):
    """torch.fx's Proxy with :class:`Augmenting`'s in-place operators (and
    a check of the rank where a size is unpacked: guards.py)."""

    def __getattr__(self, k: str):
        # an attribute's proxy (x.T, x.data, self.l.weight.data) augmenting
        # too: torch.fx's own Attribute recorded ``y = x.T; y += 1`` out of
        # place, and the base kept its old value, silently (review s29 S1-a)
        return _Attribute(self, k)


class _Attribute(_Proxy, torch.fx.proxy.Attribute):
    """torch.fx's Attribute (``x.T``, read lazily) with :class:`_Proxy`'s
    operators."""


class AugmentingTracer:
    """A torch.fx Tracer mixin whose proxies are :class:`Augmenting`, and
    whose in-place calls (``h[:, :2].mul_(0)``, ``torch.relu_(h)``,
    ``F.relu(h, inplace=True)``) keep the forward's line that made them
    (:data:`SOURCE`), for a refusal (until 2026-12-07 only ``v *= 0``'s
    named its line: probe OD)."""

    def proxy(self, node):
        """The proxy of ``node``: an augmenting one."""
        return _Proxy(node, self)

    def create_node(self, kind, target, args, kwargs, *rest, **named):
        """torch.fx's node, with :data:`SOURCE` for an in-place call."""
        node = super().create_node(kind, target, args, kwargs, *rest, **named)
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if kind in ("call_method", "call_function", "call_module") and (
            (name.endswith("_") and not name.startswith("_"))
            or kind == "call_module"
            or kwargs.get("inplace") is True
            or name in ("nan_to_num", "isnan", "isinf", "isfinite")
            or any(a is True for a in args[1:])
        ):  # (positional inplace: F.relu(h, True); a module's is read from it later)
            found = _user_frame()
            if found is not None:
                node.meta[SOURCE] = found
        return node


# torch's and cryptgpu's own code (their directories)
_LIBRARIES = tuple(os.path.dirname(p) + os.sep for p in (torch.__file__, os.path.dirname(__file__)))


def _user_frame():
    """(file, line) of the innermost frame outside torch, cryptgpu and
    transformers' tracer: the forward's code being traced; None if none
    within the trace (torch.fx's generated code of a GraphModule traced
    again names no line of the user's)."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if name.startswith("<eval_with_key>") or (
            f.f_code.co_name == "trace" and name.endswith(os.path.join("fx", "_symbolic_trace.py"))
        ):
            return None
        if not name.startswith(_LIBRARIES) and not name.endswith(_HF_TRACER):
            return name, f.f_lineno
        f = f.f_back
    return None


_HF_TRACER = os.path.join("transformers", "utils", "fx.py")


def _shown(where) -> str:
    """```the line``` (file.py:12) of a :data:`SOURCE`, or ""."""
    if where is None:
        return ""
    name, n = where
    line = linecache.getline(name, n).strip()
    at = f"{os.path.basename(name)}:{n}"
    return f"`{line}` ({at})" if line else at


# Methods, functions and attributes whose result shares its input's storage
# (torch's "Tensor Views" list, and those that may return their input itself:
# reshape, contiguous, conj of a real tensor): an in-place change of one is a
# change of all. Until 2026-12-07 .T, .mT, .H, .data, swapaxes, ravel,
# tensor_split, hsplit, unfold, moveaxis and others were missing: a change
# through them left the base unchanged, silently (probe OH).
_VIEW_NAMES = """view view_as reshape reshape_as flatten unflatten ravel transpose swapaxes swapdims
    t adjoint permute movedim moveaxis squeeze unsqueeze expand expand_as broadcast_to narrow select
    diagonal as_strided unfold chunk split split_with_sizes unsafe_split unsafe_chunk tensor_split
    hsplit vsplit dsplit unbind contiguous detach conj resolve_conj resolve_neg positive
    view_as_real view_as_complex atleast_1d atleast_2d atleast_3d real imag""".split()
_VIEW_METHODS = frozenset(n for n in _VIEW_NAMES if callable(getattr(torch.Tensor, n, None)))
_VIEW_FUNCTIONS = frozenset(
    [getattr(torch, n) for n in _VIEW_NAMES if callable(getattr(torch, n, None))]
    + [getattr(torch.Tensor, n) for n in _VIEW_METHODS]  # torch.Tensor.view(h, ...)
    + [operator.getitem]
)
_VIEW_ATTRS = frozenset(("T", "mT", "H", "mH", "data", "real", "imag"))  # getattr nodes
# views that cut their input into pieces that do not overlap
_SPLIT_NAMES = frozenset(
    "chunk split split_with_sizes unsafe_split unsafe_chunk tensor_split hsplit vsplit dsplit "
    "unbind".split()
)
_SPLITS = _SPLIT_NAMES | {getattr(torch, n) for n in _SPLIT_NAMES}


def _is_view(node) -> bool:
    if not isinstance(node, torch.fx.Node) or not node.args:
        return False
    if node.op == "call_method":
        return node.target in _VIEW_METHODS
    if node.op != "call_function":
        return False
    if node.target is builtins.getattr:  # h.T, h.data
        return len(node.args) > 1 and node.args[1] in _VIEW_ATTRS
    return node.target in _VIEW_FUNCTIONS


def _pieces(node) -> dict:
    """{the node that cut a tensor into pieces: which piece} along
    ``node``'s chain of views (``q`` of ``q, k, v = qkv.chunk(3, -1)``)."""
    out = {}
    while _is_view(node):
        base = node.args[0]
        if node.target is operator.getitem and _is_view(base) and base.target in _SPLITS:
            if isinstance(node.args[1], int):
                out[base] = node.args[1]
        node = base
    return out


def _disjoint(a, b) -> bool:
    """Whether views ``a`` and ``b`` lie in different pieces of one split
    (``k`` does not see ``q *= scale``)."""
    pa, pb = _pieces(a), _pieces(b)
    return any(
        (pa[s] < 0) == (pb[s] < 0) and pa[s] != pb[s] for s in pa.keys() & pb.keys()
    )  # (a negative piece number and a positive one may be the same piece)


def _changes_input(node, modules: dict) -> bool:
    """Whether ``node`` changes its first argument in place (``ReLU(inplace=
    True)``, ``F.relu(x, inplace=True)``, ``x.relu_()``, ``torch.relu_``,
    ``h += y``); the function and method forms are rewritten to their
    out-of-place ones where torch has one (a method without one keeps its
    name: :func:`in_place` runs it on a copy)."""
    if node.op == "call_module":
        return getattr(modules.get(node.target), "inplace", False) is True
    if AUGMENTED in node.meta:
        return True
    if node.op == "call_method" and node.target.endswith("_") and node.target[0] != "_":
        node.meta[WRITTEN] = node.target
        if callable(getattr(torch.Tensor, node.target[:-1], None)):
            node.target = node.target[:-1]  # x.relu_() -> x.relu()
        elif node.target not in _KEPT:
            raise NotImplementedError(_no_twin(node))
        return True
    if node.op != "call_function":
        return False
    name = getattr(node.target, "__name__", "")
    if name.endswith("_") and name[0] != "_" and callable(getattr(torch, name[:-1], None)):
        node.meta[WRITTEN] = name
        node.target = getattr(torch, name[:-1])  # torch.relu_ -> torch.relu
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):  # builtins without a signature
        return False
    if bound.arguments.get("inplace") is not True:
        return False
    del bound.arguments["inplace"]  # the last parameter of every such function
    node.args, node.kwargs = bound.args, bound.kwargs
    return True


# in-place methods without an out-of-place twin that a converted forward
# runs (on a copy: in_place); torch's random ones draw noise
_KEPT = frozenset(("fill_", "zero_", "copy_", "fill_diagonal_"))
_RANDOM = frozenset(
    ("normal_", "uniform_", "exponential_", "random_", "cauchy_", "geometric_", "log_normal_")
)


def _no_twin(node) -> str:
    why = (
        ": a converted model cannot draw random noise in its forward (the parties need the "
        "same fresh draw); draw it outside the model and pass it as an input"
        if node.target in _RANDOM
        else f" (of the in-place methods without an out-of-place form, {', '.join(sorted(_KEPT))}"
        " are supported)"
    )
    return f"unsupported method .{node.target}() at node {node.name!r} in a converted forward{why}"


def _refusal(node, changed, alias) -> str:
    if AUGMENTED in node.meta:
        symbol, line = node.meta[AUGMENTED]
        return (
            f"{line} changes a tensor in place (torch's {symbol} on a tensor does; node "
            f"{node.name!r}), and it is a view that shares storage with {alias.name!r}, "
            f"which is read afterwards: write it out of place (a = a {symbol[:-1]} b)"
        )
    where = _shown(node.meta.get(SOURCE))
    head = f"{where} (node {node.name!r})" if where else f"node {node.name!r}"
    return (
        f"{head} changes {changed.name!r} in place, a view that shares storage with "
        f"{alias.name!r}, which is read afterwards: {_instead(node, where)}"
    )


def _instead(node, where: str) -> str:
    """The refusal's suggestion, worded by the operation: ``inplace=False``
    for a layer or function that has it; for an in-place method, its
    out-of-place form into a new tensor (``h[:, :2].mul(0)``), the result
    assembled with torch.cat or torch.where."""
    written = node.meta.get(WRITTEN)
    if written is None:  # nn.ReLU(inplace=True), F.relu(h, inplace=True)
        return "write that operation out of place (inplace=False)"
    if node.op == "call_function":  # torch.relu_(v)
        twin = f"torch.{written[:-1]}(...)"
    elif node.target != written:  # v.mul_(0) -> v.mul(0)
        line = where.split("`")[1] if where.count("`") >= 2 else ""
        twin = f".{written[:-1]}(...)"
        if f".{written}(" in line:
            twin = "`" + line.replace(f".{written}(", f".{written[:-1]}(") + "`"
    else:  # fill_, zero_, copy_: no out-of-place method
        return (
            f"do not change the view with .{written}(): build the new tensor out of place "
            "(torch.where(cond, value, t), or torch.cat of its pieces) and read that"
        )
    return (
        f"compute it out of place into a new tensor ({twin}) and assemble the result "
        "from it with torch.cat (or torch.where), instead of changing the view"
    )


def in_place(gm: torch.fx.GraphModule) -> None:
    """Each later reader of a tensor an in-place node changes reads the
    in-place node instead; a change of a view whose base (or another view
    of it, not a separate piece of a split) is read afterwards raises
    NotImplementedError. A method without an out-of-place twin
    (``fill_``) runs on a copy of its input (a clone node before it)."""
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    for node in nodes:
        if not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        if not _changes_input(node, modules):
            continue
        changed = node.args[0]

        def later(user, i=pos[node]):
            return pos.get(user, -1) > i

        root = changed
        while _is_view(root):
            root = root.args[0]
        if root.op == "get_attr" and not root.target.startswith("_tensor_constant"):
            raise NotImplementedError(_state_refusal(gm, node, root))
        aliases, todo = [], [root]
        while todo:
            a = todo.pop()
            aliases.append(a)
            todo.extend(u for u in a.users if _is_view(u) and u.args[0] is a)
        for a in aliases:
            # a view made before the change that is read after it (a view
            # made after it from the changed tensor is rewired below)
            if a is changed or later(a) or _disjoint(a, changed):
                continue
            if any(later(u) for u in a.users):
                raise NotImplementedError(_refusal(node, changed, a))
        changed.replace_all_uses_with(node, delete_user_cb=later)
        if _binary(node) and node.meta.get(WRITTEN) not in _RESHAPING:
            node.meta[SHAPE] = changed.name  # h += b: b broadcasts into h's shape (kept_shape)
        if node.op == "call_method" and node.target == node.meta.get(WRITTEN):
            with gm.graph.inserting_before(node):  # x.fill_(v) -> x.clone().fill_(v)
                copy = gm.graph.call_method("clone", (changed,))
            copy.meta.update((k, v) for k, v in node.meta.items() if k != WRITTEN)
            node.args = (copy, *node.args[1:])


# in-place methods that change their tensor's shape, as their twins do
_RESHAPING = frozenset(
    "t_ transpose_ swapaxes_ swapdims_ squeeze_ unsqueeze_ as_strided_ resize_ resize_as_ "
    "set_".split()
)


def _binary(node) -> bool:
    """Whether an in-place node reads a tensor besides the one it changes
    (``h += b``, ``h.masked_fill_(m, 0)``), which torch broadcasts into it."""
    found = []
    torch.fx.node.map_arg((node.args[1:], node.kwargs), found.append)
    return bool(found) and node.op != "call_module"


def kept_shape(node, value, env: dict) -> None:
    """torch's RuntimeError where an in-place node's result (run out of
    place) is larger than the tensor it changes: ``h += b`` with ``h`` of
    shape [3, 1] and ``b`` of [3, 4] at run time (until 2026-12-07 the
    converted model returned a [3, 4] result: probe OH)."""
    target = env.get(node.meta[SHAPE])
    have, want = getattr(value, "shape", None), getattr(target, "shape", None)
    if have is not None and want is not None and tuple(have) != tuple(want):
        raise RuntimeError(
            f"output with shape {list(want)} doesn't match the broadcast shape {list(have)}"
        )


def _state_refusal(gm, node, root) -> str:
    """The refusal of an in-place change of the model's own parameter or
    buffer (``self.count += 1``, ``self.l.weight.data.clamp_(-1, 1)``):
    torch's model keeps it for its next call, a converted model's weights
    and buffers are its constants (until 2026-12-07 the change was dropped
    or applied to the same constant at every call: probe OH)."""
    if AUGMENTED in node.meta:
        where = node.meta[AUGMENTED][1]
    else:
        where = _shown(node.meta.get(SOURCE))
    head = f"{where} (node {node.name!r})" if where else f"node {node.name!r}"
    value = gm
    for part in root.target.split("."):
        value = getattr(value, part, None)
    kind = "parameter" if isinstance(value, torch.nn.Parameter) else "buffer"
    return (
        f"{head} changes the model's {kind} {root.target!r} in place in its forward: torch's "
        "model keeps that change for its next call, and a converted model's parameters and "
        "buffers do not change in its forward. Change it outside the forward (under "
        "torch.no_grad(), before converting or between calls), or compute a new tensor out of "
        "place (w = w.clamp(-1, 1)) and use that"
    )


# the in-place methods that give a public tensor a private value
INTO = frozenset(("copy_", "fill_"))


def into_public(dest: torch.Tensor, name: str, args: tuple, kwargs: dict):
    """``dest.copy_(src)`` or ``dest.fill_(value)`` of a public ``dest``
    (already a copy: :func:`in_place`) and a private value
    (``torch.zeros_like(x).copy_(x)``): the value broadcast to ``dest``'s
    shape as a new private tensor, since torch's tensor cannot hold shares."""
    value = args[0] if args else next(v for k, v in kwargs.items() if k != "non_blocking")
    dims = len(value.shape)
    if name == "fill_" and dims:
        raise RuntimeError(
            f"fill_ only supports 0-dimension value tensor but got tensor with {dims} dimensions."
        )
    if not dest.is_floating_point():
        raise NotImplementedError(
            f".{name}() of a private value into a public {dest.dtype} tensor is not "
            "supported (shares hold fixed-point numbers): make that tensor a float one"
        )
    return value.expand(*dest.shape).clone()
