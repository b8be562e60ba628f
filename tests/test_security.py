"""Security sanity: what one party holds must look uniform and must not
depend on the secret. Each test would fail if a component carried the secret
(for instance if x_0 were x itself, or a share were x + small noise)."""

import numpy as np
import pytest
import torch

import cryptgpu

N = 20000


def top_bytes(u):
    return (u >> np.uint64(56)).astype(np.int64).ravel()


def chi2_uniform_bytes(b):
    counts = np.bincount(b, minlength=256)
    exp = len(b) / 256
    return ((counts - exp) ** 2 / exp).sum()


# chi-square with 255 degrees of freedom: mean 255, sd ~22.6; 400 is > 6 sd,
# a false alarm rate below 1e-9.
CHI2_MAX = 400


@pytest.mark.parametrize("secret", [0.0, 1.0, -12345.5])
def test_each_party_view_of_a_shared_input_is_uniform(secret):
    cryptgpu.init(seed=None)  # OS keys, as in real use
    x = cryptgpu.cryptensor(torch.full((N,), secret), src=0)
    for party in range(3):
        for comp in x.party_shares(party):
            assert chi2_uniform_bytes(top_bytes(comp)) < CHI2_MAX
            enc = np.uint64(np.int64(round(secret * 2**16)).astype(np.uint64))
            assert (comp == enc).sum() < 3


def test_party_view_independent_of_the_secret():
    """Two very different secrets give indistinguishable views: compare the
    two top-byte histograms with a two-sample chi-square."""
    cryptgpu.init()
    views = []
    for secret in (0.0, 1000.0):
        x = cryptgpu.cryptensor(torch.full((N,), secret), src=1)
        views.append(x.party_shares(0)[0])
    c0 = np.bincount(top_bytes(views[0]), minlength=256)
    c1 = np.bincount(top_bytes(views[1]), minlength=256)
    stat = ((c0 - c1) ** 2 / np.maximum(c0 + c1, 1)).sum()
    assert stat < CHI2_MAX


def byte_at(u, k):
    return ((u >> np.uint64(8 * k)) & np.uint64(255)).astype(np.int64).ravel()


def two_sample_chi2(b0, b1):
    c0 = np.bincount(b0, minlength=256)
    c1 = np.bincount(b1, minlength=256)
    return ((c0 - c1) ** 2 / np.maximum(c0 + c1, 1)).sum()


@pytest.mark.parametrize(
    "op", ["mul", "matmul_public", "divide", "relu", "lt", "max", "sin", "floor"]
)
def test_product_views_do_not_depend_on_the_secret(op):
    """The outputs of the truncating protocols carry the received messages.
    The component t_0 = floor(z_0 / 2^f) is uniform on [-2^(63-f), 2^(63-f))
    rather than on the whole ring (ABY3's truncation has the same shape), so
    the test compares, byte by byte, each party's view for two different
    secrets: any dependence on the secret shows up in some byte."""
    cryptgpu.init()
    views = []
    for secret in (3.0, -1000.0):
        x = cryptgpu.cryptensor(torch.full((N,), secret))
        if op == "mul":
            y = x * x
        elif op == "matmul_public":
            y = x.reshape(N, 1) @ torch.ones(1, 1)
        elif op == "divide":
            y = x / 3
        elif op == "relu":
            y = x.relu()  # carries the MSB circuit's and bit injection's messages
        elif op == "lt":
            y = x < 0.5
        elif op == "sin":
            y = x.sin()  # its turn fraction spans the whole ring
        elif op == "floor":
            y = x // 3  # a truncation by 3 * 2^f, its rest's comparisons
        else:
            y = x.reshape(N // 2, 2).max(1)[0]
        views.append([c for p in range(3) for c in y.party_shares(p)])
    for c0, c1 in zip(*views):
        for k in range(8):
            assert two_sample_chi2(byte_at(c0, k), byte_at(c1, k)) < CHI2_MAX, k


def test_shares_sum_to_the_secret():
    """Sanity of the test itself: the three components do reconstruct."""
    cryptgpu.init(seed=2)
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.0]))
    a0, a1 = x.party_shares(0)
    _, a2 = x.party_shares(1)
    total = (a0 + a1 + a2).view(np.int64) / 2**16
    assert total.tolist() == [1.5, -2.0]
    cryptgpu.uninit()
