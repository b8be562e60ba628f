"""Non-linear layer benchmarks (the paper's Fig. 2 shape for ReLU, plus
max-pool and softmax) on the local three-party runtime, CPU.

    python benchmarks/bench_nonlinear.py [--quick]

Prints a markdown table for benchmarks/RESULTS.md and writes
benchmarks/nonlinear.csv. Wall time is the median of 3 runs after a warm-up;
rounds and bytes are the engine's counters for one run (bytes/party is the
largest of the three parties).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import torch

import cryptgpu


def measure(fn, reps=3):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    cryptgpu.reset_stats()
    fn()
    st = cryptgpu.stats()["total"]
    return statistics.median(ts), st["rounds"], st["bytes_per_party"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    cryptgpu.init()
    g = torch.Generator().manual_seed(0)
    sizes = [50_000, 256_000] if opts.quick else [50_000, 256_000, 1_000_000, 4_000_000]
    rows = []
    for n in sizes:
        x = cryptgpu.cryptensor(torch.randn(n, generator=g, dtype=torch.float64))
        t, r, b = measure(lambda x=x: x.relu())
        rows.append(("ReLU", f"{n:,} elements", t, r, b, b / n))
    img = cryptgpu.cryptensor(torch.randn(32, 64, 32, 32, generator=g, dtype=torch.float64))
    t, r, b = measure(lambda: img.max_pool2d(2))
    rows.append(("max_pool2d 2x2", "32x64x32x32", t, r, b, b / img.numel()))
    t, r, b = measure(lambda: img.max_pool2d(3, stride=2, padding=1))
    rows.append(("max_pool2d 3x3 s2 p1", "32x64x32x32", t, r, b, b / img.numel()))
    for classes in (10, 1000):
        lg = cryptgpu.cryptensor(torch.randn(128, classes, generator=g, dtype=torch.float64))
        t, r, b = measure(lambda lg=lg: lg.softmax(1), reps=2)
        rows.append(
            (f"softmax {classes} classes", f"batch 128 x {classes}", t, r, b, b / lg.numel())
        )
    print(
        f"date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu; "
        f"local runtime; torch {torch.__version__}"
    )
    print()
    print("| op | input | wall (s) | rounds | bytes/party | bytes/party per input element |")
    print("|---|---|---|---|---|---|")
    for op, shape, t, r, b, per in rows:
        print(f"| {op} | {shape} | {t:.3f} | {r} | {b:,} | {per:.1f} |")
    out = os.path.join(os.path.dirname(__file__), "nonlinear.csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "input", "wall_s", "rounds", "bytes_per_party", "bytes_per_element"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
