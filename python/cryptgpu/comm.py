"""CrypTen's ``crypten.comm`` view of the session: this party's rank, the
world size, and the communication counters.

``crypten.comm.get().get_rank()`` is how CrypTen code asks which party it
is; in the local runtime (all three parties in this process) the rank is 0
and the world size 1, as a single-process CrypTen program reports them
(the number of processes, and this one's index); in a multi-party run
(``crypten.mpc.run_multiprocess``, ``python -m cryptgpu.launch``) they are
the party's rank and 3.
"""

from __future__ import annotations

import builtins
import logging
import os
import sys
import time
import warnings

from . import _session
from ._native import InvalidArgumentError
from ._plain import _index

# Local-runtime sessions (by id) whose user asked for the rank or the
# world size: True once the placeholder warning was given there.
_ASKED: dict = {}


def rank() -> int | None:
    """This process's (or thread's) party in the SPMD runtime
    (``cryptgpu.spmd.run``, ``crypten.mpc.run_multiprocess``, ``python -m
    cryptgpu.launch``); None in the local runtime, which hosts all three.
    Asking it there counts as asking the rank (as ``get_rank()``): code
    that then shares from party 1 or 2, such as ``x if cryptgpu.rank() ==
    1 else torch.zeros(...)``, gets the one-time placeholder warning (until
    2026-12-06 only ``get_rank()`` and ``get_world_size()`` counted, and
    such code shared the placeholder silently: a user probe)."""
    r = _session.rank()
    if r is None:
        _ASKED.setdefault(_session.current().id, False)
    return r


class Communicator:
    """The current session seen as a CrypTen communicator."""

    def get_rank(self) -> int:
        """This party's rank (0 in the local runtime)."""
        r = _session.rank()
        if r is None:
            _ASKED.setdefault(_session.current().id, False)
        return 0 if r is None else r

    def get_world_size(self) -> int:
        """The number of processes, as CrypTen's: 3 in a multi-party run
        (``crypten.mpc.run_multiprocess``, ``python -m cryptgpu.launch``);
        1 in the local runtime, whose one process hosts all three parties
        (CrypTen's one-process mode reports 1 too, so its examples' ``src =
        1 if world_size > 1 else 0`` shares this process's data from party
        0). Until 2026-12-06 it was always 3 (such code shared a
        ``torch.empty`` placeholder from party 1, silently)."""
        if _session.rank() is None:
            _ASKED.setdefault(_session.current().id, False)
            return 1
        return 3

    def barrier(self) -> None:
        """Wait until every party has reached this call (CrypTen's
        ``comm.get().barrier()``): two openings of a public zero (party i
        hears from party i - 1 each time, so after two rounds from every
        party); nothing to wait for in the local runtime. Every party must
        make the call, as any collective operation."""
        if _session.rank() is None:
            _session.current()
            return
        s = _session.current()
        zero = s.public_tensor(bytes(8), _MARK)
        for _ in range(2):
            s.reveal(zero)

    def get_communication_stats(self) -> dict:
        """``{"rounds", "bytes", "time", "messages"}`` since the last reset
        (``init()``, ``reset_communication_stats()``, ``cryptgpu.reset_stats()``);
        bytes are those sent by the busiest party (CrypTen counts its own
        party). ``time`` is the wall-clock seconds elapsed since that reset on
        this thread: the engine does not time its messages apart from the
        computation, so this is an upper bound on the time spent
        communicating (CrypTen's "time" sums its own timer around each
        message, and only with ``communicator.verbose``)."""
        t = _session.stats()["total"]
        return {
            "rounds": t["rounds"],
            "bytes": t["bytes_per_party"],
            "time": time.perf_counter() - _session._ctx.stats_since,
            "messages": t["messages"],
        }

    def reset_communication_stats(self) -> None:
        """Zero the counters."""
        _session.reset_stats()

    def print_communication_stats(self) -> None:
        """Print rounds and bytes, as ``crypten.print_communication_stats()``."""
        s = self.get_communication_stats()
        print(
            f"====Communication Stats====\nRounds: {s['rounds']}\nBytes: {s['bytes']}\n"
            f"Time (elapsed, an upper bound on communication): {s['time']:.3f} s"
        )


_COMM = Communicator()

# The shape of the public zero that barrier() and crypten.print(in_order)
# open: the engine mixes a reveal's shape into its step tag, so a party
# that skipped one of these and went on to reveal a value is out of step
# at once (with shape [1] it met the others' barrier with a 1-element
# reveal and opened garbage, silently: a user probe).
_MARK = [1, 1, 1, 1, 1, 1, 1, 1]


def get() -> Communicator:
    """The communicator of the current session (raises if there is none)."""
    _session.current()
    return _COMM


def warn_placeholder(src: int) -> None:
    """Once per local-runtime session whose user asked for the rank
    (``get_rank()``, ``cryptgpu.rank()``) or the world size: a UserWarning
    at sharing an input from party ``src`` other than 0 (this process holds
    every party's input, so multi-process code's ``x if rank == src else
    torch.empty(...)`` shares the placeholder)."""
    if src == 0 or _session.rank() is not None:
        return
    sid = _session.current().id
    if _ASKED.get(sid) is not False:
        return
    _ASKED[sid] = True
    warnings.warn(
        f"sharing an input from party {src} in the local runtime, where this one process "
        "hosts all three parties and holds every party's input (comm.get().get_rank() is 0, "
        "get_world_size() 1 and cryptgpu.rank() None here): what this process passes is party "
        f"{src}'s input, so multi-process code such as `x if rank == {src} else "
        f"torch.empty(...)` shares the placeholder as party {src}'s. Run such code with "
        "crypten.mpc.run_multiprocess(world_size=3) or python -m cryptgpu.launch --nparties 3 "
        "(this warning is given once per session)",
        UserWarning,
        stacklevel=_outside(),
    )


def _outside() -> int:
    """The stacklevel of the first caller outside this package."""
    here = os.path.dirname(os.path.abspath(__file__))
    f, level = sys._getframe(1), 1
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(here + os.sep):
        f, level = f.f_back, level + 1
    return level


def print_(*args, in_order: bool = False, dst=0, **kwargs) -> None:
    """CrypTen's ``crypten.print``: print on party ``dst`` only (an int or a
    list of ranks), or with ``in_order`` on every party, party 0 first:
    after each party's turn the parties open a public zero (one round, one
    ring element each; party i hears from party i - 1), so party i prints
    only after party i - 1 has printed and flushed. Every party must make
    the call, as any collective operation. The local runtime prints once."""
    _on_parties(builtins.print, args, kwargs, in_order, dst)


def log_(*args, in_order: bool = False, dst=0, **kwargs) -> None:
    """CrypTen's ``crypten.log``: ``logging.log(level, msg, ...)`` on party
    ``dst`` only, or on every party in turn with ``in_order``, as
    :func:`print_` prints. A first argument that is no int level is the
    message, logged at INFO (older CrypTen's ``crypten.log(msg)``)."""
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        _on_parties(logging.log, args, kwargs, in_order, dst)
    else:
        _on_parties(logging.info, args, kwargs, in_order, dst)


def _parties(dst) -> list:
    """``dst`` of :func:`print_` as a list of ranks, checked as
    ``get_plain_text(dst=)`` checks its own in every runtime (until
    2026-12-07 a rank of 5 printed in the local runtime and nothing in
    party threads, silently, and ``dst=1.0`` failed with "'float' object
    is not iterable": probe OE): an int (a NumPy int, a 0-d integer
    tensor) or a list or tuple of them, each 0, 1 or 2."""
    one = _index(dst)
    if one is None and not isinstance(dst, (list, tuple)):
        raise TypeError(
            f"dst must be a party index (int) or a list of them, got {type(dst).__name__}"
        )
    ranks = [one] if one is not None else [_index(d) for d in dst]
    for d, r in zip([dst] if one is not None else dst, ranks):
        if r is None:
            raise TypeError(f"dst must be a party index (int), got {type(d).__name__}")
        if not 0 <= r <= 2:
            raise InvalidArgumentError(f"dst must be 0, 1 or 2, got {r}")
    return ranks


def _on_parties(out, args, kwargs, in_order: bool, dst) -> None:
    r = _session.rank()
    ranks = _parties(dst)
    if r is None:  # the local runtime: one process, one output
        out(*args, **kwargs)
        return
    if not in_order:
        if r in ranks:
            out(*args, **kwargs)
        return
    s = _session.current()
    zero = s.public_tensor(bytes(8), _MARK)
    for turn in range(3):
        if turn == r:
            out(*args, **kwargs)
            sys.stdout.flush()
        s.reveal(zero)
