"""Three parties multiply and convolve secret-shared tensors; the result is
compared with plaintext float64 PyTorch and the communication is printed.

    python examples/demo.py
"""

import time

import torch
import torch.nn.functional as F

import cryptgpu


def main() -> None:
    cryptgpu.init(precision_bits=16)
    torch.manual_seed(0)
    a = torch.randn(256, 256, dtype=torch.float64)
    b = torch.randn(256, 256, dtype=torch.float64)
    img = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    w = torch.randn(64, 3, 11, 11, dtype=torch.float64) * 0.1

    x = cryptgpu.cryptensor(a, src=0)  # party 0 owns a
    y = cryptgpu.cryptensor(b, src=1)  # party 1 owns b
    cryptgpu.reset_stats()
    t = time.perf_counter()
    prod = (x @ y).get_plain_text(dtype=torch.float64)
    t_mm = time.perf_counter() - t
    print(
        f"private 256x256 matmul: {t_mm * 1e3:.1f} ms, "
        f"max |error| vs float64 torch = {(prod - a @ b).abs().max().item():.2e}"
    )

    xi = cryptgpu.cryptensor(img, src=0)
    wi = cryptgpu.cryptensor(w, src=1)
    t = time.perf_counter()
    conv = xi.conv2d(wi, stride=4, padding=2).get_plain_text(dtype=torch.float64)
    t_cv = time.perf_counter() - t
    ref = F.conv2d(img, w, stride=4, padding=2)
    print(
        f"private conv2d 8x3x32x32 * 64x3x11x11 (stride 4, pad 2): {t_cv * 1e3:.1f} ms, "
        f"max |error| = {(conv - ref).abs().max().item():.2e}"
    )

    st = cryptgpu.stats()
    print("\ncommunication since reset (rounds are protocol rounds; bytes per party is the max):")
    print(f"{'op':<10} {'calls':>6} {'rounds':>7} {'bytes/party':>12}")
    for op, s in st["ops"].items():
        print(f"{op:<10} {s['calls']:>6} {s['rounds']:>7} {s['bytes_per_party']:>12}")
    tot = st["total"]
    print(f"{'total':<10} {'':>6} {tot['rounds']:>7} {tot['bytes_per_party']:>12}")
    print(f"\nring GEMM kernel: {cryptgpu.gemm_kernel()}")


if __name__ == "__main__":
    main()
