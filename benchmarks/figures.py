"""The paper's microbenchmarks (Fig. 1 and Fig. 2; PAPER-NOTES.md) on every
device this machine has, written as CSV for notebooks/05_performance.ipynb:

- Fig. 1a: private conv, n x n x 3 input, 11x11 kernel, 64 channels out,
  stride 4, padding 2, over n;
- Fig. 1b: the same conv on a batch of k 32x32x3 inputs, over k;
- Fig. 1c: private conv, n x n x 512 input, 3x3 kernel, 512 channels out,
  stride 1, padding 1, over n;
- Fig. 2: private ReLU over the number of elements.

    python benchmarks/figures.py [--quick] [--devices cpu,cuda]

Writes benchmarks/fig1_conv.csv and benchmarks/fig2_relu.csv (one row per
device and point; wall time is the median of 3 runs after a warm-up, rounds
and bytes are the engine's counters, bytes/party the largest party's). Both
the input and the weights are secret shared, as in the paper.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import torch

import cryptgpu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_nonlinear import measure  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def conv_point(g, batch, n, cin, cout, k, stride, pad):
    x = cryptgpu.cryptensor(torch.randn(batch, cin, n, n, generator=g, dtype=torch.float64))
    w = cryptgpu.cryptensor(
        torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64) * 0.05, src=0
    )
    reps = 3 if batch * n * n * cin <= 1 << 21 else 1
    return measure(lambda: x.conv2d(w, stride=stride, padding=pad), reps=reps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small points only (minutes on 2 cores)")
    ap.add_argument("--devices", default="cpu,cuda" if cryptgpu.cuda_is_available() else "cpu")
    opts = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    if opts.quick:
        fig1 = {"a": [32, 64], "b": [32, 64], "c": [1, 4, 8]}
        relu = [50_000, 256_000, 1_000_000]
    else:
        fig1 = {"a": [32, 64, 128, 256, 512], "b": [32, 64, 128], "c": [1, 4, 8, 16, 32]}
        relu = [50_000, 256_000, 1_000_000, 4_000_000, 16_000_000, 32_000_000]
    conv_rows, relu_rows = [], []
    for dev in opts.devices.split(","):
        cryptgpu.init(device=dev)
        for n in fig1["a"]:
            t, r, b = conv_point(g, 1, n, 3, 64, 11, 4, 2)
            conv_rows.append((dev, "1a", "input size n", n, t, r, b))
            print(f"{dev} fig1a n={n}: {t:.3f} s", flush=True)
        for k in fig1["b"]:
            t, r, b = conv_point(g, k, 32, 3, 64, 11, 4, 2)
            conv_rows.append((dev, "1b", "batch size k", k, t, r, b))
            print(f"{dev} fig1b k={k}: {t:.3f} s", flush=True)
        for n in fig1["c"]:
            t, r, b = conv_point(g, 1, n, 512, 512, 3, 1, 1)
            conv_rows.append((dev, "1c", "input size n (512 channels)", n, t, r, b))
            print(f"{dev} fig1c n={n}: {t:.3f} s", flush=True)
        for m in relu:
            x = cryptgpu.cryptensor(torch.randn(m, generator=g, dtype=torch.float64))
            t, r, b = measure(lambda x=x: x.relu(), reps=3 if m <= 4_000_000 else 1)
            relu_rows.append((dev, m, t, r, b))
            print(f"{dev} relu {m:,}: {t:.3f} s", flush=True)
            del x
        cryptgpu.uninit()
    stamp = time.strftime("%Y-%m-%d")
    with open(os.path.join(HERE, "fig1_conv.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["date", "device", "figure", "sweep", "x", "wall_s", "rounds", "bytes_per_party"]
        )
        w.writerows((stamp, *row) for row in conv_rows)
    with open(os.path.join(HERE, "fig2_relu.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "device", "elements", "wall_s", "rounds", "bytes_per_party"])
        w.writerows((stamp, *row) for row in relu_rows)
    print(f"{os.cpu_count()} cores; wrote fig1_conv.csv and fig2_relu.csv")


if __name__ == "__main__":
    main()
