"""Private training: gradients of each layer type against float64 PyTorch
autograd, the optimiser, and an end-to-end run on digits.

Gradient tolerances: a backward pass repeats the forward's products with the
output gradient, so each gradient element carries a few truncations (each
within (-1, 1] ulp and unbiased) plus the forward's error times the local
slope. A gradient that sums over B elements (bias, weight) accumulates B such
errors; since they are unbiased their sum grows like sqrt(B). The bounds
below are written as (number of summed terms) * (a few ulp) so they hold
even without cancellation.
"""

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ULP, assert_close, usable


def shared_leaf(t, src=0):
    return cryptgpu.cryptensor(t.detach(), src=src).requires_grad_()


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def leaf(*shape, gen, scale=1.0):
    return (
        (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    ).requires_grad_()


def test_linear_and_broadcast_grads(session, rng):
    x, w, b = leaf(6, 5, gen=rng), leaf(3, 5, gen=rng), leaf(3, gen=rng)
    (F.linear(x, w, b) * torch.linspace(-1, 1, 3, dtype=torch.float64)).sum().backward()
    sx, sw, sb = shared_leaf(x), shared_leaf(w, 1), shared_leaf(b, 1)
    (sx.linear(sw, sb) * torch.linspace(-1, 1, 3, dtype=torch.float64)).sum().backward()
    # each gradient element sums at most 6 products of grid-rounded values
    tol = 6 * 8 * ULP
    assert_close(pt(sx.grad), x.grad, tol)
    assert_close(pt(sw.grad), w.grad, tol)
    assert_close(pt(sb.grad), b.grad, tol)


@pytest.mark.parametrize("stride,pad,dil", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_conv2d_grads(session, rng, stride, pad, dil):
    x, w, b = leaf(2, 3, 7, 7, gen=rng), leaf(4, 3, 3, 3, gen=rng, scale=0.5), leaf(4, gen=rng)
    out = F.conv2d(x, w, b, stride, pad, dil)
    gout = torch.rand(out.shape, generator=rng, dtype=torch.float64) - 0.5
    (out * gout).sum().backward()
    sx, sw, sb = shared_leaf(x), shared_leaf(w, 1), shared_leaf(b, 1)
    (sx.conv2d(sw, sb, stride, pad, dil) * gout).sum().backward()
    terms = out.shape[0] * out.shape[2] * out.shape[3]  # summed per weight / bias element
    assert_close(pt(sx.grad), x.grad, 27 * 8 * ULP)
    assert_close(pt(sw.grad), w.grad, terms * 8 * ULP)
    assert_close(pt(sb.grad), b.grad, terms * 8 * ULP)


@pytest.mark.parametrize("c,o,groups", [(4, 6, 2), (3, 3, 3), (4, 8, 4)])
@pytest.mark.parametrize("public_weight", [False, True])
def test_grouped_conv2d_grads(session, rng, c, o, groups, public_weight):
    """Grouped and depthwise convolutions, with a shared or a public weight."""
    x = leaf(2, c, 6, 5, gen=rng)
    w = leaf(o, c // groups, 3, 2, gen=rng, scale=0.5)
    b = leaf(o, gen=rng)
    out = F.conv2d(x, w, b, (1, 2), 1, 1, groups)
    gout = torch.rand(out.shape, generator=rng, dtype=torch.float64) - 0.5
    (out * gout).sum().backward()
    sx, sb = shared_leaf(x), shared_leaf(b, 1)
    sw = w.detach() if public_weight else shared_leaf(w, 1)
    (sx.conv2d(sw, sb, (1, 2), 1, 1, groups) * gout).sum().backward()
    # input grad: each element sums at most (o / groups) * kh * kw products;
    # weight and bias grads sum over the n * oh * ow output positions
    terms = out.shape[0] * out.shape[2] * out.shape[3]
    assert_close(pt(sx.grad), x.grad, (o // groups) * 6 * 8 * ULP)
    assert_close(pt(sb.grad), b.grad, terms * 8 * ULP)
    if not public_weight:
        assert_close(pt(sw.grad), w.grad, terms * 8 * ULP)


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), slice(1, None, 2)),
        (1, slice(None, None, 3), None),
        (slice(0, 3, 2), Ellipsis, slice(None, None, 2)),
        (Ellipsis, 2),
    ],
)
def test_indexing_grads_including_steps(session, rng, index):
    """Backward of indexing with ints, None and slices of any positive step:
    the gradient scattered back to the viewed positions (exact: no products)."""
    x = leaf(4, 7, 5, gen=rng)
    out = x[index]
    gout = torch.rand(out.shape, generator=rng, dtype=torch.float64) - 0.5
    (out * gout).sum().backward()
    sx = shared_leaf(x)
    (sx[index] * gout).sum().backward()
    # one truncated product per element (x * gout), then a placement
    assert_close(pt(sx.grad), x.grad, 2 * ULP)


def test_relu_maxpool_avgpool_flatten_residual_grads(session, rng):
    x = leaf(2, 2, 6, 6, gen=rng)
    gout = torch.rand(2, 2 * 3 * 3, generator=rng, dtype=torch.float64) - 0.5

    def net(t, lib):
        if lib == "torch":
            h = F.relu(t) + t  # residual
            h = F.max_pool2d(h, 2) + F.avg_pool2d(t, 2)
            return (h.flatten(1) * gout).sum()
        h = t.relu() + t
        h = h.max_pool2d(2) + t.avg_pool2d(2)
        return (h.flatten(1) * gout).sum()

    net(x, "torch").backward()
    sx = shared_leaf(x)
    net(sx, "cryptgpu").backward()
    assert_close(pt(sx.grad), x.grad, 16 * ULP)


def test_maxpool_padding_and_stride_grads(session, rng):
    x = leaf(1, 2, 7, 7, gen=rng)
    F.max_pool2d(x, 3, 2, 1).sum().backward()
    sx = shared_leaf(x)
    sx.max_pool2d(3, stride=2, padding=1).sum().backward()
    assert_close(pt(sx.grad), x.grad, 8 * ULP)


def test_mse_and_cross_entropy_grads(session, rng):
    z, t = leaf(4, 5, gen=rng, scale=3), torch.rand(4, 5, generator=rng, dtype=torch.float64)
    F.mse_loss(z, t).backward()
    sz = shared_leaf(z)
    cryptgpu.nn.MSELoss()(sz, t).backward()
    assert_close(pt(sz.grad), z.grad, 8 * ULP)

    z2 = leaf(4, 5, gen=rng, scale=3)
    labels = torch.tensor([0, 3, 4, 1])
    loss = F.cross_entropy(z2, labels)
    loss.backward()
    sz2 = shared_leaf(z2)
    sl = cryptgpu.nn.CrossEntropyLoss()(sz2, labels)
    sl.backward()
    # softmax by CrypTen's exp/reciprocal: about 1% relative (test_functions)
    assert_close(pt(sz2.grad), z2.grad, 0.01)
    assert abs(pt(sl).item() - loss.item()) < 0.05


@pytest.mark.parametrize("how", ["module", "functional", "target_grad"])
def test_mse_gradient_keeps_its_precision_over_many_elements(session, rng, how):
    """MSELoss over n = 1000 elements of scale 50: its gradient 2 (x - t) / n
    is one product divided exactly by 2^(f-1) n, within 2 units of 2^-f
    (x and t are encoded within half a unit each: 2 * 2 / n units more).
    Until 2026-12-06 g / n was rounded first (65.5 units, +-1): up to 2 *
    50 * 2^-16 = 1.5e-3 off (a relative error of n 2^-17 in every element)."""
    x = leaf(10, 100, gen=rng, scale=50)
    t = torch.randn(10, 100, generator=rng, dtype=torch.float64) * 50
    F.mse_loss(x, t).backward()
    sx = shared_leaf(x)
    st = cryptgpu.cryptensor(t, requires_grad=True) if how == "target_grad" else t
    if how == "module":
        loss = cryptgpu.nn.MSELoss()(sx, st)
    else:
        loss = F.mse_loss(sx, st)
    loss.backward()
    assert_close(pt(sx.grad), x.grad, 2 * ULP + 4 * ULP / 1000)
    if how == "target_grad":
        assert_close(pt(st.grad), -x.grad, 2 * ULP + 4 * ULP / 1000)
    # the loss itself: n squares summed and divided once (each square of
    # |d| < 200 within 1 unit + 400 * 1 unit of encoding): a relative 1e-4
    assert abs(pt(loss).item() - F.mse_loss(x, t).item()) <= 1e-4 * F.mse_loss(x, t).item()


@pytest.mark.parametrize(
    "kw",
    [
        dict(momentum=0.9, weight_decay=0.01),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.5, dampening=0.3, weight_decay=0.1),
    ],
)
def test_sgd_momentum_weight_decay_matches_torch(session, rng, kw):
    """Three steps of torch.optim.SGD; each step adds a few truncations of
    values below 8, amplified by at most 1 + lr * 6 per step: 64 units."""
    p = leaf(5, gen=rng)
    opt = torch.optim.SGD([p], lr=0.1, **kw)
    sp = shared_leaf(p)
    sopt = cryptgpu.optim.SGD([sp], lr=0.1, **kw)
    for k in range(3):
        opt.zero_grad()
        (p * p * (k + 1)).sum().backward()
        opt.step()
        sopt.zero_grad()
        (sp * sp * (k + 1)).sum().backward()
        sopt.step()
    assert_close(pt(sp), p.detach(), 64 * ULP)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_training_tracks_the_plaintext_loss_curve_and_accuracy(batchnorm):
    """Issue 6: private training on digits reaches accuracy within 2 points of
    the same training in plaintext (same init, same batches)."""
    import importlib.util
    import pathlib
    import sys

    ex_dir = pathlib.Path(__file__).resolve().parents[1] / "examples"
    sys.path.insert(0, str(ex_dir))
    try:
        spec = importlib.util.spec_from_file_location(
            "digits_training", ex_dir / "digits_training.py"
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        # seeded shares: with fresh randomness each run the fixed-point noise
        # differs, and a max-pool window whose two largest values are within
        # it routes its gradient elsewhere (README, Limitations), so the
        # trajectories differ from run to run (one failure in about 15 runs
        # of the loss-curve bound below, by a helper on 2026-12-05)
        r = mod.run(epochs=2, show=False, batchnorm=batchnorm, seed=11)
    finally:
        sys.path.remove(str(ex_dir))
    assert r["plain_acc"] > 85
    assert abs(r["plain_acc"] - r["private_acc"]) <= 2.0
    # the loss curves agree step by step (same batches, same init)
    diffs = [abs(a - b) for a, b in zip(r["plain_losses"], r["private_losses"])]
    assert max(diffs) < 0.1, max(diffs)


def test_backward_errors(session):
    x = cryptgpu.cryptensor(torch.ones(3)).requires_grad_()
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    y = cryptgpu.cryptensor(torch.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    with pytest.raises(ValueError, match="learning rate"):
        cryptgpu.optim.SGD([x], lr=-0.1)  # torch accepts lr=0
    with pytest.raises(ValueError, match="Nesterov"):
        cryptgpu.optim.SGD([x], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="encrypt"):
        cryptgpu.optim.SGD([torch.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="labels"):
        cryptgpu.nn.CrossEntropyLoss()(x.reshape(1, 3), torch.tensor([0, 1]))


def test_no_grad_records_nothing(session):
    x = cryptgpu.cryptensor(torch.ones(3)).requires_grad_()
    with cryptgpu.autograd.no_grad():
        y = x * 2
    assert not y.requires_grad and y._back is None


def test_to_pytorch_roundtrip(session):
    m = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    cm = cryptgpu.nn.from_pytorch(m).encrypt()
    m2 = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    cm.decrypt().to_pytorch(m2)
    assert_close(m2[0].weight.detach(), m[0].weight.detach(), ULP)


@pytest.mark.parametrize("flow", ["fold_false", "crypten_default"])
def test_batchnorm_training_grads_and_running_stats(session, flow):
    """Both ways a user converts a model to train it: fold_batchnorm=False,
    and CrypTen's flow (from_pytorch(net, dummy).encrypt(); net.train()) on
    a PyTorch model in train mode, which must keep its BatchNorm (it was
    folded by default, silently training a different network)."""
    import copy

    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU()
    ).double()
    m[1].weight.data.uniform_(0.5, 1.5)
    m[1].bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    g = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    if flow == "fold_false":
        cm = cryptgpu.nn.from_pytorch(copy.deepcopy(m), fold_batchnorm=False).encrypt().train()
    else:
        cm = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.empty(1, 2, 6, 6))
        cm.encrypt()
        cm.train()
    assert sum(isinstance(mm, cryptgpu.nn.BatchNorm) for mm in cm.modules()) == 1
    m.train()
    ref = m(x)  # one training-mode forward each: running stats move once
    (ref * g).sum().backward()
    out = cm(cryptgpu.cryptensor(x, src=1))
    (out * g).sum().backward()
    # forward: batch statistics and inv_sqrt (1e-8 relative on [0.1, 130])
    assert_close(pt(out), ref.detach(), 64 * ULP)
    terms = 4 * 4 * 4  # gradient terms summed per channel
    for p, t in zip(cm.parameters(), [m[0].weight, m[0].bias, m[1].weight, m[1].bias]):
        assert_close(pt(p.grad), t.grad, terms * 16 * ULP * max(1.0, t.grad.abs().max().item()))
    bn = [mm for mm in cm.modules() if isinstance(mm, cryptgpu.nn.BatchNorm)][0]
    assert_close(pt(bn._buffers["running_mean"]), m[1].running_mean, 8 * ULP)
    assert_close(pt(bn._buffers["running_var"]), m[1].running_var, 64 * ULP)
    # eval after training: running statistics through a private inv_sqrt
    cm.eval()
    m.eval()
    assert_close(pt(cm(cryptgpu.cryptensor(x))), m(x).detach(), 0.01)


def test_batchnorm_running_statistics_with_a_small_momentum(session):
    """r * (1 - m) + s * m rounded (1 - m) to 16 fractional bits: at
    momentum 0.001 the running statistics drifted by about 2^-17 / m
    relative (0.5% at steady state; 0.08 and 1.2 off here after 200 steps,
    a probe of 2026-12-06). r + (s - r) * m has no such bias."""
    import copy

    torch.manual_seed(0)
    m = torch.nn.BatchNorm1d(3, momentum=0.001).double()
    with torch.no_grad():
        m.running_mean.fill_(100.0)
        m.running_var.fill_(900.0)
    cm = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.zeros(8, 3), fold_batchnorm=False)
    cm.encrypt().train()
    g = torch.Generator().manual_seed(0)
    steps = 200
    for _ in range(steps):
        x = torch.randn(32, 3, generator=g, dtype=torch.float64) * 30 + 100
        m(x)
        with cryptgpu.no_grad():
            cm(cryptgpu.cryptensor(x, src=1))
    # each step's increment (s - r) * m is one truncated product (within a
    # unit of torch's), so N steps add at most N units; a batch statistic's
    # own error s - s' enters times m, at most (1 - (1 - m)^N) < 0.2 of it
    # in all (the mean's within 8 units, the variance's within 64 units
    # relative to its size, 900, as the test above states)
    assert_close(pt(cm._buffers["running_mean"]), m.running_mean, steps * ULP + 8 * ULP)
    assert_close(pt(cm._buffers["running_var"]), m.running_var, steps * ULP + 0.2 * 64 * ULP * 900)


def test_a_folded_model_refuses_to_train_and_conversion_keeps_the_mode(session):
    """A model converted in eval mode has its BatchNorm folded (inference):
    .train() raises instead of training without batch statistics; the
    PyTorch model's own mode is left as it was."""
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU()
    ).double()
    cm = cryptgpu.nn.from_pytorch(m)
    assert m.training, "from_pytorch switched the user's model to eval"
    assert not cm.training  # converted modules start in eval mode
    cm.eval()  # eval is always allowed
    m.eval()
    folded = cryptgpu.nn.from_pytorch(m).encrypt()
    assert not m.training
    assert not any(isinstance(mm, cryptgpu.nn.BatchNorm) for mm in folded.modules())
    with pytest.raises(RuntimeError, match="fold_batchnorm=False"):
        folded.train()
    assert not folded.training
    m.train()
    asked = cryptgpu.nn.from_pytorch(m, fold_batchnorm=True)
    with pytest.raises(RuntimeError, match="folded"):
        asked.train()
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    m.eval()
    # The folded model still infers like PyTorch in eval mode.
    got = folded(cryptgpu.cryptensor(x)).get_plain_text(dtype=torch.float64)
    assert_close(got, m(x).detach(), 64 * ULP)


def test_overflow_is_reported_with_the_layer_name(session):
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()).double()
    with torch.no_grad():
        m[0].weight.fill_(1000.0)
    cm = cryptgpu.nn.from_pytorch(m).encrypt().train()
    x = cryptgpu.cryptensor(torch.tensor([[30.0, 40.0]]), src=1)
    cryptgpu.nn.check_overflow(2.0**14)
    try:
        with pytest.raises(cryptgpu.nn.FixedPointOverflowError, match="'0' \\(Linear\\)"):
            cm(x)
        cm(cryptgpu.cryptensor(torch.tensor([[0.001, 0.002]]), src=1))  # in range: no error
    finally:
        cryptgpu.nn.check_overflow(None)
    with pytest.raises(ValueError):
        cryptgpu.nn.check_overflow(-1.0)


def test_autograd_misuse_raises_as_torch_does(session):
    """A second backward through a freed graph, and an output gradient of the
    wrong shape, raise RuntimeError as in torch (the second backward used to
    treat the root as a leaf and return silently); the session stays usable."""
    x = cryptgpu.cryptensor(torch.ones(3)).requires_grad_()
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    z = x * 2
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        z.backward(cryptgpu.cryptensor(torch.ones(4)))
    with pytest.raises(RuntimeError, match="scalar outputs"):
        z.backward()
    # a fresh forward pass backpropagates again, accumulating into x.grad
    (x * x).sum().backward()
    assert_close(x.grad.get_plain_text(dtype=torch.float64), torch.full((3,), 4.0), 2 * ULP)
    # a one-hot target of the wrong shape is a shape error (RuntimeError too)
    with pytest.raises(RuntimeError, match="one-hot target"):
        cryptgpu.nn.CrossEntropyLoss()(
            cryptgpu.cryptensor(torch.ones(2, 3)), cryptgpu.cryptensor(torch.ones(2, 4))
        )


@pytest.mark.parametrize("fn", ["abs", "sigmoid", "tanh"])
def test_abs_sigmoid_tanh_grads_on_both_sides_of_zero(session, fn):
    """|x| is computed from an injected sign bit that the tape does not see;
    it back-propagated as if |x| were x, so these gradients had the wrong
    sign for x < 0 (sigmoid'(-2) came out as -0.105). Compared with the same
    approximation run in float64 (cryptgpu.functions on torch tensors), so
    only the fixed-point error remains: CrypTen's exp squares 8 times, which
    multiplies a truncation's 2^-16 by up to 2^8 relative, 4e-3 of a value
    below 1; the gradient (at most 0.25 for sigmoid, 1 for tanh = 2
    sigmoid(2x) - 1, whose chain rule multiplies by 4) within 1e-3 and 4e-3.
    The points avoid 0, where torch's |x|' is 0 and ours is 1."""
    from cryptgpu import functions as fx

    xs = torch.linspace(-6, 6, 48, dtype=torch.float64)
    x = shared_leaf(xs)
    getattr(x, fn)().sum().backward()
    xt = xs.clone().requires_grad_()
    (xt.abs() if fn == "abs" else getattr(fx, fn)(xt)).sum().backward()
    tol = {"abs": 0.0, "sigmoid": 1e-3, "tanh": 4e-3}[fn]
    assert (pt(x.grad) - xt.grad).abs().max() <= tol
    xr = xs.clone().requires_grad_()
    getattr(xr, fn)().sum().backward()
    big = xr.grad.abs() > 2 * tol  # the sign is only defined above the tolerance
    assert torch.equal(torch.sign(pt(x.grad))[big], torch.sign(xr.grad)[big])


def test_frozen_parameters_stay_frozen(session):
    """A torch parameter with requires_grad=False converts frozen: encrypt()
    and train() leave it so (they set every parameter to require grad, which
    trained a frozen layer: 0.18 off torch after 3 steps), and so does one
    frozen after conversion. Training the rest follows torch."""
    torch.manual_seed(6)
    m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    m[0].weight.requires_grad_(False)
    m[0].bias.requires_grad = False
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    pm = cryptgpu.nn.from_pytorch(m.train(), x).encrypt().train()
    assert [p.requires_grad for p in pm.parameters()] == [False, False, True, True]
    opt = cryptgpu.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=0.5)
    ref = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        pm.train()  # a torch loop calls train() every epoch
        opt.zero_grad()
        cryptgpu.nn.CrossEntropyLoss()(pm(cryptgpu.cryptensor(x)), y).backward()
        opt.step()
        ref.zero_grad()
        F.cross_entropy(m(x), y).backward()
        ref.step()
    for p, w in zip(pm.parameters(), m.parameters()):
        # the frozen layer moves not at all (its encoding only); the rest by
        # 3 steps of lr 0.5 times gradients within a few 1e-5
        tol = ULP if not w.requires_grad else 3 * 0.5 * 1e-4
        assert_close(pt(p), w.detach(), tol)
    last = list(pm.parameters())[2]
    last.requires_grad_(False)
    pm.eval()
    pm.train()
    assert [p.requires_grad for p in pm.parameters()] == [False, False, False, True]
    pm.decrypt().encrypt().train()  # through a decrypt and a new encrypt
    assert [p.requires_grad for p in pm.parameters()] == [False, False, False, True]


def test_state_dict_to_and_from_torch_with_batchnorm(session):
    """An encrypted model loads a torch model's state_dict (shared from
    party 0 in place, so the optimiser keeps working; num_batches_tracked
    listed as torch lists it) and, decrypted, gives torch a state_dict it
    loads: running statistics opened too (they stayed shared). BatchNorm
    on one value per channel in training raises torch's ValueError."""
    torch.manual_seed(7)

    def make():
        return torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
        ).double()

    x = torch.randn(6, 3, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(make().train(), x).encrypt().train()
    opt = cryptgpu.optim.SGD(pm.parameters(), lr=0.1)
    src = make()
    src(x)  # running statistics and num_batches_tracked move
    assert list(pm.state_dict()) == list(src.state_dict())
    pm.load_state_dict(src.state_dict())
    assert all(
        isinstance(v, cryptgpu.SharedTensor) or k.endswith("num_batches_tracked")
        for k, v in pm.state_dict().items()
    )
    for k, v in pm.state_dict().items():
        want = src.state_dict()[k]
        got = pt(v) if isinstance(v, cryptgpu.SharedTensor) else v
        assert_close(got.double(), want.double(), ULP / 2)  # the encoding only
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    cryptgpu.nn.CrossEntropyLoss()(pm(cryptgpu.cryptensor(x)), y).backward()
    opt.step()  # still the model's parameters after the load
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        pm(cryptgpu.cryptensor(torch.randn(1, 3)))
    pm.eval().decrypt()
    back = make()
    back.load_state_dict(pm.state_dict())
    assert int(back[1].num_batches_tracked) == 2
    out = pm(x)  # a decrypted model on plaintext input: a torch tensor
    assert isinstance(out, torch.Tensor)
    assert_close(out, back.eval()(x).detach(), 1e-9)
    assert float(cryptgpu.cryptensor(torch.tensor([2.5]))) == 2.5  # float(loss)


def test_autograd_grad_backward_inputs_and_several_outputs(session):
    """torch.autograd.grad, backward(inputs=...) and torch.autograd.backward
    on several outputs raised NotImplementedError. Gradients of a product
    and a ReLU here are exact but for the product's truncation (one ulp
    per summed term, 3 terms) and the inputs' encoding."""
    x0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    w0 = torch.tensor([[0.3, 0.2, -0.1], [0.5, -0.4, 0.2]], dtype=torch.float64)
    x, w = shared_leaf(x0), shared_leaf(w0, 1)
    xt, wt = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    want = torch.autograd.grad((xt @ wt.t()).relu().sum(), [xt, wt])
    y = (x @ w.t()).relu().sum()
    (gx,) = torch.autograd.grad(y, x, retain_graph=True)
    assert_close(pt(gx), want[0], 4 * ULP)
    assert x.grad is None and w.grad is None  # grad() leaves .grad alone
    gx, gw = torch.autograd.grad([y], [x, w])
    assert_close(pt(gx), want[0], 4 * ULP)
    assert_close(pt(gw), want[1], 4 * ULP)
    z = cryptgpu.cryptensor(torch.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused"):
        torch.autograd.grad((x * 2).sum(), [x, z])
    assert torch.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)[1] is None
    with pytest.raises(NotImplementedError, match="create_graph"):
        torch.autograd.grad((x * 2).sum(), x, create_graph=True)
    (x @ w.t()).sum().backward(inputs=[w])  # only w receives a gradient
    assert x.grad is None
    assert_close(pt(w.grad), x0.expand(2, 3), 4 * ULP)
    torch.autograd.backward([(x * 2).sum(), (x * 3).sum()])
    assert_close(pt(x.grad), torch.full((1, 3), 5.0, dtype=torch.float64), 0.0)
    h = x * 2  # a gradient with respect to a non-leaf
    (gh,) = torch.autograd.grad((h * h).sum(), h)
    assert_close(pt(gh), 4 * x0, 8 * ULP)


GRID = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)  # on the 2^-16 grid: no encoding error


def test_requires_grad_of_a_computed_tensor_cannot_be_turned_off(session):
    """``y.requires_grad_(False)`` on a recorded result detached it without
    a word (backward then missed half of d(2x * x)/dx); torch raises."""
    yt = GRID.clone().requires_grad_() * 2
    with pytest.raises(RuntimeError) as want:
        yt.requires_grad_(False)
    x = shared_leaf(GRID)
    y = x * 2
    for turn_off in (lambda: y.requires_grad_(False), lambda: setattr(y, "requires_grad", False)):
        with pytest.raises(RuntimeError) as got:
            turn_off()
        assert str(got.value) == str(want.value)
    assert y.requires_grad_(True) is y and y.requires_grad  # as torch: allowed, no change
    (y * x).sum().backward()
    # d(2x * x)/dx = 4x: g y and (g x) 2, a truncation each, the second doubled
    assert_close(pt(x.grad), 4 * GRID, 3 * ULP)
    assert usable()


def test_detach_in_place_of_a_result_others_read_is_refused(session):
    """torch: detach_() makes y a leaf, and results computed from y before
    keep their history (x * 2 * 3: x.grad 6). Ours cut them too, silently
    (x.grad stayed None: a user probe); our graph's nodes are the tensors,
    so it is refused now, naming y.detach() instead, and the graph stays
    whole. A result nothing has read detaches, and a tensor detached and
    made a leaf again takes the gradients of what is computed from it
    after, as torch's, also once a backward freed its history. Products by
    integers: exact."""
    x = shared_leaf(GRID)
    y = x * 2
    z = y * 3
    with pytest.raises(RuntimeError, match=r"already read.*y = y\.detach\(\)"):
        y.detach_()
    assert y.requires_grad and y.grad_fn is not None
    z.sum().backward()
    assert torch.equal(pt(x.grad), torch.full_like(GRID, 6.0)) and y.grad is None
    for free_first in (False, True):
        x.grad = None
        y = x * 2
        if free_first:
            y.sum().backward()
            x.grad = None
        y.detach_()
        assert not y.requires_grad and y.grad_fn is None
        y.requires_grad_()
        (y * 5).sum().backward()
        assert torch.equal(pt(y.grad), torch.full_like(GRID, 5.0)) and x.grad is None
    assert usable()


def test_grad_fn_detach_in_place_and_register_hook_as_torch(session):
    """grad_fn, detach_() and register_hook() raised AttributeError."""
    xt = GRID.clone().requires_grad_()
    x = shared_leaf(GRID)
    assert x.grad_fn is None and cryptgpu.cryptensor(GRID).grad_fn is None
    for op in (operator.mul, operator.add, operator.sub):
        y, yt = op(x, x), op(xt, xt)
        assert y.grad_fn is y.grad_fn and y.grad_fn.name() == yt.grad_fn.name()
        assert repr(y.grad_fn).startswith(f"<{yt.grad_fn.name()} object at ")
    y = x * x
    y.sum().backward()
    assert y.grad_fn.name() == "MulBackward0"  # still named after backward, as torch's
    # detach_: cut in place; the value stays (x * x: one truncation)
    y = x * x
    assert y.detach_() is y
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None
    assert_close(pt(y), GRID * GRID, ULP)
    x.grad = None
    (y * x).sum().backward()  # x reached through the second factor only
    assert_close(pt(x.grad), GRID * GRID, 2 * ULP)  # y's truncation, then one more
    with pytest.raises(RuntimeError, match="Can't detach views in-place"):
        (x * 2)[0:2].detach_()
    # register_hook on a leaf (before .grad) and on a result (before it
    # passes the gradient on; a retained .grad sees the hooked value)
    seen = []
    for t in (x, xt):
        t.grad = None
        h = t.register_hook(lambda g: seen.append(g) or g * 3)
        (t * t).sum().backward()
        h.remove()
        (t * t).sum().backward()
    # 2x is two products g x, a truncation each; 3 times it (the hook: an
    # integer factor, exact), then 2x again: 8 truncations
    assert_close(pt(seen[0]), seen[1], 2 * ULP)
    assert_close(pt(x.grad), xt.grad, 8 * ULP)
    ys = []
    for t in (x, xt):
        t.grad = None
        ys.append(t * 2)
        ys[-1].retain_grad()
        ys[-1].register_hook(lambda g: g * 0.5)
        ys[-1].sum().backward()
    # the hook's product by 0.5: one truncation, doubled through y = 2x
    assert_close(pt(ys[0].grad), ys[1].grad, ULP)
    assert_close(pt(x.grad), xt.grad, 2 * ULP)
    x.grad = None
    x.register_hook(lambda g: torch.ones(3))  # a plaintext one: public
    (x * x).sum().backward()
    assert_close(pt(x.grad), torch.ones(3, dtype=torch.float64), 0.0)
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't"):
        cryptgpu.cryptensor(GRID).register_hook(lambda g: g)
    z = shared_leaf(GRID)
    z.register_hook(lambda g: cryptgpu.cryptensor(torch.ones(4)))
    with pytest.raises(RuntimeError, match="has changed the size of value"):
        (z * 2).sum().backward()
    assert usable()


def test_a_second_backward_accumulates_into_the_same_grad_tensor(session):
    """torch adds a second backward's gradient into the same .grad tensor
    (code holding ``g = p.grad`` sees the sum); ours made a new one."""
    xt = GRID.clone().requires_grad_()
    x = shared_leaf(GRID)
    for t in (x, xt):
        (t * t).sum().backward()
    g, gt = x.grad, xt.grad
    first = x.grad[0:2]  # a view of it follows too
    for t in (x, xt):
        (t * t).sum().backward()
    assert x.grad is g and xt.grad is gt
    # 2x twice, each two products g x with a truncation each
    assert_close(pt(g), gt, 4 * ULP)
    assert_close(pt(first), gt[0:2], 4 * ULP)
    x.grad.zero_()  # zero_grad(set_to_none=False)
    (x * 3).sum().backward()
    assert x.grad is g
    assert_close(pt(g), torch.full((3,), 3.0, dtype=torch.float64), 0.0)  # exact


@pytest.mark.parametrize("bad", [2.0, [1.0, 1.0, 1.0], np.ones(3)], ids=repr)
def test_backward_gradient_must_be_a_tensor_or_none(session, bad):
    """A number, a list or an array as backward's gradient was taken as a
    public one; torch raises TypeError."""
    x = shared_leaf(GRID)
    y = (x * 2).sum() if isinstance(bad, float) else x * 2
    yt = (GRID.clone().requires_grad_() * 2).sum() if isinstance(bad, float) else None
    if yt is not None:
        with pytest.raises(TypeError):  # (torch's words vary with the form)
            yt.backward(bad)
    with pytest.raises(TypeError, match="gradients can be either Tensors or None"):
        y.backward(bad)
    assert x.grad is None
    y.backward(torch.tensor(1.0) if yt is not None else torch.ones(3))  # a tensor still works
    assert_close(pt(x.grad), torch.full((3,), 2.0, dtype=torch.float64), 0.0)
    assert usable()


def test_hooks_on_a_converted_models_parameters_survive_decrypt_and_encrypt(session):
    """register_hook on a converted model's parameters, then decrypt() and
    encrypt() with nothing else holding them: the weight came back a new
    object without its hook (clipping or freezing by hook silently stopped:
    a grad of 1.42 instead of 0, a user probe). Torch's parameters keep
    their hooks; ours carry them to the new shares."""
    torch.manual_seed(0)
    pm = cryptgpu.nn.from_pytorch(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.zeros(1, 3))
    pm.encrypt().train()
    fired = []
    for name, p in pm.named_parameters():
        p.register_hook(lambda g, name=name: fired.append(name) or g * 0)
    pm.decrypt()
    pm.encrypt()
    pm.train()
    pm(cryptgpu.cryptensor(torch.ones(1, 3))).sum().backward()
    assert sorted(fired) == ["0.bias", "0.weight"]
    for p in pm.parameters():
        assert float(p.grad.get_plain_text().abs().max()) == 0.0
    import copy
    import pickle

    pickle.dumps(copy.deepcopy(pm.decrypt()).state_dict())  # the kept hooks are no state
