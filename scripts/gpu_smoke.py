"""First contact with a GPU: every kind of engine operation once on
init(device="cuda"), each compared with float64 torch and timed, each in its
own try so one failure does not hide the rest. Prints one line per case.

    python scripts/gpu_smoke.py
"""

from __future__ import annotations

import sys
import time
import traceback

import torch
import torch.nn.functional as F

import cryptgpu


def main() -> int:
    print("cuda_is_available", cryptgpu.cuda_is_available(), cryptgpu.cuda.device_map(), flush=True)
    t = time.perf_counter()
    cryptgpu.init(device=sys.argv[1] if len(sys.argv) > 1 else "cuda", precision_bits=16, seed=1)
    print(f"init {time.perf_counter() - t:.2f}s", flush=True)
    g = torch.Generator().manual_seed(0)

    def r(*s, scale=1.0):
        return (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) * scale

    a, b = r(64, 96), r(96, 32)
    img, w = r(2, 3, 16, 16), r(8, 3, 3, 3, scale=0.5)
    big1, big2 = r(512, 512), r(512, 512)
    cases = [
        ("roundtrip", lambda e: e(a), lambda: a, 2**-16),
        ("add", lambda e: e(a) + e(a), lambda: a + a, 2**-15),
        ("add_public", lambda e: e(a) + a, lambda: a + a, 2**-15),
        ("mul", lambda e: e(a) * e(a), lambda: a * a, 2**-13),
        ("mul_public", lambda e: e(a) * 3, lambda: a * 3, 2**-13),
        ("matmul", lambda e: e(a).matmul(e(b)), lambda: a @ b, 96 * 2**-15 + 2**-14),
        ("matmul512", lambda e: e(big1).matmul(e(big2)), lambda: big1 @ big2, 512 * 2**-15),
        (
            "conv2d",
            lambda e: e(img).conv2d(e(w), padding=1),
            lambda: F.conv2d(img, w, padding=1),
            27 * 2**-15 + 2**-14,
        ),
        ("relu", lambda e: e(a).relu(), lambda: a.relu(), 2**-15),
        ("gt", lambda e: e(a) > 0.1, lambda: (a > 0.1).double(), 0),
        ("max_pool2d", lambda e: e(img).max_pool2d(2), lambda: F.max_pool2d(img, 2), 2**-15),
        ("avg_pool2d", lambda e: e(img).avg_pool2d(2), lambda: F.avg_pool2d(img, 2), 2**-13),
        ("sum", lambda e: e(a).sum(0), lambda: a.sum(0), 64 * 2**-16),
        ("softmax", lambda e: e(a).softmax(1), lambda: a.softmax(1), 2e-2),
        ("exp", lambda e: e(a).exp(), lambda: a.exp(), 2e-2),
        ("reciprocal", lambda e: (e(a).abs() + 1).reciprocal(), lambda: 1 / (a.abs() + 1), 1e-2),
        ("sqrt", lambda e: (e(a).abs() + 1).sqrt(), lambda: (a.abs() + 1).sqrt(), 1e-2),
        (
            "argmax",
            lambda e: e(a).argmax(1, one_hot=True),
            lambda: F.one_hot(a.argmax(1), 32 if a.shape[1] == 32 else a.shape[1]).double(),
            0,
        ),
        (
            "transpose_view",
            lambda e: e(a).t().reshape(-1)[:100],
            lambda: a.t().reshape(-1)[:100],
            2**-16,
        ),
    ]
    bad = 0
    for name, fn, ref, tol in cases:
        t = time.perf_counter()
        try:
            got = fn(cryptgpu.cryptensor).get_plain_text().double()
            dt = time.perf_counter() - t
            want = ref()
            err = (got - want).abs().max().item()
            ok = err <= tol
            bad += not ok
            print(
                f"{name:16s} {'ok ' if ok else 'BAD'} err {err:.3g} tol {tol:.3g}",
                f"{dt * 1e3:8.1f} ms",
                flush=True,
            )
        except Exception as ex:  # noqa: BLE001 - report every failure and go on
            bad += 1
            print(f"{name:16s} EXC {type(ex).__name__}: {ex}", flush=True)
            traceback.print_exc(limit=3)
    # a model: LeNet inference and one training step
    try:
        from cryptgpu import models

        torch.manual_seed(0)
        m = models.LeNet().double().eval()
        x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
        pm = cryptgpu.nn.from_pytorch(m, torch.zeros(1, 1, 28, 28)).encrypt(src=0)
        t = time.perf_counter()
        out = pm(cryptgpu.cryptensor(x, src=1)).get_plain_text().double()
        err = (out - m(x)).abs().max().item()
        print(f"lenet_inference err {err:.3g} {(time.perf_counter() - t) * 1e3:.1f} ms", flush=True)
        pm = cryptgpu.nn.from_pytorch(models.LeNet(), fold_batchnorm=False).encrypt(src=0).train()
        opt = cryptgpu.optim.SGD(pm.parameters(), lr=0.01)
        y = F.one_hot(torch.arange(4) % 10, 10).double()
        t = time.perf_counter()
        loss = cryptgpu.nn.CrossEntropyLoss()(
            pm(cryptgpu.cryptensor(x, src=1)), cryptgpu.cryptensor(y, src=1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(
            f"lenet_train_step loss {loss.get_plain_text().item():.4f}",
            f"{(time.perf_counter() - t) * 1e3:.1f} ms",
            flush=True,
        )
    except Exception as ex:  # noqa: BLE001
        bad += 1
        print(f"model EXC {type(ex).__name__}: {ex}", flush=True)
        traceback.print_exc(limit=4)
    print("stats", cryptgpu.stats()["total"], flush=True)
    try:
        print("memory_peak", cryptgpu.cuda.memory_peak(0))
    except Exception as ex:  # noqa: BLE001
        print("memory_peak EXC", ex)
    print(f"smoke: {bad} bad", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
