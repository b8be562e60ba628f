"""What PyTorch and CrypTen users write without reading our docs: modules
subclassed with attribute-assigned children, gradients through max/min,
``x ** 2``, in-place updates, NumPy integers as indices and dims, advanced
indexing and item assignment, unbatched losses, and torch functions inside a
converted model. Every value is compared with float64 PyTorch; tolerances
follow conftest.py's model (ENC per encoded input, TRUNC per truncation).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cryptgpu
import cryptgpu as crypten
from conftest import ENC, TRUNC, ULP, assert_close

C = crypten.cryptensor


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class TwoLayer(crypten.nn.Module):
    """The CrypTen tutorial's way of writing a model."""

    def __init__(self):
        super().__init__()
        self.fc1 = crypten.nn.Linear(4, 3)
        self.fc2 = crypten.nn.Linear(3, 2)
        self.scale = 0.5  # a plain attribute stays one

    def forward(self, x):
        return self.fc2(self.fc1(x).relu()) * self.scale


def test_a_subclassed_module_registers_and_encrypts_its_children(session):
    m = TwoLayer()
    assert m.training  # built directly: training mode, as in torch and CrypTen
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert list(m.state_dict()) == names
    m.encrypt(src=0)
    assert all(isinstance(p, cryptgpu.SharedTensor) for p in m.parameters())
    assert m.fc1.encrypted and m.fc2.encrypted and m.scale == 0.5
    m.eval()
    assert not m.fc1.training and not m.fc1.weight.requires_grad
    m.train()
    assert m.fc2.training and m.fc2.weight.requires_grad
    with pytest.raises(TypeError):
        m.fc1 = 3  # a registered child takes a module or None, as in torch
    del m.fc2
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias"]


def test_training_a_subclassed_module_follows_torch(session):
    torch.manual_seed(0)
    m = TwoLayer()
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        for mine, theirs in zip(m.parameters(), ref.parameters()):
            theirs.copy_(mine)
    ref = ref.double()
    m.encrypt(src=0).train()
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randn(8, 2, dtype=torch.float64)
    xs, ys = C(x), C(y)
    loss_fn = crypten.nn.MSELoss()
    for _ in range(3):
        m.zero_grad()
        loss = loss_fn(m(xs), ys)
        loss.backward()
        m.update_parameters(0.1)
        ref.zero_grad()
        F.mse_loss(ref(x) * 0.5, y).backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= 0.1 * p.grad
    # Three SGD steps of a 4-3-2 network: each weight moves by lr times a
    # gradient carrying a few truncations per summed term (8 samples), so
    # a few hundred ulp in all.
    for mine, theirs in zip(m.parameters(), ref.parameters()):
        assert_close(pt(mine), theirs.detach(), 400 * ULP)


def test_an_input_gradient_in_eval_mode(session):
    """eval() freezes the parameters (CrypTen's convention: they stop
    requiring grad), but an input that requires grad still gets one."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2).double()
    m = crypten.nn.from_pytorch(lin, torch.empty(1, 3)).encrypt()
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    x = torch.randn(2, 3, dtype=torch.float64)
    xs = C(x, requires_grad=True)
    m(xs).sum().backward()
    # the gradient is the weight's column sums: 2 encoded weights each
    assert_close(pt(xs.grad), lin.weight.sum(0).expand(2, 3).detach(), 2 * ENC + TRUNC)
    assert all(p.grad is None for p in m.parameters())


def test_batchnorm_put_in_eval_inside_a_training_model_still_trains_its_affine(session):
    """Fine-tuning with frozen statistics, a torch habit: the model trains,
    its BatchNorm layers are put in eval mode. torch keeps training their
    weight and bias (eval() changes no requires_grad); only the running
    statistics stay. Until 2026-12-05 our eval() froze them (no gradient)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2)
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        net[1].running_mean.copy_(torch.tensor([0.2, -0.1, 0.3]))
        net[1].running_var.copy_(torch.tensor([1.5, 0.7, 2.0]))
        net[1].weight.copy_(torch.tensor([1.2, 0.8, -0.5]))
    m = crypten.nn.from_pytorch(net, torch.empty(1, 4), fold_batchnorm=False).encrypt().train()
    ref = net.train()
    for layer in (m, ref):
        for sub in layer.modules():
            if "BatchNorm" in type(sub).__name__:
                sub.eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    opt = crypten.optim.SGD(m.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        ref_opt.zero_grad()
        crypten.nn.CrossEntropyLoss()(m(C(x)), y).backward()
        F.cross_entropy(ref(x), y).backward()
        bn, ref_bn = m[1], ref[1]  # a converted Sequential is indexed as torch's
        assert len(m) == 4 and type(bn).__name__ == "BatchNorm1d"  # torch's class name
        assert_close(pt(bn.running_var), ref_bn.running_var, ENC)
        assert bn.weight.requires_grad and bn.weight.grad is not None
        # gradients of a 4-3-2 network through the eval affine (its 1/std
        # range-reduced, 1e-4 relative) and the softmax (1e-4): a few
        # 1e-4 on values below 1
        assert_close(pt(bn.weight.grad), ref_bn.weight.grad, 1e-3)
        assert_close(pt(bn.bias.grad), ref_bn.bias.grad, 1e-3)
        opt.step()
        ref_opt.step()
    # the statistics did not move; the affine parameters did, as torch's
    m.decrypt()
    assert_close(m[1].running_mean, ref[1].running_mean, ENC)
    assert_close(m[1].running_var, ref[1].running_var, ENC)
    assert_close(m[1].weight, ref[1].weight.detach(), 1e-3)
    assert not torch.equal(ref[1].weight.detach(), torch.tensor([1.2, 0.8, -0.5]).double())
    # a monitoring forward under no_grad between backward and step, then
    # the step: the eval affine must come from the stepped weights
    m.encrypt().train()
    for sub in m.modules():
        if isinstance(sub, crypten.nn.BatchNorm1d):  # a converted layer is one (2026-12-07)
            sub.eval()
    opt = crypten.optim.SGD(m.parameters(), lr=0.1)
    opt.zero_grad()
    crypten.nn.CrossEntropyLoss()(m(C(x)), y).backward()
    with crypten.no_grad():
        m(C(x))
    opt.step()
    m.eval()
    plain = m.decrypt()
    want = plain[1](plain[0](x))  # the decrypted layers in float64 torch semantics
    m.encrypt().eval()
    # the BatchNorm's private 1/std: 1e-4 relative on outputs below 10
    assert_close(pt(m[1](m[0](C(x)))), want, 2e-3)
    m.decrypt()
    # and the whole model in eval mode keeps CrypTen's convention
    m.encrypt().eval()
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(C(x)).requires_grad


@pytest.mark.parametrize(
    "op",
    [
        lambda t: t.max(1)[0],
        lambda t: t.max(),
        lambda t: t.amax(0, keepdim=True),
        lambda t: t.min(-1)[0],
        lambda t: t.min(),
    ],
)
def test_max_and_min_pass_their_gradient_to_the_selected_element(session, op):
    x = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]], dtype=torch.float64)
    w = 1.5
    e = C(x, requires_grad=True)
    (op(e) * w).sum().add(e.sum()).backward()
    t = x.clone().requires_grad_()
    (op(t) * w).sum().add(t.sum()).backward()
    # one product of the encoded 1.5 with the one-hot: one truncation
    assert_close(pt(e.grad), t.grad, ENC * 2 + TRUNC)


def test_pow_square_and_integer_factors(session):
    x = torch.tensor([[1.5, -2.0, 0.25], [3.0, 0.5, -1.0]], dtype=torch.float64)
    e = C(x)
    # x^2: one product (|x| <= 3: 2 * 3 * ENC plus a truncation)
    assert_close(pt(e**2), x**2, 6 * ENC + TRUNC)
    assert_close(pt(e.square()), x**2, 6 * ENC + TRUNC)
    # x^3 = x^2 * x: the x^2 error times 3 plus another product
    assert_close(pt(e.pow(3)), x**3, 3 * (6 * ENC + TRUNC) + 9 * ENC + TRUNC)
    assert_close(pt(e**0), torch.ones_like(x), 0)
    # a fractional exponent is pos_pow (x > 0), test_torch_edges
    assert_close(pt(C(x.abs()) ** 1.5), x.abs() ** 1.5, 1e-4 * 6 + 4 * 2.0**-16 * 3)
    # A float factor with integer values (0.0, 2.0, a 0/1 mask) is an exact
    # integer product: tolerance 0 on the grid value, and no rounds.
    grid = torch.round(x * 2**16) / 2**16
    crypten.reset_communication_stats()
    assert_close(pt(e * 0.0), torch.zeros_like(x), 0)
    assert_close(pt(e * 2.0), 2 * grid, 0)
    mask = torch.tensor([1.0, 0.0, 1.0])
    assert_close(pt(e * mask), grid * mask.double(), 0)
    assert cryptgpu.stats()["total"]["rounds"] == 3  # the three reveals only


def test_in_place_updates(session):
    x = torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)
    e = C(x)
    same = e.add_(1).mul_(2.0).sub_(C(x)).div_(4).neg_()
    assert same is e
    # one exact division by 4: within a truncation of the grid value
    assert_close(pt(e), -((x + 1) * 2 - x) / 4, 2 * ENC + TRUNC)
    leaf = C(x, requires_grad=True)
    assert leaf.requires_grad
    with pytest.raises(RuntimeError, match="in-place"):
        leaf.add_(1)
    with crypten.no_grad():
        leaf.sub_(0.5)  # an optimiser's update, as in torch
    assert_close(pt(leaf), x - 0.5, 2 * ENC)
    with pytest.raises(RuntimeError):
        e.add_(C(torch.ones(2, 3)))  # an in-place result cannot grow
    assert_close(pt(e + 0), -((x + 1) * 2 - x) / 4, 2 * ENC + TRUNC)  # still usable


def test_numpy_integers_and_zero_d_tensors_as_ints(session):
    x = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    e = C(x, src=np.int64(1))
    assert_close(pt(e[np.int64(1)]), x[1], 0)
    assert_close(pt(e[torch.tensor(2)]), x[2], 0)
    assert_close(pt(e.sum(np.int64(1))), x.sum(1), 0)
    assert tuple(e.view(np.int64(12)).shape) == (12,)
    assert e.size(np.int32(-1)) == 4


def test_softmax_and_losses_at_the_edges(session):
    assert_close(pt(C(torch.tensor(2.0)).softmax(0)), torch.tensor(1.0, dtype=torch.float64), 0)
    assert_close(pt(C(torch.tensor(2.0)).log_softmax(-1)), torch.tensor(0.0).double(), 0)
    assert tuple(C(torch.zeros(3, 0)).softmax(1).shape) == (3, 0)
    with pytest.raises(IndexError):
        C(torch.zeros(2, 3)).softmax(2)
    logits = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    loss = crypten.nn.CrossEntropyLoss()(C(logits), C(torch.tensor([0.0, 0.0, 1.0])))
    # log_softmax: the log's method error (below 1.6e-3 on [0.5, 2]) plus its
    # fixed-point error (the exp inside amplifies one truncation 256-fold)
    assert_close(pt(loss), F.cross_entropy(logits, torch.tensor(2)), 1.6e-3 + 256 * ULP)
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    for red in ("none", "sum", "mean"):
        s = C(z, requires_grad=True)
        out = crypten.nn.CrossEntropyLoss(reduction=red)(s, labels)
        (out.sum() if red == "none" else out).backward()
        t = z.clone().requires_grad_()
        want = F.cross_entropy(t, labels, reduction=red)
        (want.sum() if red == "none" else want).backward()
        # loss: log_softmax per sample (as above, each); gradient: softmax, 3e-4
        assert_close(pt(out), want.detach(), 2 * (1.6e-3 + 256 * ULP))
        assert_close(pt(s.grad), t.grad, 2 * 3e-4)
    mse = crypten.nn.MSELoss(reduction="none")(C(z), torch.zeros_like(z))
    assert_close(pt(mse), z * z, 9 * 2 * ENC + TRUNC)  # |z| <= 3
    with pytest.raises(ValueError):
        crypten.nn.MSELoss(reduction="avg")


INDEXES = [
    torch.tensor([1, 0, 1]),
    [0, 1],
    (slice(None), torch.tensor([2, 0])),
    (0, [2, 1], slice(1, 3)),
    (Ellipsis, torch.tensor([3, 3])),
    np.array([[1], [0]]),
    (torch.tensor([0, 1]), torch.tensor([2, 0])),
    [],
    # ints apart from the array index: torch applies them first, numpy's
    # rule would put the array's dims in front ((2, 3) instead of (3, 2))
    (0, slice(None), torch.tensor([3, 0])),
    (slice(None), 1, [0, 3, 1]),
    (None, 1, slice(None), torch.tensor([[2], [0]])),
]


@pytest.mark.parametrize("index", INDEXES + ["mask"])
def test_advanced_indexing_and_its_gradient(session, index):
    x = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) / 4
    index = x > 2.5 if isinstance(index, str) else index
    e = C(x, requires_grad=True)
    got = e[index]
    assert_close(pt(got), x[index], 0)  # a selection: the grid values exactly
    w = torch.linspace(-1, 1, max(got.numel(), 1), dtype=torch.float64)[: got.numel()]
    (got.reshape(-1) * w).sum().backward()
    t = x.clone().requires_grad_()
    (t[index].reshape(-1) * w).sum().backward()
    # each gradient element sums at most two products by encoded weights
    assert_close(pt(e.grad), t.grad, 2 * (ENC + TRUNC))


M2 = torch.tensor([[True, False], [False, True]])
# torch's reading of mixed indices of a (2, 2, 3, 2) tensor: a k-dim mask
# takes k dims and an int the next one (a 0-d int tensor is an int); a
# Python bool is an advanced index of a new size-1 dim; index tensors apart
# only by a ... that covers no dim are adjacent (their dims stay in place).
# numpy's rules, used until the fix, read the wrong elements or raised.
TORCH_RULES = [
    (M2, 0),
    (M2, torch.tensor(1)),
    (M2, None, -1),
    (M2, -2, True),
    (0, slice(None), True),
    (1, Ellipsis, True),
    (True, 0, [1]),
    ([0, 1], True, -2),
    (M2, slice(None, None, 2), 1),
    (slice(None), slice(None), [0, 2], Ellipsis, [1, 0]),
    (0, True, slice(None), 1, [[1], [0]]),
    (None, M2, 1, None, [0]),
]


@pytest.mark.parametrize("index", TORCH_RULES, ids=[str(i) for i in range(len(TORCH_RULES))])
def test_mixed_indices_read_write_and_differentiate_as_torchs(session, index):
    x = torch.arange(24, dtype=torch.float64).reshape(2, 2, 3, 2) / 4
    want = x[index]
    e = C(x, requires_grad=True)
    got = e[index]
    assert_close(pt(got), want, 0)  # a selection of grid values (k/4): exact
    w = torch.linspace(-1, 1, max(want.numel(), 1), dtype=torch.float64)[: want.numel()]
    (got * w.reshape(want.shape)).sum().backward()
    t = x.clone().requires_grad_()
    (t[index] * w.reshape(want.shape)).sum().backward()
    reads = x.clone().requires_grad_()
    reads[index].sum().backward()
    # each read adds one encoded weight (ENC), truncated once (TRUNC)
    assert_close(pt(e.grad), t.grad, max(reads.grad.max().item(), 1) * (ENC + TRUNC))
    v = -1 - torch.arange(want.numel(), dtype=torch.float64).reshape(want.shape) / 4
    f, ref = C(x), x.clone()
    f[index] = C(v)
    ref[index] = v
    assert_close(pt(f), ref, 0)  # grid values moved: exact


def test_item_assignment_and_bad_indices(session):
    x = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) / 4
    e, want = C(x), x.clone()
    e[0, 1] = 7.0
    want[0, 1] = 7.0
    e[x > 5] = C(torch.tensor(-1.0))
    want[x > 5] = -1.0
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    e[:, [0, 0], 1] = C(v)  # position repeated: the last value wins
    want[:, [0, 0], 1] = v
    e[1] = torch.ones(3, 4)
    want[1] = 1
    assert_close(pt(e), want, 0)
    # torch's exception types (a str index: TypeError, not IndexError)
    for bad, kind in [(1.5, IndexError), (torch.tensor([5]), IndexError), ("a", TypeError)]:
        with pytest.raises(kind):
            e[bad]
    with pytest.raises(NotImplementedError):
        e[C(torch.tensor([1.0]))]
    with pytest.raises(NotImplementedError):  # private positions inside a list too
        e[[C(torch.tensor(1.0)), C(torch.tensor(0.0))]]
    assert_close(pt(e[1, 2]), want[1, 2], 0)  # still usable


def test_converted_models_use_torch_functions_on_shapes_and_shares(session):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 6)
            self.w = torch.nn.Parameter(torch.randn(4, 6) * 0.3)
            self.b = torch.nn.Parameter(torch.randn(4) * 0.1)

        def forward(self, x):
            h = self.lin(x) / x.size(-1) ** 0.5 * (1.0 / math.sqrt(x.shape[-1]))
            h = F.dropout(h, 0.3, training=self.training)
            y = F.pad(F.linear(h, self.w, self.b), (1, 1))
            z = torch.sum(torch.stack([y, y.abs()], 0), dim=0)
            z = z + torch.mean(y, dim=-1, keepdim=True)
            return z.clamp(-1.0, 1.0) + y**2 + torch.square(y).t().t()

    m = M().eval()
    x = torch.randn(3, 6)
    pm = crypten.nn.from_pytorch(m, torch.empty(3, 6)).encrypt()
    out = pt(pm(C(x)))
    # a dozen products and two comparisons of values below 2: 1e-3 covers
    # every truncation and encoding error with room
    assert_close(out, m.double()(x.double()).detach(), 1e-3)


_GI = torch.tensor([[[0, 4], [1, 1]], [[2, 3], [4, 0]]])
# (name, op on either tensor type, tolerance): selections and reorderings
# return the encoded inputs (ENC); a sum of k encoded values is within
# k ENC; a product adds a truncation and |a| ENC + |b| ENC (inputs below 3).
TORCHLIKE = [
    ("flip", lambda t: t.flip(0, 2), ENC),
    ("roll", lambda t: t.roll((1, -1), (0, 2)), ENC),
    ("roll_flat", lambda t: t.roll(3), ENC),
    ("narrow", lambda t: t.narrow(2, 1, 3), ENC),
    ("index_select", lambda t: t.index_select(1, torch.tensor([3, 0, 3])), ENC),
    ("gather", lambda t: t.gather(2, _GI), ENC),
    ("take", lambda t: t.take(torch.tensor([[0, 59], [7, 7]])), ENC),
    ("repeat", lambda t: t[0].repeat(2, 1, 3), ENC),
    ("diagonal", lambda t: t.diagonal(1, 1, 2), ENC),
    ("trace", lambda t: t[0, :, :4].trace(), 4 * ENC),
    ("tril", lambda t: t[0].tril(-1), ENC),
    ("triu", lambda t: t.triu(1), ENC),
    ("movedim", lambda t: t.movedim(0, -1), ENC),
    ("mT", lambda t: t.mT, ENC),
    ("cumsum", lambda t: t.cumsum(2), 5 * ENC),
    ("prod", lambda t: (t[..., :3] * 0.25 + 1).prod(1), 4 * (4 * ENC + TRUNC)),
    ("var", lambda t: t.var(1), 2e-4),
    ("var_all", lambda t: t.var(unbiased=False), 2e-4),
    ("std", lambda t: t.std(dim=2, keepdim=True), 2e-3),
    ("mm", lambda t: t[0, :, :4].mm(t[1, :, :4]), 4 * (6 * ENC) + TRUNC),
    ("bmm", lambda t: t.bmm(t.transpose(1, 2)), 5 * (6 * ENC) + TRUNC),
    ("outer", lambda t: t[0, 0].outer(t[1, 1]), 6 * ENC + TRUNC),
    ("maximum", lambda t: t.maximum(t.flip(0)), ENC),
    ("min_other", lambda t: t.min(torch.zeros(5, dtype=torch.float64)), ENC),
    ("and", lambda t: (t > 0) & (t < 1), 0),
    ("or", lambda t: (t > 1) | (t < -1), 0),
    ("xor", lambda t: (t > 0) ^ (t < 1), 0),
    ("not", lambda t: ~(t > 0), 0),
]


@pytest.mark.parametrize("name,op,tol", TORCHLIKE, ids=[c[0] for c in TORCHLIKE])
def test_torch_tensor_methods(session, name, op, tol):
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = x.clamp(-2.5, 2.5)
    want = op(x)
    want = want.double() if want.dtype == torch.bool else want
    assert_close(pt(op(C(x))), want, tol)


def test_splitting_and_gradients_of_reorderings(session):
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    e = C(x, requires_grad=True)
    for got, want in [
        (e.chunk(2, 1), x.chunk(2, 1)),
        (e.split([1, 3, 1], 2), x.split([1, 3, 1], 2)),
        (e.split(2, 0), x.split(2, 0)),
        (e.unbind(1), x.unbind(1)),
    ]:
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_close(pt(g), w, ENC)
    (e.flip(1).cumsum(2).gather(2, _GI) * 2).sum().backward()
    t = x.clone().requires_grad_()
    (t.flip(1).cumsum(2).gather(2, _GI) * 2).sum().backward()
    assert_close(pt(e.grad), t.grad, 0)  # integer counts times the exact 2
    with pytest.raises(IndexError):
        e.narrow(0, 2, 5)
    with pytest.raises(RuntimeError):
        e.chunk(0)


def test_converted_models_use_the_reordering_and_statistics_functions(session):
    class M(torch.nn.Module):
        def forward(self, x):
            a, b = torch.chunk(x, 2, dim=1)
            y = torch.cumsum(a, dim=1) + b.flip(1) + torch.maximum(a, b)
            return torch.var(y, dim=1, keepdim=True) + y.tril() + torch.tril(y, 1)

    m = M()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(5))
    pm = crypten.nn.from_pytorch(m, torch.empty(4, 6)).encrypt()
    # sums of a few encoded values and one variance (within 2e-4, above)
    assert_close(pt(pm(C(x))), m(x.double()), 3e-4)


def test_cat_and_stack_take_plaintext_elements(session):
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    assert_close(pt(cryptgpu.cat([C(a), b], 0)), torch.cat([a, b], 0), ENC)
    assert_close(pt(cryptgpu.stack([a, C(b)], 1)), torch.stack([a, b], 1), ENC)
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        cryptgpu.stack([C(a), C(torch.ones(2, 2))])
    with pytest.raises(TypeError):
        cryptgpu.cat([a, b])  # nothing shared: nothing to put them in


def test_torch_functions_accept_shared_tensors(session):
    """torch.cat, torch.matmul(plain, shared), F.relu, torch.sum... dispatch
    to the SharedTensor operations (__torch_function__), and torch.Tensor's
    operators with a SharedTensor on the right keep working."""
    t = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    e = C(t)
    prod = 2 * (3 * ENC) + TRUNC  # a 2-term product of values below 3
    cases = [
        (t + e, t + t, 2 * ENC),
        (t * e, t * t, prod),
        (t @ e, t @ t, prod),
        (t < e, (t < t).double(), 0),
        (2 - e, 2 - t, ENC),
        (torch.cat([e, t]), torch.cat([t, t]), ENC),
        (torch.stack([t, e], 1), torch.stack([t, t], 1), ENC),
        (torch.matmul(t, e), t @ t, prod),
        (F.relu(e), F.relu(t), ENC),
        (torch.sum(e, 1), t.sum(1), 2 * ENC),
        (torch.transpose(e, 0, 1), t.t(), ENC),
        (torch.where(t > 0, e, 0.0), torch.where(t > 0, t, 0.0), ENC),
        (F.linear(e, t), F.linear(t, t), prod),
        (F.linear(t, e), F.linear(t, t), prod),
        (torch.add(t, e, alpha=2), 3 * t, 3 * ENC),
        (F.softmax(e, dim=-1), F.softmax(t, -1), 3e-4),  # softmax's tested bound
        (F.max_pool2d(C(t[None, None]), 2), F.max_pool2d(t[None, None], 2), ENC),
    ]
    for got, want, tol in cases:
        assert_close(pt(got), want, tol)
    with pytest.raises(NotImplementedError, match="atan"):  # (sin runs since 2026-12-07)
        torch.atan(e)
    # a shared divisor: t times e's private reciprocal, whose error is
    # 1e-6 relative on [0.02, 200] (test_functions), times |t| <= 3, plus
    # the encodings (2^-17 each, moved by |t / e^2| <= 12) and one product
    assert_close(pt(t / e), torch.ones_like(t), 3e-6 + 13 * ENC + TRUNC)


def test_a_shared_tensor_says_where_it_lives(session):
    e = C(torch.ones(2))
    assert e.device.type == cryptgpu._session._ctx.device
    assert e.is_cuda == (e.device.type == "cuda")
    assert e.dtype == torch.get_default_dtype()
    assert e.to(e.dtype) is e and e.to(e.device) is e and e.float() is e.to(torch.float32)
    # another float dtype is a copy, as torch's (it was e itself until the fix)
    assert e.double() is not e and e.to(torch.float16) is not e
    with pytest.raises(NotImplementedError):
        e.to(torch.int64)


def test_indexing_by_positions_is_local(session):
    """take/put_add (advanced indexing, item assignment, their gradient)
    move each party's own shares: no rounds, no bytes."""
    x = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    e = C(x, requires_grad=True)
    crypten.reset_communication_stats()
    y = e[torch.tensor([2, 0, 2])]
    y.sum().backward()
    f = e.detach()
    f[x > 5] = torch.zeros(())
    _ = e[[0, 1], [1, 3]]
    assert cryptgpu.stats()["total"]["rounds"] == 0
    assert cryptgpu.stats()["total"].get("bytes", 0) == 0


def test_optimiser_param_groups_scheduler_and_closure_follow_torch(session):
    # Two parameter groups with their own lr, momentum, a StepLR schedule,
    # zero_grad(set_to_none=True) and step(closure), against torch.optim.SGD
    # in float64. Each step costs at most 4 truncations per weight (the
    # product, the gradient's factor 2, momentum, lr), each within one ULP,
    # and |d step / d w| <= 1 + 2 lr + mu < 2, so after 4 steps the error is
    # below 4 ULP (1 + 2 + 4 + 8) = 60 ULP, plus the encoding of the inputs.
    w0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    v0 = torch.tensor([1.5, 0.25, -0.75], dtype=torch.float64)
    ws, vs = C(w0, requires_grad=True), C(v0, requires_grad=True)
    wt, vt = w0.clone().requires_grad_(), v0.clone().requires_grad_()
    opts, scheds = [], []
    for a, b, mod in ((ws, vs, crypten.optim), (wt, vt, torch.optim)):
        o = mod.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.5)
        opts.append(o)
        scheds.append(torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5))
    for _ in range(4):
        losses = []
        for (a, b), o, s in zip(((ws, vs), (wt, vt)), opts, scheds):
            o.zero_grad(set_to_none=True)

            def closure(a=a, b=b):
                loss = (a * a).sum() + (b * b * 2).sum()
                loss.backward()
                return loss

            losses.append(o.step(closure))
            s.step()
        # item() opens the loss: a Python float, the opened value
        assert isinstance(losses[0].item(), float)
        assert losses[0].item() == float(pt(losses[0]))
    assert [g["lr"] for g in opts[0].param_groups] == [g["lr"] for g in opts[1].param_groups]
    assert_close(pt(ws), wt.detach(), 60 * ULP + 2 * ENC)
    assert_close(pt(vs), vt.detach(), 60 * ULP + 2 * ENC)
    with pytest.raises(ValueError, match="more than one parameter group"):
        crypten.optim.SGD([{"params": [ws]}, {"params": [ws]}], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        crypten.optim.SGD([ws], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        crypten.optim.Adam([ws], betas=(0.9,))
    crypten.optim.SGD([ws], lr=0.0, momentum=1.0)  # torch accepts both


@pytest.mark.parametrize("kind", ["amsgrad", "adamw"])
def test_adam_variants_follow_torch(session, kind):
    # Gradients of order 1 here: the README's bound for Adam's step is 0.5%
    # of the step (lr = 1e-2) from 3e-4 up, so 5 steps differ by at most
    # 5 * 5e-5, plus one ULP per update for the truncations.
    w0 = torch.tensor([0.5, -1.0, 2.0, -0.3], dtype=torch.float64)
    ws, wt = C(w0, requires_grad=True), w0.clone().requires_grad_()
    kw = {"amsgrad": True} if kind == "amsgrad" else {"weight_decay": 0.1}
    cls = {"amsgrad": "Adam", "adamw": "AdamW"}[kind]
    o_s = getattr(crypten.optim, cls)([ws], lr=1e-2, **kw)
    o_t = getattr(torch.optim, cls)([wt], lr=1e-2, **kw)
    for i in range(5):
        sign = 1.0 if i % 2 == 0 else -0.5  # the gradient shrinks: amsgrad keeps the max
        for w, o in ((ws, o_s), (wt, o_t)):
            o.zero_grad()
            ((w * w).sum() * sign).backward()
            o.step()
    assert_close(pt(ws), wt.detach(), 5 * 5e-5 + 5 * ULP)


def test_torch_losses_on_shared_tensors(session):
    # torch.nn.CrossEntropyLoss / F.cross_entropy / F.mse_loss called on a
    # SharedTensor run cryptgpu's losses; tolerances as in the test above.
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    s = C(z, requires_grad=True)
    loss = torch.nn.CrossEntropyLoss()(s, labels)
    loss.backward()
    t = z.clone().requires_grad_()
    want = F.cross_entropy(t, labels)
    want.backward()
    assert_close(pt(loss), want.detach(), 2 * (1.6e-3 + 256 * ULP))
    assert_close(pt(s.grad), t.grad, 2 * 3e-4)
    got = F.cross_entropy(C(z), labels, reduction="sum")
    assert_close(pt(got), F.cross_entropy(z, labels, reduction="sum"), 2 * (1.6e-3 + 256 * ULP))
    mse = F.mse_loss(C(z), torch.zeros_like(z))
    assert_close(pt(mse), (z * z).mean(), 9 * 2 * ENC + TRUNC)  # |z| <= 3
    assert_close(pt(torch.nn.MSELoss(reduction="sum")(C(z), z)), torch.tensor(0.0).double(), 0)
    with pytest.raises(IndexError, match="out of bounds"):
        torch.nn.CrossEntropyLoss()(C(z), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(C(z), labels, label_smoothing=1.1)
    assert crypten.is_encrypted_tensor(s) and not crypten.is_encrypted_tensor(z)
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        C(z).item()


def test_batchnorm_with_cumulative_momentum_and_its_batch_count(session):
    # momentum=None (torch's cumulative average) was converted as 0.1, and
    # to_pytorch left num_batches_tracked at its old value.
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3, momentum=None))
    tm = tm.double()
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3, momentum=None))
    ref = ref.double()
    ref.load_state_dict(tm.state_dict())
    m = crypten.nn.from_pytorch(tm, torch.zeros(2, 4), fold_batchnorm=False).encrypt().train()
    ref.train()
    for _ in range(3):
        xb = torch.randn(8, 4, dtype=torch.float64)
        m(C(xb))
        ref(xb)
    m.decrypt().to_pytorch(tm)
    assert int(tm[1].num_batches_tracked) == 3
    # the running mean: averages of batch means of |x W + b| < 4, each
    # within the linear layer's error (4 products: 4 * 2 ENC * 2 + TRUNC)
    # plus one truncation per update
    assert_close(tm[1].running_mean, ref[1].running_mean, 4 * 4 * ENC + 4 * TRUNC)


def test_unencrypted_modules_compute_in_the_inputs_dtype(session):
    # CrypTen's unencrypted (and decrypted) modules run on float32 inputs;
    # ours kept float64 parameters and torch refused the mixed product.
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    x = torch.randn(1, 1, 4, 4)
    m = crypten.nn.from_pytorch(tm, torch.empty(1, 1, 4, 4))
    for model in (m, m.encrypt().decrypt(), crypten.nn.Linear(4, 2)):
        inp = x[0, 0] if isinstance(model, crypten.nn.Linear) else x
        out = model(inp)
        assert out.dtype == torch.float32
    # the values: torch's own float32 computation, to float32 rounding
    assert torch.allclose(m(x), tm(x), atol=1e-5)


def test_clamp_takes_tensor_bounds(session):
    t = torch.tensor([[-2.0, 0.5, 3.0], [1.0, -1.0, 4.0]], dtype=torch.float64)
    lo = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    # a clamp of grid values to grid bounds is exact (a selection)
    assert_close(pt(C(t).clamp(lo, lo + 1)), t.clamp(lo, lo + 1), 0)
    assert_close(pt(C(t).clamp(min=lo)), t.clamp(min=lo), 0)
    assert_close(pt(C(t).clamp(max=lo)), t.clamp(max=lo), 0)
    # min > max: torch's max everywhere (it raised ValueError before)
    assert_close(pt(C(t).clamp(lo + 1, lo)), t.clamp(lo + 1, lo), 0)


def test_the_session_stays_usable_after_bad_input_to_the_new_apis(session):
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    w = C(z, requires_grad=True)
    bad = [
        (IndexError, lambda: torch.nn.CrossEntropyLoss()(C(z), torch.tensor([2, 3]))),
        (  # class weights with probability targets are torch's now; too few: refused
            RuntimeError,
            lambda: F.cross_entropy(C(z), torch.full((2, 3), 1 / 3), weight=z[0, :2]),
        ),
        (ValueError, lambda: crypten.optim.SGD([w], lr=-1.0)),
        (ValueError, lambda: crypten.optim.SGD([{"params": [w]}, {"params": [w]}])),
        (ValueError, lambda: crypten.optim.Adam([w], betas=(0.9,))),
        (ValueError, lambda: C(z).hardtanh(1.0, 0.0)),  # clamp(1, 0) is torch's 0 now
        (IndexError, lambda: C(z).argmax(2, one_hot=False)),
        (RuntimeError, lambda: C(z).item()),
        (ValueError, lambda: crypten.nn.BCEWithLogitsLoss()(C(z), z[:1])),
        (ValueError, lambda: crypten.load_from_party(None, preloaded=torch.ones(2), src=3)),
        (TypeError, lambda: crypten.load_from_party(None, preloaded={"a": 1}, src=0)),
    ]
    for err, call in bad:
        with pytest.raises(err):
            call()
    # a correct product afterwards: one truncation of grid values (|z| <= 3)
    assert_close(pt(C(z) * C(z)), z * z, TRUNC)


def test_torch_forms_with_a_shared_tensor_on_the_right_and_torchs_errors(session):
    """torch.lt(plain, shared) and the other comparisons, t.dot(shared),
    t.add(shared), F.conv2d(plain input, shared weight) work (they raised
    NotImplementedError, TypeError and AttributeError); out-of-range gather
    and narrow raise what torch raises (RuntimeError, also IndexError);
    a mismatched item assignment says torch's "shape mismatch"; a torch
    tensor that requires grad gives a shared leaf that does (CrypTen's)."""
    t = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    e = C(a)
    for fn in (torch.lt, torch.le, torch.gt, torch.ge, torch.eq, torch.ne):
        assert_close(pt(fn(t, e)), fn(t, a).double(), 0)
        assert_close(pt(fn(e, t)), fn(a, t).double(), 0)
    # one product of encoded values (ENC each, |x| <= 3) and one truncation
    assert_close(pt(torch.ones(3, dtype=torch.float64).dot(e)), a.sum(), 3 * ENC + TRUNC)
    assert_close(pt(t.add(e)), t + a, ENC)
    assert_close(pt(t.mul(e)), t * a, 2 * ENC + TRUNC)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    got = pt(F.conv2d(x, C(w), padding=1))
    # 27 products of |x| < 5 and |w| < 5, each within the encodings
    assert_close(got, F.conv2d(x, w, padding=1), 27 * 10 * ENC + TRUNC)
    for bad in (lambda: e.gather(0, torch.tensor([5])), lambda: e.narrow(0, 2, 3)):
        with pytest.raises(RuntimeError):
            bad()
        with pytest.raises(IndexError):
            bad()
    m = C(torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        m[0] = torch.ones(5)
    assert cryptgpu.cryptensor(torch.ones(2, requires_grad=True)).requires_grad
    with pytest.raises(NotImplementedError, match="atan on a SharedTensor"):
        torch.atan(e)
    # CrypTen's positional order for the method: (kernel, padding, stride)
    img = C(torch.randn(1, 1, 8, 8))
    assert img.max_pool2d(4, 1, 2).shape == (1, 1, 4, 4)
    assert F.max_pool2d(img, 4, 2, 1).shape == (1, 1, 4, 4)  # torch's order
    with pytest.raises(NotImplementedError, match="ceil_mode"):  # with dilation only
        img.max_pool2d(2, dilation=2, ceil_mode=True)
    assert_close(pt(e), a, ENC)  # usable afterwards


def test_functional_forms_multi_input_models_and_plain_modules(session):
    """F.layer_norm and F.scaled_dot_product_attention on SharedTensors
    (they worked inside from_pytorch only), a module of several inputs with
    no children (it was wrapped as a one-input Sequential), amax/amin over
    tuples of dims, GELU of large inputs in inference (x^2 now truncated
    exactly: the probabilistic truncation wrapped 21% of |x| = 30000),
    polynomial at Horner's cost, a directly built BatchNorm training on a
    plaintext float32 batch, and tolist() refused with a pointer."""
    a = torch.randn(3, 4, dtype=torch.float64)
    # LayerNorm's statistics: 1e-4 relative on the inverse std, |xhat| < 2
    assert_close(pt(F.layer_norm(C(a), (4,))), F.layer_norm(a, (4,)), 2e-4 + 8 * ULP)
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)

    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    want = F.scaled_dot_product_attention(q, q, q)
    # softmax's 3e-4 per weight times the row length (3) times |v| < 3
    tol = 3 * 3e-4 * 3 + 8 * ULP
    assert_close(pt(F.scaled_dot_product_attention(C(q), C(q), C(q))), want, tol)
    cm = cryptgpu.nn.from_pytorch(Attn(), (q, q, q))
    assert_close(pt(cm(C(q), C(q), C(q))), want, tol)
    b = torch.randn(2, 3, 4, dtype=torch.float64)
    assert_close(pt(C(b).amax((0, 2), keepdim=True)), b.amax((0, 2), keepdim=True), ENC)
    assert_close(pt(C(b).amin(1)), b.amin(1), ENC)
    big = C(torch.full((2000,), 30000.0))
    assert float((pt(big.gelu()) - 30000.0).abs().max()) <= ENC  # relu's branch, exact
    p = C(torch.tensor([0.5, -1.0, 2.0]))
    cryptgpu.reset_stats()
    r = p.polynomial([1.0, 0.5, -0.25])
    assert cryptgpu.stats()["total"]["rounds"] == 6  # 2 rounds per degree
    want_p = torch.tensor([0.59375, -0.25, 2.0], dtype=torch.float64)
    assert_close(pt(r), want_p, 3 * (4 * ENC + TRUNC))
    bn, ref = crypten.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 2, 2)
    out = bn(x)
    assert out.dtype == torch.float32 and torch.allclose(out, ref(x), atol=1e-5)
    assert torch.allclose(bn._buffers["running_mean"].float(), ref.running_mean, atol=1e-6)
    assert bn.eval()(x).dtype == torch.float32
    with pytest.raises(TypeError, match="get_plain_text"):
        C(a).tolist()


def test_the_session_stays_usable_after_bad_input_to_the_2026_12_05_apis(session):
    """Bad arguments to the activations, losses, 1-D and extra layers, norms,
    clipping and cryptensor keywords added on 2026-12-05 raise the Python
    exception torch would (or a clear NotImplementedError), before any
    party communicates; the session computes correctly afterwards."""
    x = C(torch.randn(2, 3, 4))
    y = C(torch.randn(2, 3))
    w = C(torch.ones(2))
    w.grad = C(torch.ones(2))
    cases = [
        (cryptgpu.InvalidArgumentError, lambda: y.softplus(beta=0.0)),
        (ValueError, lambda: y.celu(alpha=0.0)),
        (ValueError, lambda: y.dropout(1.5)),
        (cryptgpu.InvalidArgumentError, lambda: y.polynomial([])),
        (NotImplementedError, lambda: y.norm(p=0)),  # torch counts nonzeros
        (RuntimeError, lambda: y.masked_fill(torch.ones(2, 3), 0.0)),
        (RuntimeError, lambda: y.repeat_interleave(torch.tensor([1, 2]))),  # torch: sizes differ
        (
            NotImplementedError,  # torch's: bilinear needs a 4-D input
            lambda: F.interpolate(x, scale_factor=2, mode="bilinear"),
        ),
        (ValueError, lambda: F.interpolate(x.unsqueeze(0), scale_factor=1.5, size=2)),
        (RuntimeError, lambda: crypten.nn.GroupNorm(2)(x)),  # 3 channels in 2 groups
        (RuntimeError, lambda: F.adaptive_avg_pool2d(x.unsqueeze(0), -1)),  # torch's type
        (cryptgpu.InvalidArgumentError, lambda: x.conv1d(torch.ones(2, 3, 2), stride=(1, 2))),
        (cryptgpu.ShapeError, lambda: y.conv1d(torch.ones(2, 3, 2).unsqueeze(0))),
        (ValueError, lambda: crypten.nn.CrossEntropyLoss(label_smoothing=-0.1)),
        (RuntimeError, lambda: F.cross_entropy(y, torch.tensor([0, 1]), weight=torch.ones(4))),
        (RuntimeError, lambda: crypten.nn.SmoothL1Loss(beta=-1)),  # beta=0 is L1, as torch
        (NotImplementedError, lambda: crypten.nn.utils.clip_grad_norm_([w], 1.0, 3)),
        (ValueError, lambda: C(torch.ones(2), precision=12)),
        (TypeError, lambda: C(torch.ones(2), colour="red")),
        (TypeError, lambda: y.tolist()),
    ]
    for i, (kind, call) in enumerate(cases):
        with pytest.raises(kind):
            call()
            pytest.fail(f"case {i} raised nothing")
    a = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    assert_close(pt(C(a).leaky_relu(0.1)), F.leaky_relu(a, 0.1), ENC + TRUNC)
