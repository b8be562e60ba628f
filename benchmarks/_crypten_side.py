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
import time
import types

_stub = types.ModuleType("torch.onnx._internal.registration")
_stub.registry = None
sys.modules.setdefault("torch.onnx._internal.registration", _stub)

import crypten  # noqa: E402
import crypten.communicator as comm  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _compare_workloads import WORKLOADS, model_for, shapes  # noqa: E402


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


def run_one(name: str, quick: bool):
    torch.manual_seed(0)
    kind, args = WORKLOADS[name]
    if kind == "matmul":
        a, b = shapes(name)
        x = crypten.cryptensor(torch.randn(*a))
        y = crypten.cryptensor(torch.randn(*b))
        fn = lambda: (x.matmul(y)).get_plain_text()  # noqa: E731
    elif kind == "conv2d":
        xs, ws, pad = shapes(name)
        x = crypten.cryptensor(torch.randn(*xs))
        w = crypten.cryptensor(torch.randn(*ws) * 0.05)
        fn = lambda: x.conv2d(w, padding=pad).get_plain_text()  # noqa: E731
    elif kind == "relu":
        (n,) = shapes(name)
        x = crypten.cryptensor(torch.randn(n))
        fn = lambda: x.relu().get_plain_text()  # noqa: E731
    elif kind == "inference":
        model, shape, batch = model_for(name)
        net = to_crypten(model).encrypt()
        net.eval()
        x = crypten.cryptensor(torch.randn(batch, *shape))
        fn = lambda: net(x).get_plain_text()  # noqa: E731
    elif kind == "train":
        model, shape, batch = model_for(name)
        net = to_crypten(model).encrypt()
        net.train()
        x = crypten.cryptensor(torch.randn(batch, *shape))
        y = crypten.cryptensor(torch.nn.functional.one_hot(torch.arange(batch) % 10, 10).float())
        loss = crypten.nn.CrossEntropyLoss()

        def fn():
            out = net(x)
            lv = loss(out, y)
            net.zero_grad()
            lv.backward()
            net.update_parameters(0.01)
            return lv.get_plain_text()

    else:
        raise ValueError(kind)
    fn()  # warm-up
    comm.get().reset_communication_stats()
    t = time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    st = comm.get().get_communication_stats()
    return {"wall_s": wall, "rounds": int(st["rounds"]), "bytes_per_party": int(st["bytes"])}


def main() -> None:
    out, quick = sys.argv[1], "--quick" in sys.argv
    names = [n for n in WORKLOADS if not (quick and "batch 64" in n)]
    crypten.cfg.communicator.verbose = True

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        res = {}
        for n in names:
            res[n] = run_one(n, quick)
        return res

    results = job()
    first = results[0] if isinstance(results, list) else results
    with open(out, "w") as f:
        json.dump(first, f)


if __name__ == "__main__":
    main()
