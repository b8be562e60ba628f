"""Probe OQ (differential fuzzing of views and in-place ops): what it
found, checked against torch itself.

- A refused in-place op on a view of an ``expand``ed tensor
  (``x.expand(2, 3)[:, 1:].add_(10.)``) raised torch's RuntimeError but the
  view kept the refused value: it read 12, 13 where torch reads 2, 3.
- The internal-overlap check refused writes torch makes: no element
  repeated (``x.expand(1, 2, 3).add_(1)``, one row of an expanded tensor, an
  empty one), ``fill_``/``zero_`` (torch writes the shared places), and
  ``x[1, i] = x[0, 2]`` (torch's index_put_ writes ``x[1]``, disjoint from
  the value).
- ``gather`` refused an empty index; ``clamp_`` took a tensor bound with a
  number bound (torch: TypeError).

Values: the inputs are integers or halves, and every op here (add, a
product with 2, clamp, fill) keeps them on the fixed-point grid, so the
results are exact up to the encoding of one input: ULP (2^-16) bounds them.
"""

import pytest
import torch

import cryptgpu
from conftest import ULP, usable

D = torch.float64
X0 = [[-5.0, 77.0, -44.0, -91.5]]


def pt(x):
    return x.get_plain_text().to(D)


def S(v):
    return cryptgpu.cryptensor(torch.as_tensor(v, dtype=D))


VIEWS = {
    "expand(3,1,4).view(3,4)": lambda x: x.expand(3, 1, 4).view(3, 4),
    "expand(3,4)": lambda x: x.expand(3, 4),
    "expand(3,1,4).reshape(3,4)": lambda x: x.expand(3, 1, 4).reshape(3, 4),
    "expand(2,4)[:, 1:]": lambda x: x.expand(2, 4)[:, 1:],
    "[0].expand(2,4).t()": lambda x: x[0].expand(2, 4).t(),
    "t().expand(4,2)": lambda x: x.t().expand(4, 2),
    "unsqueeze(0).expand(2,1,4).squeeze(1)": lambda x: x.unsqueeze(0).expand(2, 1, 4).squeeze(1),
}

# (op on ours, op on torch): torch refuses each on every view above
# ("more than one element of the written-to tensor refers to a single
# memory location"; checked on torch in the test)
OPS = {
    "copy_": (lambda v: v.copy_(S(9.0)), lambda v: v.copy_(torch.tensor(9.0, dtype=D))),
    "fill_(tensor)": (lambda v: v.fill_(S(9.0)), lambda v: v.fill_(torch.tensor(9.0, dtype=D))),
    "add_": (lambda v: v.add_(10.0), lambda v: v.add_(10.0)),
    "mul_": (lambda v: v.mul_(S(2.0)), lambda v: v.mul_(torch.tensor(2.0, dtype=D))),
    "clamp_": (lambda v: v.clamp_(0, 1), lambda v: v.clamp_(0, 1)),
    "setitem": (
        lambda v: v.__setitem__(..., S(9.0)),
        lambda v: v.__setitem__(..., torch.tensor(9.0, dtype=D)),
    ),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_a_refused_write_through_an_expanded_view_changes_nothing(session, view, op):
    ours, theirs = OPS[op]
    t = torch.tensor(X0, dtype=D)
    tv = VIEWS[view](t)
    with pytest.raises(RuntimeError, match="single memory location"):
        theirs(tv)
    x = S(X0)
    v = VIEWS[view](x)
    with pytest.raises(RuntimeError, match="single memory location"):
        ours(v)
    # the view reads its base as before (it read the refused value: 50 for
    # v.sum() where torch reads 10); exact inputs, bound ULP (module doc)
    assert torch.allclose(pt(v), tv, atol=ULP, rtol=0)
    assert torch.allclose(pt(v.sum()), tv.sum(), atol=4 * ULP, rtol=0)  # 4+ elements
    assert torch.allclose(pt(x), t, atol=ULP, rtol=0)
    assert usable()


def test_the_report_reproducer(session):
    x = S([[1.0, 2.0, 3.0]])
    v = x.expand(2, 3)[:, 1:]
    with pytest.raises(RuntimeError):
        v.add_(10.0)
    assert abs(pt(v.sum()).item() - 10.0) <= 4 * ULP  # 4 exact elements
    x.add_(1.0)  # the view follows its base again
    assert torch.allclose(pt(v), torch.tensor([[3.0, 4.0], [3.0, 4.0]], dtype=D), atol=ULP)
    assert usable()


TWO = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]

# writes torch makes (until 2026-12-07 refused here); each also checked on torch
ALLOWED = {
    "expand(1,2,3).add_": lambda x, K: x.expand(1, 2, 3).add_(1),
    "expand(2,3).mul_ (no repeat)": lambda x, K: x.expand(2, 3).mul_(2),
    "one row of an expand": lambda x, K: x[:1].expand(3, 3)[0].add_(1),
    "a row through expand(1,...)": lambda x, K: x.expand(1, 2, 3)[0, 1].sub_(K(0.5)),
    "column of an expand = number": lambda x, K: x[:1].expand(3, 3)[:, 0].__setitem__(..., 9.0),
    "expand[:, 1] = number": lambda x, K: x[:1].expand(3, 3).__setitem__((slice(None), 1), 9.0),
    "expand.fill_(number)": lambda x, K: x[:1].expand(3, 3).fill_(7.0),
    "expand.zero_()": lambda x, K: x[:1].expand(3, 3).zero_(),
    "expand.t().zero_()": lambda x, K: x[1:].expand(2, 3).t().zero_(),
    "empty expand": lambda x, K: x[:0].expand(2, 0, 3).add_(1),
    "x[1, i] = x[0, 2]": lambda x, K: x.__setitem__((1, torch.tensor([0])), x[0, 2]),
    "x[1, [0, 2]] = x[0, :2]": lambda x, K: x.__setitem__((1, [0, 2]), x[0, :2]),
    "x[i, 1] = x[0, 2]": lambda x, K: x.__setitem__((torch.tensor([0]), 1), x[0, 2]),
    "y[mask, 1] = x[0:1]": lambda x, K: x.unsqueeze(0).__setitem__(
        (torch.tensor([True]), 1), x[0:1]
    ),
    "x[True, 0] = x[1]": lambda x, K: x.__setitem__((True, 0), x[1]),
    "x[:, i] = x[:, 2:]": lambda x, K: x.__setitem__((slice(None), torch.tensor([0])), x[:, 2:]),
    # torch's copy_ returns at once where src is the same elements alike
    "expand.copy_(itself)": lambda x, K: (lambda e: e.copy_(e))(x[:1].expand(3, 3)),
    "expand.copy_(transpose(1, 1))": lambda x, K: (lambda e: e.copy_(e.transpose(1, 1)))(
        x[:1].expand(3, 3)
    ),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_writes_torch_makes_through_expand_and_advanced_indices(session, case):
    t = torch.tensor(TWO, dtype=D)
    ALLOWED[case](t, lambda v: torch.tensor(v, dtype=D))  # torch computes it
    x = S(TWO)
    siblings = [x.expand(2, 2, 3), x[:1].expand(3, 3)[1:], x.t()]
    ALLOWED[case](x, S)
    # exact inputs and ops (module doc): ULP
    assert torch.allclose(pt(x), t, atol=ULP, rtol=0), case
    want = [t.expand(2, 2, 3), t[:1].expand(3, 3)[1:], t.t()]
    for s, w in zip(siblings, want):  # the other views of x follow it
        assert torch.allclose(pt(s), w, atol=ULP, rtol=0), case


# torch refuses these too (a partial overlap of what index_put_ writes, or
# an expand with repeats): so does ours, and nothing changes
STILL_REFUSED = {
    "x[1, [0, 1]] = x[1, 1:]": lambda x: x.__setitem__((1, torch.tensor([0, 1])), x[1, 1:]),
    "x[mask] = x[1]": lambda x: x.__setitem__(torch.tensor([True, False]), x[1]),
    "x[True, 0] = x[0]": lambda x: x.__setitem__((True, 0), x[0]),
    "expand[:, 0] = tensor": lambda x: x[:1].expand(3, 3).__setitem__((slice(None), 0), x[1, :3]),
    "expand.add_": lambda x: x[:1].expand(3, 3).add_(1),
}


@pytest.mark.parametrize("case", sorted(STILL_REFUSED))
def test_overlaps_torch_refuses_are_still_refused(session, case):
    t = torch.tensor(TWO, dtype=D)
    with pytest.raises(RuntimeError):
        STILL_REFUSED[case](t)
    x = S(TWO)
    with pytest.raises(RuntimeError):
        STILL_REFUSED[case](x)
    assert torch.allclose(pt(x), torch.tensor(TWO, dtype=D), atol=ULP, rtol=0)
    assert usable()


@pytest.mark.parametrize("shape", [(0,), (0, 2, 2), (2, 0)])
def test_gather_takes_an_empty_index(session, shape):
    idx = torch.zeros(shape, dtype=torch.long)
    want = torch.zeros(2, 3, dtype=D).gather(1, idx)
    got = S(torch.zeros(2, 3)).gather(1, idx)
    assert tuple(got.shape) == tuple(want.shape) == shape
    with pytest.raises(IndexError):
        torch.zeros(2, 3).gather(5, idx)
    with pytest.raises(IndexError):
        S(torch.zeros(2, 3)).gather(5, idx)
    assert usable()


MIXED = {
    "clamp_(tensor, number)": lambda s, b: s.clamp_(b, 3.5),
    "clamp(number, tensor)": lambda s, b: s.clamp(0.0, b),
    "clamp_(min=tensor, max=number)": lambda s, b: s.clamp_(min=b, max=3.5),
    "clip_(tensor, number)": lambda s, b: s.clip_(b, 3.5),
    "clip(tensor, int)": lambda s, b: s.clip(b, 3),
}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_clamp_with_a_tensor_bound_and_a_number_bound_is_a_type_error(session, case):
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    b = torch.tensor([0.0, 3.0], dtype=D)
    with pytest.raises(TypeError):
        MIXED[case](t.clone(), b)
    s = S(t)
    with pytest.raises(TypeError):
        MIXED[case](s, b)
    assert torch.allclose(pt(s), t, atol=ULP, rtol=0)  # unchanged
    # a 0-d tensor bound is a number to torch: accepted, as torch's
    got = pt(S(t).clamp(torch.tensor(0.0, dtype=D), 3.5))
    assert torch.allclose(got, t.clamp(torch.tensor(0.0, dtype=D), 3.5), atol=ULP, rtol=0)
    assert usable()
