"""Views share their base's values as torch's do: an in-place change of a
view (indexing with ints and slices, reshape/view, permute/t, and views of
views) changes the base, and an in-place change of the base shows in its
views. Values are exact (public constants on encoded inputs: no products)."""

import pytest
import torch

import cryptgpu


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def test_in_place_changes_reach_through_views(session):
    t = torch.zeros(2, 3, dtype=torch.float64)
    x = cryptgpu.cryptensor(t)
    x[0].add_(1.0)
    t[0].add_(1.0)
    assert torch.equal(pt(x), t)
    x[:, ::2].mul_(0)
    t[:, ::2].mul_(0)
    assert torch.equal(pt(x), t)
    y = x.view(6)
    y[4] = 9.0
    t.view(6)[4] = 9.0
    assert torch.equal(pt(x), t)
    x.t()[2].fill_(-2.0)  # a view of a view whose middle is gone
    t.t()[2].fill_(-2.0)
    assert torch.equal(pt(x), t)
    z = cryptgpu.cryptensor(torch.zeros(2, 3, 4))
    z[1][2].fill_(5.0)
    assert pt(z)[1, 2].tolist() == [5.0] * 4 and float(pt(z).abs().sum()) == 20.0


def test_a_changed_base_shows_in_its_views(session):
    x = cryptgpu.cryptensor(torch.ones(2, 3))
    tt, row, col = x.t(), x[0], x.unsqueeze(0).squeeze(0)[:, 1]
    x.mul_(2)
    assert pt(tt).tolist() == [[2.0, 2.0]] * 3
    assert pt(row).tolist() == [2.0] * 3 and pt(col).tolist() == [2.0, 2.0]
    x[1] = torch.tensor([7.0, 8.0, 9.0])
    assert pt(tt)[:, 1].tolist() == [7.0, 8.0, 9.0]
    row.add_(1.0)  # and back through another view
    assert pt(x)[0].tolist() == [3.0] * 3 and pt(tt)[:, 0].tolist() == [3.0] * 3


def test_views_of_tensors_that_require_grad(session):
    w = cryptgpu.cryptensor(torch.zeros(2, 2), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w[0].add_(1.0)
    with torch.no_grad():  # torch allows it here, as an update of the leaf
        w[0].add_(1.0)
    assert pt(w).tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_expanded_tensors_follow_their_base_and_refuse_writes(session):
    """expand() was a copy: a change of the base did not show in it, and an
    in-place change of it was accepted and reached nothing, where torch
    refuses it (several elements share one memory location)."""
    t = torch.arange(6.0, dtype=torch.float64)
    b = cryptgpu.cryptensor(t)
    v = b.unsqueeze(0).expand(2, 6)
    w = b.expand_as(torch.zeros(3, 6))
    b[0] = 100.0
    t[0] = 100.0
    assert torch.equal(pt(v), t.expand(2, 6)) and torch.equal(pt(w), t.expand(3, 6))
    for write in (lambda: v.add_(1.0), lambda: v.__setitem__((0, 1), 5.0), lambda: w.zero_()):
        with pytest.raises(RuntimeError, match="single memory location"):
            write()
    assert torch.equal(pt(b), t)  # nothing changed
    c = v.clone()
    c.add_(1.0)  # a clone is its own tensor
    assert torch.equal(pt(c), t.expand(2, 6) + 1) and torch.equal(pt(b), t)
