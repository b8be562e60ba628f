"""Three real processes on loopback (python -m cryptgpu.launch): the same
results as the local runtime, and clear failures when a party dies or holds
a wrong key. Links are ZeroMQ with a Noise_KK handshake (the default), or
plain TCP streams with the same handshake (CRYPTGPU_TRANSPORT=tcp)."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import cryptgpu
from conftest import spawn_party

JOB = textwrap.dedent(
    """
    import sys, torch, cryptgpu
    cryptgpu.init(seed=5, timeout_s=20)
    torch.manual_seed(0)
    a, b = torch.randn(4, 5, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(8, 2)).double().eval()
    img = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    x, y = cryptgpu.cryptensor(a, src=0), cryptgpu.cryptensor(b, src=1)
    z = (x @ y).relu() + (x[:, :3] > 0.1)
    net = cryptgpu.nn.from_pytorch(m).encrypt(src=0)
    out = net(cryptgpu.cryptensor(img, src=2))
    res = {"z": z.get_plain_text(dtype=torch.float64),
           "out": out.get_plain_text(dtype=torch.float64),
           "stats": cryptgpu.stats(per_party=True)["parties"][0]}
    torch.save(res, sys.argv[1] + f".{cryptgpu.rank()}")
    """
)


def run_launcher(script, *args, timeout=120, transport="zmq"):
    return subprocess.run(
        [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CRYPTGPU_TRANSPORT": transport},
    )


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_three_processes_match_the_local_runtime(tmp_path, transport):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    out = tmp_path / "res"
    r = run_launcher(script, out, transport=transport)
    assert r.returncode == 0, r.stderr
    # The same script in the local runtime, in this process.
    env = {}
    exec(
        compile(
            JOB.replace("torch.save(res", "env['res'] = (res").replace(
                "cryptgpu.init(seed=5, timeout_s=20)", "cryptgpu.init(seed=5)"
            ),
            "job",
            "exec",
        ),
        {"env": env, "sys": sys, "__name__": "job"},
    )
    local = env["res"]
    local_stats = cryptgpu.stats(per_party=True)["parties"]
    for rank in range(3):
        got = torch.load(f"{out}.{rank}")
        assert torch.equal(got["z"], local[0]["z"])
        assert torch.equal(got["out"], local[0]["out"])
        assert got["stats"] == local_stats[rank]  # counters per party are identical
    cryptgpu.uninit()


DIE = textwrap.dedent(
    """
    import os, torch, cryptgpu
    cryptgpu.init(seed=1, timeout_s=int(os.environ.get("DIE_TIMEOUT", "5")))
    x = cryptgpu.cryptensor(torch.ones(10), src=0)
    if cryptgpu.rank() == 2:
        if os.environ.get("DIE_HOW") == "exit":
            raise SystemExit(3)  # leaves: Python's exit closes the session (BYE)
        os._exit(3)  # dies mid-protocol, without a word
    try:
        (x * x).get_plain_text()
    except cryptgpu.PeerError as e:
        print("PeerError:", e, flush=True)
        raise SystemExit(4)
    """
)


def start_by_hand(
    script,
    wrong_key_for=None,
    stale_pub_for=None,
    env_for=None,
    respell_peers_for=None,
    swap_peers_for=None,
    swap_pubs_for=None,
):
    """Three processes with rank, peers and link keys set, as on three hosts
    (``respell_peers_for``: that party's list says localhost, not 127.0.0.1;
    ``swap_peers_for``: that party's list names parties 0 and 1 the other
    way round; ``swap_pubs_for``: that party's public-key list holds the
    keys of the two others the other way round)."""
    from cryptgpu import _native
    from cryptgpu.launch import free_ports

    peers = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    pairs = [_native.generate_keypair() for _ in range(3)]
    pubs = ",".join(pub for _, pub in pairs)
    procs = []
    stale = pubs.split(",")
    if stale_pub_for is not None:  # the others hold an old public key for it
        stale[stale_pub_for] = _native.generate_keypair()[1]
    for r in range(3):
        key = _native.generate_keypair()[0] if r == wrong_key_for else pairs[r][0]
        env = {
            "CRYPTGPU_RANK": str(r),
            "CRYPTGPU_PEERS": peers.replace("127.0.0.1", "localhost")
            if r == respell_peers_for
            else ",".join(peers.split(",")[i] for i in (1, 0, 2))
            if r == swap_peers_for
            else peers,
            "CRYPTGPU_KEY": key,
            "CRYPTGPU_PUBKEYS": pubs if r == stale_pub_for else ",".join(stale),
            **({"CRYPTGPU_PUBKEYS": _swapped_others(pubs, r)} if r == swap_pubs_for else {}),
            **(env_for or {}).get(r, {}),
        }
        if env.get("CRYPTGPU_INSECURE") == "1":
            del env["CRYPTGPU_KEY"], env["CRYPTGPU_PUBKEYS"]
        procs.append(spawn_party(script, env))
    return procs


def _swapped_others(pubs: str, r: int) -> str:
    """The public-key list ``pubs`` with the keys of the two parties other
    than ``r`` swapped (a stale or hand-edited list)."""
    keys = pubs.split(",")
    a, b = [i for i in range(3) if i != r]
    keys[a], keys[b] = keys[b], keys[a]
    return ",".join(keys)


def _outputs(procs):
    """(procs, their outputs), each run to its end (killed if the wait fails)."""
    try:
        return procs, [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_a_party_with_a_wrong_key_is_refused(tmp_path):
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=5)\nprint('joined')\n")
    # its own private key does not match its public key: told at once
    procs = start_by_hand(script, wrong_key_for=2)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs)
    assert "does not belong to public key 2" in outs[2], outs[2]
    # the others hold a stale public key for it: refused at the timeout
    procs = start_by_hand(script, stale_pub_for=2)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs)
    joined = "\n".join(outs)
    assert "wrong or missing key" in joined and "party 2" in joined, joined


def test_a_missing_key_is_an_error_before_connecting(monkeypatch):
    monkeypatch.delenv("CRYPTGPU_KEY", raising=False)
    monkeypatch.delenv("CRYPTGPU_PUBKEYS", raising=False)
    with pytest.raises(ValueError, match="no link keys"):
        cryptgpu.init(rank=0, peers=["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])


@pytest.mark.parametrize("timeout", [5, 120])
def test_a_dead_party_makes_the_others_raise_peer_error(tmp_path, monkeypatch, timeout):
    """Started by hand (not the launcher, which would stop the survivors):
    both survivors raise PeerError naming a peer. With a 120 s timeout they
    still stop within 30 s: the closed connection itself is noticed."""
    script = tmp_path / "die.py"
    script.write_text(DIE)
    monkeypatch.setenv("DIE_TIMEOUT", str(timeout))
    t = time.time()
    procs = start_by_hand(script)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert procs[2].returncode == 3
    for r in (0, 1):
        assert procs[r].returncode == 4, outs[r]
        assert "PeerError" in outs[r] and "party" in outs[r]
    assert time.time() - t < 30


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_a_party_killed_mid_protocol_is_said_to_have_closed_its_link(
    tmp_path, monkeypatch, transport
):
    """os._exit on party 2 mid-protocol: on TCP its neighbours said
    "lost the link to party 2: failed to fill whole buffer" (Rust's text
    for an early end of stream); both transports now say that party 2
    closed its link."""
    script = tmp_path / "die.py"
    script.write_text(DIE)
    monkeypatch.setenv("DIE_TIMEOUT", "120")
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    procs = start_by_hand(script)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert procs[2].returncode == 3
    assert "party 2 closed its link" in outs[0] + outs[1], outs
    assert "fill whole buffer" not in outs[0] + outs[1], outs


OUT_OF_STEP_WITH_TWO = textwrap.dedent(
    """
    import os, sys, torch, cryptgpu
    cryptgpu.init(timeout_s=10)
    a = torch.arange(35.0).reshape(5, 7)
    shape = (7, 5) if cryptgpu.rank() == 2 else (5, 7)  # party 2's placeholder differs
    y = cryptgpu.cryptensor(a if cryptgpu.rank() == 0 else torch.zeros(shape), src=0)
    print("value", y.get_plain_text().sum().item(), flush=True)
    if os.environ.get("END") == "uninit":
        try:
            cryptgpu.uninit()
        except cryptgpu.PeerError as e:
            print("uninit raised PeerError:", e, flush=True)
            sys.exit(5)
    """
)


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
@pytest.mark.parametrize("end", ["exit", "uninit"])
def test_a_party_that_finished_learns_that_the_others_failed(tmp_path, monkeypatch, transport, end):
    """Party 2 shares a placeholder of another shape: parties 0 and 2 raise
    PeerError (out of step), but party 1, whose part was done before the
    failure reached it, printed its value and exited 0 (a user probe: on
    separate hosts its operator took the job for a success). The
    neighbours' abort notices, read when its session closes, now make
    ``uninit()`` raise PeerError, and the end of the script a non-zero
    exit with the reason on stderr."""
    script = tmp_path / "shape2.py"
    script.write_text(OUT_OF_STEP_WITH_TWO)
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    monkeypatch.setenv("END", end)
    t = time.time()
    procs, outs = _outputs(start_by_hand(script))
    assert time.time() - t < 40, outs
    assert all(p.returncode != 0 for p in procs), outs
    assert "out of step" in outs[0] + outs[2], outs
    finished = [r for r in range(3) if any(ln.startswith("value ") for ln in outs[r].split("\n"))]
    for r in finished:
        assert "but party" in outs[r] and "failed the session" in outs[r], outs[r]
        assert "out of step" in outs[r], outs[r]
        if end == "uninit":
            assert procs[r].returncode == 5 and "uninit raised PeerError" in outs[r], outs[r]


NEVER_READ = textwrap.dedent(
    """
    import os, sys, torch, cryptgpu
    cryptgpu.init(timeout_s=20)
    x = cryptgpu.cryptensor(torch.arange(4.0), src=0)
    # party 2 opens the value to party 0, the others to party 1
    x.get_plain_text(dst=0 if cryptgpu.rank() == 2 else 1)
    print("finished", flush=True)
    if os.environ.get("END") == "uninit":
        try:
            cryptgpu.uninit()
        except cryptgpu.PeerError as e:
            print("uninit raised PeerError:", e, flush=True)
            sys.exit(5)
    """
)


@pytest.mark.parametrize("transport, end", [("zmq", "exit"), ("tcp", "uninit")])
def test_protocol_messages_never_read_fail_the_job(tmp_path, monkeypatch, transport, end):
    """Party 2 opens a value to party 0 while the others open it to party
    1: party 0 never reads party 2's message. Party 0 said so on stderr
    ("the parties ran different programs") and every party, and the
    launcher, exited 0 (a user probe). Its session's end is now an error,
    as a neighbour's abort read there is: ``uninit()`` raises PeerError,
    and the end of the script exits non-zero with the reason on stderr."""
    script = tmp_path / "dst.py"
    script.write_text(NEVER_READ)
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    monkeypatch.setenv("END", end)
    procs, outs = _outputs(start_by_hand(script))
    assert all("finished" in o for o in outs), outs
    said = "party 2 sent 1 protocol message(s) that party 0 never read"
    assert said in outs[0] and "the job did not succeed" in outs[0], outs[0]
    assert procs[0].returncode == (5 if end == "uninit" else 1), outs[0]
    if end == "uninit":
        assert "uninit raised PeerError" in outs[0], outs[0]
    assert procs[1].returncode == 0 and procs[2].returncode == 0, outs


OUT_OF_STEP_WITH_ONE = textwrap.dedent(
    """
    import time, torch, cryptgpu
    cryptgpu.init(timeout_s=30)
    x = cryptgpu.cryptensor(torch.arange(4.0), src=0)
    t = time.time()
    try:
        if cryptgpu.rank() == 0:
            x.get_plain_text()  # party 0 alone opens it: party 1 finds it out of step
        (x * x).get_plain_text()
    except cryptgpu.PeerError as e:
        print(f"PeerError after {time.time() - t:.1f} s: {e}", flush=True)
        raise SystemExit(4)
    """
)


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_an_abort_reaches_a_party_waiting_on_the_other_neighbour(tmp_path, monkeypatch, transport):
    """Party 1 finds party 0 out of step and aborts to both neighbours;
    parties 0 and 2, each waiting for the other's message, waited out the
    whole timeout and blamed each other ("party 2 got no answer from party
    0"), never naming party 1's reason (a user probe). A party waiting on
    one neighbour now reads the other's abort too: both raise party 1's
    reason at once."""
    import re

    script = tmp_path / "step.py"
    script.write_text(OUT_OF_STEP_WITH_ONE)
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    procs, outs = _outputs(start_by_hand(script))
    assert all(p.returncode == 4 for p in procs), outs
    assert "out of step" in outs[1], outs[1]
    for r in (0, 2):
        assert "party 1 aborted:" in outs[r] and "out of step" in outs[r], outs[r]
        waited = float(re.search(r"PeerError after ([0-9.]+) s", outs[r]).group(1))
        assert waited < 15, outs[r]  # half the session's timeout (30 s)


PEERS_STRING = textwrap.dedent(
    """
    import os, torch, cryptgpu
    # the CRYPTGPU_PEERS form, as the argument (spaces and a trailing comma too)
    peers = os.environ["CRYPTGPU_PEERS"].replace(",", ", ") + ","
    cryptgpu.init(rank=int(os.environ["CRYPTGPU_RANK"]), peers=peers, timeout_s=20)
    print("value", cryptgpu.cryptensor(torch.arange(3.0), src=0).sum().get_plain_text().item())
    """
)


def test_peers_may_be_given_as_one_string(tmp_path):
    """``init(peers="h:p,h:p,h:p")``, the form CRYPTGPU_PEERS takes, was
    read character by character: "need 3 peer addresses, got 47" (a user
    probe). It is split at the commas as the variable is."""
    with pytest.raises(ValueError, match="given for two parties"):
        cryptgpu.init(rank=0, peers="127.0.0.1:7, 127.0.0.1:8,127.0.0.1:7", insecure=True)
    script = tmp_path / "peers.py"
    script.write_text(PEERS_STRING)
    procs, outs = _outputs(start_by_hand(script))
    for r in range(3):
        assert procs[r].returncode == 0 and "value 3.0" in outs[r], outs[r]


def test_a_party_that_exits_mid_protocol_is_named_at_once(tmp_path, monkeypatch):
    """A party whose script ends (an exception, sys.exit) says BYE, sealed;
    a neighbour waiting for its message stops at that BYE with a message
    that says so (it used to drop it and wait for the link to close)."""
    script = tmp_path / "die.py"
    script.write_text(DIE)
    monkeypatch.setenv("DIE_TIMEOUT", "120")
    monkeypatch.setenv("DIE_HOW", "exit")
    procs = start_by_hand(script)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert procs[2].returncode == 3
    for r in (0, 1):
        assert procs[r].returncode == 4, outs[r]
    assert "party 2 left the session" in outs[0] + outs[1], outs


def test_ctrl_c_stops_a_party_waiting_on_a_peer(tmp_path):
    """A run started by hand: Ctrl-C (SIGINT) to a party blocked on a peer
    that does not answer raised KeyboardInterrupt only when the session's
    timeout ran out (the wait held no point where Python's handler ran)."""
    import signal

    script = tmp_path / "wait.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, torch, cryptgpu
            cryptgpu.init(timeout_s=120)
            x = cryptgpu.cryptensor(torch.ones(3), src=0)
            if cryptgpu.rank() == 2:
                time.sleep(300)  # never answers
            print("waiting", flush=True)
            (x * x).get_plain_text()
            """
        )
    )
    procs = start_by_hand(script)
    try:
        first = procs[0].stdout.readline()  # party 0 is about to wait
        assert "waiting" in first, first
        time.sleep(1.0)
        t = time.time()
        procs[0].send_signal(signal.SIGINT)
        out = procs[0].communicate(timeout=60)[0]
        assert time.time() - t < 30, "the party waited for its timeout"
        assert "KeyboardInterrupt" in out, out
    finally:
        for p in procs:
            p.kill()
            p.communicate()


def test_the_launcher_stops_everyone_when_a_party_fails(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(DIE)
    t = time.time()
    r = run_launcher(script, timeout=60)
    assert r.returncode != 0
    assert time.time() - t < 30
    # The launcher names the party that died first (party 2 exits with 3).
    assert "party 2 exited with code 3" in r.stderr, r.stderr[-2000:]


EXIT3 = textwrap.dedent(
    """
    import sys, torch, cryptgpu
    cryptgpu.init(timeout_s=20)
    x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), src=0)
    if cryptgpu.rank() == 2:
        sys.exit(3)  # its neighbours fail with PeerError (code 1), often ending before it
    x.relu().get_plain_text()
    """
)


def test_the_launcher_returns_the_code_of_the_party_that_failed_first(tmp_path):
    """Party 2's sys.exit(3): the launcher said "party 0 exited with code
    1; stopping party 1, 2" and exited 1 (party 0 failed only because
    party 2 left, and ended first: party 2's exit waits for its
    neighbours' goodbyes), though it promises the failing party's code."""
    script = tmp_path / "exit3.py"
    script.write_text(EXIT3)
    r = run_launcher(script, timeout=90)
    said = [line for line in r.stderr.splitlines() if line.startswith("cryptgpu.launch:")]
    assert r.returncode == 3, r.stderr[-3000:]
    assert said and said[0].startswith("cryptgpu.launch: party 2 exited with code 3"), said


KILLED = textwrap.dedent(
    """
    import os, sys, torch, cryptgpu
    cryptgpu.init(seed=1, timeout_s=30)
    x = cryptgpu.cryptensor(torch.randn(32, 32), src=0)
    try:
        for i in range(200):
            x = (x @ x.t()).relu() * 0.001 + x
            if cryptgpu.rank() == 2 and i == 10:
                os._exit(9)  # killed outright: no exit note, no goodbye
    except cryptgpu.PeerError:
        sys.exit(4)
    """
)


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_the_launcher_names_a_party_killed_outright_first(tmp_path, transport):
    """Party 2 ends by os._exit mid-protocol. On TCP its neighbours notice
    within milliseconds and note their own exits before the launcher's
    50 ms poll sees party 2 gone, and the launcher named party 1 first and
    returned its 4 (3 of 3 runs of a user probe). A party without a note
    now counts from when it was last seen running."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    r = run_launcher(script, timeout=90, transport=transport)
    said = [line for line in r.stderr.splitlines() if line.startswith("cryptgpu.launch:")]
    assert r.returncode == 9, r.stderr[-3000:]
    assert said and said[0].startswith("cryptgpu.launch: party 2 exited with code 9"), said


def test_a_party_killed_by_a_signal_makes_the_launcher_exit_128_plus_its_number(tmp_path):
    """Party 2 killed by SIGKILL mid-protocol: the launcher exited 1, though
    it exits with the failing party's code; a signal's death is now
    reported as a shell reports it, 128 + 9."""
    script = tmp_path / "sigkilled.py"
    script.write_text(
        KILLED.replace("os._exit(9)  # killed outright", "os.kill(os.getpid(), 9)  # SIGKILL")
    )
    r = run_launcher(script, timeout=90)
    said = [line for line in r.stderr.splitlines() if line.startswith("cryptgpu.launch:")]
    assert r.returncode == 128 + 9, r.stderr[-3000:]
    assert said and said[0].startswith("cryptgpu.launch: party 2 was killed by SIGKILL"), said


RAISE = textwrap.dedent(
    """
    import torch, cryptgpu
    cryptgpu.init(seed=1, timeout_s=20)
    x = cryptgpu.cryptensor(torch.ones(3), src=0)
    if cryptgpu.rank() == 1:
        open("/nonexistent/cryptgpu-probe-file")
    (x * x).get_plain_text()
    """
)


def test_an_uncaught_exception_is_what_the_other_parties_report(tmp_path):
    """A party's script ending on an exception closed its links with BYE,
    so the others said only "party 1 left the session"; it now tells them
    why, as spmd.run does."""
    script = tmp_path / "raise.py"
    script.write_text(RAISE)
    r = run_launcher(script, timeout=60)
    assert r.returncode != 0
    assert r.stderr.count("party 1 aborted: FileNotFoundError") == 2, r.stderr[-3000:]


def test_init_needs_both_rank_and_peers():
    with pytest.raises(ValueError, match="both"):
        cryptgpu.init(rank=0)
    with pytest.raises(ValueError, match="rank"):
        cryptgpu.init(rank=5, peers=["a:1", "b:2", "c:3"])


def test_bad_transport_arguments_are_value_errors():
    peers = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    with pytest.raises(ValueError, match="unknown transport"):
        cryptgpu.init(rank=0, peers=peers, transport="udp", insecure=True)
    with pytest.raises(ValueError, match="bind address needs the zmq transport"):
        cryptgpu.init(rank=0, peers=peers, transport="tcp", bind="127.0.0.1:4", insecure=True)
    with pytest.raises(ValueError, match="resolve"):
        cryptgpu.init(rank=0, peers=peers, bind="no-such-host.invalid:1", insecure=True)


OWN_SOCKETS = textwrap.dedent(
    """
    import json, os, stat
    import cryptgpu
    cryptgpu.init(timeout_s=20)
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    tcp = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in open(table).readlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in mine:  # listening, this process's
                tcp.add(int(f[1].rsplit(":", 1)[1], 16))
    unix = set()
    for line in open("/proc/self/net/unix").readlines()[1:]:
        f = line.split()
        if len(f) > 7 and f[6] in mine and "cryptgpu-" in f[7]:
            d = os.path.dirname(f[7])
            unix.add((d, stat.S_IMODE(os.stat(d).st_mode)))
    public = int(os.environ["CRYPTGPU_PEERS"].split(",")[cryptgpu.rank()].rsplit(":", 1)[1])
    print("SOCKETS", json.dumps({"tcp": sorted(tcp), "public": public, "unix": sorted(unix)}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")
def test_only_the_guarded_port_listens_on_tcp(tmp_path):
    """A party's ZeroMQ ROUTER socket (behind the frame guard) listened on a
    loopback TCP port: any local process could connect to it directly,
    skip the guard, and abort the party with one forged 2^62-byte frame
    header. Each party now listens on TCP only at its public (guarded)
    port; the ROUTER socket is a Unix socket in a private directory (mode
    0700), removed when the party exits."""
    import json

    script = tmp_path / "sockets.py"
    script.write_text(OWN_SOCKETS)
    procs = start_by_hand(script)
    try:
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    dirs = []
    for r, p in enumerate(procs):
        assert p.returncode == 0, outs[r]
        line = next(x for x in outs[r].splitlines() if x.startswith("SOCKETS "))
        got = json.loads(line[len("SOCKETS ") :])
        assert got["tcp"] == [got["public"]], f"party {r} listens on TCP ports {got}"
        assert len(got["unix"]) == 1 and got["unix"][0][1] == 0o700, got
        dirs.append(got["unix"][0][0])
    assert not any(os.path.exists(d) for d in dirs), f"left behind: {dirs}"


@pytest.mark.parametrize(
    "transport, odd, said",
    [
        ("zmq", {"CRYPTGPU_TRANSPORT": "tcp"}, "answered with ZeroMQ"),
        ("zmq", {"CRYPTGPU_INSECURE": "1"}, "CRYPTGPU_INSECURE=1"),
        ("tcp", {"CRYPTGPU_INSECURE": "1"}, "CRYPTGPU_INSECURE=1"),
    ],
)
def test_parties_on_different_transports_or_encryption_are_told(
    tmp_path, monkeypatch, transport, odd, said
):
    """Party 0 on another transport, or without encryption among encrypted
    parties: the parties said "Codec Error: Connection reset by peer",
    "wrong or missing key", "got no answer" or "sent a message of kind 2";
    now the setting that differs is named. (timeout_s 8, not 3: under a
    loaded machine the other parties had given up on party 0 before it
    dialled them, and it then heard only a refused connection.)"""
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=8)\nprint('joined')\n")
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    procs, outs = _outputs(start_by_hand(script, env_for={0: odd}))
    assert all(p.returncode != 0 for p in procs), outs
    assert said in "\n".join(outs), outs


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_peer_lists_in_another_order_are_named(tmp_path, monkeypatch, transport):
    """Party 2's CRYPTGPU_PEERS names parties 0 and 1 the other way round:
    the parties reported a key problem (ZeroMQ) or timeouts and reset
    connections (TCP; its refusal "expects another party" was never read:
    the refusing side closed the connection with the dialling party's
    handshake unread, which resets it, or had closed its port once its own
    links were up). Now the key refusal and a wait that heard nothing
    name the peer lists' order as a cause, and on TCP the party that dialled the wrong address is told at
    once: a party answers its port until its session ends."""
    script = tmp_path / "ok.py"
    script.write_text(
        "import torch, cryptgpu\ncryptgpu.init(timeout_s=4)\n"
        "cryptgpu.cryptensor(torch.ones(2), src=0).get_plain_text()\n"
    )
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    procs, outs = _outputs(start_by_hand(script, swap_peers_for=2))
    assert all(p.returncode != 0 for p in procs), outs
    if transport == "tcp":
        assert "CRYPTGPU_PEERS list, in the same order" in outs[2], outs[2]
    else:  # every party (the two that heard nothing said only "no answer"
        # until 2026-12-06, the misconfigured one among them, a probe)
        for out in outs:
            assert "CRYPTGPU_PEERS lists differ in order" in out, outs


def test_a_party_without_encryption_is_named_by_every_party_on_tcp(tmp_path, monkeypatch):
    """Party 2 runs with CRYPTGPU_INSECURE=1 and no keys on TCP: in a user
    probe party 1 said "sent an unknown answer (0)", "could not reach
    party 2 ... (Connection reset by peer)" or nothing at the timeout:
    party 2's refusal was reset before it was read, or party 2 had given
    up (party 0 refused it) and closed its port. A refusal is now read
    before the connection closes, and a party that gives up answers its
    port for up to 3 s more with its reason."""
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=4)\nprint('joined')\n")
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", "tcp")
    procs, outs = _outputs(start_by_hand(script, env_for={2: {"CRYPTGPU_INSECURE": "1"}}))
    assert all(p.returncode != 0 for p in procs), outs
    for r in range(3):
        assert "CRYPTGPU_INSECURE" in outs[r], (r, outs[r])


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_a_party_of_another_job_with_the_same_keys_is_refused(tmp_path, monkeypatch, transport):
    """Two jobs run at once with the same keys: a network that rerouted
    their links mixed them into two sessions that finished with wrong
    results and exit code 0 (a user probe): nothing in the handshake named
    the job. Each handshake now carries, sealed, a digest of CRYPTGPU_JOB;
    a party of a job with another name (what a rerouted party of a second
    job presents) is refused, and no party joins. A party whose peer list
    is spelled otherwise (localhost for 127.0.0.1, as behind proxies each
    party may have its own addresses) still joins."""
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=5)\nprint('joined')\n")
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    procs, outs = _outputs(start_by_hand(script, env_for={1: {"CRYPTGPU_JOB": "another"}}))
    assert all(p.returncode != 0 for p in procs), outs
    assert not any("joined" in o for o in outs), outs
    assert "belongs to another job" in "\n".join(outs), outs
    procs, outs = _outputs(start_by_hand(script, respell_peers_for=1))
    assert all(p.returncode == 0 and "joined" in o for p, o in zip(procs, outs)), outs


@pytest.mark.parametrize("setting", ["precision_bits=12", "truncation='exact'"])
def test_parties_with_different_settings_refuse_to_compute(tmp_path, setting):
    """One party started with another precision_bits or truncation mode: at
    init every party raises InvalidArgumentError naming the settings (they
    used to open garbage, 2.7e10 for 0, without an error)."""
    script = tmp_path / "mismatch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os

            import cryptgpu
            extra = dict({setting}) if os.environ["CRYPTGPU_RANK"] == "1" else {{}}
            try:
                cryptgpu.init(timeout_s=10, **extra)
            except cryptgpu.InvalidArgumentError as e:
                print("refused:", e)
                raise SystemExit(7)
            print("joined")
            """
        )
    )
    procs = start_by_hand(script)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    for r, p in enumerate(procs):
        assert p.returncode == 7, outs[r]
        assert "different settings" in outs[r] and "precision_bits" in outs[r], outs[r]
    if setting.startswith("precision_bits"):
        # each party's settings as it holds them: party 1's 12 bits showed
        # as 0.75 to the parties with 16 (decoded at their scale)
        mine, theirs = (
            "precision_bits=12, truncation='auto'",
            "precision_bits=16, truncation='auto'",
        )
        assert f"this party ({mine}" in outs[1] and f"party 0 ({theirs}" in outs[1], outs[1]
        for r in (0, 2):
            assert f"this party ({theirs}" in outs[r] and f"party 1 ({mine}" in outs[r], outs[r]
    else:  # by name (a list of codes until 2026-12-06: [16, 1, 4081], a probe)
        assert "party 1 (precision_bits=16, truncation='exact'" in outs[0], outs[0]
        assert "this party (precision_bits=16, truncation='exact'" in outs[1], outs[1]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_the_launcher_stops_every_party_when_it_is_terminated(tmp_path, sig):
    """SIGTERM or SIGHUP (a job scheduler, a closed terminal) to the launcher
    stopped only the launcher: the three parties kept running."""
    import signal

    script = tmp_path / "sleepy.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            open(os.path.join({str(tmp_path)!r}, "pid." + os.environ["CRYPTGPU_RANK"]), "w").write(
                str(os.getpid()))
            time.sleep(120)
            """
        )
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pidfiles = [tmp_path / f"pid.{r}" for r in range(3)]
    start = time.time()
    while not all(p.exists() and p.read_text() for p in pidfiles) and time.time() - start < 60:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in pidfiles]
    launcher.send_signal(getattr(signal, sig))
    assert launcher.wait(30) == 128 + getattr(signal, sig)

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    assert not any(alive(p) for p in pids), "a party outlived the launcher"


def test_command_line_and_environment_mistakes_are_named(tmp_path, monkeypatch):
    r = subprocess.run(
        [sys.executable, "-m", "cryptgpu.keys", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 0 and "OUTDIR" in r.stdout
    assert not (tmp_path / "--help").exists(), "--help was taken for a directory"
    monkeypatch.setenv("CRYPTGPU_RANK", "x")
    monkeypatch.setenv("CRYPTGPU_PEERS", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")
    with pytest.raises(ValueError, match="CRYPTGPU_RANK"):
        cryptgpu.init(insecure=True)
    monkeypatch.delenv("CRYPTGPU_RANK")
    monkeypatch.delenv("CRYPTGPU_PEERS")
    peers = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    with pytest.raises(ValueError, match="bind address"):
        cryptgpu.init(rank=0, peers=peers, bind="nonsense", insecure=True)


SESSIONS = textwrap.dedent(
    """
    import time, torch, cryptgpu
    for i in range(2):
        cryptgpu.init(timeout_s=20)  # the second call closes the first session
        x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]) + i, src=0)
        print(f"session {i} {x.relu().get_plain_text().tolist()}", flush=True)
        if cryptgpu.rank() == 2 and i == 0:
            time.sleep(7)  # local work, longer than the 5 s a closing party waits
    """
)


@pytest.mark.parametrize("insecure", [False, True])
def test_a_party_late_to_a_second_session_is_waited_for(tmp_path, insecure):
    """init() after init() (or uninit) with one party 7 s late (on ZeroMQ):
    the others dialled its port while its first session was still open,
    their connections died with that session (ZeroMQ does not dial a
    DEALER again), and the second init failed at the timeout ("got no
    answer from party 2"; also under CPU load, with no party late). A
    closing session now closes its port first, and the handshake (Noise,
    or the insecure links' exchange of nonces) dials again."""
    script = tmp_path / "sessions.py"
    script.write_text(SESSIONS)
    env = {r: {"CRYPTGPU_INSECURE": "1"} for r in range(3)} if insecure else None
    procs, outs = _outputs(start_by_hand(script, env_for=env))
    assert all(p.returncode == 0 for p in procs), outs
    for out in outs:
        # exact: relu of small integers needs no rounding at 2^-16
        assert "session 0 [1.0, 0.0]" in out and "session 1 [2.0, 0.0]" in out, outs


def _tcp_party0_env(ports, pairs) -> dict:
    """Party 0's environment on the TCP transport, on localhost ``ports``
    with the key ``pairs`` ((key, public key) paths)."""
    return {
        **os.environ,
        "CRYPTGPU_TRANSPORT": "tcp",
        "CRYPTGPU_RANK": "0",
        "CRYPTGPU_PEERS": ",".join(f"127.0.0.1:{p}" for p in ports),
        "CRYPTGPU_KEY": pairs[0][0],
        "CRYPTGPU_PUBKEYS": ",".join(p for _, p in pairs),
    }


def test_a_give_up_answer_on_tcp_is_shown_as_not_authenticated(tmp_path):
    """A TCP party's give-up verdict carries its reason before any handshake,
    so whoever answers at a neighbour's address could send any text, which
    was shown as that neighbour's, escape codes included (a review: a
    listener on party 1's port made party 0 print "party 1 gave up its
    links: ... set CRYPTGPU_INSECURE=1"). It is shown as not authenticated,
    printable characters only."""
    import socket
    import struct
    import threading

    from cryptgpu import _native
    from cryptgpu.launch import free_ports

    ports = free_ports(3)
    pairs = [_native.generate_keypair() for _ in range(3)]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", ports[1]))
    srv.listen()

    def stranger():
        c, _ = srv.accept()
        c.recv(8)
        text = b"party 2 refused this key. \x1b[31mset CRYPTGPU_INSECURE=1\x1b[0m"
        c.sendall(b"\0\0\x05" + struct.pack("<H", len(text)) + text)
        time.sleep(1)
        c.close()

    threading.Thread(target=stranger, daemon=True).start()
    env = _tcp_party0_env(ports, pairs)
    code = "import cryptgpu; cryptgpu.init(timeout_s=10)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    srv.close()
    assert r.returncode != 0
    assert "answered that it gave up its links (not authenticated:" in r.stderr, r.stderr
    assert "\x1b" not in r.stderr and "party 1 gave up" not in r.stderr, r.stderr


def _listen(port):
    """A listening socket on 127.0.0.1:``port`` (a stranger's, or a proxy's)."""
    import socket

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    return srv


def test_a_stalled_answer_at_a_tcp_neighbours_address_ends_init_within_timeout_s(tmp_path):
    """Whatever answers at party 1's address sends an answer that announces
    10 000 bytes, sends 100 and falls silent: party 0's init() raised
    PeerError only after twice timeout_s (a network probe: the wait for the
    answer ran out, and a second full wait for a refusal followed), saying
    the connection "was closed ... Resource temporarily unavailable (os
    error 11)". Every read before the handshake now waits only what is left
    of init's one deadline, and a read that runs out says so."""
    import struct
    import threading

    from cryptgpu import _native
    from cryptgpu.launch import free_ports

    ports = free_ports(3)
    pairs = [_native.generate_keypair() for _ in range(3)]
    srv, held = _listen(ports[1]), []

    def stranger():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            held.append(c)
            c.sendall(struct.pack("<H", 10_000) + b"x" * 100)

    threading.Thread(target=stranger, daemon=True).start()
    env = _tcp_party0_env(ports, pairs)
    code = (
        "import time, cryptgpu\nt = time.monotonic()\n"
        "try:\n    cryptgpu.init(timeout_s=4)\n"
        "except cryptgpu.PeerError as e:\n    print(f'PeerError {time.monotonic() - t:.2f} {e}')\n"
    )
    try:
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        srv.close()
        for c in held:
            c.close()
    assert r.stdout.startswith("PeerError "), (r.stdout, r.stderr)
    took = float(r.stdout.split()[1])
    # timeout_s (4 s) plus 2 s for threads on a loaded machine (the wait is
    # timed around init() alone, not the interpreter's start); the old code
    # took 2 x timeout_s, 8 s
    assert took < 4 + 2, r.stdout
    assert "no complete answer from party 1 within the timeout" in r.stdout, r.stdout
    assert "os error 11" not in r.stdout, r.stdout


def test_a_flipped_encryption_flag_on_tcp_is_said_as_not_authenticated(tmp_path):
    """A proxy in front of party 0 flips the flag bit of party 2's greeting
    that says it runs without encryption (bit 32 of the 8 bytes): party 2
    stated as fact "party 0 runs without encryption (CRYPTGPU_INSECURE=1)"
    and party 0 "party 2 runs without encryption" (a network probe), though
    all three encrypt with the same settings. The greeting and the refusal
    come before the handshake: each is now said as a claim that is not
    authenticated, still naming the setting to check, and still at once for
    party 2 (README: a mismatch of settings is told at once on TCP)."""
    import socket
    import threading

    from cryptgpu.launch import free_ports

    ports = free_ports(4)  # parties 0, 1, 2, and the proxy in front of party 0
    srv, socks = _listen(ports[3]), []

    def pump(a, b, flip):
        try:
            while x := a.recv(65536):
                if flip:  # the first bytes party 2 sends: its greeting
                    x, flip = x[:4] + bytes([x[4] ^ 1]) + x[5:], False
                b.sendall(x)
        except OSError:
            pass
        for s in (a, b):
            s.close()

    def proxy():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", ports[0]), timeout=1)
            except OSError:  # party 0 not listening yet: party 2 dials again
                c.close()
                continue
            s.settimeout(None)
            socks.extend((c, s))
            threading.Thread(target=pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=pump, args=(s, c, False), daemon=True).start()

    threading.Thread(target=proxy, daemon=True).start()
    real = ",".join(f"127.0.0.1:{p}" for p in ports[:3])
    via = ",".join(f"127.0.0.1:{p}" for p in (ports[3], ports[1], ports[2]))
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=4)\nprint('joined')\n")
    env = {"CRYPTGPU_TRANSPORT": "tcp"}
    env_for = {0: {**env, "CRYPTGPU_PEERS": real}, 1: {**env, "CRYPTGPU_PEERS": real}}
    env_for[2] = {**env, "CRYPTGPU_PEERS": via}
    try:
        procs, outs = _outputs(start_by_hand(script, env_for=env_for))
    finally:
        srv.close()
        for s in socks:
            s.close()
    assert all(p.returncode != 0 for p in procs), outs
    claim = "the party at party 0's address answered that it runs without encryption"
    assert claim in outs[2] and "(not authenticated:" in outs[2], outs[2]
    # party 0 says its own refusal of the greeting at its timeout, or,
    # when a neighbour gave up first, that neighbour's relayed reason;
    # each a claim (not authenticated) either way
    said = (
        "the connection claiming to be party 2 said it runs without",
        "answered that it gave up",
    )
    assert any(x in outs[0] for x in said) and "not authenticated" in outs[0], outs[0]
    for out in outs:  # stated as fact by no party
        assert "party 0 runs without" not in out and "party 2 runs without" not in out, outs


STOPPED = textwrap.dedent(
    """
    import os, signal, torch, cryptgpu
    cryptgpu.init(timeout_s=3)
    try:  # (a loaded machine: party 2 may be late before it stops, too)
        x = cryptgpu.cryptensor(torch.randn(64), src=0)
        (x * x).get_plain_text()
        if cryptgpu.rank() == 2:
            os.kill(os.getpid(), signal.SIGSTOP)
        for i in range(50):
            x = (x * x).relu()
    except cryptgpu.PeerError as e:
        print("ERR", e, flush=True)
        os._exit(2)
    """
)


@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_a_stopped_party_is_named_by_both_neighbours(tmp_path, monkeypatch, transport):
    """Party 2 stops (SIGSTOP) mid-run: party 1 times out on it, and party
    0, waiting on party 1 at about the same moment, said "no answer from
    party 1" (alive) in 2 of 3 runs after a first fix (a review): party 1
    tells party 0 its reason before its own last wait, so both name party
    2. Until the thirtieth session the ZeroMQ reason gave start-up causes
    (an address not reached, CRYPTGPU_PEERS lists in another order) after
    hundreds of messages on the link (probe OG)."""
    monkeypatch.setenv("CRYPTGPU_TRANSPORT", transport)
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED)
    procs = start_by_hand(script)
    try:
        outs = [procs[r].communicate(timeout=60)[0] for r in (0, 1)]
    finally:
        for p in procs:
            p.kill()
    for r in (0, 1):
        err = [ln for ln in outs[r].splitlines() if ln.startswith("ERR")]
        assert err and "no answer from party 2" in err[0], outs[r]
        assert "in the middle of the session" in err[0], err[0]
        assert "CRYPTGPU_PEERS" not in err[0], err[0]


def test_a_reordered_public_key_list_is_named_to_the_party_holding_it(tmp_path):
    """Party 0's public-key list holds the keys of parties 1 and 2 the other
    way round (its own entry is right, so init cannot tell): party 0 was
    told "party 1 is not running or is stuck" (probe NA), though README
    promises that the party holding the wrong key is told so. Its
    neighbours' identities prove the keys its list gives for the other
    party: named as a list in another order."""
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=4)\nprint('joined')\n")
    procs, outs = _outputs(start_by_hand(script, swap_pubs_for=0))
    assert all(p.returncode != 0 for p in procs), outs
    assert "public-key list (CRYPTGPU_PUBKEYS) gives for party 2" in outs[0], outs[0]
    assert "not running" not in outs[0], outs[0]
    # party 1, which waits on party 0 first, blames the keys as before
    assert "wrong or missing key" in outs[1], outs[1]


SHIFT_CLOCK = """
#define _GNU_SOURCE
#include <time.h>
#include <dlfcn.h>
int clock_gettime(clockid_t c, struct timespec *ts) {
  static int (*real)(clockid_t, struct timespec *);
  if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
  int r = real(c, ts);
  if (!r && c == CLOCK_REALTIME) ts->tv_sec += 600;
  return r;
}
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not shutil.which("cc"),
    reason="needs Linux and a C compiler (an LD_PRELOAD shim shifts one party's clock)",
)
def test_clocks_too_far_apart_are_named(tmp_path):
    """Party 2's host clock runs 10 minutes ahead (no NTP), beyond the 5
    minutes a ZeroMQ identity allows: every party blamed the keys or said
    a neighbour was not running (probe NA). The identities prove their
    keys with a minute too far off: each party now names the clocks."""
    src, lib = tmp_path / "shift.c", tmp_path / "shift.so"
    src.write_text(SHIFT_CLOCK)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    script = tmp_path / "ok.py"
    script.write_text("import cryptgpu\ncryptgpu.init(timeout_s=4)\nprint('joined')\n")
    procs, outs = _outputs(start_by_hand(script, env_for={2: {"LD_PRELOAD": str(lib)}}))
    assert all(p.returncode != 0 for p in procs), outs
    for out in outs:
        assert "the two hosts' clocks differ" in out, outs
    assert "minute(s) behind this host's" in outs[2], outs[2]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "tcp"])
def test_a_slow_link_comes_up(tmp_path, transport):
    """Every link through the repository's delay proxy (benchmarks/
    wan_proxy.py) with a one-way delay of 0.6 s (a round trip of 1.2 s): on
    ZeroMQ every connection attempt was cut at 1 s, shorter than the ZMTP
    greeting and READY take, so the links never came up, whatever
    timeout_s (probe NA; 0.9 s was enough). Attempts now grow while the
    port does not refuse, and the handshake waits in proportion. One tiny
    job; about 25 s on ZeroMQ, 15 s on TCP (2 shared cores)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    from wan_proxy import WanProxy

    from cryptgpu import _native
    from cryptgpu.launch import free_ports

    ports = free_ports(6)
    real, dial = ports[:3], ports[3:]
    proxies = [WanProxy(dial[r], real[r], 0.6, 1e9) for r in range(3)]
    pairs = [_native.generate_keypair() for _ in range(3)]
    script = tmp_path / "job.py"
    script.write_text(
        "import torch, cryptgpu\ncryptgpu.init(timeout_s=30)\n"
        "x = cryptgpu.cryptensor(torch.tensor([1.0, 2.0]), src=0)\n"
        "print('got', x.mul(3).get_plain_text().tolist(), flush=True)\n"
    )
    procs = []
    for r in range(3):
        # TCP has no bind address: a party's own entry is where it listens
        peers = [real[i] if (i == r and transport == "tcp") else dial[i] for i in range(3)]
        env = {
            "CRYPTGPU_RANK": str(r),
            "CRYPTGPU_TRANSPORT": transport,
            "CRYPTGPU_PEERS": ",".join(f"127.0.0.1:{p}" for p in peers),
            "CRYPTGPU_KEY": pairs[r][0],
            "CRYPTGPU_PUBKEYS": ",".join(pub for _, pub in pairs),
        }
        if transport == "zmq":
            env["CRYPTGPU_BIND"] = f"127.0.0.1:{real[r]}"
        procs.append(spawn_party(script, env))
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
        for x in proxies:
            x.close()
    assert all(p.returncode == 0 for p in procs), outs
    for out in outs:
        assert "got [3.0, 6.0]" in out, outs  # exact: small integers, no rounding at 2^-16
