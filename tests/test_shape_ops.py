"""Shape operations are exact rearrangements: compared with torch exactly."""

import pytest
import torch
import torch.nn.functional as Fn

import cryptgpu
from conftest import ENC, assert_close, rand, usable


@pytest.fixture
def pair(session, rng):
    a = rand(2, 3, 4, 5, gen=rng, scale=10)
    return a, cryptgpu.cryptensor(a)


def check(s, t):
    assert_close(s.get_plain_text(dtype=torch.float64), t, ENC)  # encoding only


def test_reshape_view_flatten(pair):
    a, x = pair
    check(x.reshape(6, 20), a.reshape(6, 20))
    check(x.view(-1, 5), a.view(-1, 5))
    check(x.reshape((4, -1)), a.reshape(4, -1))
    check(x.flatten(), a.flatten())
    check(x.flatten(1), a.flatten(1))
    check(x.flatten(1, 2), a.flatten(1, 2))


def test_transpose_permute(pair):
    a, x = pair
    check(x.transpose(1, 3), a.transpose(1, 3))
    check(x.permute(3, 1, 0, 2), a.permute(3, 1, 0, 2))
    check(x.T, a.permute(3, 2, 1, 0))
    check(x[0, 0].t(), a[0, 0].t())


def test_squeeze_unsqueeze_expand(pair):
    a, x = pair
    check(x.unsqueeze(0), a.unsqueeze(0))
    check(x.unsqueeze(-1), a.unsqueeze(-1))
    check(x.unsqueeze(2).squeeze(2), a)
    check(x[:, :1].squeeze(), a[:, :1].squeeze())
    check(x[:, :1].expand(2, 7, 4, 5), a[:, :1].expand(2, 7, 4, 5))
    check(x.expand(3, -1, -1, -1, -1), a.expand(3, -1, -1, -1, -1))


def test_indexing(pair):
    a, x = pair
    for idx in [
        1,
        (0, 2),
        (slice(None), 1),
        (..., 2),
        (slice(1, None), slice(None, None, 2)),
        (0, ..., slice(1, 4)),
        (None, 1),
        (-1, -2, slice(None, None, 3)),
    ]:
        check(x[idx], a[idx])


def test_cat_stack(session, rng):
    a, b = rand(2, 3, gen=rng), rand(2, 4, gen=rng)
    x, y = cryptgpu.cryptensor(a), cryptgpu.cryptensor(b)
    check(cryptgpu.cat([x, y], dim=1), torch.cat([a, b], 1))
    check(cryptgpu.cat([x, x], dim=0), torch.cat([a, a], 0))
    check(cryptgpu.stack([x, x], dim=1), torch.stack([a, a], 1))
    check(cryptgpu.stack([x, x], dim=-1), torch.stack([a, a], -1))


def test_pad(pair):
    a, x = pair
    check(x.pad((1, 2)), Fn.pad(a, (1, 2)))
    check(x.pad((1, 1, 2, 0)), Fn.pad(a, (1, 1, 2, 0)))
    check(x.pad((0, 0, 1, 1), value=1.5), Fn.pad(a, (0, 0, 1, 1), value=1.5))
    check(x.pad((-1, 1)), Fn.pad(a, (-1, 1)))


def test_pad_with_a_shared_value(pair):
    """CrypTen's test_pad pads with MPCTensor(value): a 0-d SharedTensor
    fills the border (a SecretValueError from the library's own
    ``value != 0`` before), through the method and F.pad, crops included;
    its gradient is the sum of the border's. Values: encodings only (the
    border is the encoded value times public 0/1: exact); gradients of
    integers: exact."""
    a, x = pair
    v = cryptgpu.cryptensor(torch.tensor(-2.75))
    for p in [(1, 2), (1, 1, 2, 0), (0, 0, 1, 1, 0, 2), (-1, 1, 1, 0)]:
        check(x.pad(p, value=v), Fn.pad(a, p, value=-2.75))
        check(Fn.pad(x, p, value=v), Fn.pad(a, p, value=-2.75))
        check(x.pad(p, "constant", v), Fn.pad(a, p, value=-2.75))  # CrypTen's order
    xs = cryptgpu.cryptensor(a, requires_grad=True)
    vs = cryptgpu.cryptensor(torch.tensor(0.5), requires_grad=True)
    g = torch.arange(2 * 3 * 5 * 8, dtype=torch.float64).reshape(2, 3, 5, 8) % 7 - 3
    xs.pad((1, 2, 0, 1), value=vs).backward(cryptgpu.cryptensor(g))
    assert_close(xs.grad.get_plain_text(dtype=torch.float64), g[:, :, :4, 1:6], 0.0)
    border = g.sum() - g[:, :, :4, 1:6].sum()
    assert_close(vs.grad.get_plain_text(dtype=torch.float64), border, 0.0)
    with pytest.raises(TypeError, match="value"):  # torch's type: a float or a 0-d tensor
        x.pad((1, 1), value=cryptgpu.cryptensor(torch.ones(2)))
    assert usable()


def test_size_len_numel(pair):
    a, x = pair
    assert x.shape == a.shape
    assert x.size() == a.size()
    assert x.size(1) == 3 and x.size(-1) == 5
    assert len(x) == 2
    assert x.dim() == 4 and x.numel() == a.numel()
