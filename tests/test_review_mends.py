"""What a read of the twenty-fourth session's diff found (2026-12-07):
an object answering every attribute (a config dict) assigned to a
cryptgpu.nn.Module was taken for a flagged buffer and refused; 0-d
``F.normalize`` / ``F.cosine_similarity`` raised TypeError (torch: 1.0);
a selection by a comparison's bit that does not broadcast raised a plain
RuntimeError where the same product raises ShapeError. Each test fails on
the code before its fix.
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


class AttrDict(dict):
    """addict / Box style: every attribute answers (a new empty dict)."""

    def __getattr__(self, k):
        return self.setdefault(k, AttrDict())


def test_a_config_object_is_a_plain_attribute_of_a_module(session):
    class Net(cryptgpu.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = cryptgpu.nn.Linear(2, 2)
            self.cfg = AttrDict(hidden=4)

        def forward(self, x):
            return self.fc(x)

    n = Net()  # raised TypeError "cannot assign AttrDict as buffer 'cfg'"
    assert n.cfg["hidden"] == 4 and list(n.named_buffers()) == []

    class Flagged(cryptgpu.nn.Module):  # nn.Parameter / nn.Buffer of a shared tensor: still so
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(cryptgpu.cryptensor(torch.ones(2)))
            self.b = torch.nn.Buffer(cryptgpu.cryptensor(torch.ones(2)))

    f = Flagged()
    assert [k for k, _ in f.named_parameters()] == ["p"]
    assert [k for k, _ in f.named_buffers()] == ["b"]


def test_normalize_and_cosine_similarity_of_0d_tensors(session):
    """torch: x / max(|x|, eps) = 1.0 for 3.0, cosine of 3 and 2 = 1.0;
    ours within the unit-row protocol's accuracy (a reciprocal square root
    on a bucketed norm: 1e-4 relative, README), plus the encoding ENC."""
    x, y = torch.tensor(3.0, dtype=D), torch.tensor(2.0, dtype=D)
    xs, ys = cryptgpu.cryptensor(x), cryptgpu.cryptensor(y)
    got = F.normalize(xs, dim=0)
    assert got.shape == () and abs(opened(got) - F.normalize(x, dim=0)) <= 1e-4 + ENC
    cos = F.cosine_similarity(xs, ys, dim=0)
    assert cos.shape == () and abs(opened(cos) - F.cosine_similarity(x, y, dim=0)) <= 1e-4 + ENC


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a * b[:, :2],
        lambda a, b: (a > 0) * b[:, :2],
        lambda a, b: b[:, :2] * (a > 0),
        lambda a, b: torch.where(a > 0, b[:, :2], 0.0),
    ],
)
def test_a_selection_that_does_not_broadcast_is_a_shape_error(session, op):
    a = cryptgpu.cryptensor(torch.randn(3, 4))
    b = cryptgpu.cryptensor(torch.randn(3, 4))
    with pytest.raises(cryptgpu.ShapeError, match=r"\(3, 4\) and \(3, 2\) do not broadcast"):
        op(a, b)
    assert usable()


def test_a_layernorm_built_directly_has_leaf_parameters(session):
    """Its bias was ``weight * 0``, made after the weight was registered
    (requiring grad): a non-leaf, so ``copy.deepcopy(LayerNorm(4))`` raised
    torch's RuntimeError and an unencrypted model's bias got no .grad."""
    import copy

    m = cryptgpu.nn.LayerNorm(4)
    assert m.bias.is_leaf and m.weight.is_leaf
    c = copy.deepcopy(m)
    assert torch.equal(c.bias, torch.zeros(4, dtype=D))
    x = torch.randn(3, 4, dtype=D)
    m(x).pow(2).sum().backward()
    assert m.bias.grad is not None
