"""A base's storage as its views know it, through ``base.data = new``.

A view here holds a copy of its values and re-reads its base when the base
changes (tensor_base.py, ``TensorBase._t``); torch's view shares its base's
storage. Assigning ``base.data = new`` gives the base a new storage in
torch, and views taken before keep the old one: they read the old values,
writes through the base no longer reach them, and writes through them no
longer reach the base (until 2026-12-06 they followed the new value, or
raised ShapeError for a new value of another shape).

So a base and its views share a cell, ``[None]``, made at the first view
(:func:`cell`). The setter (:func:`replace`) leaves a snapshot of the old
storage in it, and gives the base a fresh cell at its next view; each view
then views that snapshot (:func:`follow`), which only the views hold (freed
with them, as torch's old storage is).

A new value of the same storage (``x.data = x.data``, ``= x``,
``= x.reshape(3, 2)``, ``= x.t()``, ``= x[0]``) makes none: in torch the
views taken before keep sharing it with the tensor (until 2026-12-07 they
were cut off from it). The same layout changes nothing; another layout
leaves the storage in a hidden root, which the tensor then views as the
new value does (and so do the views taken before, through the cell)."""

from __future__ import annotations


def cell(owner) -> list:
    """The cell a new view of the root ``owner`` shares with it."""
    if owner._cell is None:
        owner._cell = [None]
    return owner._cell


def follow(view, v) -> tuple:
    """``view``'s (base, version read, read, write), now of its base's old
    storage where the base was given a new value since (re-read from it
    unless the view had read it as it was then)."""
    c = view._cell
    if c is None or c[0] is None:
        return v
    old = c[0]
    view._cell = cell(old)
    view._view = (old, v[1] if v[1] == old._version else -1, v[2], v[3])
    return view._view


def _root(x):
    """The tensor that holds ``x``'s storage: ``x``, or the root its view
    follows (a view's base is a root; after ``base.data = new``, the one
    left in their cell)."""
    if x._view is None:
        return x
    c = x._cell
    return c[0] if c is not None and c[0] is not None else x._view[0]


def replace(t, value) -> None:
    """``t.data = value`` (a SharedTensor of t's session). Another storage:
    the old one, where views of ``t`` may hold it, left to them as a
    snapshot; ``t`` takes the new value and layout (its shape may differ)
    and, like torch's, no longer views a base (a view's own views are of
    its root, and keep it). The same storage: shared on, as in torch (see
    above). Everything that can raise (a stale ``value``) is read before
    anything changes: a refused assignment leaves ``t`` and its views as
    they were (until 2026-12-07 the views were cut off from ``t``)."""
    if value is t:
        return  # nothing changes, as in torch
    h, sess, st = value._t, value._session, value._st  # (value._view now followed)
    same = _root(value) is _root(t)
    if same and h is t._h and st == t._st:
        return  # the same storage in the same layout (x.detach()): nothing changes
    view, off = None, None
    if same:  # t (or t's root) viewed as value views it, at value's offset there
        view = value.detach()._view if value._view is None else value._view
        off = 0 if value._view is None else getattr(value, "_off", None)
    if t._view is None and (t._cell is not None or view is not None):
        old = type(t)(t._h, t._session)
        old._st, old._version = t._st, t._version
        cell(t)[0] = old
        if view is not None:  # value views t: now the storage, old
            view = (old, old._version, view[2], view[3])
    t._t, t._session = h, sess
    t._st, t._view, t._off = st, view, off  # (tensor_overlap reads the offset)
    t._cell = None if view is None else cell(view[0])
