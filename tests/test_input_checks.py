"""Inputs that used to give a silently wrong answer or an unhelpful error
(issue 16's list): each is now torch's answer or a clear exception of the
type torch raises, and the session stays usable afterwards."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, assert_close, prod_tol, rand, usable


def grid(t):
    """Round to the fixed-point grid so that comparisons are exact."""
    return (t * 2**16).round() / 2**16


@pytest.mark.parametrize("dim", [0, 1, 2, -3])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_over_any_dim_of_a_3d_tensor(session, rng, dim, keepdim):
    """max/min/amax over a leading dim keep torch's order of the other dims
    (a transpose used to return [.., last, ..] swapped). Tolerance 0: the
    tournament selects one of the encoded inputs exactly."""
    a = grid(rand(3, 4, 5, gen=rng, scale=10))
    x = cryptgpu.cryptensor(a)
    v, oh = x.max(dim, keepdim=keepdim)
    want_v, want_i = a.max(dim, keepdim=keepdim)
    assert_close(v.get_plain_text(dtype=torch.float64), want_v, ENC)
    want_oh = torch.nn.functional.one_hot(a.argmax(dim), a.shape[dim]).movedim(-1, dim)
    assert_close(oh.get_plain_text(dtype=torch.float64), want_oh.to(torch.float64), 0.0)
    assert_close(
        x.amax(dim, keepdim=keepdim).get_plain_text(dtype=torch.float64),
        a.amax(dim, keepdim=keepdim),
        ENC,
    )
    assert_close(
        x.min(dim, keepdim=keepdim)[0].get_plain_text(dtype=torch.float64),
        a.min(dim, keepdim=keepdim)[0],
        ENC,
    )


def test_sum_and_mean_over_no_dims_reduce_everything(session, rng):
    """torch: an empty dim list reduces every dim. Sums of encoded inputs are
    exact sums of grid values (error: 12 encodings); the mean adds one
    truncation."""
    a = rand(3, 4, gen=rng)
    x = cryptgpu.cryptensor(a)
    assert_close(x.sum(()).get_plain_text(dtype=torch.float64), a.sum(()), 12 * ENC)
    assert_close(x.mean([]).get_plain_text(dtype=torch.float64), a.mean(()), ENC + 2**-16)
    with pytest.raises(RuntimeError, match="multiple times"):
        x.sum((0, -2))


def test_sizes_that_overflow_are_refused_not_wrapped(session):
    """expand(2^32, 2^32) has 2^64 elements: refused (it used to wrap to an
    empty tensor whose sum is 0)."""
    x = cryptgpu.cryptensor(torch.ones(1, 1))
    with pytest.raises((MemoryError, ValueError)):
        x.expand(2**32, 2**32).sum()
    assert x.sum().get_plain_text().item() == 1.0


def test_integer_factors_that_would_wrap_are_refused(session):
    """x * 2^62 wrapped the ring to 0; a factor at or above 2^(63-2f) is now a
    ValueError naming the bound. Factors below it are exact (no truncation)."""
    x = cryptgpu.cryptensor(torch.tensor([1.0, -2.5]))
    with pytest.raises(ValueError, match="too large"):
        x * 2**62
    with pytest.raises(ValueError, match="too large"):
        x * 2**31
    assert (x * 1000).get_plain_text().tolist() == [1000.0, -2500.0]


def test_conv2d_bias_must_have_one_value_per_output_channel(session):
    x = cryptgpu.cryptensor(torch.ones(1, 2, 4, 4))
    w = torch.ones(3, 2, 3, 3)
    for bias in (torch.ones(1), torch.ones(2), torch.ones(3, 1)):
        with pytest.raises(RuntimeError, match="3 elements"):
            x.conv2d(w, bias=bias)
        with pytest.raises(RuntimeError, match="3 elements"):
            x.conv2d(w, bias=cryptgpu.cryptensor(bias))
    # 18 products of ones summed, +1: one truncation of an exact sum of
    # products of grid values, within one unit of 2^-f.
    got = x.conv2d(w, bias=torch.ones(3)).get_plain_text(dtype=torch.float64)
    assert_close(got, torch.full((1, 3, 2, 2), 19.0, dtype=torch.float64), 2**-16)


def test_party_indices_and_seeds_are_checked_with_clear_messages(session):
    x = cryptgpu.cryptensor(torch.ones(2))
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="0, 1 or 2"):
            x.get_plain_text(dst=bad)
        with pytest.raises(ValueError, match="0, 1 or 2"):
            x.party_shares(bad)
    assert x.get_plain_text().tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="seed"):
        cryptgpu.init(seed=2**64)
    with pytest.raises(TypeError, match="seed"):  # as Python does for a non-int
        cryptgpu.init(seed="1")


def test_cross_entropy_is_never_negative(session):
    """Confident, correct logits: the exact loss is about 1e-6, and the
    log/exp approximations used to make it negative (down to -0.0009).
    Each sample's loss is now clamped at 0, so the loss is >= 0 exactly, and
    within the approximations' 0.01 of torch's."""
    n, c = 64, 10
    labels = torch.arange(n) % c
    logits = torch.full((n, c), -7.0, dtype=torch.float64)
    logits[torch.arange(n), labels] = 7.0
    logits += torch.linspace(-0.5, 0.5, n * c, dtype=torch.float64).reshape(n, c)
    want = torch.nn.functional.cross_entropy(logits, labels).item()
    got = cryptgpu.nn.CrossEntropyLoss()(cryptgpu.cryptensor(logits), labels)
    v = got.get_plain_text(dtype=torch.float64).item()
    assert v >= 0.0, v
    assert abs(v - want) < 0.01, (v, want)


_N2, _N1 = np.int64(2), np.int64(1)
_T2 = torch.tensor(2)


@pytest.mark.parametrize(
    "name, f",
    [
        ("conv2d stride", lambda x, w: F.conv2d(x, w, stride=_N2)),
        ("conv2d padding pair", lambda x, w: F.conv2d(x, w, padding=(_N1, _N1))),
        ("conv2d dilation", lambda x, w: F.conv2d(x, w, dilation=_T2)),
        ("conv2d groups", lambda x, w: F.conv2d(x, w[:, :1], groups=np.int64(3))),
        ("conv1d stride", lambda x, w: F.conv1d(x[..., 0, :], w[..., 0, :], stride=_N2)),
        ("conv_transpose2d stride", lambda x, w: F.conv_transpose2d(x, w.mT[:3], stride=_N2)),
        ("max_pool2d", lambda x, w: F.max_pool2d(x, _N2, stride=_N1)),
        ("max_pool2d 0-d", lambda x, w: F.max_pool2d(x, _T2)),
        ("avg_pool2d", lambda x, w: F.avg_pool2d(x, _N2, padding=_N1)),
        ("max_pool1d", lambda x, w: F.max_pool1d(x[..., 0, :], _N2)),
        ("avg_pool1d", lambda x, w: F.avg_pool1d(x[..., 0, :], _N2, stride=_N1)),
        ("interpolate size", lambda x, w: F.interpolate(x, size=np.int64(3))),
    ],
)
def test_numpy_and_0d_integers_taken_as_torch_takes_them(session, rng, name, f):
    """NumPy integers and 0-d integer tensors are ints to torch; they were
    refused ("stride must be an int or a pair of ints, got np.int64(2)")."""
    x, w = rand(2, 3, 6, 6, gen=rng), rand(3, 3, 3, 3, gen=rng)
    want = f(x, w)
    # conv: at most 27 products of values below 1 (conftest.prod_tol);
    # pooling and nearest resizing: a mean of encoded inputs plus one
    # truncation
    assert_close(
        f(cryptgpu.cryptensor(x), w).get_plain_text(dtype=torch.float64), want, prod_tol(27, 1, 1)
    )


@pytest.mark.parametrize("size", [np.int64(4), torch.tensor(4)])
def test_layers_take_numpy_sizes_as_sizes(session, rng, size):
    """``Linear(np.int64(4), 2)`` took the number as its weight (and 2 as
    its bias), failing later with an obscure error; any integer is a size."""
    torch.manual_seed(0)
    lin = cryptgpu.nn.Linear(size, 2)
    conv = cryptgpu.nn.Conv2d(size, 2, 3)
    conv1 = cryptgpu.nn.Conv1d(size, 2, 3)
    assert tuple(lin.weight.shape) == (2, 4) and tuple(conv.weight.shape) == (2, 4, 3, 3)
    assert tuple(conv1.weight.shape) == (2, 4, 3)
    x = rand(3, 4, gen=rng)
    w, b = lin.weight.to(torch.float64), lin.bias.to(torch.float64)
    got = lin(cryptgpu.cryptensor(x)).get_plain_text(dtype=torch.float64)
    assert_close(got, F.linear(x, w, b), prod_tol(4, 1, 1) + ENC)  # 4 products, the bias's encoding


@pytest.mark.parametrize("layer", ["Linear", "Conv2d", "Conv1d"])
@pytest.mark.parametrize("size", ["4", 4.0, None])
def test_layers_refuse_non_integer_sizes_as_torch(session, layer, size):
    """``Linear("4", 2)`` built a layer whose weight was the string "4"."""
    args = (size, 2) if layer == "Linear" else (size, 2, 3)
    with pytest.raises(TypeError):
        getattr(torch.nn, layer)(*args)
    with pytest.raises(TypeError):
        getattr(cryptgpu.nn, layer)(*args)
    assert usable()


def test_converted_model_with_numpy_sizes(session, rng):
    """A torch model whose layer sizes came from NumPy (padding
    (np.int64(1), np.int64(1))) was refused by from_pytorch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, np.int64(3), padding=np.int64(1), stride=np.int64(1)),
        torch.nn.MaxPool2d(np.int64(2)),
        torch.nn.Flatten(),
    ).double()
    x = rand(2, 3, 4, 4, gen=rng)
    private = cryptgpu.nn.from_pytorch(model, torch.empty(2, 3, 4, 4)).encrypt()
    got = private(cryptgpu.cryptensor(x)).get_plain_text(dtype=torch.float64)
    # 27 products of values below 1, plus the bias's encoding
    assert_close(got, model(x).detach(), prod_tol(27, 1, 1) + ENC)


@pytest.mark.parametrize("bad", ["cpu", "meta", torch.device("cpu"), 0, torch.zeros(1)])
def test_get_plain_text_checks_its_dtype(session, bad):
    """get_plain_text(dtype=) took a device ('meta': the values gone), 0 or a
    tensor silently; torch's TypeError now, before any reveal. torch's
    Python types (float) are still taken. Grid values: exact."""
    a = grid(torch.tensor([1.5, -2.0]))
    x = cryptgpu.cryptensor(a)
    with pytest.raises(TypeError, match="must be torch.dtype"):
        x.get_plain_text(dtype=bad)
    got = x.get_plain_text(dtype=float)
    assert got.dtype == torch.float64 and torch.equal(got, a.double())
    assert usable()


def test_init_takes_the_device_forms_torch_does():
    """init(device=torch.device('cpu')) was TypeError and 'cpu:0' ValueError,
    where cryptensor(device=) and to() take them; 'cuda:N' keeps its
    message about how the parties are placed on GPUs."""
    try:
        for d in (torch.device("cpu"), "cpu:0", torch.device("cpu", 0)):
            cryptgpu.init(device=d)
            x = cryptgpu.cryptensor(torch.tensor([1.5]))
            assert x.device == torch.device("cpu") and usable()
            cryptgpu.uninit()
        for d in ("cuda:1", torch.device("cuda", 1)):
            with pytest.raises(ValueError, match="give 'cuda'"):
                cryptgpu.init(device=d)
        with pytest.raises(TypeError, match="torch.device"):
            cryptgpu.init(device=0)
        cryptgpu.init()
        assert usable()
    finally:
        cryptgpu.uninit()


def test_cuda_memory_peak_checks_the_gpu_index(session):
    """cryptgpu.cuda.memory_peak(-1) was OverflowError from the binding:
    ValueError, as device_map(-1)."""
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="non-negative"):
            cryptgpu.cuda.memory_peak(bad)
        with pytest.raises(ValueError):
            cryptgpu.cuda.device_map(bad)
    with pytest.raises(TypeError):
        cryptgpu.cuda.memory_peak(0.5)
    assert usable()
