"""Property-based cases over cryptgpu.nn and autograd (issue 16), run in a
worker process like fuzz_api_worker.py (same command line and result file;
``tests/test_fuzz_api.py`` starts both).

Each case draws a small network (Linear or Conv2d first, then ReLU, max- or
average-pooling, Flatten, Linear), its input and its mode, converts it with
``from_pytorch`` and checks:

- forward, in eval and in train mode, against float64 torch within a bound
  computed from the drawn weights (below);
- backward of ``(out * c).sum()`` for a public c: the last Linear layer's
  weight and bias gradients against torch, within a bound from the same
  model;
- misuse: an input of the wrong rank, channel count or feature count gives
  a clean exception of torch's family (RuntimeError, of which ShapeError is
  one; TypeError for a missing input), and the session still computes.

Error bound. Inputs and weights are drawn on the 2^-6 grid within +-2 and
+-1, so they are encoded exactly and a first layer's products are exact in
2f bits: its only error is one truncation per output, 1 unit u = 2^-16. A
later linear layer turns an input error e into at most e * max_row ||W||_1
plus its own truncation u; ReLU and max-pooling do not grow an error;
average pooling adds 2 u (a division); Flatten is exact. The bound of the
output is this recursion run over the drawn layers. The last Linear's
weight gradient sums, over the batch, c times its input (error e_in):
batch * max|c| * e_in + u (c is on the grid, so c times an exact input is
exact before the truncation), plus the error of the output gradient
itself: c comes back from the backward of ``out * c`` through one
truncation (within one unit u even for a value on the grid), so each term
adds u * |input|: batch * (max|c| * e_in + u * max|input|) + u. The bias
gradient sums the output gradient over the batch: batch * u.
"""

from __future__ import annotations

import sys

import torch
from fuzz_api_worker import counts, probe, run_worker
from hypothesis import strategies as st

import cryptgpu

U = 2.0**-16
GRID = 64


def on_grid(t, lim):
    return (torch.round(t * GRID) / GRID).clamp(-lim, lim)


@st.composite
def net_case(draw):
    conv = draw(st.booleans())
    batch = draw(st.integers(1, 3))
    layers = []
    if conv:
        c, h = draw(st.integers(1, 3)), draw(st.integers(3, 7))
        o, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        in_shape = (batch, c, h, h)
        layers.append(("conv", c, o, k, stride, pad))
        size = (h + 2 * pad - k) // stride + 1
        ch = o
        if draw(st.booleans()):
            layers.append(("relu",))
        if size >= 2 and draw(st.booleans()):
            layers.append((draw(st.sampled_from(["maxpool", "avgpool"])), 2))
            size //= 2
        layers.append(("flatten",))
        feat = ch * size * size
    else:
        feat = draw(st.integers(1, 8))
        in_shape = (batch, feat)
        hidden = draw(st.integers(1, 6))
        layers.append(("linear", feat, hidden))
        feat = hidden
        if draw(st.booleans()):
            layers.append(("relu",))
    out = draw(st.integers(1, 4))
    layers.append(("linear", feat, out))
    train = draw(st.booleans())
    seed_ = draw(st.integers(0, 2**31 - 1))
    return ("net", tuple(in_shape), tuple(layers), train, seed_)


@st.composite
def misuse_nn_case(draw):
    kind = draw(st.sampled_from(["rank", "channels", "features", "missing"]))
    return ("nn_misuse", kind, draw(st.integers(0, 2**31 - 1)))


def build(layers):
    mods = []
    for lay in layers:
        if lay[0] == "conv":
            _, c, o, k, s, p = lay
            mods.append(torch.nn.Conv2d(c, o, k, stride=s, padding=p))
        elif lay[0] == "linear":
            mods.append(torch.nn.Linear(lay[1], lay[2]))
        elif lay[0] == "relu":
            mods.append(torch.nn.ReLU())
        elif lay[0] == "maxpool":
            mods.append(torch.nn.MaxPool2d(lay[1]))
        elif lay[0] == "avgpool":
            mods.append(torch.nn.AvgPool2d(lay[1]))
        else:
            mods.append(torch.nn.Flatten())
    m = torch.nn.Sequential(*mods).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(on_grid(p, 1.0))
    return m


def bound(m):
    """Error bounds (output, input of the last layer) of the recursion in
    the module docstring."""
    e, first, e_last_in = 0.0, True, 0.0
    for mod in m:
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            e_last_in = e
            w = mod.weight.detach().reshape(mod.weight.shape[0], -1)
            row = w.abs().sum(1).max().item()
            e = (0.0 if first else e * row) + U
            first = False
        elif isinstance(mod, torch.nn.AvgPool2d):
            e = e + 2 * U
    return e, e_last_in


def check(case):
    if case[0] == "net":
        check_net(case)
    else:
        check_misuse(case)


def check_net(case):
    _, in_shape, layers, train, seed_ = case
    g = torch.Generator().manual_seed(seed_)
    torch.manual_seed(seed_)
    m = build(layers)
    x = on_grid(torch.rand(in_shape, generator=g, dtype=torch.float64) * 4 - 2, 2.0)
    pm = cryptgpu.nn.from_pytorch(m, x[:1]).encrypt()
    pm.train() if train else pm.eval()
    e_out, e_in = bound(m)
    want = m(x)
    sx = cryptgpu.cryptensor(x, src=1)
    out = pm(sx)
    got = out.get_plain_text(dtype=torch.float64)
    err = (got - want.detach()).abs().max().item()
    assert err <= e_out + 1e-12, f"forward error {err} > bound {e_out}"
    counts["forward"] = counts.get("forward", 0) + 1
    if not train:
        return
    c = on_grid(torch.rand(want.shape, generator=g, dtype=torch.float64) * 2 - 1, 1.0)
    (want * c).sum().backward()
    (out * c).sum().backward()
    last_t, last_p = m[-1], [p for p in pm.parameters()][-2:]
    gw = last_p[0].grad.get_plain_text(dtype=torch.float64)
    gb = last_p[1].grad.get_plain_text(dtype=torch.float64)
    x_in = m[:-1](x).detach().abs().max().item() if len(m) > 1 else x.abs().max().item()
    bw = in_shape[0] * (c.abs().max().item() * e_in + U * x_in) + U
    bb = in_shape[0] * U
    errw = (gw - last_t.weight.grad).abs().max().item()
    errb = (gb - last_t.bias.grad).abs().max().item()
    assert errw <= bw + 1e-12, f"weight gradient error {errw} > bound {bw}"
    assert errb <= bb + 1e-12, f"bias gradient error {errb} > bound {bb}"
    counts["backward"] = counts.get("backward", 0) + 1


def check_misuse(case):
    _, kind, seed_ = case
    torch.manual_seed(seed_)
    if kind in ("rank", "channels", "missing"):
        m = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 2), torch.nn.ReLU()).double()
        pm = cryptgpu.nn.from_pytorch(m, torch.zeros(1, 3, 4, 4)).encrypt()
        bad = {"rank": (4, 4), "channels": (1, 2, 4, 4), "missing": None}[kind]
    else:
        m = torch.nn.Linear(4, 2).double()
        pm = cryptgpu.nn.from_pytorch(m, torch.zeros(1, 4)).encrypt()
        bad = (2, 5)
    want = TypeError if bad is None else RuntimeError
    try:
        if bad is None:
            pm()
        else:
            pm(cryptgpu.cryptensor(torch.zeros(bad)))
    except Exception as e:  # noqa: BLE001
        assert isinstance(e, want), f"{kind}: {type(e).__name__} ({e}), want {want.__name__}"
        assert not isinstance(e, cryptgpu.InternalError), f"{kind}: a panic: {e}"
        counts[f"nn_misuse:{type(e).__name__}"] = counts.get(f"nn_misuse:{type(e).__name__}", 0) + 1
    else:
        raise AssertionError(f"{kind}: no exception")
    probe()


def main():
    return run_worker(st.one_of(net_case(), net_case(), misuse_nn_case()), check)


if __name__ == "__main__":
    sys.exit(main())
