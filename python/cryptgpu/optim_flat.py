"""Optimiser steps over a whole parameter group at once: the parameters
whose state is alike laid end to end in one flat tensor, so that a step's
truncations and comparisons are one round each for the group, not one per
parameter tensor (until 2026-12-08 an Adam step cost 74 rounds per
parameter tensor: 740 for a LeNet's ten; SGD with momentum 4 per tensor)."""

from __future__ import annotations

from . import _session
from . import autograd as ag
from .tensor import cat
from .tensor_base import TensorBase


class Flat:
    """Parameters ``params`` laid end to end: :meth:`join` lays tensors of
    their shapes out so, :meth:`split` cuts a flat one back into them."""

    def __init__(self, params: list):
        self.params = params
        self.shapes = [tuple(p.shape) for p in params]
        self.sizes = [p.numel() for p in params]

    def join(self, tensors):
        """The tensors (one a parameter, in order) end to end; None where
        every entry is None (a state slot none of them has yet)."""
        tensors = list(tensors)
        if all(t is None for t in tensors):
            return None
        if any(t is None for t in tensors):  # the batches' keys keep them alike
            raise AssertionError("optimiser batch mixes parameters with and without a state")
        if len(tensors) == 1:
            return tensors[0].reshape(-1)
        return cat([t.reshape(-1) for t in tensors])

    def split(self, flat) -> list:
        """The parameters' pieces of ``flat`` in their shapes, each its own
        tensor (not a view that keeps the whole flat one alive)."""
        if flat is None:
            return [None] * len(self.params)
        if len(self.params) == 1:
            piece = flat.reshape(self.shapes[0])
            return [piece._wrap(piece._t)]
        out, at = [], 0
        for shape, n in zip(self.shapes, self.sizes):
            piece = flat[at : at + n].reshape(shape)
            out.append(piece._wrap(piece._t))
            at += n
        return out

    def store(self, table: dict, flat) -> None:
        """``table[id(p)]`` = p's piece of ``flat`` (nothing for None)."""
        if flat is not None:
            for p, piece in zip(self.params, self.split(flat)):
                table[id(p)] = piece

    def gather(self, table: dict):
        """The parameters' entries of ``table`` end to end (None: none has one)."""
        return self.join(table.get(id(p)) for p in self.params)

    def assign(self, flat, what: str = "step") -> None:
        """Each parameter set, in place, to its piece of ``flat``."""
        for p, piece in zip(self.params, self.split(flat)):
            p._assign(piece, what)


def flat_steps(group: dict, prepare=None, key=None, grads: dict | None = None):
    """(Flat, gradient) batches of ``group``'s parameters with a gradient,
    each gradient with L2 weight decay (unless decoupled) and ``maximize``
    applied, inside no_grad and as training work (exact truncation), as
    torch's single-tensor loop per parameter. ``prepare(p)`` runs for each
    parameter before its batch is formed (step counts, unit changes);
    parameters with equal ``key(p)`` (their state's shape: which slots
    they hold, their step count) share a batch, of at most
    ``BATCH_ELEMENTS`` elements unless one parameter is larger. A
    parameter listed twice is stepped twice, the second time after the
    first (as one by one).
    ``grads``: the gradients to use instead of ``p.grad``, by ``id(p)``."""
    wd, maximize = group.get("weight_decay", 0), group.get("maximize")
    decay = wd and not group.get("decoupled_weight_decay")
    held = [p for p in group["params"] if p.grad is not None]
    with ag.no_grad(), _session.training_work():
        # occurrences: a parameter's n-th place in the group goes in layer n
        layers: list[list] = []
        count: dict[int, int] = {}
        for p in held:
            n = count[id(p)] = count.get(id(p), -1) + 1
            if n == len(layers):
                layers.append([])
            layers[n].append(p)
        for layer in layers:
            if prepare is not None:
                for p in layer:
                    prepare(p)
            batches: dict = {}
            for p in layer:
                batches.setdefault(None if key is None else key(p), []).append(p)
            for ps in (b for alike in batches.values() for b in _packed(alike)):
                flat = Flat(ps)
                g = flat.join(_shared_grad(p, grads) for p in ps)
                g = -g if maximize else g
                if decay:
                    g = g + flat.join(ps) * wd
                yield flat, g


# The most elements a batch lays end to end (one larger parameter is a
# batch of its own): a step's work per element grows with the size of its
# intermediate tensors (an Adam step: about 20 us an element at 20,000 to
# 60,000 elements, 32 at 200,000, 75 at 2,000,000 laid end to end), so
# small tensors are batched, for their rounds, and large ones are not
# joined (measured 2026-12-08 on the 2-core machine).
BATCH_ELEMENTS = 1 << 16


def _packed(params: list) -> list:
    """``params`` in order, cut into runs of at most BATCH_ELEMENTS
    elements (a parameter above it alone)."""
    runs: list[list] = []
    total = 0
    for p in params:
        n = p.numel()
        if not runs or total + n > BATCH_ELEMENTS:
            runs.append([])
            total = 0
        runs[-1].append(p)
        total += n
    return runs


def _shared_grad(p, grads):
    """p's gradient (``grads``'s entry for p where given) as a sharing: a
    torch tensor set as ``p.grad`` by hand is a public one."""
    g = p.grad if grads is None else grads[id(p)]
    return g if isinstance(g, TensorBase) else p._public(p._plain(g, "grad"))
