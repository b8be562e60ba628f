"""CrypTen's ``save_from_party`` / ``load_from_party``: plaintext data that
one party owns, written and read by that party only, and shared from it on
load (the other parties learn its shape, as in CrypTen)."""

from __future__ import annotations

import torch

from . import _session
from .tensor import cryptensor

_MAX_DIMS = 8


def _check_src(src) -> int:
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src <= 2:
        raise ValueError(f"src must be a party index 0, 1 or 2, got {src!r}")
    return src


def save_from_party(obj, f, src: int = 0, save_closure=torch.save, **kwargs) -> None:
    """Party ``src`` writes the plaintext ``obj`` to ``f`` with
    ``save_closure`` (``torch.save``); the other parties write nothing. In
    the local runtime (every party in this process) it is written once."""
    s = _session.current()
    if _check_src(src) in s.ranks:
        save_closure(obj, f, **kwargs)


def _broadcast_shape(s, src: int, shape) -> tuple:
    """src's tensor shape, known to every party: shared from src and opened
    (one sharing and one opening of 1 + 8 values); a negative first value
    is src's failure to load, raised by every party alike."""
    if len(s.ranks) == 3:  # the local runtime: src's shape is already here
        return shape
    head = [-1.0] + [0.0] * _MAX_DIMS
    if shape is not None and len(shape) <= _MAX_DIMS:
        head = [float(len(shape))] + [float(d) for d in shape] + [0.0] * (_MAX_DIMS - len(shape))
    got = cryptensor(torch.tensor(head, dtype=torch.float64), src=src).get_plain_text(
        dtype=torch.float64
    )
    n = int(round(float(got[0])))
    if n < 0:
        raise ValueError(f"party {src} could not load a tensor of at most {_MAX_DIMS} dims")
    return tuple(int(round(float(d))) for d in got[1 : 1 + n])


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
    tensors are loaded this way (CrypTen also zero-fills modules for the
    other parties; convert a module with ``cryptgpu.nn.from_pytorch`` and
    ``encrypt(src=...)`` instead)."""
    if encrypted:
        raise NotImplementedError(
            "load_from_party(encrypted=True): load shares saved by cryptgpu.save with cryptgpu.load"
        )
    if model_class is not None:
        raise NotImplementedError(
            "load_from_party of a module: convert it with cryptgpu.nn.from_pytorch and "
            "encrypt(src=...)"
        )
    s = _session.current()
    obj, shape, err = None, None, None
    if _check_src(src) in s.ranks:
        try:
            obj = preloaded if preloaded is not None else load_closure(f, **kwargs)
            if not torch.is_tensor(obj):
                raise TypeError(
                    f"load_from_party loads tensors; the file holds a {type(obj).__name__}"
                )
            shape = tuple(obj.shape)
        except Exception as e:  # told to the other parties below, then raised here
            err = e
    try:
        shape = _broadcast_shape(s, src, shape)
    except ValueError:
        if err is not None:
            raise err from None
        raise
    if err is not None:
        raise err
    data = obj if obj is not None else torch.zeros(shape, dtype=torch.float64)
    return cryptensor(data, src=src)
