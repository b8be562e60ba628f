"""Truncation modes (init(truncation=...)): the exact protocol has no wrap
failures where ABY3's probabilistic one fails, "auto" picks exact for
training work and probabilistic for inference, and each mode's bytes and
rounds equal the cost table (rust/engine/src/protocol/mod.rs):

| truncation    | rounds | ring elements sent per party (n outputs)      |
| probabilistic | 2      | n each                                        |
| exact         | 2      | P0 3n; P1 2n; P2 2n after a product, n otherwise |

Tolerance: inputs on the fixed-point grid multiply exactly in 2f bits, so
a product differs from float64 only by its one truncation, within (-1, +1]
units of 2^-f (conftest TRUNC).
"""

import pytest
import torch

import cryptgpu
from conftest import TRUNC, ULP, F

W = 8  # bytes per ring element


def party_bytes(op):
    raw = cryptgpu.stats(per_party=True)["parties"]
    return [p.get(op, {}).get("bytes", 0) for p in raw]


def grid(t):
    return torch.round(t * 2**F) / 2**F


def adversarial_factors(n, gen):
    """Factors whose products have magnitudes spread over 2^-4 .. 2^30 (the
    exact protocol's limit at f = 16 is 2^(62-2f) = 2^30), a quarter of them
    within 1% of that limit, both signs."""
    e = torch.rand(n, generator=gen, dtype=torch.float64) * 34 - 4
    e[::4] = 30 - torch.rand(n // 4, generator=gen, dtype=torch.float64) * 0.014
    mag = 2.0**e * 0.999
    x = grid(torch.sqrt(mag) * torch.sign(torch.rand(n, generator=gen) - 0.5).double())
    y = grid(mag / x.abs().clamp(min=ULP))
    y = torch.where((x * y).abs() >= 2.0**30, grid(y * 0.99), y)
    return x, y


def failures(got, want, tol):
    return int(((got - want).abs() > tol).sum())


@pytest.mark.parametrize("mode", ["exact", "probabilistic"])
def test_a_million_products_near_the_range_limit(mode):
    """Exact: zero failures in 10^6 products up to 2^30 (seeded). The same
    products under the probabilistic protocol fail tens of thousands of
    times (a failed element is off by about 2^(64-2f) = 2^32), which shows
    the comparison can fail."""
    cryptgpu.init(seed=20261202, truncation=mode)
    try:
        gen = torch.Generator().manual_seed(17)
        n = 1_000_000
        x, y = adversarial_factors(n, gen)
        want = x * y
        assert want.abs().max() < 2.0**30
        got = (cryptgpu.cryptensor(x, src=0) * cryptgpu.cryptensor(y, src=1)).get_plain_text(
            dtype=torch.float64
        )
        bad = failures(got, want, TRUNC)
        if mode == "exact":
            assert bad == 0, f"{bad} of {n} exact truncations failed"
        else:
            # a failure has probability about |v| / 2^(64-2f) for a product
            # of magnitude |v|: a quarter of the elements sit near 2^30, so
            # about 2.5e5 / 4 failures (7.0e4 seen), plus a few from the rest.
            assert bad > 50_000, f"probabilistic truncation failed only {bad} times"
    finally:
        cryptgpu.uninit()


def test_exact_public_division_and_pooling_near_the_limit():
    cryptgpu.init(seed=3, truncation="exact")
    try:
        # |x| up to just below the encoding limit 2^31: division by a
        # public int and by a public fixed-point factor.
        x = grid(torch.linspace(-(2.0**31) + 1, 2.0**31 - 1, 4096, dtype=torch.float64))
        sx = cryptgpu.cryptensor(x)
        got = (sx / 7).get_plain_text(dtype=torch.float64)
        # division by a non-power-of-two d: within 2 units (protocol/trunc.rs)
        assert failures(got, x / 7, 2 * ULP) == 0
        got = (sx * 0.25).get_plain_text(dtype=torch.float64)
        assert failures(got, x * 0.25, TRUNC) == 0
        img = grid(torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2**30)
        pooled = cryptgpu.cryptensor(img).avg_pool2d(3, 1).get_plain_text(dtype=torch.float64)
        want = torch.nn.functional.avg_pool2d(img, 3, 1)
        assert failures(pooled, want, 2 * ULP) == 0
    finally:
        cryptgpu.uninit()


def test_mode_is_validated():
    with pytest.raises(ValueError, match="truncation must be one of"):
        cryptgpu.init(truncation="fast")
    cryptgpu.init(truncation="probabilistic")
    assert cryptgpu.truncation() == "probabilistic"
    cryptgpu.init()
    assert cryptgpu.truncation() == "auto"
    cryptgpu.uninit()


def test_costs_of_each_mode():
    n = 50
    for mode, mul_cost, div_cost in [
        ("probabilistic", [1, 1, 1], [1, 1, 1]),
        ("exact", [3, 2, 2], [3, 2, 1]),
    ]:
        cryptgpu.init(seed=5, truncation=mode)
        x = cryptgpu.cryptensor(torch.ones(n))
        y = cryptgpu.cryptensor(torch.ones(n), src=1)
        for op, make, cost, outs in [
            ("mul", lambda x=x, y=y: x * y, mul_cost, n),
            ("matmul", lambda x=x, y=y: x.reshape(5, 10) @ y.reshape(10, 5), mul_cost, 25),
            ("truncate", lambda x=x: x / 4, div_cost, n),
            # not a power of two: the exact protocol's skew costs no message
            ("truncate", lambda x=x: x / 3, div_cost, n),
        ]:
            cryptgpu.reset_stats()
            make()
            assert party_bytes(op) == [c * outs * W for c in cost], (mode, op)
            assert cryptgpu.stats()["ops"][op]["rounds"] == 2
    cryptgpu.uninit()


def test_mse_backward_costs_one_integer_product_and_one_exact_division():
    """MSELoss's mean backward (gradients.mean_square): d * g as ring
    integers (mul_int: 1 round, one element per party) and the exact
    division by 2^(f-1) n (2 rounds; P0 3, P1 2, P2 1 elements): 3 rounds,
    where mean's and d * d's backwards took 6."""
    cryptgpu.init(seed=7)
    n = 40
    x = cryptgpu.cryptensor(torch.randn(4, 10), requires_grad=True)
    loss = torch.nn.functional.mse_loss(x, torch.zeros(4, 10))
    cryptgpu.reset_stats()
    loss.backward()
    assert party_bytes("mul_int") == [n * W] * 3
    assert party_bytes("truncate") == [c * n * W for c in (3, 2, 1)]
    assert cryptgpu.stats()["total"]["rounds"] == 3
    cryptgpu.uninit()


def test_auto_is_exact_for_training_and_probabilistic_for_inference():
    cryptgpu.init(seed=6)  # truncation="auto"
    n = 40
    w = cryptgpu.cryptensor(torch.full((n,), 0.5), src=1)
    x = cryptgpu.cryptensor(torch.ones(n))

    def mul_bytes(f):
        cryptgpu.reset_stats()
        f()
        return party_bytes("mul")

    prob, exact = [n * W] * 3, [3 * n * W, 2 * n * W, 2 * n * W]
    # inference: nothing requires grad
    assert mul_bytes(lambda: x * w) == prob
    # a forward that autograd records (either operand requiring grad)
    w.requires_grad_()
    out = None

    def fwd():
        nonlocal out
        out = (x * w).sum()

    assert mul_bytes(fwd) == exact
    assert mul_bytes(lambda: w * x) == exact
    # under no_grad the same product is inference again
    with cryptgpu.no_grad():
        assert mul_bytes(lambda: x * w) == prob
    # the backward pass: the gradient of loss = 0.5 out is 1 / 2 (since
    # 2026-12-06 a factor 1/k is the division by k: one scalar division, a
    # replicated input, so P2 sends 1 element, counted as truncate), then
    # d(x*w)/dw multiplies it by x (n shared products): all exact
    loss = out * 0.5
    cryptgpu.reset_stats()
    loss.backward()
    assert party_bytes("truncate") == [3 * W, 2 * W, W]
    assert party_bytes("mul") == [3 * n * W, 2 * n * W, 2 * n * W]
    # the optimiser step multiplies by the learning rate: exact too
    opt = cryptgpu.optim.SGD([w], lr=0.1)
    cryptgpu.reset_stats()
    opt.step()
    assert party_bytes("mul") == [3 * n * W, 2 * n * W, n * W]  # g * lr, public factor
    # and inference right after is probabilistic again
    w.requires_grad_(False)
    assert mul_bytes(lambda: x * w) == prob
    cryptgpu.uninit()


def _cnn():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    ).double()


def _training_step(mode):
    """One SGD step of a conv-BatchNorm-ReLU-maxpool-linear CNN with the
    cross-entropy loss under init(truncation=mode): per-party bytes of the
    forward with the loss, of the whole step, the loss and the new weights."""
    cryptgpu.init(seed=12, truncation=mode)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).double()
    model = cryptgpu.nn.from_pytorch(_cnn(), fold_batchnorm=False).encrypt(src=0).train()
    sgd = cryptgpu.optim.SGD(model.parameters(), lr=0.1)
    xs, ys = cryptgpu.cryptensor(x, src=1), cryptgpu.cryptensor(y, src=1)
    cryptgpu.reset_stats()
    loss = cryptgpu.nn.CrossEntropyLoss()(model(xs), ys)
    fwd = [sum(o["bytes"] for o in p.values()) for p in cryptgpu.stats(per_party=True)["parties"]]
    loss.backward()
    sgd.step()
    step = [sum(o["bytes"] for o in p.values()) for p in cryptgpu.stats(per_party=True)["parties"]]
    out = (fwd, step, loss.get_plain_text(dtype=torch.float64))
    weights = [p.get_plain_text(dtype=torch.float64) for p in model.parameters()]
    model.eval()
    cryptgpu.reset_stats()
    model(xs)
    inf = [sum(o["bytes"] for o in p.values()) for p in cryptgpu.stats(per_party=True)["parties"]]
    cryptgpu.uninit()
    return out + (weights, inf)


def test_auto_makes_every_truncation_of_a_training_step_exact():
    """In "auto" mode a training step (the forward, the loss, backward, the
    optimiser) costs what it costs in "exact" mode and gives the same values
    bit for bit (same seed, same protocols), also inside the operations that
    run as one recorded node: the loss and its softmax gradient, BatchNorm's
    batch statistics, max-pool's tournament. They used to run their insides
    under no_grad, so probabilistically; one wrapped element wrecked a
    10-epoch run in about one seed of five (the loss jumped to 7e8 at step
    236 of seed 4). Inference on the same model stays probabilistic."""
    a_fwd, a_step, a_loss, a_w, a_inf = _training_step("auto")
    e_fwd, e_step, e_loss, e_w, _ = _training_step("exact")
    _, _, _, _, p_inf = _training_step("probabilistic")
    assert a_fwd == e_fwd
    assert a_step == e_step
    assert torch.equal(a_loss, e_loss)
    for a, e in zip(a_w, e_w):
        assert torch.equal(a, e)
    assert a_inf == p_inf
    assert a_inf[0] < e_fwd[0]  # the modes do differ in cost


def test_check_range_names_the_layer_that_leaves_the_range():
    """init(check_range=True) compares every layer output with 2^(62-2f) =
    2^30 (the exact truncation's limit) and raises naming the layer."""
    m = torch.nn.Sequential(
        torch.nn.Linear(1, 1, bias=False), torch.nn.ReLU(), torch.nn.Linear(1, 1)
    ).double()
    with torch.no_grad():
        m[0].weight.fill_(40000.0)
    cryptgpu.init(seed=8, check_range=True)
    try:
        cm = cryptgpu.nn.from_pytorch(m).encrypt()
        big = cryptgpu.cryptensor(torch.tensor([[40000.0]]), src=1)  # 1.6e9 > 2^30
        for mode in (cm.eval, cm.train):
            mode()
            with pytest.raises(cryptgpu.nn.FixedPointOverflowError, match="'0' \\(Linear\\)"):
                cm(big)
        # in range: no error, and the session keeps working
        small = cryptgpu.cryptensor(torch.tensor([[0.5]]), src=1)
        got = cm(small).get_plain_text(dtype=torch.float64)
        want = m(torch.tensor([[0.5]], dtype=torch.float64)).detach()
        # the second weight's encoding error (2^-17) times the hidden 2e4,
        # plus a truncation per layer: well under 4e4 units
        assert (got - want).abs().max() < 40000 * ULP
    finally:
        cryptgpu.uninit()
    for bad in (-1.0, "yes", 0):
        with pytest.raises(ValueError, match="check_range"):
            cryptgpu.init(check_range=bad)
    cryptgpu.init(check_range=2.0**10)  # a custom bound
    assert cryptgpu._session._ctx.overflow_bound == 2.0**10
    cryptgpu.init()
    assert cryptgpu._session._ctx.overflow_bound is None
    cryptgpu.uninit()


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_a_sharing_of_zero_truncates_to_exactly_zero(mode):
    # Shares that are all zero (a product by a public 0 or a 0/1 mask, an
    # empty matmul) truncated to one unit (2^-f) in earlier versions, so a
    # parameter whose gradient is 0 moved by a unit at every SGD step.
    cryptgpu.init(seed=3, truncation=mode)
    x = cryptgpu.cryptensor(torch.tensor([-1000.0, 1000.0, 0.0]))
    z = x * torch.tensor([0, 0, 0])
    assert (z * 0.5).get_plain_text().tolist() == [0.0] * 3
    assert (z / 7).get_plain_text().tolist() == [0.0] * 3
    e = cryptgpu.cryptensor(torch.ones(2, 0)) @ torch.ones(0, 3)
    assert e.get_plain_text().tolist() == [[0.0] * 3] * 2
    p = cryptgpu.cryptensor(torch.zeros(4), requires_grad=True)
    opt = cryptgpu.optim.SGD([p], lr=0.1, momentum=0.9)
    for _ in range(20):
        opt.zero_grad()
        (p * 0).sum().backward()
        opt.step()
    assert p.get_plain_text().tolist() == [0.0] * 4


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_truncation_is_unbiased_for_every_divisor(mode):
    # A value of k units divided by d comes out as floor(k/d) or one more
    # (P0 rounds up, P1 down), k/d units on average. Each result varies by
    # at most one unit, so the mean of n = 20000 deviates from k/d by
    # under 6 * 0.5 / sqrt(n) = 0.021 units (6 sigma). Earlier versions
    # were off by 1/d units (0.25 for x/4, 0.5 for x * 0.5).
    cryptgpu.init(seed=4, truncation=mode)
    n, k = 20000, 7
    x = cryptgpu.cryptensor(torch.full((n,), k * ULP, dtype=torch.float64))
    cases = [(x / 4, k / 4), (x * 0.5, k / 2), (x / 2, k / 2), (x * 0.25, k / 4)]
    if mode == "probabilistic":
        cases += [(x / 3, k / 3), (x / 7, 1.0)]
    for got, want in cases:
        mean = float((got.get_plain_text(dtype=torch.float64) / ULP).mean())
        assert abs(mean - want) < 0.021, (mode, want, mean)
    # Divisors that are not powers of two, in both protocols: each result
    # is within 2 units of k/d (the exact one's rounded 2^64/d), so the mean of
    # n = 200000 is within 6 * 2 / sqrt(n) = 0.027 units of k/d. Until
    # 2026-12-06 the rounded 2^64/d left -0.083 units for d = 3, +0.053 for
    # 9 and +0.096 for 1000 (an average pool's backward summed it).
    n = 200000
    x = cryptgpu.cryptensor(torch.full((n,), k * ULP, dtype=torch.float64))
    for d in (3, 7, 9, 25, 1000):
        mean = float((x / d).get_plain_text(dtype=torch.float64).mean() / ULP)
        assert abs(mean - k / d) < 6 * 2 / n**0.5, (mode, d, mean)


def test_small_public_factors_keep_sixteen_significant_bits():
    # A factor below 1/4 is encoded with extra fractional bits (|c| 2^(f+e)
    # in [2^(f-2), 2^(f-1))): relative error of c at most 2^-(f-1), so the
    # product is within |x c| 2^-(f-1) + one truncation unit. A whole-number
    # divisor (1e6 or 1000.0, as CrypTen) divides exactly: within one unit.
    # Both plus float64's rounding of the opened value. At f fractional
    # bits alone 1e-5 was 0.66 units (a step 57% too long).
    cryptgpu.init(seed=5)
    xs = torch.tensor([-1000.0, 1000.0, 3.5, 0.0], dtype=torch.float64)
    x = cryptgpu.cryptensor(xs)
    for c in (1e-4, 1e-5, 5e-6, 0.3, -2e-3, 1.7e-5, -2.7e-3):  # (1/k: divisions since 2026-12-06)
        tol = xs.abs() * abs(c) * 2.0 ** -(F - 1) + TRUNC
        got = (x * c).get_plain_text(dtype=torch.float64)
        assert ((got - xs * c).abs() <= tol).all(), (c, got)
    cryptgpu.reset_stats()
    assert (x / 1.0).get_plain_text(dtype=torch.float64).tolist() == xs.tolist()
    assert (x / -1).get_plain_text(dtype=torch.float64).tolist() == (-xs).tolist()
    assert cryptgpu.stats()["total"]["rounds"] == 2  # the two openings: x / +-1 is free
    for d in (1e5, 1e6, 1000.0, -4.0, torch.tensor(1e6), torch.tensor([3.0])):
        got = (x / d).get_plain_text(dtype=torch.float64)
        want = xs / torch.as_tensor(d, dtype=torch.float64)
        assert ((got - want).abs() <= TRUNC).all(), (d, got)


def test_small_public_factors_truncate_exactly_in_every_mode():
    """A factor below 1/4 carries e extra fractional bits, which scale the
    product's ring value by 2^e: with the probabilistic protocol the
    failure chance followed |x| / 2^33 instead of |x c| / 2^32 (x * 1e-5
    at x = 1e8: 140 of 20,000 elements off by up to 1.3e5). Such products
    are truncated by the exact protocol in every mode: no failure among
    20,000 elements at x = 1e8 (the old rate predicts 140), within the
    bound of the test above, at the exact protocol's bytes after a local
    product (3n for P0, 2n for P1, n for P2); a factor of 1/4 or more keeps
    the session's protocol (n each)."""
    # (1.3e-5: a factor 1/k, as 1e-5, is the division by k since 2026-12-06,
    # test_public_factors.py)
    cryptgpu.init(seed=7, truncation="probabilistic")
    n = 20_000
    x = cryptgpu.cryptensor(torch.full((n,), 1e8, dtype=torch.float64))
    cryptgpu.reset_stats()
    got = (x * 1.3e-5).get_plain_text(dtype=torch.float64)
    assert party_bytes("mul") == [3 * n * W, 2 * n * W, n * W]
    tol = 1e8 * 1.3e-5 * 2.0 ** -(F - 1) + TRUNC
    assert int(((got - 1300.0).abs() > tol).sum()) == 0
    cryptgpu.reset_stats()
    x * 0.3
    assert party_bytes("mul") == [n * W] * 3
    cryptgpu.uninit()


@pytest.mark.parametrize("mode", ["probabilistic", "exact"])
def test_the_gradient_of_a_large_mean_keeps_its_scale(mode):
    # d mean(x) / dx = 1/n for every element. At f = 16, 1/98304 is 0.67
    # units: rounded once and broadcast (as before), every element got the
    # same 1 unit, a gradient 1.5x torch's (1.125x for n = 12288, and
    # MSELoss the same). Now each element rounds on its own and without
    # bias (0 or 1 unit here): the gradients' sum is 1 within 6 sigma of n
    # independent roundings (sd sqrt(n) / 2 units) plus the 2^-15 relative
    # error of the kept 1/n; each element is within one unit of 1/n.
    cryptgpu.init(seed=6, truncation=mode)
    for n, shape in ((12288, (4, 3, 32, 32)), (98304, (8, 3, 64, 64))):
        a = torch.randn(shape, dtype=torch.float64)
        x = cryptgpu.cryptensor(a, requires_grad=True)
        x.mean().backward()
        g = x.grad.get_plain_text(dtype=torch.float64)
        tol = 6 * n**0.5 / 2 * ULP + 2.0**-15
        assert abs(float(g.sum()) - 1.0) <= tol, (mode, n, float(g.sum()))
        assert (g - 1 / n).abs().max() <= ULP + 2.0**-15 / n
    # Global average pooling (one window per map) goes through the same
    # mean: an upstream gradient per map, spread over 64 elements each,
    # whose sum per map is that gradient within 6 sigma of 64 roundings.
    a = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    up = torch.randn(2, 3, 1, 1, dtype=torch.float64)
    x = cryptgpu.cryptensor(a, requires_grad=True)
    (x.avg_pool2d(8) * cryptgpu.cryptensor(up)).sum().backward()
    g = x.grad.get_plain_text(dtype=torch.float64).sum((2, 3), keepdim=True)
    # the upstream's encoding (ENC) and its product's truncation (TRUNC)
    # move each map's 64-element sum by at most 2 ULP, then 6 sigma
    assert (g - up).abs().max() <= 2 * ULP + 6 * 8 / 2 * ULP + 2.0**-15 * up.abs().max()
