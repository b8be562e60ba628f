"""Truncation failures and the cost of each truncation protocol (issue 17).

    python benchmarks/truncation.py [--count 100000000] [--chunk 10000000]
                                    [--max-exp 20] [--skip-failures] [--skip-cost]
                                    [--skip-division]

1. Failures: for each magnitude 2^0 .. 2^max-exp, `count` private products
   x * y of that magnitude (chunks of `chunk` elements shared once and
   multiplied again and again: each product draws fresh randomness, so each
   is an independent trial of the truncation), under the probabilistic and
   the exact protocol. A failure is an element more than 1 unit of 2^-f
   from x * y in float64 (a failed truncation is off by about 2^32).
   Expected under the probabilistic protocol: count * |v| / 2^(64-2f) (P0's
   half is uniform, so the halves wrap with probability |raw v| / 2^64).
2. Expected failures per inference forward under the probabilistic
   protocol, from the magnitudes a plaintext forward of each model measures:
   sum over truncated elements (outputs of conv, linear, avg-pool,
   BatchNorm) of |v| / 2^(64-2f).
3. The exact division by public integers: its bias (mean error over 2^20
   divisions) and time per divisor, and an MSE loss's backward.
4. Cost of one private training iteration (forward, loss, backward, SGD
   step; the second of two) in each mode: LeNet b128, AlexNet b128, VGG-16
   b32, CPU, local runtime: wall time, rounds, bytes per party.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import cryptgpu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training import cases, setup  # noqa: E402

F = 16
ULP = 2.0**-F


def grid(t: torch.Tensor) -> torch.Tensor:
    return torch.round(t * 2**F) / 2**F


def factors(n: int, exp: int, gen: torch.Generator):
    """x, y on the fixed-point grid with |x y| in [2^exp, 2^(exp+1)), both signs."""
    mag = 2.0 ** (exp + torch.rand(n, generator=gen, dtype=torch.float64))
    x = grid(torch.sqrt(mag))
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    y = grid(mag / x) * sign
    return x, y


def failures(count: int, chunk: int, max_exp: int) -> None:
    print(f"\n## Failures in {count:,} products per magnitude (chunks of {chunk:,})\n")
    print(
        "| magnitude | probabilistic: failures | expected | exact: failures "
        "| time prob / exact (s) |"
    )
    print("|---|---|---|---|---|")
    reps = max(1, count // chunk)
    for exp in range(max_exp + 1):
        gen = torch.Generator().manual_seed(exp)
        x, y = factors(chunk, exp, gen)
        want = x * y
        expected = reps * float(want.abs().sum()) / 2.0 ** (64 - 2 * F)
        row = []
        for mode in ("probabilistic", "exact"):
            cryptgpu.init(truncation=mode)
            sx, sy = cryptgpu.cryptensor(x, src=0), cryptgpu.cryptensor(y, src=1)
            bad, t = 0, 0.0
            for _ in range(reps):
                t0 = time.perf_counter()
                z = sx * sy
                t += time.perf_counter() - t0
                got = z.get_plain_text(dtype=torch.float64)
                bad += int(((got - want).abs() > ULP).sum())
            row.append((bad, t))
        print(
            f"| 2^{exp} | {row[0][0]:,} | {expected:,.1f} | {row[1][0]:,} | "
            f"{row[0][1]:.1f} / {row[1][1]:.1f} |",
            flush=True,
        )
    cryptgpu.uninit()


def expected_per_forward() -> None:
    print("\n## Expected failed elements per inference forward (probabilistic)\n")
    print("| model | batch | truncated elements | sum |v| | expected failures per forward |")
    print("|---|---|---|---|---|")
    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.AvgPool2d, torch.nn.BatchNorm2d)
    for name in ("LeNet/MNIST", "AlexNet/CIFAR-10", "VGG-16/CIFAR-10"):
        ctor, shape, _, _ = cases(False)[name]
        torch.manual_seed(0)
        model = ctor().double().eval()
        tot = {"n": 0, "abs": 0.0}

        def hook(_m, _i, out, tot=tot):
            tot["n"] += out.numel()
            tot["abs"] += float(out.abs().sum())

        for m in model.modules():
            if isinstance(m, kinds):
                m.register_forward_hook(hook)
        with torch.no_grad():
            model(torch.randn(1, *shape, dtype=torch.float64))
        exp = tot["abs"] / 2.0 ** (64 - 2 * F)
        print(f"| {name} | 1 | {tot['n']:,} | {tot['abs']:.3g} | {exp:.2e} |")
    print(
        "\n(random-initialised models on N(0, 1) inputs; a trained model's magnitudes "
        "differ: run the hooks on yours)"
    )


def cost() -> None:
    print("\n## One training iteration in each mode (CPU, local runtime)\n")
    print("| model | batch | mode | iteration (s) | rounds | GB/party |")
    print("|---|---|---|---|---|---|")
    all_cases = cases(False)
    for name in ("LeNet/MNIST", "AlexNet/CIFAR-10", "VGG-16/CIFAR-10"):
        ctor, shape, classes, batch = all_cases[name]
        for mode in ("probabilistic", "exact"):
            cryptgpu.init(truncation=mode)
            pm, sgd, crit, x, y = setup(ctor, shape, classes, batch)
            for _ in range(2):  # report the second
                cryptgpu.reset_stats()
                t0 = time.perf_counter()
                sgd.zero_grad()
                crit(pm(x), y).backward()
                sgd.step()
                t = time.perf_counter() - t0
            st = cryptgpu.stats()["total"]
            print(
                f"| {name} | {batch} | {mode} | {t:.2f} | {st['rounds']} | "
                f"{st['bytes_per_party'] / 1e9:.3f} |",
                flush=True,
            )
    cryptgpu.uninit()


def division(n: int = 1 << 20, reps: int = 5) -> None:
    """Bias and time of the exact division by public integers (training's
    x / d, an average pool's backward, a mean's gradient), and of an MSE
    loss's backward."""
    print(f"\n## Exact division of {n:,} elements by a public integer\n")
    print("| d | mean error (units of 2^-f) | standard error | best of 5 (ms) | rounds |")
    print("|---|---|---|---|---|")
    cryptgpu.init(seed=0, truncation="exact")
    gen = torch.Generator().manual_seed(0)
    v = torch.randint(-400, 400, (n,), generator=gen).double() * ULP
    x = cryptgpu.cryptensor(v)
    for d in (3, 8, 9, 25, 1000):
        err = ((x / d).get_plain_text(dtype=torch.float64) - v / d) / ULP
        best = float("inf")
        for _ in range(reps):
            cryptgpu.reset_stats()
            t0 = time.perf_counter()
            x / d
            best = min(best, time.perf_counter() - t0)
        rounds = cryptgpu.stats()["total"]["rounds"]
        se = float(err.std()) / n**0.5
        print(f"| {d} | {float(err.mean()):+.4f} | {se:.4f} | {best * 1e3:.1f} | {rounds} |")
    xs = cryptgpu.cryptensor(torch.randn(64, 1000, generator=gen, dtype=torch.float64))
    t = torch.randn(64, 1000, generator=gen, dtype=torch.float64)
    xs.requires_grad_()
    best = float("inf")
    for _ in range(reps):
        loss = torch.nn.functional.mse_loss(xs, t)
        cryptgpu.reset_stats()
        t0 = time.perf_counter()
        loss.backward()
        best = min(best, time.perf_counter() - t0)
    st = cryptgpu.stats()["total"]
    print(
        f"\nMSELoss backward on [64, 1000]: {best * 1e3:.1f} ms, {st['rounds']} rounds, "
        f"{st['bytes_per_party'] / 1e6:.1f} MB per party"
    )
    cryptgpu.uninit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000_000)
    ap.add_argument("--chunk", type=int, default=10_000_000)
    ap.add_argument("--max-exp", type=int, default=20)
    ap.add_argument("--skip-failures", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-division", action="store_true")
    opts = ap.parse_args()
    print(f"date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu; f = {F}")
    if not opts.skip_failures:
        failures(opts.count, min(opts.chunk, opts.count), opts.max_exp)
    expected_per_forward()
    if not opts.skip_division:
        division()
    if not opts.skip_cost:
        cost()


if __name__ == "__main__":
    main()
