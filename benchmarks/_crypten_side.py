"""The CrypTen half of compare_crypten.py; runs inside CrypTen's virtual
environment (``python benchmarks/_crypten_side.py OUT.json [--quick]``).

CrypTen 0.4.1 (its last release) predates the torch 2.x ONNX internals:
importing ``crypten.nn`` fails on ``torch.onnx._internal.registration``. Only
its ONNX model converter needs that module, so the import is stubbed and the
models are built from ``crypten.nn`` layers directly, mirroring the PyTorch
modules layer by layer (same shapes; weights are CrypTen's own random
initialisation, which does not change the cost of a private evaluation).
Three parties run with ``crypten.mpc.run_multiprocess(world_size=3)``;
party 0 times each workload and reads its communication counters.
"""

from __future__ import annotations

import json
import sys
import types

_stub = types.ModuleType("torch.onnx._internal.registration")
_stub.registry = None
sys.modules.setdefault("torch.onnx._internal.registration", _stub)

import crypten  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _compare_workloads import WORKLOADS, build, timed  # noqa: E402


def to_crypten(model: nn.Module):
    """A crypten.nn.Sequential with the same layers as a (nested
    Sequential) PyTorch model."""
    layers = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            layers.append(
                crypten.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            )
        elif isinstance(m, nn.Linear):
            layers.append(crypten.nn.Linear(m.in_features, m.out_features))
        elif isinstance(m, nn.ReLU):
            layers.append(crypten.nn.ReLU())
        elif isinstance(m, nn.MaxPool2d):
            layers.append(crypten.nn.MaxPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.AvgPool2d):
            layers.append(crypten.nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.Flatten):
            layers.append(crypten.nn.Flatten())
        elif isinstance(m, nn.Dropout):
            continue
        elif not isinstance(m, nn.Sequential) and list(m.children()) == []:
            raise NotImplementedError(f"no CrypTen mirror for {type(m).__name__}")
    return crypten.nn.Sequential(*layers)


def run_one(name: str) -> dict:
    return timed(crypten, build(crypten, name, lambda model, shape: to_crypten(model)))


def main() -> None:
    out, quick = sys.argv[1], "--quick" in sys.argv
    names = [n for n in WORKLOADS if not (quick and "batch 64" in n)]
    crypten.cfg.communicator.verbose = True

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        res = {}
        for n in names:
            res[n] = run_one(n)
        return res

    results = job()
    first = results[0] if isinstance(results, list) else results
    with open(out, "w") as f:
        json.dump(first, f)


if __name__ == "__main__":
    main()
