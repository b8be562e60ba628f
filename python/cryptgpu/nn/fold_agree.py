"""BatchNorm folding decided by the owner of the weights: at
``model.encrypt(src=k)`` in a multi-party run, every party's converted
model ends with the structure of party k's.

``from_pytorch`` folds BatchNorm into the convolution before it for a
model in eval mode (folding.py). CrypTen's examples convert the trained
model on the owner (in eval mode, after validation) and a fresh dummy
model on the other parties (in train mode): the owner's model folded and
the others' did not, so the parties shared different parameter lists and
failed with a PeerError "out of step" whose hint named another cause (a
user probe). Now every party tells the others whether its model folded
and which pairs it can fold; a party whose model kept the BatchNorm
layers that src folded folds them too (its own values do not matter: the
weights are src's, shared next); a party whose model folded what src kept
cannot unfold (the BatchNorm layers are gone from it), and every party
raises the same ValueError saying so and what to do.
"""

from __future__ import annotations

import zlib

import torch

from .. import _session
from ..tensor import words_of_each
from .containers import _ByPosition


def agree(graph, src: int) -> None:
    """Make ``graph`` (a converted model about to be shared from ``src``)
    fold as src's does. In a multi-party run, for a model with BatchNorm
    layers that fold: each party shares (folded or not, how many pairs
    fold, a checksum of their names) and the three are opened together
    (:func:`cryptgpu.tensor.words_of_each`: 4 rounds, 3 words per party).
    Nothing to agree on in the local runtime (one model)."""
    s = _session.current()
    # Decided by what every party's model has in common (BatchNorm2d
    # layers), not by its own foldable pairs: a dummy whose BatchNorm
    # keeps no running statistics has none, and skipping the exchange
    # there left the others waiting in it.
    if len(s.ranks) == 3 or not graph._bn2d:
        return
    pairs = sorted(graph._foldable.items())
    mine = torch.tensor([int(bool(graph._folded)), len(pairs), zlib.crc32(repr(pairs).encode())])
    seen = [tuple(row) for row in words_of_each(mine).tolist()]
    theirs = seen[src]
    for k, row in enumerate(seen):
        if row[1:] != theirs[1:]:
            raise ValueError(
                f"encrypt(src={src}): party {k}'s converted model has {row[1]} "
                f"convolution + BatchNorm pair(s) to fold, party {src}'s {theirs[1]}"
                f"{' (other layers)' if row[1] == theirs[1] else ''}: convert the same model "
                f"(the same layers; only party {src}'s weights matter) on every party"
            )
    unfoldable = [k for k, row in enumerate(seen) if row[0] and not theirs[0]]
    if unfoldable:
        who = " and ".join(f"party {k}" for k in unfoldable)
        raise ValueError(
            f"encrypt(src={src}): party {src} converted its model with its {theirs[1]} "
            "BatchNorm layer(s) kept (its PyTorch model was in train mode, or "
            f"fold_batchnorm=False), {who} with them folded into the convolutions before "
            "them (eval mode, or fold_batchnorm=True), which cannot take party "
            f"{src}'s BatchNorm parameters. Call .eval() or .train() on the PyTorch model "
            "the same way on every party before cryptgpu.nn.from_pytorch (the owner's "
            "mode decides: a party whose model kept them folds them as the owner's did), "
            "or pass the same fold_batchnorm= on every party"
        )
    if theirs[0] and not graph._folded:
        fold_in_place(graph)


def fold_in_place(graph) -> None:
    """Fold, on a party whose converted model kept them, the BatchNorm
    layers that the owner's conversion folded: the same graph, layers and
    parameter names as a conversion with folding gives (each folded conv
    has a bias; no BatchNorm layer, no unread parameter kept), with this
    party's values left as they are (the owner's are shared next)."""
    nodes = {n.target: n for n in graph._graph.nodes if n.op == "call_module"}
    for bn, conv in graph._foldable.items():
        node = nodes[bn]
        node.replace_all_uses_with(node.args[0])  # the conv's node (folding.candidates)
        graph._graph.erase_node(node)
        layer = graph._layer(conv)
        # the BatchNorm's input-rank check, kept by its conv (norm_checks.py)
        layer._ranks = graph._layer(bn).__dict__.get("_ranks")
        if layer._params.get("bias") is None:
            w = layer._params["weight"]
            layer.register_parameter("bias", torch.zeros(w.shape[0], dtype=torch.float64))
        gone = graph._layer(bn)
        path = graph._module_at.pop(bn)
        owner = graph._walk(path[:-1], bn) if len(path) > 1 else graph
        owner._modules.pop(path[-1], None)
        for m in list(graph.modules()):  # and under its other names (aliases.py)
            for k in [k for k, v in m._modules.items() if v is gone]:
                del m._modules[k]
        graph._mounted.pop(path, None)
    for target in graph._unread:  # a conversion that folds keeps none (tracing.unread)
        path, leaf = graph._attr_at.pop(target)
        owner = graph._mounted.get(path, graph) if path else graph
        owner._params.pop(leaf, None)
    graph._unread = []
    graph._folded_batchnorms = len(graph._foldable)
    graph._folded_names = set(graph._folded_names) | {b for b in graph._foldable if "." not in b}
    graph._shifts = {k: v for k, v in graph._shifts.items() if v not in graph._foldable}
    mark_folded(graph, dict(graph._foldable))


def mark_folded(graph, pairs: dict) -> None:
    """Record ``pairs`` ({BatchNorm's path: its conv's}) as folded in
    ``graph``: refused by to_pytorch and loading, and by position in a
    container below the top (``model.features[1]``)."""
    graph._folded = pairs
    for path in pairs:
        owner, _, leaf = path.rpartition(".")
        holder = graph._mounted.get(tuple(owner.split("."))) if owner else None
        if isinstance(holder, _ByPosition):
            holder._folded_names = frozenset(holder._folded_names) | {leaf}
