"""Start one process per party on this host, for tests and single-host use:

    python -m cryptgpu.launch --nparties 3 script.py [args...]

Each process runs the same script with ``CRYPTGPU_RANK`` (0, 1, 2),
``CRYPTGPU_PEERS`` (three loopback addresses) and fresh link keys
(``CRYPTGPU_KEY``, ``CRYPTGPU_PUBKEYS``) set, so ``cryptgpu.init()`` joins the
encrypted multi-process session; an inherited ``CRYPTGPU_BIND`` is dropped
(each party listens on its own address of the list). If a party exits with an error, the others
get a few seconds to end on their own (a neighbour of a failed party raises
PeerError), then are terminated (SIGTERM: a party that called init() ends
through SystemExit, closing its session, which removes its socket
directory); the launcher names every party that failed, the one whose exit
began first first, and exits with that one's code (128 + the signal's
number for a party killed by a signal, as a shell reports it; a neighbour
that failed because it left begins its exit later). No process is left behind. For
several hosts, set the two variables on each host instead, e.g.
``CRYPTGPU_PEERS=10.0.0.1:29500,10.0.0.2:29500,10.0.0.3:29500``.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import time

from . import _native


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 at the time of the call."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _Stopped(Exception):
    """The launcher received SIGTERM or SIGHUP."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run the launcher; returns the exit code (the first failing party's, 128 +
    the signal's number if a signal killed it, else 0)."""
    ap = argparse.ArgumentParser(prog="python -m cryptgpu.launch")
    ap.add_argument("--nparties", type=int, default=3)
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.nparties != 3:
        ap.error("cryptgpu runs exactly three parties")
    peers = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    pairs = [_native.generate_keypair() for _ in range(3)]
    pubs = ",".join(pub for _, pub in pairs)
    # where each party notes when its exit began (cryptgpu._lifecycle): a
    # pipe, so that nothing is left on disk, even by a launcher killed outright
    notes, note_w = os.pipe()
    os.set_blocking(notes, False)
    procs = []
    # A CRYPTGPU_BIND left exported by a multi-host run made all three
    # parties listen on that one address ("Address already in use").
    inherited = {k: v for k, v in os.environ.items() if k != "CRYPTGPU_BIND"}
    for r in range(3):
        env = dict(
            inherited,
            CRYPTGPU_RANK=str(r),
            CRYPTGPU_PEERS=peers,
            CRYPTGPU_KEY=pairs[r][0],
            CRYPTGPU_PUBKEYS=pubs,
            CRYPTGPU_LAUNCH_FD=str(note_w),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, a.script, *a.args],
                env=env,
                pass_fds=(note_w,),
                preexec_fn=functools.partial(_die_with_launcher, os.getpid()),
            )
        )
    os.close(note_w)
    code = 0

    def stop(signum, _frame):
        # SIGTERM / SIGHUP (a closed terminal, a job scheduler) end the
        # launcher as Ctrl-C does: through the cleanup below, so that no
        # party is left running.
        raise _Stopped(signum)

    sigs = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {sig: signal.signal(sig, stop) for sig in sigs}
    try:
        code = _watch(procs, notes)
    except KeyboardInterrupt:
        code = 130
    except _Stopped as e:
        code = 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # A party that failed leaves the others waiting at most their timeout;
        # stop them now, and never leave a process behind.
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        os.close(notes)
    if code == 0:
        code = next((p.returncode for p in procs if p.returncode), 0)
    # a party killed by signal N (returncode -N) is reported as a shell
    # reports it, 128 + N (until 2026-12-06 every signal death was 1)
    return code if code >= 0 else 128 - code


# How long the other parties may take to end on their own once one failed
# (a neighbour waiting on it raises PeerError at once; its close and
# Python's exit take a second or two), before they are terminated.
GRACE_S = 5.0
# A party that ends without a note (killed outright) counts as ending this
# long before it was last seen running (see _watch).
UNNOTED_MARGIN_S = 0.25


def _watch(procs, notes: int) -> int:
    """Wait for the parties; on a failure, give the others ``GRACE_S`` to
    end, then name every failure, the one whose exit began first first
    (as noted by the party; a party without a note, killed outright, by
    when it was last seen running: it may have died right after, and the
    neighbours' notes are then its consequences), and return its code. 0
    when all end well."""
    seen: dict = {}  # rank -> when its end was seen
    alive: dict = {}  # rank -> when it was last seen running

    def look() -> None:
        for r, p in enumerate(procs):
            now = time.monotonic()
            if r not in seen and p.poll() is not None:
                seen[r] = now
            elif r not in seen:
                alive[r] = now

    while True:
        look()
        if len(seen) == len(procs) and all(p.returncode == 0 for p in procs):
            return 0
        if any(procs[r].returncode != 0 for r in seen):
            break
        time.sleep(0.05)
    grace = time.monotonic() + GRACE_S
    while time.monotonic() < grace and len(seen) < len(procs):
        time.sleep(0.05)
        look()
    began = _exits_began(notes)

    def ended(r):
        if procs[r].pid in began:
            return min(began[procs[r].pid], seen[r])
        # killed outright: its sockets close as its exit starts, before it
        # stops answering poll(), so a neighbour's note can precede the
        # last time it was seen running (a CI run named party 0 first)
        return min(alive.get(r, seen[r]), seen[r]) - UNNOTED_MARGIN_S

    failed = sorted((r for r in seen if procs[r].returncode != 0), key=lambda r: (ended(r), r))
    running = [r for r in range(len(procs)) if r not in seen]
    how = "; ".join(
        f"party {r} {_how(procs[r].returncode)}" + (" first" if i == 0 and len(failed) > 1 else "")
        for i, r in enumerate(failed)
    )
    print(
        f"cryptgpu.launch: {how}"
        + (f"; stopping party {', '.join(map(str, running))}" if running else "")
        + " (each party's error is above; a PeerError names the party that failed first)",
        file=sys.stderr,
        flush=True,
    )
    return procs[failed[0]].returncode


def _exits_began(notes: int) -> dict:
    """pid -> when that party's exit began, as it noted on the pipe
    (before it closed its session, which tells its neighbours); a party
    without a note (killed outright, or it never imported cryptgpu) goes
    by when it was seen gone."""
    data = b""
    while True:
        try:
            chunk = os.read(notes, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    out = {}
    for line in data.decode(errors="replace").splitlines():
        try:
            pid, when = line.split()
            out[int(pid)] = float(when)
        except ValueError:
            continue
    return out


def _die_with_launcher(launcher: int) -> None:
    """In each party (Linux): SIGTERM when the launcher dies, even by
    SIGKILL, so that no party is left running without it; a launcher that
    died before the request was made (between fork and prctl) is seen by
    the party's parent having changed."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != launcher:
            os.kill(os.getpid(), signal.SIGTERM)


def _how(code: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL'."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


if __name__ == "__main__":
    sys.exit(main())
