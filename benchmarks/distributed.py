"""Private inference over three processes (encrypted links) against the
local runtime, same models, same machine, same run:

- ZeroMQ transport on loopback (the default between processes),
- plain-TCP transport on loopback,
- ZeroMQ under a simulated WAN: every link goes through ``wan_proxy.py``
  (one-way delay 10 ms, 1 Gbit/s per direction), a user-space stand-in for
  ``tc netem``, which this machine's kernel lacks (no ``sch_netem``).

    python benchmarks/distributed.py [--wan-delay-ms 10] [--wan-gbit 1]

Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

import cryptgpu
from cryptgpu import _native, models
from cryptgpu.launch import free_ports

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wan_proxy import WanProxy  # noqa: E402

CASES = [("LeNet/MNIST", 1), ("LeNet/MNIST", 64), ("AlexNet/CIFAR-10", 1), ("AlexNet/CIFAR-10", 64)]
if os.environ.get("BENCH_QUICK"):
    CASES = CASES[:1]


def measure() -> list:
    zoo = models.zoo()
    rows = []
    for name, b in CASES:
        ctor, shape = zoo[name]
        torch.manual_seed(0)
        pm = cryptgpu.nn.from_pytorch(ctor().eval()).encrypt(src=0)
        x = cryptgpu.cryptensor(torch.randn(b, *shape), src=1)
        pm(x).get_plain_text()  # warm-up
        cryptgpu.reset_stats()
        t = time.perf_counter()
        pm(x).get_plain_text()
        wall = time.perf_counter() - t
        st = cryptgpu.stats()["total"]
        rows.append([name, b, wall, st["rounds"], st["bytes_per_party"]])
    return rows


def run_parties(out: str, transport: str, wan: tuple | None) -> list:
    """Three processes of this script, as on three hosts: rank, peers, keys
    and transport set by hand; with ``wan`` every party dials its
    neighbours through a WanProxy in front of their real port."""
    real = free_ports(3)
    proxies = []
    if wan:
        dial = free_ports(3)
        proxies = [WanProxy(dial[r], real[r], *wan) for r in range(3)]
    else:
        dial = real
    pairs = [_native.generate_keypair() for _ in range(3)]
    procs = []
    for r in range(3):
        env = dict(
            os.environ,
            CRYPTGPU_RANK=str(r),
            CRYPTGPU_PEERS=",".join(f"127.0.0.1:{p}" for p in dial),
            CRYPTGPU_KEY=pairs[r][0],
            CRYPTGPU_PUBKEYS=",".join(pub for _, pub in pairs),
            CRYPTGPU_TRANSPORT=transport,
        )
        if wan:
            env["CRYPTGPU_BIND"] = f"127.0.0.1:{real[r]}"
        procs.append(subprocess.Popen([sys.executable, __file__, out], env=env))
    t0 = time.time()
    codes = [p.wait(timeout=1800) for p in procs]
    print(f"{transport}{' WAN' if wan else ''}: parties ran {time.time() - t0:.1f} s", flush=True)
    for px in proxies:
        px.close()
    if any(codes):
        raise SystemExit(f"a party failed: exit codes {codes}")
    with open(out) as f:
        return json.load(f)


def main() -> None:
    if os.environ.get("CRYPTGPU_RANK"):  # one party of the multi-process run
        cryptgpu.init(seed=1, timeout_s=600)
        rows = measure()
        if cryptgpu.rank() == 0:
            with open(sys.argv[1], "w") as f:
                json.dump(rows, f)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--wan-delay-ms", type=float, default=10.0)
    ap.add_argument("--wan-gbit", type=float, default=1.0)
    a = ap.parse_args()
    wan = (a.wan_delay_ms / 1000, a.wan_gbit * 1e9)
    cryptgpu.init(seed=1)
    local = measure()
    cryptgpu.uninit()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.json")
        cols = {
            "zmq": run_parties(out, "zmq", None),
            "tcp": run_parties(out, "tcp", None),
            "wan": run_parties(out, "zmq", wan),
        }
    print(f"date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores; device: cpu")
    print(f"simulated WAN: {a.wan_delay_ms} ms one-way, {a.wan_gbit} Gbit/s per direction\n")
    print(
        "| model | batch | local (s) | zmq loopback (s) | tcp loopback (s) "
        "| zmq WAN (s) | zmq/local | rounds | bytes/party |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i, lr in enumerate(local):
        z, t, w = cols["zmq"][i], cols["tcp"][i], cols["wan"][i]
        for other in (z, t, w):
            assert lr[3] == other[3] and lr[4] == other[4], "counters differ between runtimes"
        print(
            f"| {lr[0]} | {lr[1]} | {lr[2]:.3f} | {z[2]:.3f} | {t[2]:.3f} | {w[2]:.3f} "
            f"| {z[2] / lr[2]:.2f}x | {lr[3]} | {lr[4]:,} |"
        )


if __name__ == "__main__":
    main()
