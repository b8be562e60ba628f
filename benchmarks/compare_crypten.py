"""cryptgpu against CrypTen, the same workloads in the same run on the same
machine (issue 9): private matmul, conv2d, ReLU on 1M elements, LeNet and
AlexNet inference at batch 1 and 64, one LeNet training step at batch 32.

    python benchmarks/compare_crypten.py [--quick]

CrypTen comes from PyPI into its own virtual environment,
``benchmarks/.crypten-venv`` (git-ignored), made on first use. The venv sees
this interpreter's site-packages (``--system-site-packages``) so it reuses the
installed torch; CrypTen 0.4.1 and the dependencies it imports (omegaconf,
onnx, protobuf, pyyaml, future) are installed with ``--no-deps``, because its
declared dependencies would pull a second torch plus torchvision and the
deprecated ``sklearn`` package (which needs
``SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True``) that its core does
not import. ``_crypten_side.py`` runs CrypTen with three processes
(``crypten.mpc.run_multiprocess(world_size=3)``, gloo over loopback); our
side runs in the local three-party runtime, written with CrypTen's names
(``import cryptgpu as crypten``).

Prints a markdown table and writes benchmarks/compare_crypten.csv: wall time
(the median of up to 7 runs within 3 s, after a warm-up), rounds and bytes
sent by one party (CrypTen: party 0; cryptgpu: the busiest party), and the
time ratio.

Caveat in CrypTen's favour: its default triple provider for three parties is
a trusted first party (TFP) that makes Beaver triples from shared seeds, so
the triples' cost is neither counted nor secure against that party.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

import cryptgpu as crypten

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _compare_workloads import WORKLOADS, build, timed  # noqa: E402

VENV = os.path.join(HERE, ".crypten-venv")
CRYPTEN_PACKAGES = [
    "crypten==0.4.1",
    "omegaconf>=2.0.6",
    "antlr4-python3-runtime==4.9.3",
    "onnx",
    "protobuf",
    "ml_dtypes",
    "pyyaml",
    "future",
]


def ensure_venv() -> str:
    py = os.path.join(VENV, "bin", "python")
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('crypten') is None)"
    ok = os.path.exists(py) and subprocess.run([py, "-c", probe]).returncode == 0
    if not ok:
        print(f"installing CrypTen into {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", VENV], check=True)
        env = dict(os.environ, SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL="True")
        subprocess.run(
            [py, "-m", "pip", "install", "-q", "--no-deps", *CRYPTEN_PACKAGES], check=True, env=env
        )
    return py


def ours(name: str) -> dict:
    def convert(model, shape):
        return crypten.nn.from_pytorch(model, torch.zeros(1, *shape))

    return timed(crypten, build(crypten, name, convert))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the batch-64 rows")
    opts = ap.parse_args()
    names = [n for n in WORKLOADS if not (opts.quick and "batch 64" in n)]
    # Ours first (about a minute), then CrypTen's (many minutes).
    crypten.init()
    mine = {n: ours(n) for n in names}
    crypten.uninit()
    py = ensure_venv()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "crypten.json")
        cmd = [py, os.path.join(HERE, "_crypten_side.py"), out]
        subprocess.run(cmd + (["--quick"] if opts.quick else []), check=True)
        with open(out) as f:
            theirs = json.load(f)
    print(f"\ndate: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu")
    print(
        "| workload | cryptgpu (s) | CrypTen (s) | speed-up | rounds (ours / CrypTen) "
        "| MB per party (ours / CrypTen) |"
    )
    print("|---|---|---|---|---|---|")
    rows = []
    for n in names:
        a, b = mine[n], theirs[n]
        ratio = b["wall_s"] / a["wall_s"]
        rows.append(
            [
                n,
                a["wall_s"],
                b["wall_s"],
                ratio,
                a["rounds"],
                b["rounds"],
                a["bytes_per_party"],
                b["bytes_per_party"],
            ]
        )
        print(
            f"| {n} | {a['wall_s']:.3f} | {b['wall_s']:.3f} | {ratio:.1f}x "
            f"| {a['rounds']} / {b['rounds']} "
            f"| {a['bytes_per_party'] / 1e6:.1f} / {b['bytes_per_party'] / 1e6:.1f} |"
        )
    with open(os.path.join(HERE, "compare_crypten.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "workload",
                "cryptgpu_s",
                "crypten_s",
                "speedup",
                "cryptgpu_rounds",
                "crypten_rounds",
                "cryptgpu_bytes_per_party",
                "crypten_bytes_per_party",
            ]
        )
        w.writerows(rows)


if __name__ == "__main__":
    main()
