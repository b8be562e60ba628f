"""Token ids shared as one-hot rows in a converted graph: the data owner
shares ids [B, T] as ``cryptensor(F.one_hot(ids, V))``, [B, T, V], which
only an embedding can take. The forward's other reads of the ids were
traced for [B, T] ids: their sizes (``idx.numel()``, ``idx.shape[-1]``,
``idx.size(1)``) answer for the ids, not the rows; anything else (a mask
built from the ids, ``idx == 0``) raises, where it computed on [B, T, V]
(a mean over ``idx.numel()`` tokens divided by B*T*V)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._native import ShapeError
from ..tensor import SharedTensor
from .embedding_bag import EmbeddingBag
from .layers_extra import Embedding
from .tracing import _METADATA

_RESHAPES = {"view", "reshape"}


def _reshapes(node: torch.fx.Node) -> list:
    """The view/reshape nodes of ``node`` as their first argument."""
    return [
        u
        for u in node.users
        if u.args
        and u.args[0] is node
        and (u.target in _RESHAPES if u.op == "call_method" else u.target is torch.reshape)
    ]


def id_inputs(graph: torch.fx.Graph, modules: dict) -> dict:
    """The placeholders that an embedding reads as its ids (directly or
    through views of them: GPT-2's ``input_ids.view(-1, T)``), and those
    views, each with the embedding's number of rows (None where unknown:
    ``F.embedding``), the width of the one-hot rows a shared input has."""
    out: dict = {}
    for node in graph.nodes:
        if node.op != "placeholder":
            continue
        chain, todo = [], [node]
        while todo:
            n = todo.pop()
            chain.append(n)
            todo += _reshapes(n)
        for n in chain:
            for user in n.users:
                if not user.args or user.args[0] is not n:
                    continue
                layer = user.op == "call_module" and isinstance(
                    modules.get(user.target), (Embedding, EmbeddingBag)
                )
                if layer or (user.op == "call_function" and user.target is F.embedding):
                    rows = getattr(modules.get(user.target), "num_embeddings", None)
                    out.update((c.name, out.get(c.name, rows)) for c in chain)
    return out


# functions and methods that read only the size (and dtype) of the ids:
# given private ids they get public ids of that size. Of the ids as their
# first argument (HF's default mask torch.ones_like(input_ids)):
_LIKE = {
    "ones_like", "zeros_like", "full_like", "empty_like", "new_zeros", "new_ones",
    "new_full", "new_empty",
}  # fmt: skip
# of the ids as the other argument (positions expanded as the ids); with the
# ids first these read their values (ids.type_as(h))
_AS = {"expand_as", "view_as", "reshape_as", "type_as"}


def reading(node: torch.fx.Node, args: tuple, ids: dict) -> tuple:
    """``args`` of a function or method node, the one-hot rows of private
    ids standing as public ids of their size (zeros, on the CPU) where the
    node reads only sizes; any other read of them raises."""
    hits = [
        i
        for i, a in enumerate(node.args[: len(args)])
        if isinstance(a, torch.fx.Node) and a.name in ids and isinstance(args[i], SharedTensor)
    ]
    if not hits or (node.target is F.embedding and hits == [0]):
        return args
    for i in hits:  # ids shared as numbers, not one-hot rows: said so (probe ND)
        rows, shape = ids.get(node.args[i].name), list(args[i].shape)
        if rows is not None and (not shape or shape[-1] != rows):
            raise ShapeError(
                f"private token ids at node {node.name!r} are a SharedTensor of shape "
                f"{shape}, not one-hot rows [..., {rows}] (the embedding's {rows} rows): "
                "share ids as cryptensor(F.one_hot(ids, num_embeddings)), or pass public "
                "ids as a torch tensor"
            )
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if node.target is getattr and len(node.args) > 1:
        name = node.args[1]
    first = hits == [0]
    reshape = name in _RESHAPES or node.target is torch.reshape
    if first and node.name in ids and reshape and not node.kwargs:
        # ids viewed: their one-hot rows viewed so, the rows kept whole
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        rows = args[0].shape[-1]
        if node.target is torch.reshape:
            return (args[0], (*shape, rows))
        return (args[0], *shape, rows)
    if (first and (name in _METADATA or name in _LIKE)) or (0 not in hits and name in _AS):
        args = list(args)
        for i in hits:
            args[i] = torch.zeros(tuple(args[i].shape)[:-1], dtype=torch.long)
        return tuple(args)
    shape = list(args[hits[0]].shape)
    raise NotImplementedError(
        f"{name or node.target} on private token ids at node {node.name!r}: ids shared as "
        f"one-hot rows {shape} feed only the embedding (and what reads only their "
        "size, which is the ids'); build masks from public ids and pass them as "
        "another input"
    )
