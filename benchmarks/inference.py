"""Private inference of the paper's model zoo (random weights) on the local
three-party runtime, CPU, in the shape of the paper's inference table:
wall time, rounds and GB per party, with plaintext float64 PyTorch on the
same forward beside it. The input is shared before timing; the time
includes opening the logits. Batch-1 rows are timed after one warm-up run.

    python benchmarks/inference.py [--models LeNet,VGG-16/CIFAR-10] [--batches 1,16] [--quick]

Prints a markdown table (benchmarks/RESULTS.md) and writes
benchmarks/inference.csv. Peak RSS is the process's, after each model.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import time

import torch

import cryptgpu
from cryptgpu import models

LARGE_BATCH = {
    "LeNet": 64,
    "AlexNet/CIFAR": 64,
    "VGG-16/CIFAR": 16,
    "AlexNet/Tiny": 16,
    "VGG-16/Tiny": 4,
    "ResNet": 2,
}


def large_batch(name: str) -> int:
    for k, v in LARGE_BATCH.items():
        if name.startswith(k.split("/")[0]) and (len(k.split("/")) == 1 or k.split("/")[1] in name):
            return v
    return 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="", help="comma-separated prefixes of zoo names")
    ap.add_argument("--quick", action="store_true", help="batch 1 of the small models only")
    ap.add_argument("--large", action="store_true", help="also run the larger batch")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    opts = ap.parse_args()
    zoo = models.zoo()
    names = list(zoo)
    if opts.models:
        pref = opts.models.split(",")
        names = [n for n in names if any(n.startswith(p) for p in pref)]
    if opts.quick:
        names = [n for n in names if not n.startswith("ResNet")]
    cryptgpu.init(device=opts.device)
    rows = []
    for name in names:
        ctor, shape = zoo[name]
        torch.manual_seed(0)
        model = ctor().eval()
        pm = cryptgpu.nn.from_pytorch(model).encrypt(src=0)
        model = model.double()
        for b in [1] + ([large_batch(name)] if opts.large and not opts.quick else []):
            x = torch.randn(b, *shape, dtype=torch.float64)
            with torch.no_grad():
                t = time.perf_counter()
                ref = model(x)
                t_plain = time.perf_counter() - t
            xs = cryptgpu.cryptensor(x, src=1)
            if b == 1:
                pm(xs).get_plain_text()  # warm-up: first-touch allocations
            cryptgpu.reset_stats()
            t = time.perf_counter()
            out = pm(xs).get_plain_text(dtype=torch.float64)
            wall = time.perf_counter() - t
            st = cryptgpu.stats(per_layer=True)
            err = (out - ref).abs().max().item()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
            lay = st["layers"]
            rows.append(
                {
                    "model": name,
                    "batch": b,
                    "wall_s": wall,
                    "plain_f64_s": t_plain,
                    "rounds": st["total"]["rounds"],
                    "GB_per_party": st["total"]["bytes_per_party"] / 1e9,
                    "linear_s": lay.get("linear", {}).get("time_s", 0.0),
                    "pooling_s": lay.get("pooling", {}).get("time_s", 0.0),
                    "relu_s": lay.get("relu", {}).get("time_s", 0.0),
                    "max_abs_err": err,
                    "peak_rss_GB": rss,
                }
            )
            print(f"{name} batch {b}: {wall:.3f} s", flush=True)
    print(
        f"\ndate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: {opts.device}; "
        f"local runtime; torch {torch.__version__}\n"
    )
    print(
        "| model | batch | private (s) | plaintext f64 (s) | rounds | GB/party "
        "| linear / pool / ReLU (s) | max abs err | peak RSS (GB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['wall_s']:.3f} | {r['plain_f64_s']:.4f} | "
            f"{r['rounds']} | {r['GB_per_party']:.3f} | {r['linear_s']:.2f} / "
            f"{r['pooling_s']:.2f} / {r['relu_s']:.2f} | {r['max_abs_err']:.1e} | "
            f"{r['peak_rss_GB']:.1f} |"
        )
    with open(os.path.join(os.path.dirname(__file__), "inference.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
