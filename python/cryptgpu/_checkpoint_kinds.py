"""Helpers of :mod:`cryptgpu.checkpoint`: which kind of checkpoint a name
holds, and the object structure that a checkpoint keeps.

A name ``f`` holds one of two kinds: a plaintext object (``f`` itself,
written by party src with ``torch.save``) or a shared one (one file per
party, ``f.party<r>`` or ``f`` with ``{rank}`` replaced). A save of one
kind removes this process's files of the other kind under that name, so
that what :func:`cryptgpu.load` reads does not depend on file times (until
2026-12-07 both stayed and load took ``f`` when its mtime was >= the party
files': after a copy that reset the times, or on a filesystem with
1-second times, it returned the stale plaintext object, and parties in
separate processes could choose differently and go out of step).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import sys
import types

FORMAT = "cryptgpu-checkpoint"
_RANKS = (0, 1, 2)


def party_path(f, rank: int) -> str:
    """Party ``rank``'s file: ``{rank}`` in ``f`` replaced by the rank, every
    other brace kept as written, as torch.save keeps a name (until
    2026-12-06 ``f.format``: ``ck_{rank}_{step}`` raised KeyError 'step'),
    else ``f`` + ``.party<rank>``."""
    f = os.fspath(f)
    return f.replace("{rank}", str(rank)) if "{rank}" in f else f"{f}.party{rank}"


def remove_party_files(f, ranks) -> None:
    """After a plaintext save to the path ``f``: remove the per-party files
    of the hosted ``ranks`` under that name (an older shared checkpoint),
    each party its own, where they are checkpoint records."""
    if not isinstance(f, (str, bytes, os.PathLike)):
        return  # a file object: no name
    f = os.fsdecode(f)
    for r in ranks:
        p = party_path(f, r)
        if os.path.isfile(p) and _is_record(p):  # not a file of the caller's ("ck_0.pt")
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)


def _is_record(path: str) -> bool:
    """Whether ``path`` is a party's checkpoint record (read to tell)."""
    import torch

    try:
        rec = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # damaged, or not torch's: not ours to remove
        return False
    return isinstance(rec, dict) and rec.get("format") == FORMAT


def remove_plain_file(f) -> None:
    """After a shared save to ``f``: remove the plaintext file ``f`` (an
    older plaintext save under that name), where this process sees one."""
    f = os.fsdecode(f)
    if os.path.isfile(f):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f)


def both_kinds(f, ranks) -> str | None:
    """The ValueError's message when the plaintext file ``f`` is here beside
    a per-party file of the hosted ``ranks`` (None when not). Each party
    looks at its own files only, which its own save removed (another
    party's, on a shared filesystem, may still be on their way out)."""
    plain = os.fsdecode(f)
    own = [p for p in (party_path(plain, r) for r in ranks) if os.path.exists(p)]
    if not own or not os.path.isfile(plain):
        return None
    return (
        f"both a plaintext checkpoint {plain!r} (cryptgpu.save of an object without "
        f"SharedTensors, or torch.save) and per-party shares {', '.join(map(repr, own))} "
        "(cryptgpu.save of SharedTensors) are named here: which one is newer cannot be "
        "told from file times. Remove the files of the one you do not want (since "
        "2026-12-07 a cryptgpu.save of either kind removes the other kind's files under "
        "its name)"
    )


def refuse_party_record(obj, name) -> None:
    """ValueError where a plaintext read found a party's checkpoint record
    (the ``.party<r>`` path that :func:`cryptgpu.save` returns, or a file
    object of one): it holds that party's share words and PRG state, not
    the saved object."""
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        return
    rank = obj.get("rank")
    name = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else None
    suffix = f".party{rank}"
    if name and name.endswith(suffix) and len(name) > len(suffix):
        base = name[: -len(suffix)]
        how = f"call cryptgpu.load({base!r})"
    else:
        base = None
        how = (
            "call cryptgpu.load with the name given to cryptgpu.save (with {rank} where "
            "the name has the rank)"
        )
    what = f"checkpoint {base!r}" if base else "a cryptgpu checkpoint"
    where = f"{name!r} is" if name else "this file is"
    raise ValueError(
        f"{where} party {rank}'s file of {what} (its share words and randomness state, "
        f"not the saved object): {how}; each party then reads its own file"
    )


def tuple_entry(obj, tag: str, items: list) -> dict:
    """A tuple's entry: a namedtuple's also names its class and fields
    (until 2026-12-07 it came back a plain tuple: ``o.step`` raised
    AttributeError)."""
    fields = getattr(type(obj), "_fields", None)
    if (
        type(obj) is tuple
        or not isinstance(fields, tuple)
        or len(fields) != len(obj)
        or not all(isinstance(n, str) for n in fields)
    ):
        return {tag: "tuple", "items": items}
    cls = type(obj)
    return {
        tag: "namedtuple",
        "module": str(cls.__module__),
        "name": str(cls.__qualname__),
        "fields": list(fields),
        "items": items,
    }


def namedtuple_of(entry: dict, items: list, where: str) -> tuple:
    """The namedtuple of a checkpoint entry: its class where the module that
    defined it is imported and the class there has the same fields (no
    import, and no code of the class runs: built as namedtuple's own
    ``_make`` does), else a namedtuple class of the same name and fields
    (``o.step`` works; ``isinstance`` with the original class does not)."""
    module, name, fields = entry.get("module"), entry.get("name"), entry.get("fields")
    if not (
        isinstance(module, str)
        and isinstance(name, str)
        and isinstance(fields, list)
        and all(isinstance(n, str) for n in fields)
        and len(fields) == len(items)
    ):
        raise ValueError(f"malformed cryptgpu checkpoint: a namedtuple at {where}")
    cls = sys.modules.get(module)
    for part in name.split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    if not (
        isinstance(cls, type)
        and issubclass(cls, tuple)
        and getattr(cls, "_fields", None) == tuple(fields)
    ):
        cls = _namedtuple(name.rpartition(".")[2], tuple(fields))
    try:
        return tuple.__new__(cls, items)
    except TypeError:  # a tuple type of C (a structseq) that names _fields
        return tuple.__new__(_namedtuple(name.rpartition(".")[2], tuple(fields)), items)


@functools.lru_cache(maxsize=256)
def _namedtuple(name: str, fields: tuple):
    try:
        return collections.namedtuple(name if name.isidentifier() else "Loaded", fields)
    except ValueError as e:
        raise ValueError(f"malformed cryptgpu checkpoint: namedtuple fields {fields}") from e


_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    str,
    bytes,
)


def contents(x) -> list:
    """What ``x`` holds, for finding SharedTensors: a container's items, or an
    object's attributes (``__dict__`` and ``__slots__``: a dataclass or a
    plain class; until 2026-12-07 such an object was taken for plaintext,
    and torch.save's refusal of the SharedTensor in it said to call the
    very cryptgpu.save that was called)."""
    import torch

    if isinstance(x, dict):
        return list(x.values())
    if isinstance(x, (list, tuple, set, frozenset)):
        return list(x)
    if isinstance(x, (_OPAQUE, torch.Tensor)) or x is None:
        return []
    out = []
    d = getattr(x, "__dict__", None)
    if isinstance(d, dict):
        out.extend(d.values())
    for cls in type(x).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for n in (slots,) if isinstance(slots, str) else slots:
            if n not in ("__dict__", "__weakref__"):
                with contextlib.suppress(Exception):
                    out.append(getattr(x, n))
    return out
