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
process starts; it also starts in the caller's grad and inference mode,
which torch keeps per thread), and while parties run

- torch's sampling functions and methods (``torch.randn``,
  ``Tensor.uniform_``, ...; so also ``nn.init`` and a new ``nn.Linear``,
  ``torch.distributions``, ``F.rrelu``, ``F.gumbel_softmax``,
  ``random_split``'s default) are wrapped: called in a party thread on the
  CPU without a generator (or with torch's default one) they draw from the
  party's;
- ``torch.manual_seed``, ``torch.seed``, ``torch.initial_seed``,
  ``torch.get_rng_state`` and ``torch.set_rng_state`` act on it inside a
  party thread.

Elsewhere the wrappers call torch's own functions unchanged, and only
sampling calls pass through them (a ``TorchFunctionMode`` would see every
torch call). Not covered: a draw inside torch's C++ code that takes no
generator (``F.dropout`` and ``nn.Dropout`` on plain torch tensors:
wrapping ``F.dropout`` broke its dispatch to SharedTensors, which passes
the function itself, and TorchScript), CUDA generators, a
function bound before the run (``from torch import randn``; torch's own
``random_split`` is handled), TorchScript compiling a wrapped sampler
inside a party, and NumPy's
and Python's ``random`` modules (shared by the threads: seed a
``numpy.random.default_rng`` per party instead).
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.utils.data.dataset as _dataset

_local = threading.local()
_lock = threading.Lock()
_users = 0
_saved: dict = {}

# torch functions and Tensor methods that draw from the default CPU
# generator when given none (generator= is a keyword of each)
_FUNCTIONS = (
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "bernoulli",
    "multinomial",
    "poisson",
    "binomial",
    "_standard_gamma",
    "_sample_dirichlet",
    "rrelu",
    "rrelu_",
)
_METHODS = (
    "uniform_",
    "normal_",
    "random_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
    "bernoulli_",
    "bernoulli",
    "multinomial",
)


def _own():
    return getattr(_local, "generator", None)


def _on_cpu(args, kwargs) -> bool:
    """Whether a sampling call draws on the CPU (a CUDA draw refuses a CPU
    generator); a call on another tensor type (a SharedTensor) is left
    alone."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device.type == "cpu"
        if hasattr(type(a), "__torch_function__"):
            return False
    device = kwargs.get("device")
    if device is None:
        default = getattr(torch, "get_default_device", None)
        return default is None or default().type == "cpu"
    return torch.device(device).type == "cpu"


def _takes_generator(fn) -> bool:
    """Whether ``fn`` (a ``*_like`` sampler) takes ``generator=``: torch
    added it to ``rand_like`` and its kin only recently."""
    try:
        fn(torch.empty(0), generator=torch.Generator())
    except TypeError:
        return False
    return True


def _sampler(original):
    def draw(*args, **kwargs):
        g = _own()
        if (
            g is not None
            and kwargs.get("generator") in (None, torch.default_generator)
            and not any(isinstance(a, torch.Generator) for a in args)  # given by position
            and _on_cpu(args, kwargs)
        ):
            kwargs["generator"] = g
        return original(*args, **kwargs)

    draw.__wrapped__ = original
    draw.__name__ = getattr(original, "__name__", "draw")
    draw.__doc__ = getattr(original, "__doc__", None)
    return draw


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


_SEEDING = {
    "manual_seed": _manual_seed,
    "seed": _seed,
    "initial_seed": _initial_seed,
    "get_rng_state": _get_rng_state,
    "set_rng_state": _set_rng_state,
}


def _wrap() -> None:
    for name, fn in _SEEDING.items():
        _saved[name] = getattr(torch.random, name)
        for where in (torch, torch.random):
            setattr(where, name, fn)
    for name in _FUNCTIONS:
        _saved["torch." + name] = getattr(torch, name)
        if name.endswith("_like") and not _takes_generator(getattr(torch, name)):
            continue  # an older torch: left as it is (shared generator)
        setattr(torch, name, _sampler(getattr(torch, name)))
    for name in _METHODS:
        # inherited from torch._C.TensorBase: shadowed on torch.Tensor,
        # and uncovered again by deleting the shadow
        _saved["Tensor." + name] = torch.Tensor.__dict__.get(name)
        setattr(torch.Tensor, name, _sampler(getattr(torch.Tensor, name)))
    # random_split binds randperm at import
    _saved["dataset.randperm"] = _dataset.randperm
    _dataset.randperm = _sampler(_dataset.randperm)


def _unwrap() -> None:
    for name in _SEEDING:
        for where in (torch, torch.random):
            setattr(where, name, _saved[name])
    for name in _FUNCTIONS:
        setattr(torch, name, _saved["torch." + name])
    for name in _METHODS:
        if _saved["Tensor." + name] is None:
            delattr(torch.Tensor, name)
        else:
            setattr(torch.Tensor, name, _saved["Tensor." + name])
    _dataset.randperm = _saved["dataset.randperm"]


@contextlib.contextmanager
def wrapped():
    """While parties run: torch's sampling and seeding functions act on a
    party thread's own generator (torch's own elsewhere)."""
    global _users
    with _lock:
        if _users == 0:
            _wrap()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _unwrap()


def caller() -> tuple:
    """What a party forked from the calling thread would inherit: torch's
    generator state, grad mode and inference mode (both per thread in
    torch)."""
    return torch.get_rng_state(), torch.is_grad_enabled(), torch.is_inference_mode_enabled()


@contextlib.contextmanager
def party(forked: tuple):
    """In a party thread: its own generator, started from the caller's
    state, in the caller's grad and inference mode (``forked``:
    :func:`caller`)."""
    state, grad, inference = forked
    g = torch.Generator()
    g.set_state(state)
    _local.generator = g
    try:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            yield
    finally:
        _local.generator = None
