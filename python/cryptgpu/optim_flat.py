"""Optimiser steps over a parameter group in batches: the elements of the
parameters whose state is alike laid end to end, about 65,536 a batch, so
that a step's truncations and comparisons are one round each per batch,
not per parameter tensor (until 2026-12-08 an Adam step cost 74 rounds per
parameter tensor: 740 for a LeNet's ten; SGD with momentum 4 per tensor),
and a large tensor's moment step runs on pieces whose intermediates stay
in cache (an Adam step of one 1,048,576-element tensor took 30 us of CPU
an element, in pieces of 65,536 9 to 13)."""

from __future__ import annotations

from . import _session
from . import autograd as ag
from .tensor import cat
from .tensor_base import TensorBase

# The most elements a batch lays end to end. A moment optimiser's step
# (Adam, RMSprop, Adagrad: a comparison of 21 thresholds and about 60
# products an element) costs 2 to 3 times more CPU an element on tensors of
# 2^18 to 2^20 elements than on 2^16 (measured 2026-12-08 on the 2-core
# machine), so their large tensors are cut into pieces of this size; SGD's
# step (two products) is not, and only its small tensors share a batch.
BATCH_ELEMENTS = 1 << 16


class Flat:
    """One batch: ``segments`` (p, a, b), elements a..b of each parameter p
    (flattened) laid end to end. :meth:`join` lays tensors of the
    parameters' shapes out so; :meth:`store` and :meth:`assign` cut a flat
    result back. A parameter cut over several batches gets its pieces
    when the last of them is done (``pending``, shared by those batches:
    :func:`flat_steps` finishes them), so every batch reads its state as
    it was before the step."""

    def __init__(self, segments: list, pending: dict):
        self.segments = segments
        self.params = [p for p, _, _ in segments]
        self._pending = pending

    def join(self, tensors):
        """The tensors' segments (one tensor per segment, in its parameter's
        shape) end to end; None where every entry is None (a state slot none
        of them has yet)."""
        tensors = list(tensors)
        if all(t is None for t in tensors):
            return None
        if any(t is None for t in tensors):  # the batches' keys keep them alike
            raise AssertionError("optimiser batch mixes parameters with and without a state")
        pieces = []
        for t, (p, a, b) in zip(tensors, self.segments):
            flat = t.reshape(-1)
            pieces.append(flat if a == 0 and b == p.numel() else flat[a:b])
        return pieces[0] if len(pieces) == 1 else cat(pieces)

    def gather(self, table: dict):
        """The parameters' entries of ``table`` end to end (None: none has one)."""
        return self.join(table.get(id(p)) for p in self.params)

    def values(self):
        """The parameters' own values end to end."""
        return self.join(self.params)

    def _cut(self, flat):
        """(p, a, b, piece) for each segment: its piece of ``flat``, its own
        tensor (not a view that keeps the whole flat one alive), in p's
        shape where the segment is the whole of p."""
        at = 0
        for p, a, b in self.segments:
            piece = flat if len(self.segments) == 1 else flat[at : at + b - a]
            at += b - a
            if a == 0 and b == p.numel():
                piece = piece.reshape(tuple(p.shape))
            yield p, a, b, piece._wrap(piece._t)

    def store(self, table: dict, flat) -> None:
        """``table[id(p)]`` = p's piece of ``flat`` (nothing for None)."""
        if flat is None:
            return
        for p, a, b, piece in self._cut(flat):
            if a == 0 and b == p.numel():
                table[id(p)] = piece
            else:
                self._pending.setdefault((id(table), id(p)), (table, p, []))[2].append((a, piece))

    def assign(self, flat) -> None:
        """Each parameter set, in place, to its piece of ``flat``."""
        for p, a, b, piece in self._cut(flat):
            if a == 0 and b == p.numel():
                p._assign(piece, "step")
            else:
                self._pending.setdefault((None, id(p)), (None, p, []))[2].append((a, piece))


def _finish(pending: dict) -> None:
    """The pieces of parameters cut over several batches, joined and stored
    (or assigned) once all of their batches are done."""
    for table, p, pieces in pending.values():
        whole = cat([t for _, t in sorted(pieces, key=lambda e: e[0])]).reshape(tuple(p.shape))
        if table is None:
            p._assign(whole, "step")
        else:
            table[id(p)] = whole
    pending.clear()


def _segments(params: list, cut: bool) -> list:
    """``params`` in order as batches of (p, a, b) segments of at most
    BATCH_ELEMENTS elements in all: with ``cut``, a large parameter is cut
    into pieces (and a batch filled up to the size); without, each
    parameter is whole and a larger one is a batch alone."""
    runs: list[list] = [[]]
    total = 0
    for p in params:
        n = p.numel()
        if not cut or n == 0:
            if runs[-1] and total + n > BATCH_ELEMENTS:
                runs.append([])
                total = 0
            runs[-1].append((p, 0, n))
            total += n
            continue
        a = 0
        while a < n:
            if total == BATCH_ELEMENTS:
                runs.append([])
                total = 0
            b = min(n, a + BATCH_ELEMENTS - total)
            runs[-1].append((p, a, b))
            total += b - a
            a = b
    return [r for r in runs if r]


def flat_steps(group: dict, prepare=None, key=None, grads: dict | None = None, cut: bool = True):
    """(Flat, gradient) batches of ``group``'s parameters with a gradient,
    each gradient with L2 weight decay (unless decoupled) and ``maximize``
    applied, inside no_grad and as training work (exact truncation), as
    torch's single-tensor loop per parameter. ``prepare(p)`` runs for each
    parameter before its batch is formed (step counts, unit changes);
    parameters with equal ``key(p)`` (their state's shape: which slots
    they hold, their step count) share batches of at most
    ``BATCH_ELEMENTS`` elements (``cut``: large parameters cut into
    pieces; else whole, a larger one alone). A parameter listed twice is
    stepped twice, the second time after the first (as one by one).
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
        pending: dict = {}
        for layer in layers:
            if prepare is not None:
                for p in layer:
                    prepare(p)
            alike: dict = {}
            for p in layer:
                alike.setdefault(None if key is None else key(p), []).append(p)
            for ps in alike.values():
                for segments in _segments(ps, cut):
                    flat = Flat(segments, pending)
                    g = flat.join(_shared_grad(p, grads) for p in flat.params)
                    g = -g if maximize else g
                    if decay:
                        g = g + flat.values() * wd
                    yield flat, g
            _finish(pending)


def _shared_grad(p, grads):
    """p's gradient (``grads``'s entry for p where given) as a sharing: a
    torch tensor set as ``p.grad`` by hand is a public one."""
    g = p.grad if grads is None else grads[id(p)]
    return g if isinstance(g, TensorBase) else p._public(p._plain(g, "grad"))
