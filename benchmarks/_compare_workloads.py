"""The workloads of compare_crypten.py, shared by both sides: cryptgpu
answers to CrypTen's names, so one builder and one timer serve both
libraries (``lib`` is the ``crypten`` or the ``cryptgpu`` module) and both
run exactly the same code on the same shapes."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

# name -> (kind, args)
WORKLOADS = {
    "matmul 256x256 @ 256x256": ("matmul", None),
    "conv2d 1x64x32x32, 64 3x3 filters": ("conv2d", None),
    "ReLU 1,000,000": ("relu", None),
    "LeNet inference batch 1": ("inference", ("LeNet", 1)),
    "LeNet inference batch 64": ("inference", ("LeNet", 64)),
    "AlexNet inference batch 1": ("inference", ("AlexNet", 1)),
    "AlexNet inference batch 64": ("inference", ("AlexNet", 64)),
    "LeNet training step batch 32": ("train", ("LeNet", 32)),
}


def shapes(name: str):
    kind = WORKLOADS[name][0]
    if kind == "matmul":
        return (256, 256), (256, 256)
    if kind == "conv2d":
        return (1, 64, 32, 32), (64, 64, 3, 3), 1
    if kind == "relu":
        return (1_000_000,)
    raise ValueError(name)


def model_for(name: str):
    """(torch model, input shape, batch) of a model workload."""
    from cryptgpu import models

    arch, batch = WORKLOADS[name][1]
    torch.manual_seed(0)
    if arch == "LeNet":
        return models.LeNet(), (1, 28, 28), batch
    return models.AlexNet(32), (3, 32, 32), batch


def build(lib, name: str, convert):
    """A zero-argument function running workload ``name`` with ``lib``;
    ``convert(torch_model, input_shape)`` makes the library's model."""
    torch.manual_seed(0)
    kind = WORKLOADS[name][0]
    if kind == "matmul":
        a, b = shapes(name)
        x, y = lib.cryptensor(torch.randn(*a)), lib.cryptensor(torch.randn(*b))
        return lambda: x.matmul(y).get_plain_text()
    if kind == "conv2d":
        xs, ws, pad = shapes(name)
        x = lib.cryptensor(torch.randn(*xs))
        w = lib.cryptensor(torch.randn(*ws) * 0.05)
        return lambda: x.conv2d(w, padding=pad).get_plain_text()
    if kind == "relu":
        (n,) = shapes(name)
        x = lib.cryptensor(torch.randn(n))
        return lambda: x.relu().get_plain_text()
    model, shape, batch = model_for(name)
    net = convert(model, shape).encrypt()
    x = lib.cryptensor(torch.randn(batch, *shape))
    if kind == "inference":
        net.eval()
        return lambda: net(x).get_plain_text()
    net.train()  # one training step
    y = lib.cryptensor(F.one_hot(torch.arange(batch) % 10, 10).float())
    loss = lib.nn.CrossEntropyLoss()

    def step():
        lv = loss(net(x), y)
        net.zero_grad()
        lv.backward()
        net.update_parameters(0.01)
        return lv.get_plain_text()

    return step


def timed(lib, fn, budget_s: float = 3.0, most: int = 7) -> dict:
    """After a warm-up, runs until ``most`` runs or ``budget_s`` seconds
    (at least one): the median wall time (one run alone moved a 10 ms row
    by 2x on the 2-core machines), and the rounds and bytes per party of
    one run from the library's communicator (``lib.comm.get()``)."""
    fn()
    walls = []
    while len(walls) < most and (not walls or sum(walls) < budget_s):
        lib.comm.get().reset_communication_stats()
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        st = lib.comm.get().get_communication_stats()
    walls.sort()
    return {
        "wall_s": walls[len(walls) // 2],
        "runs": len(walls),
        "rounds": int(st["rounds"]),
        "bytes_per_party": int(st["bytes"]),
    }
