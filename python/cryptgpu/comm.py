"""CrypTen's ``crypten.comm`` view of the session: this party's rank, the
world size, and the communication counters.

``crypten.comm.get().get_rank()`` is how CrypTen code asks which party it
is; in the local runtime (all three parties in this process) the rank is 0,
the party whose view a single-process CrypTen program also reports.
"""

from __future__ import annotations

import builtins
import logging
import sys

from . import _session


class Communicator:
    """The current session seen as a CrypTen communicator."""

    def get_rank(self) -> int:
        """This party's rank (0 in the local runtime)."""
        r = _session.rank()
        return 0 if r is None else r

    def get_world_size(self) -> int:
        """Always 3."""
        _session.current()
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
        """``{"rounds", "bytes", "messages"}`` since the last reset; bytes are
        those sent by the busiest party (CrypTen counts its own party)."""
        t = _session.stats()["total"]
        return {"rounds": t["rounds"], "bytes": t["bytes_per_party"], "messages": t["messages"]}

    def reset_communication_stats(self) -> None:
        """Zero the counters."""
        _session.reset_stats()

    def print_communication_stats(self) -> None:
        """Print rounds and bytes, as ``crypten.print_communication_stats()``."""
        s = self.get_communication_stats()
        print(f"====Communication Stats====\nRounds: {s['rounds']}\nBytes: {s['bytes']}")


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


def _on_parties(out, args, kwargs, in_order: bool, dst) -> None:
    r = _session.rank()
    if r is None:  # the local runtime: one process, one output
        out(*args, **kwargs)
        return
    if not in_order:
        if r in ([dst] if isinstance(dst, int) else list(dst)):
            out(*args, **kwargs)
        return
    s = _session.current()
    zero = s.public_tensor(bytes(8), _MARK)
    for turn in range(3):
        if turn == r:
            out(*args, **kwargs)
            sys.stdout.flush()
        s.reveal(zero)
