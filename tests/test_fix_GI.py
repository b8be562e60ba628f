"""Fixes of probe OY's findings: comparisons and clamp with public values
beyond the encoding's range, a src party's own load_from_party error in
run_multiprocess, the encrypted flag after loading shares, CrypTen's
Flatten(axis=), layer_norm's int shape and the axis= aliases torch takes.

Comparisons are exact (the sign bit of x - c, no truncation): the results
are compared with float64 torch with tolerance 0. Values are on the
fixed-point grid (whole numbers and halves) so the encoding is exact too.
"""

import pytest
import torch
import torch.nn.functional as Fn

import cryptgpu
from conftest import usable

INF = float("inf")
NAN = float("nan")


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def _x():
    return torch.tensor([1.0, -2.0, 3.5, 0.0, -1e9, 2e9], dtype=torch.float64)


OPS = ["lt", "gt", "le", "ge", "eq", "ne"]
FAR = [INF, -INF, 1e10, -1e10, 2.0**31, -(2.0**31), 1e300, -1e300, NAN]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("c", FAR)
def test_compare_with_public_number_beyond_the_range(session, op, c):
    x = _x()
    got = pt(getattr(cryptgpu.cryptensor(x), op)(c))
    want = getattr(x, op)(c).double()
    assert torch.equal(got, want), (op, c, got, want)  # exact: a sign bit, tolerance 0


@pytest.mark.parametrize("op", OPS)
def test_compare_with_public_tensor_holding_far_values(session, op):
    x = _x()
    c = torch.tensor([INF, 0.0, -INF, NAN, -1e12, 1e12], dtype=torch.float64)
    got = pt(getattr(cryptgpu.cryptensor(x), op)(c))
    assert torch.equal(got, getattr(x, op)(c).double())  # exact, tolerance 0
    # broadcast to a higher rank, and the reflected form torch dispatches
    c2 = torch.tensor([[INF], [-INF], [1.5]], dtype=torch.float64)
    got = pt(getattr(cryptgpu.cryptensor(x), op)(c2))
    assert torch.equal(got, getattr(x, op)(c2).double())  # exact, tolerance 0
    assert torch.equal(pt(c < cryptgpu.cryptensor(x)), (c < x).double())  # exact


def test_operators_and_masks_with_inf(session):
    s = torch.tensor([[0.5, -INF, 2.0], [1.0, 3.0, -INF]], dtype=torch.float64)
    scores = cryptgpu.cryptensor(s.clamp(min=-1e4))  # shared values are finite
    x = cryptgpu.cryptensor(_x())
    assert torch.equal(pt(x < INF), torch.ones(6, dtype=torch.float64))  # exact
    assert torch.equal(pt(x > -INF), torch.ones(6, dtype=torch.float64))  # exact
    assert torch.equal(pt(x <= 1e10), torch.ones(6, dtype=torch.float64))  # exact
    assert torch.equal(pt(INF > x), torch.ones(6, dtype=torch.float64))  # exact
    mask = scores > -INF
    assert torch.equal(pt(mask), torch.ones(2, 3, dtype=torch.float64))  # exact
    out = cryptgpu.where(mask, scores, 0.0)
    assert torch.equal(pt(out), s.clamp(min=-1e4))  # a selection: exact, tolerance 0


def test_far_comparisons_stay_exact_beyond_2_31(session):
    # shared values past the encoding's range (an exact integer product):
    # x - c is exact in the ring while |x - c| < 2^(63-f)
    x = torch.tensor([1e9, -1e9, 3.0, 1.25e9], dtype=torch.float64)
    big = cryptgpu.cryptensor(x) * 8  # 8e9, -8e9, 24, 1e10
    xb = x * 8
    for c in (1e10, -1e10, 5e9, 9e9, 1e12, INF, -INF):
        for op in OPS:
            got = pt(getattr(big, op)(c))
            assert torch.equal(got, getattr(xb, op)(c).double()), (op, c)  # exact


def test_clamp_and_hardtanh_with_far_bounds(session):
    x = _x()
    xe = cryptgpu.cryptensor(x)
    for kw in (
        {"max": 1e10},
        {"min": -1e10},
        {"min": -1e10, "max": 1e10},
        {"min": -1e20, "max": 2.5},
        {"min": 0.5, "max": 1e20},
        {"min": -INF, "max": 1e10},
        {"max": torch.tensor([INF, 0.0, 1e12, INF, 2.0, -1.0], dtype=torch.float64)},
        {"min": torch.tensor([-INF, 0.0, -1e12, 1.0, -INF, -1e10], dtype=torch.float64)},
        {
            "min": torch.tensor([-INF, 0.0, 2.0, -1e12, 1.0, -5.0], dtype=torch.float64),
            "max": torch.tensor([INF, 1e11, 3.0, 1e12, 0.5, INF], dtype=torch.float64),
        },
    ):
        got = pt(xe.clamp(**kw))
        assert torch.equal(got, x.clamp(**kw)), kw  # ReLUs of exact differences: tolerance 0
    got = pt(Fn.hardtanh(xe, -1e10, 1e10))
    assert torch.equal(got, Fn.hardtanh(x, -1e10, 1e10))  # exact, tolerance 0
    got = pt(xe.clamp(min=1e10, max=1e10))  # max everywhere, beyond 2^31: exact words
    assert torch.equal(got, torch.full((6,), 1e10, dtype=torch.float64))  # exact
    shared_lo = cryptgpu.cryptensor(torch.full((6,), -1.5, dtype=torch.float64))
    got = pt(xe.clamp(min=shared_lo, max=1e10))
    assert torch.equal(got, x.clamp(min=-1.5, max=1e10))  # exact, tolerance 0


def test_clamp_whose_result_no_share_holds_is_still_refused(session):
    xe = cryptgpu.cryptensor(_x())
    for kw in ({"max": -INF}, {"min": INF}, {"max": NAN}, {"min": 1e30}):
        with pytest.raises(cryptgpu.EncodingError):
            xe.clamp(**kw)
        assert usable()


def test_far_comparison_gradient_is_zero(session):
    x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0]), requires_grad=True)
    ((x < INF) * x).sum().backward()
    # [x < inf] x: gradient 1 (the indicator's own is 0), exact
    assert torch.equal(pt(x.grad), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("src", [1, 2])
def test_load_from_party_src_error_reaches_the_caller(session, tmp_path, src):
    missing = str(tmp_path / "no_such_file.pth")
    held = str(tmp_path / "dict.pth")
    torch.save({"x": torch.ones(2)}, held)

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def load(path):
        return cryptgpu.load_from_party(path, src=src).get_plain_text()

    # src's own error, not the neighbours' "party 1 could not load its tensor"
    with pytest.raises(FileNotFoundError):
        load(missing)
    with pytest.raises(TypeError, match="holds a dict"):
        load(held)
    assert usable()


def test_shares_loaded_into_a_plaintext_model_mark_it_encrypted(session):
    torch.manual_seed(0)
    src = cryptgpu.nn.Sequential(cryptgpu.nn.Linear(2, 3), cryptgpu.nn.ReLU())
    src.encrypt()
    dst = cryptgpu.nn.Sequential(cryptgpu.nn.Linear(2, 3), cryptgpu.nn.ReLU())
    assert not dst.encrypted
    dst.load_state_dict(src.state_dict())
    # every module says what encrypt() would have made it say
    assert all(m.encrypted for m in dst.modules())
    w = pt(src[0].weight)
    dst.decrypt()
    assert not dst.encrypted
    assert torch.equal(dst[0].weight.detach().double(), w)  # opened shares: exact
    dst.encrypt()
    assert dst.encrypted and isinstance(dst[0].weight, cryptgpu.SharedTensor)


def test_flatten_axis_is_cryptens_and_position_is_torchs(session):
    x = torch.arange(24.0, dtype=torch.float64).view(2, 3, 2, 2)
    xe = cryptgpu.cryptensor(x)
    for axis, shape in ((2, (6, 4)), (0, (1, 24)), (1, (2, 12)), (-1, (12, 2))):
        got = cryptgpu.nn.Flatten(axis=axis)(xe)
        assert tuple(got.shape) == shape
        assert torch.equal(pt(got), x.reshape(shape))  # a view: exact, tolerance 0
    got = cryptgpu.nn.Flatten(2)(xe)  # positional: torch's start_dim
    assert torch.equal(pt(got), torch.nn.Flatten(2)(x))  # exact, tolerance 0
    m = cryptgpu.nn.Sequential(cryptgpu.nn.Flatten(axis=2), cryptgpu.nn.Linear(4, 1))
    m.encrypt()
    assert tuple(m(xe).shape) == (6, 1)


@pytest.mark.parametrize("fn", [Fn.layer_norm, Fn.rms_norm])
def test_norm_functions_refuse_one_number_as_torch(session, fn):
    x = torch.tensor([[1.0, -2.0, 3.5, 0.5]], dtype=torch.float64)
    xe = cryptgpu.cryptensor(x)
    for shape in (4, torch.tensor(4)):
        with pytest.raises(TypeError):
            fn(x, shape)  # torch's own refusal, which ours follows
        with pytest.raises(TypeError):
            fn(xe, shape)
        with pytest.raises(TypeError):
            fn(xe, normalized_shape=shape)
        assert usable()
    # a list or tuple works; the modules take an int, as torch's
    want = fn(x, [4])
    # LayerNorm / RMSNorm of one row: the range-reduced 1/sqrt is within
    # 1e-4 relative and the normalised values are below 2 (README)
    assert (pt(fn(xe, [4])) - want).abs().max() <= 4e-4
    assert (pt(cryptgpu.nn.LayerNorm(4)(xe)) - Fn.layer_norm(x, (4,))).abs().max() <= 4e-4


def test_axis_alias_where_torch_takes_it(session):
    x = torch.tensor([[1.0, -2.0, 3.5], [0.5, 4.0, -1.0]], dtype=torch.float64)
    xe = cryptgpu.cryptensor(x)
    i = torch.tensor([[0, 2], [1, 0]])
    # every result is a selection or a view: exact, tolerance 0
    assert torch.equal(pt(xe.gather(axis=1, index=i)), x.gather(axis=1, index=i))
    assert torch.equal(pt(torch.gather(xe, axis=1, index=i)), torch.gather(x, axis=1, index=i))
    assert torch.equal(pt(xe.unsqueeze(axis=0)), x.unsqueeze(axis=0))
    assert torch.equal(pt(torch.unsqueeze(xe, axis=1)), torch.unsqueeze(x, axis=1))
    assert torch.equal(pt(xe[None].squeeze(axis=0)), x[None].squeeze(axis=0))
    assert torch.equal(pt(torch.squeeze(xe[None], axis=0)), torch.squeeze(x[None], axis=0))
    ye = xe.clone()
    ye.unsqueeze_(axis=0)
    assert tuple(ye.shape) == (1, 2, 3)
    ye.squeeze_(axis=0)
    assert torch.equal(pt(ye), x)
    # flip takes no axis= in torch: the same TypeError here
    with pytest.raises(TypeError):
        x.flip(axis=0)
    with pytest.raises(TypeError):
        xe.flip(axis=0)
    with pytest.raises(TypeError):  # both names: torch's TypeError
        xe.unsqueeze(0, axis=0)
    assert usable()


def test_python_ints_torch_compares_and_those_it_refuses(session):
    x = _x()
    xe = cryptgpu.cryptensor(x)
    for c in (2**63 - 1, 2**63, -(2**63)):  # torch takes these
        assert torch.equal(pt(xe < c), (x < c).double())  # exact, tolerance 0
    with pytest.raises(OverflowError):
        x.lt(2**70)  # torch's refusal; ours stays the encoding's (a ValueError)
    with pytest.raises(cryptgpu.EncodingError):
        xe.lt(2**70)
    assert usable()


def test_maximum_minimum_with_far_public_values(session):
    x = _x()
    xe = cryptgpu.cryptensor(x)
    for c in (
        torch.tensor(-INF),
        torch.tensor([[-INF], [-1e10], [1.5]], dtype=torch.float64),
        torch.tensor([-INF, 0.0, -1e12, 5.0, -INF, 1e10], dtype=torch.float64),
    ):
        # ReLUs of exact differences: tolerance 0
        assert torch.equal(pt(torch.maximum(xe, c)), torch.maximum(x, c))
        assert torch.equal(pt(torch.minimum(xe, -c)), torch.minimum(x, -c))
    # a result no share holds stays the encoding's error, as before
    for f in (lambda: torch.maximum(xe, torch.tensor(INF)), lambda: xe.minimum(torch.tensor(NAN))):
        with pytest.raises(cryptgpu.EncodingError):
            f()
    assert usable()
