"""Private training of a small CNN (conv, ReLU, max-pool, linear) on
scikit-learn's digits, beside the same training in plaintext PyTorch from
the same initial weights on the same batches.

    python examples/digits_training.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import cryptgpu

try:
    from tqdm import tqdm
except ImportError:

    def tqdm(it, **kw):
        return it


try:
    from digits_inference import load
except ImportError:  # run from elsewhere
    import importlib.util
    import pathlib

    _p = pathlib.Path(__file__).with_name("digits_inference.py")
    _spec = importlib.util.spec_from_file_location("digits_inference", _p)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    load = _mod.load


class SmallCNN(nn.Module):
    def __init__(self, batchnorm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.bn(self.conv(x)))), 1))


def batches(n, batch, epoch):
    g = torch.Generator().manual_seed(epoch)
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item() * 100


def run(epochs=3, batch=32, lr=0.1, momentum=0.9, show=True, batchnorm=False, seed=None):
    torch.manual_seed(0)
    xtr, xte, ytr, yte = load()
    plain = SmallCNN(batchnorm).double()
    init = copy.deepcopy(plain)

    # plaintext reference: same init, same batches, same optimiser
    opt = torch.optim.SGD(plain.parameters(), lr=lr, momentum=momentum)
    plain_losses, plain_accs = [], []
    for ep in range(epochs):
        plain.train()
        for idx in batches(len(xtr), batch, ep):
            opt.zero_grad()
            loss = F.cross_entropy(plain(xtr[idx].double()), ytr[idx])
            loss.backward()
            opt.step()
            plain_losses.append(loss.item())
        plain_accs.append(accuracy(plain.eval(), xte.double(), yte))

    cryptgpu.init(seed=seed)  # seed: reproducible shares (tests), not secure
    model = cryptgpu.nn.from_pytorch(init, fold_batchnorm=False).encrypt(src=0).train()
    sgd = cryptgpu.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    crit = cryptgpu.nn.CrossEntropyLoss()
    priv_losses, priv_accs = [], []
    t = time.perf_counter()
    for ep in range(epochs):
        bar = tqdm(batches(len(xtr), batch, ep), desc=f"private epoch {ep + 1}", disable=not show)
        for idx in bar:
            x = cryptgpu.cryptensor(xtr[idx], src=1)
            y = cryptgpu.cryptensor(F.one_hot(ytr[idx], 10).double(), src=1)
            sgd.zero_grad()
            loss = crit(model(x), y)
            loss.backward()
            sgd.step()
            priv_losses.append(loss.get_plain_text().item())
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{priv_losses[-1]:.3f}")
        # Test accuracy after each epoch, for the curve: the weights are
        # opened (to_pytorch reveals them without changing the private model).
        with cryptgpu.autograd.no_grad():
            snapshot = model.to_pytorch(copy.deepcopy(init)).eval()
        priv_accs.append(accuracy(snapshot, xte.double(), yte))
        if show:
            k = len(priv_losses) // (ep + 1)
            print(
                f"epoch {ep + 1}: mean loss private {sum(priv_losses[-k:]) / k:.4f} "
                f"plaintext {sum(plain_losses[ep * k : (ep + 1) * k]) / k:.4f}; "
                f"test accuracy private {priv_accs[-1]:.2f}% plaintext {plain_accs[ep]:.2f}%",
                flush=True,
            )
    wall = time.perf_counter() - t
    trained = model.decrypt().to_pytorch(copy.deepcopy(init)).eval()
    return {
        "plain_acc": accuracy(plain.eval(), xte.double(), yte),
        "private_acc": accuracy(trained, xte.double(), yte),
        "plain_losses": plain_losses,
        "private_losses": priv_losses,
        "plain_accs": plain_accs,
        "private_accs": priv_accs,
        "wall_s": wall,
        "steps": len(priv_losses),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batchnorm", action="store_true", help="BatchNorm2d after the conv")
    a = ap.parse_args()
    r = run(epochs=a.epochs, batchnorm=a.batchnorm)
    print(
        f"\n{r['steps']} private SGD steps in {r['wall_s']:.1f} s "
        f"({r['wall_s'] / r['steps'] * 1e3:.0f} ms per step, batch 32)"
    )
    print(
        f"final loss: plaintext {r['plain_losses'][-1]:.4f}, private {r['private_losses'][-1]:.4f}"
    )
    print(f"test accuracy: plaintext {r['plain_acc']:.2f}%, private {r['private_acc']:.2f}%")


if __name__ == "__main__":
    main()
