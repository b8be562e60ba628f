"""Small differences from torch that a user probe found, each now torch's
behaviour: clamp with min > max, softplus's threshold, the rank checks of
torch.mm / torch.bmm, index_select with a negative index, torch.outer with a
plaintext first operand, flip of a 0-d tensor, ``axis=`` and ``dtype=``
keywords of the reductions, torch.where's bool condition, cross-entropy with
every label ignored or float labels, string padding of convolutions and
smooth L1 with beta = 0.

Every value is compared with float64 torch. Tolerances follow conftest.py's
model: most inputs are on the grid of multiples of 2^-4, which f = 16 bits
encode exactly (no encoding error), so a selection or a sum of them is exact
and each truncation adds at most TRUNC. Bad-input cases check that the
session computes correctly afterwards.
"""

import re

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close, prod_tol, usable

C = cryptgpu.cryptensor
EXP = 3e-4  # exp_nonpos's relative error (test_activations.py)


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def grid(*shape, lo=-48, hi=48, seed=0):
    """Values k / 16 (|k| < 48): exactly representable in fixed point."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, shape, generator=g).double() / 16


def still_works():
    """A plain product after an error: one truncation of grid values."""
    a, b = grid(3, 4, seed=7), grid(4, 2, seed=8)
    assert_close(pt(C(a) @ C(b)), a @ b, TRUNC)  # grid inputs: only the truncation


# 1 ------------------------------------------------------------------- clamp
def test_clamp_with_min_above_max_is_torchs_max_everywhere(session):
    t = grid(3, 4)
    lo = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=torch.float64)
    hi = torch.tensor([-1.0, 0.5, -0.25, 2.5], dtype=torch.float64)  # lo > hi in two columns
    # grid values and grid bounds: a clamp is a selection, exact (tolerance 0)
    assert_close(pt(C(t).clamp(1.0, -1.0)), torch.clamp(t, 1.0, -1.0), 0)
    assert_close(pt(torch.clamp(C(t), 1, -1)), torch.clamp(t, 1, -1), 0)
    assert_close(pt(C(t).clip(0.5, -0.5)), t.clip(0.5, -0.5), 0)
    assert_close(pt(C(t).clamp(lo, hi)), torch.clamp(t, lo, hi), 0)
    assert_close(pt(C(t).clamp(C(lo), C(hi))), torch.clamp(t, lo, hi), 0)
    assert_close(pt(C(t).clamp(C(lo), 0.5)), torch.clamp(t, lo, torch.tensor(0.5)), 0)
    assert_close(pt(C(t).clamp(-0.5, C(hi))), torch.clamp(t, torch.tensor(-0.5), hi), 0)
    # torch's hardtanh refuses min_val > max_val (its own check)
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(C(t), 1.0, -1.0)
    still_works()


def test_clamp_rounds_plain_and_shared_bounds(session):
    """Plaintext bounds: one batched ReLU (10 rounds). Shared bounds: the
    form right for every pair of bounds, two ReLUs in sequence (20 rounds;
    it was one batched ReLU, wrong where min > max)."""
    x = C(grid(2, 3))
    cryptgpu.reset_stats()
    x.clamp(-1.0, 1.0)
    assert cryptgpu.stats()["ops"]["relu"]["rounds"] == 10
    lo, hi = C(torch.zeros(3)), C(torch.ones(3))
    cryptgpu.reset_stats()
    x.clamp(lo, hi)
    assert cryptgpu.stats()["ops"]["relu"]["rounds"] == 20


# 2 ---------------------------------------------------------------- softplus
def test_softplus_threshold_returns_x_above_it(session):
    # no point within 0.05 of a threshold: the comparison is unambiguous
    x = torch.tensor([-3.0, -0.5, 0.25, 0.9, 1.5, 2.0, 5.0, 30.0], dtype=torch.float64)
    for beta, threshold in ((1.0, 1.0), (2.0, 3.0), (1.0, 0.0)):
        got = pt(F.softplus(C(x), beta, threshold))
        want = F.softplus(x, beta, threshold)
        # softplus's own error (test_activations: EXP + 3.4e-8 + 12 TRUNC,
        # over beta), plus the selection's product (one TRUNC); the old code
        # gave log1p(e^-1.5) = 0.2 too much at x = 1.5, threshold 1
        assert_close(got, want, (EXP + 3.4e-8 + 12 * TRUNC) / beta + TRUNC + ENC)
    # the keyword form and the method
    got = pt(C(x).softplus(threshold=1.0))
    assert_close(got, F.softplus(x, threshold=1.0), EXP + 3.4e-8 + 13 * TRUNC + ENC)


def test_softplus_default_threshold_adds_no_comparison(session):
    x = C(grid(4))
    cryptgpu.reset_stats()
    F.softplus(x)
    assert "gt" not in cryptgpu.stats()["ops"]  # 2e-9 from torch: below resolution
    cryptgpu.reset_stats()
    F.softplus(x, threshold=5.0)
    assert cryptgpu.stats()["ops"]["gt"]["rounds"] == 10


# 3 ------------------------------------------------------------- mm and bmm
def test_mm_and_bmm_check_ranks_as_torch(session):
    a, b = grid(3, 4), grid(4, 2, seed=1)
    A, B = C(a), C(b)
    bad = [
        ("batch1 must be a 3D tensor", lambda: torch.bmm(A, C(a.t()))),
        ("batch2 must be a 3D tensor", lambda: torch.bmm(A[None], B)),
        ("batch1 must be a 3D tensor", lambda: torch.bmm(a, C(b[None]))),
        ("batch1 must be a 3D tensor", lambda: A.bmm(B)),
        ("self must be a matrix", lambda: torch.mm(A[None], B[None])),
        ("mat2 must be a matrix", lambda: torch.mm(A, B[None])),
        ("mat2 must be a matrix", lambda: torch.mm(a, B[None])),
        ("self must be a matrix", lambda: a[None].mm(B)),
        ("first two dimensions of batch2", lambda: torch.bmm(A[None], C(b[None, :3]))),
    ]
    for words, call in bad:
        with pytest.raises(RuntimeError, match=words):
            call()
    # the right ranks still multiply: grid inputs, one truncation
    assert_close(pt(torch.mm(A, B)), a @ b, TRUNC)
    assert_close(pt(torch.mm(a, B)), a @ b, TRUNC)
    assert_close(pt(torch.bmm(A[None], B[None])), (a @ b)[None], TRUNC)
    assert_close(pt(torch.bmm(a[None], B[None])), (a @ b)[None], TRUNC)


# 4 ------------------------------------------------------------ index_select
def test_index_select_refuses_a_negative_index(session):
    t = grid(3, 4)
    for idx in (torch.tensor([-1]), torch.tensor([0, -3]), torch.tensor([3])):
        with pytest.raises(IndexError, match="index out of range in self"):
            torch.index_select(C(t), 0, idx)
        with pytest.raises(IndexError, match="index out of range in self"):
            torch.index_select(t, 0, idx)  # torch's words, the same
    idx = torch.tensor([2, 0, 2])
    assert_close(pt(C(t).index_select(0, idx)), t.index_select(0, idx), 0)  # a selection
    still_works()


# 5 ------------------------------------------------------------------- outer
def test_outer_with_either_operand_plaintext(session):
    a, b = grid(3), grid(4, seed=1)
    # a public factor times a shared one (grid values): one truncation
    tol = prod_tol(1, 3.0, 3.0)
    assert_close(pt(torch.outer(a, C(b))), torch.outer(a, b), tol)
    assert_close(pt(torch.outer(C(a), b)), torch.outer(a, b), tol)
    assert_close(pt(torch.outer(C(a), C(b))), torch.outer(a, b), tol)
    assert_close(pt(torch.ger(a, C(b))), torch.outer(a, b), tol)
    assert_close(pt(a.outer(C(b))), torch.outer(a, b), tol)
    with pytest.raises(RuntimeError, match="Expected 1-D argument self"):
        torch.outer(a[None], C(b))
    with pytest.raises(RuntimeError, match="Expected 1-D argument vec2"):
        torch.outer(a, C(b[None]))
    still_works()


# 6 -------------------------------------------------------------------- flip
def test_flip_of_a_0d_tensor_is_its_value(session):
    x = C(torch.tensor(2.5, dtype=torch.float64))
    for dims in ((0,), (-1,), ()):
        got = x.flip(dims)
        assert got.shape == torch.tensor(2.5).flip(dims).shape
        assert_close(pt(got), torch.tensor(2.5, dtype=torch.float64), 0)  # a copy, exact
    assert_close(pt(x.flip(0)), torch.tensor(2.5, dtype=torch.float64), 0)
    assert_close(pt(torch.flip(x, [0])), torch.tensor(2.5, dtype=torch.float64), 0)
    with pytest.raises(IndexError):
        x.flip(1)  # torch: dim out of range [-1, 0]
    with pytest.raises(RuntimeError, match="appears multiple times"):
        C(grid(2, 3)).flip(0, 0)
    t = grid(2, 3)
    assert_close(pt(C(t).flip(1)), t.flip(1), 0)
    still_works()


# 7 -------------------------------------------------- axis= and dtype= forms
def test_reductions_take_axis_and_a_floating_dtype(session):
    t = grid(3, 4)
    X = C(t)
    # grid values: sums, selections and concatenations are exact
    assert_close(pt(X.sum(dtype=torch.float64)), t.sum(), 0)
    assert_close(pt(X.sum(1, dtype=torch.float32)), t.sum(1), 0)
    assert_close(pt(torch.sum(X, dtype=torch.float64)), t.sum(), 0)
    assert_close(pt(X.sum(axis=1)), t.sum(axis=1), 0)
    assert_close(pt(torch.sum(X, axis=0, keepdim=True)), t.sum(axis=0, keepdim=True), 0)
    assert_close(pt(torch.cat([X, X], axis=1)), torch.cat([t, t], axis=1), 0)
    assert_close(pt(torch.concat([X, t], axis=0)), torch.concat([t, t], axis=0), 0)
    assert_close(pt(torch.stack([X, X], axis=1)), torch.stack([t, t], axis=1), 0)
    assert_close(pt(X.amax(axis=0)), t.amax(axis=0), 0)
    assert_close(pt(X.max(axis=1).values), t.max(axis=1).values, 0)
    assert_close(pt(X.argmax(axis=1, one_hot=False)), t.argmax(axis=1).double(), 0)
    assert_close(pt(X.cumsum(axis=1)), t.cumsum(axis=1), 0)
    # a mean: the exact sum, then one division (one truncation)
    assert_close(pt(torch.mean(X, axis=0)), torch.mean(t, axis=0), TRUNC)
    assert_close(pt(X.mean(axis=1, dtype=torch.float64)), t.mean(axis=1), TRUNC)
    # var: mean (TRUNC), squared deviations |d| < 6 (2 * 6 TRUNC + TRUNC
    # each), 4 of them summed, divided by 3 (TRUNC)
    assert_close(pt(X.var(axis=1)), t.var(axis=1), 4 * 13 * TRUNC / 3 + TRUNC)
    bad = [
        (TypeError, "floating dtype", lambda: X.sum(dtype=torch.int64)),
        (TypeError, "floating dtype", lambda: X.sum(dtype=torch.bool)),
        (TypeError, "floating dtype", lambda: torch.mean(X, 0, dtype=torch.int32)),
        (TypeError, "multiple values", lambda: X.sum(1, axis=1)),
        (TypeError, None, lambda: torch.cat([X, X], 0, axis=1)),  # torch's parser refuses it
    ]
    for kind, words, call in bad:
        with pytest.raises(kind, match=words):
            call()
    still_works()


# 8 ------------------------------------------------------------------- where
def test_torch_where_wants_a_bool_condition(session):
    t = grid(3, 4)
    X = C(t)
    for cond in (torch.ones(3, 4), torch.ones(3, 4, dtype=torch.int64)):
        with pytest.raises(RuntimeError, match="where expected condition to be a boolean"):
            torch.where(cond, X, 0.0)
        with pytest.raises(RuntimeError, match="where expected condition to be a boolean"):
            torch.where(cond, t, 0.0)  # torch's own words
    m = t > 0
    assert_close(pt(torch.where(m, X, 0.0)), torch.where(m, t, 0.0), 0)  # a public selection
    # a shared 0/1 condition (a comparison) selects by one product: TRUNC
    assert_close(pt(torch.where(X > 0, X, -X)), torch.where(m, t, -t), TRUNC)
    still_works()


# 9 ----------------------------------------------------------- cross-entropy
def test_cross_entropy_with_every_label_ignored(session):
    lg = grid(4, 3)
    ignored = torch.full((4,), -100)
    assert torch.isnan(F.cross_entropy(lg, ignored))  # torch: 0 / 0
    for call in (
        lambda: F.cross_entropy(C(lg), ignored),
        lambda: torch.nn.CrossEntropyLoss()(C(lg), ignored),
        lambda: cryptgpu.nn.CrossEntropyLoss()(C(lg), ignored),
        lambda: F.cross_entropy(C(lg), torch.full((4,), 2), ignore_index=2),
        lambda: F.nll_loss(C(lg), ignored),
    ):
        with pytest.raises(ValueError, match="NaN"):
            call()
    # sum and none are torch's zeros (exact: every row weighs 0)
    assert_close(pt(F.cross_entropy(C(lg), ignored, reduction="sum")), torch.tensor(0.0), 0)
    got = pt(F.cross_entropy(C(lg), ignored, reduction="none"))
    assert_close(got, F.cross_entropy(lg, ignored, reduction="none"), 0)
    still_works()


def test_cross_entropy_with_float_class_indices_is_a_runtime_error(session):
    lg = grid(8, 10)
    labels = torch.arange(8).double()
    with pytest.raises(RuntimeError) as theirs:
        F.cross_entropy(lg, labels)  # torch: expected target dtype to be Long or Byte
    # torch's own words (since 2026-12-07; cryptgpu's until then)
    with pytest.raises(RuntimeError, match=f"^{re.escape(str(theirs.value))}$"):
        torch.nn.CrossEntropyLoss()(C(lg), labels)
    with pytest.raises(RuntimeError, match=f"^{re.escape(str(theirs.value))}$"):
        F.cross_entropy(C(lg), labels)
    still_works()


# 10 --------------------------------------------------------- conv padding
# torch warns that an even kernel's "same" padding copies the input
SAME_COPY = pytest.mark.filterwarnings("ignore:Using padding='same'")


@SAME_COPY
@pytest.mark.parametrize(
    "k, dilation",
    [((3, 3), 1), ((2, 4), 1), ((3, 2), (2, 1)), ((2, 3), (1, 2)), ((1, 1), 1)],
)
def test_conv2d_string_padding(session, k, dilation):
    x, w = grid(2, 2, 6, 7), grid(3, 2, *k, lo=-8, hi=8, seed=1)
    b = grid(3, seed=2)
    taps = 2 * k[0] * k[1]
    # grid inputs and weights: each output is one truncated sum of taps
    # products (prod_tol's bound, its encoding terms 0 here)
    tol = prod_tol(taps, 3.0, 0.5)
    for pad in ("same", "valid"):
        want = F.conv2d(x, w, b, padding=pad, dilation=dilation)
        assert_close(pt(F.conv2d(C(x), w, b, padding=pad, dilation=dilation)), want, tol)
        assert_close(pt(F.conv2d(C(x), C(w), b, padding=pad, dilation=dilation)), want, tol)
        assert_close(pt(F.conv2d(x, C(w), C(b), padding=pad, dilation=dilation)), want, tol)
        assert_close(pt(C(x[0]).conv2d(w, b, 1, pad, dilation)), want[0], tol)


@SAME_COPY
def test_conv1d_string_padding_and_refusals(session):
    x, w = grid(2, 3, 9), grid(4, 3, 4, lo=-8, hi=8, seed=1)
    tol = prod_tol(12, 3.0, 0.5)  # 12 taps, one truncation (grid values)
    for pad in ("same", "valid"):
        assert_close(pt(F.conv1d(C(x), w, padding=pad)), F.conv1d(x, w, padding=pad), tol)
        want = F.conv1d(x, w, padding=pad, dilation=2)
        assert_close(pt(F.conv1d(C(x), C(w), padding=pad, dilation=2)), want, tol)
    w2 = grid(1, 2, 3, 3, seed=3)
    X = C(grid(1, 2, 5, 5))
    # F.conv2d raises RuntimeError, torch.nn.Conv2d ValueError: either catches
    for kind in (RuntimeError, ValueError):
        for call in (
            lambda: F.conv2d(X, w2, padding="same", stride=2),
            lambda: F.conv1d(C(x), w, padding="same", stride=(2,)),
        ):
            with pytest.raises(kind, match="not supported for strided convolutions"):
                call()
        with pytest.raises(kind, match="Invalid padding string"):
            F.conv2d(X, w2, padding="full")
    still_works()


@SAME_COPY
def test_conv2d_same_padding_gradient(session):
    """The odd padding goes through a recorded pad: the input's gradient
    is torch's (sum of the output: a convolution of ones by the 2 x 4
    kernel, one truncation of grid values)."""
    x, w = grid(1, 2, 5, 6), grid(3, 2, 2, 4, lo=-8, hi=8, seed=1)
    X = C(x, requires_grad=True)
    F.conv2d(X, w, padding="same").sum().backward()
    xt = x.clone().requires_grad_(True)
    F.conv2d(xt, w, padding="same").sum().backward()
    assert_close(pt(X.grad), xt.grad, prod_tol(3 * 8, 1.0, 0.5))


@SAME_COPY
def test_from_pytorch_converts_conv2d_same_padding(session):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, (2, 3), padding="same"),
        torch.nn.ReLU(),
        torch.nn.Conv2d(3, 2, 3, padding="valid"),
    ).double()
    x = grid(1, 2, 6, 6)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    # two layers of 12 and 27 products of |x| < 3 by |w| < 0.5 (torch's
    # init: 1 / sqrt(fan_in)); the second layer's inputs (|h| <= hmax)
    # carry the first's error, 27 times |w| < 0.5
    with torch.no_grad():
        hmax, want = float(m[:2](x).abs().max()), m(x)
    first = prod_tol(12, 3.0, 0.5)
    assert_close(pt(pm(C(x))), want, prod_tol(27, hmax, 0.5) + 27 * 0.5 * first)


def test_conv1d_same_padding_converted_and_built(session):
    torch.manual_seed(1)
    tm = torch.nn.Conv1d(2, 3, 4, padding="same").double()
    x = grid(1, 2, 7)
    pm = cryptgpu.nn.from_pytorch(tm, x).encrypt()
    with torch.no_grad():
        want = tm(x)
    # 8 products of |x| < 3 by |w| < 0.5 (1 / sqrt(fan_in)), one truncation
    assert_close(pt(pm(C(x))), want, prod_tol(8, 3.0, 0.5))
    built = cryptgpu.nn.Conv1d(2, 3, 4, padding="same")
    assert tuple(built(C(x)).shape) == (1, 3, 7)
    built2 = cryptgpu.nn.Conv2d(2, 3, 3, padding="same")
    assert tuple(built2(C(grid(1, 2, 5, 5))).shape) == (1, 3, 5, 5)


# 11 -------------------------------------------------------------- smooth L1
def test_smooth_l1_with_beta_zero_is_l1(session):
    x, y = grid(4, 3), grid(4, 3, seed=1)
    want = F.smooth_l1_loss(x, y, beta=0.0)
    assert torch.allclose(want, F.l1_loss(x, y))
    # |x - y| of grid values is exact; the mean's division: one TRUNC
    assert_close(pt(F.smooth_l1_loss(C(x), y, beta=0.0)), want, TRUNC)
    assert_close(pt(torch.nn.SmoothL1Loss(beta=0)(C(x), C(y))), want, TRUNC)
    assert_close(pt(cryptgpu.nn.SmoothL1Loss(beta=0.0)(C(x), y)), want, TRUNC)
    got = pt(F.smooth_l1_loss(C(x), y, beta=0.0, reduction="none"))
    assert_close(got, F.smooth_l1_loss(x, y, beta=0.0, reduction="none"), 0)
    for call in (
        lambda: F.smooth_l1_loss(C(x), y, beta=-1.0),
        lambda: cryptgpu.nn.SmoothL1Loss(beta=-0.5),
    ):
        with pytest.raises(RuntimeError, match="does not support negative values for beta"):
            call()
    still_works()


# ---------------------------------------------------------------- casts copy where torch's do
def _casts():
    f64 = torch.zeros(1, dtype=torch.float64)
    return [
        ("double()", lambda t: t.double()),
        ("to(float64)", lambda t: t.to(torch.float64)),
        ("half()", lambda t: t.half()),
        ("to('cpu', float64)", lambda t: t.to("cpu", torch.float64)),
        ("to('cpu', copy=True)", lambda t: t.to("cpu", copy=True)),
        ("type_as(float64)", lambda t: t.type_as(f64)),
        ("type(float64)", lambda t: t.type(torch.float64)),
        ("float()", lambda t: t.float()),
        ("to('cpu')", lambda t: t.to("cpu")),
        ("cpu()", lambda t: t.cpu()),
    ]


@pytest.mark.parametrize("name,cast", _casts(), ids=[n for n, _ in _casts()])
def test_a_cast_is_a_copy_exactly_where_torchs_is(session, name, cast):
    """x.double(), x.to(torch.float64), x.to('cpu', copy=True) ... returned
    x itself, so y = x.double(); y.add_(10) changed x (torch copies when the
    dtype changes or copy=True, and returns self otherwise). Grid values and
    an integer addend: exact (tolerance 0)."""
    a = grid(2, 3)
    t = a.to(torch.get_default_dtype())  # torch's tensor of x.dtype
    ty = cast(t)
    x = C(a)
    y = cast(x)
    assert (y is x) == (ty is t)
    y.add_(10)
    ty.add_(10)
    assert_close(pt(x), t.double(), 0.0)  # x as torch's t: changed only where aliased
    assert_close(pt(y), a + 10, 0.0)


def test_a_cast_passes_the_gradient_and_a_snapshot_stays(session):
    """The gradient flows through a cast, as torch's ToCopyBackward; and
    w0 = w.detach().double() is a snapshot: an optimiser step leaves it
    (it moved with the parameter). Grid values; d((w w).sum()) = 2 w is
    exact, and lr = 0.25 one truncation (TRUNC)."""
    a = grid(2, 3)
    x = C(a, requires_grad=True)
    (x.double() * 3).sum().backward()
    assert_close(pt(x.grad), torch.full_like(a, 3.0), 0.0)
    w = C(a, requires_grad=True)
    w0, w1 = w.detach().double(), w.detach().to("cpu", copy=True)
    opt = cryptgpu.optim.SGD([w], lr=0.25)
    (w * w).sum().backward()
    opt.step()
    assert_close(pt(w), a / 2, TRUNC)  # w - 0.25 * 2w
    assert_close(pt(w0), a, 0.0)
    assert_close(pt(w1), a, 0.0)


def test_explicit_requires_grad_false_wins_over_the_tensors(session):
    """cryptensor(t, requires_grad=False) with t requiring grad required
    grad (CrypTen's: an explicit value wins; left out, t's is inherited).
    Grid values: exact."""
    a = grid(2, 2)
    t = a.clone().requires_grad_(True) * 1.0  # a non-leaf that requires grad
    assert not C(t, requires_grad=False).requires_grad
    assert C(t).requires_grad  # inherited, as CrypTen's
    assert C(a, requires_grad=True).requires_grad and not C(a).requires_grad
    assert_close(pt(C(t, requires_grad=False)), a, 0.0)


def test_public_tensors_made_from_a_shared_one_follow_its_dtype(session):
    """x.new_zeros/new_ones/new_full/new_empty, t.to(x), t.type_as(x) gave
    float64 while x.dtype says the default dtype, so plaintext code mixing
    them with float32 tensors failed ("double != float"); dtype= and
    requires_grad= were ignored, device='cuda' accepted without a GPU.
    x.new_tensor(data) was missing. Integer-valued results: exact."""
    a = grid(2, 2)
    x, t = C(a), a.to(torch.get_default_dtype())
    made = {
        "new_zeros": (x.new_zeros(2, 2), t.new_zeros(2, 2)),
        "new_ones": (x.new_ones((2,)), t.new_ones((2,))),
        "new_full": (x.new_full((2,), 3.0), t.new_full((2,), 3.0)),
        "new_empty": (x.new_empty(2).zero_(), t.new_empty(2).zero_()),
        "new_tensor": (x.new_tensor([1, -2]), t.new_tensor([1, -2])),
        "to": (torch.ones(2, dtype=torch.float64).to(x), torch.ones(2).double().to(t)),
        "type_as": (torch.ones(2, dtype=torch.float64).type_as(x), torch.ones(2).type_as(t)),
    }
    for name, (got, want) in made.items():
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype == x.dtype, name
        assert_close(got, want, 0.0)
    torch.mm(x.new_zeros(2, 2), torch.ones(2, 2))  # plaintext code of x.dtype
    assert x.new_zeros(2, dtype=torch.float64).dtype == torch.float64
    assert x.new_ones(2, requires_grad=True).requires_grad
    assert_close(pt(x + x.new_tensor(a.tolist())), 2 * a, 0.0)
    try:
        torch.zeros(1).new_zeros(2, device="cuda")
        want = None
    except Exception as e:  # torch's error without a GPU
        want = type(e)
    if want is None:
        assert x.new_zeros(2, device="cuda").device.type == "cuda"
    else:
        with pytest.raises(want):
            x.new_zeros(2, device="cuda")
    with pytest.raises(TypeError, match="secret"):
        x.new_tensor(x)
    assert usable()


def test_torchs_tensor_attributes(session):
    """x.type(), x.get_device(), x.is_pinned(), x.layout, x.is_meta were
    AttributeErrors; they answer as torch's for a tensor of x.dtype on x's
    device. pin_memory() raises torch's error without an accelerator;
    element_size() is refused with a reason (no dtype size describes shares)."""
    x, t = C(grid(2)), torch.zeros(2, dtype=torch.get_default_dtype())
    if x.device.type == "cpu":
        assert x.type() == t.type()
        assert x.get_device() == t.get_device() == -1
    else:
        assert x.type() == t.cuda().type() and x.get_device() >= 0
    assert x.is_pinned() is False and x.layout == t.layout and x.is_meta is False
    assert x.type(t.type()) is x  # its own type: no copy, as torch's
    if x.device.type == "cpu":
        # tensor type classes: refused as another device until 2026-12-05
        assert x.type(torch.FloatTensor) is x
        y = x.type(torch.DoubleTensor)
        assert y is not x and torch.equal(y.get_plain_text(), x.get_plain_text())
    try:
        t.pin_memory()
        want = NotImplementedError  # an accelerator: shares cannot be pinned
    except Exception as e:
        want = type(e)
    with pytest.raises(want):
        x.pin_memory()
    with pytest.raises(NotImplementedError, match="ring elements"):
        x.element_size()
    with pytest.raises(TypeError, match="whatever its shape"):
        torch.tensor(C(grid(2, 2)))  # said "len() of a 0-d tensor"
    assert usable()


def test_converted_forward_takes_cpu_and_new_tensor(session):
    """x.cpu() in a forward was refused (x.to(device) worked) and
    x.new_tensor(data) missing. Tolerance: 3 products of encoded inputs
    (prod_tol) plus the encodings of the bias and the public constant."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x.cpu()) + x.new_tensor([1.0, -2.0])

    torch.manual_seed(0)
    m = M().eval()
    x = grid(4, 3)
    want = m.double()(x).detach()
    pm = cryptgpu.nn.from_pytorch(m.float(), torch.zeros(1, 3)).encrypt()
    wmax = m.fc.weight.abs().max().item()
    tol = prod_tol(3, x.abs().max().item(), wmax) + 2 * ENC
    assert_close(pt(pm(C(x))), want, tol)


def test_to_pytorch_into_a_meta_model_is_refused(session):
    """to_pytorch into a model on the meta device wrote nothing, silently
    (a copy into a meta tensor is a no-op; torch's load_state_dict warns,
    and offers assign=True, which to_pytorch has not): now RuntimeError
    before anything is written; after to_empty() every value arrives.
    Tolerance: the weights' encoding (ENC) and float32 rounding (2^-24
    relative, |w| < 1)."""
    torch.manual_seed(0)
    src = torch.nn.Linear(4, 2)
    with torch.device("meta"):
        target = torch.nn.Linear(4, 2)
    plain = cryptgpu.nn.from_pytorch(src, torch.zeros(1, 4)).encrypt().decrypt()
    with pytest.raises(RuntimeError, match="meta device"):
        plain.to_pytorch(target)
    target.to_empty(device="cpu")
    plain.to_pytorch(target)
    for p, q in zip(target.parameters(), src.parameters()):
        assert_close(p.detach(), q.detach(), ENC + 2.0**-24)
    assert usable()


def test_module_type_and_share_memory(session):
    """pm.type(dst_type) and pm.share_memory() were AttributeErrors: type
    is to(dtype) (shares as they are); share_memory moves plaintext
    tensors to shared memory and refuses shares."""
    pm = cryptgpu.nn.from_pytorch(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    assert pm.type(torch.float64) is pm and pm.weight.dtype == torch.float64
    assert pm.type("torch.FloatTensor") is pm and pm.weight.dtype == torch.float32
    # a tensor type class: ignored, silently, until 2026-12-05
    assert pm.type(torch.DoubleTensor) is pm and pm.weight.dtype == torch.float64
    with pytest.raises(TypeError, match="tensor type"):
        pm.type(3)
    assert pm.share_memory() is pm and pm.weight.is_shared()
    pm.encrypt()
    assert pm.type(torch.float64) is pm
    with pytest.raises(NotImplementedError, match="share_memory"):
        pm.share_memory()
    assert usable()
