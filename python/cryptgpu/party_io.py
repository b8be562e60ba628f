"""CrypTen's ``save_from_party`` / ``load_from_party``: plaintext data that
one party owns, written and read by that party only, and shared from it on
load (the other parties learn its shape, as in CrypTen)."""

from __future__ import annotations

import math
import os
import pickle
import zlib

import torch

from . import _session, comm
from ._plain import _plain_array
from .tensor import SharedTensor, broadcast_shape, cryptensor, opened_words, party_index


def save_from_party(obj, f, src: int = 0, save_closure=torch.save, **kwargs) -> None:
    """Party ``src`` writes the plaintext ``obj`` to ``f`` with
    ``save_closure`` (``torch.save``); the other parties write nothing, and
    then wait for it (a barrier, as CrypTen's), so that any party may read
    ``f`` next. In the local runtime (every party in this process) it is
    written once. A SharedTensor is refused (save it with
    :func:`cryptgpu.save`)."""
    s, src = _session.current(), party_index(src)
    if isinstance(obj, SharedTensor):  # refused by every party alike
        raise TypeError(
            "save_from_party saves one party's plaintext; save a SharedTensor with "
            "cryptgpu.save(x, f) (each party writes its own shares)"
        )
    if src in s.ranks:
        save_closure(obj, f, **kwargs)
    comm.get().barrier()


def _missing(f, e: FileNotFoundError) -> FileNotFoundError:
    """A missing ``f``, saying so when the per-party files of
    :func:`cryptgpu.save` (``f.party0`` ...) are there instead."""
    try:
        base = os.fspath(f)
    except TypeError:
        return e
    found = [p for p in (f"{base}.party{r}" for r in range(3)) if os.path.exists(p)]
    if not found:
        return e
    return FileNotFoundError(
        f"{base} does not exist, but {', '.join(found)} do: those hold each party's shares "
        "of SharedTensors written by cryptgpu.save; read them with cryptgpu.load(f)"
    )


_MODULE_HOWTO = (
    "load it with torch.load(f, weights_only=False) (only a file you trust: it runs "
    "pickled code) on party src, build the same model on the other parties, convert it "
    "with cryptgpu.nn.from_pytorch(model, dummy_input) and encrypt(src=src)"
)


def _not_weights(f, e: pickle.UnpicklingError) -> TypeError:
    """torch.load's refusal (``weights_only=True``, its default) of an
    object other than tensors and plain values, as the TypeError that
    load_from_party raises for every non-tensor, naming the classes when
    torch can list them."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception:  # a file-like object already read, or an older torch
        names = []
    what = f" ({', '.join(names)})" if names else ""
    return TypeError(
        f"load_from_party loads tensors; {f!r} holds other objects{what} that "
        "torch.load(weights_only=True) does not read (a module saved by torch.save or "
        f"cryptgpu.save?). For a module, {_MODULE_HOWTO}; model_class= does not load one"
    )


def load_from_party(
    f=None,
    preloaded=None,
    encrypted: bool = False,
    model_class=None,
    src: int = 0,
    load_closure=torch.load,
    **kwargs,
):
    """Party ``src`` loads a plaintext tensor from ``f`` with
    ``load_closure`` (or takes ``preloaded``), and it is secret-shared from
    src: a SharedTensor for every party, which learn only its shape. Only
    tensors are loaded this way (CrypTen also returns a module, with src's
    weights and zeros on the other parties, which needs an object broadcast
    this library does not have; convert a module with
    ``cryptgpu.nn.from_pytorch`` and ``encrypt(src=...)`` instead): a file
    holding a module raises TypeError saying so. ``model_class`` (CrypTen's
    way to allow a module class in its unpickler) is accepted and changes
    nothing. Party src must give exactly one of ``f`` and ``preloaded``
    (ValueError otherwise, as CrypTen's); the others' are not read."""
    if encrypted:
        raise NotImplementedError(
            "load_from_party(encrypted=True): load shares saved by cryptgpu.save with cryptgpu.load"
        )
    s = _session.current()
    obj, shape, err, src = None, None, None, party_index(src)
    if src in s.ranks:
        try:
            if (f is None) == (preloaded is None):  # as CrypTen, on src
                raise ValueError(
                    "load_from_party: give exactly one of f and preloaded (got "
                    f"{'both' if f is not None else 'neither'})"
                )
            try:
                obj = preloaded if preloaded is not None else load_closure(f, **kwargs)
            except FileNotFoundError as e:
                raise _missing(f, e) from None
            except pickle.UnpicklingError as e:
                # torch.load's weights_only refuses a module before it is read
                raise _not_weights(f, e) from e
            if isinstance(obj, torch.nn.Module):
                raise TypeError(
                    f"load_from_party loads tensors; the file holds a module "
                    f"({type(obj).__name__}): {_MODULE_HOWTO}"
                )
            if not torch.is_tensor(obj):
                raise TypeError(
                    f"load_from_party loads tensors; the file holds a {type(obj).__name__}"
                )
            shape = tuple(obj.shape)
        except Exception as e:  # told to the other parties below, then raised here
            err = e
    try:
        shape = broadcast_shape(s, src, shape)
    finally:
        if err is not None:  # src raises its own error, not the others' message
            raise err from None
    if obj is None:
        return cryptensor(torch.zeros(shape, dtype=torch.float64), src=src)
    # src's file, read by this process: no placeholder to warn of in the local runtime
    out = SharedTensor._share(_plain_array(obj, "load_from_party"), src)
    return out.requires_grad_(True) if obj.requires_grad else out


def public_from(src: int, values: dict) -> dict:
    """``values`` (name -> public tensor, a converted model's buffers) as
    party ``src`` holds them, in a session of one party per process (each
    party built the model; only src loaded its weights): every buffer's
    name, kind (float or not) and rank, then their dims, then their 64-bit
    words, each in one exchange from src, exactly (:func:`cryptgpu.tensor.
    opened_words`; until 2026-12-06 each party computed with its own
    buffers: a party holding a dummy model gave outputs 3.8e9 off,
    silently). A buffer whose name or kind is not src's is a ValueError
    (its words would be read as another kind). They stay public. In the
    local runtime every party's are src's already."""
    s = _session.current()
    names = [k for k, v in values.items() if torch.is_tensor(v) and not v.is_complex()]
    if len(s.ranks) == 3 or not names:
        return values
    mine, own = src in s.ranks, [values[k] for k in names]
    head = torch.tensor(
        [[zlib.crc32(k.encode()), int(v.is_floating_point()), v.dim()] for k, v in zip(names, own)]
    )
    theirs = opened_words(src, head).reshape(-1, 3)
    for k, v, mine_, src_ in zip(names, own, head, theirs):
        if not torch.equal(mine_[:2], src_[:2]):
            raise ValueError(
                f"the converted model's buffer {k!r} ({v.dtype}) is not party {src}'s "
                "(another name or kind there): build the same model on every party"
            )
    ranks = theirs[:, 2].tolist()
    dims = [d for v in own for d in v.shape] if mine else [0] * sum(ranks)
    dims = opened_words(src, torch.tensor(dims, dtype=torch.int64)).tolist() if dims else []
    shapes = [tuple(dims[sum(ranks[:i]) : sum(ranks[: i + 1])]) for i in range(len(ranks))]
    sizes = [math.prod(shape) for shape in shapes]
    if mine:
        words = [v.double().view(torch.int64) if v.is_floating_point() else v.long() for v in own]
        words = torch.cat([w.reshape(-1) for w in words])
    else:  # src's shapes, whatever this party's model held
        words = torch.zeros(sum(sizes), dtype=torch.int64)
    got = opened_words(src, words) if sum(sizes) else words
    out = dict(values)
    for k, v, shape, part in zip(names, own, shapes, got.split(sizes)):
        part = part.reshape(shape)
        out[k] = (part.view(torch.float64) if v.is_floating_point() else part).to(v.dtype)
    return out
