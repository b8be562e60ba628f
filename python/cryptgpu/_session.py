"""The one explicit session object behind ``cryptgpu.init()``.

Python keeps no other state: every SharedTensor remembers the session that
made it, and an operation on tensors from an earlier session is refused.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import warnings
import zlib

import numpy as np
import torch

from . import _config, _lifecycle, _native, cuda
from ._env import env_flag, env_peers
from ._env import from_env as _from_env

_DEVICES = ("cpu", "cuda")


class _Context(threading.local):
    """Per-thread: in the SPMD runtime each party's thread has its own session."""

    def __init__(self) -> None:
        self.session: _native.Session | None = None
        self.device: str | None = None
        # Per-layer-kind time, rounds and bytes, filled by cryptgpu.nn.
        self.layer_stats: dict = {}
        self.stats_since: float = 0.0  # perf_counter() at init or reset_stats
        # Kinds of the layer scopes open now (innermost last): operations
        # recorded inside one are charged to it in the backward pass too.
        self.layer_kinds: list = []
        self.grad_enabled: bool = True
        # init(truncation=...): "exact", "probabilistic" or "auto"; the mode
        # the engine is set to now; and how deep we are in a backward pass or
        # an optimiser step (training work that "auto" truncates exactly).
        self.truncation: str = "auto"
        self.exact_now: bool = False
        self.training_depth: int = 0
        # Above 20 fractional bits "auto" truncates exactly everywhere: the
        # probabilistic protocol fails with probability |v| 2^(2f + 1 - 64)
        # per element (1 in 32 for a value of 1 at f = 29: garbage softmax).
        self.fine: bool = False
        # Bound for cryptgpu.nn.check_overflow (None: no check).
        self.overflow_bound: float | None = None
        # True in a party thread of spmd.run / mpc.run_multiprocess, where a
        # plain init() (as CrypTen code calls) keeps the party's session.
        self.spmd_party: bool = False
        # init()'s seed and timeout_s, which the engine's session does not
        # report: mpc.run_multiprocess starts its parties with them.
        self.seed: int | None = None
        self.timeout_s: float = 60.0


_ctx = _Context()


def init(
    config_file=None,
    party_name: str | None = None,
    device=None,
    *,
    precision_bits: int | None = None,
    seed: int | None = None,
    timeout_s: float = 60.0,
    rank: int | None = None,
    peers: list[str] | str | None = None,
    key: str | None = None,
    pubkeys: list[str] | None = None,
    insecure: bool = False,
    transport: str | None = None,
    bind: str | None = None,
    truncation: str = "auto",
    check_range: bool | float = False,
) -> None:
    """Start a session: the local three-party runtime (three party threads in
    this process) by default, or one party of a multi-process run when
    ``rank`` and ``peers`` are given or ``CRYPTGPU_RANK`` and
    ``CRYPTGPU_PEERS=host0:port,host1:port,host2:port`` are set (as
    ``python -m cryptgpu.launch`` does). Every process then runs the same
    script (SPMD). Links are ZeroMQ (``transport="zmq"``, the default; or
    ``"tcp"`` for plain TCP streams; ``CRYPTGPU_TRANSPORT``) with a Noise_KK
    handshake: ``key`` is this
    party's private key and ``pubkeys`` the three public keys (hex; from
    ``CRYPTGPU_KEY`` and ``CRYPTGPU_PUBKEYS``, where ``@path`` reads a file),
    and a party without the right key is refused at connect. ``insecure=True``
    (or ``CRYPTGPU_INSECURE=1``) allows plaintext links for trusted networks.
    cryptgpu does not read CrypTen's or torch.distributed's variables: a
    plain ``init()`` in a process that CrypTen's launcher (``RENDEZVOUS``)
    or torchrun (``RANK`` with ``WORLD_SIZE`` above 1) started raises
    ValueError, since each such process would run all three parties alone;
    ``CRYPTGPU_LOCAL=1`` runs the local runtime there anyway.

    Args:
        config_file: the path of a CrypTen configuration file (YAML): its
            ``encoder.precision_bits`` is used, its other keys are accepted at
            CrypTen's defaults only (:mod:`cryptgpu._config`). A device name
            here (``init("cuda")``, the old signature) is taken as ``device``.
        party_name: CrypTen's party name for its logs (a string): not used.
        device: ``"cpu"`` (the default), or ``"cuda"`` for the CUDA device (every party's
            shares live in GPU memory and every operation runs as a kernel;
            it has not been run on a GPU yet: see :mod:`cryptgpu.cuda`).
        precision_bits: fractional bits f of the fixed-point encoding (1..30).
            Values are stored as round(x * 2**f); |x| must stay below 2**(63-2f).
        seed: derive the parties' PRG keys from this public seed, for
            reproducible runs. ``None`` (the default) draws keys from the OS;
            a seeded session is not secure.
        timeout_s: how long a party waits for a message before raising
            :class:`cryptgpu.PeerError` (a larger value than 1e7 s, meaning
            "never", is taken as 1e7 s).
        rank, peers: this party (0, 1, 2) and the three ``host:port``
            addresses, for a multi-process run (a list, or one string with
            commas between them, as ``CRYPTGPU_PEERS``).
        key, pubkeys: this party's private key and the three public keys (hex).
        insecure: allow plaintext links.
        transport: ``"zmq"`` (default) or ``"tcp"``.
        bind: the ``host:port`` to listen on when it differs from
            ``peers[rank]`` (behind NAT or a proxy; ``CRYPTGPU_BIND``).
        truncation: how fixed-point products are truncated. ``"exact"``:
            never wrong (a product of magnitude below 2**(62-2f) is exact to one
            unit of 2**-f), three times the bytes of a product. ``"probabilistic"``
            (ABY3's, CrypTen's): one element in about 2**(64-2f)/|v| of a product of
            magnitude |v| is garbage. ``"auto"`` (the default): exact wherever
            autograd records (a forward whose inputs require grad, ``backward``,
            optimiser steps), probabilistic for inference. README "Truncation".
        check_range: check every layer output of a converted model
            (:func:`cryptgpu.nn.from_pytorch`), and the output of each function
            or method call in its forward that can leave the range (products,
            sums, exp, division; not views, relu, max, ...), against
            ``|value| < bound`` with a private comparison per element, and raise
            :class:`cryptgpu.nn.FixedPointOverflowError` naming the first layer
            or node out of range. ``True`` uses 2**(62-2f) (2**30 at f = 16), the
            magnitude above which a product no longer truncates exactly; a
            number sets the bound. Costs one comparison and one opening (11
            rounds) per layer or checked node and reveals how many values were
            out of range.

    Calling ``init`` again starts a fresh session; tensors of the old one can no
    longer be used.
    """
    if config_file is not None and device is None and _config.is_device(config_file):
        config_file, device = None, config_file  # cryptgpu's init("cuda")
    if party_name is not None and not isinstance(party_name, str):
        raise TypeError(f"party_name must be a string, got {type(party_name).__name__}")
    bits = _config.read(config_file).get("precision_bits") if config_file is not None else None
    if bits is not None and precision_bits is not None and bits != precision_bits:
        raise ValueError(
            f"precision_bits={precision_bits!r} disagrees with the configuration file's "
            f"encoder.precision_bits {bits!r}"
        )
    precision_bits = next(b for b in (precision_bits, bits, 16) if b is not None)
    device = "cpu" if device is None else device
    if _ctx.spmd_party and _ctx.session is not None and rank is None and peers is None:
        # Inside a party of spmd.run / mpc.run_multiprocess (CrypTen code
        # calls init() there): the party already has its session.
        # init()'s defaults are CrypTen's plain init(): no warning for them
        # (a run_multiprocess party keeps the settings of the caller's init).
        if precision_bits not in (16, _ctx.session.precision_bits) or truncation not in (
            "auto",
            _ctx.truncation,
        ):
            warnings.warn(
                "init() inside spmd.run keeps the party's session (precision_bits="
                f"{_ctx.session.precision_bits}, truncation {_ctx.truncation!r}); pass "
                "precision_bits to spmd.run instead (run_multiprocess: to the init() "
                "before it)",
                stacklevel=2,
            )
        return
    device = _device_name(device)
    if device not in _DEVICES:
        if device.startswith("cuda:"):
            raise ValueError(
                f"device={device!r}: give 'cuda'; the parties are placed on GPUs by "
                "cryptgpu.cuda.device_map() (choose GPUs with CUDA_VISIBLE_DEVICES)"
            )
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    if device == "cuda":
        if not cuda.is_available():
            raise RuntimeError(
                "device='cuda' needs an NVIDIA GPU and its driver (libcuda.so.1), and none "
                "was found (cryptgpu.cuda_is_available() is False); use device='cpu'"
            )
    if isinstance(precision_bits, bool) or not isinstance(precision_bits, int):
        raise TypeError("precision_bits must be an int")
    if not 1 <= precision_bits <= 30:
        raise ValueError(f"precision_bits must be in 1..30, got {precision_bits}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed must be an int in [0, 2^64) or None, got {type(seed).__name__}")
    if seed is not None and not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2^64) or None, got {seed!r}")
    if truncation not in TRUNCATION_MODES:
        raise ValueError(
            f"truncation must be one of {', '.join(map(repr, TRUNCATION_MODES))}, "
            f"got {truncation!r}"
        )
    if truncation == "probabilistic" and precision_bits > FINE_BITS:
        warnings.warn(
            f"truncation='probabilistic' at {precision_bits} fractional bits: each product "
            f"of magnitude v wraps with probability v * 2^{2 * precision_bits + 1 - 64} "
            "(garbage elements; 'auto' is exact above 20 bits)",
            stacklevel=2,
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"timeout_s must be a number of seconds, got {type(timeout_s).__name__}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if transport not in (None, "zmq", "tcp"):
        raise ValueError(f"unknown transport {transport!r} (expected 'zmq' or 'tcp')")
    if check_range is True:
        bound: float | None = 2.0 ** (62 - 2 * precision_bits)
    elif check_range is False or check_range is None:
        bound = None
    elif isinstance(check_range, (int, float)) and check_range > 0:
        bound = float(check_range)
    else:
        raise ValueError(
            f"check_range must be True, False or a positive bound, got {check_range!r}"
        )
    if rank is None and os.environ.get("CRYPTGPU_RANK"):
        try:
            rank = int(os.environ["CRYPTGPU_RANK"])
        except ValueError:
            raise ValueError(
                f"CRYPTGPU_RANK must be 0, 1 or 2, got {os.environ['CRYPTGPU_RANK']!r}"
            ) from None
    if peers is None and os.environ.get("CRYPTGPU_PEERS"):
        peers = env_peers(os.environ["CRYPTGPU_PEERS"])
    elif isinstance(peers, str):  # "host:port,host:port,host:port", as CRYPTGPU_PEERS
        peers = env_peers(peers)
    if (rank is None) != (peers is None):
        raise ValueError("a multi-process run needs both rank and peers (or both env variables)")
    if rank is None and not _ctx.spmd_party and not env_flag(os.environ.get("CRYPTGPU_LOCAL")):
        why = _lifecycle.foreign_launcher()
        if why is not None:
            raise ValueError(why)
    _close_current()
    if rank is not None:
        if rank not in (0, 1, 2):
            raise ValueError(f"rank must be 0, 1 or 2, got {rank}")
        key = key if key is not None else _from_env("CRYPTGPU_KEY")
        if pubkeys is None and _from_env("CRYPTGPU_PUBKEYS") is not None:
            pubkeys = _from_env("CRYPTGPU_PUBKEYS").replace("\n", ",").split(",")
            pubkeys = [k for line in pubkeys for k in line.split()]  # commas, lines, spaces
        insecure = insecure or env_flag(os.environ.get("CRYPTGPU_INSECURE"), "CRYPTGPU_INSECURE")
        if (key is None or pubkeys is None) and not insecure:
            raise ValueError(
                f"party {rank} has no link keys: set CRYPTGPU_KEY and CRYPTGPU_PUBKEYS "
                "(python -m cryptgpu.keys makes them; the launcher does it for you), "
                "or pass insecure=True (CRYPTGPU_INSECURE=1) for plaintext links on a "
                "trusted network"
            )
        transport = transport or os.environ.get("CRYPTGPU_TRANSPORT") or "zmq"
        bind = bind or os.environ.get("CRYPTGPU_BIND") or None
        _ctx.session = _native.Session.connect(
            rank,
            list(peers),
            transport,
            bind,
            precision_bits,
            seed,
            float(timeout_s),
            key,
            pubkeys,
            device,
            os.environ.get("CRYPTGPU_JOB", ""),  # names the job in handshakes
        )
        _lifecycle.opened(_ctx.session)
        # the C exit hook that makes a failed job's exit status 1 (registered now,
        # early, so that the C exit handlers registered later still run)
        _native.exit_status_at_end(0)
        _watch_uncaught()
        _lifecycle.stop_on_sigterm()
    else:
        _ctx.session = _native.Session(precision_bits, seed, float(timeout_s), device)
    _ctx.device = device
    _ctx.seed, _ctx.timeout_s = seed, float(timeout_s)
    _ctx.layer_stats, _ctx.stats_since = {}, time.perf_counter()
    _ctx.truncation = truncation
    _ctx.overflow_bound = bound
    _ctx.training_depth = 0
    # recording on: a Ctrl-C at the very start of a block's exit can leave
    # it off (README), and a fresh init() is where a user looks to recover
    _ctx.grad_enabled = True
    _ctx.fine = precision_bits > FINE_BITS
    # A new session starts probabilistic (the engine's default).
    _ctx.exact_now = False
    _lifecycle.hold(_ctx.session.id, settings())
    # Also in the local runtime, where the settings agree by construction:
    # the check draws sharing randomness, and a seeded local run must stay
    # bit for bit the multi-process run with the same seed.
    try:
        _agree_on_settings(_ctx.session, rank or 0, precision_bits, truncation, bound)
    except BaseException:
        uninit()  # not a session whose settings were never agreed
        raise


def _agree_on_settings(s, rank: int, f: int, truncation: str, bound) -> None:
    """Check that the three processes of a multi-process run use the same
    precision_bits, truncation mode and check_range: each choice changes
    what the parties compute or send, and a party configured differently
    made every party open garbage without an error. Each party shares its
    three settings and all are opened (one sharing round from each party
    and one opening: public values only). A party with another
    precision_bits also decodes the others' values at another scale, so a
    mismatch shows whichever setting differs (the message shows each
    party's settings at its own scale, :func:`_sent_settings`)."""
    # base-4 digits: every value below 4 is encodable up to f = 30 (the
    # fixed-point range is 2^(63 - 2f): 8 there); f itself (30) and a
    # 12-bit code were not, and init failed for f = 26..30
    settings = (f, TRUNCATION_MODES.index(truncation), zlib.crc32(repr(bound).encode()) % 4096)
    mine = np.array([float((v >> (2 * k)) & 3) for v in settings for k in range(6)])
    buf = mine.astype("<f8").tobytes()
    seen = []
    for src in range(3):
        h = s.share(buf, [mine.size], src)
        seen.append(np.frombuffer(s.reveal(h), dtype="<f8"))
    s.reset_stats()  # counters start at init, as before this check
    for src, theirs in enumerate(seen):
        if not np.array_equal(theirs.round(6), mine):
            raise _native.InvalidArgumentError(
                f"party {rank} and party {src} were started with different settings: "
                f"this party ({_named(settings)}), party {src} ({_sent_settings(theirs, f)}); "
                "every party must call init() with the same precision_bits, truncation "
                "and check_range"
            )


def _sent_settings(theirs, f: int) -> str:
    """The settings another party sent, from their digits as decoded here
    at ``f`` fractional bits: decoded again at the sender's own precision
    (the one whose digits are whole and spell it), else as decoded here
    (its precision_bits 16 showed as 1.0 at 20 bits)."""
    for g in range(1, 64):
        d = theirs * 2.0 ** (f - g)
        if np.all((d == d.round()) & (d >= 0) & (d <= 3)) and _undigits(d)[0] == g:
            return _named(_undigits(d))
    return f"{_undigits(theirs.round(6))} as decoded here"


def _named(settings) -> str:
    """Settings by name (until 2026-12-06 codes: [16, 2, 4081], a probe)."""
    f, t, c = (int(v) for v in settings)
    mode = repr(TRUNCATION_MODES[t]) if 0 <= t < len(TRUNCATION_MODES) else f"code {t}"
    return f"precision_bits={f}, truncation={mode}, check_range checksum {c}"


def _undigits(d) -> list:
    """The three settings back from their base-4 digits (as decoded: a
    party with another precision decodes at another scale)."""
    return [sum(float(d[6 * j + k]) * 4**k for k in range(6)) for j in range(3)]


TRUNCATION_MODES = ("auto", "exact", "probabilistic")


# "auto" is exact everywhere above this many fractional bits (_Context.fine).
FINE_BITS = 20


def sync_truncation(session: _native.Session, recording: bool) -> None:
    """Set the engine's truncation protocol for the next operation: exact in
    "exact" mode, and in "auto" mode while autograd records (``recording``),
    inside a backward pass or an optimiser step, or always at more than 20
    fractional bits. Every party of an SPMD run makes the same choice, as
    each runs the same script."""
    want = exact_truncation(recording)
    if want != _ctx.exact_now:
        session.set_exact_truncation(want)
        _ctx.exact_now = want


def exact_truncation(recording: bool) -> bool:
    """Whether an operation truncates exactly now (see sync_truncation)."""
    busy = recording or _ctx.training_depth > 0 or _ctx.fine
    return _ctx.truncation == "exact" or (_ctx.truncation == "auto" and busy)


def truncation() -> str:
    """The session's truncation mode (``init(truncation=...)``)."""
    return _ctx.truncation


class training_work(_native.RestoreOnExit):
    """Context for work that "auto" truncation treats as training (backward
    passes, optimiser steps): every truncation inside is exact. Its
    ``__exit__`` is native, as ``autograd._no_grad``'s (see there why)."""

    def __enter__(self):
        self._restore = ((_ctx, "training_depth", _ctx.training_depth),)
        _ctx.training_depth += 1
        return self


def _close_current() -> None:
    s = _ctx.session
    if s is not None and _lifecycle.take_open(s):
        s.close()


# Exceptions that ended the script (sys.excepthook saw them): a party's
# neighbours are told why (sys.last_value, which an interactive session
# keeps after any error, would have aborted sessions that ended well).
_uncaught: list = []


def _watch_uncaught() -> None:
    prev = sys.excepthook
    if getattr(prev, "_cryptgpu", False):
        return

    def hook(kind, value, tb):
        _uncaught.append(value)
        prev(kind, value, tb)

    hook._cryptgpu = True
    sys.excepthook = hook


@atexit.register
def _close_all() -> None:
    # A script ending on an uncaught exception tells its neighbours why (they
    # report it, not "party 1 left the session"), as spmd.run does.
    _lifecycle.exit_began()
    err = _uncaught[-1] if _uncaught else None
    why = f"{type(err).__name__}: {err}" if err is not None else _lifecycle.stop_reason()
    # the multi-process sessions init() opened (_lifecycle.open_sessions:
    # none in a child forked after init()), closed so that the ZeroMQ
    # transport flushes its last messages (a BYE exchange)
    failed = None
    while _lifecycle.open_sessions:
        s = _lifecycle.open_sessions.pop()
        if why is not None:
            s.abort(why)
        try:
            s.close()
        except _native.PeerError as e:
            failed = e  # a neighbour failed the job after this party's last operation
    if failed is not None:
        # an atexit handler cannot change the exit status: the engine makes
        # it 1 where it would be 0, once the interpreter has finalised
        _native.exit_status_at_end(1)  # (first: printing may fail)
        with contextlib.suppress(Exception):  # (stderr may be closed)
            print(f"cryptgpu: {failed}", file=sys.stderr, flush=True)


def attach(
    session: _native.Session,
    device: str = "cpu",
    truncation: str = "auto",
    overflow_bound: float | None = None,
    seed: int | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Make ``session`` the current one of this thread (SPMD runtime), with
    the session settings that the engine does not hold (:func:`settings`)."""
    _ctx.session = session
    _ctx.device = device
    _ctx.seed, _ctx.timeout_s = seed, timeout_s
    _ctx.layer_stats, _ctx.stats_since = {}, time.perf_counter()
    _ctx.spmd_party = True
    _ctx.truncation = truncation
    _ctx.overflow_bound = overflow_bound
    _ctx.training_depth = 0
    _ctx.fine = session.precision_bits > FINE_BITS
    _ctx.exact_now = session.exact_truncation
    _lifecycle.hold(session.id)
    ranks = session.ranks
    _agree_on_settings(session, ranks[0], session.precision_bits, truncation, overflow_bound)


def settings() -> dict | None:
    """The current session's settings as keyword arguments of the SPMD
    runtime's party sessions (``spmd._parties``): precision_bits, seed,
    timeout_s, device, truncation and the check_range bound now in force
    (:func:`cryptgpu.nn.check_overflow` changes it); None before
    :func:`init`. ``mpc.run_multiprocess`` starts its parties with them, as
    CrypTen's forked processes inherit the configuration."""
    s = _ctx.session
    if s is None:
        return None
    return {
        "precision_bits": s.precision_bits,
        "seed": _ctx.seed,
        "timeout_s": _ctx.timeout_s,
        "device": _ctx.device or "cpu",
        "truncation": _ctx.truncation,
        "overflow_bound": getattr(_ctx, "overflow_bound", None),
    }


def rank() -> int | None:
    """This process's (or thread's) party in the SPMD runtime; None in the
    local runtime, which hosts all three."""
    ranks = current().ranks
    return ranks[0] if len(ranks) == 1 else None


def is_initialized() -> bool:
    """True once :func:`init` has been called."""
    return _ctx.session is not None


def uninit() -> None:
    """Drop the current session; later calls need a new :func:`init`.
    Raises :class:`cryptgpu.PeerError` when a neighbour failed the session
    after this party's last operation (the job did not succeed); the
    session is dropped all the same."""
    try:
        _close_current()
    finally:
        _ctx.session = None
        _ctx.device = None
        _lifecycle.release()


def current() -> _native.Session:
    """The current session; RuntimeError before :func:`init`."""
    s = _ctx.session
    if s is None:
        raise RuntimeError(_lifecycle.not_initialised())
    if _lifecycle.forked and s.id in _lifecycle.forked:
        raise RuntimeError(_lifecycle.FORKED)
    return s


def not_current(session, what: str = "this SharedTensor") -> str:
    """The error for ``what``, of ``session``, used in this thread's
    (other) session: an earlier session's, another thread's, or one
    inherited through os.fork()."""
    return _lifecycle.foreign(session.id, what) or (
        f"{what} belongs to an earlier session (cryptgpu.init() was called again, or it "
        "was made inside a run_multiprocess function, whose parties' sessions end with "
        "it); re-share its value in the current session"
    )


def settings_for_parties() -> dict | None:
    """The settings ``mpc.run_multiprocess`` starts its parties with:
    this thread's session's (:func:`settings`), or in a thread without
    one, those of the latest ``init()`` whose session another thread
    holds; None if there is none."""
    return settings() or _lifecycle.latest_settings()


def stats(per_party: bool = False, per_layer: bool = False) -> dict:
    """Communication counted by the engine since the last reset.

    Returns ``{"total": {...}, "ops": {op: {...}}}`` where each entry has
    ``calls``, ``rounds``, ``messages``, ``bytes`` and ``bytes_per_party``
    (the largest of the three parties). ``rounds`` are protocol rounds (the
    latency), equal on all parties. With ``per_party=True`` the raw per-party
    counters are added under ``"parties"``; with ``per_layer=True`` the time,
    rounds and bytes per party of each layer kind run through
    :mod:`cryptgpu.nn` (linear, pooling, relu, softmax, batchnorm) under
    ``"layers"``.
    """
    raw = current().stats()
    ops: dict = {}
    for op in sorted(set().union(*[set(p) for p in raw])):
        per = [p.get(op, {"calls": 0, "rounds": 0, "messages": 0, "bytes": 0}) for p in raw]
        ops[op] = {
            "calls": max(x["calls"] for x in per),
            "rounds": max(x["rounds"] for x in per),
            "messages": sum(x["messages"] for x in per),
            "bytes": sum(x["bytes"] for x in per),
            "bytes_per_party": max(x["bytes"] for x in per),
        }
    total = {k: sum(v[k] for v in ops.values()) for k in ("rounds", "messages", "bytes")}
    total["bytes_per_party"] = max(
        (sum(p.get(op, {}).get("bytes", 0) for op in p) for p in raw), default=0
    )
    out = {"total": total, "ops": ops}
    if per_party:
        out["parties"] = raw
    if per_layer:
        out["layers"] = {k: dict(v) for k, v in _ctx.layer_stats.items()}
    return out


def comm_totals() -> tuple[int, int]:
    """(rounds, bytes) so far of the busiest party: what a layer's
    statistics are differences of."""
    if _ctx.session is None:
        return (0, 0)
    totals = current().comm_totals()
    return max(t[0] for t in totals), max(t[1] for t in totals)


def add_layer_stats(kind: str, phase: str, seconds: float, before, after) -> None:
    """Charge time, rounds and bytes to a layer kind's forward ("") or
    backward ("backward_") columns."""
    row = _ctx.layer_stats.setdefault(
        kind, {"calls": 0, "time_s": 0.0, "rounds": 0, "bytes_per_party": 0}
    )
    if not phase:
        row["calls"] += 1
    for key, v in (
        ("time_s", seconds),
        ("rounds", after[0] - before[0]),
        ("bytes_per_party", after[1] - before[1]),
    ):
        row[phase + key] = row.get(phase + key, 0) + v


def reset_stats() -> None:
    """Zero the communication counters of all three parties and the per-layer table."""
    current().reset_stats()
    _ctx.layer_stats, _ctx.stats_since = {}, time.perf_counter()


def _device_name(device) -> str:
    """init's ``device``, as torch names it: a string or a torch.device;
    "cpu:N" is the CPU, as torch's (one device); "cuda:N" is kept for the
    message that says how GPUs are chosen."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if device.startswith("cpu:") and device[4:].isdigit():
        return "cpu"
    return device


def device() -> torch.device:
    """Where the current session keeps its shares: ``cpu`` or ``cuda``."""
    return torch.device(_ctx.device or "cpu")


def dropout_scale(shape, p: float) -> torch.Tensor:
    """A dropout mask of ``shape`` scaled for ``p`` (0 where dropped, 1 / (1 -
    p) elsewhere; all zero for p = 1) in float64, drawn from the parties'
    :func:`common_generator`: every party draws the same mask, independent of
    the data."""
    if p == 1:
        return torch.zeros(tuple(shape), dtype=torch.float64)
    keep = torch.rand(tuple(shape), generator=common_generator(), dtype=torch.float64) >= p
    return keep.double() / (1 - p)


def common_generator():
    """A torch generator that the three parties seed alike, made at first use
    in a session from the engine's joint coin: each party shares a random
    integer below 2^28 and the sum is opened (one sharing round per party,
    one reveal), so no party chooses the seed. Used for dropout masks.
    Refused (RuntimeError, before any round) in a session that restored
    the PRG streams of a checkpoint saved before its run's first dropout
    mask (:func:`restore_common_generator`)."""
    ctx, s = _ctx, current()
    held = getattr(ctx, "common_rng", None)
    if held is not None and held[0] is s and held[1] is None:
        raise RuntimeError(
            "this session restored the PRG streams of a checkpoint saved before the saved "
            "run's first dropout mask (cryptgpu.load(f) with restore_rng=True), so it cannot "
            "draw the dropout masks that run drew (their seed came from fresh randomness "
            "after the save), and other masks would reuse the saved run's PRG output on "
            "other values, which reveals their differences to the parties. Start a new "
            "session (cryptgpu.init() without a seed), build and encrypt the model and "
            "optimiser, then resume with cryptgpu.load(f, restore_rng=False)"
        )
    if held is None or held[0] is not s:
        g = torch.Generator()
        g.manual_seed(s.coin(2**28))
        ctx.common_rng = (s, g)
        held = ctx.common_rng
    return held[1]


def common_generator_state() -> torch.Tensor | None:
    """The state of the session's :func:`common_generator` (None before
    its first use), which a checkpoint keeps with the PRG streams."""
    held = getattr(_ctx, "common_rng", None)
    if held is None or held[0] is not current() or held[1] is None:
        return None
    return held[1].get_state()


def restore_common_generator(state: torch.Tensor | None) -> None:
    """Put the session's common generator back to ``state``, with the PRG
    streams of a checkpoint. None (saved before the saved run's first
    dropout mask): the next dropout mask raises, since that run drew its
    seed after the save from fresh randomness, which the restored streams
    cannot replay; a new coin would be shared and opened with the saved
    run's PRG output, and the masks then differ from its masks while every
    later step reuses its output on other values (a leak, not a replay)."""
    g = None
    if state is not None:
        g = torch.Generator()
        g.set_state(state)
    _ctx.common_rng = (current(), g)
