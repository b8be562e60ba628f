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

A ``torch.Generator`` made before the run (``DataLoader(ds, shuffle=True,
generator=g)`` with a seeded ``g``, torch's reproducibility recipe) is one
object that the three threads share, where each forked process has its
own copy: each party drew other values from it (party 0's features and
party 1's labels from different rows, silently). Inside a party thread it
therefore stands for that party's copy, started from its state when a
party first used it (its state at the run's start): a sampling call given
it draws from the copy, and its methods (``manual_seed``, ``seed``,
``set_state``, ``get_state``, ``initial_seed``, ``clone_state``, and
``__reduce__``, which ``copy.deepcopy`` and pickle use) act on the copy,
so seeding it inside the party function, before or between draws, and
reading its state there behave as in a forked process whatever the
threads' timing. Its own state does not move, and at the run's end it is
as it was (a forked party leaves the caller's generator as it was).
torch's Generator is a C type whose attributes cannot be set, so these
methods are replaced in its type's dict while parties run (reached through
``gc.get_referents``; ``PyType_Modified`` resets CPython's method cache)
and put back after; elsewhere they call torch's own. A generator made
inside the party function (``torch.Generator()`` in a party thread:
torch's name is wrapped while parties run) is that party's alone and used
as given.

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
import ctypes
import gc
import threading
import weakref

import torch
import torch.utils.data.dataset as _dataset

_local = threading.local()
_lock = threading.Lock()
_users = 0
_saved: dict = {}
_Real = torch.Generator  # torch's class (torch.Generator is wrapped while parties run)

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
        fn(torch.empty(0), generator=_Real())
    except TypeError:
        return False
    return True


def _sampler(original):
    def draw(*args, **kwargs):
        own = _own()
        if own is not None and _on_cpu(args, kwargs):
            at = next((i for i, a in enumerate(args) if isinstance(a, _Real)), None)
            given = kwargs.get("generator") if at is None else args[at]
            if given is None or given is torch.default_generator:
                given = own
            else:  # the party's copy of one made before the run
                given = _local.run.copy(given)
            if at is None:
                kwargs["generator"] = given
            else:
                args = (*args[:at], given, *args[at + 1 :])
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


class _GeneratorType(type):
    """``torch.Generator`` while parties run: makes torch's generators (of
    torch's class: isinstance holds both ways) and notes those made in a
    party thread as that party's own (:meth:`_Run.copy` leaves them)."""

    def __call__(cls, *args, **kwargs):
        g = _Real(*args, **kwargs)
        if _own() is not None:
            _local.run.made.add(g)
        return g

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _Real)

    def __subclasscheck__(cls, sub) -> bool:
        return issubclass(sub, _Real)

    def __getattr__(cls, name):
        return getattr(_Real, name)


class _Generator(metaclass=_GeneratorType):
    __doc__ = _Real.__doc__
    __module__ = "torch"
    __qualname__ = "Generator"


_Generator.__name__ = "Generator"


class _Copied:
    """A generator made before the run that parties used: the state they
    started from, and each party thread's copy."""

    def __init__(self, g, start):
        self.g, self.start, self.copies = g, start, {}


class _Run:
    """What the parties of one run inherit from the caller (torch's
    generator state, grad and inference mode: :func:`caller`), and the
    generators made before it that they used (:meth:`copy`)."""

    def __init__(self):
        self.state = torch.get_rng_state()
        self.grad, self.inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        self.made: weakref.WeakSet = weakref.WeakSet()  # made in its party threads
        self.copied: dict[int, _Copied] = {}
        self.lock = threading.Lock()

    def copy(self, g):
        """The calling party's copy of ``g`` (``g`` itself when the party
        made it, or on another device), started from ``g``'s state when a
        party first used it: ``g`` itself never moves in a party (its
        methods act on the copy, :func:`_generator_method`); for torch's
        default generator, the party's own."""
        if g is torch.default_generator:
            return _own()
        if g in self.made or g.device.type != "cpu":
            return g
        me = threading.get_ident()
        with self.lock:
            c = self.copied.get(id(g))
            if c is None:
                c = self.copied[id(g)] = _Copied(g, _GENERATOR["get_state"](g))
            mine = c.copies.get(me)
            if mine is None:
                mine = c.copies[me] = _Real()
                _GENERATOR["set_state"](mine, c.start)
                self.made.add(mine)
            return mine

    def close(self) -> None:
        """Forget the parties' copies; the generators they copied are as
        they were (put back to the state the copies started from, should
        a draw that is not wrapped have moved one)."""
        with self.lock:
            for c in self.copied.values():
                _GENERATOR["set_state"](c.g, c.start)
            self.copied.clear()


# torch.Generator's methods that read or change its state: in a party
# thread they act on the party's copy of a generator made before the run
_GENERATOR_METHODS = (
    "manual_seed",
    "seed",
    "initial_seed",
    "get_state",
    "set_state",
    "clone_state",
    "__reduce__",
)
_GENERATOR = {name: _Real.__dict__[name] for name in _GENERATOR_METHODS}


def _generator_method(name: str):
    original = _GENERATOR[name]

    def method(self, *args, **kwargs):
        run = getattr(_local, "run", None)
        mine = self if run is None or _own() is None else run.copy(self)
        out = original(mine, *args, **kwargs)
        if mine is self:
            return out
        if out is mine:  # manual_seed and set_state return the generator
            return self
        if isinstance(out, _Real):  # clone_state: a new one, the party's own
            run.made.add(out)
        return out

    method.__name__ = method.__qualname__ = name
    method.__doc__ = original.__doc__
    method.__wrapped__ = original
    return method


def _set_generator_methods(methods: dict) -> None:
    """Put ``methods`` into torch.Generator's type dict (a C type:
    ``setattr`` on it raises TypeError) and reset CPython's method cache."""
    (d,) = [x for x in gc.get_referents(_Real.__dict__) if isinstance(x, dict)]
    d.update(methods)
    ctypes.pythonapi.PyType_Modified(ctypes.py_object(_Real))
    if any(getattr(_Real, n) is not m for n, m in methods.items()):
        raise RuntimeError("could not replace torch.Generator's methods for the party threads")


def _wrap() -> None:
    _saved["Generator"] = torch.Generator
    torch.Generator = _Generator
    _set_generator_methods({n: _generator_method(n) for n in _GENERATOR_METHODS})
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
    torch.Generator = _saved["Generator"]
    _set_generator_methods(_GENERATOR)
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
def wrapped(run: _Run):
    """While the parties of ``run`` run: torch's sampling and seeding
    functions act on a party thread's own generator (torch's own
    elsewhere); at the end the caller's generators that they copied are
    put back."""
    global _users
    with _lock:
        if _users == 0:
            _wrap()
        _users += 1
    try:
        yield
    finally:
        run.close()
        with _lock:
            _users -= 1
            if _users == 0:
                _unwrap()


def caller() -> _Run:
    """What a party forked from the calling thread would inherit: torch's
    generator state, grad mode and inference mode (both per thread in
    torch), and its copies of the generators made before the run."""
    return _Run()


@contextlib.contextmanager
def party(forked: _Run):
    """In a party thread: its own generator, started from the caller's
    state, in the caller's grad and inference mode (``forked``:
    :func:`caller`)."""
    g = _Real()
    g.set_state(forked.state)
    forked.made.add(g)  # torch.manual_seed(...) returns it: the party's own
    _local.generator, _local.run = g, forked
    try:
        with torch.inference_mode(forked.inference), torch.set_grad_enabled(forked.grad):
            yield
    finally:
        _local.generator = _local.run = None
