"""Ring GEMM over Z_2^64 on the GPU, both formulations of issue 8, against
torch's float64 and int8 GEMMs on the same card in the same run:

(a) "f64": 16-bit limbs, 10 limb products in 4 cuBLAS DGEMMs (CryptGPU);
(b) "int8": 8-bit balanced digits, 36 limb products in 8 int8 GEMMs with
    int32 accumulation (tensor cores).

Operands are resident in GPU memory and only the GEMM is timed (the CUDA
device's per-shape dispatch picks the faster of the two; "auto" shows its
choice). Every path is first checked bit for bit against the CPU ring GEMM
on a smaller shape.

    python benchmarks/gpu_gemm.py

Prints a markdown table; exits with a message on a machine without a GPU.
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
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return min(ts)


def check_paths() -> None:
    rng = np.random.default_rng(0)
    for m, k, n in [(33, 70, 17), (64, 9000, 32)]:  # the second needs two int8 K chunks
        a = rng.integers(0, 2**64, size=m * k, dtype=np.uint64).tobytes()
        b = rng.integers(0, 2**64, size=k * n, dtype=np.uint64).tobytes()
        want = _native.ring_gemm(m, k, n, a, b)
        for path in ("f64", "int8", "auto"):
            got = _native.cuda_ring_gemm(m, k, n, a, b, path=path)
            assert got == want, f"GPU ring GEMM ({path}) differs from the CPU at {m}x{k}x{n}"


def main() -> None:
    if not cryptgpu.cuda_is_available():
        sys.exit("no CUDA GPU here (cryptgpu.cuda_is_available() is False)")
    check_paths()
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda:0"
    print(f"date: {time.strftime('%Y-%m-%d')}; device: {name}; operands on the GPU\n")
    print(
        "| m x k x n | ring f64-limb (s) | ring int8-limb (s) | auto picks | ring G madd/s (best) "
        "| torch f64 G madd/s | torch int8 G madd/s | best ring / torch f64 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for m, k, n in SHAPES:
        g = m * k * n / 1e9
        t_f, _ = _native.cuda_time_ring_gemm(m, k, n, path="f64")
        try:
            t_i, _ = _native.cuda_time_ring_gemm(m, k, n, path="int8")
        except RuntimeError as e:
            print(f"int8 path refused at {m}x{k}x{n}: {e}", file=sys.stderr)
            t_i = float("inf")
        _, auto = _native.cuda_time_ring_gemm(m, k, n, path="auto", reps=1)
        t_ring = min(t_f, t_i)
        x = torch.randn(m, k, dtype=torch.float64, device="cuda")
        y = torch.randn(k, n, dtype=torch.float64, device="cuda")
        t_f64 = best(lambda x=x, y=y: x @ y)
        xi = torch.randint(-128, 127, (m, k), dtype=torch.int8, device="cuda")
        yi = torch.randint(-128, 127, (k, n), dtype=torch.int8, device="cuda")
        try:
            t_i8 = best(lambda xi=xi, yi=yi: torch._int_mm(xi, yi))
        except RuntimeError:
            t_i8 = float("nan")
        print(
            f"| {m}x{k}x{n} | {t_f:.4f} | {t_i:.4f} | {auto} | {g / t_ring:.1f} "
            f"| {g / t_f64:.1f} | {g / t_i8:.1f} | {t_f64 / t_ring:.2f}x |"
        )


if __name__ == "__main__":
    main()
