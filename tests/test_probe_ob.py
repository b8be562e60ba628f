"""Probe OB (2026-12-07, a careless or hostile user of the Python API).

- cryptgpu.nn's activation and dropout layers built with ``inplace=True``
  change their input, as torch's layers do (until 2026-12-07 they returned
  a new tensor and left the input unchanged: ``self.act(h); return h``
  returned the values before the activation), and refuse a leaf that
  requires grad with torch's RuntimeError.
- A subnormal public factor (``x * 1e-310``, ``F.leaky_relu(x, 1e-310)``,
  ``SGD(lr=1e-310)``) gives torch's product, about 0 (until 2026-12-07
  OverflowError from ``round(1 / p)``); ``F.softplus`` with a beta so
  small that log(2) / beta leaves the encoding's range is a ValueError
  naming beta (torch: inf); a plaintext divisor whose reciprocal leaves the
  range is an EncodingError naming the divisor, not "inf".
- ``F.layer_norm(x, ())``, ``LayerNorm(())``, ``F.rms_norm(x, ())`` and
  ``RMSNorm(())`` raise torch's RuntimeError (until 2026-12-07 about sign(x)).
- Above the highest precision_bits at which each is right (a sweep of f =
  24..30 on [-3, 3] and the documented ranges: log, log2, log10, erf,
  silu, mish 29; gelu 28, its tanh form 27; the normalisation statistics
  26), log/gelu/erf/silu/mish and LayerNorm/BatchNorm (training) are a
  ValueError "not available at precision_bits=N (at most M)"; until
  2026-12-07 errors naming internal constants, and LayerNorm 2.4 off at 29.
- Small ones: ``x.unsqueeze(1.0)`` is torch's TypeError (was a slice
  error); a converted EmbeddingBag given ids shared as numbers is a
  ShapeError naming the one-hot form (was "offsets has to be a 1D
  Tensor"); ``h.register_hook(fn)`` in a forward given to from_pytorch is
  a NotImplementedError naming the hook and the line (was fx's "argument
  of type: <class 'function'>"); ``cryptgpu.save`` of SharedTensors in a
  list that holds itself is a ValueError (was a RecursionError), a
  plaintext one is torch.save's.

Tolerances (f = 16, conftest): inputs are encoded within ENC = 2^-17, each
truncation adds at most ULP = 2^-16; an activation's own approximation
error is the one test_activations.py derives for it, on |x| <= X = 3 here.
"""

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, usable

D = torch.float64
N = cryptgpu.nn
V = torch.tensor([[-3.0, -1.25, -0.5], [0.0, 0.75, 3.0]], dtype=D)
X = 3.0  # the largest |x| in V
EXP = 3e-4  # exp_nonpos's relative error (test_functions.py)


def pt(x):
    return x.get_plain_text(dtype=D)


# name, our layer, torch's layer, tolerance (test_activations.py's bounds on |x| <= X)
INPLACE = [
    ("ReLU", lambda: N.ReLU(inplace=True), lambda: tnn.ReLU(True), ENC),  # exact on the encoding
    # one public product: its truncation and the encoding
    ("LeakyReLU", lambda: N.LeakyReLU(0.1, True), lambda: tnn.LeakyReLU(0.1, True), ENC + ULP),
    ("Hardtanh", lambda: N.Hardtanh(inplace=True), lambda: tnn.Hardtanh(inplace=True), ENC),
    ("ReLU6", lambda: N.ReLU6(True), lambda: tnn.ReLU6(True), ENC),
    # alpha e^min(x,0) (exp's relative error), the encoding through a slope <= 1, 3 truncations
    ("ELU", lambda: N.ELU(inplace=True), lambda: tnn.ELU(inplace=True), EXP + 2 * ENC + 3 * ULP),
    ("CELU", lambda: N.CELU(inplace=True), lambda: tnn.CELU(inplace=True), EXP + 2 * ENC + 4 * ULP),
    # SELU: ELU's bound times scale * alpha = 1.76, plus the scale's truncation
    ("SELU", lambda: N.SELU(True), lambda: tnn.SELU(True), 1.76 * (EXP + 2 * ENC + 3 * ULP) + ULP),
    # x sigmoid(x): |x| times sigmoid's 1e-3
    ("SiLU", lambda: N.SiLU(True), lambda: tnn.SiLU(True), X * 1e-3 + ENC + ULP),
    # x tanh(softplus(x)): |x| times tanh's 2e-3 and exp's error
    ("Mish", lambda: N.Mish(True), lambda: tnn.Mish(True), X * (2e-3 + EXP) + ULP),
    # x (clamp(x,-3,3) + 3) / 6: a product of |x| <= 3 by a factor <= 6, a division
    (
        "Hardswish",
        lambda: N.Hardswish(True),
        lambda: tnn.Hardswish(True),
        X * (ENC + ULP) + 2 * ULP,
    ),
    ("Hardsigmoid", lambda: N.Hardsigmoid(True), lambda: tnn.Hardsigmoid(True), ENC + ULP),
    (
        "Threshold",
        lambda: N.Threshold(0.5, -2.0, True),
        lambda: tnn.Threshold(0.5, -2.0, True),
        ENC,
    ),
    # eval: LeakyReLU with the mean slope
    (
        "RReLU",
        lambda: N.RReLU(inplace=True).eval(),
        lambda: tnn.RReLU(inplace=True).eval(),
        ENC + ULP,
    ),
]


@pytest.mark.parametrize("name, ours, theirs, tol", INPLACE, ids=[c[0] for c in INPLACE])
def test_inplace_layer_changes_its_input(session, name, ours, theirs, tol):
    x, t = cryptgpu.cryptensor(V), V.clone()
    out = ours()(x)
    theirs()(t)
    assert out is x
    assert (pt(x) - t).abs().max().item() <= tol  # tolerance: see INPLACE
    # out of place leaves the input as it was: its encoding
    x2, layer = cryptgpu.cryptensor(V), ours()
    layer.inplace = False
    assert layer(x2) is not x2
    assert (pt(x2) - V).abs().max().item() <= ENC  # the encoding of V


class Block(N.Module):
    """A hand-written private block relying on the layer's side effect."""

    def __init__(self, drop: bool):
        super().__init__()
        self.fc = N.Linear(3, 3)
        self.act = N.LeakyReLU(0.1, inplace=True)
        self.drop = N.Dropout(0.5, inplace=True) if drop else N.Identity()

    def forward(self, x):
        h = self.fc(x)
        self.act(h)
        self.drop(h)
        return h


def test_inplace_layer_in_a_block_trains_as_torch(session):
    """``self.act(h); return h`` on a recorded result: torch's forward and
    gradients (the dropout mask is the parties' own: checked as 0 or the
    kept value scaled by 2)."""
    torch.manual_seed(0)
    lin = tnn.Linear(3, 3).double()
    b = Block(drop=False)
    b.fc = N.from_pytorch(lin, V).encrypt()
    b.train()
    out = b(cryptgpu.cryptensor(V))
    out.sum().backward()
    h = lin(V)
    F.leaky_relu(h, 0.1, inplace=True)
    h.sum().backward()
    # |W| row sums <= 3 * 0.58 (Linear(3, 3)'s init bound 1/sqrt(3)), inputs <= 3:
    # a product sum of 3 terms (3 * (X + 0.58) * ENC + ULP), then the slope's truncation
    tol = 3 * (X + 0.58) * ENC + 2 * ULP + ENC
    assert (pt(out) - h.detach()).abs().max().item() <= tol
    # the weight gradient: the 0/1-or-0.1 slope (exact but at the sign's
    # boundary, none here) times the inputs' encoding, summed over 2 rows
    assert (pt(b.fc.weight.grad) - lin.weight.grad).abs().max().item() <= 2 * (X * ULP + ENC)
    # dropout in place on the recorded result: each element 0 or twice relu's
    b = Block(drop=True)
    b.fc = N.from_pytorch(lin, V).encrypt()
    b.train()
    got = pt(b(cryptgpu.cryptensor(V)))
    want = F.leaky_relu(lin(V), 0.1).detach()
    err = torch.minimum(got.abs(), (got - 2 * want).abs()).max().item()
    assert err <= 2 * tol + ULP  # the scale's truncation on twice the value


@pytest.mark.parametrize(
    "layer",
    [
        lambda: N.ReLU(inplace=True),
        lambda: N.LeakyReLU(0.2, inplace=True),
        lambda: N.SiLU(inplace=True),
        lambda: N.RReLU(inplace=True),
        lambda: N.Dropout(0.5, inplace=True).train(),
        lambda: N.Dropout1d(0.5, inplace=True).train(),
    ],
)
def test_inplace_layer_refuses_a_leaf_that_requires_grad(session, layer):
    leaf = cryptgpu.cryptensor(V, requires_grad=True)
    with pytest.raises(RuntimeError):
        tnn.ReLU(inplace=True)(V.clone().requires_grad_())  # torch's own refusal
    with pytest.raises(RuntimeError):
        layer()(leaf)
    assert (pt(leaf) - V).abs().max().item() <= ENC  # unchanged: the encoding of V
    assert usable()


def test_converted_inplace_layers_answer_torchs_setting_and_run_as_torch(session):
    class M(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.drop = tnn.Linear(3, 3), tnn.ReLU(True), tnn.Dropout(0.2, True)

        def forward(self, x):
            h = self.fc(x)
            self.act(h)
            return self.drop(h) + h

    torch.manual_seed(0)
    tm = M().double().eval()
    pm = N.from_pytorch(tm, V).encrypt().eval()
    assert pm.act.inplace is True and pm.drop.inplace is True  # torch's settings
    # 2 h: a product sum of 3 terms, twice (see above)
    tol = 2 * (3 * (X + 0.58) * ENC + ULP + ENC)
    assert (pt(pm(cryptgpu.cryptensor(V))) - tm(V).detach()).abs().max().item() <= tol


SUBNORMAL = [
    ("x * 1e-310", lambda x: x * 1e-310),
    ("-1e-310 * x", lambda x: -1e-310 * x),
    ("x * 5e-324", lambda x: x * 5e-324),
    ("F.leaky_relu(x, 1e-310)", lambda x: F.leaky_relu(x, 1e-310)),
    ("F.leaky_relu(x, 1e-310, True)", lambda x: F.leaky_relu(x, 1e-310, True)),
    ("x.mul(tensor(1e-310))", lambda x: x.mul(torch.tensor(1e-310, dtype=D))),
]


@pytest.mark.parametrize("name, op", SUBNORMAL, ids=[c[0] for c in SUBNORMAL])
def test_subnormal_public_factor_is_a_product(session, name, op):
    got = op(cryptgpu.cryptensor(V))
    want = op(V.clone())
    # |x| <= 3 times a factor below 2^-1000: 0 after one truncation (ULP) plus
    # the encoding (ENC); leaky_relu is x itself above 0 (its encoding)
    assert (pt(got) - want).abs().max().item() <= ENC + ULP


def test_sgd_with_a_subnormal_learning_rate_leaves_the_weights(session):
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    p = cryptgpu.cryptensor(w0, requires_grad=True)
    opt = cryptgpu.optim.SGD([p], lr=1e-310)
    (p * p).sum().backward()
    opt.step()
    t = w0.clone().requires_grad_()
    ref = torch.optim.SGD([t], lr=1e-310)
    (t * t).sum().backward()
    ref.step()
    # lr * grad is 0 to within one truncation of the step's product (ULP), on
    # weights encoded within ENC
    assert (pt(p) - t.detach()).abs().max().item() <= ENC + ULP


def test_softplus_with_a_tiny_beta_is_a_clear_error(session):
    x = cryptgpu.cryptensor(V)
    assert torch.isinf(F.softplus(V, beta=1e-310)).all()  # torch's result: inf
    with pytest.raises(ValueError, match="beta=1e-310 is too small"):
        F.softplus(x, beta=1e-310)
    with pytest.raises(ValueError, match="beta=1e-300 is too small"):
        F.softplus(x, beta=1e-300)  # torch: 6.9e299, far outside the encoding
    assert usable()


@pytest.mark.parametrize("divisor", [1e-310, torch.tensor([1.0, 1e-310, 2.0], dtype=D), 1e-20])
def test_division_by_a_tiny_divisor_names_it(session, divisor):
    x = cryptgpu.cryptensor(V)
    with pytest.raises(cryptgpu.EncodingError, match=r"division by 1e-(310|20): its reciprocal"):
        x / divisor
    assert usable()


EMPTY_NORM = [
    ("F.layer_norm", lambda x: F.layer_norm(x, ())),
    (
        "LayerNorm",
        lambda x: (
            N.LayerNorm(())(x)
            if isinstance(x, cryptgpu.SharedTensor)
            else tnn.LayerNorm((), dtype=D)(x)
        ),
    ),
    ("F.rms_norm", lambda x: F.rms_norm(x, [])),
    (
        "RMSNorm",
        lambda x: (
            N.RMSNorm(())(x)
            if isinstance(x, cryptgpu.SharedTensor)
            else tnn.RMSNorm((), dtype=D)(x)
        ),
    ),
]


@pytest.mark.parametrize("name, op", EMPTY_NORM, ids=[c[0] for c in EMPTY_NORM])
def test_norm_over_no_dims_is_torchs_error(session, name, op):
    with pytest.raises(RuntimeError, match="at least 1-dimensional") as theirs:
        op(V.clone())
    with pytest.raises(RuntimeError) as ours:
        op(cryptgpu.cryptensor(V))
    assert str(ours.value) == str(theirs.value)
    assert usable()


POS = torch.linspace(0.05, 3.0, 60, dtype=D)
ROWS = torch.linspace(-3.0, 3.0, 48, dtype=D).reshape(6, 8)[:, torch.randperm(8)]
# name, function, input, highest f, the bound at f = 16 (documented next to
# each function), which holds at the higher f: every encoding and truncation
# error there is 2^(f-16) times smaller, the fitted approximations' the same
BITS = [
    ("log", torch.log, POS, 29, 8 * ULP),  # "within a few units of 2^-16"
    ("log2", torch.log2, POS, 29, 8 * ULP / 0.69),  # log's, times 1 / ln 2
    ("log10", torch.log10, POS, 29, 8 * ULP),  # log's, times 1 / ln 10 < 1
    ("gelu", F.gelu, V, 28, 2e-4),  # functions.gelu: within 2e-4
    ("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), V, 27, 2e-4),
    ("erf", torch.erf, V, 29, 1.1e-4),  # functions.erf: within 1.1e-4
    ("silu", F.silu, V, 29, 7.5e-4),  # SharedTensor.silu: within 7.5e-4
    ("mish", F.mish, V, 29, 7.3e-3),  # SharedTensor.mish: within 7.3e-3
    # xhat in [-1.6, 1.6]: 1/std's 1e-4 relative (functions.ratio_inv_sqrt) times
    # |xhat|, plus the centring's and the product's truncations
    ("layer_norm", lambda a: F.layer_norm(a, (8,)), ROWS, 26, 1.6 * 1e-4 + 4 * ULP),
    (
        "batch_norm",
        lambda a: F.batch_norm(a, None, None, training=True),
        ROWS,
        26,
        1.6e-4 + 4 * ULP,
    ),
]


@pytest.fixture
def bits(request):
    """A CPU session at ``request.param`` fractional bits."""
    cryptgpu.init(precision_bits=request.param, seed=1234)
    yield request.param
    cryptgpu.uninit()


@pytest.mark.parametrize("bits", [26, 27, 28, 29], indirect=True)
@pytest.mark.parametrize("name, fn, inp, most, tol", BITS, ids=[c[0] for c in BITS])
def test_function_right_up_to_its_precision_and_refused_above(bits, name, fn, inp, most, tol):
    x = cryptgpu.cryptensor(inp)
    if bits <= most:
        assert (pt(fn(x)) - fn(inp)).abs().max().item() <= tol  # tolerance: see BITS
        return
    with pytest.raises(
        ValueError, match=f"not available at precision_bits={bits} \\(at most {most}\\)"
    ):
        fn(x)
    assert usable()  # 1.5 + 1: exact at any precision


@pytest.mark.parametrize("bits", [30], indirect=True)
@pytest.mark.parametrize("name, fn, inp, most, tol", BITS, ids=[c[0] for c in BITS])
def test_function_refused_at_30_bits(bits, name, fn, inp, most, tol):
    with pytest.raises(
        ValueError, match=f"not available at precision_bits=30 \\(at most {most}\\)"
    ):
        fn(cryptgpu.cryptensor(inp))
    assert usable()  # 1.5 + 1: exact at any precision


@pytest.mark.parametrize("dim", [1.0, True, "1", None])
def test_unsqueeze_with_a_dim_that_is_not_an_int_is_torchs_type_error(session, dim):
    with pytest.raises(TypeError) as theirs:
        V.unsqueeze(dim)
    with pytest.raises(TypeError) as ours:
        cryptgpu.cryptensor(V).unsqueeze(dim)
    assert str(ours.value) == str(theirs.value)  # "... must be int, not float"
    assert usable()


def test_unsqueeze_with_an_index_like_dim(session):
    for dim in (np.int64(1), torch.tensor(-1)):
        got = cryptgpu.cryptensor(V).unsqueeze(dim)
        want = V.unsqueeze(dim)
        assert got.shape == want.shape
        assert (pt(got) - want).abs().max().item() <= ENC  # the encoding of V


def test_embedding_bag_given_ids_shared_as_numbers_names_one_hot_rows(session):
    torch.manual_seed(0)
    bag = tnn.EmbeddingBag(10, 3, mode="sum").double()
    ids = torch.randint(0, 10, (2, 4))
    pm = N.from_pytorch(bag, ids).encrypt()
    with pytest.raises(cryptgpu.ShapeError, match=r"one-hot rows \[\.\.\., 10\]"):
        pm(cryptgpu.cryptensor(ids.double()))
    assert usable()
    # the one-hot form it names gives torch's sums: 4 rows selected, each one
    # product of encoded values (ULP + ENC), summed
    got = pt(pm(cryptgpu.cryptensor(F.one_hot(ids, 10).double())))
    assert (got - bag(ids).detach()).abs().max().item() <= 4 * (ULP + ENC)


def test_tensor_hook_in_a_converted_forward_names_the_hook_and_line(session):
    class Hooked(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x)
            h.register_hook(lambda g: -g)
            return h

    with pytest.raises(NotImplementedError) as e:
        N.from_pytorch(Hooked(), torch.zeros(1, 3))
    msg = str(e.value)
    assert "register_hook(" in msg and "h.register_hook(lambda g: -g)" in msg
    assert "test_probe_ob.py:" in msg
    assert usable()


def test_save_of_a_list_that_holds_itself(session, tmp_path):
    x = cryptgpu.cryptensor(V)
    loop = [x]
    loop.append(loop)
    with pytest.raises(ValueError, match="holds itself"):
        cryptgpu.save(loop, tmp_path / "loop")
    assert not list(tmp_path.iterdir())  # nothing written
    plain = [V]
    plain.append(plain)
    cryptgpu.save(plain, tmp_path / "plain")  # torch.save's, loop and all
    back = torch.load(tmp_path / "plain", weights_only=False)
    assert back[1] is back and torch.equal(back[0], V)
    assert usable()
