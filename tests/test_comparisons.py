"""Comparisons, ReLU, max/argmax and max-pool against float64 PyTorch.

Everything here is exact on the fixed-point grid: the sign bit is computed
exactly and bit injection multiplies by an integer bit, so no truncation
happens. The only tolerance is the encoding of inputs (none for grid values).
"""

import pytest
import torch
import torch.nn.functional as Fn

import cryptgpu
from conftest import ENC, TRUNC, ULP, assert_close, rand

LIMIT = 2.0**30  # largest magnitude the tests encode at f = 16 (< 2^31)


def grid(t):
    """Round to the fixed-point grid so comparisons have exact references."""
    return torch.round(t / ULP) * ULP


@pytest.fixture
def edge():
    vals = [0.0, ULP, -ULP, 2 * ULP, -2 * ULP, 1.0, -1.0, 0.5, -0.5, LIMIT / 2, -LIMIT / 2]
    vals += [LIMIT - 1, -(LIMIT - 1), 12345.25, -12345.25]
    g = torch.Generator().manual_seed(3)
    vals += grid(rand(100, gen=g, scale=1000)).tolist()
    return torch.tensor(vals, dtype=torch.float64)


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def test_relu_exact_at_the_edges(session, edge):
    assert_close(pt(cryptgpu.cryptensor(edge).relu()), edge.relu(), 0.0)


def test_comparisons_with_shared_and_public(session, edge):
    x = cryptgpu.cryptensor(edge)
    y_plain = edge.flip(0)
    y = cryptgpu.cryptensor(y_plain, src=1)
    for other, ref in ((y, y_plain), (y_plain, y_plain), (0.5, torch.tensor(0.5))):
        assert_close(pt(x < other), (edge < ref).double(), 0.0)
        assert_close(pt(x > other), (edge > ref).double(), 0.0)
        assert_close(pt(x <= other), (edge <= ref).double(), 0.0)
        assert_close(pt(x >= other), (edge >= ref).double(), 0.0)
        assert_close(pt(x == other), (edge == ref).double(), 0.0)
        assert_close(pt(x != other), (edge != ref).double(), 0.0)


def test_sign_abs_where_clamp(session, edge):
    x = cryptgpu.cryptensor(edge)
    # torch's sign (0 at 0; CrypTen gives 1), exact: two comparisons.
    assert_close(pt(x.sign()), edge.sign(), 0.0)
    assert_close(pt(x.abs()), edge.abs(), 0.0)
    assert_close(pt(x.clamp(-2.5, 3.0)), edge.clamp(-2.5, 3.0), 0.0)
    assert_close(pt(x.clamp(min=-1.0)), edge.clamp(min=-1.0), 0.0)
    assert_close(pt(x.clamp(max=1.0)), edge.clamp(max=1.0), 0.0)
    small = grid(edge.clamp(-100, 100))
    s = cryptgpu.cryptensor(small)
    cond = small > 0
    other = torch.full_like(small, 7.0)
    assert_close(pt(cryptgpu.where(cond, s, other)), torch.where(cond, small, other), 0.0)
    # A shared condition costs one truncated product.
    sc = s > 0
    assert_close(pt(s.where(sc, other)), torch.where(cond, small, other), 2 * TRUNC)


@pytest.mark.parametrize(
    "shape,dim", [((7,), 0), ((4, 9), 1), ((5, 3), 0), ((2, 3, 6), -1), ((3, 1), 1)]
)
def test_max_argmax(session, rng, shape, dim):
    a = grid(rand(*shape, gen=rng, scale=50))
    x = cryptgpu.cryptensor(a)
    v, oh = x.max(dim)
    assert_close(pt(v), a.max(dim).values, 0.0)
    want = Fn.one_hot(a.argmax(dim), a.shape[dim]).double().movedim(-1, dim % a.dim())
    assert_close(pt(oh), want, 0.0)
    vk, _ = x.max(dim, keepdim=True)
    assert_close(pt(vk), a.max(dim, keepdim=True).values, 0.0)
    mn, ohm = x.min(dim)
    assert_close(pt(mn), a.min(dim).values, 0.0)
    wantm = Fn.one_hot(a.argmin(dim), a.shape[dim]).double().movedim(-1, dim % a.dim())
    assert_close(pt(ohm), wantm, 0.0)
    assert_close(pt(x.max()), a.max(), 0.0)


def test_argmax_ties_pick_the_first(session):
    a = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0]], dtype=torch.float64)
    oh = pt(cryptgpu.cryptensor(a).argmax(1))
    want = Fn.one_hot(a.argmax(1), 5).double()  # torch returns the first maximum
    assert_close(oh, want, 0.0)
    assert oh.sum(1).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("k", [65, 3000])
def test_wide_argmax_is_exact_and_k_log_k(session, k):
    """A row wider than 64 carried k one-hots of k values each (k^2: one
    row of 20,000 took 19 GB and 117 s, then ran out of memory
    mid-protocol and left the session out of step). Padded to a power of
    two with public values below any encodable one, it costs k log k: the
    one-hot and the maximum are exact (selections of encoded values), ties
    go to the first index as torch's, and the bytes per party stay below
    64 bytes per padded element and level (k^2 would be 8 k^2)."""
    gen = torch.Generator().manual_seed(k)
    v = torch.randint(-50, 50, (3, k), generator=gen).double()
    v[1, 7] = v[1, k - 1] = 1000.0  # a tie: the first wins
    x = cryptgpu.cryptensor(v)
    cryptgpu.reset_stats()
    vals, onehot = x.max(-1)
    k2 = 1 << (k - 1).bit_length()
    levels = k2.bit_length() - 1
    assert cryptgpu.stats()["total"]["bytes_per_party"] <= 64 * 3 * k2 * levels
    # the design table's 10 ceil(log2 k) rounds: padding adds no level
    assert cryptgpu.stats()["total"]["rounds"] == 10 * (k - 1).bit_length()
    assert_close(vals.get_plain_text(dtype=torch.float64), v.max(-1).values, 0.0)
    want = torch.nn.functional.one_hot(v.argmax(-1), k).double()
    assert_close(onehot.get_plain_text(dtype=torch.float64), want, 0.0)
    assert_close(x.sum().get_plain_text(dtype=torch.float64), v.sum(), 0.0)  # usable


@pytest.mark.parametrize(
    "k,stride,pad,dil",
    [(2, None, 0, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 1), 1), (2, 1, 0, 2), (3, 3, 0, 1)],
)
def test_max_pool2d(session, rng, k, stride, pad, dil):
    a = grid(rand(2, 3, 9, 8, gen=rng, scale=5))
    want, idx = Fn.max_pool2d(a, k, stride, pad, dil, return_indices=True)
    got, oh = cryptgpu.cryptensor(a).max_pool2d(
        k, stride=stride, padding=pad, dilation=dil, return_indices=True
    )
    assert_close(pt(got), want, 0.0)
    ohp = pt(oh)
    assert ohp.shape == want.shape + _pair2(k) and (ohp.sum((-2, -1)) == 1).all()
    assert torch.equal(_mask_to_indices(ohp, a.shape[-2:], k, stride, pad, dil), idx)


def _pair2(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _mask_to_indices(mask, hw, k, stride, pad, dil):
    """torch's flat indices from CrypTen's one-hot window mask [.., OH, OW,
    kh, kw]; a hot padding slot (or one past the input) reads -1."""
    (kh, kw), (ph, pw), (dh, dw) = _pair2(k), _pair2(pad), _pair2(dil)
    sh, sw = _pair2(k if stride is None else stride)
    oh, ow = mask.shape[-4], mask.shape[-3]
    slot = torch.full((oh, ow, kh, kw), -1, dtype=torch.int64)
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    y, x = i * sh + u * dh - ph, j * sw + v * dw - pw
                    if 0 <= y < hw[0] and 0 <= x < hw[1]:
                        slot[i, j, u, v] = y * hw[1] + x
    hot = mask.round().long()
    on_pad = (hot * (slot < 0)).sum((-2, -1)) > 0
    return torch.where(on_pad, -1, (hot * slot).sum((-2, -1)))


@pytest.mark.parametrize(
    "k,stride,pad,dil,ceil",
    [
        (2, 1, 1, 1, False),
        (3, 2, 1, 1, False),
        ((2, 3), (1, 2), (1, 1), 1, False),
        (3, 1, 1, 2, False),
        (2, 2, 1, 1, True),
        (3, 2, 1, 1, True),
    ],
)
def test_max_pool2d_mask_never_marks_padding(session, k, stride, pad, dil, ceil):
    """return_indices' mask is CrypTen's [N, C, OH, OW, kh, kw] and its hot
    slot is torch's index: the first in-bounds maximum. The engine fills a
    padding slot with a copy of the window's first in-bounds element and
    the tournament's tie went to that earlier, padded slot (a mask that
    pointed into the padding in 3 of 16 windows of a 3 x 3 input); many
    ties here (integers in [-3, 3], negative ones beside the padding). The
    values, the mask and the gradient (to torch's index) are exact."""
    gen = torch.Generator().manual_seed(7)
    a = torch.randint(-3, 4, (2, 2, 7, 6), generator=gen).double()
    want, idx = Fn.max_pool2d(a, k, stride, pad, dil, ceil_mode=ceil, return_indices=True)
    x = cryptgpu.cryptensor(a, requires_grad=True)
    got, oh = x.max_pool2d(
        k, stride=stride, padding=pad, dilation=dil, ceil_mode=ceil, return_indices=True
    )
    assert_close(pt(got), want, 0.0)
    ohp = pt(oh)
    assert ohp.shape == want.shape + _pair2(k) and (ohp.sum((-2, -1)) == 1).all()
    assert torch.equal(_mask_to_indices(ohp, a.shape[-2:], k, stride, pad, dil), idx)
    g = torch.arange(want.numel(), dtype=torch.float64).reshape(want.shape) % 5 - 2
    got.backward(cryptgpu.cryptensor(g))
    at = a.clone().requires_grad_()
    Fn.max_pool2d(at, k, stride, pad, dil, ceil_mode=ceil).backward(g)
    assert_close(pt(x.grad), at.grad, 0.0)  # integer gradients summed: exact


def test_max_pool_masks_unbatched_and_1d(session):
    """The mask of an unbatched (CHW) input drops N; max_pool1d's is
    [N, C, OL, k], its hot slot torch's index too."""
    gen = torch.Generator().manual_seed(8)
    a = torch.randint(-3, 4, (3, 5, 5), generator=gen).double()
    want, idx = Fn.max_pool2d(a, 2, 1, 1, return_indices=True)
    _, oh = cryptgpu.cryptensor(a).max_pool2d(2, 1, 1, return_indices=True)
    assert torch.equal(_mask_to_indices(pt(oh), a.shape[-2:], 2, 1, 1, 1), idx)
    b = torch.randint(-3, 4, (2, 3, 9), generator=gen).double()
    want, idx = Fn.max_pool1d(b, 3, 2, 1, return_indices=True)
    got, m = cryptgpu.cryptensor(b).max_pool1d(3, 2, 1, return_indices=True)
    assert_close(pt(got), want, 0.0)
    m = pt(m)
    assert m.shape == want.shape + (3,)
    hot = _mask_to_indices(m.unsqueeze(-2).unsqueeze(-4), (1, 9), (1, 3), (1, 2), (0, 1), 1)
    assert torch.equal(hot.squeeze(-2), idx)


def test_max_pool2d_unbatched(session, rng):
    a = grid(rand(3, 6, 6, gen=rng))
    assert_close(pt(cryptgpu.cryptensor(a).max_pool2d(2)), Fn.max_pool2d(a, 2), 0.0)


def test_relu_rounds_do_not_depend_on_size(session):
    for n in (1, 100, 5000):
        x = cryptgpu.cryptensor(torch.ones(n))
        cryptgpu.reset_stats()
        x.relu()
        assert cryptgpu.stats()["ops"]["relu"]["rounds"] == 10


def test_relu_bytes_match_the_design(session):
    """msb: P0 sends its 64 input planes, everyone 181 AND planes (one word per
    64 elements each); bit injection: 2 ring elements per element."""
    n = 10000
    nw = -(-n // 64)
    x = cryptgpu.cryptensor(torch.ones(n))
    cryptgpu.reset_stats()
    x.relu()
    got = [p["relu"]["bytes"] for p in cryptgpu.stats(per_party=True)["parties"]]
    base = 8 * (181 * nw + 2 * n)
    assert got == [base + 8 * 64 * nw, base, base]
    assert max(got) / n < 48  # bytes per element: about 6 words


def test_comparison_rounds(session):
    x = cryptgpu.cryptensor(torch.ones(50))
    cryptgpu.reset_stats()
    _ = x < 0.5
    assert cryptgpu.stats()["ops"]["lt"]["rounds"] == 10
    cryptgpu.reset_stats()
    x.max(0)
    # a tournament over 50 values: ceil(log2(50)) = 6 levels of 10 rounds
    assert cryptgpu.stats()["ops"]["max"]["rounds"] == 60


def test_bad_arguments(session):
    x = cryptgpu.cryptensor(torch.ones(2, 3))
    with pytest.raises(ValueError, match="clamp"):
        x.clamp()
    # clamp(2, 1) is torch's max everywhere now (test_torch_semantics.py);
    # hardtanh keeps torch's refusal of min_val > max_val
    with pytest.raises(ValueError, match="greater"):
        x.hardtanh(2.0, 1.0)
    with pytest.raises(IndexError):
        x.argmax(2, one_hot=False)  # the index form (test_crypten_compat) checks dims too
    with pytest.raises(ValueError, match="NCHW"):
        x.max_pool2d(2)
    with pytest.raises(ValueError):
        cryptgpu.cryptensor(torch.ones(1, 1, 4, 4)).max_pool2d(5)
    with pytest.raises(TypeError):
        cryptgpu.where(torch.ones(2, 3) > 0, 1.0, 2.0)


def test_encoding_tolerance_constant():
    assert ENC == ULP / 2


@pytest.mark.parametrize("hw,out", [((5, 5), 2), ((7, 6), (3, 4)), ((6, 6), 3), ((4, 5), (1, 1))])
def test_adaptive_max_pool2d_return_indices(session, hw, out):
    """CrypTen's keyword (TypeError before): values, and a one-hot mask
    [N, C, OH, OW, kh, kw] over each of torch's windows (kh x kw the
    largest; a short window's extra slots are never hot) whose hot slot is
    torch's index; the gradient goes there too. Integers in [-3, 3]: many
    ties; selections and 0/1 gradients are exact."""
    gen = torch.Generator().manual_seed(9)
    a = torch.randint(-3, 4, (2, 2) + hw, generator=gen).double()
    want, idx = Fn.adaptive_max_pool2d(a, out, return_indices=True)
    x = cryptgpu.cryptensor(a, requires_grad=True)
    assert_close(pt(x.adaptive_max_pool2d(out, return_indices=False)), want, 0.0)
    got, mask = x.adaptive_max_pool2d(out, return_indices=True)
    assert_close(pt(got), want, 0.0)
    (oh, ow), (h, w) = want.shape[-2:], hw
    rows = [(i * h // oh, -(-(i + 1) * h // oh)) for i in range(oh)]
    cols = [(j * w // ow, -(-(j + 1) * w // ow)) for j in range(ow)]
    kh, kw = max(b - a for a, b in rows), max(b - a for a, b in cols)
    m = pt(mask)
    assert m.shape == want.shape + (kh, kw) and (m.sum((-2, -1)) == 1).all()
    slot = torch.full((oh, ow, kh, kw), -1, dtype=torch.int64)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            for u in range(r1 - r0):
                for v in range(c1 - c0):
                    slot[i, j, u, v] = (r0 + u) * w + c0 + v
    hot = m.round().long()
    on_extra = (hot * (slot < 0)).sum((-2, -1)) > 0
    assert torch.equal(torch.where(on_extra, -1, (hot * slot).sum((-2, -1))), idx)
    g = torch.arange(want.numel(), dtype=torch.float64).reshape(want.shape) % 5 - 2
    got.backward(cryptgpu.cryptensor(g))
    at = a.clone().requires_grad_()
    Fn.adaptive_max_pool2d(at, out).backward(g)
    assert_close(pt(x.grad), at.grad, 0.0)  # integer gradients summed: exact
    _, m3 = cryptgpu.cryptensor(a[0]).adaptive_max_pool2d(out, return_indices=True)
    assert_close(pt(m3), m[0], 0.0)  # an unbatched input: the same mask without N
