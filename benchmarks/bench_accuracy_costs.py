"""Cost of the range-reduced functions and the other accuracy fixes of
2026-12-05: wall time (best of 3), rounds and bytes per party (the busiest
party's, counted by the engine) of one call each, on the CPU local runtime.

Run: python3 benchmarks/bench_accuracy_costs.py (a few seconds); the
numbers are in benchmarks/RESULTS.md ("Accuracy fixes of 2026-12-05").
"""

import time

import torch

import cryptgpu


def measure(name, fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        cryptgpu.reset_stats()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    st = cryptgpu.stats()["total"]
    print(f"| {name} | {best * 1e3:.1f} | {st['rounds']} | {st['bytes_per_party'] / 1e6:.2f} |")


def main():
    cryptgpu.init(seed=1)
    n = 10000
    a = torch.rand(n, dtype=torch.float64) * 50 + 0.5
    x = cryptgpu.cryptensor(a)
    print("| operation | ms | rounds | MB per party |\n|---|---|---|---|")
    measure("sqrt", lambda: x.sqrt())
    measure("inv_sqrt", lambda: x.inv_sqrt())
    measure("log", lambda: x.log())
    measure("gelu (inference)", lambda: x.gelu())
    measure("relu", lambda: x.relu())
    rows = cryptgpu.cryptensor(torch.randn(8, 128, dtype=torch.float64))
    measure("log_softmax 8x128", lambda: rows.log_softmax(1))

    def mean_backward():
        z = cryptgpu.cryptensor(a, requires_grad=True)
        z.mean().backward()

    measure("mean forward+backward", mean_backward)
    target = cryptgpu.cryptensor((torch.rand(1000) > 0.5).double())

    def bce():
        z = cryptgpu.cryptensor(torch.randn(1000, dtype=torch.float64) * 3, requires_grad=True)
        cryptgpu.nn.BCEWithLogitsLoss()(z, target).backward()

    measure("BCEWithLogits 1000 fwd+bwd", bce)
    logits = cryptgpu.cryptensor(torch.randn(64, 10, dtype=torch.float64) * 3)
    labels = torch.randint(0, 10, (64,))
    measure("CrossEntropy value 64x10", lambda: cryptgpu.nn.CrossEntropyLoss()(logits, labels))


if __name__ == "__main__":
    main()
