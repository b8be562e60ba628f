"""A stranger who recorded a party's ZeroMQ connection (its greeting and READY
command, whose socket identity carries a tag proving the party's key for 5
minutes) replays it to a party's port. Three real processes on loopback with
keys set by hand, party 0 reaching party 1 through a recording proxy, as in
a user probe (Finding 1 and 2 of probe GC)."""

import os
import socket
import struct
import textwrap
import threading
import time

from conftest import spawn_party
from cryptgpu import _native
from cryptgpu.launch import free_ports

# Each session: private 8x8 products with ReLU, opened and checked against
# torch in float64 (16 fractional bits: a product of two shares truncated
# once is within a few units of 2^-16 per term; 1e-2 leaves a wide margin).
WORK = textwrap.dedent(
    """
    import os, sys, time, torch, cryptgpu
    g = torch.Generator().manual_seed(1)
    for session in range(int(os.environ.get("SESSIONS", "1"))):
        cryptgpu.init(timeout_s=20)
        for i in range(int(os.environ.get("ITERS", "5"))):
            a = torch.randn(8, 8, generator=g, dtype=torch.float64)
            z = (cryptgpu.cryptensor(a, src=0) @ cryptgpu.cryptensor(a, src=1)).relu()
            assert (z.get_plain_text(dtype=torch.float64) - (a @ a).relu()).abs().max() < 1e-2
            time.sleep(float(os.environ.get("PAUSE", "0")))
        print(f"session {session} ok", flush=True)
        time.sleep(float(os.environ.get("BETWEEN", "0")))
    peak = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmPeak")]
    print("vmpeak", *peak, flush=True)
    """
)


class Recorder:
    """A TCP proxy on a free port in front of ``target``: forwards every
    connection both ways and keeps the head (greeting and READY command) of
    the first connection's client stream."""

    def __init__(self, target: int):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen()
        self.port = self.srv.getsockname()[1]
        self.target = target
        self.head = None
        self.recorded = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:  # party 1 may not listen yet: party 0 dials again
                t = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(t, c, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(c, t, True), daemon=True).start()

    def _pump(self, src, dst, client):
        seen = b""
        try:
            while data := src.recv(65536):
                if client and not self.recorded.is_set():
                    seen += data
                    if len(seen) >= 66 and len(seen) >= 66 + seen[65]:
                        self.head = seen[: 66 + seen[65]]
                        self.recorded.set()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def start(script, pairs, peers_for, env=None, limit_for=None):
    """Three processes with rank, peers (``peers_for(rank)``) and the link
    keys ``pairs`` set, as on three hosts; ``limit_for``: a party's address
    space limit in bytes (``ulimit -v``)."""
    return [
        spawn_party(
            script,
            {
                **(env or {}),
                "CRYPTGPU_RANK": str(r),
                "CRYPTGPU_PEERS": peers_for(r),
                "CRYPTGPU_KEY": pairs[r][0],
                "CRYPTGPU_PUBKEYS": ",".join(pub for _, pub in pairs),
            },
            (limit_for or {}).get(r, 0),
        )
        for r in range(3)
    ]


def addresses(ports, rec=None):
    """Peer lists: everyone's, and party 0's, which reaches party 1 through
    the recorder ``rec``."""
    peers = [f"127.0.0.1:{p}" for p in ports]
    via = list(peers)
    if rec is not None:
        via[1] = f"127.0.0.1:{rec.port}"
    return lambda r: ",".join(via if r == 0 else peers)


def zmtp_frame(body: bytes) -> bytes:
    if len(body) > 255:
        return b"\x02" + struct.pack(">Q", len(body)) + body
    return bytes([0, len(body)]) + body


def _finish(procs):
    try:
        return [p.communicate(timeout=90)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_a_recorded_refusal_does_not_end_the_next_session(tmp_path):
    """The stranger replays party 0's recorded identity to party 1's port as
    the parties' second ``init()`` starts, with a REFUSED of its own text:
    all three second sessions failed ("party 0 gave up its handshakes:
    <the stranger's text>"). An identity now proves a key once per process
    (the replay is a stranger's, dropped), and a REFUSED ends nothing by
    itself; both sessions complete."""
    script = tmp_path / "work.py"
    script.write_text(WORK)
    ports = free_ports(3)
    rec = Recorder(ports[1])
    pairs = [_native.generate_keypair() for _ in range(3)]
    env = {"SESSIONS": "2", "ITERS": "10", "PAUSE": "0.05", "BETWEEN": "0.5"}
    procs = start(script, pairs, addresses(ports, rec), env)
    text = b"party 0 was told by its operator to stop: run again with CRYPTGPU_INSECURE=1"
    sent = 0
    try:
        assert rec.recorded.wait(30), "no connection recorded"
        hold = socket.create_connection(("127.0.0.1", ports[1]))
        hold.sendall(rec.head)
        try:  # until session 0 closes its port
            while hold.recv(65536):
                pass
        except OSError:
            pass
        end = time.time() + 6
        while time.time() < end:
            try:
                c = socket.create_connection(("127.0.0.1", ports[1]), timeout=1)
                c.sendall(rec.head + zmtp_frame(b"\x00\x02" + text))
                sent += 1
                time.sleep(0.02)
                c.close()
            except OSError:
                time.sleep(0.005)
    finally:
        outs = _finish(procs)
    assert sent > 0
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, (r, out)
        assert "session 0 ok" in out and "session 1 ok" in out, (r, out)
        assert "operator" not in out, (r, out)


def test_a_recorded_identity_announcing_16_gib_reserves_nothing(tmp_path):
    """The stranger replays party 0's identity, recorded from an earlier job
    run with the same keys (a restarted job: new processes, which have not
    seen it), to party 1 and announces a frame of 16 GiB on it, three
    times, sending 1 MiB of each: party 1 reserved 16 GiB per connection
    and, under ``ulimit -v``, aborted ("memory allocation of 17179934728
    bytes failed"). The guard now forwards a large frame in parts that
    grow with the bytes delivered; party 1 runs under a limit of its own
    use plus 6 GiB and the job completes, its results right."""
    script = tmp_path / "work.py"
    script.write_text(WORK)
    pairs = [_native.generate_keypair() for _ in range(3)]
    # the earlier job, party 0 through the recorder
    ports = free_ports(3)
    rec = Recorder(ports[1])
    first = start(script, pairs, addresses(ports, rec))
    outs = _finish(first)
    assert all(p.returncode == 0 for p in first), outs
    assert rec.recorded.is_set()
    # the next job with the same keys; party 1 under a memory limit of what
    # it used in the first job (about 5 GiB of address space: torch,
    # threads) plus 6 GiB
    peak_kib = int(outs[1].split("vmpeak")[1].split()[0])
    limit = (peak_kib << 10) + (6 << 30)
    ports = free_ports(3)
    env = {"ITERS": "40", "PAUSE": "0.05"}
    procs = start(script, pairs, addresses(ports), env, {1: limit})
    held = []
    try:
        for _ in range(3):
            t0 = time.time()
            while time.time() - t0 < 20:
                try:
                    c = socket.create_connection(("127.0.0.1", ports[1]), timeout=1)
                    held.append(c)
                    c.sendall(rec.head + b"\x02" + struct.pack(">Q", 16 << 30) + b"\x00\x03")
                    c.sendall(os.urandom(1 << 20))
                    break
                except OSError:  # not listening yet (or gone: said below)
                    time.sleep(0.05)
            time.sleep(0.3)
    finally:
        outs = _finish(procs)
        for c in held:
            c.close()
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, (r, out[-3000:])
        assert "session 0 ok" in out, (r, out)
