"""argmax / argmin / ``max(dim).indices`` / ``min(dim).indices`` in a
converted forward give torch's integer indices, as values (secret-shared):
SharedTensor's own methods keep CrypTen's one-hot mask (``one_hot=True``),
which the converted graph took as it was until 2026-12-06, so
``h + h.argmax(-1, keepdim=True).to(h.dtype)`` was silently wrong.

At conversion (:func:`rewrite`) each such index gets a node after it that
turns the one-hot mask into the index (its dot with the public positions
along the dim: local and exact, no rounds; a public index, torch's own,
passes unchanged), read by everything but the readers that take the
one-hot form itself: an embedding (its rows, the mask with the dim moved
last) and a loss's target (the mask with the dim moved to the class dim 1,
a probability target equal to torch's index target). An index computed
from a layer's output (private whenever the model is encrypted) that would
select elements (gather, index_select, take, scatter, indexing, F.one_hot)
is refused at conversion: a private index cannot select privately.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..tensor import SharedTensor
from ..tensor_compare import _indices
from .metadata import METADATA as _METADATA
from .stats import OTHER

_ARGS = {"argmax", "argmin", torch.argmax, torch.argmin}
_PAIRS = {"max", "min", torch.max, torch.min}


def values(onehot, dim=None, keepdim=False):
    """torch's index from SharedTensor's one-hot ``onehot`` over ``dim``
    (of the flattened tensor for None); anything else (a public index,
    torch's own) unchanged."""
    if not isinstance(onehot, SharedTensor) or not (dim is None or isinstance(dim, int)):
        return onehot
    return _indices(onehot, dim, keepdim)


def pair_values(result, dim=None, keepdim=False):
    """A whole ``max(dim)`` / ``min(dim)`` result read as it is (returned,
    passed on): its indices field as torch's."""
    if not isinstance(result, tuple) or len(result) != 2:
        return result
    if not isinstance(result[1], SharedTensor):
        return result
    return type(result)(result[0], values(result[1], dim, keepdim))


def embedding_rows(onehot, dim=None):
    """The one-hot mask as an embedding's one-hot rows: the dim moved last
    (the flattened mask for None), a public index unchanged."""
    if not isinstance(onehot, SharedTensor):
        return onehot
    return onehot.reshape(-1) if dim is None else onehot.movedim(dim, -1)


def target_rows(onehot, dim=None):
    """The one-hot mask as a loss's probability target: the dim moved to
    dim 1 (the class dim of a batched input), a public index unchanged."""
    if not isinstance(onehot, SharedTensor) or onehot.dim() < 2 or dim is None:
        return onehot
    return onehot.movedim(dim, 1)


FUNCTIONS = {
    torch.argmax: (torch.argmax, OTHER),
    torch.argmin: (torch.argmin, OTHER),
    values: (values, OTHER),
    pair_values: (pair_values, OTHER),
    embedding_rows: (embedding_rows, OTHER),
    target_rows: (target_rows, OTHER),
}
METHODS = {"argmax": OTHER, "argmin": OTHER}

# the selections that take an index, and its position (the input or
# receiver at 0) or keyword
_SELECTIONS = {
    **dict.fromkeys(("gather", "index_select", "scatter", "scatter_add"), (2, "index")),
    **dict.fromkeys(("scatter_reduce", "index_add", "index_copy", "index_fill"), (2, "index")),
    **dict.fromkeys(("scatter_", "scatter_add_", "index_add_", "index_copy_"), (2, "index")),
    "index_fill_": (2, "index"),
    "take": (1, "index"),
    "take_along_dim": (1, "indices"),
    "one_hot": (0, "tensor"),
    "embedding": (0, "input"),
    "getitem": (1, None),
}


def _name(node) -> str:
    if node.op == "call_method":
        return node.target
    if node.target is operator.getitem:
        return "getitem"
    return getattr(node.target, "__name__", "")


def _dim_keepdim(node, rest):
    """(dim, keepdim) of an argmax/max call, from its arguments after the input."""
    dim = rest[0] if rest else node.kwargs.get("dim", node.kwargs.get("axis"))
    keepdim = rest[1] if len(rest) > 1 else node.kwargs.get("keepdim", False)
    return dim, keepdim


def _field(user, node):
    """0 or 1 where ``user`` reads that field of the pair ``node``, else None."""
    if user.target is operator.getitem and user.args[0] is node and user.args[1] in (0, 1, -1, -2):
        return user.args[1] % 2
    if user.target is getattr and user.args[0] is node and user.args[1] in ("values", "indices"):
        return 1 if user.args[1] == "indices" else 0
    return None


def _target(user, node) -> bool:
    """Whether a loss call ``user`` takes ``node`` as its target."""
    return user.args[1:2] == (node,) or user.kwargs.get("target") is node


def _one_hot_reader(user, node, modules) -> str | None:
    """How ``user`` reads ``node`` in one-hot form: "rows" (an embedding's
    ids), "target" (a loss's), or None (as torch's index values)."""
    if user.op == "call_module":
        m = modules.get(user.target)
        if isinstance(m, torch.nn.Embedding) and user.args[:1] == (node,):
            return "rows"
        losses = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)
        if isinstance(m, losses) and _target(user, node):
            return "target"
    elif user.op == "call_function":
        if user.target is F.embedding and user.args[:1] == (node,):
            return "rows"
        if user.target in (F.cross_entropy, F.nll_loss) and _target(user, node):
            return "target"
    return None


def _selects_with(user, node, modules) -> bool:
    """Whether ``user`` takes ``node`` as the index of a selection."""
    if user.op == "call_module":
        kinds = (torch.nn.Embedding, torch.nn.EmbeddingBag)
        return isinstance(modules.get(user.target), kinds) and user.args[:1] == (node,)
    if user.op not in ("call_function", "call_method"):
        return False
    spec = _SELECTIONS.get(_name(user))
    if spec is None:
        return False
    pos, kw = spec
    found = []
    arg = user.args[pos] if len(user.args) > pos else user.kwargs.get(kw)
    torch.fx.node.map_arg(arg, found.append)
    return node in found


def _derived(node) -> list:
    """``node`` and every node computed from it (but its metadata)."""
    seen, todo = [], [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.append(n)
        for u in n.users:
            name = u.target if isinstance(u.target, str) else ""
            if u.target is getattr and len(u.args) > 1:
                name = u.args[1]
            if name not in _METADATA and u.target is not len:
                todo.append(u)
    return seen


def _from_layers(graph, private: set) -> set:
    """The nodes computed from a layer's output or a parameter: private
    whenever the model is encrypted (an input may be public ids)."""
    out: set = set()
    for node in graph.nodes:
        if node.op == "call_module" or (node.op == "get_attr" and node in private):
            out.add(node)
        elif node in private and any(i in out for i in node.all_input_nodes):
            out.add(node)
    return out


def _refuse_selections(node, what: str, modules) -> None:
    for n in _derived(node):
        for user in n.users:
            if _selects_with(user, n, modules) and not (
                n is node and _one_hot_reader(user, node, modules)
            ):
                raise NotImplementedError(
                    f"{what} at node {node.name!r} gives an index that is private here "
                    "(torch's integer index, secret-shared), and node "
                    f"{user.name!r} ({_name(user) or user.target}) would select with it: a "
                    "private index cannot select privately. Use the values themselves "
                    "(x.max(dim).values, x.amax(dim)), or return the index and select "
                    "outside the model after revealing it"
                )


def _serve(graph, node, dim, keepdim, what: str, modules, refuse: bool) -> None:
    """Route ``node``'s readers: the one-hot readers through the mask's
    rows, everything else through the index values."""
    if refuse:
        _refuse_selections(node, what, modules)
    made: dict = {}
    for user in list(node.users):
        kind = _one_hot_reader(user, node, modules) or "values"
        if kind not in made:
            fn, args = {
                "values": (values, (node, dim, keepdim)),
                "rows": (embedding_rows, (node, dim)),
                "target": (target_rows, (node, dim)),
            }[kind]
            with graph.inserting_after(node):
                made[kind] = graph.call_function(fn, args)
        user.replace_input_with(node, made[kind])


def rewrite(graph: torch.fx.Graph, private: set, modules: dict) -> None:
    """Make every argmax/argmin and max/min(dim) index of a maybe-private
    value torch's (see the module's docstring); ``modules``: the traced
    model's, by target."""
    layered = _from_layers(graph, private)
    for node in list(graph.nodes):
        if node not in private or node.op not in ("call_method", "call_function"):
            continue
        if node.target not in _ARGS and node.target not in _PAIRS:
            continue
        dim, keepdim = _dim_keepdim(node, node.args[1:])
        refuse = node in layered
        if node.target in _ARGS:
            _serve(graph, node, dim, keepdim, _name(node), modules, refuse)
            continue
        if not isinstance(dim, int):
            continue  # the maximum of all elements, or torch.max(x, other)
        what = f"{_name(node)}(dim).indices"
        whole = None
        for user in list(node.users):
            field = _field(user, node)
            if field == 1:
                _serve(graph, user, dim, keepdim, what, modules, refuse)
            elif field is None:  # the pair itself, returned or passed on
                if whole is None:
                    with graph.inserting_after(node):
                        whole = graph.call_function(pair_values, (node, dim, keepdim))
                user.replace_input_with(node, whole)
