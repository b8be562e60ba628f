"""Torch's second names in a converted model. torch.fx names a module by
its first name only, and reads a tied weight by its first name, so a
module registered under two names (``self.block = nn.Sequential(self.enc,
nn.ReLU())``) or a weight tied by assignment (``self.dec.weight =
self.emb.weight``, language models' weight tying; BertForMaskedLM's
``cls.predictions.bias``) had one name in the converted model, where
torch's ``state_dict()`` lists each: loading torch's own state dict failed
strict (unexpected keys), and ``model.block`` was missing. After mounting
(tracing.mount), :func:`name_all` places the same converted layer, or the
same parameter object, at every other name torch gives it: one tensor
under two names, shared once and trained once, as torch's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from . import containers
from .module import Module
from .param_state import register_inside

# torch's containers: a converted model keeps one of ours in their place
CONTAINERS = {
    torch.nn.Sequential: "sequential",
    torch.nn.ModuleList: "list",
    torch.nn.ModuleDict: "dict",
}


def layout(model: torch.nn.Module) -> dict:
    """path -> (kind, child names) for the torch containers of ``model``,
    under each of their names (tracing.mount's ``layout``); the child names
    are all the container's, a module placed twice in it included
    (``nn.Sequential(lin, act, lin)`` has three, as its ``len``)."""
    return {
        name: (CONTAINERS[type(m)], [n for n, c in m._modules.items() if c is not None])
        for name, m in model.named_modules(remove_duplicate=False)
        if name and type(m) in CONTAINERS
    }


def _at(graph, name: str):
    """Our module at torch's dotted ``name`` (a converted layer at the place
    the conversion mounted it), or None."""
    path = graph._module_at.get(name) or (tuple(name.split(".")) if name else ())
    m = graph
    for part in path:
        m = m.__dict__["_modules"].get(part)
        if m is None:
            return None
    return m


def _open(m, graph) -> bool:
    """Whether a module of ours may take another child or parameter: the
    converted model itself or a container standing for a torch module that
    was traced through (a converted layer's state is its own)."""
    return m is graph or bool(m.__dict__.get("_traced") or getattr(type(m), "_traced", False))


def _container(graph, name: str, spec: dict):
    """Our module at ``name``, containers made on the way (as
    tracing.mount's), or None where the path runs into a converted layer."""
    node = graph
    parts = name.split(".") if name else []
    for i, part in enumerate(parts):
        nxt = node.__dict__["_modules"].get(part)
        if nxt is None:
            if not _open(node, graph):
                return None
            kind, names = spec.get(".".join(parts[: i + 1]), (None, ()))
            nxt = containers.traced(kind, names)
            nxt.training = graph.training
            node.add_module(part, nxt)
        node = nxt
    return node


def _reorder(table: dict, names: list) -> None:
    """``table``'s entries in torch's order (``names``), the others after,
    in place (a bare model's graph shares its tables)."""
    rank = {n: i for i, n in enumerate(names)}
    keys = sorted(table, key=lambda k: rank.get(k, len(names)))
    if keys != list(table):
        items = OrderedDict((k, table[k]) for k in keys)
        table.clear()
        table.update(items)


def name_all(graph, model: torch.nn.Module, spec: dict, plain) -> None:
    """Give the converted ``graph`` torch's other names for ``model``'s
    modules and parameters (``spec``: :func:`layout`; ``plain``: the
    conversion's ``_plain``, whose memo gives the copy it made of a torch
    parameter). A converted layer, or a container of ours, registered
    under two names in torch is the same object under both; a parameter
    torch names twice whose copy the graph holds is registered at the
    other name too (the owner a container where torch's was never called).
    (A BatchNorm folded at encrypt() goes from every name: fold_agree.) Sets
    the graph's top-level child names (``_seq_names``: a converted
    Sequential's ``len`` and indices count a layer placed twice twice)."""
    ours: dict = {}  # id(torch module) -> our module
    named = list(model.named_modules(remove_duplicate=False))
    for name, tm in named:
        m = _at(graph, name)
        if m is not None:
            ours.setdefault(id(tm), m)
    grown: dict = {}  # our module given a name -> torch's module there
    for name, tm in named:
        m = ours.get(id(tm))
        if not name or m is None or _at(graph, name) is not None:
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = _container(graph, owner_name, spec)
        if owner is None or not _open(owner, graph) or leaf in owner._params:
            continue
        owner.add_module(leaf, m)
        grown[id(owner)] = (owner, model.get_submodule(owner_name))
    have = {n for n, *_ in Module._named_state(graph)}
    # the objects themselves, kept: a table may make its value on reading
    # (BatchNorm's num_batches_tracked), and an id of an object gone may be
    # a new copy's (a dead id made a converted model take an unread torch
    # parameter, out of step with the other parties at encrypt)
    held = {id(v): v for _, _, t, k in Module._named_state(graph) for v in [t[k]]}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in have:
            continue
        v = plain(p)
        owner_name, _, leaf = name.rpartition(".")
        if held.get(id(v)) is not v or "." in leaf:
            continue
        owner = _container(graph, owner_name, spec)
        if owner is None or not _open(owner, graph):
            continue
        if leaf in owner._modules or leaf in owner._params:
            continue
        register_inside(owner, leaf, v)
        have.add(name)
        grown[id(owner)] = (owner, model.get_submodule(owner_name))
    for owner, tm in grown.values():
        _reorder(owner.__dict__["_modules"], [n for n, c in tm._modules.items() if c is not None])
        _reorder(owner.__dict__["_params"], [n for n, c in tm._parameters.items() if c is not None])
    # a converted Sequential's len and indices: a layer placed twice counts twice
    graph._seq_names = [n for n, c in model._modules.items() if c is not None]
    graph._traced_names = set(graph._seq_names)
