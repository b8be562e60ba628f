"""Custom ``torch.autograd.Function``s on SharedTensors and in converted
models (probe OB §1): a converted forward calling ``MyFn.apply`` trained
as if the Function were ``detach()`` (DANN's gradient reversal gave the
features the head's gradient only, 0.35 where torch has 0.23; a
straight-through estimator left fc1 with no gradient), and on a bare
SharedTensor ``MyFn.apply`` was a NotImplementedError. Each test fails on
the code before the fix.

Tolerances follow conftest's model (16 fractional bits): ``dot(k, a, ea,
b, eb)`` bounds a sum of k products of values of magnitude at most a and
b carrying errors ea and eb, truncated once: k (a eb + b ea + ea eb) +
TRUNC; an encoded weight or input carries ENC; a bias adds ENC; a product
by a public integer is exact, by a public fraction one TRUNC.
"""

import pytest
import torch
import torch.nn as tnn
from torch.autograd.function import once_differentiable

import cryptgpu
from conftest import ENC, TRUNC, usable

D = torch.float64


def dot(k: int, a: float, ea: float, b: float, eb: float) -> float:
    """Bound of a sum of k products (module docstring)."""
    return k * (a * eb + b * ea + ea * eb) + TRUNC


def opened(x):
    return x.get_plain_text(dtype=D)


def amax(t) -> float:
    return float(t.detach().abs().max())


class GradReverse(torch.autograd.Function):
    """DANN's gradient reversal layer."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


class STERound(torch.autograd.Function):
    """A straight-through estimator (quantisation-aware training)."""

    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def backward(ctx, g):
        return g


class Dann(tnn.Module):
    def __init__(self):
        super().__init__()
        self.feat, self.head, self.dom = tnn.Linear(4, 3), tnn.Linear(3, 2), tnn.Linear(3, 2)

    def forward(self, x):
        h = self.feat(x)
        return self.head(h) + self.dom(GradReverse.apply(h))


class Ste(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = tnn.Linear(4, 3), tnn.Linear(3, 2)

    def forward(self, x):
        return self.fc2(STERound.apply(self.fc1(x) * 4) / 4)


def _dann_bounds(tm, x):
    """(forward, {parameter: gradient bound}) for Dann on x, batch n, loss
    sum(out^2), layer by layer by ``dot``."""
    n, X = x.shape[0], amax(x)
    W1, Wh, Wd = amax(tm.feat.weight), amax(tm.head.weight), amax(tm.dom.weight)
    H = amax(tm.feat(x))
    eh = dot(4, X, ENC, W1, ENC) + ENC
    eo = 2 * (dot(3, H, eh, max(Wh, Wd), ENC) + ENC)  # head + dom
    G = 2 * amax(tm(x))
    eg = 2 * eo + TRUNC  # d(out*out) = 2 out
    egh = 2 * dot(2, G, eg, max(Wh, Wd), ENC)  # through head and (reversed) dom
    GH = 2 * 2 * G * max(Wh, Wd)
    return eo, {
        "head.weight": dot(n, G, eg, H, eh),
        "dom.weight": dot(n, G, eg, H, eh),
        "head.bias": n * eg,
        "dom.bias": n * eg,
        "feat.weight": dot(n, GH, egh, X, ENC),
        "feat.bias": n * egh,
    }


def _ste_bounds(tm, x):
    """As _dann_bounds for Ste; the rounded values are exact (checked: no
    value of 4 fc1(x) within its error of a half-integer)."""
    n, X = x.shape[0], amax(x)
    W1, W2 = amax(tm.fc1.weight), amax(tm.fc2.weight)
    pre = tm.fc1(x) * 4
    e4 = 4 * (dot(4, X, ENC, W1, ENC) + ENC)
    assert ((pre - pre.round()).abs() - 0.5).abs().min() > e4  # (the premise above)
    Q = amax(pre.round() / 4)
    eo = dot(3, Q, TRUNC, W2, ENC) + ENC
    G = 2 * amax(tm(x))
    eg = 2 * eo + TRUNC
    egq = dot(2, G, eg, W2, ENC)  # d/dq; then / 4 and * 4 (straight through): TRUNC more
    GQ = 2 * G * W2
    return eo, {
        "fc2.weight": dot(n, G, eg, Q, TRUNC),
        "fc2.bias": n * eg,
        "fc1.weight": dot(n, GQ, egq + TRUNC, X, ENC),
        "fc1.bias": n * (egq + TRUNC),
    }


@pytest.mark.parametrize("dummy", [True, False], ids=["dummy", "no_dummy"])
@pytest.mark.parametrize("kind", ["dann", "ste"])
def test_a_converted_model_gets_the_functions_backward(session, kind, dummy):
    torch.manual_seed(0)
    tm = (Dann() if kind == "dann" else Ste()).double()
    x = torch.randn(5, 4, dtype=D)
    eo, bounds = (_dann_bounds if kind == "dann" else _ste_bounds)(tm, x)
    pm = cryptgpu.nn.from_pytorch(tm, x if dummy else None).encrypt().train()
    # inference: within the forward's bound (measured below 2e-5)
    with torch.no_grad():
        want = tm(x)
    assert (opened(pm.eval()(cryptgpu.cryptensor(x))) - want).abs().max() <= eo
    pm.train()
    tm(x).square().sum().backward()
    out = pm(cryptgpu.cryptensor(x))
    (out * out).sum().backward()
    grads = dict(pm.named_parameters())
    for name, p in tm.named_parameters():
        got = grads[name].grad
        # until 2026-12-07: fc1's gradient None (STE); feat's 0.35 where torch's 0.23 (DANN)
        assert got is not None, name
        err = (opened(got) - p.grad).abs().max()
        assert err <= bounds[name], (name, float(err), bounds[name])  # bound: derived above
        assert bounds[name] < 0.01  # (the bound tells a reversed gradient from another)
    lr = 0.1
    popt = cryptgpu.optim.SGD(pm.parameters(), lr=lr)
    torch.optim.SGD(tm.parameters(), lr=lr).step()
    popt.step()
    for name, p in tm.named_parameters():
        # one step: the weight's ENC, lr times the gradient's bound, one TRUNC
        tol = ENC + lr * bounds[name] + TRUNC
        assert (opened(grads[name]) - p.detach()).abs().max() <= tol, name


class Mix(torch.autograd.Function):
    """Two outputs, tensors saved, a ctx attribute, non-tensor inputs."""

    seen = None

    @staticmethod
    def forward(ctx, x, w, k, label):
        ctx.k, ctx.label = k, label
        ctx.save_for_backward(x, w)
        return x * w * k, x + w

    @staticmethod
    def backward(ctx, gy, gz):
        Mix.seen = (tuple(ctx.needs_input_grad), ctx.label, gz is None)
        x, w = ctx.saved_tensors
        gx = gy * w * ctx.k + gz if ctx.needs_input_grad[0] else None
        gw = gy * x * ctx.k + gz if ctx.needs_input_grad[1] else None
        return gx, gw, None, None


def _pair():
    torch.manual_seed(3)
    return torch.randn(2, 3, dtype=D), torch.randn(2, 3, dtype=D)


@pytest.mark.parametrize("w_grad", [True, False])
def test_a_function_on_shared_tensors_runs_its_backward(session, w_grad):
    xv, wv = _pair()
    x, w = xv.clone().requires_grad_(), wv.clone().requires_grad_(w_grad)
    y, z = Mix.apply(x, w, 3, "tag")
    (y.square().sum() + z.sum() * 2).backward()  # z used: gz given
    torch_seen = Mix.seen
    xs = cryptgpu.cryptensor(xv, requires_grad=True)
    ws = cryptgpu.cryptensor(wv, requires_grad=w_grad)
    ys, zs = Mix.apply(xs, ws, 3, "tag")  # until 2026-12-07 a NotImplementedError
    assert ys.grad_fn.name() == y.grad_fn.name() == "MixBackward"
    assert (opened(ys) - y).abs().max() <= 3 * dot(1, 3, ENC, 3, ENC)  # x w, then times 3
    (ys.square().sum() + zs.sum() * 2).backward()
    assert Mix.seen == torch_seen == ((True, w_grad, False, False), "tag", False)
    # |x|,|w| < 3, |y| < 27: y^2's gradient 2y, times w times 3, truncated twice
    tol = 3 * 2 * dot(1, 27, 3 * dot(1, 3, ENC, 3, ENC), 3, ENC) + 3 * TRUNC
    assert (opened(xs.grad) - x.grad).abs().max() <= tol
    assert (ws.grad is None) == (not w_grad)
    if w_grad:
        assert (opened(ws.grad) - w.grad).abs().max() <= tol
    assert xs.grad_fn is None  # still a leaf


def test_an_unused_output_gets_zeros_and_setup_context_style(session):
    xv, wv = _pair()
    xs, ws = cryptgpu.cryptensor(xv, requires_grad=True), cryptgpu.cryptensor(wv)
    ys, _ = Mix.apply(xs, ws, 2, "t")
    ys.sum().backward()
    assert Mix.seen[2] is False  # materialised as zeros, as torch's
    assert (opened(xs.grad) - 2 * wv).abs().max() <= 2 * ENC  # 2 w, w encoded

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(x, scale=1.0):
            return x * x * x * scale

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, scale = inputs  # scale's default, bound by apply as torch's
            ctx.save_for_backward(x)
            ctx.scale = scale

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x * ctx.scale, None

    x = xv.clone().requires_grad_()
    Cube.apply(x).sum().backward()
    xs = cryptgpu.cryptensor(xv, requires_grad=True)
    out = Cube.apply(xs)
    assert (opened(out) - xv**3).abs().max() <= 2 * dot(1, 9, 3 * ENC, 3, ENC)  # x^3, |x| < 3
    out.sum().backward()
    assert (opened(xs.grad) - x.grad).abs().max() <= 3 * dot(1, 3, ENC, 3, ENC)  # 3 x x


class Sign(torch.autograd.Function):
    """A non-differentiable second output, grads not materialised."""

    got = None

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        positive = x > 0
        ctx.mark_non_differentiable(positive)
        return x * 2, positive

    @staticmethod
    def backward(ctx, gy, gp):
        Sign.got = (gy is None, gp is None)
        return None if gy is None else gy * 2


class Same(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x  # the input itself

    @staticmethod
    def backward(ctx, g):
        return g * 3


def test_non_differentiable_outputs_unmaterialised_grads_and_an_input_returned(session):
    xv, _ = _pair()
    xs = cryptgpu.cryptensor(xv, requires_grad=True)
    y, positive = Sign.apply(xs)
    assert not positive.requires_grad and y.requires_grad
    assert torch.equal(opened(positive), (xv > 0).double())
    y.sum().backward()
    assert Sign.got == (False, True)  # as torch's (not materialised)
    assert (opened(xs.grad) - 2).abs().max() == 0  # 1 * 2: exact
    xs = cryptgpu.cryptensor(xv, requires_grad=True)
    out = Same.apply(xs)
    assert out is not xs and xs.grad_fn is None and out.grad_fn.name() == "SameBackward"
    (out * 1).sum().backward()
    assert (opened(xs.grad) - 3).abs().max() == 0  # exact
    with cryptgpu.no_grad():
        assert not Same.apply(cryptgpu.cryptensor(xv, requires_grad=True)).requires_grad


def test_what_cannot_run_on_shares_is_refused(session):
    class Dirty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    class InPlace(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.mul_(2)

        @staticmethod
        def backward(ctx, g):
            return g

    class Peek(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g * float(g.get_plain_text().sum())

    class TooMany(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g, g

    v = torch.tensor([1.0, -2.0], dtype=D)
    with pytest.raises(NotImplementedError, match="Dirty"):
        Dirty.apply(cryptgpu.cryptensor(v, requires_grad=True))
    x = cryptgpu.cryptensor(v)
    with pytest.raises(NotImplementedError, match="InPlace.*in place"):
        InPlace.apply(x)
    assert torch.equal(opened(x), v)  # put back
    y = Peek.apply(cryptgpu.cryptensor(v, requires_grad=True))
    with pytest.raises(NotImplementedError, match="Peek.backward opens"):
        y.sum().backward()
    assert usable()
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        TooMany.apply(cryptgpu.cryptensor(v, requires_grad=True)).sum().backward()
    assert usable()
    lost = Mix.apply(cryptgpu.cryptensor(v, requires_grad=True), v.clone().requires_grad_(), 1, "")
    with pytest.raises(RuntimeError, match="Mix.apply: a plaintext torch tensor"):
        lost[0].sum().backward()  # its gradient would be private: said, as elsewhere
    assert usable()


class _ReversedGELU(tnn.Module):
    """BERT's intermediate activation followed by gradient reversal."""

    def forward(self, x):
        return GradReverse.apply(torch.relu(x))


def test_a_function_in_a_transformers_model_runs_its_backward(session):
    """transformers' own tracer too (it traced the Function's forward
    through: the gradient reversal was lost, the intermediate weights'
    gradient came out as -torch's). Gradients within 1e-3, the bound
    test_huggingface states for BERT's (softmax and LayerNorm backward)."""
    T = pytest.importorskip(
        "transformers", reason="transformers is a test dependency (pip install '.[test]')"
    )
    torch.manual_seed(0)
    cfg = T.BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    m = T.BertModel(cfg).double().eval()
    m.encoder.layer[0].intermediate.intermediate_act_fn = _ReversedGELU()
    ids = torch.randint(0, 20, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    pm = cryptgpu.nn.from_pytorch(m).encrypt().train()
    out = pm(input_ids=ids, attention_mask=mask).last_hidden_state
    (out[..., 0] * 3 + out[..., 1]).sum().backward()
    want = m(input_ids=ids, attention_mask=mask).last_hidden_state
    (want[..., 0] * 3 + want[..., 1]).sum().backward()
    theirs = m.encoder.layer[0].intermediate.dense.weight.grad
    ours = opened(pm.encoder.layer[0].intermediate.dense.weight.grad)
    assert amax(theirs) > 0.02  # the reversal's sign shows (the lost one: -theirs)
    assert (ours - theirs).abs().max().item() <= 1e-3


def test_a_shared_tensor_given_by_keyword_gets_its_gradient(session):
    """Review (2026-12-07): a SharedTensor given to an old-style Function by
    keyword got no gradient, silently; torch binds it to its position.
    Gradients of sums of products by 2: exact up to the encoding (ENC)."""

    class Add(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y=None):
            return x * 2 + y

        @staticmethod
        def backward(ctx, g):
            return g * 2, g

    a, b = torch.ones(2, dtype=D, requires_grad=True), torch.ones(2, dtype=D, requires_grad=True)
    Add.apply(a, y=b).sum().backward()  # torch's: b's gradient by keyword too
    x = cryptgpu.cryptensor(torch.ones(2), requires_grad=True)
    y = cryptgpu.cryptensor(torch.ones(2), requires_grad=True)
    Add.apply(x, y=y).sum().backward()
    assert y.grad is not None
    assert (opened(y.grad) - b.grad).abs().max().item() <= ENC
    assert (opened(x.grad) - a.grad).abs().max().item() <= ENC
