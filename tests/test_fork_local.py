"""A process forked from one that ran the local runtime (2026-12-06,
twenty-third session: CI's test_a_child_forked_by_a_party_... hung under
load).

Two hangs, both in the child only:
- a product or sum large enough for the engine's thread pool waited for
  ever: the child has the pool's queues but not its threads;
- at the child's normal exit, dropping the session's party-thread channels
  could wait on a lock a party thread held at the fork (about 1 fork in 13
  under load on the 4-thread Xeon; rarer when idle).
The child now computes on its own threads and leaves the channels alone."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import FORK_AND_WAIT

CHILD = textwrap.dedent(
    """
    import os, sys, time, numpy as np, torch, cryptgpu

    FORK_AND_WAIT

    out = sys.argv[1]
    cryptgpu.init(seed=3)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(128, 256, generator=g, dtype=torch.float64) / 4
    b = torch.randn(256, 64, generator=g, dtype=torch.float64) / 4
    c = torch.randn(300, 300, generator=g, dtype=torch.float64)
    A, B, C = (cryptgpu.cryptensor(t) for t in (a, b, c))
    # the parent starts the engine's thread pool: 2M multiply-adds per
    # term, 90,000 words summed
    A.matmul(B).get_plain_text(), C.sum(0).get_plain_text()

    def large():  # torch stays serial here: its own pool did not come along
        np.save(out + "_mm.npy", A.matmul(B).get_plain_text().numpy())
        np.save(out + "_sum.npy", C.sum(0).get_plain_text().numpy())
        return 0

    print("large:", fork_and_wait(large), flush=True)
    y = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]))
    small = lambda: 0 if (y * y).get_plain_text().tolist() == [1.0, 4.0] else 7
    codes = [fork_and_wait(small) for _ in range(25)]
    print("small:", codes, flush=True)
    print("parent:", (y * y).get_plain_text().tolist(), flush=True)
    """
).replace("FORK_AND_WAIT\n", FORK_AND_WAIT)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_of_the_local_runtime_computes_large_work_and_exits(tmp_path):
    import numpy as np
    import torch

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = str(tmp_path / "r")
    r = subprocess.run(
        [sys.executable, str(script), out], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "large: 0" in r.stdout, r.stdout
    assert "small: [" + ", ".join(["0"] * 25) + "]" in r.stdout, r.stdout
    assert "parent: [1.0, 4.0]" in r.stdout, r.stdout

    g = torch.Generator().manual_seed(0)
    a = torch.randn(128, 256, generator=g, dtype=torch.float64) / 4
    b = torch.randn(256, 64, generator=g, dtype=torch.float64) / 4
    c = torch.randn(300, 300, generator=g, dtype=torch.float64)
    mm = torch.from_numpy(np.load(out + "_mm.npy")).double()
    sums = torch.from_numpy(np.load(out + "_sum.npy")).double()
    unit = 2.0**-16  # the fixed-point precision
    # each encoded entry is within unit/2 of its value; a product of k
    # terms then errs by at most k (|a| + |b|) unit/2 plus one truncation
    # (one unit, two for the probabilistic protocol's carry)
    k = a.shape[1]
    tol_mm = k * (a.abs().max() + b.abs().max()).item() * unit / 2 + 2 * unit
    assert (mm - a @ b).abs().max().item() <= tol_mm
    # a sum of 300 encoded entries: 300 half-units, no truncation
    assert (sums - c.sum(0)).abs().max().item() <= c.shape[0] * unit / 2 + unit
