"""torch's random numbers per party in :func:`cryptgpu.spmd.run` and
``crypten.mpc.run_multiprocess``.

CrypTen forks one process per party, so each party draws from its own copy
of torch's random generator: the habit ``torch.manual_seed(1)`` followed by
``torch.randn(...)`` inside the party function gives every party the same
public values (CrypTen's Tutorial 3, ``mpc_linear_svm``). Here the parties
are threads of one process, and torch's default generator is one per
process: seeding and drawing interleaved across the threads gave each party
other values, and a public operand that differs between parties opens as
garbage (a user probe saw accuracies of -6e11). Each party thread therefore
gets a generator of its own, started from the caller's state (as a forked
process starts), and

- a :class:`torch.overrides.TorchFunctionMode`, which is per thread, hands
  it to torch's sampling functions and ``nn.init`` called without a
  ``generator`` (``torch.randn``, ``Tensor.uniform_``, a new
  ``nn.Linear``'s initialisation, ...);
- ``torch.manual_seed``, ``torch.seed``, ``torch.initial_seed``,
  ``torch.get_rng_state`` and ``torch.set_rng_state`` act on it inside a
  party thread (they are wrapped while parties run; elsewhere they are
  torch's).

Not covered: a draw inside torch's C++ code that takes no generator
(``F.dropout`` on plain torch tensors), CUDA generators, and NumPy's and
Python's ``random`` modules (shared by the threads: seed a
``numpy.random.default_rng`` per party instead).
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch.overrides import TorchFunctionMode

_local = threading.local()
_lock = threading.Lock()
_users = 0
_saved: dict = {}

_SAMPLERS = {
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    torch.normal,
    torch.bernoulli,
    torch.multinomial,
    torch.poisson,
    torch.Tensor.uniform_,
    torch.Tensor.normal_,
    torch.Tensor.random_,
    torch.Tensor.exponential_,
    torch.Tensor.geometric_,
    torch.Tensor.cauchy_,
    torch.Tensor.log_normal_,
    torch.Tensor.bernoulli_,
    torch.Tensor.bernoulli,
    torch.Tensor.multinomial,
    torch.nn.init.uniform_,
    torch.nn.init.normal_,
    torch.nn.init.trunc_normal_,
    torch.nn.init.kaiming_uniform_,
    torch.nn.init.kaiming_normal_,
    torch.nn.init.xavier_uniform_,
    torch.nn.init.xavier_normal_,
    torch.nn.init.orthogonal_,
    torch.nn.init.sparse_,
}


class _PartyDraws(TorchFunctionMode):
    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SAMPLERS and kwargs.get("generator") is None:
            kwargs = {**kwargs, "generator": self.generator}
        return func(*args, **kwargs)


def _own():
    return getattr(_local, "generator", None)


def _manual_seed(seed):
    g = _own()
    return _saved["manual_seed"](seed) if g is None else g.manual_seed(int(seed))


def _seed():
    g = _own()
    return _saved["seed"]() if g is None else g.seed()


def _initial_seed():
    g = _own()
    return _saved["initial_seed"]() if g is None else g.initial_seed()


def _get_rng_state():
    g = _own()
    return _saved["get_rng_state"]() if g is None else g.get_state()


def _set_rng_state(state):
    g = _own()
    return _saved["set_rng_state"](state) if g is None else g.set_state(state)


_WRAPPERS = {
    "manual_seed": _manual_seed,
    "seed": _seed,
    "initial_seed": _initial_seed,
    "get_rng_state": _get_rng_state,
    "set_rng_state": _set_rng_state,
}


@contextlib.contextmanager
def wrapped():
    """While parties run: torch's seeding functions act on a party
    thread's own generator (the same functions elsewhere)."""
    global _users
    with _lock:
        if _users == 0:
            for name, fn in _WRAPPERS.items():
                _saved[name] = getattr(torch.random, name)
                for where in (torch, torch.random):
                    setattr(where, name, fn)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for name in _WRAPPERS:
                    for where in (torch, torch.random):
                        setattr(where, name, _saved[name])


@contextlib.contextmanager
def party(state: torch.Tensor):
    """In a party thread: its own generator, started from ``state``."""
    g = torch.Generator()
    g.set_state(state)
    _local.generator = g
    try:
        with _PartyDraws(g):
            yield
    finally:
        _local.generator = None
