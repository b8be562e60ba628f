"""PyTorch training habits a ported script relies on, against float64
torch: gradients and momentum buffers that are separate tensors,
``zero_grad(set_to_none=False)``, the hand-written update ``p -= lr *
p.grad`` under ``no_grad``, ``detach()``/``.data``/``copy_``/``add_(alpha=)``
sharing the value as torch's, ``backward``'s keyword arguments, and
cross-entropy with class weights and label smoothing together.

Tolerances (f = 16): the quadratic loss sum(p * p) has the gradient 2p
with one truncation (1 unit of 2^-16) and each SGD update multiplies by
public constants (a truncation each): a few units per step, 8 units over
these 2-3 steps. Cross-entropy: its log_softmax and softmax are within
3e-4 of float64 (tests/test_functions.py), scaled by the class weights
(below 3).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ULP, assert_close, sgd_alongside, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def shared(vals, grad=True):
    return cryptgpu.cryptensor(torch.tensor(vals, dtype=torch.float64), requires_grad=grad)


def test_momentum_buffer_is_not_the_gradient(session):
    """After the first step the buffer was p.grad itself: p.grad.zero_()
    (a supported habit) wiped the momentum (0.64 where torch has 0.46)."""
    p = shared([1.0, 2.0])
    q = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = cryptgpu.optim.SGD([p], lr=0.1, momentum=0.9)
    ref = torch.optim.SGD([q], lr=0.1, momentum=0.9)
    for _ in range(2):
        (p * p).sum().backward()
        opt.step()
        p.grad.zero_()
        (q * q).sum().backward()
        ref.step()
        q.grad.zero_()
    assert_close(pt(p), q.detach(), 8 * ULP)


def test_each_leaf_gets_its_own_gradient_tensor(session):
    a, b = shared([1.0]), shared([1.0])
    (a + b).sum().backward()
    assert a.grad is not b.grad
    a.grad.zero_()
    assert_close(pt(b.grad), torch.ones(1, dtype=torch.float64), 0.0)


def test_zero_grad_keeping_zeros_steps_unused_parameters(session):
    """set_to_none=False zeroes the gradients, as torch: a parameter the
    next backward does not reach still takes its momentum step (it was
    skipped: 0.8 where torch has 0.458)."""
    p, q = shared([1.0, 2.0]), shared([1.0, 2.0])
    tp, tq = (torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True) for _ in "pq")
    opt = cryptgpu.optim.SGD([p, q], lr=0.1, momentum=0.9)
    ref = torch.optim.SGD([tp, tq], lr=0.1, momentum=0.9)
    (p * p).sum().backward()
    opt.step()
    (tp * tp).sum().backward()
    ref.step()
    for _ in range(2):
        opt.zero_grad(set_to_none=False)
        ref.zero_grad(set_to_none=False)
        assert p.grad is not None
        assert_close(pt(p.grad), torch.zeros(2, dtype=torch.float64), 0.0)
        (q * q).sum().backward()
        opt.step()
        (tq * tq).sum().backward()
        ref.step()
    assert_close(pt(p), tp.detach(), 8 * ULP)
    assert_close(pt(q), tq.detach(), 8 * ULP)


def test_hand_written_update_under_no_grad_changes_the_model(session):
    """The tutorial loop ``with torch.no_grad(): for p in model.parameters():
    p -= lr * p.grad`` updates the model's parameters in place (it rebound
    the loop variable and trained nothing); outside no_grad, on a value
    autograd records, ``x += y`` still gives the new value."""
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt().train()
    pm(cryptgpu.cryptensor(x)).sum().backward()
    m(x).sum().backward()
    with torch.no_grad():
        for p in pm.parameters():
            p -= 0.5 * p.grad
        for p in m.parameters():
            p -= 0.5 * p.grad
    for p, w in zip(pm.parameters(), m.parameters()):
        # the gradient of a sum through a Linear: 4 products of |x| < 3 (a
        # truncation), then the update's product by 0.5
        assert_close(pt(p), w.detach(), 8 * ULP)
    y = shared([1.0, 2.0])
    z = y * 2
    z += 1  # recorded: rebound, same value
    assert_close(pt(z), torch.tensor([3.0, 5.0], dtype=torch.float64), 0.0)
    z.sum().backward()
    assert_close(pt(y.grad), torch.tensor([2.0, 2.0], dtype=torch.float64), 0.0)


def test_detach_data_copy_and_alpha_share_the_value_as_torch(session):
    p = shared([1.0, 2.0])
    p.detach().mul_(0.5)  # torch: the same storage
    assert_close(pt(p), torch.tensor([0.5, 1.0], dtype=torch.float64), ULP)
    assert p.requires_grad
    d = p.data
    assert not d.requires_grad
    p.data = torch.tensor([3.0, 4.0])
    assert_close(pt(p), torch.tensor([3.0, 4.0], dtype=torch.float64), 0.0)
    assert p.requires_grad
    with torch.no_grad():
        p.copy_(torch.tensor([5.0, 6.0]))
        p.add_(torch.tensor([1.0, 1.0]), alpha=-2)
        p.sub_(shared([1.0, 1.0], grad=False), alpha=2)
    assert_close(pt(p), torch.tensor([1.0, 2.0], dtype=torch.float64), 0.0)
    with pytest.raises(RuntimeError, match="in-place"):
        p.copy_(torch.zeros(2))  # a leaf that requires grad, as torch refuses
    assert_close(pt(p.add(shared([1.0, 1.0], grad=False), alpha=3)), torch.tensor([4.0, 5.0]), 0.0)


def test_backward_keywords_and_plaintext_gradients(session):
    x = shared([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()  # the graph was kept
    assert_close(pt(x.grad), torch.tensor([4.0, 8.0], dtype=torch.float64), 4 * ULP)
    x.grad = None
    (x * x).sum().backward(gradient=cryptgpu.cryptensor(torch.tensor(2.0)))
    assert_close(pt(x.grad), torch.tensor([4.0, 8.0], dtype=torch.float64), 4 * ULP)
    # a plaintext gradient (it crashed inside mean's backward)
    y = cryptgpu.cryptensor(torch.ones(2, 3), requires_grad=True)
    y.mean(-1).backward(torch.ones(2))
    assert_close(pt(y.grad), torch.full((2, 3), 1 / 3, dtype=torch.float64), 2 * ULP)
    with pytest.raises(NotImplementedError, match="create_graph"):
        (y * y).sum().backward(create_graph=True)
    with pytest.raises(ValueError):
        (y * y).sum().backward(torch.tensor(float("nan")))
    assert_close(pt(y.sum()), torch.tensor(6.0, dtype=torch.float64), 0.0)  # still usable


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_class_weights_and_label_smoothing(session, reduction):
    """torch weights the smoothing term by each class's weight; the whole
    smoothed row was multiplied by the label's weight (0.73 where torch
    gives 1.46, gradients of the other sign)."""
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.1, -0.3, 0.7]], dtype=torch.float64)
    y = torch.tensor([0, 1, -100])
    w = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    zz = cryptgpu.cryptensor(z, requires_grad=True)
    loss = cryptgpu.nn.CrossEntropyLoss(weight=w, label_smoothing=0.2, reduction=reduction)(zz, y)
    zt = z.clone().requires_grad_()
    want = F.cross_entropy(zt, y, weight=w, label_smoothing=0.2, reduction=reduction)
    # log_softmax within 3e-4, times the row's total weight (below 3)
    assert_close(pt(loss), want.detach(), 3 * 3e-4)
    (loss.sum() if reduction == "none" else loss).backward()
    (want.sum() if reduction == "none" else want).backward()
    # softmax within 3e-4 times the row's total weight (the mean divides
    # by 1.2 more)
    assert_close(pt(zz.grad), zt.grad, 3 * 3e-4 + 4 * ULP)


class Custom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.rand(3, dtype=torch.float64) + 0.5)
        self.head = torch.nn.Linear(3, 2).double()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 3).double())

    def forward(self, x):
        return self.head(self.body(x) * self.scale)


def test_parameter_names_and_order_are_torchs(session):
    """Converted models name and order their parameters as torch does:
    nested containers gave "0_0.weight", and a custom module's parameters
    came in execution order (scale, body, head) where torch registers
    (scale, head, body), so zip(torch_model.parameters(), ...) paired
    different tensors and load_state_dict between the two failed."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, dtype=torch.float64)
    nested = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()), torch.nn.Linear(4, 2)
    ).double()
    for m in (nested, Custom(), torch.nn.Linear(3, 2).double()):
        pm = cryptgpu.nn.from_pytorch(m, x)
        assert [n for n, _ in pm.named_parameters()] == [n for n, _ in m.named_parameters()]
        assert list(pm.state_dict()) == list(m.state_dict())
        pm.encrypt()
        pm.load_state_dict(m.state_dict())  # plaintext into the encrypted model
        for p, w in zip(pm.parameters(), m.parameters()):
            assert p.shape == w.shape
            assert_close(pt(p), w.detach(), ULP / 2)  # the encoding
        opened = {k: pt(v) for k, v in pm.state_dict().items()}
        m.load_state_dict(opened)  # strict: every name torch's
        assert_close(pt(pm(cryptgpu.cryptensor(x))), m(x).detach(), 1e-3)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_weight_and_pos_weight(session, reduction):
    """BCEWithLogitsLoss(weight=, pos_weight=) raised NotImplementedError.
    Each element's loss is w (pw y softplus(-x) + (1 - y) softplus(x)):
    softplus within 3e-4 (exp_nonpos's relative error on e^-|x| <= 1) and
    a few truncations, times w (pw + 1) <= 2 * 4; the gradient's sigmoid
    within 1e-3 (tests/test_functions.py) times the same factor."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64) * 3
    y = (torch.rand(6, 3, generator=gen) > 0.5).double()
    w = torch.rand(6, 3, generator=gen, dtype=torch.float64) * 2
    pw = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    loss = cryptgpu.nn.BCEWithLogitsLoss(weight=w, pos_weight=pw, reduction=reduction)(xs, y)
    xt = x.clone().requires_grad_()
    want = F.binary_cross_entropy_with_logits(xt, y, weight=w, pos_weight=pw, reduction=reduction)
    n = x.numel() if reduction == "mean" else 1
    elems = x.numel() / n  # a mean divides the summed error by N
    assert abs(pt(loss).item() - want.item()) <= 8 * (3e-4 + 4 * ULP) * elems
    loss.backward()
    want.backward()
    assert_close(pt(xs.grad), xt.grad, 8 * (1e-3 + 4 * ULP) / n)
    # the functional form, and a shared target
    f = F.binary_cross_entropy_with_logits(
        cryptgpu.cryptensor(x), cryptgpu.cryptensor(y), pos_weight=pw, reduction=reduction
    )
    want_f = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=reduction)
    assert abs(pt(f).item() - want_f.item()) <= 4 * (3e-4 + 4 * ULP) * elems


def test_a_one_element_tensor_learning_rate(session):
    """torch takes lr=torch.tensor(0.1) (LR-scheduler code passes them);
    it raised TypeError. The update: one truncation of 2p by the lr."""
    p = shared([1.0, 2.0])
    opt = cryptgpu.optim.SGD([p], lr=torch.tensor(0.25))
    (p * p).sum().backward()
    opt.step()
    assert_close(pt(p), torch.tensor([0.5, 1.0], dtype=torch.float64), 4 * ULP)
    with pytest.raises(TypeError):
        cryptgpu.optim.SGD([p], lr=torch.tensor([0.1, 0.2]))


class TiedLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4).double()
        self.b = torch.nn.Linear(4, 4).double()
        self.b.weight = self.a.weight  # tied, as an LM's decoder and embedding

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class WeightReadTwice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4).double()

    def forward(self, x):
        return F.linear(torch.relu(self.a(x)), self.a.weight)


@pytest.mark.parametrize("cls", [TiedLayers, WeightReadTwice])
def test_tied_weights_stay_one_parameter(session, cls):
    """A weight shared by two layers was converted into two copies that
    trained apart (0.16 from torch after 2 steps), and a layer's weight read
    again with get_attr was orphaned (never shared, never trained). Both are
    one parameter now, listed once as torch lists it. Tolerance: 2 SGD steps
    of lr 0.5 on cross-entropy gradients within a few 1e-5."""
    torch.manual_seed(0)
    m = cls()
    x = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    pm = cryptgpu.nn.from_pytorch(m.train(), x).encrypt().train()
    assert [n for n, _ in pm.named_parameters()] == [n for n, _ in m.named_parameters()]
    assert list(pm.state_dict()) == list(m.state_dict())
    sgd_alongside(pm, m, x, y, 0.5, 2)
    for p, w in zip(pm.parameters(), m.parameters()):
        assert_close(pt(p), w.detach(), 2 * 0.5 * 3e-4)
    back = cls()
    pm.to_pytorch(back)
    for p, w in zip(back.parameters(), m.parameters()):
        assert_close(p.detach(), w.detach(), 2 * 0.5 * 3e-4)


def test_detach_of_a_view_and_user_gradients_are_not_aliased(session):
    root = cryptgpu.cryptensor(torch.zeros(2, 3))
    root[0].detach().add_(1.0)  # through the view into the root, as torch
    root[1].data.add_(2.0)
    assert_close(pt(root), torch.tensor([[1.0] * 3, [2.0] * 3], dtype=torch.float64), 0.0)
    p = cryptgpu.cryptensor(torch.ones(3), requires_grad=True)
    g = cryptgpu.cryptensor(torch.full((3,), 2.0))
    p.reshape(3).backward(g)
    g.mul_(5)  # the caller's gradient changes later: p.grad must not
    assert_close(pt(p.grad), torch.full((3,), 2.0, dtype=torch.float64), 0.0)
    opt = cryptgpu.optim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert_close(pt(g), torch.full((3,), 10.0, dtype=torch.float64), 0.0)


def test_decrypt_then_encrypt_keeps_the_optimisers_parameters(session):
    """Evaluating in torch mid-training (decrypt, to_pytorch) and encrypting
    again: the optimiser must still hold the model's parameters, as torch's
    parameters keep their identity through model.to(device). Until
    2026-12-05 encrypt() made new objects, and SGD went on updating the
    orphans: the model stopped changing, with no error."""
    torch.manual_seed(4)
    net = torch.nn.Linear(3, 2).double()
    ref = torch.nn.Linear(3, 2).double()
    ref.load_state_dict(net.state_dict())
    m = cryptgpu.nn.from_pytorch(net, torch.empty(1, 3)).encrypt().train()
    before = list(m.parameters())
    opt = cryptgpu.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])

    def step():
        opt.zero_grad()
        cryptgpu.nn.CrossEntropyLoss()(m(cryptgpu.cryptensor(x)), y).backward()
        opt.step()
        ref_opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        ref_opt.step()

    step()
    m.decrypt().to_pytorch(net)
    with pytest.raises(RuntimeError, match="encrypt"):  # training a decrypted model
        cryptgpu.nn.CrossEntropyLoss()(m(cryptgpu.cryptensor(x)), y).backward()
    m.encrypt().train()
    assert all(a is b for a, b in zip(m.parameters(), before))
    step()
    step()
    # three SGD steps with momentum of a 3-2 linear model: a few units of
    # 2^-16 per step from the products and the softmax's 1e-4 relative
    for got, want in zip(m.parameters(), ref.parameters()):
        assert_close(pt(got), want.detach(), 1e-3)
    assert not torch.equal(pt(m.weight), net.weight.detach())  # it went on training


def test_pickling_a_shared_tensor_says_how_to_save_it(session):
    import io

    m = cryptgpu.nn.from_pytorch(torch.nn.Linear(3, 2), torch.empty(1, 3)).encrypt()
    with pytest.raises(TypeError, match="cryptgpu.save"):
        torch.save(m.state_dict(), io.BytesIO())
    with pytest.raises(TypeError):
        m[0]  # a bare layer converted is not a container, as torch's Linear
    buf = io.BytesIO()
    torch.save(m.decrypt().state_dict(), buf)  # plaintext after decrypt
    assert buf.getvalue()
    torch.save(m, io.BytesIO())  # the decrypted module itself, too


def _mlp():
    torch.manual_seed(4)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    ).double()


def test_module_zero_grad_keeping_zeros_and_requires_grad(session):
    """model.zero_grad(set_to_none=False) zeroes in place as torch's (it
    set None: a parameter the next backward missed skipped its momentum
    and weight-decay step); model[0].requires_grad_(False) freezes a
    layer (modules had no requires_grad_)."""
    tm = _mlp()
    m = cryptgpu.nn.from_pytorch(tm, torch.zeros(1, 6)).encrypt().train()
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    opt = cryptgpu.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    ref = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    for step in range(4):
        if step == 2:  # the first layer leaves the graph: only momentum and decay move it
            m[0].requires_grad_(False)
            tm[0].requires_grad_(False)
        m.zero_grad(set_to_none=False)
        tm.zero_grad(set_to_none=False)
        cryptgpu.nn.CrossEntropyLoss()(m(cryptgpu.cryptensor(x)), y).backward()
        F.cross_entropy(tm(x), y).backward()
        opt.step()
        ref.step()
    assert m[0].weight.grad is not None
    # products of 4 steps with weights below 1: measured 3e-5; 1e-3 is the
    # cross-entropy backward's 3e-4 per step, summed
    assert_close(pt(m[0].weight), tm[0].weight.detach(), 1e-3)
    assert_close(pt(m[2].weight), tm[2].weight.detach(), 1e-3)


def test_torch_optimizer_from_before_encrypt_refuses_to_step(session):
    """An optimiser built on the plaintext parameters before encrypt()
    trained nothing, silently (the shares replaced those tensors)."""
    m = cryptgpu.nn.from_pytorch(_mlp(), torch.zeros(1, 6))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.encrypt().train()
    x = cryptgpu.cryptensor(torch.randn(2, 6, dtype=torch.float64))
    cryptgpu.nn.CrossEntropyLoss()(m(x), torch.tensor([0, 1])).backward()
    with pytest.raises(RuntimeError, match="after encrypt"):
        opt.step()
    good = cryptgpu.optim.SGD(m.parameters(), lr=0.5)
    before = pt(m[0].weight)
    good.step()  # the right order still works, and torch optimisers elsewhere too
    assert (pt(m[0].weight) - before).abs().max() > 0
    t = torch.zeros(2, requires_grad=True)
    (t.sum() * 2).backward()
    torch.optim.SGD([t], lr=1.0).step()
    assert t.tolist() == [-2.0, -2.0]


def test_decrypted_model_trains_on_with_torch(session):
    """After decrypt() in training mode the parameters require grad, as a
    torch model's (they came back with requires_grad=False: torch's
    backward failed); eval() turns them off again, train() on."""
    tm = _mlp()
    m = cryptgpu.nn.from_pytorch(tm, torch.zeros(1, 6)).encrypt().train().decrypt()
    assert all(p.requires_grad for p in m.parameters())
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    ref = torch.optim.SGD(tm.parameters(), lr=0.1)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    for model, o in ((m, opt), (tm, ref)):
        o.zero_grad()
        F.cross_entropy(model(x), y).backward()
        o.step()
    # the same float64 steps from weights encoded once (ENC = 2^-17 each)
    assert_close(m[0].weight.detach(), tm[0].weight.detach(), 1e-4)
    m.eval()
    assert not any(p.requires_grad for p in m.parameters())
    m.train()
    assert all(p.requires_grad for p in m.parameters())


def test_formatting_a_loss_opens_it_as_item(session):
    loss = cryptgpu.cryptensor(torch.tensor(0.123456, dtype=torch.float64))
    assert f"{loss:.4f}" == "0.1235"
    assert f"{loss}" == str(loss)
    with pytest.raises(TypeError):  # as torch's for a tensor of several elements
        f"{cryptgpu.cryptensor(torch.zeros(2)):.2f}"
    with pytest.raises(ValueError, match="one element"):  # float(t), as torch
        float(cryptgpu.cryptensor(torch.zeros(2)))


def test_loading_a_torch_optimizer_state_dict_says_what_it_is(session):
    """A torch optimiser's state dict (or another cryptgpu optimiser's)
    given to a cryptgpu optimiser's load_state_dict raised a bare
    KeyError 'momentum_buffers' (a user probe): a ValueError now says
    what was given, and the optimiser still works after it."""
    tm = torch.nn.Linear(3, 2)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    tm(torch.randn(2, 3)).sum().backward()
    topt.step()
    pm = cryptgpu.nn.from_pytorch(tm, torch.zeros(1, 3)).encrypt().train()
    for cls in (cryptgpu.optim.SGD, cryptgpu.optim.Adam, cryptgpu.optim.RMSprop):
        opt = cls(pm.parameters(), lr=0.1)
        with pytest.raises(ValueError, match="torch.optim state dict"):
            opt.load_state_dict(topt.state_dict())
    adam = cryptgpu.optim.Adam(pm.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lacks"):
        adam.load_state_dict(cryptgpu.optim.SGD(pm.parameters(), lr=0.1).state_dict())
    sgd = cryptgpu.optim.SGD(pm.parameters(), lr=0.5)
    w0 = pm.weight.get_plain_text(dtype=torch.float64)
    pm.zero_grad()
    pm(cryptgpu.cryptensor(torch.ones(1, 3))).sum().backward()
    sgd.step()
    # d/dW sum(W x + b) = x = 1 for every weight: one step of lr 0.5 moves
    # each by -0.5 exactly (a public factor on an exact gradient, within
    # the encoding, 2^-17, and one truncation, 2^-16)
    step = pm.weight.get_plain_text(dtype=torch.float64) - w0
    assert (step + 0.5).abs().max() <= 2.0**-15
    assert usable()


def test_averaged_model_refuses_a_private_model_and_the_lerp_ema_works(session):
    """torch.optim.swa_utils.AveragedModel(private_model) averaged nothing,
    silently (the private model is not a torch.nn.Module, so its
    parameters() were empty): refused now, naming the lerp_ form, which
    keeps an EMA copy: one step e + (p - e) 0.1 from e = p - 1 gives
    p - 0.9, within one truncation and the encodings (3 units of 2^-16)."""
    from torch.optim.swa_utils import AveragedModel

    tm = torch.nn.Linear(3, 2).double()
    pm = cryptgpu.nn.from_pytorch(tm, torch.zeros(1, 3)).encrypt()
    with pytest.raises(TypeError, match="lerp_"):
        AveragedModel(pm)
    assert isinstance(AveragedModel(torch.nn.Linear(3, 2)), AveragedModel)  # torch's own
    ema = copy.deepcopy(pm)
    with torch.no_grad():
        for e in ema.parameters():
            e.sub_(1.0)
        for e, p in zip(ema.parameters(), pm.parameters()):
            e.lerp_(p, 0.1)
    for e, p in zip(ema.parameters(), tm.parameters()):
        got = e.get_plain_text(dtype=torch.float64)
        assert (got - (p.detach() - 0.9)).abs().max() <= 3 * 2.0**-16
    assert usable()


# One first step of each optimiser against torch's. The private step is
# within 1e-3 of the step's size for gradients of magnitude 0.25 to 2
# (tests/test_adam.py, tests/test_rmsprop_adagrad.py: the ratio's relative
# error and the floor on the second moment, with the encodings of g and
# p), and a first step is at most 10 lr (RMSprop's, lr / sqrt(1 - alpha);
# Adam's, AdamW's and Adagrad's are lr; SGD's, lr |g| <= 2 lr, is within
# the encodings and one truncation, 3e-5): tolerance 1e-3 * 10 lr.
OPTIMISERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2}),
    ("Adagrad", {"lr": 1e-2}),
]


def _grads(gen, *shape):
    """Gradients of magnitude 0.25 .. 2, either sign."""
    g = torch.empty(*shape, dtype=torch.float64).uniform_(0.25, 2, generator=gen)
    return torch.where(torch.rand(*shape, generator=gen) < 0.5, -g, g)


def _first_step_matches_torch(ours, name, kw, torch_groups, grads):
    """One step of the private optimiser ``ours`` and of torch.optim.<name>
    on the same groups (plaintext copies), from the same gradients: the
    parameters agree within the tolerance above."""
    ref = getattr(torch.optim, name)(torch_groups, **kw)
    ps, ts = ours.params, [t for g in torch_groups for t in g["params"]]
    for p, t, g in zip(ps, ts, grads):
        p.grad, t.grad = cryptgpu.cryptensor(g), g.clone()
    ours.step()
    ref.step()
    for p, t in zip(ps, ts):
        assert_close(pt(p), t.detach(), 1e-3 * 10 * kw["lr"])


@pytest.mark.parametrize("name,kw", OPTIMISERS)
def test_saved_optimiser_state_of_another_shape_is_refused_at_load(session, name, kw):
    """Adam's, AdamW's, RMSprop's and Adagrad's moments saved for a
    parameter of shape (4, 3) loaded into an optimiser over one of shape
    (2, 3) in silence, and the next step broadcast them and made the
    parameter (4, 3) (torch raises at that step). Refused at load now, as
    SGD's momentum buffers were: a ValueError naming both shapes; the
    optimiser is left as built (its first step is torch's)."""
    gen = torch.Generator().manual_seed(7)
    big = shared(torch.randn(4, 3, dtype=torch.float64, generator=gen).tolist())
    trained = getattr(cryptgpu.optim, name)([big], **kw)
    big.grad = cryptgpu.cryptensor(_grads(gen, 4, 3))
    trained.step()
    saved = trained.state_dict()

    w0 = torch.randn(2, 3, dtype=torch.float64, generator=gen)
    w = shared(w0.tolist())
    opt = getattr(cryptgpu.optim, name)([w], **kw)
    with pytest.raises(ValueError, match=r"\(4, 3\) does not fit a parameter of shape \(2, 3\)"):
        opt.load_state_dict(saved)
    assert usable()
    t = w0.clone().requires_grad_()
    _first_step_matches_torch(opt, name, kw, [{"params": [t]}], [_grads(gen, 2, 3)])


@pytest.mark.parametrize("name,kw", OPTIMISERS)
def test_saved_parameter_groups_of_other_sizes_are_refused_at_load(session, name, kw):
    """A state saved with groups [a, b] (lr 0.1) and [c, d] (lr 0.01)
    loaded into an optimiser grouped [a] and [b, c, d] in silence, so b
    took the other group's learning rate; torch raises ValueError ("...
    doesn't match the size of optimizer's group"), and so does cryptgpu
    now, leaving the optimiser as built. Groups of the saved sizes load,
    with the saved learning rates."""
    gen = torch.Generator().manual_seed(8)
    w0 = [torch.randn(3, dtype=torch.float64, generator=gen) for _ in range(4)]
    a, b, c, d = (shared(w.tolist()) for w in w0)
    opt = getattr(cryptgpu.optim, name)(
        [{"params": [a, b], "lr": 0.1}, {"params": [c, d], "lr": 0.01}], **kw
    )
    saved = opt.state_dict()

    regrouped = getattr(cryptgpu.optim, name)([{"params": [a]}, {"params": [b, c, d]}], **kw)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        regrouped.load_state_dict(saved)
    assert usable()
    assert [g["lr"] for g in regrouped.param_groups] == [kw["lr"], kw["lr"]]
    ts = [w.clone().requires_grad_() for w in w0]
    grads = [_grads(gen, 3) for _ in range(4)]
    _first_step_matches_torch(regrouped, name, kw, [{"params": ts[:1]}, {"params": ts[1:]}], grads)

    same = getattr(cryptgpu.optim, name)([{"params": [a, b]}, {"params": [c, d]}], **kw)
    same.load_state_dict(saved)
    assert [g["lr"] for g in same.param_groups] == [0.1, 0.01]
    assert [len(g["params"]) for g in same.param_groups] == [2, 2]
    assert all(p is q for p, q in zip(same.params, (a, b, c, d)))  # not the saved indices


@pytest.mark.parametrize("name,kw", OPTIMISERS)
def test_state_dict_hooks_run_as_torchs(session, name, kw):
    """torch's register_state_dict_pre_hook / _post_hook and
    register_load_state_dict_pre_hook / _post_hook run around our
    state_dict and load_state_dict, in torch's order, as torch's own
    optimiser runs them (until 2026-12-06 they were accepted and never
    called): a post hook's entry is in the saved dict, a load pre hook's
    change of the learning rate is what loads; a subclass whose
    state_dict calls its base's runs them once."""
    calls = []

    def post(opt, sd):
        calls.append("save_post")
        sd["note"] = "kept"

    def load_pre(opt, sd):
        calls.append("load_pre")
        sd = dict(sd, param_groups=[dict(g, lr=0.5) for g in sd["param_groups"]])
        return sd

    class Mine(getattr(cryptgpu.optim, name)):
        def state_dict(self, mine=True):  # a subclass's own argument passes
            return {**super().state_dict(), "mine": mine}

    for cls in (getattr(cryptgpu.optim, name), Mine, getattr(torch.optim, name)):
        calls.clear()
        plain = cls is getattr(torch.optim, name)
        p = torch.zeros(3, requires_grad=True) if plain else shared([0.0, 1.0, 2.0])
        opt = cls([p], **kw)
        opt.register_state_dict_pre_hook(lambda o: calls.append("save_pre"))
        opt.register_state_dict_post_hook(post)
        opt.register_load_state_dict_pre_hook(load_pre)
        opt.register_load_state_dict_post_hook(lambda o: calls.append("load_post"))
        sd = opt.state_dict()
        assert sd["note"] == "kept" and ("mine" in sd) == (cls is Mine), cls
        opt.load_state_dict(sd)
        assert calls == ["save_pre", "save_post", "load_pre", "load_post"], cls
        assert opt.param_groups[0]["lr"] == 0.5 and sd["param_groups"][0]["lr"] == kw["lr"]
        if cls is Mine:
            assert opt.state_dict(mine=False)["mine"] is False
