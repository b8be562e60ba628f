"""The workloads of compare_crypten.py, shared by both sides so that both
libraries run exactly the same shapes."""

from __future__ import annotations

import torch

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
