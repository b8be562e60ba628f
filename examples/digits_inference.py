"""The main job: a CNN trained in plaintext PyTorch on scikit-learn's bundled
digits (8x8 images, no download), converted with cryptgpu.nn.from_pytorch and
evaluated privately on the whole held-out split by the local three-party
runtime. Party 0 owns the model, party 1 the images.

    python examples/digits_inference.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import cryptgpu

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional

    def tqdm(it, **kw):
        return it


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def load():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels in [0, 1]
    y = torch.tensor(d.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, xte, ytr, yte


def train(model, x, y, epochs=15):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def main() -> None:
    torch.manual_seed(0)
    xtr, xte, ytr, yte = load()
    t = time.perf_counter()
    model = train(DigitsCNN(), xtr, ytr)
    print(f"trained in plaintext on {len(xtr)} images in {time.perf_counter() - t:.1f} s")
    with torch.no_grad():
        plain_logits = model(xte).double()
    plain_pred = plain_logits.argmax(1)

    cryptgpu.init(precision_bits=16)
    private_model = cryptgpu.nn.from_pytorch(model, xte[:1]).encrypt(src=0)
    cryptgpu.reset_stats()
    logits, batch = [], 60
    t = time.perf_counter()
    for i in tqdm(range(0, len(xte), batch), desc="private inference", unit="batch"):
        xs = cryptgpu.cryptensor(xte[i : i + batch], src=1)
        logits.append(private_model(xs).get_plain_text(dtype=torch.float64))
    wall = time.perf_counter() - t
    priv_logits = torch.cat(logits)
    priv_pred = priv_logits.argmax(1)

    acc_plain = (plain_pred == yte).double().mean().item() * 100
    acc_priv = (priv_pred == yte).double().mean().item() * 100
    differ = int((plain_pred != priv_pred).sum())
    print(f"\nheld-out images:             {len(xte)}")
    print(f"plaintext accuracy:          {acc_plain:.2f}%")
    print(f"private accuracy:            {acc_priv:.2f}%")
    print(f"predictions that differ:     {differ}")
    print(f"max |logit difference|:      {(priv_logits - plain_logits).abs().max().item():.2e}")
    st = cryptgpu.stats(per_layer=True)
    print(f"private inference wall time: {wall:.2f} s ({wall / len(xte) * 1e3:.1f} ms per image)")
    print(f"rounds: {st['total']['rounds']}, bytes per party: {st['total']['bytes_per_party']:,}")
    print("\nper layer kind (like the paper's Table V):")
    print(f"{'kind':<10} {'calls':>6} {'time (s)':>9} {'rounds':>7} {'MB/party':>9}")
    for kind, v in sorted(st["layers"].items()):
        print(
            f"{kind:<10} {v['calls']:>6} {v['time_s']:>9.3f} {v['rounds']:>7} "
            f"{v['bytes_per_party'] / 1e6:>9.2f}"
        )


if __name__ == "__main__":
    main()
