"""Checkpoints of private training: :func:`save` and :func:`load`.

Each party writes and reads only its own file: its two share components of
every SharedTensor, and the position of its two PRG streams, so that a run
resumed from a checkpoint takes the same next step bit for bit. In the local
runtime (three parties in one process) ``save`` writes three files; in a
multi-process run each party writes its own.

File format (version 1): ``torch.save`` of a dict ``{"format":
"cryptgpu-checkpoint", "version": 1, "rank", "precision_bits", "prg",
"data"}`` and, once a Dropout layer drew a mask in the session,
``"dropout_rng"`` (the state of the torch generator that the parties draw
dropout masks from, :func:`cryptgpu._session.common_generator`), read
back with ``torch.load(weights_only=True)`` (no pickled code runs on
load). ``data`` is the saved object with each SharedTensor replaced by
``{"__cryptgpu__": "shared", "shape", "a", "b", "requires_grad"}`` (the
party's components as int64 tensors).

Resuming restores the PRG streams and the dropout generator, so the steps
after the checkpoint draw the same masks as they did in the first run.
That is what makes the resumed step identical, and it is safe when the
steps after the save are a replay of the same computation on the same
data (recovery after a crash or a stop), which then sends the same
messages again. Resuming and then computing on *other* data than the
first run did after its save would reuse masks on different values,
which reveals their differences to the parties: pass ``restore_rng=False``
there (fresh randomness; the next step then matches only to within the
fixed-point rounding). A checkpoint saved before the session's first
dropout mask cannot be replayed past that mask: the first run drew the
dropout generator's seed after the save from a joint coin of fresh OS
randomness, which a resumed run cannot draw again, and a new coin would
give other masks while the restored streams mask other values with the
saved run's PRG output. A session that loaded such a checkpoint with
``restore_rng=True`` therefore raises RuntimeError at its first dropout
mask, before drawing the coin (:func:`cryptgpu._session.common_generator`;
until 2026-12-06 it drew one and went on): resume it in a new session with
``restore_rng=False``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle

import numpy as np
import torch

from . import _checkpoint_kinds as kinds
from . import _session, party_io
from ._checkpoint_kinds import FORMAT
from ._checkpoint_kinds import party_path as _path
from .tensor import SharedTensor, party_index

VERSION = 1
_TAG = "__cryptgpu__"


# The keywords load and save take besides their own: torch.load's and
# torch.save's, and those of CrypTen's load_from_party / save_from_party
# (with src, or for a plaintext object); any other is torch's TypeError
# (until 2026-12-06 ignored: load(f, restore_rgn=False) restored the streams).
_TORCH_LOAD = frozenset({"map_location", "pickle_module", "weights_only", "mmap"})
_PICKLE_LOAD = frozenset({"encoding", "errors", "fix_imports"})  # torch.load's, unpickling
_FROM_PARTY = frozenset({"preloaded", "encrypted", "model_class", "load_closure"})
_TORCH_SAVE = frozenset(
    {
        "pickle_module",
        "pickle_protocol",
        "_use_new_zipfile_serialization",
        "_disable_byteorder_record",
    }
)


def _known(fn: str, kwargs: dict, known: frozenset) -> None:
    for k in kwargs:
        if k == "dummy_model":  # older CrypTen's load of a module (its Tutorial 4)
            raise TypeError(
                f"{fn}(dummy_model=): older CrypTen's way to load a module on party src "
                "(the others get the dummy), which needs an object broadcast this library "
                f"does not have: {party_io._MODULE_HOWTO}"
            )
        if k not in known:
            raise TypeError(f"{fn}() got an unexpected keyword argument {k!r}")


def _encode(obj, session, rank: int, memo: dict):
    """``obj`` as party ``rank``'s tree; ``memo`` (id -> index) numbers the
    SharedTensors met so far: one met again is a ``ref`` entry, which load
    gives back as the same object (until 2026-12-07 a SharedTensor saved
    twice came back as two)."""
    if isinstance(obj, SharedTensor):
        if obj._session.id != session.id:
            raise RuntimeError(
                "cannot save: " + _session.not_current(obj._session, "a SharedTensor in it")
            )
        if id(obj) in memo:
            return {_TAG: "ref", "index": memo[id(obj)]}
        memo[id(obj)] = len(memo)
        a, b = session.party_share(obj._t, rank)
        shape = list(obj.shape)

        def words(buf):
            if not buf:  # an empty tensor (frombuffer refuses an empty buffer)
                return torch.zeros(0, dtype=torch.int64)
            return torch.frombuffer(bytearray(buf), dtype=torch.int64).clone()

        return {
            _TAG: "shared",
            "shape": shape,
            "a": words(a),
            "b": words(b),
            "requires_grad": bool(obj.requires_grad),
        }
    if isinstance(obj, dict):
        bad = [k for k in obj if not _plain(k)]
        if bad:
            raise TypeError(
                f"checkpoint dict keys must be plain values (str, numbers, None, bytes, "
                f"torch.dtype, torch.device, tuples of them), got {bad[0]!r}"
            )
        return _dict_like(obj, {k: _encode(v, session, rank, memo) for k, v in obj.items()})
    if isinstance(obj, torch.Size) or (isinstance(obj, set) and _plain(obj)):
        # as torch.save keeps them (a Size came back a tuple until 2026-12-06);
        # not a frozenset, which torch.load(weights_only=True) refuses
        return obj
    if isinstance(obj, tuple):
        return kinds.tuple_entry(obj, _TAG, [_encode(v, session, rank, memo) for v in obj])
    if isinstance(obj, list):
        return [_encode(v, session, rank, memo) for v in obj]
    if isinstance(obj, np.generic):  # np.float64 is a float, but would not load back
        raise TypeError(
            f"cannot save a numpy {type(obj).__name__} (torch.load(weights_only=True) "
            "cannot read it back): convert it with float() or int()"
        )
    if _plain(obj) or isinstance(obj, torch.Tensor):
        return obj
    from .nn.module import Module

    if isinstance(obj, Module):
        raise TypeError(
            "save the module's state: cryptgpu.save(model.state_dict(), f), then "
            "model.load_state_dict(cryptgpu.load(f)) on a model of the same architecture"
        )
    what = _stateful(obj)
    if what:
        raise TypeError(
            f"save the {what}'s state, not the {what}: cryptgpu.save({{'model': "
            "model.state_dict(), 'optim': opt.state_dict(), 'sched': sched.state_dict()}, f); "
            "then ck = cryptgpu.load(f) and model.load_state_dict(ck['model']), "
            "opt.load_state_dict(ck['optim']), sched.load_state_dict(ck['sched']) on a new "
            "model, optimiser and scheduler built alike"
        )
    what = f"an object of type {type(obj).__name__}"
    if _holds_shared(obj):  # a dataclass or another object with SharedTensors in it
        what = f"a {type(obj).__name__} holding SharedTensors"
    raise TypeError(
        f"cannot save {what}: a checkpoint holds "
        "SharedTensors, torch tensors, numbers, strings, bytes, None, torch dtypes and "
        "devices, sets of plain values, and dicts, lists and tuples of them (state_dict() "
        "of models and optimisers; an object's fields as a dict: vars(obj))"
    )


# what torch.save and torch.load(weights_only=True) keep as it is
_PLAIN = (bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def _plain(v) -> bool:
    """A plain value, or a tuple or set of them (a dict key, a set
    element): saved as it is (until 2026-12-06 dtypes, devices, complex
    numbers, bytes, sets, and dict keys other than str and int were
    refused); not a frozenset, which torch.load(weights_only=True) does
    not read back (the save would replace a good file with one that does
    not load)."""
    if isinstance(v, np.generic):  # np.float64 is a float, but would not load back
        return False
    if isinstance(v, (tuple, set)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, _PLAIN)


# a defaultdict's default_factory, by name (a checkpoint holds no code)
_FACTORIES = {
    f.__name__ if f else "None": f
    for f in (None, list, dict, set, tuple, int, float, str, bool, collections.Counter)
}


def _dict_like(obj: dict, items: dict):
    """``items`` (``obj``'s, encoded) in a dict of ``obj``'s kind, as
    torch.save and torch.load(weights_only=True) keep it: a Counter, an
    OrderedDict (with its attributes: a torch state_dict's ``_metadata``);
    a defaultdict as a tagged entry naming its default_factory (torch.load
    refuses one). Rebuilding with ``type(obj)(pairs)`` counted the pairs of
    a Counter (a MultiStepLR's milestones) and broke a defaultdict."""
    if isinstance(obj, collections.defaultdict):
        factory = obj.default_factory
        name = getattr(factory, "__name__", None) if factory is not None else "None"
        if _FACTORIES.get(name, ...) is not factory:
            raise TypeError(
                f"cannot save a defaultdict whose default_factory is {factory!r}: a checkpoint "
                f"names it, and only {sorted(_FACTORIES)} can be named; save dict(d) instead"
            )
        return {_TAG: "defaultdict", "factory": name, "items": items}
    if type(obj) not in (dict, collections.OrderedDict, collections.Counter):
        raise TypeError(
            f"cannot save a {type(obj).__name__} (a dict subclass that "
            "torch.load(weights_only=True) cannot read back): save dict(d) instead"
        )
    return _rebuilt(obj, items)


def _rebuilt(like: dict, items: dict) -> dict:
    """``items`` in a dict of the type of ``like`` (dict, OrderedDict or
    Counter: update() on an empty Counter copies the counts)."""
    if type(like) is dict:
        return items
    out = type(like)()
    out.update(items)
    if type(like) is collections.OrderedDict:
        out.__dict__.update(like.__dict__)
    return out


def _stateful(obj) -> str | None:
    """ "optimiser" for a cryptgpu optimiser, "scheduler" for a torch LR
    scheduler over one: their shares are saved through state_dict() (saving
    the object itself failed in pickling, with advice to call the very
    ``cryptgpu.save(obj, path)`` that was called)."""
    from .optim import _Optimizer

    if isinstance(obj, _Optimizer):
        return "optimiser"
    return "scheduler" if isinstance(getattr(obj, "optimizer", None), _Optimizer) else None


def _holds_shared(obj) -> bool:
    """Whether ``obj`` is or holds (in dicts, lists, tuples, and the
    attributes of other objects: :func:`cryptgpu._checkpoint_kinds.contents`)
    a SharedTensor; a cryptgpu module, optimiser or a scheduler of one
    counts (:func:`_encode` refuses it, or the object holding it, with
    advice)."""
    from .nn.module import Module

    seen, todo = set(), [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:  # every object is held by obj meanwhile: ids stay unique
            continue
        seen.add(id(x))
        try:
            if isinstance(x, (SharedTensor, Module)) or _stateful(x):
                return True
        except Exception:  # an attribute that raises: not one of ours
            continue
        todo.extend(kinds.contents(x))
    return False


def save(obj, f, src: int | None = None, **kwargs) -> list[str]:
    """Save ``obj``, as CrypTen's ``crypten.save``.

    An object holding SharedTensors (a SharedTensor, or dicts/lists/tuples
    of SharedTensors, torch tensors and plain values, such as an encrypted
    ``model.state_dict()`` and ``optimizer.state_dict()``): each party this
    process hosts writes its own file of its shares, ``f`` with ``{rank}``
    replaced by r when it contains ``{rank}`` (other braces kept as
    written), else ``f + ".party{r}"`` (``src`` does not apply: every
    party holds shares). A plaintext object (a torch
    tensor, a dict of them, a torch module): party ``src`` (0 by default)
    writes ``torch.save(obj, f)`` and the others nothing
    (:func:`cryptgpu.party_io.save_from_party`), so that
    ``load_from_party(f, src=...)``, ``torch.load(f)`` and :func:`load`
    read it. A save of one kind removes this process's files of the other
    kind under the same name (an older checkpoint), after writing its own,
    so that :func:`load` never has to choose between them. Returns the
    paths this process wrote. Keywords: torch.save's
    (passed to it) and ``save_closure`` (CrypTen's: used for a plaintext
    object; shares are written by ``torch.save``); any other is a
    TypeError."""
    custom = kwargs.get("save_closure", torch.save) is not torch.save
    if not custom:  # (a closure of the caller's takes its own keywords)
        _known("save", kwargs, _TORCH_SAVE | {"save_closure"})
    s = _session.current()
    if not _holds_shared(obj):
        src = party_index(0 if src is None else src)
        party_io.save_from_party(obj, f, src, **kwargs)
        kinds.remove_party_files(f, s.ranks)  # an older shared save under this name
        return [os.fspath(f)] if src in s.ranks and isinstance(f, (str, os.PathLike)) else []
    if custom:
        raise NotImplementedError(
            "save(save_closure=...): an object holding SharedTensors is written as each "
            "party's cryptgpu checkpoint (by torch.save); save_closure applies to a "
            "plaintext object"
        )
    kwargs.pop("save_closure", None)
    for _ in _walk(obj, loops=True):  # a reference loop: ValueError, before any file
        pass
    _per_party_path(f)
    paths, written = [], []
    try:
        for rec in _records(obj, s):
            p = _path(f, rec["rank"])
            torch.save(rec, p + ".tmp", **kwargs)
            written.append(p + ".tmp")
            paths.append(p)
    except BaseException:
        # an error or a Ctrl-C while writing leaves the last checkpoint whole
        # (until 2026-12-06 each party's file replaced its old one as soon
        # as written: a stop between them left a mix that load refuses)
        for tmp in written:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        raise
    try:  # then all at once: no call but the renames between
        for p in paths:
            os.replace(p + ".tmp", p)
    except BaseException:
        # a Ctrl-C between two renames: the rest follow before it goes on,
        # so the new checkpoint is whole (a rename that failed leaves its
        # .tmp file, and load refuses the mix)
        for p in paths:
            if os.path.exists(p + ".tmp"):
                with contextlib.suppress(OSError):
                    os.replace(p + ".tmp", p)
        raise
    kinds.remove_plain_file(f)  # an older plaintext save under this name
    return paths


def _records(obj, s):
    """Each party's checkpoint record (the parties this process hosts)."""
    for rank, own_key, own_ctr, next_key, next_ctr in s.prg_states():
        rec = {
            "format": FORMAT,
            "version": VERSION,
            "rank": rank,
            "precision_bits": s.precision_bits,
            "prg": {
                "own_key": torch.tensor(list(own_key), dtype=torch.uint8),
                "own_counter": own_ctr,
                "next_key": torch.tensor(list(next_key), dtype=torch.uint8),
                "next_counter": next_ctr,
            },
            "data": _encode(obj, s, rank, {}),
        }
        dropout = _session.common_generator_state()
        if dropout is not None:  # the dropout masks' generator, if drawn yet
            rec["dropout_rng"] = dropout
        yield rec


def _per_party_path(f) -> None:
    """Refuse what cannot name one file per party: a file object, a
    directory (the parties' files became hidden files in it)."""
    if not isinstance(f, (str, bytes, os.PathLike)):
        raise TypeError(
            "shared values are saved as one file per party: give a path (str or "
            f"os.PathLike), not a {type(f).__name__}"
        )
    name = os.fsdecode(f)
    if os.path.isdir(name) or name.endswith(os.sep):
        raise IsADirectoryError(
            f"{name!r} is a directory: give a file name (each party reads and writes "
            "<name>.party<rank>, or a name with {rank})"
        )


def register_safe_class(cls) -> None:
    """CrypTen's ``crypten.common.serial.register_safe_class(cls)``, which
    lets CrypTen's restricted unpickler build ``cls``: accepted and does
    nothing here, since :func:`load` and
    :func:`cryptgpu.party_io.load_from_party` share tensors only and
    :func:`load` reads with ``torch.load(weights_only=True)`` (a module is
    loaded with ``torch.load`` and converted with ``cryptgpu.nn.from_pytorch``)."""
    del cls


def _plain_load(f, what: str, **kwargs):
    """A plaintext object, read with weights_only=True (``kwargs``: torch.load's
    map_location and mmap)."""
    try:
        obj = torch.load(f, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{what} holds objects other than tensors and plain values (a module?); "
            "cryptgpu.load reads with weights_only=True. If you trust the file, read it "
            "with torch.load(f, weights_only=False)"
        ) from e
    kinds.refuse_party_record(obj, getattr(f, "name", f))  # a .party<r> file, read as plaintext
    return obj


def _read(path: str, rank: int, precision_bits: int) -> dict:
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise EOFError(f"{path} is empty: not a cryptgpu checkpoint")
    try:
        rec = torch.load(path, weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Exception as e:  # torch raises several types for a damaged file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in why:  # not torch's advice to unpickle it
            why = "it holds objects other than tensors and plain values"
        raise ValueError(f"{path} is not a readable cryptgpu checkpoint ({why})") from e
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cryptgpu checkpoint")
    version = rec.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {rec.get('version')!r}; this cryptgpu "
            f"reads versions up to {VERSION}"
        )
    if rec.get("rank") != rank:
        raise ValueError(f"{path} holds party {rec.get('rank')}'s shares, not party {rank}'s")
    if rec.get("precision_bits") != precision_bits:
        raise ValueError(
            f"{path} was saved with precision_bits={rec.get('precision_bits')}, the "
            f"session has {precision_bits}"
        )
    return rec


def _decode(trees: list, session, seen: list, where: str = "checkpoint"):
    """Rebuild an object from the hosted parties' trees (walked together);
    ``seen``: the SharedTensors rebuilt so far, in the order :func:`_encode`
    numbered them (a ``ref`` entry is one of them again)."""
    t0 = trees[0]
    tag = t0.get(_TAG) if isinstance(t0, dict) else None
    if tag == "shared":
        shape = [int(n) for n in t0["shape"]]
        comps = []
        for t in trees:
            if not (isinstance(t, dict) and t.get(_TAG) == "shared" and t["shape"] == shape):
                raise ValueError(f"the parties' files disagree at {where}")
            if any(t[k].dtype != torch.int64 for k in ("a", "b")):
                raise ValueError(f"malformed cryptgpu checkpoint: shares at {where} are not int64")
            comps.append((t["a"].numpy().tobytes(), t["b"].numpy().tobytes()))
        x = SharedTensor(session.tensor_from_shares(shape, comps), session)
        seen.append(x.requires_grad_() if t0.get("requires_grad") else x)
        return seen[-1]
    if tag == "ref":
        i = t0.get("index")
        if any(not isinstance(t, dict) or t.get("index") != i for t in trees):
            raise ValueError(f"the parties' files disagree at {where}")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(seen):
            raise ValueError(f"malformed cryptgpu checkpoint: a reference at {where}")
        return seen[i]
    if tag == "defaultdict":
        if t0.get("factory") not in _FACTORIES or any(
            t.get("factory") != t0["factory"] for t in trees
        ):
            raise ValueError(f"malformed cryptgpu checkpoint: a defaultdict at {where}")
        items = _decode([t["items"] for t in trees], session, seen, where)
        return collections.defaultdict(_FACTORIES[t0["factory"]], items)
    if tag not in (None, "tuple", "namedtuple"):
        raise ValueError(f"malformed cryptgpu checkpoint: unknown entry {tag!r} at {where}")
    if tag is not None:  # a tuple or a namedtuple
        if any(not isinstance(t, dict) or t.get(_TAG) != tag for t in trees):
            raise ValueError(f"the parties' files disagree at {where}")
        items = [t["items"] for t in trees]
        out = [
            _decode([it[i] for it in items], session, seen, f"{where}[{i}]")
            for i in range(len(items[0]))
        ]
        return tuple(out) if tag == "tuple" else kinds.namedtuple_of(t0, out, where)
    if isinstance(t0, dict):
        if any(not isinstance(t, dict) or list(t) != list(t0) for t in trees):
            raise ValueError(f"the parties' files disagree at {where}")
        items = {k: _decode([t[k] for t in trees], session, seen, f"{where}[{k!r}]") for k in t0}
        return _rebuilt(t0, items)
    if isinstance(t0, list):
        if any(not isinstance(t, list) or len(t) != len(t0) for t in trees):
            raise ValueError(f"the parties' files disagree at {where}")
        return [
            _decode([t[i] for t in trees], session, seen, f"{where}[{i}]") for i in range(len(t0))
        ]
    return t0


def load(f, restore_rng: bool = True, src: int | None = None, **kwargs):
    """Read what :func:`save` wrote: each party this process hosts reads its
    own file and the SharedTensors are rebuilt in the current session (which
    must have the same ``precision_bits``). With ``restore_rng`` (the
    default) the parties' PRG streams go back to where they were at the
    save, checked between neighbours (one round; files from different runs
    or save points raise ValueError, as does a damaged file or a share
    whose two copies differ; an empty file is EOFError, as for torch.load),
    so the next step is the one the saved
    run took, bit for bit; see the module notes for when to pass False.
    With ``src`` (CrypTen's older form) party src reads a plaintext tensor
    from ``f`` and shares it: :func:`cryptgpu.party_io.load_from_party`.
    Where none of this party's files is there but ``f`` itself is (a
    plaintext object that :func:`save` wrote), its object is returned, read with
    ``torch.load(f, weights_only=True)`` (tensors, numbers, strings and
    containers of them; no pickled code runs), as CrypTen's ``load``.
    Both kinds under one name (files of an older cryptgpu, or copied in)
    are a ValueError naming them, at every party: one that sees both still
    takes part in the share checks and spoils them, so that parties whose
    own files are elsewhere fail there too. A party's own file
    (``f.party0``, as save returns) or a file object of one is a ValueError
    naming the call to make. A SharedTensor saved twice in ``obj`` comes
    back as one object, a namedtuple as a namedtuple; a view comes back as
    a tensor of its own.
    Keywords: torch.load's (``map_location`` and ``mmap`` apply to such a
    plaintext object; shares go to the session's device; files are
    always read with ``weights_only=True``) and, with ``src``,
    :func:`cryptgpu.party_io.load_from_party`'s; any other is a TypeError."""
    if src is not None:
        if kwargs.get("load_closure", torch.load) is torch.load:  # else the closure's keywords
            _known("load", kwargs, _TORCH_LOAD | _PICKLE_LOAD | _FROM_PARTY)
        return party_io.load_from_party(f, src=src, **kwargs)
    _known("load", kwargs, _TORCH_LOAD)
    plain_kw = {k: kwargs[k] for k in ("map_location", "mmap") if k in kwargs}
    s = _session.current()
    if not isinstance(f, (str, bytes, os.PathLike)):  # a file object: a plaintext save
        return _plain_load(f, "the file object", **plain_kw)
    if os.path.isdir(os.fsdecode(f)):
        _per_party_path(f)
    # Which kind: f itself where no file of this party's shares is here; both
    # kinds are a ValueError (until 2026-12-07 the newer by mtime, or f on a
    # tie: a copy or 1-second file times gave the stale one, and parties in
    # separate processes could choose differently). A party that sees both
    # takes part in the share checks with a spoiled state, so the others
    # fail there too rather than go out of step (no round added).
    both = kinds.both_kinds(f, s.ranks)
    if both is None and os.path.isfile(os.fsdecode(f)):  # and none of this party's shares
        return _plain_load(os.fspath(f), os.fspath(f), **plain_kw)
    if both and (len(s.ranks) == 3 or not all(os.path.exists(_path(f, r)) for r in s.ranks)):
        raise ValueError(both)  # every party is here, or this one has no shares to check
    recs = [_read(_path(f, r), r, s.precision_bits) for r in s.ranks]
    try:
        obj = _decode([r["data"] for r in recs], s, [])
        states = []
        for r in recs:
            g = r["prg"]
            states.append(
                (
                    r["rank"],
                    bytes(g["own_key"].tolist()),
                    int(g["own_counter"]),
                    bytes(g["next_key"].tolist()),
                    int(g["next_counter"]),
                )
            )
        # The saved states are checked between neighbours either way: files
        # of different runs or save points do not belong together (their
        # shares sum to garbage: weights 1e14 off, without an error, when
        # restore_rng=False skipped the check). Without restore_rng the
        # session's own streams are put back after the check.
        # the two copies of every share component first (a refused file
        # leaves the session's randomness as it was): a damaged file, or
        # one of another object, gave garbage after the next product
        shared = {id(x): x._t for x in _walk(obj) if isinstance(x, SharedTensor)}
        if shared:
            s.check_replicas(list(shared.values()))
        dropout = _dropout_state(recs)
        fresh = None if restore_rng else s.prg_states()
        if both is not None:
            _spoil(s, states, both)
        _restore_told(s, states)
        if fresh is not None:
            s.restore_prg_states(fresh)
        else:
            _session.restore_common_generator(dropout)
    except (KeyError, AttributeError, TypeError, OverflowError, IndexError) as e:
        # A field missing or of the wrong type: the file was edited or damaged.
        raise ValueError(
            f"malformed cryptgpu checkpoint {f!r}: {type(e).__name__}: {e} (a field is "
            "missing or has the wrong type)"
        ) from e
    return obj


def _spoil(s, states: list, both: str) -> None:
    """Fail the stream check at every party (this one's counter off by one),
    then raise ``both`` here: a party that found both kinds of checkpoint
    while the others found shares only (their own files on other hosts)."""
    bad = [(r, ok, oc + 1, nk, nc) for r, ok, oc, nk, nc in states]
    try:
        s.restore_prg_states(bad)
    except Exception as e:  # the check failed, as it must: nothing restored
        raise ValueError(both) from e
    raise ValueError(both)  # (not reached: a spoiled state always fails the check)


def _restore_told(s, states: list) -> None:
    """restore_prg_states, saying in a session of one party per process
    that a party may have refused the load (see :func:`_spoil`)."""
    try:
        s.restore_prg_states(states)
    except ValueError as e:
        if len(s.ranks) == 3 or "randomness states do not match" not in str(e):
            raise
        raise type(e)(
            f"{e}; or another party found both a plaintext file and its shares under this "
            "name and refused the load (its error says which files)"
        ) from e


def _dropout_state(recs: list):
    """The state of the dropout masks' generator in the hosted parties'
    records (None where none was drawn before the save). Restored with
    the streams: a resumed session drew a new joint coin for its dropout
    masks (a share and a reveal from the restored streams), so every later
    mask was drawn at other stream positions and the dropout masks
    differed, and the resumed run used the saved run's PRG output on other
    values (a party holding both runs' messages could subtract them)."""
    got = [r.get("dropout_rng") for r in recs]
    for g in got:
        if g is not None and not (isinstance(g, torch.Tensor) and g.dtype == torch.uint8):
            raise ValueError("malformed cryptgpu checkpoint: dropout_rng is not a uint8 tensor")
    if any(
        (g is None) != (got[0] is None) or (g is not None and not torch.equal(g, got[0]))
        for g in got
    ):
        raise ValueError("the parties' files disagree on the dropout generator")
    return got[0]


def _walk(obj, inside: tuple = (), loops: bool = False):
    """Everything in a (loaded or saved) object, through dicts, lists and
    tuples; a container that holds itself (``L.append(L)``) is gone into
    once, or with ``loops`` is a ValueError: torch.save keeps the loop, a
    checkpoint of shares cannot (until 2026-12-07 a RecursionError)."""
    yield obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    if items and id(obj) in inside:
        if loops:
            raise ValueError(
                f"cannot save a {type(obj).__name__} that holds itself (a reference loop) "
                "with SharedTensors in it: a checkpoint of shares keeps dicts, lists and "
                "tuples as trees"
            )
        return
    for v in items:
        yield from _walk(v, (*inside, id(obj)), loops)
