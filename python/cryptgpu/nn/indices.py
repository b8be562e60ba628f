"""argmax / argmin / ``max(dim).indices`` / ``min(dim).indices`` (and
``topk(k).indices``: topk(1)'s as max(dim, keepdim=True)'s) in a
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
a probability target equal to torch's index target). They may read the
index directly or through value-preserving ops (:data:`_RESHAPES`,
:data:`_COPIES`: a greedy decoder's ``topi.squeeze(-1).detach()``), made
on the rows (the positions kept last) where the reader reads them; until
2026-12-06 only a direct read took the one-hot form (the others were
refused, or a loss failed at the call). An index computed from a layer's
output (private whenever the model is encrypted) that would select
elements (gather, index_select, take, scatter, indexing, F.one_hot), or
reach an embedding or a loss target through other ops (a transpose, an
addition), is refused at conversion: a private index cannot select
privately.
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
_TOPK = {"topk", torch.topk}  # topk(1): max(dim, keepdim=True); k > 1: SharedTensor.topk
# the value-preserving ops followed from an index to an embedding or a loss
# target reading it (their one-hot rows made so): reshapes of the index,
# and copies and integer casts (changing nothing of the rows)
_RESHAPES = {"view", "reshape", "flatten", "ravel", "squeeze", "unsqueeze"}
_COPIES = {"detach", "clone", "contiguous", "long", "int", "to", "type"}
_FOLLOWED_FUNCTIONS = {
    torch.reshape: "reshape", torch.flatten: "flatten", torch.ravel: "ravel",
    torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze", torch.detach: "detach",
    torch.clone: "clone",
}  # fmt: skip


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


def _rows(onehot, dim=None, keepdim=False):
    """The one-hot mask as one-hot rows of the index: the index's shape and
    the positions along ``dim`` last (all of them for None)."""
    if onehot.dim() == 0:  # a scalar's only index, 0: one row of one
        return onehot.reshape(1)
    if dim is None:
        return onehot.reshape(*([1] * onehot.dim() if keepdim else []), -1)
    d = dim % onehot.dim()
    rows = onehot.movedim(d, -1)
    return rows.unsqueeze(d) if keepdim else rows


def _follow(rows, ops):
    """``rows`` (one-hot rows of an index) after ``ops``, the (method name,
    arguments, keywords) of value-preserving ops on the index
    (:data:`_RESHAPES`, :data:`_COPIES`): their reshapes made on the
    index's shape, the positions kept last; the copies and integer casts
    change nothing."""
    for name, args, kwargs in ops:
        if name in _COPIES:
            continue
        index = torch.empty(tuple(rows.shape[:-1]), device="meta")
        shape = tuple(getattr(index, name)(*args, **kwargs).shape)
        rows = rows.reshape(*shape, rows.shape[-1])
    return rows


def _index_after(index, ops):
    """A public index (torch's own) after ``ops``, as torch computes them."""
    for name, args, kwargs in ops:
        index = getattr(index, name)(*args, **kwargs)
    return index


def embedding_rows(onehot, dim=None, keepdim=False, ops=()):
    """The one-hot mask as an embedding's one-hot rows: the index's shape
    (after ``ops``, value-preserving ops between the argmax and the
    embedding) and the positions along ``dim`` last; a public index, after
    ``ops``."""
    if not isinstance(onehot, SharedTensor):
        return _index_after(onehot, ops)
    return _follow(_rows(onehot, dim, keepdim), ops)


def target_rows(onehot, dim=None, keepdim=False, ops=()):
    """The one-hot mask as a loss's probability target: the one-hot rows of
    :func:`embedding_rows` with the positions moved to dim 1 (the class dim
    of a batched input); a public index, after ``ops``."""
    if not isinstance(onehot, SharedTensor):
        return _index_after(onehot, ops)
    rows = _follow(_rows(onehot, dim, keepdim), ops)
    return rows.movedim(-1, 1) if rows.dim() > 1 else rows


FUNCTIONS = {
    torch.argmax: (torch.argmax, OTHER),
    torch.argmin: (torch.argmin, OTHER),
    torch.topk: (torch.topk, OTHER),
    values: (values, OTHER),
    pair_values: (pair_values, OTHER),
    embedding_rows: (embedding_rows, OTHER),
    target_rows: (target_rows, OTHER),
}
METHODS = {"argmax": OTHER, "argmin": OTHER, "topk": OTHER}

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


def _topk_dim(node):
    """(dim, True) of a ``topk(1, dim)`` call, as its max(dim, keepdim=True);
    for another whole k the dim of its stacked one-hot masks' positions
    (SharedTensor.topk: k inserted at dim) and False; else (None, False)."""
    rest, kw = node.args[1:], node.kwargs
    k = rest[0] if rest else kw.get("k")
    dim = rest[1] if len(rest) > 1 else kw.get("dim", -1)
    if not isinstance(k, int) or isinstance(k, bool) or not isinstance(dim, int):
        return None, False
    return (dim, True) if k == 1 else (dim + 1 if dim >= 0 else dim, False)


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


def _derived(node, served=()) -> list:
    """``node`` and every node computed from it (but its metadata), not
    past the ``served`` readers (an embedding's rows, a loss: values, no
    longer the index)."""
    seen, todo = [], [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.append(n)
        if n in served:
            continue
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


def _followed(user, n, derived) -> tuple | None:
    """(method name, arguments, keywords) of ``user`` where it is a
    value-preserving op of ``n`` (:data:`_RESHAPES`, :data:`_COPIES`) whose
    other arguments are not computed from the index, else None."""
    if user.op not in ("call_method", "call_function") or user.args[:1] != (n,):
        return None
    name = user.target if user.op == "call_method" else _FOLLOWED_FUNCTIONS.get(user.target)
    if name not in _RESHAPES and name not in _COPIES:
        return None
    args, kwargs = user.args[1:], dict(user.kwargs)
    found = []
    torch.fx.node.map_arg((args, kwargs), found.append)
    if any(f in derived for f in found):
        return None
    if name in ("to", "type"):  # an integer cast only (not a device, not a float)
        dtype = args[0] if len(args) == 1 and not kwargs else kwargs.get("dtype")
        if args and kwargs or len(kwargs) > 1 or dtype not in (torch.long, torch.int):
            return None
        return ("long" if dtype == torch.long else "int"), (), {}
    if name == "view" and any(isinstance(a, torch.dtype) for a in args):
        return None  # a view as another dtype reinterprets the bits
    return name, args, kwargs


def _one_hot_reads(node, modules) -> list:
    """(reader, kind, chain): every one-hot reader of ``node``'s index (see
    :func:`_one_hot_reader`), reading it directly (an empty chain) or
    through value-preserving ops, the chain's nodes in order."""
    derived = set(_derived(node))
    out, todo = [], [(node, ())]
    while todo:
        n, chain = todo.pop()
        for user in n.users:
            kind = _one_hot_reader(user, n, modules)
            if kind:
                out.append((user, kind, chain))
            elif _followed(user, n, derived) is not None:
                todo.append((user, (*chain, user)))
    return out


def _path(node, n) -> str:
    """The ops from ``node`` to ``n``, one of the nodes computed from it."""
    back, todo = {node: None}, [node]
    while todo and n not in back:
        m = todo.pop(0)
        for u in m.users:
            if u not in back:
                back[u] = m
                todo.append(u)
    steps = []
    while n is not None and n is not node:
        steps.append(f"{n.name!r} ({_name(n) or n.target})")
        n = back.get(n)
    return " -> ".join(reversed(steps))


_FORMS = (
    "directly or through detach, clone, contiguous, view, reshape, flatten, "
    "ravel, squeeze, unsqueeze and integer casts (long, int, to(torch.long))"
)


def _refuse_selections(node, what: str, modules, reads) -> None:
    served = {(chain[-1] if chain else node, user) for user, _, chain in reads}
    head = (
        f"{what} at node {node.name!r} gives an index that is private here "
        "(torch's integer index, secret-shared)"
    )
    for n in _derived(node, {user for user, _, _ in reads}):
        for user in n.users:
            if (n, user) in served:
                continue
            kind = _one_hot_reader(user, n, modules)
            reader = f"node {user.name!r} ({_name(user) or user.target})"
            if kind:  # an embedding or a loss target through ops not followed
                role = "ids" if kind == "rows" else "a loss target"
                raise NotImplementedError(
                    f"{head}, and {reader} reads it as {role} through {_path(node, n)}, "
                    "which the conversion cannot carry to the index's one-hot form (the "
                    "form in which an embedding or a loss target takes a private index): "
                    f"it does so for an index read {_FORMS}. Read it so (for a transpose "
                    "or permute, move the dims of the argmax's input instead: "
                    "x.t().argmax(0) for x.argmax(1).t()), or return the index and use it "
                    "outside the model after revealing it"
                )
            if _selects_with(user, n, modules):
                raise NotImplementedError(
                    f"{head}, and {reader} would select with it: a private index cannot "
                    "select privately (an embedding or a loss target can read it, "
                    f"{_FORMS}: they take its one-hot form). Use the values themselves "
                    "(x.max(dim).values, x.amax(dim)), or return the index and select "
                    "outside the model after revealing it"
                )


def _erase_unread(graph, chains) -> None:
    """Erase the chains' nodes that nothing reads any more, last first."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    nodes = {n for chain in chains for n in chain}
    for n in sorted(nodes, key=order.__getitem__, reverse=True):
        if not n.users:
            graph.erase_node(n)


def _serve(graph, node, dim, keepdim, what: str, modules, refuse: bool) -> None:
    """Route ``node``'s readers: the one-hot readers (directly or through
    value-preserving ops) through the mask's rows, everything else through
    the index values."""
    reads = _one_hot_reads(node, modules)
    if refuse:
        _refuse_selections(node, what, modules, reads)
    users = list(node.users)
    fns = {"rows": embedding_rows, "target": target_rows, "values": values}
    made: dict = {}
    for user, kind, chain in reads:
        if chain:  # the rows after the chain's ops, made where the reader reads them
            ops = tuple(_followed(c, p, ()) for p, c in zip((node, *chain), chain))
            with graph.inserting_before(user):
                rows = graph.call_function(fns[kind], (node, dim, keepdim, ops))
            user.replace_input_with(chain[-1], rows)
            continue
        if kind not in made:
            with graph.inserting_after(node):
                made[kind] = graph.call_function(fns[kind], (node, dim, keepdim))
        user.replace_input_with(node, made[kind])
    _erase_unread(graph, [chain for _, _, chain in reads])
    for user in users:
        if node in user.all_input_nodes:  # read as torch's index
            if "values" not in made:
                with graph.inserting_after(node):
                    made["values"] = graph.call_function(values, (node, dim, keepdim))
            user.replace_input_with(node, made["values"])


def rewrite(graph: torch.fx.Graph, private: set, modules: dict) -> None:
    """Make every argmax/argmin and max/min(dim) index of a maybe-private
    value torch's (see the module's docstring); ``modules``: the traced
    model's, by target."""
    layered = _from_layers(graph, private)
    for node in list(graph.nodes):
        if node not in private or node.op not in ("call_method", "call_function"):
            continue
        if node.target not in _ARGS and node.target not in _PAIRS | _TOPK:
            continue
        dim, keepdim = _dim_keepdim(node, node.args[1:])
        if node.target in _TOPK:
            dim, keepdim = _topk_dim(node)
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
