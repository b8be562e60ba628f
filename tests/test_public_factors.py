"""Products by a public fixed-point factor, two cases a user probe found
wrong (2026-12-06), against float64 torch:

- a factor TENSOR of mixed magnitudes: one count of extra fractional bits
  for the whole tensor, chosen from its largest entry, left the small
  entries at 2^-16 absolute (``12345.678 * tensor([1e-5, 1.0])`` gave
  0.188 for 0.123, ``x / tensor([1000., 2.])`` 12.43 for 12.35). Each
  entry now keeps f - 1 significant bits: the product goes in two steps,
  x / 2^e_i by the exact truncation, then times p_i 2^(f + e_i) and one
  truncation by 2^f (rust/engine/src/runtime/factor.rs).
- a factor 1/k for a whole k (``x * (1/1000)``, ``x * 0.5``, a tensor of
  equal such entries, ``x / torch.full((n,), 1000.)``) is the exact
  division by k, as ``x / 1000`` is: it holds for x anywhere in the sum
  range (|x| < 2^47), where the product, its factor scaled into
  [1/4, 1/2), wrapped for |x| >= 2^31 (a row sum of 1e10 times 0.001 was
  wrong in 40 of 64 rows, in either truncation mode).

Tolerances (units of 2^-f, ULP): a mixed factor's product is within 1.5
units (step 2's unit times |p_i 2^e_i| < 1/2, step 3's one) plus the
factor's relative 2^-(f-1), |x p| 2^-(f-1); inputs are on the grid, so
they carry no encoding error. A division by a whole k is within one unit
(probabilistic protocol) or two (the exact one's rounded 2^64 / k; README
"Truncation").
"""

import pytest
import torch

import cryptgpu
from conftest import ENC, ULP, F, usable

D = torch.float64
W = 8  # bytes per ring element
DIV = 2 * ULP  # one division by a whole number, either protocol


def opened(x):
    return x.get_plain_text(dtype=D)


def grid(t):
    return torch.round(t * 2**F) / 2**F


def mixed_tol(x, p):
    """1.5 units plus the factor's relative 2^-(f-1) (module doc)."""
    return 1.5 * ULP + (x * p).abs() * 2.0 ** -(F - 1)


def party_bytes(op):
    raw = cryptgpu.stats(per_party=True)["parties"]
    return [p.get(op, {}).get("bytes", 0) for p in raw]


def rounds(op):
    return cryptgpu.stats()["ops"][op]["rounds"]


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_a_mixed_factor_keeps_each_entrys_significant_bits(mode):
    cryptgpu.init(seed=11, truncation=mode)
    try:
        xs = grid(torch.tensor([12345.678, -12345.678], dtype=D))
        x = cryptgpu.cryptensor(xs)
        for w in ([1e-5, 1.0], [1e-3, 0.2], [1e-3, 3.0], [-1e-5, 1000.0], [2e-4, 7e-6]):
            p = torch.tensor(w, dtype=D)
            got = opened(x * p)
            assert ((got - xs * p).abs() <= mixed_tol(xs, p)).all(), (w, got, xs * p)
        # a divisor tensor: x times its reciprocals (12.43 for 12.35 before)
        for dv in ([1000.0, 2.0], [1024.0, 3.0], [3.0, 7e4]):
            p = 1 / torch.tensor(dv, dtype=D)
            got = opened(x / torch.tensor(dv, dtype=D))
            assert ((got - xs * p).abs() <= mixed_tol(xs, p)).all(), (dv, got, xs * p)
        # an entry of 1/4 or more loses nothing to the first step (x 2^E is
        # a multiple of 2^E, which the exact truncation divides exactly):
        # x * 1000.5 (on the grid: no encoding error) within the one unit of
        # the second, as with one factor for all, not 1000.5 units
        p = torch.tensor([1e-5, 1000.5], dtype=D)
        for _ in range(20):
            got = opened(x * p)
            assert abs(got[1] - xs[1] * 1000.5) <= ULP, got
        # a zero entry next to a small one: x * 0 is 0, the other as above
        p = torch.tensor([0.0, 1e-5], dtype=D)
        got = opened(x * p)
        assert ((got - xs * p).abs() <= mixed_tol(xs, p)).all(), got
    finally:
        cryptgpu.uninit()


def test_per_feature_standardisation_with_scales_from_1e_2_to_1e3(session):
    """(x - mean) / std with public per-column statistics whose std spans
    1e-2 .. 1e3: before, 1 / std was encoded with the bits of the largest
    entry (1 / 1e-2), so the column of std 1e3 came out 0.76% off."""
    gen = torch.Generator().manual_seed(3)
    std = torch.tensor([1e-2, 0.3, 1.0, 17.0, 250.0, 1e3], dtype=D)
    mean = grid(torch.tensor([5.0, -3.0, 0.5, 100.0, -2000.0, 4e4], dtype=D))
    a = grid(torch.randn(64, 6, generator=gen, dtype=D) * std + mean)
    x = cryptgpu.cryptensor(a)
    got = opened((x - mean) / std)
    want = (a - mean) / std  # x - mean is exact on the grid
    assert ((got - want).abs() <= mixed_tol(a - mean, 1 / std)).all()


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_a_mixed_factor_costs_two_truncations(mode):
    """README's cost table: the exact division of x 2^(E - e_i) by 2^E
    (P0 3n, P1 2n, P2 n, a replicated input), then the product's exact
    truncation in every mode (P0 3n, P1 2n, P2 n again, as the one-step
    path's for a factor below 1/4): 4 rounds. A factor whose entries share one scale keeps one
    truncation (2 rounds), and a tensor of equal entries costs what its
    one value costs, as does a tensor the one step encodes exactly."""
    cryptgpu.init(seed=12, truncation=mode)
    try:
        n = 6
        x = cryptgpu.cryptensor(torch.ones(n, dtype=D))
        mixed = torch.tensor([1e-5, 1.0, 0.3, 2e-3, 5.0, 1e-4], dtype=D)
        cryptgpu.reset_stats()
        x * mixed
        second = [3 * n * W, 2 * n * W, n * W] if mode == "exact" else [n * W] * 3
        want = [6 * n * W, 4 * n * W, 2 * n * W]
        assert party_bytes("mul") == want and rounds("mul") == 4
        cryptgpu.reset_stats()
        x * torch.tensor([0.3, 0.7, 1.3, 2.5, 0.26, 0.9], dtype=D)  # e_i = 0 for all
        assert party_bytes("mul") == second and rounds("mul") == 2
        cryptgpu.reset_stats()
        x * torch.full((n,), 0.3, dtype=D)
        assert party_bytes("mul") == second and rounds("mul") == 2
        # powers of two down to 2^-f are exact in one step (the range
        # reductions' scalings): one truncation, and exactly x 2^-j
        pow2 = 2.0 ** -torch.tensor([1, 3, 6, 9, 12, 14], dtype=D)
        cryptgpu.reset_stats()
        got = opened(cryptgpu.cryptensor(torch.full((n,), 3.0, dtype=D)) * pow2)
        assert party_bytes("mul") == second and rounds("mul") == 2
        assert ((got - 3.0 * pow2).abs() <= ULP).all()  # one truncation
    finally:
        cryptgpu.uninit()


def test_gradients_through_a_mixed_factor(session):
    """d 1000 (x * p).sum() / dx = 1000 p: the backward multiplies the
    upstream 1000s by p through the same two steps (before: 1e-5 held as
    one unit of 2^-16, a gradient 1.53x torch's); d 1000 (x / t).sum() / dx
    = 1000 / t likewise (1 / 1000 held as 66 units: 1.007x)."""
    a = grid(torch.tensor([[3.0, -2.5], [1e3, 0.125]], dtype=D))
    up = torch.full((2, 2), 1000.0, dtype=D)
    p, t = torch.tensor([1e-5, 2.0], dtype=D), torch.tensor([1000.0, 2.0], dtype=D)
    for c, f in ((p, lambda x: x * p), (1 / t, lambda x: x / t)):
        x = cryptgpu.cryptensor(a, requires_grad=True)
        (f(x).sum() * 1000).backward()
        g = opened(x.grad)
        assert ((g - up * c).abs() <= mixed_tol(up, c)).all(), (g, up * c)


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_a_reciprocal_factor_divides_sums_beyond_2_31(mode):
    """Row sums of about 1e10 (inside the sum range, < 2^47) times 1/1000
    in every spelling: each within one division (DIV) of torch's; 1/1000
    held as float32 (0.0010000000475) is 1/1000 within 2^-23 relative,
    which adds |result| 2^-23. Before: 40 of 64 rows wrapped."""
    cryptgpu.init(seed=13, truncation=mode)
    try:
        gen = torch.Generator().manual_seed(0)
        a = grid(torch.rand(64, 1000, generator=gen, dtype=D) * 2e7)
        s = cryptgpu.cryptensor(a).sum(1)
        want = a.sum(1) / 1000
        for name, f in [
            ("* (1/1000)", lambda: s * (1 / 1000)),
            ("* full(0.001)", lambda: s * torch.full((64,), 0.001, dtype=D)),
            ("/ full(1000.)", lambda: s / torch.full((64,), 1000.0, dtype=D)),
            ("* -0.001", lambda: -(s * -0.001)),
        ]:
            got = opened(f())
            assert ((got - want).abs() <= DIV).all(), (name, (got - want).abs().max())
        got = opened(s * torch.full((64,), 1e-3, dtype=torch.float32))
        assert ((got - want).abs() <= DIV + want.abs() * 2.0**-23).all()
        for c in (0.5, 0.25, 1 / 3):
            got = opened(s * c)
            assert ((got - a.sum(1) * c).abs() <= DIV).all(), (c, got[:2])
    finally:
        cryptgpu.uninit()


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_a_reciprocal_factor_costs_the_division_by_its_integer(mode):
    """x * (1/1000) and x * a tensor of equal 1/1000s cost x / 1000's
    rounds and bytes in the exact protocol whatever the mode (README: a
    factor below 1/4 is exact always, P0 3n, P1 2n, P2 n: the
    probabilistic protocol's failure chance would follow x, not the
    result), x / 1000, x / a tensor of equal 1000s and x * -0.5 (1/k with
    |k| < 4) the session's (n each probabilistic), all counted as
    ``truncate`` in 2 rounds; a broadcast one divides the broadcast x (its
    n)."""
    cryptgpu.init(seed=14, truncation=mode)
    try:
        n = 8
        x = cryptgpu.cryptensor(torch.ones(n, dtype=D))
        exact = [3 * n * W, 2 * n * W, n * W]
        session = exact if mode == "exact" else [n * W] * 3
        spellings = [
            (lambda: x / 1000, session),
            (lambda: x * 0.001, exact),
            (lambda: x * torch.full((n,), 0.001, dtype=D), exact),
            (lambda: x / torch.full((n,), 1000.0, dtype=D), session),
            (lambda: x * -0.5, session),
        ]
        for f, want in spellings:
            cryptgpu.reset_stats()
            f()
            assert party_bytes("truncate") == want and rounds("truncate") == 2
            assert "mul" not in cryptgpu.stats()["ops"]
        cryptgpu.reset_stats()
        out = x.reshape(n, 1) * torch.full((1, 3), 0.001, dtype=D)
        assert out.shape == (n, 3)
        assert party_bytes("truncate") == [3 * b for b in exact]
    finally:
        cryptgpu.uninit()


def test_a_reciprocal_factor_below_a_quarter_never_wraps_on_large_inputs():
    """x * 0.001 on 2^20 elements of 2e9 in the default mode: the division
    by 1000 is exact always, so no element wraps (with the session's
    probabilistic protocol about |x| / 2^47 = 1.4e-5 of them, 15, would: a
    reviewer saw 5 of 2^20 off by 2.8e11); each is within the exact
    division's 2 units of 2^-16 plus the input's encoding error / 1000."""
    cryptgpu.init(seed=21)
    try:
        a = torch.full((1 << 20,), 2e9, dtype=D)
        got = (cryptgpu.cryptensor(a) * 0.001).get_plain_text(dtype=D)
        assert (got - a * 0.001).abs().max() <= 2 * ULP + ENC
    finally:
        cryptgpu.uninit()


def test_a_broadcast_reciprocal_factor_and_its_gradient(session):
    """A 1/k factor or a whole divisor that broadcasts x: torch's shape and
    values (one division each), the gradient summed over the broadcast dims
    and divided once (within one division plus the three upstream ones'
    sum, exact: the sum of ones is exact)."""
    a = grid(torch.tensor([[1.5], [-2.25], [1e4]], dtype=D))
    for y in (torch.full((1, 4), 0.001, dtype=D), torch.full((2, 1, 4), 250.0, dtype=D)):
        x = cryptgpu.cryptensor(a, requires_grad=True)
        out = x * y if y.flatten()[0] < 1 else x / y
        ref = a * y if y.flatten()[0] < 1 else a / y
        assert tuple(out.shape) == tuple(ref.shape)
        assert ((opened(out) - ref).abs() <= DIV).all()
        out.sum().backward()
        t = a.clone().requires_grad_()
        (t * y if y.flatten()[0] < 1 else t / y).sum().backward()
        assert ((opened(x.grad) - t.grad).abs() <= DIV).all(), (opened(x.grad), t.grad)
    with pytest.raises(RuntimeError):  # torch's error for shapes that do not broadcast
        cryptgpu.cryptensor(a) / torch.full((2, 2), 4.0, dtype=D)
    assert usable()
