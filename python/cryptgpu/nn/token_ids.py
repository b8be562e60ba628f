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

from ..tensor import SharedTensor
from .embedding_bag import EmbeddingBag
from .layers_extra import Embedding
from .tracing import _METADATA


def id_inputs(graph: torch.fx.Graph, modules: dict) -> frozenset:
    """The placeholders that an embedding reads as its ids."""
    out = set()
    for node in graph.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            if not user.args or user.args[0] is not node:
                continue
            layer = user.op == "call_module" and isinstance(
                modules.get(user.target), (Embedding, EmbeddingBag)
            )
            if layer or (user.op == "call_function" and user.target is F.embedding):
                out.add(node.name)
    return frozenset(out)


def reading(node: torch.fx.Node, args: tuple, ids: frozenset) -> tuple:
    """``args`` of a function or method node, the one-hot rows of private
    ids standing as ids of their shape where it asks for sizes."""
    first = node.args[0] if node.args else None
    if not isinstance(first, torch.fx.Node) or first.name not in ids:
        return args
    if not isinstance(args[0], SharedTensor) or node.target is F.embedding:
        return args
    name = node.target if isinstance(node.target, str) else ""
    if node.target is getattr and len(node.args) > 1:
        name = node.args[1]
    if name in _METADATA:
        ids_like = torch.empty(tuple(args[0].shape)[:-1], dtype=torch.long, device="meta")
        return (ids_like,) + tuple(args[1:])
    what = name or getattr(node.target, "__name__", str(node.target))
    raise NotImplementedError(
        f"{what} on private token ids at node {node.name!r}: ids shared as one-hot "
        f"rows {list(args[0].shape)} feed only the embedding (and their sizes, which "
        "are the ids'); build masks from public ids and pass them as another input"
    )
