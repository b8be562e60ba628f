"""CrypTen's ``crypten.comm`` view of the session: this party's rank, the
world size, and the communication counters.

``crypten.comm.get().get_rank()`` is how CrypTen code asks which party it
is; in the local runtime (all three parties in this process) the rank is 0,
the party whose view a single-process CrypTen program also reports.
"""

from __future__ import annotations

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
