"""Set-up mistakes of a multi-process run that a user probe found
(2026-12-05, thirteenth session): keys made twice over the old ones, an
empty or missing key variable, peers that could only fail at the timeout,
and a launcher killed outright leaving its parties running."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import cryptgpu
from conftest import FORK_AND_WAIT, usable
from cryptgpu import keys
from cryptgpu.launch import free_ports


def test_keys_are_not_overwritten_without_force(tmp_path, capsys):
    """Running python -m cryptgpu.keys again silently replaced the keys
    every party already held."""
    assert keys.main([str(tmp_path)]) == 0
    first = (tmp_path / "pubkeys").read_text()
    assert keys.main([str(tmp_path)]) == 1
    assert "not overwritten" in capsys.readouterr().err
    assert (tmp_path / "pubkeys").read_text() == first
    assert keys.main(["--force", str(tmp_path)]) == 0
    assert (tmp_path / "pubkeys").read_text() != first


@pytest.mark.parametrize(
    "env, error, words",
    [
        ({"CRYPTGPU_KEY": "", "CRYPTGPU_PUBKEYS": ""}, ValueError, "no link keys"),
        ({"CRYPTGPU_KEY": "@/nonexistent/p0.key"}, FileNotFoundError, "CRYPTGPU_KEY="),
        # a directory was a bare "[Errno 21] Is a directory: '/'" (probe NA)
        ({"CRYPTGPU_KEY": "@/"}, IsADirectoryError, "CRYPTGPU_KEY=@/: '/' is a directory"),
        # "maybe" was read as no without a word (probe NA)
        ({"CRYPTGPU_INSECURE": "maybe"}, ValueError, "CRYPTGPU_INSECURE must be 1, true"),
    ],
)
def test_key_variables_name_what_is_wrong(monkeypatch, env, error, words):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(error, match=words):
        cryptgpu.init(rank=0, peers=["127.0.0.1:29801", "127.0.0.1:29802", "127.0.0.1:29803"])
    cryptgpu.init()  # the local runtime still starts


def test_keys_into_a_path_that_cannot_hold_them_is_one_line(tmp_path, capsys):
    """python -m cryptgpu.keys with an existing file, or a path that cannot
    be made (/proc), printed a FileExistsError or FileNotFoundError
    traceback (probe NA); now one line and status 1."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, pathlib.Path("/proc/cryptgpu-keys")):
        assert keys.main([str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err, err
    assert afile.read_text() == "x"


@pytest.mark.parametrize("limit", ["0", "1023"])
def test_a_frame_limit_below_the_start_is_refused_at_init(monkeypatch, limit):
    """CRYPTGPU_MAX_FRAME_BYTES=0 (many tools' "no limit") was accepted, and
    every party's start then failed at the timeout, blaming its neighbours
    (probe NA); -1 and "abc" were already refused at init."""
    monkeypatch.setenv("CRYPTGPU_MAX_FRAME_BYTES", limit)
    peers = [f"127.0.0.1:{p}" for p in free_ports(3)]
    t = time.time()
    with pytest.raises(
        cryptgpu.InvalidArgumentError, match="CRYPTGPU_MAX_FRAME_BYTES must be at least 1024"
    ):
        cryptgpu.init(rank=0, peers=peers, insecure=True, timeout_s=10)
    assert time.time() - t < 5  # at init, not at the timeout
    cryptgpu.init()
    assert usable()


def test_the_launcher_drops_an_inherited_bind_address(tmp_path, monkeypatch):
    """A CRYPTGPU_BIND left exported by the multi-host recipe made all three
    parties the launcher started listen on that one address ("Address
    already in use", probe NA)."""
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, torch, cryptgpu\ncryptgpu.init(timeout_s=20)\n"
        "x = cryptgpu.cryptensor(torch.tensor([1.5]), src=0).get_plain_text().item()\n"
        "sys.stdout.write(f'got {x}\\n')  # one write: the parties share the pipe\n"
    )
    monkeypatch.setenv("CRYPTGPU_BIND", f"127.0.0.1:{free_ports(1)[0]}")
    r = subprocess.run(
        [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # 1.5 is on the 2^-16 grid: opened exactly
    assert r.stdout.count("got 1.5") == 3, r.stdout


@pytest.mark.parametrize(
    "peers, words",
    [
        (["127.0.0.1:0", "127.0.0.1:29812", "127.0.0.1:29813"], "port 0"),
        (["127.0.0.1:29811", "127.0.0.1:29811", "127.0.0.1:29813"], "two parties"),
    ],
)
def test_peers_that_could_only_time_out_are_refused(peers, words):
    t = time.time()
    with pytest.raises(ValueError, match=words):
        cryptgpu.init(rank=0, peers=peers, insecure=True, timeout_s=30)
    assert time.time() - t < 5  # at once, not at the 30 s timeout
    cryptgpu.init()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parties_end_when_the_launcher_is_killed(tmp_path):
    """SIGKILL to the launcher (no cleanup runs) left the three parties
    running until they finished or timed out."""
    script = tmp_path / "wait.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            name = os.path.join({str(tmp_path)!r}, "pid." + os.environ["CRYPTGPU_RANK"])
            open(name + ".tmp", "w").write(str(os.getpid()))
            os.replace(name + ".tmp", name)  # whole when it appears
            time.sleep(60)
            """
        )
    )
    launcher = subprocess.Popen([sys.executable, "-m", "cryptgpu.launch", str(script)])
    deadline = time.time() + 30
    while time.time() < deadline and len(list(tmp_path.glob("pid.[0-2]"))) < 3:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("pid.[0-2]")]
    assert len(pids) == 3
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
            return f.read().split()[2] != "Z"

    deadline = time.time() + 10
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left


FORK = textwrap.dedent(
    """
    import os, sys, time, torch, cryptgpu

    def say(line):  # one write: three parties share the pipe
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    FORK_AND_WAIT

    def refused():
        for use in (lambda: x + 1, cryptgpu.rank, lambda: cryptgpu.cryptensor(torch.ones(2))):
            try:
                use()
                return 5
            except RuntimeError as e:
                if "does not survive os.fork()" not in str(e):
                    say(f"child: {e}")
                    return 6
        return 0

    cryptgpu.init(timeout_s=20)
    x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), src=0)
    rank = cryptgpu.rank()
    if rank == 0:
        say(f"open session: {fork_and_wait(refused)}")
    say(f"{rank} parent: {x.relu().get_plain_text().tolist()}")
    cryptgpu.uninit()  # closed, and still held by x
    if rank == 0:
        say(f"closed session: {fork_and_wait(lambda: 0)}")
    # the local runtime (three parties in this process): a child computes on
    del os.environ["CRYPTGPU_RANK"], os.environ["CRYPTGPU_PEERS"]
    cryptgpu.init(seed=1)
    y = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]))
    local = lambda: 0 if (y * y).get_plain_text().tolist() == [1.0, 4.0] else 7
    say(f"{rank} local: {fork_and_wait(local)}")
    """
).replace("FORK_AND_WAIT\n", FORK_AND_WAIT)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_by_a_party_is_refused_the_session_and_exits(tmp_path):
    """A party that forked after init(): the child, at its normal exit,
    closed the session it inherited, waited forever on the engine's
    transport threads (which stay with the parent), and was left behind.
    The child now drops the session unclosed, and any use of it there
    raises; a child of the local runtime still computes and exits."""
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    r = subprocess.run(
        [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", str(script)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "open session: 0" in r.stdout and "closed session: 0" in r.stdout, r.stdout
    for rank in range(3):
        assert f"{rank} parent: [1.0, 0.0]" in r.stdout, r.stdout
        assert f"{rank} local: 0" in r.stdout, r.stdout


TERMINATED = textwrap.dedent(
    """
    import sys, time, torch, cryptgpu
    cryptgpu.init(timeout_s=60)
    x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), src=0)
    if cryptgpu.rank() == 2:
        sys.exit(3)
    if cryptgpu.rank() == 1:
        time.sleep(60)  # busy elsewhere: the launcher stops it
    (x * x).get_plain_text()  # party 0 waits on party 1
    """
)


def test_parties_the_launcher_stops_remove_their_socket_directories(tmp_path):
    """A party the launcher terminated (SIGTERM) left its private socket
    directory ($TMPDIR/cryptgpu-*) behind: it died without closing its
    session. It now ends through SystemExit, and its session closes."""
    import shutil
    import tempfile

    script = tmp_path / "term.py"
    script.write_text(TERMINATED)
    # a short path: the engine puts its sockets under /tmp when TMPDIR is
    # too long for a Unix socket's address
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cgterm-"))
    try:
        assert len(str(tmp)) <= 64
        r = subprocess.run(
            [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", str(script)],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        assert r.returncode == 3, r.stderr[-3000:]
        assert "stopping party 0, 1" in r.stderr, r.stderr[-3000:]
        assert not list(tmp.iterdir()), list(tmp.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize(
    "env",
    [
        # CrypTen's examples/multiprocess_launcher.py, party 1 of 3
        {"WORLD_SIZE": "3", "RANK": "1", "RENDEZVOUS": "file:///tmp/crypten-rendezvous-x"},
        # torchrun --nproc_per_node 3 (CrypTen's init() reads RANK and WORLD_SIZE too)
        {"WORLD_SIZE": "3", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
    ],
)
def test_cryptens_launcher_variables_are_refused_not_ignored(monkeypatch, env):
    """CrypTen's launcher starts one process per party with RANK,
    WORLD_SIZE and RENDEZVOUS set, each calling crypten.init(). cryptgpu
    read none of them: each process ran all three parties alone, party 1's
    input was that process's placeholder, and alice + bob came out [1, 2]
    instead of [11, 22], exit code 0 (a user probe). init() now refuses,
    saying what to do; the values below are sums of two encoded whole
    numbers, exact in fixed point (each within 2^-17: tolerance 2^-16)."""
    import torch

    import cryptgpu as crypten

    alice, bob = torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0])
    want = (alice + bob).double()
    tol = 2 * 2.0**-17  # two encoded inputs
    crypten.init()
    x = crypten.cryptensor(alice, src=0)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert crypten.mpc.ttp_required() is False  # the launcher asks before it starts
    with pytest.raises(
        ValueError, match=r"(?s)RANK=1.*cryptgpu\.launch --nparties 3.*CRYPTGPU_LOCAL"
    ):
        crypten.init()
    # the refusal left the earlier session as it was
    assert (x.get_plain_text(dtype=torch.float64) - alice.double()).abs().max() <= tol / 2

    # the parties as threads of one process (init() inside, as CrypTen code does)
    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        crypten.init()
        rank = crypten.comm.get().get_rank()
        a = crypten.cryptensor(alice if rank == 0 else torch.zeros(2), src=0)
        b = crypten.cryptensor(bob if rank == 1 else torch.zeros(2), src=1)
        return (a + b).get_plain_text(dtype=torch.float64)

    for got in job():
        assert (got - want).abs().max() <= tol
    # CRYPTGPU_LOCAL=1: the local runtime, as asked
    monkeypatch.setenv("CRYPTGPU_LOCAL", "1")
    crypten.init()
    got = (crypten.cryptensor(alice, src=0) + crypten.cryptensor(bob, src=1)).get_plain_text()
    assert (got.double() - want).abs().max() <= tol
    # one process of one (torchrun's default) is no multi-process job
    monkeypatch.delenv("CRYPTGPU_LOCAL")
    monkeypatch.delenv("RENDEZVOUS", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    crypten.init()
    assert crypten.comm.get().get_rank() == 0
    crypten.uninit()
