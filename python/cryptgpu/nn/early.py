"""Refusals that a converted forward would meet at its first call, made
at conversion instead (probe OC, 2026-12-07): until then
``F.embedding(ids, w, max_norm=1.0)`` and ``scatter_reduce(...,
reduce="amax")`` on private values passed the conversion (its check runs
in plaintext) and were refused only when the model was first called,
after the owner had shared its weights; ``nn.Embedding(max_norm=...)``
was already refused at conversion.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from .layers_extra import MAX_NORM

_EMBEDDING = inspect.signature(F.embedding)
# SharedTensor.scatter_reduce provides "sum" and "mean" only
_REDUCES = ("amax", "amin", "prod")


def refuse(graph: torch.fx.Graph, private: set) -> None:
    """Raise the error a call would raise for a node of ``graph`` whose
    operands come from the model's weights (a parameter or a layer: private
    once encrypted; ``private``: tracing.maybe_private) and whose constant
    arguments already say it is refused. Operands from the inputs alone
    are left to the call (a public table, public features: torch's op)."""
    owner = graph.owning_module
    params = {n for n, _ in owner.named_parameters()} if owner is not None else set()

    def weighted(a) -> bool:
        todo, seen = [a], set()
        while todo:
            n = todo.pop()
            if not isinstance(n, torch.fx.Node) or n in seen or n not in private:
                continue
            seen.add(n)
            if n.op == "call_module" or (n.op == "get_attr" and n.target in params):
                return True
            todo.extend(n.all_input_nodes)
        return False

    for node in graph.nodes:
        if node not in private or node.op not in ("call_function", "call_method"):
            continue
        where = f"node {node.name!r}"
        if node.target is F.embedding:
            try:
                bound = _EMBEDDING.bind(*node.args, **node.kwargs)
            except TypeError:  # torch's own error at the call
                continue
            table = bound.arguments.get("weight")
            if bound.arguments.get("max_norm") is not None and weighted(table):
                raise NotImplementedError(f"F.embedding with max_norm at {where} {MAX_NORM}")
        elif node.target in (torch.scatter_reduce, "scatter_reduce"):
            reduce = node.args[4] if len(node.args) > 4 else node.kwargs.get("reduce")
            values = (node.args[0], node.args[3] if len(node.args) > 3 else node.kwargs.get("src"))
            if reduce in _REDUCES and any(weighted(v) for v in values):
                raise NotImplementedError(
                    f"scatter_reduce(reduce={reduce!r}) on a private tensor at {where}: only "
                    "'sum' and 'mean' are provided"
                )
