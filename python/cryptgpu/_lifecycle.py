"""Where this process's sessions live beyond the calling thread's state
(``_session._Context``: a session is per thread, as each party thread of
``spmd.run`` needs its own):

- the distributed sessions ``init()`` opened: closed at exit (BYE), and
  never closed or dropped by a child forked after them, where their links
  and the engine's transport threads do not exist (closing or dropping one
  there waited forever on those threads, and would have removed the
  parent's socket directory); any use of one in the child raises;
- the threads that hold a session: an error in a thread without one, or
  with a tensor of another thread's session, names that thread, and
  ``run_multiprocess`` called from a thread without a session takes the
  settings of the latest ``init()`` of another thread;
- a launched party's side of ``python -m cryptgpu.launch``
  (``CRYPTGPU_LAUNCH_FD``, a pipe to the launcher): when its exit began
  (the launcher names the party whose exit began first), and SIGTERM as
  SystemExit, so that its sessions close and remove their socket
  directories;
- another launcher's variables (CrypTen's ``RENDEZVOUS``, torchrun's
  ``RANK`` and ``WORLD_SIZE``), which a plain ``init()`` refuses.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import stat
import sys
import threading
import time
import weakref

# Distributed sessions not closed yet (closed at exit, saying BYE).
open_sessions: list = []
# Every distributed session object that may still be referenced, held
# here until nothing else holds it (prune): a forked child must not drop
# one either, closed or not.
_made: list = []
# Ids of the distributed sessions this process inherited through os.fork().
forked: set = set()
_child = False

FORKED = (
    "a party's session does not survive os.fork(): this process was forked from a party "
    "after init(), and the session's links and engine threads stayed with the parent (a "
    "child drawing from the same random streams would also reuse its masks); do the "
    "party's private work in the parent process (a forked child may only work on plaintext)"
)


def opened(s) -> None:
    """A distributed session ``init()`` just opened."""
    prune()
    _made.append(s)
    open_sessions.append(s)


def take_open(s) -> bool:
    """Take ``s`` off the open sessions; True if it was there (to close)."""
    for i, o in enumerate(open_sessions):
        if o is s:
            del open_sessions[i]
            return True
    return False


def prune() -> None:
    """Let go of the distributed sessions that nothing else holds (their
    engine state ends now, in the process that made them)."""
    keep = []
    while _made:
        s = _made.pop()
        if sys.getrefcount(s) > 2:  # more than this name and getrefcount's argument
            keep.append(s)
    _made.extend(keep)


def _after_fork_in_child() -> None:
    global _lock, _child
    _lock = threading.Lock()  # another thread may have held it at the fork
    _child = True
    inherited = {id(s): s for s in (*open_sessions, *_made)}
    for s in inherited.values():
        # never dropped in this process: its engine state's end waits on
        # threads that did not come along
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(s))
        forked.add(s.id)
    open_sessions.clear()
    _made.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- the threads that hold a session

_lock = threading.Lock()
# thread -> (order of its init, its session's id, init's settings or None)
_held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_order = itertools.count()
# session id -> (a weak reference to the thread whose init() made it, its
# name), the latest 256 (to name a thread that has ended: foreign)
_owners: dict = {}


def hold(session_id: int, settings: dict | None = None) -> None:
    """The calling thread now holds session ``session_id`` (``settings``:
    those of an ``init()``; None for a party thread of ``spmd.run``)."""
    with _lock:
        me = threading.current_thread()
        _held[me] = (next(_order), session_id, settings)
        if settings is not None:  # an init()'s (spmd.run's parties: "earlier session")
            _owners[session_id] = (weakref.ref(me), me.name)
        while len(_owners) > 256:
            del _owners[next(iter(_owners))]


def release() -> None:
    with _lock:
        _held.pop(threading.current_thread(), None)


def elsewhere() -> list:
    """(thread, order, session id, settings) of the other live threads that
    hold a session, the latest first."""
    me = threading.current_thread()
    with _lock:
        rows = [(t, *v) for t, v in _held.items() if t is not me and t.is_alive()]
    return sorted(rows, key=lambda r: -r[1])


def not_initialised() -> str:
    """The error for a thread without a session."""
    others = elsewhere()
    if not others:
        return "cryptgpu is not initialised: call cryptgpu.init() first"
    return (
        f"cryptgpu is not initialised in this thread ({threading.current_thread().name!r}): "
        f"sessions are per thread, and thread {others[0][0].name!r} holds one (its init()); "
        "do the private work in the thread that called init(), or call cryptgpu.init() in "
        "this thread for a session of its own (the other thread's tensors and encrypted "
        "models are not usable in it)"
    )


def foreign(session_id: int, what: str = "this SharedTensor") -> str | None:
    """Why ``what``, of session ``session_id``, is not usable in this
    thread's session when that session is not merely an earlier one:
    another thread's, or inherited through os.fork(); else None."""
    if session_id in forked:
        return FORKED
    for t, _, sid, _ in elsewhere():
        if sid == session_id:
            return (
                f"{what} belongs to the session of thread {t.name!r}, not this thread's: "
                "sessions are per thread (init() in this thread started another); do the "
                "private work in the thread that made it, or share its value again here"
            )
    with _lock:
        ref, name = _owners.get(session_id, (None, None))
    t = ref() if ref is not None else None
    if ref is not None and t is not threading.current_thread() and (t is None or not t.is_alive()):
        return (
            f"{what} belongs to the session of thread {name!r}, which has ended: a "
            "thread's session ends with it (sessions are per thread); share its value "
            "again in this thread's session"
        )
    return None


def latest_settings() -> dict | None:
    """The settings of the latest ``init()`` whose session another live
    thread holds; None if there is none."""
    return next((st for *_, st in elsewhere() if st is not None), None)


# ---- a party started by python -m cryptgpu.launch


def _pipe_to_launcher():
    """(fd, (device, inode)) of the launcher's pipe, checked now, at
    import: the fd is written at exit only if it is still that pipe (a
    script may close it and reuse the number); None when not launched."""
    try:
        fd = int(os.environ.get("CRYPTGPU_LAUNCH_FD", ""))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return None
    return (fd, (st.st_dev, st.st_ino)) if stat.S_ISFIFO(st.st_mode) else None


_launcher = _pipe_to_launcher()
_exiting = False
_stopped: list = []


def exit_began() -> None:
    """At exit, before any session closes (which tells the neighbours):
    when this party's exit began, for the launcher, which names and
    returns the code of the party whose exit began first (a neighbour that
    failed because this one left begins its exit later)."""
    global _exiting
    _exiting = True
    if _launcher is None or _child:
        return
    fd, which = _launcher
    try:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode) and (st.st_dev, st.st_ino) == which:
            os.write(fd, f"{os.getpid()} {time.monotonic()!r}\n".encode())
    except OSError:
        pass  # the launcher then goes by when it saw the exit


def stop_on_sigterm() -> None:
    """In a launched party (main thread, SIGTERM not handled already):
    SIGTERM, the launcher stopping the party, raises SystemExit, so that
    its sessions close at exit and remove their socket directories (a
    terminated party left ``$TMPDIR/cryptgpu-*`` behind)."""
    if _launcher is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminated)
    except (ValueError, OSError, AttributeError):
        pass


def _terminated(signum, _frame) -> None:
    if _exiting:
        return  # already closing its sessions
    _stopped.append(signum)
    raise SystemExit(128 + signum)


def stop_reason() -> str | None:
    """Why the party is ending, when a signal stopped it."""
    if not _stopped:
        return None
    return f"it was stopped by {signal.Signals(_stopped[-1]).name}"


# ---- a process started by another launcher


def foreign_launcher() -> str | None:
    """Why a plain ``init()`` (no rank, no ``CRYPTGPU_RANK``) must not start
    the local runtime here: the process was started as one party of several
    by CrypTen's launcher (``RENDEZVOUS``; its examples' multiprocess
    launcher) or torchrun (``RANK`` with ``WORLD_SIZE`` above 1). cryptgpu
    reads neither, so each such process would run all three parties alone,
    on its own placeholders for the others' inputs: wrong answers with exit
    code 0. None when none of these is set."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", ""))
    except ValueError:
        world = 0
    if not env.get("RENDEZVOUS") and not (world > 1 and env.get("RANK", "") != ""):
        return None
    found = ", ".join(
        f"{k}={env[k]}"
        for k in ("RENDEZVOUS", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        if k in env
    )
    return (
        f"this process was started as one party of a multi-process job ({found}), "
        "but cryptgpu does not read CrypTen's or torch.distributed's launch "
        "variables: init() would run all three parties inside this one process, "
        "on this process's inputs (another party's data would be this process's "
        "placeholder: wrong results, silently). Instead, call the party function "
        "without a launcher in a script started as `python -m cryptgpu.launch "
        "--nparties 3 script.py` (one process per party; it sets CRYPTGPU_RANK, "
        "CRYPTGPU_PEERS and the link keys), or set CRYPTGPU_RANK, CRYPTGPU_PEERS, "
        "CRYPTGPU_KEY and CRYPTGPU_PUBKEYS in each process (README: 'Three "
        "processes (or three hosts)'), or run the parties as threads of one "
        "process with crypten.mpc.run_multiprocess(world_size=3). To run the "
        "local three-party runtime in this process anyway, set CRYPTGPU_LOCAL=1"
    )
