"""Views share their base's values as torch's do: an in-place change of a
view (indexing with ints and slices, reshape/view, permute/t, and views of
views) changes the base, and an in-place change of the base shows in its
views. Values are exact (public constants on encoded inputs: no products)."""

import pytest
import torch

import cryptgpu
from conftest import TRUNC, usable


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
    for write in (
        lambda: v.add_(1.0),
        lambda: v.__setitem__((slice(None), 0), b[:2] + 1),
        lambda: w.fill_(b[0]),
    ):
        with pytest.raises(RuntimeError, match="single memory location"):
            write()
    assert torch.equal(pt(b), t)  # nothing changed
    # torch's fill_ (a number) writes the shared places: v[0, 1] = 5. sets
    # t[1], w.zero_() all of t (until 2026-12-07 refused here)
    v[0, 1] = 5.0
    t[1] = 5.0
    assert torch.equal(pt(b), t) and torch.equal(pt(w), t.expand(3, 6))
    w.zero_()
    t.zero_()
    assert torch.equal(pt(b), t) and torch.equal(pt(v), t.expand(2, 6))
    c = v.clone()
    c.add_(1.0)  # a clone is its own tensor
    assert torch.equal(pt(c), t.expand(2, 6) + 1) and torch.equal(pt(b), t)


def test_a_view_outlives_its_base_and_keeps_its_changes(session):
    """A view holds its base, as a torch view holds its storage: with a weak
    reference, a base changed in place and then dropped left the view with
    the value from before the change."""
    import gc

    def first_row_after_relu(x):
        y = x.clone()
        r = y[0]
        y.relu_()
        return r  # y is gone when this returns

    t = torch.tensor([[-1.0, 2.0], [3.0, -4.0]], dtype=torch.float64)
    r = first_row_after_relu(cryptgpu.cryptensor(t))
    gc.collect()
    assert torch.equal(pt(r), t[0].relu())
    base = cryptgpu.cryptensor(t)
    v = base[1]
    base.add_(1.0)
    del base
    gc.collect()
    assert torch.equal(pt(v), t[1] + 1)


def test_copies_where_torch_copies(session):
    """contiguous() of a transposed tensor, and reshape/flatten that merge
    a transposed or strided tensor's dims, are copies in torch: writing
    into them leaves the base alone. unsqueeze/squeeze and view stay views."""
    t = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    for make in (
        lambda a: a.t().contiguous(),
        lambda a: a.t().reshape(-1),
        lambda a: a.t().flatten(),
        lambda a: a[:, ::2].reshape(-1),
        lambda a: a[:, 1:].reshape(-1),
    ):
        x = cryptgpu.cryptensor(t)
        ref = t.clone()
        make(x).fill_(-1.0)
        make(ref).fill_(-1.0)
        assert torch.equal(pt(x), ref)
        assert torch.equal(pt(x), t)  # (torch's base did not change either)
    # torch's stride rule: these reshapes of strided or permuted tensors
    # are views (writes reach the base), as torch's
    t3 = torch.arange(24.0, dtype=torch.float64).reshape(2, 3, 4)
    for make in (
        lambda a: a[:, 1:3].reshape(2, 8),
        lambda a: a[:, :, 1].reshape(6),
        lambda a: a.transpose(1, 2).reshape(2, 4, 3),
        lambda a: a.permute(2, 1, 0).permute(2, 1, 0).reshape(24),
    ):
        x, ref = cryptgpu.cryptensor(t3), t3.clone()
        make(x).fill_(-1.0)
        make(ref).fill_(-1.0)
        assert torch.equal(pt(x), ref)
        assert not torch.equal(ref, t3)  # (torch's base changed: a view)
    # views of a transposed tensor that only add or drop dims of size 1
    x, ref = cryptgpu.cryptensor(t), t.clone()
    x.t().unsqueeze(0).fill_(7.0)
    ref.t().unsqueeze(0).fill_(7.0)
    assert torch.equal(pt(x), ref)
    # a contiguous tensor's contiguous() is itself, and its reshape a view
    x, ref = cryptgpu.cryptensor(t), t.clone()
    assert x.contiguous() is x
    x.reshape(-1)[1] = 5.0
    ref.reshape(-1)[1] = 5.0
    assert torch.equal(pt(x), ref)


def test_setitem_with_a_value_that_requires_grad_is_refused(session):
    """torch records ``y[idx] = x`` for x's gradient; the assignment here
    dropped it silently (x.grad missed y's share). It is refused, as
    copy_ and add_ are, with the out-of-place way to write it."""
    y = cryptgpu.cryptensor(torch.zeros(3, 2, dtype=torch.float64))
    x = cryptgpu.cryptensor(torch.ones(2, dtype=torch.float64), requires_grad=True)
    with pytest.raises(RuntimeError, match="out of place"):
        y[0] = x
    with pytest.raises(RuntimeError, match="out of place"):
        y[torch.tensor([True, False, True])] = x
    assert torch.equal(pt(y), torch.zeros(3, 2, dtype=torch.float64))  # unchanged
    y[1] = x.detach()  # a value without its gradient is written
    assert torch.equal(pt(y)[1], torch.ones(2, dtype=torch.float64))


def test_iterating_rows_and_a_0d_tensor(session):
    x = cryptgpu.cryptensor(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    rows = list(x)
    assert len(rows) == 2 and torch.equal(pt(rows[1]), torch.tensor([3.0, 4.0]).double())
    s = cryptgpu.cryptensor(torch.tensor(1.0))
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(s)  # Python's fallback through __getitem__ gave []
    with pytest.raises(TypeError, match="get_plain_text"):
        torch.tensor(s)
    assert pt(s * 2).item() == 2.0


def test_assigning_data_takes_the_new_values_layout(session):
    """y.data = v replaces y's value: y takes v's layout, as torch's (a
    transposed y kept its strides, so reshape later copied, or read a
    stride tuple of the wrong length)."""
    t = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    y = cryptgpu.cryptensor(t).t()
    y.data = cryptgpu.cryptensor(torch.zeros(5, dtype=torch.float64))
    ref = torch.zeros(5, dtype=torch.float64)
    y.reshape(5, 1).add_(1.0)  # a view of a contiguous y: y changes
    ref.reshape(5, 1).add_(1.0)
    assert torch.equal(pt(y), ref)


def _set_data(t, value):
    t.data = value


# x.data = ... with views v = x[0] and w = x[:, 1] taken before (torch:
# the same storage keeps them shared with x; a new one leaves them the old)
SAME_STORAGE = {
    "x.data": lambda x, v, mk: _set_data(x, x.data),
    "x": lambda x, v, mk: _set_data(x, x),
    "x.detach()": lambda x, v, mk: _set_data(x, x.detach()),
    "x.reshape(3, 2)": lambda x, v, mk: _set_data(x, x.reshape(3, 2)),
    "x.view(6)": lambda x, v, mk: _set_data(x, x.view(6)),
    "x.t()": lambda x, v, mk: _set_data(x, x.t()),
    "x[1]": lambda x, v, mk: _set_data(x, x[1]),
    "the view v": lambda x, v, mk: _set_data(x, v),
    "twice, then x.data": lambda x, v, mk: (
        _set_data(x, x.reshape(3, 2)),
        _set_data(x, x.t()),
        _set_data(x, x.data),
    ),
    "v.data = x[1]": lambda x, v, mk: _set_data(v, x[1]),
    "v.data = x": lambda x, v, mk: _set_data(v, x),
    "v.data = v.detach()": lambda x, v, mk: _set_data(v, v.detach()),
    "new: y": lambda x, v, mk: _set_data(x, mk(torch.ones(2, 3, dtype=torch.float64))),
    "new: x.clone()": lambda x, v, mk: _set_data(x, x.clone()),
    "new: x + 0": lambda x, v, mk: _set_data(x, x + 0),
    "new: x.t(), then y": lambda x, v, mk: (
        _set_data(x, x.t()),
        _set_data(x, mk(torch.ones(2, 3, dtype=torch.float64))),
    ),
}


def _data_story(assign, mk, rd):
    x = mk(torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    v, w = x[0], x[:, 1]
    assign(x, v, mk)
    x.add_(100)  # through x: the views that share its storage see it
    v.sub_(10)  # through an old view: x sees it where it shares the storage
    return [rd(t) for t in (v, w, x)]


@pytest.mark.parametrize("case", list(SAME_STORAGE))
def test_data_of_the_same_storage_keeps_the_views_shared(session, case):
    """x.data = x.data (or x, x.detach(), x.reshape(...), x.t(), a view of
    x): views of x taken before share x's storage on, as torch's (until
    2026-12-07 they kept a snapshot: a later x.add_(100) did not reach
    them); a new storage (another tensor, a clone) still leaves them the
    old values, as torch's."""
    want = _data_story(SAME_STORAGE[case], lambda a: a.clone(), lambda t: t)
    got = _data_story(SAME_STORAGE[case], cryptgpu.cryptensor, pt)
    for g, r in zip(got, want):
        # encoded integers and additions of public integers: exact
        assert torch.equal(g, r), (case, g.tolist(), r.tolist())


def test_a_refused_data_assignment_changes_nothing(session):
    """x.data = v with a v that raises when read (a view taken before its
    base took a recorded result in place) leaves x, and the views of x,
    as they were: they follow x on (until 2026-12-07 the refused
    assignment had already cut them off from x)."""
    b = cryptgpu.cryptensor(torch.zeros(2, 3, dtype=torch.float64))
    stale = b[0]
    b += cryptgpu.cryptensor(torch.ones(2, 3, dtype=torch.float64), requires_grad=True)
    ref = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    x = cryptgpu.cryptensor(ref)
    xv, xr = x[0], x[1]
    for target in (x, xr):  # a base, and a view of it
        with pytest.raises(RuntimeError, match="view taken before its base"):
            target.data = stale
        assert usable()
    x.add_(100)  # exact: public integers on encoded integers
    ref = ref + 100
    assert torch.equal(pt(x), ref)
    assert torch.equal(pt(xv), ref[0])
    xr.sub_(1)  # the view x[1] still writes into x
    ref[1] -= 1
    assert torch.equal(pt(x), ref) and torch.equal(pt(xr), ref[1])


@pytest.mark.parametrize("how", ["detach", "data of another layout"])
def test_an_optimiser_step_reaches_the_storage_a_parameter_views(session, how):
    """A parameter that views a tensor's storage (w = b.detach()
    .requires_grad_(), or b after b.data = b.data.t()): the step changes
    the storage, as torch's in-place step (until 2026-12-07 only the
    parameter took it, and a later change through b, re-read, undid it)."""

    def story(mk, rd, sgd, no_grad):
        b = mk(torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
        v = b[0]
        if how == "detach":
            w = b.detach().requires_grad_()
        else:
            b.requires_grad_()
            b.data = b.data.t()
            w = b
        opt = sgd([w], lr=0.25)
        (w * w).sum().backward()
        opt.step()  # w - 0.25 (2 w) = w / 2
        with no_grad():
            v.add_(10)
        return [rd(t) for t in (w.detach(), b.detach(), v)]

    want = story(lambda a: a.clone(), lambda t: t, torch.optim.SGD, torch.no_grad)
    got = story(cryptgpu.cryptensor, pt, cryptgpu.optim.SGD, cryptgpu.no_grad)
    for g, r in zip(got, want):
        # the gradient 2w: two products of the exact 1 by an encoded integer,
        # each truncated once (2 TRUNC); times the exact 0.25 and truncated
        # (0.25 * 2 TRUNC + TRUNC); the additions of public integers: exact
        assert (g - r).abs().max() <= 1.5 * TRUNC, (g.tolist(), r.tolist())


STRIDED_VIEWS = {
    "base": lambda a: a,
    "t": lambda a: a[0].t(),
    "transpose": lambda a: a.transpose(0, 2),
    "permute": lambda a: a.permute(2, 0, 1),
    "slice": lambda a: a[:, 1:],
    "step": lambda a: a[:, :, ::2],
    "size-1 slice": lambda a: a[:, 1:2],
    "expand": lambda a: a[:, :1].expand(2, 5, 4),
    "unsqueeze": lambda a: a.unsqueeze(1),
    "diagonal": lambda a: a[0, :, :3].diagonal(),
    "diagonal offset": lambda a: a[0].diagonal(1),
    "select": lambda a: a[:, 1],
    "contiguous of t": lambda a: a[0].t().contiguous(),
    "clone of t": lambda a: a[0].t().clone(),
    "view": lambda a: a.view(6, 4),
    "narrow": lambda a: a.narrow(2, 1, 2),
    "reshape of transpose": lambda a: a.transpose(1, 2).reshape(2, 12),
}


@pytest.mark.parametrize("view", STRIDED_VIEWS)
def test_is_contiguous_and_stride_answer_as_torch(session, view):
    """x.is_contiguous() and x.stride() / x.stride(dim) as torch's tensor of
    the same view (until 2026-12-05 an AttributeError; the strides were
    tracked, for contiguous(), but not asked)."""
    t = torch.arange(24.0).reshape(2, 3, 4)
    a, b = STRIDED_VIEWS[view](t), STRIDED_VIEWS[view](cryptgpu.cryptensor(t))
    assert b.is_contiguous() == a.is_contiguous()
    assert b.stride() == a.stride()
    assert [b.stride(d) for d in range(-a.dim(), a.dim())] == [
        a.stride(d) for d in range(-a.dim(), a.dim())
    ]
    # the values are torch's too: exact, integers are encoded exactly
    assert torch.equal(b.get_plain_text(), a)
