"""Foundation benchmarks: ring GEMM throughput against torch float64 GEMM,
and private matmul / conv2d on the local three-party runtime against the
same plaintext float64 op, measured in one run so the ratios are comparable.

    python benchmarks/bench_foundation.py [--quick]

Prints a markdown table (paste into benchmarks/RESULTS.md) and writes
benchmarks/foundation.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import cryptgpu
from cryptgpu import _native


def timeit(fn, reps: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gemm_rows(sizes, reps):
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.integers(0, 2**63, size=(n, n), dtype=np.uint64)
        b = rng.integers(0, 2**63, size=(n, n), dtype=np.uint64)
        ab, bb = a.tobytes(), b.tobytes()
        t_ring = timeit(lambda ab=ab, bb=bb, n=n: _native.ring_gemm(n, n, n, ab, bb), reps)
        # Bit-exactness against numpy's wrapping uint64 matmul on a corner.
        c = np.frombuffer(_native.ring_gemm(n, n, n, ab, bb), dtype=np.uint64).reshape(n, n)
        assert np.array_equal(c[:4, :4], (a[:4] @ b[:, :4]))
        fa = torch.randn(n, n, dtype=torch.float64)
        fb = torch.randn(n, n, dtype=torch.float64)
        t_f64 = timeit(lambda fa=fa, fb=fb: fa @ fb, reps)
        rows.append(
            {
                "bench": f"ring GEMM {n}^3",
                "ours_s": t_ring,
                "torch_f64_s": t_f64,
                "ours_Gmadd_s": n**3 / t_ring / 1e9,
                "torch_Gmadd_s": n**3 / t_f64 / 1e9,
                "ratio_ours_over_torch_throughput": t_f64 / t_ring,
                "rounds": 0,
                "bytes_per_party": 0,
            }
        )
    return rows


def private_rows(cases, reps):
    rows = []
    for name, make in cases:
        args, plain_fn, priv_fn = make()
        t_plain = timeit(lambda f=plain_fn, a=args: f(*a), reps)
        shared = [cryptgpu.cryptensor(a, src=i % 2) for i, a in enumerate(args)]
        t_priv = timeit(lambda f=priv_fn, s=shared: f(*s), reps)
        cryptgpu.reset_stats()
        priv_fn(*shared)
        st = cryptgpu.stats()["total"]
        rows.append(
            {
                "bench": name,
                "ours_s": t_priv,
                "torch_f64_s": t_plain,
                "ours_Gmadd_s": float("nan"),
                "torch_Gmadd_s": float("nan"),
                "ratio_ours_over_torch_throughput": t_plain / t_priv,
                "rounds": st["rounds"],
                "bytes_per_party": st["bytes_per_party"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shapes only (smoke test)")
    opts = ap.parse_args()
    reps = 2 if opts.quick else 5
    cryptgpu.init(precision_bits=16)
    g = torch.Generator().manual_seed(0)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def mm(n):
        return lambda: ((rnd(n, n), rnd(n, n)), torch.matmul, lambda x, y: x @ y)

    def conv(shape, w, stride, pad):
        def make():
            return (
                (rnd(*shape), rnd(*w) * 0.1),
                lambda x, k: F.conv2d(x, k, stride=stride, padding=pad),
                lambda x, k: x.conv2d(k, stride=stride, padding=pad),
            )

        return make

    cases = [
        ("private matmul 256^2", mm(256)),
        ("conv 1x3x32x32, 64x11x11 s4 p2", conv((1, 3, 32, 32), (64, 3, 11, 11), 4, 2)),
        ("conv 32x3x32x32, 64x11x11 s4 p2", conv((32, 3, 32, 32), (64, 3, 11, 11), 4, 2)),
    ]
    sizes = [256, 512]
    if not opts.quick:
        sizes.append(1024)
        cases += [
            ("private matmul 1024^2", mm(1024)),
            ("conv 1x512x64x64, 512x3x3 s1 p1", conv((1, 512, 64, 64), (512, 512, 3, 3), 1, 1)),
        ]
    rows = gemm_rows(sizes, reps) + private_rows(cases, 3 if not opts.quick else 1)

    print(
        f"date: {time.strftime('%Y-%m-%d')}; machine: {cpu_name()}, {os.cpu_count()} cores; "
        f"device: cpu; ring GEMM kernel: {cryptgpu.gemm_kernel()}; "
        f"torch {torch.__version__} threads {torch.get_num_threads()}"
    )
    print()
    print("| benchmark | ours (s) | torch f64 (s) | ours / torch speed | rounds | bytes/party |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        extra = ""
        if r["ours_Gmadd_s"] == r["ours_Gmadd_s"]:
            extra = f" ({r['ours_Gmadd_s']:.1f} vs {r['torch_Gmadd_s']:.1f} G madd/s)"
        print(
            f"| {r['bench']} | {r['ours_s']:.4f} | {r['torch_f64_s']:.4f} | "
            f"{r['ratio_ours_over_torch_throughput']:.2f}x{extra} | {r['rounds']} | "
            f"{r['bytes_per_party']:,} |"
        )
    out = os.path.join(os.path.dirname(__file__), "foundation.csv")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
