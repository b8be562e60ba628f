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
with them, as torch's old storage is)."""

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


def replace(t, value) -> None:
    """``t.data = value`` (a SharedTensor of t's session): the old storage,
    where views of ``t`` may hold it, left to them as a snapshot; ``t``
    takes the new value and layout (its shape may differ) and, like
    torch's, no longer views a base (a view's own views are of its root,
    and keep it)."""
    if t._view is None and t._cell is not None:
        old = type(t)(t._h, t._session)
        old._st, old._version = t._st, t._version
        t._cell[0] = old
    t._t, t._session = value._t, value._session
    t._st, t._view, t._cell = value._st, None, None
