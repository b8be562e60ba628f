"""Private inference over three processes on loopback (encrypted TCP links)
against the local runtime, same models, same machine, same run.

    python benchmarks/distributed.py

Runs itself under ``python -m cryptgpu.launch`` for the multi-process rows.
Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

import cryptgpu
from cryptgpu import models

CASES = [("LeNet/MNIST", 1), ("LeNet/MNIST", 64), ("AlexNet/CIFAR-10", 1), ("AlexNet/CIFAR-10", 64)]


def measure() -> list:
    zoo = models.zoo()
    rows = []
    for name, b in CASES:
        ctor, shape = zoo[name]
        torch.manual_seed(0)
        pm = cryptgpu.nn.from_pytorch(ctor().eval()).encrypt(src=0)
        x = cryptgpu.cryptensor(torch.randn(b, *shape), src=1)
        pm(x).get_plain_text()  # warm-up
        cryptgpu.reset_stats()
        t = time.perf_counter()
        pm(x).get_plain_text()
        wall = time.perf_counter() - t
        st = cryptgpu.stats()["total"]
        rows.append([name, b, wall, st["rounds"], st["bytes_per_party"]])
    return rows


def main() -> None:
    if os.environ.get("CRYPTGPU_RANK"):  # one party of the multi-process run
        cryptgpu.init(seed=1)
        rows = measure()
        if cryptgpu.rank() == 0:
            with open(sys.argv[1], "w") as f:
                json.dump(rows, f)
        return
    cryptgpu.init(seed=1)
    local = measure()
    cryptgpu.uninit()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.json")
        subprocess.run(
            [sys.executable, "-m", "cryptgpu.launch", "--nparties", "3", __file__, out], check=True
        )
        with open(out) as f:
            dist = json.load(f)
    print(f"date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu\n")
    print(
        "| model | batch | local runtime (s) | 3 processes, loopback, encrypted (s) | ratio "
        "| rounds | bytes/party |"
    )
    print("|---|---|---|---|---|---|---|")
    for lr, dr in zip(local, dist):
        assert lr[3] == dr[3] and lr[4] == dr[4], "counters differ between runtimes"
        print(
            f"| {lr[0]} | {lr[1]} | {lr[2]:.3f} | {dr[2]:.3f} | {dr[2] / lr[2]:.2f}x | {lr[3]} "
            f"| {lr[4]:,} |"
        )


if __name__ == "__main__":
    main()
