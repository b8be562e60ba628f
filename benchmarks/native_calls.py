"""Native (engine) calls per layer, forward and backward: how much of a
layer's work Python composes from engine calls (issue 15). Counts the calls
into the cryptgpu._native.Session methods with a profiler hook.

    python3 benchmarks/native_calls.py
"""

from __future__ import annotations

import sys

import torch

import cryptgpu


def count(fn) -> int:
    n = 0

    def hook(frame, event, arg):
        nonlocal n
        if event == "c_call" and type(getattr(arg, "__self__", None)).__name__ == "Session":
            n += 1

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n


def main() -> None:
    cryptgpu.init(seed=1)
    x = cryptgpu.cryptensor(torch.randn(8, 4, 12, 12)).requires_grad_()
    w = cryptgpu.cryptensor(torch.randn(6, 4, 3, 3)).requires_grad_()
    rows = []

    def fwd_bwd(name, f):
        out = {}
        out["fwd"] = count(lambda: out.setdefault("y", f()))
        y = out["y"]
        out["bwd"] = count(lambda: y.sum().backward())
        rows.append((name, out["fwd"], out["bwd"]))

    fwd_bwd("relu (training)", lambda: x.relu())
    fwd_bwd("max_pool2d 2x2 (training)", lambda: x.max_pool2d(2))
    fwd_bwd("avg_pool2d 2x2 (training)", lambda: x.avg_pool2d(2))
    fwd_bwd("conv2d 3x3, shared weight", lambda: x.conv2d(w, padding=1))
    fwd_bwd("conv2d 3x3, groups=2", lambda: x.conv2d(w[:, :2], padding=1, groups=2))
    rows.append(("max over dim 1 (k=4)", count(lambda: x.max(1)), 0))
    print("| layer | native calls, forward | native calls, backward (incl. sum) |")
    print("|---|---|---|")
    for name, f, b in rows:
        print(f"| {name} | {f} | {b} |")


if __name__ == "__main__":
    main()
