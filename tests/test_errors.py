"""Bad input raises a specific Python exception with a clear message."""

import numpy as np
import pytest
import torch

import cryptgpu
from conftest import usable


def test_use_before_init():
    cryptgpu.uninit()
    with pytest.raises(RuntimeError, match="init"):
        cryptgpu.cryptensor([1.0])
    with pytest.raises(RuntimeError, match="init"):
        cryptgpu.stats()


def test_invalid_init_arguments():
    with pytest.raises(ValueError, match="precision_bits"):
        cryptgpu.init(precision_bits=0)
    with pytest.raises(ValueError, match="precision_bits"):
        cryptgpu.init(precision_bits=40)
    with pytest.raises(TypeError):
        cryptgpu.init(precision_bits=16.0)
    with pytest.raises(ValueError, match="unknown device"):
        cryptgpu.init(device="tpu")
    if not cryptgpu.cuda_is_available():  # no GPU: a RuntimeError naming the driver
        with pytest.raises(RuntimeError, match="libcuda"):
            cryptgpu.init(device="cuda")
    with pytest.raises(ValueError, match="device_map"):
        cryptgpu.init(device="cuda:1")


def test_cuda_detection_and_device_map():
    assert isinstance(cryptgpu.cuda_is_available(), bool)
    assert cryptgpu.cuda.device_map(0) is None
    assert cryptgpu.cuda.device_map(1) == [0, 0, 0]
    assert cryptgpu.cuda.device_map(4) == [0, 1, 2]
    with pytest.raises(ValueError):
        cryptgpu.cuda.device_map(-1)


@pytest.mark.parametrize("src", [3, -1])
def test_invalid_src(session, src):
    with pytest.raises(ValueError, match="src"):
        cryptgpu.cryptensor([1.0], src=src)


def test_src_wrong_type(session):
    with pytest.raises(TypeError, match="src"):
        cryptgpu.cryptensor([1.0], src="0")


def test_wrong_dtypes(session):
    with pytest.raises(TypeError, match="complex"):
        cryptgpu.cryptensor(torch.tensor([1 + 2j]))
    with pytest.raises(TypeError):
        cryptgpu.cryptensor(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        cryptgpu.cryptensor({"a": 1})
    with pytest.raises(TypeError):
        cryptgpu.cryptensor("1.0")
    x = cryptgpu.cryptensor([1.0])
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError):
        cryptgpu.cryptensor(x)


def test_unencodable_values(session):
    for bad in (float("nan"), float("inf"), -float("inf"), 2.0**40):
        with pytest.raises(cryptgpu.EncodingError):
            cryptgpu.cryptensor([1.0, bad])
    x = cryptgpu.cryptensor([1.0])
    with pytest.raises(ValueError):  # EncodingError is a ValueError
        x + float("nan")
    with pytest.raises(ValueError):
        x * 2.0**40


def test_python_ints_beyond_64_bits_are_unencodable_values(session):
    """cryptensor([2**70]) raised TypeError "list of object values" (a
    probe, 2026-12-06) where cryptensor(2**70) and [1.0, 2**63] raise
    EncodingError; 10**400, too large for a float64, raised OverflowError.
    torch.tensor([2**70], dtype=torch.float64) takes the value, which is
    outside the encoding's range: EncodingError, a ValueError."""
    x = cryptgpu.cryptensor([1.0])
    for bad in ([2**70], [[-(2**80)], [3]], [2**70, 1.5], 10**400, [10**400]):
        with pytest.raises(cryptgpu.EncodingError, match="range"):
            cryptgpu.cryptensor(bad)
        with pytest.raises(ValueError, match="range"):
            x + bad
    with pytest.raises(TypeError):  # not numbers: as before
        cryptgpu.cryptensor(["a", 2**70])
    assert usable()


def test_shape_mismatch(session):
    x = cryptgpu.cryptensor(torch.ones(2, 3))
    y = cryptgpu.cryptensor(torch.ones(4, 5))
    with pytest.raises(ValueError, match="broadcast"):
        x + y
    with pytest.raises(ValueError, match="broadcast"):
        x * torch.ones(3, 2)
    with pytest.raises(ValueError, match="align"):
        x @ x
    with pytest.raises(ValueError, match="reshape"):
        x.reshape(4, 2)
    with pytest.raises(IndexError):
        x[5]
    with pytest.raises(ValueError):
        cryptgpu.cat([x, y], dim=0)
    img = cryptgpu.cryptensor(torch.ones(1, 3, 5, 5))
    with pytest.raises(ValueError, match="channels"):
        img.conv2d(torch.ones(2, 4, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        img.conv2d(torch.ones(2, 3, 7, 7))
    with pytest.raises(ValueError):
        img.conv2d(torch.ones(2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="4-D"):
        x.conv2d(torch.ones(2, 3, 3, 3))
    with pytest.raises(ValueError):
        img.avg_pool2d(7)


def test_tensor_from_another_session(session):
    x = cryptgpu.cryptensor([1.0, 2.0])
    cryptgpu.init(seed=3)
    y = cryptgpu.cryptensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="earlier session"):
        x + y
    with pytest.raises(RuntimeError, match="earlier session"):
        x.get_plain_text()
    assert (y + y).get_plain_text().tolist() == [2.0, 4.0]


def test_copy_and_data_refuse_a_tensor_of_an_earlier_session_at_once(session):
    """b.copy_(a) and b.data = a with a of an earlier session succeeded and
    left b unusable ("belongs to an earlier session" at every later use);
    add_ refused it and left b as it was. All three refuse it now."""
    a = cryptgpu.cryptensor([1.5, -2.0])
    cryptgpu.init(seed=3)
    for change in (
        lambda b: b.copy_(a),
        lambda b: setattr(b, "data", a),
        lambda b: b.add_(a),
    ):
        b = cryptgpu.cryptensor([1.0, 1.0])
        with pytest.raises(RuntimeError, match="earlier session"):
            change(b)
        assert b.get_plain_text().tolist() == [1.0, 1.0]
    old = a
    b = cryptgpu.cryptensor([1.0, 1.0])
    with pytest.raises(RuntimeError, match="earlier session"):
        old.copy_(b)  # into a tensor of an earlier session, as old.add_(b)
    assert usable()


def test_sessions_are_per_thread_and_the_errors_say_so(session):
    """A tensor or model of the main thread's session used in a worker
    thread said "not initialised: call cryptgpu.init() first" (init had
    been called, in another thread), and after init() in the worker
    "belongs to an earlier session" (it belonged to the main thread's
    live session)."""
    from concurrent.futures import ThreadPoolExecutor

    model = cryptgpu.nn.from_pytorch(torch.nn.Linear(4, 2), torch.zeros(1, 4)).encrypt()
    x = cryptgpu.cryptensor(torch.ones(3, 4))

    def without_init():
        with pytest.raises(RuntimeError, match="sessions are per thread") as e:
            x.get_plain_text()
        assert "MainThread" in str(e.value) and "first" not in str(e.value)
        with pytest.raises(RuntimeError, match="sessions are per thread"):
            model(x)

    def after_init():
        cryptgpu.init()
        try:
            with pytest.raises(RuntimeError, match="session of thread 'MainThread'") as e:
                x + 1
            assert "earlier" not in str(e.value)
            with pytest.raises(RuntimeError, match="session of thread 'MainThread'"):
                model(cryptgpu.cryptensor(torch.ones(3, 4)))
            assert usable()  # the worker's own session
        finally:
            cryptgpu.uninit()

    with ThreadPoolExecutor(1) as ex:
        ex.submit(without_init).result(timeout=120)
        ex.submit(after_init).result(timeout=120)
    assert model(x).shape == (3, 2)
    assert usable()


def test_secret_truth_value_and_division(session):
    x = cryptgpu.cryptensor([1.0])
    with pytest.raises(TypeError, match="secret"):
        bool(x)
    with pytest.raises(ZeroDivisionError):
        x / 0.0


def test_session_survives_rejected_calls(session):
    x = cryptgpu.cryptensor([1.0, 2.0])
    for _ in range(3):
        with pytest.raises(ValueError):
            x + cryptgpu.cryptensor([1.0, 2.0, 3.0])
    assert (x * 2).get_plain_text().tolist() == [2.0, 4.0]


def test_exception_hierarchy():
    assert issubclass(cryptgpu.ShapeError, ValueError)
    assert issubclass(cryptgpu.EncodingError, ValueError)
    assert issubclass(cryptgpu.PeerError, RuntimeError)
    assert issubclass(cryptgpu.InternalError, cryptgpu.CryptGPUError)


def _forked_child(q):
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.0, 3.0, 0.25], dtype=torch.float64))
    q.put((x * x).get_plain_text(dtype=torch.float64).tolist())
    q.put(x.relu().get_plain_text(dtype=torch.float64).tolist())


@pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(),
    reason="this platform has no fork start method",
)
def test_a_forked_child_can_use_the_session_it_inherited():
    """The local runtime keeps two party threads per session; a child forked
    after they started (multiprocessing's default start method on Linux)
    does not have them, and must fall back to threads of its own rather
    than wait for ever. Tolerance: one truncation, 2^-16."""
    import multiprocessing as mp

    cryptgpu.init(seed=1)
    try:
        y = cryptgpu.cryptensor(torch.ones(64, 64, dtype=torch.float64))
        (y @ y).get_plain_text()  # the party threads have run
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_forked_child, args=(q,))
        p.start()
        p.join(60)
        alive = p.is_alive()
        if alive:
            p.kill()
        assert not alive, "the forked child hung"
        assert p.exitcode == 0
        sq, relu = torch.tensor(q.get(timeout=5)), torch.tensor(q.get(timeout=5))
        assert (sq - torch.tensor([2.25, 4.0, 9.0, 0.0625])).abs().max() <= 2.0**-16
        assert (relu - torch.tensor([1.5, 0.0, 3.0, 0.25])).abs().max() <= 2.0**-16
    finally:
        cryptgpu.uninit()


def test_engine_polynomial_and_shifted_product_refuse_bad_arguments(session):
    """The engine calls behind GELU and exp (Horner's rule in one call, a
    product with an extra shift) check their arguments before any party
    starts: bad ones raise, and the session stays usable."""
    x = cryptgpu.cryptensor(torch.linspace(-1, 1, 6, dtype=torch.float64))
    w = cryptgpu.cryptensor(torch.ones(4, dtype=torch.float64))
    s = x._s()
    with pytest.raises(ValueError, match="degree"):
        s.horner(x._t, [1.0])
    with pytest.raises(ValueError, match="degree"):
        s.horner(x._t, [1.0, 2.0], x._t, 0.5)  # an added term needs degree 2
    with pytest.raises(cryptgpu.EncodingError):
        s.horner(x._t, [1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="differ"):
        s.horner(x._t, [1.0, 2.0, 3.0], w._t, 0.5)
    with pytest.raises(ValueError, match="shift"):
        s.mul_shift(x._t, x._t, 40)
    with pytest.raises(ValueError, match="differ"):
        s.mul_shift(x._t, w._t, 1)
    # still in step: a product and a polynomial after the refusals
    assert (x * 2).get_plain_text().tolist() == pytest.approx(
        torch.linspace(-2, 2, 6).tolist(), abs=1e-4
    )
    y = x._wrap(s.horner(x._t, [1.0, 2.0, 3.0]))
    want = 1 + 2 * torch.linspace(-1, 1, 6) + 3 * torch.linspace(-1, 1, 6) ** 2
    # two truncated steps: a few units of 2^-16
    assert (y.get_plain_text() - want).abs().max() < 1e-3


def test_clear_errors_for_torch_habits_with_a_shared_operand(session):
    """Until 2026-12-05: private / private with shapes that do not
    broadcast raised numpy's "Attempting to broadcast a dimension" (``*``
    a ShapeError); ``private == None`` a TypeError where torch answers
    False; ``t.add_(private)`` and ``t[0] = private[0]`` torch's "Multiple
    dispatch failed"; ``np.sum(private)`` "unexpected keyword argument
    'out'"."""
    x = cryptgpu.cryptensor(torch.ones(3, 4))
    y = cryptgpu.cryptensor(torch.ones(4, 5))
    with pytest.raises(cryptgpu.ShapeError, match=r"shapes \(3, 4\) and \(4, 5\) do not broadcast"):
        x * y
    cryptgpu.reset_stats()
    with pytest.raises(cryptgpu.ShapeError, match=r"shapes \(3, 4\) and \(4, 5\) do not broadcast"):
        x / y
    with pytest.raises(cryptgpu.ShapeError, match="do not broadcast"):
        torch.ones(4, 5) / x
    assert cryptgpu.stats()["total"]["rounds"] == 0  # refused before any work
    assert usable()
    t = torch.tensor([1.0])
    assert (x == None) is (t == None) is False  # noqa: E711 - the habit tested
    assert (x != None) is (t != None) is True  # noqa: E711
    for change in (
        lambda t: t.add_(x),
        lambda t: t.mul_(x),
        lambda t: t.masked_fill_(torch.ones(3, 4, dtype=torch.bool), x[0, 0]),
        lambda t: t.__setitem__(0, x[0]),
    ):
        t = torch.zeros(3, 4)
        with pytest.raises(cryptgpu.SecretValueError, match="cannot hold a secret"):
            change(t)
        assert torch.equal(t, torch.zeros(3, 4))
    for fn in (np.sum, np.mean, np.max):
        with pytest.raises(TypeError, match=f"numpy.{fn.__name__} does not take a SharedTensor"):
            fn(x)
    assert np.shape(x) == (3, 4) and np.ndim(x) == 2
    assert usable()


_NO_ARGS = ("ReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Flatten", "MaxPool2d", "GLU")


@pytest.mark.parametrize("bad", ["a", None, [1.0, 2.0]])
@pytest.mark.parametrize(
    "layer", ["Linear", "Conv2d", "Conv1d", "converted", "converted_relu_first", *_NO_ARGS]
)
def test_layers_called_with_a_non_tensor_raise_torchs_type_error(session, layer, bad):
    """A str/None/list input gave AttributeError ("'str' object has no
    attribute 'dim'"; "'list' object has no attribute 'relu'" for layers
    without weights, and for a converted model starting with one); torch
    raises TypeError."""
    torch.manual_seed(0)
    if layer.startswith("converted"):
        layers = [torch.nn.Linear(2, 2), torch.nn.ReLU()]
        ref = torch.nn.Sequential(*(layers[::-1] if layer.endswith("first") else layers))
        ours = cryptgpu.nn.from_pytorch(ref, torch.empty(1, 2)).encrypt()
    elif layer in _NO_ARGS:
        args = (2,) if layer == "MaxPool2d" else ()
        ref, ours = getattr(torch.nn, layer)(*args), getattr(cryptgpu.nn, layer)(*args)
    else:
        args = (2, 2) if layer == "Linear" else (2, 2, 1)
        ref, ours = getattr(torch.nn, layer)(*args), getattr(cryptgpu.nn, layer)(*args)
    with pytest.raises((TypeError, AttributeError)) as torchs:
        ref(bad)
    with pytest.raises(torchs.type):  # torch's type (AttributeError from Softmax, Flatten, GLU)
        ours(bad)
    assert usable()


def test_pad_with_a_non_number_value_raises_type_error(session):
    """F.pad(x, (1, 1), value="a") raised NotImplementedError "Unrecognised
    padding mode a"; torch raises TypeError."""
    x = torch.ones(2, 3)
    with pytest.raises(TypeError):
        torch.nn.functional.pad(x, (1, 1), value="a")
    with pytest.raises(TypeError):
        torch.nn.functional.pad(cryptgpu.cryptensor(x), (1, 1), value="a")
    assert usable()


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_value_with_a_copying_mode_is_torchs_runtime_error(session, mode):
    """torch refuses a non-zero value with reflect/replicate/circular
    (RuntimeError 'Padding mode "reflect" doesn't take in value
    argument'); ours dropped it silently, a 0-d shared value as well (whose
    value is unknown: refused too). value=0 stays accepted, as torch's."""
    pad = torch.nn.functional.pad
    a = torch.arange(12.0).view(1, 3, 4)
    x = cryptgpu.cryptensor(a)
    with pytest.raises(RuntimeError, match="doesn't take in value"):
        pad(a, (1, 1), mode=mode, value=2.0)
    for value in (2.0, cryptgpu.cryptensor(torch.tensor(2.0))):
        with pytest.raises(RuntimeError, match=f'"{mode}" doesn\'t take in value'):
            pad(x, (1, 1), mode=mode, value=value)
        with pytest.raises(RuntimeError, match="doesn't take in value"):
            x.pad((1, 1), value=value, mode=mode)
    assert usable()
    got = pad(x, (1, 1), mode=mode, value=0.0).get_plain_text()
    assert torch.equal(got, pad(a, (1, 1), mode=mode, value=0.0))


def test_a_string_where_a_number_goes_is_torchs_type_error(session):
    """F.leaky_relu/elu/threshold with "a" raised ValueError (from float())
    and F.dropout(x, "a") InvalidArgumentError; torch raises TypeError, as
    these do now; the session goes on."""
    import torch.nn.functional as F

    x = cryptgpu.cryptensor(torch.randn(2, 3))
    for call in (
        lambda: F.leaky_relu(x, "a"),
        lambda: F.elu(x, "a"),
        lambda: F.threshold(x, "a", 0.0),
        lambda: F.dropout(x, "a"),
        lambda: F.leaky_relu(x, "0.1"),  # float() read it as a number
    ):
        with pytest.raises(TypeError, match="must be Number"):
            call()
    assert usable()


def test_integer_casts_and_repeated_reduction_dims_raise_torchs_errors(session):
    """(x > 0).long(), x.int(), (x > 0).bool() were AttributeErrors; they
    say what to(torch.int64) says (shares hold fixed-point reals). amax/amin
    over (0, 0) returned a result; torch raises RuntimeError, as our sum."""
    x = cryptgpu.cryptensor(torch.randn(3, 4))
    for cast in (lambda: (x > 0).long(), lambda: x.int(), lambda: (x > 0).bool()):
        with pytest.raises(NotImplementedError, match="fixed-point reals"):
            cast()
    t = torch.randn(3, 4)
    for dims in ((0, 0), (1, -1)):
        for name in ("amax", "amin"):
            with pytest.raises(RuntimeError, match="appears multiple times"):
                getattr(t, name)(dims)
            with pytest.raises(RuntimeError, match="appears multiple times"):
                getattr(x, name)(dims)
    assert usable()


def test_matmul_by_a_number_is_torchs_type_error_and_dot_takes_cryptens_weights(session):
    """x @ 2.0 raised ShapeError (torch: TypeError); CrypTen's
    x.dot(y, weights=w) was an unexpected keyword."""
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    x = cryptgpu.cryptensor(t)
    for f in (lambda a: a @ 2.0, lambda a: 2.0 @ a, lambda a: torch.matmul(a, 2.0)):
        with pytest.raises(TypeError):
            f(t)
        with pytest.raises(TypeError):
            f(x)
    u, w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([1.5, 0.0, 2.0])
    got = x.dot(cryptgpu.cryptensor(u), weights=w).get_plain_text(dtype=torch.float64)
    # x w (a public product, one truncation, |x w| < 7) then the dot of 3
    # terms with u (|u| <= 2, encoded within 2^-17): 3 (7 + 2) 2^-17 plus a
    # truncation each: below 1e-3
    assert abs(float(got) - float((t * u * w).sum())) < 1e-3
    with pytest.raises(RuntimeError):
        x.dot(x, weights=torch.ones(2))
    assert usable()


@pytest.mark.parametrize("name", ["mm", "mv", "bmm", "dot"])
def test_products_by_a_number_raise_torchs_type_error(session, name):
    """x.mm(2.0) and friends raised ShapeError (a ValueError); torch raises
    TypeError, as for x @ 2.0."""
    t = torch.ones(*{"mm": (2, 2), "mv": (2, 2), "bmm": (1, 2, 2), "dot": (2,)}[name])
    with pytest.raises(TypeError):
        getattr(t, name)(2.0)
    with pytest.raises(TypeError):
        getattr(cryptgpu.cryptensor(t), name)(2.0)
    assert usable()


def test_repeat_interleave_takes_torchs_tensor_repeats(session):
    """x.repeat_interleave(torch.tensor([1, 0, 2]), dim=0) raised
    NotImplementedError (a GQA or ragged-batch habit); a negative count was
    NotImplementedError where torch raises RuntimeError. Index copies:
    exact up to the encoding."""
    t = torch.randn(3, 2, dtype=torch.float64)
    x = cryptgpu.cryptensor(t)
    for r, d in ((torch.tensor([1, 0, 2]), 0), (torch.tensor(2), 1), (torch.tensor([2, 1]), 1)):
        got = x.repeat_interleave(r, dim=d).get_plain_text(dtype=torch.float64)
        assert torch.equal(
            got,
            cryptgpu.cryptensor(t.repeat_interleave(r, dim=d)).get_plain_text(dtype=torch.float64),
        )
    for bad in (-1, torch.tensor([1, 2])):
        with pytest.raises(RuntimeError):
            t.repeat_interleave(bad, dim=0)
        with pytest.raises(RuntimeError):
            x.repeat_interleave(bad, dim=0)
    assert usable()


def test_batchnorm_built_directly_checks_torchs_rank(session):
    """cryptgpu.nn.BatchNorm1d/2d/3d built directly were one class that took
    any rank (BatchNorm3d a 4-D input); torch raises ValueError("expected
    5D input (got 4D input)"), as ours now, in training and in eval."""
    nn = cryptgpu.nn
    for ours, theirs, bad in (
        (nn.BatchNorm1d, torch.nn.BatchNorm1d, (2, 3, 4, 4)),
        (nn.BatchNorm2d, torch.nn.BatchNorm2d, (2, 3, 4)),
        (nn.BatchNorm3d, torch.nn.BatchNorm3d, (2, 3, 4, 4)),
    ):
        with pytest.raises(ValueError) as want:
            theirs(3)(torch.randn(*bad))
        for mode in ("train", "eval"):
            layer = getattr(ours(3).encrypt(), mode)()
            with pytest.raises(ValueError) as got:
                layer(cryptgpu.cryptensor(torch.randn(*bad)))
            assert str(got.value) == str(want.value)
    assert usable()
    assert nn.BatchNorm3d(3)(cryptgpu.cryptensor(torch.randn(2, 3, 2, 2, 2))).shape[1] == 3


def test_max_pool1d_refusal_names_max_pool1d(session):
    x = cryptgpu.cryptensor(torch.randn(1, 2, 9))
    with pytest.raises(NotImplementedError, match="^max_pool1d with ceil_mode and dilation"):
        x.max_pool1d(3, dilation=2, ceil_mode=True, return_indices=True)
    assert usable()
