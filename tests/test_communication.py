"""Bytes and rounds of each protocol equal the cost table (protocol.rs):

| protocol        | rounds | ring elements sent per party        |
| share from src  | 1      | src: n to each of the other two     |
| reveal          | 1      | n                                   |
| mul / matmul / conv2d (truncation fused) | 2 | n (output size) |
| truncate / divide by public int          | 2 | n             |
| mul_int (ring product, no truncation)    | 1 | n             |
| horner, degree d (GELU, exp polynomials) | 2d | d n          |
| add, sub, public add, integer mul, shape ops | 0 | 0          |
"""

import torch

import cryptgpu

W = 8  # bytes per ring element


def party_bytes(op):
    raw = cryptgpu.stats(per_party=True)["parties"]
    return [p.get(op, {}).get("bytes", 0) for p in raw]


def rounds(op):
    return cryptgpu.stats()["ops"][op]["rounds"]


def test_share_and_reveal(session):
    n = 37
    for src in range(3):
        cryptgpu.reset_stats()
        x = cryptgpu.cryptensor(torch.ones(n), src=src)
        want = [0, 0, 0]
        want[src] = 2 * n * W
        assert party_bytes("share") == want
        assert rounds("share") == 1
    cryptgpu.reset_stats()
    x.get_plain_text()
    assert party_bytes("reveal") == [n * W] * 3
    assert rounds("reveal") == 1
    cryptgpu.reset_stats()
    x.get_plain_text(dst=1)
    assert party_bytes("reveal") == [n * W, 0, 0]  # party 0 precedes party 1
    assert rounds("reveal") == 1


def test_products(session):
    a = cryptgpu.cryptensor(torch.ones(6, 7))
    b = cryptgpu.cryptensor(torch.ones(7, 5))
    cryptgpu.reset_stats()
    a * a
    assert party_bytes("mul") == [42 * W] * 3 and rounds("mul") == 2
    cryptgpu.reset_stats()
    a @ b
    assert party_bytes("matmul") == [30 * W] * 3 and rounds("matmul") == 2
    img = cryptgpu.cryptensor(torch.ones(2, 3, 8, 8))
    w = cryptgpu.cryptensor(torch.ones(4, 3, 3, 3))
    cryptgpu.reset_stats()
    out = img.conv2d(w, stride=1, padding=1)
    assert party_bytes("conv2d") == [out.numel() * W] * 3 and rounds("conv2d") == 2


def test_horner_costs_its_products_and_matches_the_composition(session):
    """A degree-d polynomial in one engine call: d truncated products (2d
    rounds, d n elements per party), as the composition of mul_public, mul
    and add would cost; and the same value (each step's truncation is
    probabilistic: within a few units of 2^-16 of each other)."""
    from cryptgpu import functions

    n, coeffs = 40, (0.5, -1.25, 0.75, 2.0, -0.375)
    u = torch.linspace(-1, 1, n, dtype=torch.float64)
    x = cryptgpu.cryptensor(u)
    cryptgpu.reset_stats()
    y = functions._horner(coeffs, x)
    d = len(coeffs) - 1
    assert party_bytes("horner") == [d * n * W] * 3 and rounds("horner") == 2 * d
    want = sum(c * u**k for k, c in enumerate(coeffs))
    # each of the d steps adds at most about (1 + |c|)/2^16 of truncation and
    # encoding error, times |u| <= 1 for the later steps: 3e-4 in all
    assert (y.get_plain_text(dtype=torch.float64) - want).abs().max() < 3e-4
    # c w added inside the last step's truncation: no extra round or byte
    w = torch.linspace(3, -2, n, dtype=torch.float64)
    cryptgpu.reset_stats()
    y = functions._horner(coeffs, x, plus=(cryptgpu.cryptensor(w), -0.75))
    assert party_bytes("horner") == [d * n * W] * 3 and rounds("horner") == 2 * d
    got = y.get_plain_text(dtype=torch.float64)
    assert (got - (want - 0.75 * w)).abs().max() < 3e-4  # the same bound


def test_product_with_a_shift_costs_one_product(session):
    """x y / 2^s truncated once (GELU's x^2 / 16): one product's rounds and
    bytes, within one truncation (2^-16) plus the inputs' encoding."""
    v = torch.linspace(-7, 7, 30, dtype=torch.float64)
    x = cryptgpu.cryptensor(v)
    s = x._s()  # the engine session (mul_shift is internal: GELU's u)
    cryptgpu.reset_stats()
    u = x._wrap(s.mul_shift(x._t, x._t, 4))
    assert party_bytes("mul") == [30 * W] * 3 and rounds("mul") == 2
    # x encoded within 2^-17; x^2 / 16 within 2 |x| 2^-17 / 16 of it, plus
    # one unit of 2^-16 from the truncation
    assert (u.get_plain_text(dtype=torch.float64) - v * v / 16).abs().max() <= 2.0**-16 + 1e-4


def test_truncation_and_division(session):
    x = cryptgpu.cryptensor(torch.ones(10))
    cryptgpu.reset_stats()
    x * 0.3  # public fixed-point factor: local product + truncation
    assert party_bytes("mul") == [10 * W] * 3 and rounds("mul") == 2
    cryptgpu.reset_stats()
    x * 0.5  # a factor 1/k: the division by k (test_public_factors.py)
    assert party_bytes("truncate") == [10 * W] * 3 and rounds("truncate") == 2
    cryptgpu.reset_stats()
    x / 3
    assert party_bytes("truncate") == [10 * W] * 3 and rounds("truncate") == 2
    cryptgpu.reset_stats()
    img = cryptgpu.cryptensor(torch.ones(1, 2, 4, 4))
    cryptgpu.reset_stats()
    img.avg_pool2d(2)
    assert party_bytes("avg_pool2d") == [8 * W] * 3 and rounds("avg_pool2d") == 2


def test_local_ops_send_nothing(session):
    x = cryptgpu.cryptensor(torch.ones(4, 4))
    cryptgpu.reset_stats()
    y = (x + x - x) * 3 + 1.0
    y = y.t().reshape(16)[3:9].unsqueeze(0).sum()
    cryptgpu.cat([x, x]).permute(1, 0).pad((1, 1))
    st = cryptgpu.stats()
    assert st["total"]["bytes"] == 0 and st["total"]["rounds"] == 0


def test_indexing_backward_sends_nothing(session):
    """The adjoint of a (stepped) view is a local scatter: no messages."""
    x = cryptgpu.cryptensor(torch.ones(6, 5)).requires_grad_()
    y = x[1::2, ::3]
    cryptgpu.reset_stats()
    y.sum().backward()
    st = cryptgpu.stats()
    assert st["total"]["bytes"] == 0 and st["total"]["rounds"] == 0


def test_dropout_costs(session):
    """Training-mode dropout: the joint coin once per session (a one-element
    sharing from each party, then one reveal), then per call one product by
    the public scaled mask: a truncation (2 rounds, n elements per party)
    for p = 0.3, whose scale 1/0.7 is fractional; for p = 0.5 the mask's
    values are 0 and 2, integers, so the product is exact and free."""
    n = 20
    x = cryptgpu.cryptensor(torch.ones(n))
    d = cryptgpu.nn.Dropout(0.3).train()
    cryptgpu.reset_stats()
    d(x)
    assert party_bytes("share") == [2 * W] * 3 and rounds("share") == 3
    assert party_bytes("reveal") == [W] * 3 and rounds("reveal") == 1
    assert party_bytes("mul") == [n * W] * 3 and rounds("mul") == 2
    cryptgpu.reset_stats()
    d(x)
    st = cryptgpu.stats()
    assert st["total"]["rounds"] == 2 and party_bytes("mul") == [n * W] * 3
    cryptgpu.reset_stats()
    y = cryptgpu.nn.Dropout(0.5).train()(x).get_plain_text()
    assert cryptgpu.stats()["total"]["rounds"] == 1  # the reveal above only
    # exact: every element is 0 or 2 (tolerance 0, no truncation)
    assert set(y.tolist()) <= {0.0, 2.0}


def test_integer_product_of_shares(session):
    """mul_int (GELU's exact selection): the ring product of two sharings,
    reshared without truncation: one round, n words per party. A 0/1 ring
    word (the fixed-point encoding of 2^-f) times a shared value gives the
    value or 0 exactly (tolerance 0: no truncation). A shape mismatch is a
    ShapeError and the session stays usable."""
    import pytest

    n = 9
    f = cryptgpu.cryptensor(torch.zeros(1))._s().precision_bits
    bits = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1], dtype=torch.float64)
    vals = torch.tensor([1.5, -3.25, 700.0, -0.5, 11.0, 2.0, -1e4, 17.0, 1 / 64])
    b = cryptgpu.cryptensor(bits * 2.0**-f)
    v = cryptgpu.cryptensor(vals.double())
    sess = v._s()
    cryptgpu.reset_stats()
    got = v._wrap(sess.mul_int(b._t, v._t))
    assert party_bytes("mul_int") == [n * W] * 3 and rounds("mul_int") == 1
    assert torch.equal(got.get_plain_text(dtype=torch.float64), bits * vals.double())
    with pytest.raises(cryptgpu.ShapeError):
        sess.mul_int(b._t, cryptgpu.cryptensor(torch.zeros(n + 1))._t)
    again = v._wrap(sess.mul_int(b._t, v._t))
    assert torch.equal(again.get_plain_text(dtype=torch.float64), bits * vals.double())
