"""CrypTen's ``crypten.comm`` view of the session: this party's rank, the
world size, and the communication counters.

``crypten.comm.get().get_rank()`` is how CrypTen code asks which party it
is; in the local runtime (all three parties in this process) the rank is 0,
the party whose view a single-process CrypTen program also reports.
"""

from __future__ import annotations

import builtins

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


def get() -> Communicator:
    """The communicator of the current session (raises if there is none)."""
    _session.current()
    return _COMM


def print_(*args, in_order: bool = False, dst=0, **kwargs) -> None:
    """CrypTen's ``crypten.print``: print on party ``dst`` only (an int or a
    list of ranks), or on every party with ``in_order`` (in rank order in a
    multi-process run, where each process prints its own; the party threads
    of ``spmd.run`` print as they come). The local runtime prints once."""
    r = get().get_rank()
    dsts = [dst] if isinstance(dst, int) else list(dst)
    if in_order or r in dsts:
        builtins.print(*args, **kwargs)
