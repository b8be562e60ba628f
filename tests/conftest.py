"""Shared fixtures and the tolerance model of the test suites.

Every tolerance below follows from the fixed-point precision f:
- encoding rounds each input to the grid: error at most 2^-(f+1);
- one truncation (after a product, a mean, a pooling) is within (-1, +1]
  units of 2^-f of the exact value, and unbiased (protocol.rs);
- a product x*y of encoded inputs carries |x| e_y + |y| e_x + e_x e_y.
"""

import os
import resource
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

import cryptgpu

F = 16
ULP = 2.0**-F
ENC = ULP / 2  # encoding error of one input
TRUNC = ULP  # error of one truncation


def prod_tol(k: int, xmax: float, ymax: float) -> float:
    """Bound for a sum of k products of encoded inputs, truncated once."""
    return k * (xmax * ENC + ymax * ENC + ENC * ENC) + TRUNC


# The source of fork_and_wait(child) for scripts that fork (they import os,
# sys and time): runs child() in a forked process that ends with a normal
# exit (atexit runs) and returns its exit code, or "hung" after 30 s.
FORK_AND_WAIT = """
def fork_and_wait(child):
    pid = os.fork()
    if pid == 0:
        try:
            code = child()
        except BaseException as e:
            sys.stdout.write(f"child: {type(e).__name__} {e}\\n")  # one write: pipes are shared
            sys.stdout.flush()
            code = 8
        sys.exit(code)  # a normal exit: atexit runs
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not cryptgpu.cuda_is_available(),
            reason="no CUDA GPU here (cryptgpu.cuda_is_available() is False)",
        ),
    ),
]


@pytest.fixture(params=DEVICES)
def session(request):
    """A seeded local session on each device: every test that uses it runs
    on the CPU and, where there is a GPU, on CUDA."""
    cryptgpu.init(device=request.param, precision_bits=F, seed=1234)
    yield
    cryptgpu.uninit()


@pytest.fixture(autouse=True)
def _socket_directories_of_the_test(monkeypatch):
    """A party a test kills outright (os._exit, SIGKILL) leaves its socket
    directory behind (README): every test's parties put theirs under a
    directory of the test's own, removed after it, so the suite leaves
    nothing in /tmp. Short: a Unix socket's path is at most 107 bytes."""
    d = tempfile.mkdtemp(prefix="cg-")
    monkeypatch.setenv("TMPDIR", d)
    yield
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


def rand(*shape, gen, scale=1.0):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale


def assert_close(got: torch.Tensor, want: torch.Tensor, tol: float):
    assert got.shape == want.shape, (got.shape, want.shape)
    err = (got.to(torch.float64) - want.to(torch.float64)).abs().max().item() if want.numel() else 0
    assert err <= tol, f"max error {err} exceeds tolerance {tol}"


def sgd_alongside(private_model, torch_model, x, y, lr: float, steps: int) -> None:
    """``steps`` SGD steps of cross-entropy on (x, y) for the private model
    (cryptgpu.optim.SGD) and the torch model (torch.optim.SGD) side by side."""
    import torch.nn.functional as F

    opt = cryptgpu.optim.SGD(private_model.parameters(), lr=lr)
    ref = torch.optim.SGD(torch_model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        cryptgpu.nn.CrossEntropyLoss()(private_model(cryptgpu.cryptensor(x)), y).backward()
        opt.step()
        ref.zero_grad()
        F.cross_entropy(torch_model(x), y).backward()
        ref.step()


def usable() -> bool:
    """The session still computes after an error: 1.5 + 1 within the
    input's encoding."""
    x = cryptgpu.cryptensor(torch.tensor([1.5]))
    return abs((x + 1).get_plain_text(dtype=torch.float64).item() - 2.5) <= ENC


def spawn_party(script, env: dict, limit: int = 0) -> subprocess.Popen:
    """One party's process running ``script`` with ``env`` added to ours,
    its output (stderr too) on a text pipe; ``limit``: its address space
    limit in bytes (``ulimit -v``), 0 for none."""
    return subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
        preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
        if limit
        else None,
    )
