"""In-place operations as torchvision-style models write them:
``nn.ReLU(inplace=True)``, ``F.relu(x, inplace=True)`` (by keyword or in its
position), ``x.relu_()``, ``torch.relu_``, and the same on a SharedTensor.
torch.fx records an in-place operation as an ordinary node, so a converted
graph that reads the changed tensor again must read the changed value
(until 2026-12-05 it read the value from before the change: a silently
wrong answer that a zero dummy input did not catch).

Tolerances (f = 16): a Linear of k inputs within prod_tol; every value
below is one or two such products plus exact ReLUs.
"""

import operator

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, assert_close, prod_tol, sgd_alongside, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class ReadsItsInputAgain(tnn.Module):
    """relu changes h in place; h is read afterwards: torch gives 2 relu(h)."""

    def __init__(self, how: str):
        super().__init__()
        self.lin = tnn.Linear(6, 4, bias=False)
        self.act = tnn.ReLU(inplace=True)
        self.how = how

    def forward(self, x):
        h = self.lin(x)
        if self.how == "module":
            out = self.act(h)
        elif self.how == "keyword":
            out = F.relu(h, inplace=True)
        elif self.how == "method":
            out = h.relu_()
        elif self.how == "torch":
            out = torch.relu_(h)
        else:  # F.leaky_relu(h, slope, inplace) with inplace in its position
            out = F.leaky_relu(h, 0.2, True)
        return out + h


@pytest.mark.parametrize("how", ["module", "keyword", "method", "torch", "positional"])
def test_a_tensor_changed_in_place_is_read_changed(session, how):
    torch.manual_seed(0)
    model = ReadsItsInputAgain(how).double().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    want = model(x.clone())
    # a zero dummy input: relu(0) = 0 hid the old wrong answer from the check
    private = cryptgpu.nn.from_pytorch(model, torch.zeros(1, 6)).encrypt()
    got = pt(private(cryptgpu.cryptensor(x)))
    # 2 relu(h) (or 2 leaky_relu(h)): twice one Linear of 6 inputs |w| < 0.5, |x| < 4
    assert_close(got, want, 2 * prod_tol(6, 4, 0.5))
    assert (
        want - 2 * F.leaky_relu(x @ model.lin.weight.T, 0.2 if how == "positional" else 0)
    ).abs().max() < 1e-12


def test_in_place_activations_train_as_torch(session):
    """The graph computes them out of place, so a training model with
    ReLU(inplace=True) everywhere (torchvision's ResNets) trains."""
    torch.manual_seed(1)

    def net():
        return tnn.Sequential(
            tnn.Linear(4, 8), tnn.ReLU(inplace=True), tnn.Linear(8, 3), tnn.LeakyReLU(0.1, True)
        ).double()

    ref = net()
    mine = net()
    mine.load_state_dict(ref.state_dict())
    private = cryptgpu.nn.from_pytorch(mine, torch.randn(1, 4)).encrypt().train()
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    sgd_alongside(private, ref, x, y, lr=0.1, steps=2)
    private.decrypt()
    # two SGD steps of a 4-8-3 network: each weight moves by 0.1 times a
    # gradient of a few truncations per summed term (8 samples); 1e-3
    # covers them with a margin (the softmax's 1e-4 relative included)
    for (name, got), want in zip(private.named_parameters(), ref.parameters()):
        assert_close(got, want.detach(), 1e-3), name


class ChangesAView(tnn.Module):
    def forward(self, x):
        v = x.view(-1)
        v.relu_()  # changes x too
        return x * 2


def test_changing_a_view_whose_base_is_read_later_is_refused(session):
    with pytest.raises(NotImplementedError, match="in place"):
        cryptgpu.nn.from_pytorch(ChangesAView(), torch.zeros(2, 3))
    # the session is usable afterwards
    assert_close(pt(cryptgpu.cryptensor(torch.ones(2)) * 3), torch.full((2,), 3.0), 3 * ENC)


def test_the_conversion_check_leaves_the_dummy_input_alone(session):
    """torch's in-place first layer changed the dummy input before the
    converted model read it, and the check blamed a random operation."""
    torch.manual_seed(2)
    model = tnn.Sequential(tnn.LeakyReLU(0.1, inplace=True), tnn.Linear(5, 2)).double()
    dummy = torch.randn(3, 5, dtype=torch.float64)
    before = dummy.clone()
    private = cryptgpu.nn.from_pytorch(model, dummy).encrypt()
    assert torch.equal(dummy, before)
    x = torch.randn(3, 5, dtype=torch.float64)
    want = model(x.clone())
    # a Linear of 5 inputs after an exact leaky ReLU's one truncation
    assert_close(pt(private(cryptgpu.cryptensor(x))), want, prod_tol(5, 4, 0.5) + 5 * 0.5 * TRUNC)


def test_torch_add_with_alpha_in_a_converted_graph(session):
    class Residual(tnn.Module):
        def __init__(self):
            super().__init__()
            self.lin = tnn.Linear(4, 4)

        def forward(self, x):
            return torch.sub(torch.add(x, self.lin(x), alpha=0.5), x, alpha=2)

    torch.manual_seed(3)
    model = Residual().double()
    x = torch.randn(2, 4, dtype=torch.float64)
    private = cryptgpu.nn.from_pytorch(model, torch.randn(1, 4)).encrypt()
    # one Linear of 4 inputs, then products by 0.5 and 2 (one truncation)
    assert_close(
        pt(private(cryptgpu.cryptensor(x))), model(x), prod_tol(4, 4, 0.5) + 2 * ENC + TRUNC
    )


def test_functional_in_place_on_a_shared_tensor(session):
    x = torch.tensor([-1.5, 0.25, 2.0], dtype=torch.float64)
    s = cryptgpu.cryptensor(x)
    out = F.relu(s, inplace=True)
    assert out is s
    assert_close(pt(s), x.relu(), ENC)
    s = cryptgpu.cryptensor(x)
    F.leaky_relu(s, 0.5, True)  # inplace in its position
    # one product by 0.5 of the negative part: an encoding and a truncation
    assert_close(pt(s), F.leaky_relu(x, 0.5), ENC + TRUNC)
    # as torch, a tensor that needs a gradient cannot change in place
    g = cryptgpu.cryptensor(x, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        F.relu(g, inplace=True)
    assert_close(pt(g.relu()), x.relu(), ENC)


class ViewAfterTheChange(tnn.Module):
    def __init__(self):
        super().__init__()
        self.act = tnn.ReLU(inplace=True)

    def forward(self, x):
        h = x * 2
        self.act(h)
        return torch.flatten(h, 1) + h.view(h.shape[0], -1)  # views made after it


def test_views_made_after_an_in_place_change_read_it(session):
    model = ViewAfterTheChange()
    x = torch.randn(2, 3, 2, dtype=torch.float64)
    private = cryptgpu.nn.from_pytorch(model, torch.zeros(1, 3, 2)).encrypt()
    # 4 relu(x): a product by 2 (exact) and ReLUs
    assert_close(pt(private(cryptgpu.cryptensor(x))), model(x.clone()), 4 * ENC)


@pytest.mark.parametrize(
    "op",
    [
        lambda r, y: r.__iadd__(y),
        lambda r, y: r.__isub__(y),
        lambda r, y: r.__imul__(y),
        lambda r, y: r.__itruediv__(y),
        lambda r, y: r.add_(y),
        lambda r, y: r.sub_(y, alpha=2),
        lambda r, y: r.mul_(y),
        lambda r, y: r.div_(y),
    ],
)
@pytest.mark.parametrize("shared_y", [False, True])
def test_in_place_arithmetic_that_would_grow_the_tensor_is_refused(session, op, shared_y):
    """torch refuses ``row += y`` where y broadcasts row to a larger shape
    (until 2026-12-05 ``x += y`` rebound row to a new (3, 4) tensor and left
    its base as it was; ``add_`` raised only after the work)."""
    base = cryptgpu.cryptensor(torch.ones(2, 4, dtype=torch.float64))
    y = 2 * torch.ones(3, 4, dtype=torch.float64)
    yy = cryptgpu.cryptensor(y) if shared_y else y
    row = base[0]
    with pytest.raises(RuntimeError) as err:
        op(torch.ones(2, 4, dtype=torch.float64)[0], y)
    want = str(err.value)  # torch's wording
    assert "doesn't match the broadcast shape" in want
    with pytest.raises(RuntimeError) as got:
        op(row, yy)
    assert str(got.value) == want
    assert row.shape == (4,)
    assert_close(pt(base), torch.ones(2, 4, dtype=torch.float64), 0.0)  # unchanged
    assert usable()
    # the same operand on a tensor of the broadcast shape stays in place
    # (exact: 1 + 2, 1 * 2, 1 - 4 and 1 / 2 are on the 2^-16 grid; the
    # division by a public 2 is exact, by a shared 2 within a few units
    # of 2^-16)
    x = cryptgpu.cryptensor(torch.ones(3, 4, dtype=torch.float64))
    t = torch.ones(3, 4, dtype=torch.float64)
    assert op(x, yy) is x
    assert_close(pt(x), op(t, y), 4 * ENC)


def test_in_place_power_of_a_view_reaches_its_base(session):
    """``r **= 2`` on a view changes its base, as torch's (it rebound r)."""
    b = cryptgpu.cryptensor(torch.full((2, 3), 1.5, dtype=torch.float64))
    r = b[0]
    r **= 2
    want = torch.full((2, 3), 1.5, dtype=torch.float64)
    want[0] **= 2
    # one product of 1.5 by itself: one truncation
    assert_close(pt(b), want, TRUNC)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        r **= torch.ones(2, 3)


AUGMENTED = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "**=": operator.ipow,
}


@pytest.mark.parametrize("op", list(AUGMENTED))
def test_augmented_assignment_on_a_leaf_that_requires_grad_is_refused_as_torch(session, op):
    """``p -= lr * p.grad`` outside no_grad: torch raises; ours rebound the
    name and left the parameter as it was, so a hand-written training loop
    trained nothing without a word. Under no_grad it updates p in place."""
    f = AUGMENTED[op]
    t = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    with pytest.raises(RuntimeError) as want:
        f(t.clone().requires_grad_(), 2.0)
    p = cryptgpu.cryptensor(t, requires_grad=True)
    with pytest.raises(RuntimeError) as got:
        f(p, 2.0)
    assert str(got.value).startswith(str(want.value))  # torch's words, and a hint
    assert "torch.no_grad()" in str(got.value) and "cryptgpu.no_grad()" in str(got.value)
    assert p.requires_grad and p.is_leaf
    assert_close(pt(p), t, 0.0)  # unchanged (the values are on the 2^-16 grid)
    with torch.no_grad():
        assert f(p, 2.0) is p
    # on the grid: + - * by 2 exact; / 2 and ** 2 one truncation each
    assert_close(pt(p), f(t.clone(), 2.0), TRUNC)
    assert p.requires_grad and p.is_leaf
    assert usable()


@pytest.mark.parametrize("op", list(AUGMENTED))
def test_augmented_assignment_on_a_view_autograd_records_is_refused(session, op):
    """``v = y[:, 0:2]; v *= 10`` with y recorded rebound v and left y (and
    its gradient) as they were; torch changes y. It raises now, as the
    explicit ``v.mul_(10)`` does; so does a view of a tensor that does not
    require grad taking a value that does."""
    f = AUGMENTED[op]
    t = torch.tensor([[1.5, -0.5, 2.0], [0.5, 1.0, -1.0]], dtype=torch.float64)
    x = cryptgpu.cryptensor(t, requires_grad=True)
    y = x * 2
    v = y[:, 0:2]
    with pytest.raises(RuntimeError, match="on a view autograd records") as e:
        f(v, 10.0)
    assert f"{op}: in-place operations" in str(e.value)
    with pytest.raises(RuntimeError, match="in-place operations on tensors that require grad"):
        v.mul_(10.0)
    base = cryptgpu.cryptensor(torch.zeros(2, 3))
    row = base[0]
    with pytest.raises(RuntimeError, match="on a view autograd records"):
        f(row, x[0] * 2)
    assert_close(pt(base), torch.zeros(2, 3, dtype=torch.float64), 0.0)
    assert_close(pt(y), 2 * t, 0.0)  # y unchanged: exact (an integer factor)
    y.sum().backward()
    assert_close(pt(x.grad), torch.full((2, 3), 2.0, dtype=torch.float64), 0.0)
    assert usable()


@pytest.mark.parametrize("op", ["+=", "-=", "*="])
def test_augmented_assignment_with_a_recorded_value_is_in_place(session, op):
    """``acc += x * 2`` with acc not requiring grad: torch changes acc in
    place (a list or dict holding it sees the sum) and acc becomes a
    recorded result; ours rebound the name. An operation that read acc
    before still passes no gradient through it (torch's graph is fixed when
    recorded), and a leaf that requires grad only afterwards gets none."""
    f = AUGMENTED[op]
    t = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    xt = t.clone().requires_grad_()
    acct = torch.ones(3, dtype=torch.float64)
    zt = acct + xt
    f(acct, xt * 2)
    ((acct * xt).sum() + zt.sum()).backward()
    x = cryptgpu.cryptensor(t, requires_grad=True)
    acc = cryptgpu.cryptensor(torch.ones(3))
    held = {"acc": acc}
    z = acc + x
    assert f(acc, x * 2) is acc
    assert held["acc"] is acc and acc.requires_grad and not acc.is_leaf
    assert acc.grad_fn is not None
    # on the grid: 1 + 2x and 1 - 2x exact, 1 * 2x too (a product of a
    # public-valued sharing and 2x: one truncation)
    assert_close(pt(acc), acct.detach(), TRUNC)
    ((acc * x).sum() + z.sum()).backward()
    # the gradients through acc * x and the op: a truncation per product (3)
    assert_close(pt(x.grad), xt.grad, 3 * TRUNC)
    late = cryptgpu.cryptensor(torch.ones(3))
    w = late * x
    late.requires_grad_()
    w.sum().backward()
    assert late.grad is None  # as torch's: late was no input of w's graph
    assert usable()


def test_a_view_taken_before_a_recorded_in_place_change_is_refused(session):
    """row = a[1]; a += w (w requires grad): a takes the recorded result in
    place, and row showed the new values but did not require grad: the
    gradient through it was dropped (w.grad [1, 1, 1] for torch's 2 w + 1,
    a user probe). A view cannot follow its base into the graph here: it
    raises at its next use under grad, and a view taken afterwards works."""
    a = cryptgpu.cryptensor(torch.zeros(2, 3))
    w = cryptgpu.cryptensor(torch.tensor([1.0, -1.0, 2.0]), requires_grad=True)
    row, col = a[1], a.t()
    a += w
    for stale in (row, col):
        with pytest.raises(RuntimeError, match="take the view again"):
            (stale * stale).sum()
    with cryptgpu.no_grad():  # values only: as torch's view shows them
        assert_close(pt(row), torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64), ENC)
    row = a[1]
    ((row * row).sum() + w.sum()).backward()
    # torch: d/dw (w^2).sum() + 1 = 2 w + 1; one truncation in row * row
    assert_close(pt(w.grad), torch.tensor([3.0, -1.0, 5.0], dtype=torch.float64), 4 * TRUNC)
    assert usable()


def test_in_place_ops_on_a_recorded_result_as_torchs(session):
    """torch changes a result that requires grad in place (``h = x @ W.t();
    F.relu(h, inplace=True)``, ``h.sigmoid_()``, ``h.mul_(2)``, ``h.add_(b)``)
    and differentiates through it; ours refused every one (a user probe).
    Now the operation is recorded from a snapshot of h, which takes h's
    place in the graph, and the gradients are torch's: within 96 units of
    2^-16 (1.5e-3; a truncation per product, on gradients 2 h W of rows of
    three, |h| below 4: a few units each, times |x| up to 3 and the two
    products), and the sigmoid's gradient within 1e-3 relative. Where a recorded operation has
    already read h, changing it would change what that operation's
    gradient goes through: refused, naming that (torch raises at backward
    where the old value was needed)."""
    x0 = torch.tensor([[1.0, -2.0, 3.0], [0.5, -0.25, 1.5]], dtype=torch.float64)
    w = torch.tensor([[0.5, -1.0, 0.25], [1.0, 0.5, -0.5]], dtype=torch.float64)
    b0 = torch.tensor([0.25, -0.5], dtype=torch.float64)
    steps = {
        "F.relu": lambda h, b: F.relu(h, inplace=True),
        "relu_": lambda h, b: h.relu_(),
        "sigmoid_": lambda h, b: h.sigmoid_(),
        "mul_ add_": lambda h, b: h.mul_(2).add_(b),
        "sub_ neg_": lambda h, b: h.sub_(b, alpha=2).neg_(),
        "+= *=": lambda h, b: _iadd_imul(h, b),
        "zero_ add_": lambda h, b: h.zero_().add_(b),
        "fill_": lambda h, b: h.fill_(0.5),
        "copy_": lambda h, b: h.copy_(b),
    }
    for name, step in steps.items():
        grads = []
        for lib in ("torch", "ours"):
            if lib == "torch":
                x, b = x0.clone().requires_grad_(), b0.clone().requires_grad_()
            else:
                x, b = (cryptgpu.cryptensor(t, requires_grad=True) for t in (x0, b0))
            h = x @ w.t()
            assert step(h, b) is h and h.requires_grad and h.grad_fn is not None
            (h * h).sum().backward()
            grads.append(
                [t.grad if lib == "torch" or t.grad is None else pt(t.grad) for t in (x, b)]
            )
        for want, got in zip(*grads):
            if got is None or want is None:
                assert got is None and want is None, name
                continue
            tol = 1e-3 * want.abs().max() if name == "sigmoid_" else 8 * 2.0**-16 * 12
            assert (got - want).abs().max() <= tol, name
    # a result whose own gradient rule reads its value (exp's: g exp(x)):
    # that rule keeps the value from before the change, as torch's saved
    # output (3 exp(x) here; exp within 1e-3 relative, test_functions)
    x = cryptgpu.cryptensor(x0[0], requires_grad=True)
    e = x.exp()
    e.mul_(3).sum().backward()
    want = 3 * x0[0].exp()
    assert (pt(x.grad) - want).abs().max() <= 1e-3 * want.abs().max()
    # hooks registered before the change see the old value's gradient, as torch's
    seen = []
    x = cryptgpu.cryptensor(x0[0], requires_grad=True)
    h = x * 2
    h.register_hook(lambda g: seen.append(pt(g)))
    h.mul_(3).sum().backward()
    assert torch.equal(seen[0], torch.full((3,), 3.0, dtype=torch.float64))
    # h += 1 after retain_grad: h's .grad is the new value's, as torch's (it
    # was rebound, and the retained .grad stayed None)
    x = cryptgpu.cryptensor(x0[0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    h += 1
    (h * h).sum().backward()
    assert torch.equal(pt(h.grad), 2 * (2 * x0[0] + 1))
    # a linear layer's 3-D result is no view (it was refused as one)
    x = cryptgpu.cryptensor(x0.reshape(1, 2, 3), requires_grad=True)
    wt = w.clone().requires_grad_()
    W = cryptgpu.cryptensor(w, requires_grad=True)
    out = F.linear(x, W).relu_()
    xt = x0.reshape(1, 2, 3).clone().requires_grad_()
    want = F.linear(xt, wt).relu_()
    out.sum().backward()
    want.sum().backward()
    assert (pt(W.grad) - wt.grad).abs().max() <= 8 * 2.0**-16 * 12
    # h read by a view, then h += t: rebound, and the view taken before
    # raises at its next use rather than keep the old value (silently, until
    # 2026-12-06)
    x = cryptgpu.cryptensor(x0[0], requires_grad=True)
    h = x * 2
    v = h.view(-1)
    h += x
    with pytest.raises(RuntimeError, match="take the view again"):
        (v * v).sum()
    x = cryptgpu.cryptensor(x0, requires_grad=True)
    h = x @ w.t()
    kept = h * 2  # reads h
    with pytest.raises(RuntimeError, match="already read it"):
        h.relu_()
    with pytest.raises(RuntimeError, match="leaf Variable|in-place operations"):
        x.relu_()
    kept.sum().backward()
    assert_close(pt(x.grad), (2 * torch.ones(2, 2, dtype=torch.float64) @ w), 0.0)
    assert usable()


def _iadd_imul(h, b):
    h += b
    h *= 3
    return h
