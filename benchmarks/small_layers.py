"""Small layers against the large-GEMM rate (issue 18): private matmuls,
linear layers and convolutions of the model zoo at batch 1, each as an
effective rate of ring multiply-adds per second (six ring GEMMs of m*k*n
per private product: two per party), set against the 1024^3 product's
rate measured in the same run; then the zoo's batch-1 inference, and where
the engine calls of LeNet's batch-1 forward spend their time.

    python benchmarks/small_layers.py [--reps 9] [--no-models]

Every time is the median of --reps runs after one warm-up. Prints markdown
tables (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import torch
from bench_foundation import timeit as median_s  # median of reps after a warm-up

import cryptgpu
from cryptgpu import models


def E(*shape):
    return cryptgpu.cryptensor(torch.randn(*shape))


def products():
    """(name, multiply-adds m*k*n, the private op) for each row."""
    rows = []

    def mm(m, k, n):
        a, b = E(m, k), E(k, n)
        rows.append((f"matmul {m}x{k} @ {k}x{n}", m * k * n, lambda: a @ b))

    def linear(i, o, batch=1):
        x, w, b = E(batch, i), E(o, i), E(o)
        rows.append((f"linear {i}->{o}, batch {batch}", batch * i * o, lambda: x.linear(w, b)))

    def conv(c, hw, o, k, stride=1, pad=0):
        x, w = E(1, c, hw, hw), E(o, c, k, k)
        oh = (hw + 2 * pad - k) // stride + 1
        rows.append(
            (
                f"conv {c}x{hw}x{hw}, {o} {k}x{k} s{stride} p{pad}",
                o * c * k * k * oh * oh,
                lambda: x.conv2d(w, stride=stride, padding=pad),
            )
        )

    mm(1024, 1024, 1024)
    mm(256, 256, 256)
    mm(128, 128, 128)
    mm(64, 363, 49)
    mm(46, 47, 47)
    linear(800, 500)  # LeNet fc1
    linear(500, 10)
    linear(256, 256)  # AlexNet classifier
    linear(512, 512)  # VGG-16 classifier
    linear(800, 500, batch=4)
    conv(1, 28, 20, 5)  # LeNet
    conv(20, 12, 50, 5)
    conv(3, 32, 96, 11, 4, 9)  # AlexNet/CIFAR
    conv(96, 4, 256, 5, 1, 1)
    conv(256, 2, 384, 3, 1, 1)
    conv(3, 32, 64, 3, 1, 1)  # VGG-16/CIFAR first and a middle layer
    conv(256, 8, 256, 3, 1, 1)
    return rows


def profile_lenet(reps: int) -> None:
    """Engine calls of LeNet's batch-1 forward: time per call kind."""
    ctor, shape = models.zoo()["LeNet/MNIST"]
    torch.manual_seed(0)
    pm = cryptgpu.nn.from_pytorch(ctor().eval()).encrypt(src=0)
    xs = cryptgpu.cryptensor(torch.randn(1, *shape), src=1)
    pm(xs).get_plain_text()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(reps):
        pm(xs).get_plain_text()
    pr.disable()
    st = pstats.Stats(pr).stats
    total = sum(v[2] for k, v in st.items() if k[0] == "~") / reps
    rows = sorted(
        ((k[2], v[0] // reps, v[2] / reps) for k, v in st.items() if "_native.Session" in k[2]),
        key=lambda r: -r[2],
    )
    print("\n| engine call (LeNet b1 forward) | calls | ms per forward |")
    print("|---|---|---|")
    for name, calls, t in rows:
        call = name.split(" of ")[0].strip("<>").replace("method ", "")
        print(f"| {call} | {calls} | {t * 1e3:.2f} |")
    print(f"| all C calls (engine, torch, numpy) | | {total * 1e3:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--no-models", action="store_true")
    opts = ap.parse_args()
    cryptgpu.init(seed=0)
    print(f"date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu; local runtime")
    print(f"ring GEMM kernel: {cryptgpu._native.gemm_kernel()}\n")
    print("| private op | multiply-adds | time (ms) | ring MAC/s (G) | of the 1024^3 rate |")
    print("|---|---|---|---|---|")
    base = None
    for name, macs, fn in products():
        t = median_s(fn, 3 if macs >= 1 << 30 else opts.reps)
        rate = 6 * macs / t / 1e9
        base = base or rate
        print(f"| {name} | {macs:,} | {t * 1e3:.3f} | {rate:.2f} | {rate / base:.0%} |", flush=True)
    if opts.no_models:
        return
    print("\n| model, batch 1 | private (ms) | rounds |")
    print("|---|---|---|")
    zoo = models.zoo()
    for name in ("LeNet/MNIST", "AlexNet/CIFAR-10", "VGG-16/CIFAR-10"):
        ctor, shape = zoo[name]
        torch.manual_seed(0)
        pm = cryptgpu.nn.from_pytorch(ctor().eval()).encrypt(src=0)
        xs = cryptgpu.cryptensor(torch.randn(1, *shape), src=1)
        cryptgpu.reset_stats()
        pm(xs).get_plain_text()
        rounds = cryptgpu.stats()["total"]["rounds"]
        t = median_s(lambda pm=pm, xs=xs: pm(xs).get_plain_text(), opts.reps)
        print(f"| {name} | {t * 1e3:.1f} | {rounds} |", flush=True)
    profile_lenet(opts.reps)


if __name__ == "__main__":
    main()
