"""SPMD execution: every party runs the same function on its own share, as
each process will in a distributed run (``torchrun``-style). ``run`` hosts the
three parties on three threads of this process, over in-process channels,
with the same results and counters as the local runtime.

>>> import cryptgpu, torch
>>> def job():
...     x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), src=0)
...     return cryptgpu.rank(), x.relu().get_plain_text().tolist()
>>> sorted(cryptgpu.spmd.run(job))
[(0, [1.0, 0.0]), (1, [1.0, 0.0]), (2, [1.0, 0.0])]
"""

from __future__ import annotations

import threading
import time

from . import _native, _party_rng, _session


def run(
    fn, *args, precision_bits: int = 16, seed: int | None = None, timeout_s: float = 60.0, **kwargs
) -> list:
    """Run ``fn(*args, **kwargs)`` once per party, each in its own thread with
    its own single-party session; returns the three results in rank order.
    Every party must call the same protocol operations in the same order, and
    pass inputs of the same shape to ``cryptensor`` (only ``src``'s values are
    used). An exception in any party is re-raised here (the others then fail
    with :class:`cryptgpu.PeerError` rather than hang)."""
    return _parties(
        lambda: fn(*args, **kwargs), precision_bits=precision_bits, seed=seed, timeout_s=timeout_s
    )


def _parties(
    call,
    *,
    precision_bits: int = 16,
    seed: int | None = None,
    timeout_s: float = 60.0,
    device: str = "cpu",
    truncation: str = "auto",
    overflow_bound: float | None = None,
) -> list:
    """:func:`run` of ``call()`` (no arguments: the caller's own arguments
    cannot be taken for settings) with every setting of a session
    (:func:`cryptgpu._session.settings`)."""
    sessions = _native.spmd_local_sessions(precision_bits, seed, timeout_s, device)
    ctx = (device, truncation, overflow_bound, seed, timeout_s)
    results: list = [None, None, None]
    errors: list = [None, None, None]
    failed: list = []  # the ranks in the order their errors came (the first: the cause)
    forked = _party_rng.caller()  # what a forked party would inherit

    def party(r: int) -> None:
        try:
            _session.attach(sessions[r], *ctx)
            with _party_rng.party(forked):
                results[r] = call()
            # A party done before the others (a reveal on one rank only, one
            # more step): a neighbour still waiting for its message is told
            # at once, as a ZeroMQ link's BYE tells it (it waited for the
            # timeout, 60 s by default). Queued after its last message.
            sessions[r].abort(
                "its program ended (it left the session) before sending this", ended=True
            )
        except BaseException as e:  # reported below: the cause first
            errors[r] = e
            failed.append(r)  # (atomic: one party thread each)
            # Tell the neighbours now: they would otherwise wait in their
            # next receive until the timeout. Also a PeerError: one this
            # party found itself ("out of step") only it knows of (until
            # 2026-12-07 the other two waited 60 s on each other).
            sessions[r].abort(f"{type(e).__name__}: {e}")
        finally:
            try:
                _session.uninit()  # may raise PeerError
                _session._ctx.spmd_party = False
            finally:
                done[r].set()  # whatever uninit does: the caller waits on it

    threads = [
        threading.Thread(target=party, args=(r,), name=f"cryptgpu-party-{r}") for r in range(3)
    ]
    # Set by each party as it ends, and by this thread for a party it never
    # launched. The caller waits on these, not on Thread.join: a Ctrl-C that
    # interrupts a join on Python 3.11 marks the running thread stopped
    # (its state lock released), and the party was then never stopped.
    done = [threading.Event() for _ in threads]
    launched = [False] * 3
    with _party_rng.wrapped(forked):
        try:
            # Inside the try: a Ctrl-C while a thread starts (start waits for
            # it) left the parties launched before it computing to the end.
            for r, t in enumerate(threads):
                # Before start: a Ctrl-C inside start most likely came while
                # start waited for the new thread, which then runs (and ends
                # on its aborted session); _stop waits at most wait_s for
                # one that never came to be.
                launched[r] = True
                t.start()
            for e in done:
                e.wait()
        except BaseException as e:
            # Ctrl-C (KeyboardInterrupt) or another exception in the caller's
            # wait: the parties computed on to the end (the script could not
            # exit). Stop them as a failing party stops its neighbours.
            for r in range(3):
                if not launched[r]:
                    done[r].set()
            _stop(
                sessions, threads, done, f"the caller of spmd.run stopped it ({type(e).__name__})"
            )
            raise
        for t in threads:
            t.join()
    # The root cause, not the neighbours' PeerError, if there is one; else
    # the PeerError that came first (the party that found it, as the
    # launcher names it), not the first in rank order.
    # An error that only echoes another party's (load_from_party's "party 1
    # could not load its tensor") comes after that party's own: until
    # 2026-12-08 party 0's echo hid party 1's FileNotFoundError.
    root = [e for e in errors if e is not None and not isinstance(e, _native.PeerError)]
    root.sort(key=lambda e: getattr(e, "_echo_of", None) is not None)
    first = root[0] if root else (errors[failed[0]] if failed else None)
    if first is not None:
        raise first
    return results


def _stop(sessions, threads, done, why: str, wait_s: float = 5.0) -> None:
    """Abort every party's session, again until its thread ends or
    ``wait_s`` passes: an abort marks the session failed (the party's next
    operation raises) and tells the neighbours of a party between two
    operations (one in the middle of one holds its links; it stops at its
    next, and a neighbour waiting on it hears of the abort then)."""
    deadline = time.monotonic() + wait_s
    while not all(e.is_set() for e in done) and time.monotonic() < deadline:
        for s in sessions:
            s.abort(why)
        for e in done:
            e.wait(0.02)
    for t, e in zip(threads, done):
        if e.is_set() and t.ident is not None:  # ended: its last lines run
            t.join(max(0.0, deadline - time.monotonic()))
