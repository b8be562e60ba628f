"""One iteration of private training (forward, cross-entropy, backward, SGD
step) for the paper's training table, on the local three-party runtime, CPU.

    python benchmarks/training.py [--models LeNet,AlexNet/CIFAR-10] [--batch N]

Batch sizes default to the paper's (LeNet and AlexNet 128, VGG-16/CIFAR-10 32,
Tiny ImageNet 8) and can be capped with --batch. Average pooling as in the
paper unless --maxpool. Reports wall time, rounds and GB per party for the
whole iteration, and per layer kind (the paper's Table V columns: linear,
pooling, ReLU, softmax, and BatchNorm) the forward-plus-backward time,
rounds and bytes: what autograd records inside a layer is charged to its
kind in the backward pass too. The step of the optimiser is not in them.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import cryptgpu
from cryptgpu import models


class SmallResNet(nn.Module):
    """A BatchNorm ResNet for 3x32x32 (two residual stages), the training case
    the paper leaves as future work."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
        )
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 8 * 8, classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.b1(x) + x)
        return self.fc(torch.flatten(self.pool(self.down(x)), 1))


def cases(maxpool: bool):
    pool = "max" if maxpool else "avg"
    return {
        "LeNet/MNIST": (lambda: models.LeNet(pool=pool), (1, 28, 28), 10, 128),
        "AlexNet/CIFAR-10": (lambda: models.AlexNet(32, 10, pool=pool), (3, 32, 32), 10, 128),
        "VGG-16/CIFAR-10": (lambda: models.VGG16(32, 10, pool=pool), (3, 32, 32), 10, 32),
        "AlexNet/TinyImageNet": (lambda: models.AlexNet(64, 200, pool=pool), (3, 64, 64), 200, 8),
        "VGG-16/TinyImageNet": (lambda: models.VGG16(64, 200, pool=pool), (3, 64, 64), 200, 8),
        "ResNet-BN/CIFAR-10": (lambda: SmallResNet(), (3, 32, 32), 10, 32),
    }


def setup(ctor, shape, classes, batch):
    """A model converted for training and shared, its SGD, the loss, and one
    random batch (inputs and one-hot labels) shared by party 1."""
    torch.manual_seed(0)
    pm = cryptgpu.nn.from_pytorch(ctor(), fold_batchnorm=False).encrypt(src=0).train()
    sgd = cryptgpu.optim.SGD(pm.parameters(), lr=0.01, momentum=0.9)
    crit = cryptgpu.nn.CrossEntropyLoss()
    x = cryptgpu.cryptensor(torch.randn(batch, *shape), src=1)
    y = cryptgpu.cryptensor(
        torch.nn.functional.one_hot(torch.randint(classes, (batch,)), classes).double(), src=1
    )
    return pm, sgd, crit, x, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="")
    ap.add_argument("--batch", type=int, default=0, help="cap on the batch size")
    ap.add_argument("--batch-size", type=int, default=0, help="this batch size for every model")
    ap.add_argument("--maxpool", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    opts = ap.parse_args()
    all_cases = cases(opts.maxpool)
    names = [
        n
        for n in all_cases
        if not opts.models or any(n.startswith(p) for p in opts.models.split(","))
    ]
    cryptgpu.init(device=opts.device)
    rows, table5 = [], []
    for name in names:
        ctor, shape, classes, batch = all_cases[name]
        if opts.batch:
            batch = min(batch, opts.batch)
        if opts.batch_size:
            batch = opts.batch_size
        pm, sgd, crit, x, y = setup(ctor, shape, classes, batch)
        for _ in range(2):  # the first iteration warms the allocator; report the second
            cryptgpu.reset_stats()
            if opts.device == "cuda":
                cryptgpu.cuda.memory_peak(reset=True)
            t0 = time.perf_counter()
            sgd.zero_grad()
            loss = crit(pm(x), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            sgd.step()
            t3 = time.perf_counter()
        st = cryptgpu.stats(per_layer=True)
        lay = st["layers"]
        table5.append((name, batch, lay))
        rows.append(
            (
                name,
                batch,
                t3 - t0,
                t1 - t0,
                t2 - t1,
                st["total"]["rounds"],
                st["total"]["bytes_per_party"] / 1e9,
                *[
                    lay.get(k, {}).get("time_s", 0.0)
                    for k in ("linear", "pooling", "relu", "softmax", "batchnorm")
                ],
            )
        )
        mem = ""
        if opts.device == "cuda":
            mem = f", peak GPU memory {cryptgpu.cuda.memory_peak() / 2**30:.1f} GiB (3 parties)"
        print(f"{name} batch {batch}: {t3 - t0:.2f} s{mem}", flush=True)
    print(
        f"\ndate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: {opts.device}; "
        "local runtime; "
        f"{'max' if opts.maxpool else 'avg'} pooling\n"
    )
    print(
        "| model | batch | iteration (s) | forward (s) | backward (s) | rounds | GB/party "
        "| fwd linear / pool / ReLU / softmax / BN (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} | {r[6]:.2f} | "
            f"{r[7]:.2f} / {r[8]:.2f} / {r[9]:.2f} / {r[10]:.2f} / {r[11]:.2f} |"
        )
    print_table5(table5)


KINDS = ("linear", "pooling", "relu", "softmax", "batchnorm")


def print_table5(table5) -> None:
    """Forward plus backward per layer kind: time (s), rounds, MB per party."""
    print("\nForward + backward per layer kind (s / rounds / MB per party):\n")
    print("| model | batch | " + " | ".join(KINDS) + " |")
    print("|---|---|" + "---|" * len(KINDS))
    for name, batch, lay in table5:
        cells = []
        for k in KINDS:
            row = lay.get(k, {})
            t = row.get("time_s", 0.0) + row.get("backward_time_s", 0.0)
            r = row.get("rounds", 0) + row.get("backward_rounds", 0)
            mb = (row.get("bytes_per_party", 0) + row.get("backward_bytes_per_party", 0)) / 1e6
            cells.append(f"{t:.2f} / {r} / {mb:.0f}" if row else "-")
        print(f"| {name} | {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
